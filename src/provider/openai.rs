//! The OpenAI-compatible dialect: `POST {base}/v1/images/generations`, Bearer key,
//! images as `b64_json` or `url` (wire-formats.md). Aggregators serve Gemini and other
//! models through it, so parsing is tolerant: numbers where strings are documented,
//! errors wrapped in arrays or given as plain strings, data URLs inside `b64_json`.

use std::borrow::Cow;
use std::time::SystemTime;

use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

use super::{Generated, Job, Provider, class_by_status, decode_image, snippet};
use crate::error::{CallError, ErrorClass};
use crate::retry::retry_after;
use crate::secret::ApiKey;

pub struct OpenAi {
    url: Url,
}

impl OpenAi {
    pub fn new(base: &Url) -> OpenAi {
        OpenAi { url: super::endpoint(base, "/v1/images/generations") }
    }
}

// The base64 is borrowed from the body when it has no JSON escapes (the usual case), so
// an 8 MB answer is not copied before it is decoded.
#[derive(Deserialize)]
struct Response<'a> {
    #[serde(default, borrow)]
    data: Vec<Datum<'a>>,
}

#[derive(Deserialize)]
struct Datum<'a> {
    #[serde(borrow)]
    b64_json: Option<Cow<'a, str>>,
    url: Option<String>,
}

impl Provider for OpenAi {
    fn request(&self, client: &Client, key: Option<&ApiKey>, job: &Job<'_>) -> RequestBuilder {
        // Fields as openai-python 3.54.0 sends them (types/image_generate_params.py):
        // `response_format` only when the job carries one (never to GPT image models,
        // which answer 400 unknown_parameter), the size as the catalogue resolved it.
        let mut body = serde_json::Map::new();
        body.insert("model".into(), job.model.into());
        body.insert("prompt".into(), job.prompt.into());
        body.insert("n".into(), 1.into());
        body.insert("size".into(), job.size.to_string().into());
        if let Some(format) = job.response_format {
            body.insert("response_format".into(), format.as_str().into());
        }
        crate::params::merge_into(&mut body, job.params);
        let mut req = client.post(self.url.clone()).json(&body);
        if let Some(key) = key {
            let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {}", key.expose()))
                .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Bearer invalid-key-characters"));
            value.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, value);
        }
        req
    }

    fn parse(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Generated, CallError> {
        if !status.is_success() {
            return Err(classify(status, headers, body));
        }
        let response: Response = serde_json::from_slice(body).map_err(|e| {
            CallError::new(ErrorClass::BadResponse, format!("response is not the expected JSON: {e}"))
                .with_status(status.as_u16())
        })?;
        let datum = response.data.into_iter().next().ok_or_else(|| {
            let why = match serde_json::from_slice::<Value>(body) {
                Ok(v) if v.get("error").is_some() => {
                    return classify(StatusCode::BAD_REQUEST, headers, body);
                }
                _ => "the response has no image (empty `data`)",
            };
            CallError::new(ErrorClass::BadResponse, why).with_status(status.as_u16())
        })?;
        if let Some(b64) = datum.b64_json.filter(|s| !s.is_empty()) {
            return decode_image(&b64).map(Generated::Image);
        }
        if let Some(url) = datum.url.filter(|s| !s.is_empty()) {
            return Ok(Generated::Url(url));
        }
        Err(CallError::new(ErrorClass::BadResponse, "the response's `data[0]` has neither `b64_json` nor `url`")
            .with_status(status.as_u16()))
    }
}

/// The error class of a non-2xx answer, from its status and OpenAI-style error body.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> CallError {
    let detail = ErrorBody::parse(body);
    let is = |needle: &str| detail.code.as_deref() == Some(needle) || detail.kind.as_deref() == Some(needle);
    let class = match status.as_u16() {
        402 => ErrorClass::Quota,
        403 | 429 if is("insufficient_quota") || is("billing_hard_limit_reached") => ErrorClass::Quota,
        400..=499 if is("content_policy_violation") || is("moderation_blocked") => ErrorClass::Refused,
        400..=499 if is("invalid_api_key") => ErrorClass::Auth,
        400..=499 if is("insufficient_quota") || is("billing_hard_limit_reached") => ErrorClass::Quota,
        _ => class_by_status(status),
    };
    let mut message = detail.message.unwrap_or_else(|| snippet(body));
    if let Some(code) = detail.code.filter(|c| !message.contains(c.as_str())) {
        message = format!("{message} [{code}]");
    }
    CallError::new(class, message)
        .with_status(status.as_u16())
        .with_retry_after(retry_after(headers, SystemTime::now()))
}

#[derive(Default)]
struct ErrorBody {
    message: Option<String>,
    kind: Option<String>,
    code: Option<String>,
}

impl ErrorBody {
    fn parse(body: &[u8]) -> ErrorBody {
        let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
            return ErrorBody::default();
        };
        if let Value::Array(items) = v {
            v = items.into_iter().next().unwrap_or(Value::Null);
        }
        let e = v.get("error").cloned().unwrap_or(v);
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        if let Value::String(s) = &e {
            return ErrorBody { message: Some(s.clone()), ..ErrorBody::default() };
        }
        ErrorBody { message: text(e.get("message")), kind: text(e.get("type")), code: text(e.get("code")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use reqwest::header::HeaderValue;

    fn class_of(status: u16, body: &str) -> ErrorClass {
        classify(StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), body.as_bytes()).class
    }

    #[test]
    fn error_bodies_from_the_wire_formats_are_classified() {
        let rate = r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(class_of(429, rate), ErrorClass::RateLimited);
        let quota = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert_eq!(class_of(429, quota), ErrorClass::Quota);
        let policy = r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#;
        assert_eq!(class_of(400, policy), ErrorClass::Refused);
        let moderation =
            r#"{"error":{"message":"blocked","type":"image_generation_user_error","code":"moderation_blocked"}}"#;
        assert_eq!(class_of(400, moderation), ErrorClass::Refused);
        let bad_size =
            r#"{"error":{"message":"Invalid size","type":"invalid_request_error","param":"size","code":null}}"#;
        assert_eq!(class_of(400, bad_size), ErrorClass::InvalidRequest);
        let key = r#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert_eq!(class_of(401, key), ErrorClass::Auth);
        assert_eq!(
            class_of(404, r#"{"error":{"message":"The model `x` does not exist","code":"model_not_found"}}"#),
            ErrorClass::NotFound
        );
        assert_eq!(
            class_of(503, r#"{"error":{"message":"The model is overloaded","code":503}}"#),
            ErrorClass::Overloaded
        );
        assert_eq!(class_of(500, "<html>oops</html>"), ErrorClass::Server);
        assert_eq!(class_of(502, ""), ErrorClass::Server);
        assert_eq!(class_of(504, ""), ErrorClass::Server);
        // Aggregators wrap errors in arrays or send bare strings and numeric codes.
        assert_eq!(
            class_of(400, r#"[{"error":{"message":"flagged","code":"content_policy_violation"}}]"#),
            ErrorClass::Refused
        );
        let e = classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), br#"{"error":"bad prompt"}"#);
        assert_eq!(e.message, "bad prompt");
    }

    #[test]
    fn the_message_keeps_the_code_and_the_retry_advice() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        let e = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"error":{"message":"Slow down","code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(e.message, "Slow down [rate_limit_exceeded]");
        assert_eq!(e.status, Some(429));
        assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(7)));
    }

    fn parse(body: &str) -> Result<Generated, CallError> {
        let p = OpenAi::new(&"http://127.0.0.1:1".parse().unwrap());
        p.parse(StatusCode::OK, &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn successful_answers_give_images_or_urls_and_bad_ones_are_bad_responses() {
        let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nrest");
        assert_eq!(
            parse(&format!(r#"{{"created":1,"data":[{{"b64_json":"{png}","revised_prompt":"x"}}]}}"#)).unwrap(),
            Generated::Image(b"\x89PNG\r\n\x1a\nrest".to_vec())
        );
        assert_eq!(
            parse(&format!(r#"{{"data":[{{"b64_json":"data:image/png;base64,{png}"}}]}}"#)).unwrap(),
            Generated::Image(b"\x89PNG\r\n\x1a\nrest".to_vec())
        );
        assert_eq!(
            parse(r#"{"data":[{"url":"https://cdn.example/x.png"}]}"#).unwrap(),
            Generated::Url("https://cdn.example/x.png".into())
        );
        for bad in [
            r#"{"data":[]}"#,
            r#"{"data":[{}]}"#,
            "not json",
            r#"{"data":[{"b64_json":"!!!"}]}"#,
            r#"{"data":[{"b64_json":"aGVsbG8="}]}"#,
        ] {
            assert_eq!(parse(bad).unwrap_err().class, ErrorClass::BadResponse, "{bad}");
        }
        assert_eq!(
            parse(r#"{"error":{"message":"x","code":"content_policy_violation"}}"#).unwrap_err().class,
            ErrorClass::Refused
        );
    }
}
