//! Request fields bulkgen does not model (`quality`, `output_format`, Gemini
//! `generationConfig.thinkingConfig`, ...), given as `--param KEY=VALUE` or a manifest
//! column `param.KEY`. VALUE is JSON when it parses as JSON, else a string; dotted keys
//! nest. A key that names a field bulkgen sets itself (or a parent of one) is refused, so
//! a param can never silently replace the prompt, the model or the size.

use serde_json::{Map, Value};

/// Params as a nested JSON object. `serde_json::Map` keeps keys sorted, so its text is a
/// stable part of a row's identity.
pub type Params = Map<String, Value>;

/// `KEY=VALUE` as written on the command line.
pub fn parse_flag(spec: &str) -> Result<(String, Value), String> {
    let (key, value) = spec.split_once('=').ok_or_else(|| {
        format!("--param {spec:?}: write KEY=VALUE, e.g. quality=high or n=1 (VALUE is JSON or text)")
    })?;
    check_key(key).map_err(|e| format!("--param {spec:?}: {e}"))?;
    Ok((key.trim().to_owned(), value_of(value)))
}

/// A value as given: JSON when it parses (`true`, `3`, `{"a":1}`, `"quoted"`), else text.
pub fn value_of(raw: &str) -> Value {
    serde_json::from_str(raw.trim()).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

pub fn check_key(key: &str) -> Result<(), String> {
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|part| part.trim().is_empty()) {
        return Err(format!("key {key:?} is empty or has an empty part between dots"));
    }
    Ok(())
}

/// Sets `a.b.c` to `value`, making the objects on the way.
pub fn set(params: &mut Params, dotted: &str, value: Value) {
    let mut parts = dotted.trim().split('.').map(str::trim).peekable();
    let mut map = params;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            map.insert(part.to_owned(), value);
            return;
        }
        let slot = map.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        map = slot.as_object_mut().expect("made an object above");
    }
}

/// The field bulkgen sets that `dotted` would overwrite: one is a prefix of the other
/// (by whole parts).
pub fn collision<'a>(dotted: &str, reserved: &[&'a str]) -> Option<&'a str> {
    let key: Vec<&str> = dotted.trim().split('.').map(str::trim).collect();
    reserved.iter().copied().find(|r| {
        let r: Vec<&str> = r.split('.').collect();
        let n = r.len().min(key.len());
        r[..n] == key[..n]
    })
}

/// Every dotted path of the leaves of `params`.
pub fn leaf_paths(params: &Params) -> Vec<String> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    walk(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut out = Vec::new();
    for (k, v) in params {
        walk(k, v, &mut out);
    }
    out
}

/// Copies `params` into a request body: objects merge, anything else replaces.
pub fn merge_into(body: &mut Map<String, Value>, params: &Params) {
    for (k, v) in params {
        match (body.get_mut(k), v) {
            (Some(Value::Object(have)), Value::Object(add)) => merge_into(have, add),
            _ => {
                body.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_json_or_text_and_dotted_keys_nest() {
        let mut p = Params::new();
        for spec in ["quality=high", "n=2", "generationConfig.thinkingConfig.thinkingLevel=low", "flag=true"] {
            let (k, v) = parse_flag(spec).unwrap();
            set(&mut p, &k, v);
        }
        set(&mut p, "generationConfig.seed", json!(7));
        assert_eq!(
            Value::Object(p.clone()),
            json!({"quality": "high", "n": 2, "flag": true,
                   "generationConfig": {"thinkingConfig": {"thinkingLevel": "low"}, "seed": 7}})
        );
        assert_eq!(leaf_paths(&p).len(), 5);
        assert!(parse_flag("quality").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_flag("a..b=1").unwrap_err().contains("empty part"));
    }

    #[test]
    fn collisions_are_found_by_whole_parts_both_ways() {
        let reserved = ["model", "prompt", "generationConfig.imageConfig", "generationConfig.responseModalities"];
        assert_eq!(collision("model", &reserved), Some("model"));
        assert_eq!(collision("generationConfig", &reserved), Some("generationConfig.imageConfig"));
        assert_eq!(
            collision("generationConfig.imageConfig.imageSize", &reserved),
            Some("generationConfig.imageConfig")
        );
        assert_eq!(collision("generationConfig.thinkingConfig.thinkingLevel", &reserved), None);
        assert_eq!(collision("models", &reserved), None);
    }

    #[test]
    fn params_merge_into_a_body_without_dropping_its_fields() {
        let mut body = json!({"generationConfig": {"responseModalities": ["IMAGE"]}}).as_object().unwrap().clone();
        let mut p = Params::new();
        set(&mut p, "generationConfig.thinkingConfig.thinkingLevel", json!("low"));
        merge_into(&mut body, &p);
        assert_eq!(
            Value::Object(body),
            json!({"generationConfig": {"responseModalities": ["IMAGE"], "thinkingConfig": {"thinkingLevel": "low"}}})
        );
    }
}
