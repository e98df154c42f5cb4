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

use super::{Generated, Job, Provider, RefPart, Said, class_by_status, decode_image, snippet};
use crate::error::{CallError, ErrorClass};
use crate::retry::{retry_after, should_retry};
use crate::secret::ApiKey;

pub struct OpenAi {
    url: Url,
    edits: Url,
}

impl OpenAi {
    pub fn new(base: &Url) -> OpenAi {
        OpenAi {
            url: super::endpoint(base, "/v1/images/generations"),
            edits: super::endpoint(base, "/v1/images/edits"),
        }
    }

    /// A row with reference images (or a mask) is an edit: `POST /v1/images/edits` as
    /// `multipart/form-data`, the same fields as a generation as text parts, each image a
    /// file part `image[]` and the mask a file part `mask` (openai-python 3.54.0
    /// `images.edit`, recorded in tests/sdk/fixtures.json). Params become text parts
    /// (nested values as JSON text). File parts share the reference's buffer.
    fn edit(&self, client: &Client, job: &Job<'_>) -> RequestBuilder {
        use reqwest::multipart::{Form, Part};
        let mut fields = serde_json::Map::new();
        fields_of(&mut fields, job);
        let mut form = Form::new();
        for (name, value) in fields {
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            form = form.text(name, text);
        }
        let file = |part: &RefPart| -> Part {
            let (mime, name, bytes) = match part {
                RefPart::Inline { mime, name, bytes } => (*mime, name.clone(), bytes.clone()),
                // The runner never hands an OpenAI call an uploaded file; if one came,
                // its URI would not do as a file part: send an empty part the server
                // refuses rather than a request without the reference.
                RefPart::File { mime, .. } => (*mime, "missing".to_owned(), bytes::Bytes::new()),
            };
            let len = bytes.len() as u64;
            Part::stream_with_length(reqwest::Body::from(bytes), len)
                .file_name(name)
                .mime_str(mime)
                .expect("a valid mime type")
        };
        for part in job.refs {
            form = form.part("image[]", file(part));
        }
        if let Some(mask) = job.mask {
            form = form.part("mask", file(mask));
        }
        client.post(self.edits.clone()).multipart(form)
    }
}

/// The fields of a generation, bulkgen's own first, then the params.
fn fields_of(body: &mut serde_json::Map<String, Value>, job: &Job<'_>) {
    // Fields as openai-python 3.54.0 sends them (types/image_generate_params.py):
    // `response_format` only when the job carries one (never to GPT image models,
    // which answer 400 unknown_parameter), the size as the catalogue resolved it.
    body.insert("model".into(), job.model.into());
    body.insert("prompt".into(), job.prompt.into());
    // `n`: 1 to 10 (openai-python 3.54.0 image_generate_params.py, image_edit_params.py);
    // above 1 only for a model whose catalogue entry says it takes it.
    body.insert("n".into(), job.n.max(1).into());
    body.insert("size".into(), job.size.to_string().into());
    if let Some(format) = job.response_format {
        body.insert("response_format".into(), format.as_str().into());
    }
    crate::params::merge_into(body, job.params);
}

/// The JSON body of a Batch API line: a generation's fields, or for a row with references
/// the edits endpoint's JSON form, each reference an uploaded file named by id
/// (`images: [{"file_id": ...}]`, `mask: {"file_id": ...}`; wire-formats.md "Edits": the
/// Batch API needs this form, multipart cannot go in a JSONL line).
pub fn batch_body(job: &Job<'_>) -> serde_json::Map<String, Value> {
    let mut body = serde_json::Map::new();
    fields_of(&mut body, job);
    let file = |part: &RefPart| match part {
        RefPart::File { uri, .. } => serde_json::json!({"file_id": uri}),
        // The batch engine uploads every reference first; bytes inline would not fit the
        // JSON form: send a data URL, which the JSON form takes as `image_url`.
        RefPart::Inline { mime, bytes, .. } => {
            use base64::Engine;
            let data = base64::engine::general_purpose::STANDARD.encode(bytes);
            serde_json::json!({"image_url": format!("data:{mime};base64,{data}")})
        }
    };
    if !job.refs.is_empty() {
        body.insert("images".into(), Value::Array(job.refs.iter().map(file).collect()));
    }
    if let Some(mask) = job.mask {
        body.insert("mask".into(), file(mask));
    }
    body
}

/// The `Authorization` header, marked sensitive.
pub fn with_key(req: RequestBuilder, key: Option<&ApiKey>) -> RequestBuilder {
    let Some(key) = key else { return req };
    let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {}", key.expose()))
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Bearer invalid-key-characters"));
    value.set_sensitive(true);
    req.header(reqwest::header::AUTHORIZATION, value)
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
    /// openai-python `types/image.py` `Image.revised_prompt`.
    revised_prompt: Option<String>,
}

impl Provider for OpenAi {
    fn request(&self, client: &Client, key: Option<&ApiKey>, job: &Job<'_>) -> RequestBuilder {
        let req = if job.refs.is_empty() && job.mask.is_none() {
            let mut body = serde_json::Map::new();
            fields_of(&mut body, job);
            client.post(self.url.clone()).json(&body)
        } else {
            self.edit(client, job)
        };
        with_key(req, key)
    }

    fn parse(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Vec<Generated>, CallError> {
        parse_images(status, headers, body)
    }
}

/// An answer of one image (a Batch API line, which asks for one): the first of
/// [`parse_images`].
pub fn parse_answer(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Generated, CallError> {
    parse_images(status, headers, body).map(|images| images.into_iter().next().expect("never empty"))
}

/// An answer, whole: its images (or their URLs), one per `data` element, never empty; or
/// the classified error. An element that is not a complete image is left out as long as
/// another is one (the rows it would have gone to are asked for again; the good images
/// were paid for and are kept); when none is, the first element's error is the answer's.
pub fn parse_images(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Vec<Generated>, CallError> {
    if !status.is_success() {
        return Err(classify(status, headers, body));
    }
    let response: Response = serde_json::from_slice(body).map_err(|e| {
        match serde_json::from_slice::<Value>(body) {
            // An error (maybe array-wrapped) under a 200, as relays send it: classify it.
            Ok(v) if unwrapped(&v).and_then(|v| v.get("error")).is_some() => {
                classify(StatusCode::BAD_REQUEST, headers, body)
            }
            _ => CallError::new(ErrorClass::BadResponse, format!("response is not the expected JSON: {e}"))
                .with_status(status.as_u16()),
        }
    })?;
    if response.data.is_empty() {
        return Err(match serde_json::from_slice::<Value>(body) {
            Ok(v) if v.get("error").is_some() => classify(StatusCode::BAD_REQUEST, headers, body),
            _ => CallError::new(ErrorClass::BadResponse, "the response has no image (empty `data`)")
                .with_status(status.as_u16()),
        });
    }
    let mut images = Vec::with_capacity(response.data.len());
    let mut first_error = None;
    for (i, datum) in response.data.into_iter().enumerate() {
        match image_of(datum, i) {
            Ok(image) => images.push(image),
            Err(e) => {
                first_error.get_or_insert(e.with_status(status.as_u16()));
            }
        }
    }
    match first_error {
        Some(e) if images.is_empty() => Err(e),
        _ => Ok(images),
    }
}

/// One `data` element: its image, decoded and checked, or its URL.
fn image_of(datum: Datum<'_>, i: usize) -> Result<Generated, CallError> {
    let said = Said { revised_prompt: datum.revised_prompt.filter(|p| !p.is_empty()), finish_reason: None };
    if let Some(b64) = datum.b64_json.filter(|s| !s.is_empty()) {
        return decode_image(&b64).map(|bytes| Generated::Image(bytes, said));
    }
    if let Some(url) = datum.url.filter(|s| !s.is_empty()) {
        // A relay that puts the image itself in `url` as a data: URL: nothing to fetch
        // (downloads are http(s) only), the image is here.
        if url.starts_with("data:") {
            return decode_image(&url).map(|bytes| Generated::Image(bytes, said));
        }
        return Ok(Generated::Url(url, said));
    }
    Err(CallError::new(ErrorClass::BadResponse, format!("the response's `data[{i}]` has neither `b64_json` nor `url`")))
}

/// What to do when OpenAI wants the organization verified before it serves the model.
pub const VERIFY_ORGANIZATION: &str = "the key is valid, but OpenAI serves this model only to verified organizations: \
     verify the organization that owns the key (https://platform.openai.com/settings/organization/general, \
     Verify Organization); access can take a few minutes after verification to propagate (OpenAI says up to \
     15), then run the same command again";

/// The error class of a non-2xx answer, from its status and OpenAI-style error body.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> CallError {
    let detail = ErrorBody::parse(body);
    // Codes compared without regard to case: relays re-spell them.
    let is = |needle: &str| {
        [&detail.code, &detail.kind].iter().any(|v| v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(needle)))
    };
    let said = |needle: &str| detail.message.as_deref().is_some_and(|m| m.to_ascii_lowercase().contains(needle));
    let mut advice = None;
    let class = match status.as_u16() {
        402 => ErrorClass::Quota,
        // A refusal is a refusal whatever status a relay wraps it in.
        _ if is("content_policy_violation") || is("moderation_blocked") => ErrorClass::Refused,
        403 | 429 if is("insufficient_quota") || is("billing_hard_limit_reached") => ErrorClass::Quota,
        // "Your organization must be verified to use the model `gpt-image-2`. Please go
        // to: https://platform.openai.com/settings/organization/general and click on
        // Verify Organization. If you just verified, it can take up to 15 minutes for
        // access to propagate." (403, type invalid_request_error, code null; a 400 for
        // streaming). Every row would get it: stop, and say what fixes it.
        400 | 403 if said("organization must be verified") => {
            advice = Some(VERIFY_ORGANIZATION);
            ErrorClass::Auth
        }
        400..=499 if is("invalid_api_key") => ErrorClass::Auth,
        400..=499 if is("insufficient_quota") || is("billing_hard_limit_reached") => ErrorClass::Quota,
        _ => class_by_status(status),
    };
    let mut message = detail.message.unwrap_or_else(|| snippet(body));
    if let Some(code) = detail.code.filter(|c| !message.contains(c.as_str())) {
        message = format!("{message} [{code}]");
    }
    let mut e = CallError::new(class, message)
        .with_status(status.as_u16())
        .with_retry_after(retry_after(headers, SystemTime::now()))
        .with_should_retry(should_retry(headers));
    if let Some(advice) = advice {
        e = e.with_advice(advice);
    }
    e
}

#[derive(Default)]
struct ErrorBody {
    message: Option<String>,
    kind: Option<String>,
    code: Option<String>,
}

impl ErrorBody {
    fn parse(body: &[u8]) -> ErrorBody {
        serde_json::from_slice::<Value>(body).ok().as_ref().and_then(ErrorBody::of).unwrap_or_default()
    }

    /// The error in `v`: `{"error": {...}}`, `{"error": "text"}` or a bare
    /// `{"message", "type", "code"}` object, each maybe wrapped in an array.
    fn of(v: &Value) -> Option<ErrorBody> {
        let v = unwrapped(v)?;
        let e = v.get("error").unwrap_or(v);
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match e {
            Value::String(s) => Some(ErrorBody { message: Some(s.clone()), ..ErrorBody::default() }),
            Value::Object(_) => Some(ErrorBody {
                message: text(e.get("message")),
                kind: text(e.get("type")),
                code: text(e.get("code")),
            }),
            _ => None,
        }
    }
}

/// `v`, or its first element when a relay wrapped it in an array.
fn unwrapped(v: &Value) -> Option<&Value> {
    match v {
        Value::Array(items) => items.first(),
        v => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Disposition;
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
        parse_answer(StatusCode::OK, &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn an_unverified_organization_stops_the_run_with_what_fixes_it() {
        let body = r#"{"error":{"message":"Your organization must be verified to use the model `gpt-image-2`. Please go to: https://platform.openai.com/settings/organization/general and click on Verify Organization. If you just verified, it can take up to 15 minutes for access to propagate.","type":"invalid_request_error","param":null,"code":null}}"#;
        let e = classify(StatusCode::FORBIDDEN, &HeaderMap::new(), body.as_bytes());
        assert_eq!(e.class, ErrorClass::Auth);
        assert_eq!(e.disposition(), Disposition::StopRun);
        assert_eq!(e.advice(), VERIFY_ORGANIZATION);
        assert!(e.advice().contains("verify the organization") && e.advice().contains("propagate"));
        assert!(!e.advice().contains("check the API key"));
        let stream = r#"{"error":{"message":"Your organization must be verified to stream this model.","type":"invalid_request_error"}}"#;
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), stream.as_bytes()).advice(),
            VERIFY_ORGANIZATION
        );
        // Any other 401/403 keeps the class's advice about the key.
        let key = classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), br#"{"error":{"code":"invalid_api_key"}}"#);
        assert_eq!(key.advice(), ErrorClass::Auth.advice());
    }

    #[test]
    fn an_answer_of_n_images_gives_each_and_keeps_the_good_ones_when_one_is_bad() {
        let png = |seed: u64| crate::sim::png::make(300, seed, "x");
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let (a, b) = (png(1), png(2));
        let body = format!(
            r#"{{"data":[{{"b64_json":"{}","revised_prompt":"ra"}},{{"b64_json":"{}"}},{{"url":"https://cdn.example/c.png"}}]}}"#,
            b64(&a),
            b64(&b)
        );
        let images = parse_images(StatusCode::OK, &HeaderMap::new(), body.as_bytes()).unwrap();
        assert_eq!(
            images,
            vec![
                Generated::Image(a.clone(), Said { revised_prompt: Some("ra".into()), finish_reason: None }),
                Generated::Image(b, Said::default()),
                Generated::Url("https://cdn.example/c.png".into(), Said::default()),
            ]
        );
        // A damaged element is left out; the good image (paid for) is kept.
        let body = format!(r#"{{"data":[{{"b64_json":"aGVsbG8="}},{{"b64_json":"{}"}}]}}"#, b64(&a));
        let images = parse_images(StatusCode::OK, &HeaderMap::new(), body.as_bytes()).unwrap();
        assert_eq!(images, vec![Generated::Image(a, Said::default())]);
        // None good: the first element's error.
        let e = parse_images(StatusCode::OK, &HeaderMap::new(), br#"{"data":[{},{"b64_json":"!!"}]}"#).unwrap_err();
        assert_eq!(e.class, ErrorClass::BadResponse);
        assert!(e.message.contains("`data[0]`"), "{}", e.message);
    }

    #[test]
    fn relay_refusals_are_refusals_however_they_are_wrapped() {
        for (status, body) in [
            (
                400,
                r#"[{"error":{"message":"blocked","type":"image_generation_user_error","code":"moderation_blocked"}}]"#,
            ),
            (400, r#"{"error":{"message":"flagged","type":"content_policy_violation","code":null}}"#),
            (400, r#"{"error":{"message":"flagged","type":"upstream_error","code":"CONTENT_POLICY_VIOLATION"}}"#),
            (400, r#"{"message":"flagged","code":"content_policy_violation"}"#),
            (500, r#"{"error":{"message":"upstream said no","type":"new_api_error","code":"moderation_blocked"}}"#),
            (422, r#"[{"error":{"message":"flagged","code":"content_policy_violation"}}]"#),
        ] {
            assert_eq!(class_of(status, body), ErrorClass::Refused, "{status} {body}");
        }
        // Under a 200, too.
        for body in [
            r#"[{"error":{"message":"blocked","code":"moderation_blocked"}}]"#,
            r#"{"error":{"message":"blocked","type":"content_policy_violation"}}"#,
        ] {
            assert_eq!(parse(body).unwrap_err().class, ErrorClass::Refused, "{body}");
        }
        // A 200 that is neither an image nor an error stays a bad response (retried).
        assert_eq!(parse(r#"{"data":"oops","message":"x"}"#).unwrap_err().class, ErrorClass::BadResponse);
    }

    #[test]
    fn conflicts_retry_and_x_should_retry_is_obeyed() {
        let h = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("x-should-retry", HeaderValue::from_static(v));
            h
        };
        let conflict = classify(StatusCode::CONFLICT, &HeaderMap::new(), br#"{"error":{"message":"lock timeout"}}"#);
        assert_eq!((conflict.class, conflict.disposition()), (ErrorClass::Server, Disposition::Retry));
        let server = classify(StatusCode::INTERNAL_SERVER_ERROR, &h("false"), b"{}");
        assert_eq!((server.class, server.should_retry), (ErrorClass::Server, Some(false)));
        assert_eq!(server.disposition(), Disposition::FailRow);
        let invalid = classify(StatusCode::BAD_REQUEST, &h("true"), br#"{"error":{"message":"try again"}}"#);
        assert_eq!((invalid.class, invalid.disposition()), (ErrorClass::InvalidRequest, Disposition::Retry));
        let quota = classify(StatusCode::TOO_MANY_REQUESTS, &h("true"), br#"{"error":{"code":"insufficient_quota"}}"#);
        assert_eq!((quota.class, quota.disposition()), (ErrorClass::Quota, Disposition::StopRun));
    }

    #[test]
    fn url_safe_b64_json_is_an_image() {
        let png = crate::sim::png::make(3_000, 3, "x");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&png);
        assert_eq!(
            parse(&format!(r#"{{"data":[{{"b64_json":"{b64}"}}]}}"#)).unwrap(),
            Generated::Image(png, Said::default())
        );
    }

    #[test]
    fn successful_answers_give_images_or_urls_and_bad_ones_are_bad_responses() {
        let image = crate::sim::png::make(500, 1, "x");
        let png = base64::engine::general_purpose::STANDARD.encode(&image);
        assert_eq!(
            parse(&format!(r#"{{"created":1,"data":[{{"b64_json":"{png}","revised_prompt":"x"}}]}}"#)).unwrap(),
            Generated::Image(image.clone(), Said { revised_prompt: Some("x".into()), finish_reason: None })
        );
        assert_eq!(
            parse(&format!(r#"{{"data":[{{"b64_json":"data:image/png;base64,{png}"}}]}}"#)).unwrap(),
            Generated::Image(image.clone(), Said::default())
        );
        // A data: URL in `url` is the image itself: nothing is fetched.
        assert_eq!(
            parse(&format!(r#"{{"data":[{{"url":"data:image/png;base64,{png}"}}]}}"#)).unwrap(),
            Generated::Image(image.clone(), Said::default())
        );
        // A PNG signature in front of anything else, or a PNG cut short, is no image.
        let cut = base64::engine::general_purpose::STANDARD.encode(&image[..image.len() - 30]);
        let html = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\n<html>oops</html>");
        for damaged in [cut, html] {
            let e = parse(&format!(r#"{{"data":[{{"b64_json":"{damaged}"}}]}}"#)).unwrap_err();
            assert_eq!(e.class, ErrorClass::BadResponse);
            assert!(e.message.starts_with("the base64 data is a"), "{e}");
        }
        assert_eq!(
            parse(r#"{"data":[{"url":"https://cdn.example/x.png"}]}"#).unwrap(),
            Generated::Url("https://cdn.example/x.png".into(), Said::default())
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
