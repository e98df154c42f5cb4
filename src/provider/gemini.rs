//! The Gemini native dialect: `POST {base}/v1beta/models/{model}:generateContent` with
//! `x-goog-api-key` (wire-formats.md, Gemini part).
//!
//! Sizes: the catalogue resolves a row's size into `imageConfig.imageSize` and
//! `imageConfig.aspectRatio` (field names as google-genai 3.4.0 `types.ImageConfig`
//! serializes them); params are merged into the body after bulkgen's own fields.
//!
//! Answers: parts marked `thought` are drafts; the image is the last other part with
//! inline data. A blocked prompt (`promptFeedback.blockReason`), a `finishReason` other
//! than STOP, or no image part means "no image for this prompt": class `refused`.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

use super::{Generated, Job, Provider, class_by_status, decode_image, snippet};
use crate::catalog::WireSize;
use crate::error::{CallError, ErrorClass};
use crate::retry::retry_after;
use crate::secret::ApiKey;
use crate::size::Resolution;

pub struct Gemini {
    base: Url,
}

impl Gemini {
    pub fn new(base: &Url) -> Gemini {
        Gemini { base: base.clone() }
    }
}

// Image data is borrowed from the body when it has no JSON escapes (the usual case), so a
// 4K answer is not copied before it is decoded.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Response<'a> {
    #[serde(borrow)]
    candidates: Vec<Candidate<'a>>,
    prompt_feedback: Option<PromptFeedback>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
    block_reason_message: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(borrow)]
    content: Option<Content<'a>>,
    finish_reason: Option<String>,
    finish_message: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Content<'a> {
    #[serde(borrow)]
    parts: Vec<Part<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Part<'a> {
    text: Option<String>,
    thought: Option<bool>,
    #[serde(alias = "inline_data", borrow)]
    inline_data: Option<InlineData<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct InlineData<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
}

impl Provider for Gemini {
    fn request(&self, client: &Client, key: Option<&ApiKey>, job: &Job<'_>) -> RequestBuilder {
        let model = job.model.trim_start_matches("models/");
        let url = super::endpoint(&self.base, &format!("/v1beta/models/{model}:generateContent"));
        let mut image_config = serde_json::Map::new();
        match job.size {
            WireSize::Gemini { image_size, ratio } => {
                if let Some(r) = ratio {
                    image_config.insert("aspectRatio".into(), r.to_string().into());
                }
                image_config.insert("imageSize".into(), image_size.as_str().into());
            }
            // The catalogue resolves gemini-dialect rows to a class and a ratio; pixels
            // here mean a models-file entry of another kind: send them as Gemini would
            // read a size, the class of their pixel count and their ratio.
            WireSize::Pixels { width, height } => {
                image_config.insert("imageSize".into(), Resolution::from_pixels(*width, *height).as_str().into());
            }
        }
        let mut body = serde_json::json!({
            "contents": [{"role": "user", "parts": [{"text": job.prompt}]}],
            "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": image_config},
        })
        .as_object()
        .cloned()
        .expect("an object");
        crate::params::merge_into(&mut body, job.params);
        let mut req = client.post(url).json(&body);
        if let Some(key) = key {
            let mut value = HeaderValue::try_from(key.expose())
                .unwrap_or_else(|_| HeaderValue::from_static("invalid-key-characters"));
            value.set_sensitive(true);
            req = req.header("x-goog-api-key", value);
        }
        req
    }

    fn parse(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Generated, CallError> {
        if !status.is_success() {
            return Err(classify(status, headers, body));
        }
        let bad = |why: String| CallError::new(ErrorClass::BadResponse, why).with_status(status.as_u16());
        let response: Response = serde_json::from_slice(body).map_err(|e| {
            match serde_json::from_slice::<Value>(body) {
                // An error object (maybe array-wrapped) under a 200: classify it.
                Ok(v) if error_object(&v).is_some() => classify(StatusCode::BAD_REQUEST, headers, body),
                _ => bad(format!("response is not the expected JSON: {e}")),
            }
        })?;
        let refused = |why: String| CallError::new(ErrorClass::Refused, why).with_status(status.as_u16());
        if let Some(fb) = response.prompt_feedback.filter(|f| f.block_reason.is_some()) {
            let reason = fb.block_reason.unwrap_or_default();
            let detail = fb.block_reason_message.map(|m| format!(": {m}")).unwrap_or_default();
            return Err(refused(format!("prompt blocked (blockReason {reason}){detail}")));
        }
        let Some(candidate) = response.candidates.into_iter().next() else {
            return Err(bad("the response has no candidates and no blockReason".into()));
        };
        if let Some(reason) = candidate.finish_reason.as_deref().filter(|r| *r != "STOP") {
            let detail = candidate.finish_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            return Err(refused(format!("no image: finishReason {reason}{detail}")));
        }
        let parts = candidate.content.map(|c| c.parts).unwrap_or_default();
        let image = parts
            .iter()
            .rev()
            .filter(|p| p.thought != Some(true))
            .find_map(|p| p.inline_data.as_ref().filter(|d| !d.data.is_empty()));
        match image {
            Some(data) => decode_image(&data.data).map(Generated::Image),
            None => {
                let said: Vec<&str> =
                    parts.iter().filter(|p| p.thought != Some(true)).filter_map(|p| p.text.as_deref()).collect();
                let said = if said.is_empty() { String::new() } else { format!("; it said: {}", said.join(" ")) };
                Err(refused(format!("no image part in the answer (finishReason STOP){said}")))
            }
        }
    }
}

/// The `error` object of a Gemini error body, also when wrapped in a one-element array.
fn error_object(v: &Value) -> Option<&Value> {
    let v = match v {
        Value::Array(items) => items.first()?,
        other => other,
    };
    v.get("error").filter(|e| e.is_object())
}

/// The class of a Gemini error answer, from its HTTP status, `status` string and details.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> CallError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(error_object);
    let field = |name: &str| error.and_then(|e| e.get(name)).and_then(Value::as_str).unwrap_or("");
    let (api_status, message) = (field("status"), field("message"));
    let details: &[Value] = error.and_then(|e| e.get("details")).and_then(Value::as_array).map_or(&[], |v| v);
    let detail_of = |kind: &'static str| {
        details.iter().filter(move |d| d.get("@type").and_then(Value::as_str).is_some_and(|t| t.ends_with(kind)))
    };
    let key_invalid = detail_of("ErrorInfo")
        .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        || message.contains("API key not valid");
    let per_day = detail_of("QuotaFailure").any(|d| {
        d.get("violations").and_then(Value::as_array).is_some_and(|vs| {
            vs.iter().any(|v| v.get("quotaId").and_then(Value::as_str).is_some_and(|q| q.contains("PerDay")))
        })
    });
    let retry_delay =
        detail_of("RetryInfo").find_map(|d| d.get("retryDelay").and_then(Value::as_str).and_then(parse_retry_delay));

    let class = if key_invalid {
        ErrorClass::Auth
    } else {
        match (status.as_u16(), api_status) {
            (_, "UNAUTHENTICATED" | "PERMISSION_DENIED") => ErrorClass::Auth,
            (_, "NOT_FOUND") => ErrorClass::NotFound,
            (_, "RESOURCE_EXHAUSTED") | (429, _) if per_day => ErrorClass::Quota,
            (_, "RESOURCE_EXHAUSTED") => ErrorClass::RateLimited,
            (_, "FAILED_PRECONDITION") => ErrorClass::Quota,
            (_, "UNAVAILABLE") => ErrorClass::Overloaded,
            (_, "INTERNAL" | "DEADLINE_EXCEEDED") => ErrorClass::Server,
            _ => class_by_status(status),
        }
    };
    let mut text = if message.is_empty() { snippet(body) } else { message.to_owned() };
    if !api_status.is_empty() {
        text = format!("{text} [{api_status}]");
    }
    if class == ErrorClass::Quota && per_day {
        text.push_str(" (daily quota: retrying within minutes will not help)");
    }
    CallError::new(class, text)
        .with_status(status.as_u16())
        .with_retry_after(retry_delay.or_else(|| retry_after(headers, SystemTime::now())))
}

/// `"38s"`, `"45.8s"` (protobuf Duration in JSON).
fn parse_retry_delay(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn class_of(status: u16, body: &str) -> CallError {
        classify(StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn gemini_error_bodies_are_classified() {
        let rate = r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"45.8s"}]}}"#;
        let e = class_of(429, rate);
        assert_eq!(e.class, ErrorClass::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_millis(45_800)));
        let daily = r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_requests_per_model_per_day","quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"38s"}]}}"#;
        assert_eq!(class_of(429, daily).class, ErrorClass::Quota);
        let key = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
        assert_eq!(class_of(400, key).class, ErrorClass::Auth);
        let wrapped = format!("[{key}]");
        assert_eq!(class_of(400, &wrapped).class, ErrorClass::Auth);
        assert_eq!(
            class_of(400, r#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#).class,
            ErrorClass::InvalidRequest
        );
        assert_eq!(
            class_of(400, r#"{"error":{"code":400,"message":"billing","status":"FAILED_PRECONDITION"}}"#).class,
            ErrorClass::Quota
        );
        assert_eq!(
            class_of(403, r#"{"error":{"code":403,"status":"PERMISSION_DENIED","message":"denied"}}"#).class,
            ErrorClass::Auth
        );
        assert_eq!(
            class_of(404, r#"{"error":{"code":404,"status":"NOT_FOUND","message":"models/x is not found"}}"#).class,
            ErrorClass::NotFound
        );
        let overloaded = class_of(
            503,
            r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
        );
        assert_eq!(overloaded.class, ErrorClass::Overloaded);
        assert_eq!(overloaded.message, "The model is overloaded. Please try again later. [UNAVAILABLE]");
        assert_eq!(
            class_of(500, r#"{"error":{"code":500,"status":"INTERNAL","message":"x"}}"#).class,
            ErrorClass::Server
        );
        assert_eq!(
            class_of(504, r#"{"error":{"code":504,"status":"DEADLINE_EXCEEDED","message":"x"}}"#).class,
            ErrorClass::Server
        );
        assert_eq!(class_of(502, "<html>bad gateway</html>").class, ErrorClass::Server);
    }

    fn parse(body: &str) -> Result<Generated, CallError> {
        Gemini::new(&"http://127.0.0.1:1".parse().unwrap()).parse(StatusCode::OK, &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn the_final_image_is_taken_and_drafts_are_skipped() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let draft = b64(b"\x89PNG\r\n\x1a\ndraft");
        let last = b64(b"\x89PNG\r\n\x1a\nfinal");
        let body = format!(
            r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"text":"thinking","thought":true}},{{"inlineData":{{"mimeType":"image/png","data":"{draft}"}},"thought":true}},{{"text":"Here it is"}},{{"inlineData":{{"mimeType":"image/png","data":"{last}"}}}}]}},"finishReason":"STOP"}}],"usageMetadata":{{"promptTokenCount":8}}}}"#
        );
        assert_eq!(parse(&body).unwrap(), Generated::Image(b"\x89PNG\r\n\x1a\nfinal".to_vec()));
    }

    #[test]
    fn blocks_bad_finish_reasons_and_missing_images_are_refusals() {
        let blocked =
            parse(r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{}}"#).unwrap_err();
        assert_eq!(blocked.class, ErrorClass::Refused);
        assert!(blocked.message.contains("PROHIBITED_CONTENT"));
        let safety = parse(r#"{"candidates":[{"content":{"parts":[]},"finishReason":"IMAGE_SAFETY"}]}"#).unwrap_err();
        assert_eq!(safety.class, ErrorClass::Refused);
        assert!(safety.message.contains("IMAGE_SAFETY"));
        let text_only =
            parse(r#"{"candidates":[{"content":{"parts":[{"text":"I cannot draw that."}]},"finishReason":"STOP"}]}"#)
                .unwrap_err();
        assert_eq!(text_only.class, ErrorClass::Refused);
        assert!(text_only.message.contains("I cannot draw that."));
        assert_eq!(parse(r#"{"candidates":[]}"#).unwrap_err().class, ErrorClass::BadResponse);
        assert_eq!(parse("{\"candidates\": [").unwrap_err().class, ErrorClass::BadResponse);
        let bad_b64 = r#"{"candidates":[{"content":{"parts":[{"inlineData":{"data":"%%%"}}]},"finishReason":"STOP"}]}"#;
        assert_eq!(parse(bad_b64).unwrap_err().class, ErrorClass::BadResponse);
    }

    #[test]
    fn requests_carry_the_resolved_size_and_the_params() {
        let p = Gemini::new(&"https://generativelanguage.googleapis.com".parse().unwrap());
        let policy = crate::http::HttpPolicy { connect_timeout: Duration::from_secs(1), http2: false, concurrency: 1 };
        let client = crate::http::client(policy).unwrap();
        let key = ApiKey::new("k-123456");
        let size = WireSize::Gemini { image_size: "2K".into(), ratio: crate::size::AspectRatio::parse("16:9") };
        let mut params = crate::params::Params::new();
        crate::params::set(&mut params, "generationConfig.thinkingConfig.thinkingLevel", "low".into());
        let job = Job { prompt: "p", model: "m-1", size: &size, response_format: None, params: &params };
        let req = p.request(&client, Some(&key), &job).build().unwrap();
        assert_eq!(req.headers()["x-goog-api-key"], "k-123456");
        assert_eq!(req.url().as_str(), "https://generativelanguage.googleapis.com/v1beta/models/m-1:generateContent");
        let v: Value = serde_json::from_slice(req.body().unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "contents": [{"role": "user", "parts": [{"text": "p"}]}],
                "generationConfig": {
                    "responseModalities": ["IMAGE"],
                    "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"},
                    "thinkingConfig": {"thinkingLevel": "low"}
                }
            })
        );
    }
}
