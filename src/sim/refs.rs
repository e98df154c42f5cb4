//! Reference images as the simulator receives them: base64 in any alphabet, content
//! hashes, the image kind told by its magic bytes, and the reference parts of a Gemini
//! `generateContent` body (read in the SDK's mixed spelling: `inlineData` holding
//! `mime_type`, `fileData` holding `file_uri`, as tests/sdk/fixtures.json records).

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Base64 in either alphabet, padded or not (google-genai sends URL-safe, padded).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    if text.contains(['-', '_']) { URL_SAFE.decode(text).ok() } else { STANDARD.decode(text).ok() }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The image kind of `bytes` by their magic, as a MIME type, if it is one the providers
/// take (PNG, JPEG, WebP, HEIC/HEIF).
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        match &bytes[8..12] {
            b"heic" | b"heix" | b"hevc" | b"hevx" => Some("image/heic"),
            b"mif1" | b"msf1" | b"heif" => Some("image/heif"),
            _ => None,
        }
    } else {
        None
    }
}

/// How many leading bytes [`sniff`] needs.
pub const SNIFF_LEN: usize = 16;

/// An inline reference once decoded: its hash, length and kind (the bytes are dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub sha256: String,
    pub len: u64,
    pub kind: Option<&'static str>,
}

/// One reference part of a Gemini request, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum GeminiRef {
    /// `inlineData`: the declared MIME type, and the bytes decoded (`None`: bad base64).
    Inline { mime: String, decoded: Option<Decoded> },
    /// `fileData`: the file's URI and the declared MIME type, if any.
    File { uri: String, mime: Option<String> },
}

fn either<'a>(v: &'a Value, a: &str, b: &str) -> Option<&'a Value> {
    v.get(a).or_else(|| v.get(b)).filter(|x| !x.is_null())
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// The reference parts of a `generateContent` body, and the body as the simulator keeps
/// it: every inline `data` replaced by `{"sha256": .., "len": ..}`, so kept bodies never
/// hold the megabytes. Each inline payload is decoded and hashed once, here.
pub fn gemini_parts(body: &Value) -> (Vec<GeminiRef>, Value) {
    let mut refs = Vec::new();
    let Some(obj) = body.as_object() else { return (refs, body.clone()) };
    let mut kept = Map::new();
    for (key, value) in obj {
        if key != "contents" {
            kept.insert(key.clone(), value.clone());
            continue;
        }
        let Some(contents) = value.as_array() else {
            kept.insert(key.clone(), value.clone());
            continue;
        };
        let contents = contents.iter().map(|content| keep_content(content, &mut refs)).collect();
        kept.insert(key.clone(), Value::Array(contents));
    }
    (refs, Value::Object(kept))
}

fn keep_content(content: &Value, refs: &mut Vec<GeminiRef>) -> Value {
    let Some(obj) = content.as_object() else { return content.clone() };
    let mut kept = Map::new();
    for (key, value) in obj {
        match (key.as_str(), value.as_array()) {
            ("parts", Some(parts)) => {
                let parts = parts.iter().map(|p| keep_part(p, refs)).collect();
                kept.insert(key.clone(), Value::Array(parts));
            }
            _ => {
                kept.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(kept)
}

fn keep_part(part: &Value, refs: &mut Vec<GeminiRef>) -> Value {
    if let Some(inline) = either(part, "inlineData", "inline_data") {
        let mime = text(either(inline, "mimeType", "mime_type")).unwrap_or_default();
        let decoded = inline.get("data").and_then(Value::as_str).and_then(decode_base64).map(|bytes| Decoded {
            sha256: sha256_hex(&bytes),
            len: bytes.len() as u64,
            kind: sniff(&bytes),
        });
        let summary = match &decoded {
            Some(d) => json!({"sha256": d.sha256, "len": d.len}),
            None => json!({"undecodable_base64_chars": inline.get("data").and_then(Value::as_str).map_or(0, str::len)}),
        };
        refs.push(GeminiRef::Inline { mime, decoded });
        let mut kept = part.as_object().cloned().unwrap_or_default();
        let key = if part.get("inlineData").is_some() { "inlineData" } else { "inline_data" };
        let mut inline_kept = inline.as_object().cloned().unwrap_or_default();
        inline_kept.insert("data".into(), summary);
        kept.insert(key.into(), Value::Object(inline_kept));
        return Value::Object(kept);
    }
    if let Some(file) = either(part, "fileData", "file_data") {
        let uri = text(either(file, "fileUri", "file_uri")).unwrap_or_default();
        refs.push(GeminiRef::File { uri, mime: text(either(file, "mimeType", "mime_type")) });
    }
    part.clone()
}

/// The file id of a `fileUri` (`.../files/abc` or `files/abc`), if it names one.
pub fn file_id(uri: &str) -> Option<&str> {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    let (_, id) = path.rsplit_once("files/")?;
    let id = id.trim_end_matches('/');
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_in_any_alphabet_with_or_without_padding() {
        let bytes = [0xfb, 0xff, 0xbf, 0x01];
        for text in ["+/+/AQ==", "+/+/AQ", "-_-_AQ==", "-_-_AQ"] {
            assert_eq!(decode_base64(text).as_deref(), Some(&bytes[..]), "{text}");
        }
        assert_eq!(decode_base64("%%%"), None);
    }

    #[test]
    fn magic_bytes_tell_the_kind() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"\0\0\0\x18ftypheic"), Some("image/heic"));
        assert_eq!(sniff(b"GIF89a......"), None);
    }

    #[test]
    fn kept_bodies_hold_summaries_not_payloads() {
        let body = json!({"contents": [{"role": "user", "parts": [
            {"inlineData": {"data": "iVBORw0KGgo=", "mime_type": "image/png"}},
            {"fileData": {"file_uri": "http://h/v1beta/files/sim-1", "mime_type": "image/jpeg"}},
            {"text": "p"}]}], "generationConfig": {"responseModalities": ["IMAGE"]}});
        let (refs, kept) = gemini_parts(&body);
        assert_eq!(refs.len(), 2);
        let GeminiRef::Inline { mime, decoded: Some(d) } = &refs[0] else { panic!("{refs:?}") };
        assert_eq!((mime.as_str(), d.len, d.kind), ("image/png", 8, Some("image/png")));
        assert_eq!(kept["contents"][0]["parts"][0]["inlineData"]["data"], json!({"sha256": d.sha256, "len": 8}));
        assert_eq!(kept["contents"][0]["parts"][1], body["contents"][0]["parts"][1]);
        assert_eq!(kept["generationConfig"], body["generationConfig"]);
        assert_eq!(
            refs[1],
            GeminiRef::File { uri: "http://h/v1beta/files/sim-1".into(), mime: Some("image/jpeg".into()) }
        );
    }

    #[test]
    fn file_ids_come_from_uris_and_names() {
        assert_eq!(file_id("https://generativelanguage.googleapis.com/v1beta/files/abc"), Some("abc"));
        assert_eq!(file_id("files/abc"), Some("abc"));
        assert_eq!(file_id("http://127.0.0.1:1/v1/files/sim-3?x=1"), Some("sim-3"));
        assert_eq!(file_id("http://h/v1/models/x"), None);
    }
}
