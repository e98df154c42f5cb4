//! The Gemini native dialect: `POST {base}/v1beta/models/{model}:generateContent` with
//! `x-goog-api-key` (wire-formats.md, Gemini part).
//!
//! Sizes: the catalogue resolves a row's size into `imageConfig.imageSize` and
//! `imageConfig.aspectRatio` (field names as google-genai 3.4.0 `types.ImageConfig`
//! serializes them); params are merged into the body after bulkgen's own fields.
//!
//! Answers: parts marked `thought` are drafts; the image is the last other part with
//! inline data. A blocked prompt (`promptFeedback.blockReason`) is `refused`; what a
//! `finishReason` means is the table in [`finish`]. Relays that re-serialize the answer
//! with google-genai send snake_case keys and URL-safe base64: both are read.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

use base64::Engine;

use super::{Generated, Job, Provider, RefPart, Said, class_by_status, decode_image, snippet};
use crate::catalog::WireSize;
use crate::error::{CallError, ErrorClass};
use crate::retry::{retry_after, should_retry};
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
// 4K answer is not copied before it is decoded. The aliases read the snake_case that
// relays built on google-genai send (its `to_json_dict()` dumps field names, not the
// camelCase aliases: python-genai `_common.BaseModel`).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Response<'a> {
    #[serde(borrow)]
    candidates: Vec<Candidate<'a>>,
    #[serde(alias = "prompt_feedback")]
    prompt_feedback: Option<PromptFeedback>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(alias = "block_reason")]
    block_reason: Option<String>,
    #[serde(alias = "block_reason_message")]
    block_reason_message: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(borrow)]
    content: Option<Content<'a>>,
    #[serde(alias = "finish_reason")]
    finish_reason: Option<String>,
    #[serde(alias = "finish_message")]
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
#[serde(default, rename_all = "camelCase")]
struct InlineData<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
    #[serde(alias = "mime_type")]
    mime_type: Option<String>,
}

impl Provider for Gemini {
    fn request(&self, client: &Client, key: Option<&ApiKey>, job: &Job<'_>) -> RequestBuilder {
        let model = job.model.trim_start_matches("models/");
        let url = super::endpoint(&self.base, &format!("/v1beta/models/{model}:generateContent"));
        with_key(client.post(url).json(&body(job)), key)
    }

    /// One image per answer: generateContent has no `n`.
    fn parse(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Vec<Generated>, CallError> {
        parse_answer(status, headers, body).map(|image| vec![image])
    }
}

/// The body of a generation: `generateContent`'s, and a Batch API line's `request`.
pub fn body(job: &Job<'_>) -> serde_json::Map<String, Value> {
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
    // Reference images go as parts before the text (wire-formats.md; google-genai
    // `types.Part.from_bytes` / `Part.from_uri` serialize as `inlineData` /
    // `fileData` with camelCase keys: tests/sdk/fixtures.json, requests).
    let mut parts: Vec<Value> = job.refs.iter().map(ref_part).collect();
    parts.push(serde_json::json!({"text": job.prompt}));
    let mut body = serde_json::json!({
        "contents": [{"role": "user", "parts": parts}],
        "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": image_config},
    })
    .as_object()
    .cloned()
    .expect("an object");
    crate::params::merge_into(&mut body, job.params);
    body
}

/// One reference as a request part.
fn ref_part(part: &RefPart) -> Value {
    match part {
        RefPart::Inline { mime, bytes, .. } => {
            let data = base64::engine::general_purpose::STANDARD.encode(bytes);
            serde_json::json!({"inlineData": {"mimeType": mime, "data": data}})
        }
        RefPart::File { mime, uri } => serde_json::json!({"fileData": {"mimeType": mime, "fileUri": uri}}),
    }
}

/// The Files API (wire-formats.md, "Files API"): a resumable upload in two requests, as
/// google-genai 3.4.0 `files.upload` sends them (tests/sdk/fixtures.json,
/// `genai.files.upload@bytesio@v1beta`). The first announces the file (snake_case keys,
/// as the SDK writes them) and gets an upload URL back.
pub fn upload_start(
    base: &Url,
    client: &Client,
    key: Option<&ApiKey>,
    display_name: &str,
    mime: &str,
    len: u64,
) -> RequestBuilder {
    let url = super::endpoint(base, "/upload/v1beta/files");
    let body = serde_json::json!({"file": {"display_name": display_name, "mime_type": mime, "size_bytes": len}});
    upload_headers(with_key(client.post(url), key), mime, len).header("X-Goog-Upload-Command", "start").json(&body)
}

fn upload_headers(req: RequestBuilder, mime: &str, len: u64) -> RequestBuilder {
    req.header("X-Goog-Upload-Protocol", "resumable")
        .header("X-Goog-Upload-Header-Content-Length", len.to_string())
        .header("X-Goog-Upload-Header-Content-Type", mime)
}

/// The upload URL the start request's answer names (`x-goog-upload-url`).
pub fn upload_url(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Url, CallError> {
    if !status.is_success() {
        return Err(classify(status, headers, body));
    }
    let url = headers.get("x-goog-upload-url").and_then(|v| v.to_str().ok()).ok_or_else(|| {
        CallError::new(ErrorClass::BadResponse, "the Files API's answer to an upload start has no x-goog-upload-url")
            .with_status(status.as_u16())
    })?;
    Url::parse(url).map_err(|e| {
        CallError::new(ErrorClass::BadResponse, format!("the Files API's upload URL is not a URL: {e}"))
            .with_status(status.as_u16())
    })
}

/// The second request: the bytes, and "finalize", to the upload URL. Without the key,
/// as the SDK sends it: the URL's `upload_id` is the authority.
pub fn upload_bytes(url: Url, client: &Client, mime: &str, bytes: bytes::Bytes) -> RequestBuilder {
    upload_headers(client.post(url), mime, bytes.len() as u64)
        .header("X-Goog-Upload-Offset", "0")
        .header("X-Goog-Upload-Command", "upload, finalize")
        .header(reqwest::header::CONTENT_LENGTH, bytes.len())
        .body(bytes)
}

/// A file the Files API holds (`types.File`).
#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    /// `files/...`
    pub name: String,
    pub uri: String,
    pub mime: Option<String>,
    /// `expirationTime`, as Unix seconds (None when absent or unreadable).
    pub expires_at: Option<f64>,
    /// `state` (`ACTIVE`, `PROCESSING`, `FAILED`), when given.
    pub state: Option<String>,
}

/// The answer to the upload: `{"file": {...}}`.
pub fn parse_file(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<FileInfo, CallError> {
    if !status.is_success() {
        return Err(classify(status, headers, body));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        CallError::new(ErrorClass::BadResponse, format!("the Files API's answer is not JSON: {e}"))
            .with_status(status.as_u16())
    })?;
    let file = v.get("file").unwrap_or(&v);
    let text = |camel: &str, snake: &str| {
        file.get(camel).or_else(|| file.get(snake)).and_then(Value::as_str).map(str::to_owned)
    };
    let (Some(name), Some(uri)) = (text("name", "name"), text("uri", "uri")) else {
        return Err(CallError::new(
            ErrorClass::BadResponse,
            format!("the Files API's answer names no file (name and uri): {}", snippet(body)),
        )
        .with_status(status.as_u16()));
    };
    Ok(FileInfo {
        name,
        uri,
        mime: text("mimeType", "mime_type"),
        expires_at: text("expirationTime", "expiration_time").as_deref().and_then(parse_rfc3339),
        state: text("state", "state"),
    })
}

/// `2026-11-26T10:00:00.123456Z` (or with an offset) as Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (clock, offset) = match time.find(['Z', 'z', '+', '-']) {
        Some(at) => (&time[..at], &time[at..]),
        None => (time, "Z"),
    };
    let mut c = clock.splitn(3, ':');
    let (h, mi) = (c.next()?.parse::<i64>().ok()?, c.next()?.parse::<i64>().ok()?);
    let sec: f64 = c.next().unwrap_or("0").parse().ok()?;
    let offset_s = match offset {
        "Z" | "z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..].split_once(':').unwrap_or((&o[1..], "0"));
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || !(0..24).contains(&h) || !(0..60).contains(&mi) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 - offset_s) as f64 + sec)
}

pub fn with_key(mut req: RequestBuilder, key: Option<&ApiKey>) -> RequestBuilder {
    if let Some(key) = key {
        let mut value =
            HeaderValue::try_from(key.expose()).unwrap_or_else(|_| HeaderValue::from_static("invalid-key-characters"));
        value.set_sensitive(true);
        req = req.header("x-goog-api-key", value);
    }
    req
}

/// Whether a 403 says an uploaded file is gone: "You do not have permission to access
/// the File X or it may not exist" (python-genai issue #1218), what Google answers for a
/// `fileData` whose file expired (48 h) or was deleted.
fn says_file_gone(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("permission to access the file") || (m.contains("file") && m.contains("may not exist"))
}

/// What a candidate's `finishReason` means for the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The image parts are the answer (STOP, or no finishReason at all).
    Done,
    /// Cut short at the output limit: the answer only if a complete image came.
    Truncated,
    /// No image for this prompt: final for the row (class `refused`).
    Refused,
    /// The account is limited: every row would get it (stop the run).
    AccountLimited,
    /// Says nothing about the prompt: retried a bounded number of times (`bad_response`).
    Retry,
}

/// The `finishReason` table. Values are from google-genai's `types.FinishReason`
/// (python-genai `google/genai/types.py`; FINISH_REASON_UNSPECIFIED, STOP, MAX_TOKENS,
/// SAFETY, RECITATION, LANGUAGE, OTHER, BLOCKLIST, PROHIBITED_CONTENT, SPII,
/// MALFORMED_FUNCTION_CALL, IMAGE_SAFETY, UNEXPECTED_TOOL_CALL, TOO_MANY_TOOL_CALLS,
/// IMAGE_PROHIBITED_CONTENT, NO_IMAGE, IMAGE_RECITATION, IMAGE_OTHER) and, not in the
/// SDK revision we could read, wire-formats.md's MALFORMED_RESPONSE, ESCALATION,
/// PUP_LIMITED_DISABLED and Vertex's MODEL_ARMOR ("blocked by Model Armor"). The SDK's
/// enums are case-insensitive (`_common.CaseInSensitiveEnum`), so is this.
pub fn finish(reason: Option<&str>) -> Finish {
    let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) else {
        return Finish::Done;
    };
    match reason.to_ascii_uppercase().as_str() {
        "STOP" => Finish::Done,
        "MAX_TOKENS" => Finish::Truncated,
        // The model or a filter would not give this prompt an image. JAILBREAK is a
        // `BlockedReason` in the SDK; should it ever come as a finish reason it is a block.
        "SAFETY"
        | "IMAGE_SAFETY"
        | "PROHIBITED_CONTENT"
        | "IMAGE_PROHIBITED_CONTENT"
        | "RECITATION"
        | "IMAGE_RECITATION"
        | "BLOCKLIST"
        | "SPII"
        | "LANGUAGE"
        | "ESCALATION"
        | "MODEL_ARMOR"
        | "JAILBREAK" => Finish::Refused,
        "PUP_LIMITED_DISABLED" => Finish::AccountLimited,
        // MALFORMED_RESPONSE, IMAGE_OTHER, OTHER, NO_IMAGE ("expected to generate an
        // image, but none was generated"), FINISH_REASON_UNSPECIFIED, the tool-call ones,
        // and values newer than this table: nothing says the prompt is at fault.
        _ => Finish::Retry,
    }
}

/// What to do when Google has limited the account (finishReason PUP_LIMITED_DISABLED).
pub const ACCOUNT_LIMITED: &str = "Google has limited this account or project (finishReason PUP_LIMITED_DISABLED): \
     every call is answered the same way and retrying does not lift it; look for a notice from Google in AI Studio \
     or the Cloud console of the project, or use a key of another project";

/// An answer, whole: the image, or the classified error.
pub fn parse_answer(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Generated, CallError> {
    if !status.is_success() {
        return Err(classify(status, headers, body));
    }
    let bad = |why: String| CallError::new(ErrorClass::BadResponse, why).with_status(status.as_u16());
    // An error object (maybe array-wrapped) under a 200, as relays send it: classify it.
    let error_under_200 = || match serde_json::from_slice::<Value>(body) {
        Ok(v) if error_object(&v).is_some() => Some(classify(StatusCode::BAD_REQUEST, headers, body)),
        _ => None,
    };
    let parsed = if body.trim_ascii_start().starts_with(b"[") {
        // A relay's one-element array around the answer.
        serde_json::from_slice::<Vec<Response>>(body).and_then(|mut v| match v.len() {
            1 => Ok(v.remove(0)),
            n => Err(serde::de::Error::custom(format!("an array of {n} answers where one was expected"))),
        })
    } else {
        serde_json::from_slice::<Response>(body)
    };
    let response = parsed
        .map_err(|e| error_under_200().unwrap_or_else(|| bad(format!("response is not the expected JSON: {e}"))))?;
    let refused = |why: String| CallError::new(ErrorClass::Refused, why).with_status(status.as_u16());
    // Any blockReason blocks the prompt (SDK `types.BlockedReason`: SAFETY, OTHER,
    // BLOCKLIST, PROHIBITED_CONTENT, IMAGE_SAFETY, MODEL_ARMOR, JAILBREAK, and newer
    // ones); only an empty or UNSPECIFIED one beside a candidate is no block.
    if let Some(fb) = response.prompt_feedback {
        let reason = fb.block_reason.as_deref().map(str::trim).unwrap_or_default();
        let no_block = reason.is_empty() || reason.eq_ignore_ascii_case("BLOCKED_REASON_UNSPECIFIED");
        if !no_block || (fb.block_reason.is_some() && response.candidates.is_empty()) {
            let detail = fb.block_reason_message.map(|m| format!(": {m}")).unwrap_or_default();
            return Err(refused(format!("prompt blocked (blockReason {reason}){detail}")));
        }
    }
    let Some(candidate) = response.candidates.into_iter().next() else {
        return Err(
            error_under_200().unwrap_or_else(|| bad("the response has no candidates and no blockReason".into()))
        );
    };
    let reason = candidate.finish_reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let shown = reason.unwrap_or("(none)");
    let detail = candidate.finish_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
    let parts = candidate.content.map(|c| c.parts).unwrap_or_default();
    let said = || {
        let said: Vec<&str> =
            parts.iter().filter(|p| p.thought != Some(true)).filter_map(|p| p.text.as_deref()).collect();
        if said.is_empty() { String::new() } else { format!("; it said: {}", said.join(" ")) }
    };
    let finished = finish(reason);
    match finished {
        Finish::Refused => return Err(refused(format!("no image: finishReason {shown}{detail}{}", said()))),
        Finish::AccountLimited => {
            return Err(CallError::new(
                ErrorClass::Auth,
                format!("the account is limited: finishReason {shown}{detail}"),
            )
            .with_status(status.as_u16())
            .with_advice(ACCOUNT_LIMITED));
        }
        Finish::Retry => return Err(bad(format!("no image: finishReason {shown}{detail}{}", said()))),
        Finish::Done | Finish::Truncated => {}
    }
    let image = parts
        .iter()
        .rev()
        .filter(|p| p.thought != Some(true))
        .find_map(|p| p.inline_data.as_ref().filter(|d| !d.data.is_empty()));
    let Some(data) = image else {
        // A STOP with text and no image: bulkgen asks for responseModalities ["IMAGE"],
        // and the SDK's NO_IMAGE ("expected to generate an image, but none was
        // generated") is this case named. Google's image-generation limitations say the
        // model may answer in text only when a prompt is ambiguous, and may stop early
        // ("try again"): nothing final, so it is retried a bounded number of times, and
        // the model's words go into the message for results.csv.
        return Err(bad(format!("no image in the answer (finishReason {shown}){}", said())));
    };
    // decode_image refuses an image that is not complete, whatever the finishReason (a
    // MAX_TOKENS answer is the usual cut one: its reason is named).
    let bytes = decode_image(&data.data).map_err(|e| {
        let mime = data.mime_type.as_deref().map(|m| format!(" (mimeType {m})")).unwrap_or_default();
        let cut = if finished == Finish::Truncated {
            format!("; the image was cut short (finishReason {shown}{detail})")
        } else {
            String::new()
        };
        bad(format!("{}{mime}{cut}", e.message))
    })?;
    Ok(Generated::Image(bytes, Said { revised_prompt: None, finish_reason: reason.map(str::to_owned) }))
}

/// The `error` object of a Gemini error body, also when wrapped in a one-element array.
fn error_object(v: &Value) -> Option<&Value> {
    let v = match v {
        Value::Array(items) => items.first()?,
        other => other,
    };
    v.get("error").filter(|e| e.is_object())
}

/// What to do when Google does not serve the API where the call comes from.
pub const REGION_NOT_SERVED: &str = "Google does not serve the Gemini API to the region the call comes from \
     (\"User location is not supported\"; a proxy, VPN or CDN in between counts by its exit region): no key, billing \
     or waiting changes that; run bulkgen from a machine in a supported region \
     (https://ai.google.dev/gemini-api/docs/available-regions), or reach the model through a provider that serves \
     it (an OpenAI-compatible aggregator: --provider openai --base-url URL)";

/// What to do when the quota is 0 (`limit: 0`: the free tier has no image quota).
pub const NO_QUOTA_AT_ALL: &str = "the project's quota for this model is 0 (\"limit: 0\": the free tier has no \
     quota for image models), so waiting never helps: enable billing on the project in Google AI Studio, or use a \
     key of a project that has it, then run the same command again";

/// What to do when the daily quota is used up.
pub const DAILY_QUOTA: &str = "the project's daily quota for this model is used up; it resets at midnight Pacific \
     time (ai.google.dev rate limits): run the same command again then, or get a larger quota by raising the \
     project's tier (enable billing or add credit in Google AI Studio)";

/// What to do about another FAILED_PRECONDITION.
pub const ENABLE_BILLING: &str = "Google refuses calls from this project until billing is set up (for one, the \
     free tier is not offered in every country): enable billing on the project in Google AI Studio, then run the \
     same command again";

/// The class of a Gemini error answer, from its HTTP status, `status` string and details.
/// Detail keys are read in camelCase and in the snake_case relays re-spell them in.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> CallError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(error_object);
    let field = |name: &str| error.and_then(|e| e.get(name)).and_then(Value::as_str).unwrap_or("");
    let (api_status, message) = (field("status"), field("message"));
    let details: &[Value] = error.and_then(|e| e.get("details")).and_then(Value::as_array).map_or(&[], |v| v);
    let detail_of = |kind: &'static str| {
        details.iter().filter(move |d| {
            d.get("@type").or_else(|| d.get("type")).and_then(Value::as_str).is_some_and(|t| t.ends_with(kind))
        })
    };
    let key_invalid = detail_of("ErrorInfo")
        .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        || message.contains("API key not valid");
    let violations =
        || detail_of("QuotaFailure").filter_map(|d| d.get("violations").and_then(Value::as_array)).flatten();
    let text_of = |v: &Value, camel: &str, snake: &str| {
        v.get(camel).or_else(|| v.get(snake)).map(|x| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let per_day = violations().any(|v| text_of(v, "quotaId", "quota_id").is_some_and(|q| q.contains("PerDay")));
    // "Quota exceeded for metric: generativelanguage.googleapis.com/
    // generate_content_free_tier_requests, limit: 0, model: gemini-3-pro-image": the
    // free tier has no quota for the model. QuotaFailure.Violation's `quota_value`
    // (google/rpc/error_details.proto) says the same when it is sent.
    let limit_zero = says_limit_zero(message)
        || violations().any(|v| text_of(v, "quotaValue", "quota_value").is_some_and(|q| q.trim() == "0"));
    let retry_delay = detail_of("RetryInfo")
        .find_map(|d| d.get("retryDelay").or_else(|| d.get("retry_delay")).and_then(parse_retry_delay));
    // 400 FAILED_PRECONDITION "User location is not supported for the API use.": the
    // API is not served where the call comes from (wire-formats.md; the message is
    // Google's). Billing does not fix it, so it is not called a quota problem.
    let region = message.to_ascii_lowercase().contains("location is not supported");

    let mut advice = None;
    let class = if key_invalid {
        ErrorClass::Auth
    } else {
        match (status.as_u16(), api_status) {
            (_, "FAILED_PRECONDITION") | (400, _) if region => {
                advice = Some(REGION_NOT_SERVED);
                ErrorClass::Auth
            }
            // A file reference that is gone is not a bad key: upload it again.
            (403, _) | (_, "PERMISSION_DENIED") if says_file_gone(message) => ErrorClass::FileGone,
            (_, "UNAUTHENTICATED" | "PERMISSION_DENIED") => ErrorClass::Auth,
            (_, "NOT_FOUND") => ErrorClass::NotFound,
            (_, "RESOURCE_EXHAUSTED") | (429, _) if limit_zero => {
                advice = Some(NO_QUOTA_AT_ALL);
                ErrorClass::Quota
            }
            (_, "RESOURCE_EXHAUSTED") | (429, _) if per_day => {
                advice = Some(DAILY_QUOTA);
                ErrorClass::Quota
            }
            (_, "RESOURCE_EXHAUSTED") => ErrorClass::RateLimited,
            // Billing (ai.google.dev troubleshooting: "Gemini API free tier is not
            // available in your country. Please enable billing on your project").
            (_, "FAILED_PRECONDITION") => {
                advice = Some(ENABLE_BILLING);
                ErrorClass::Quota
            }
            (_, "UNAVAILABLE") => ErrorClass::Overloaded,
            (_, "INTERNAL" | "DEADLINE_EXCEEDED" | "ABORTED") => ErrorClass::Server,
            _ => class_by_status(status),
        }
    };
    let mut text = if message.is_empty() { snippet(body) } else { message.to_owned() };
    if !api_status.is_empty() {
        text = format!("{text} [{api_status}]");
    }
    if class == ErrorClass::Quota && per_day && !limit_zero {
        text.push_str(" (daily quota: retrying within minutes will not help)");
    }
    let mut e = CallError::new(class, text)
        .with_status(status.as_u16())
        .with_retry_after(retry_delay.or_else(|| retry_after(headers, SystemTime::now())))
        .with_should_retry(should_retry(headers));
    if let Some(advice) = advice {
        e = e.with_advice(advice);
    }
    e
}

/// Whether a quota message says `limit: 0` (and not `limit: 0.5` or `limit: 05`).
fn says_limit_zero(message: &str) -> bool {
    message
        .match_indices("limit: 0")
        .any(|(at, found)| !message[at + found.len()..].starts_with(|c: char| c.is_ascii_digit() || c == '.'))
}

/// `"38s"`, `"45.8s"` (protobuf Duration in JSON), or `{"seconds": 38, "nanos": 0}` as
/// relays that do not use the JSON mapping send it.
fn parse_retry_delay(v: &Value) -> Option<Duration> {
    let secs = match v {
        Value::String(s) => s.trim().strip_suffix('s')?.parse().ok()?,
        Value::Object(o) => {
            let n = |k: &str| match o.get(k) {
                Some(Value::String(s)) => s.parse::<f64>().ok(),
                Some(x) => x.as_f64(),
                None => Some(0.0),
            };
            n("seconds")? + n("nanos")? / 1e9
        }
        _ => return None,
    };
    crate::retry::seconds(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Disposition;
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
        parse_answer(StatusCode::OK, &HeaderMap::new(), body.as_bytes())
    }

    /// A 200 answer with one candidate: `parts` (JSON) and `finishReason`.
    fn answer(parts: &str, finish: &str) -> String {
        format!(
            r#"{{"candidates":[{{"content":{{"role":"model","parts":[{parts}]}},"finishReason":"{finish}","index":0}}]}}"#
        )
    }

    fn image_part(png: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(png);
        format!(r#"{{"inlineData":{{"mimeType":"image/png","data":"{b64}"}}}}"#)
    }

    #[test]
    fn the_final_image_is_taken_and_drafts_are_skipped() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let (draft_png, final_png) = (crate::sim::png::make(500, 1, "draft"), crate::sim::png::make(500, 2, "final"));
        let (draft, last) = (b64(&draft_png), b64(&final_png));
        let body = format!(
            r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"text":"thinking","thought":true}},{{"inlineData":{{"mimeType":"image/png","data":"{draft}"}},"thought":true}},{{"text":"Here it is"}},{{"inlineData":{{"mimeType":"image/png","data":"{last}"}}}}]}},"finishReason":"STOP"}}],"usageMetadata":{{"promptTokenCount":8}}}}"#
        );
        assert_eq!(parse(&body).unwrap(), Generated::Image(final_png, Said::finished("STOP")));
    }

    #[test]
    fn blocked_prompts_and_refusal_finish_reasons_are_refusals() {
        let blocked =
            parse(r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{}}"#).unwrap_err();
        assert_eq!(blocked.class, ErrorClass::Refused);
        assert!(blocked.message.contains("PROHIBITED_CONTENT"));
        for reason in [
            "SAFETY",
            "IMAGE_SAFETY",
            "PROHIBITED_CONTENT",
            "IMAGE_PROHIBITED_CONTENT",
            "RECITATION",
            "IMAGE_RECITATION",
            "BLOCKLIST",
            "SPII",
            "LANGUAGE",
            "ESCALATION",
            "MODEL_ARMOR",
            "image_safety",
        ] {
            let e = parse(&answer("", reason)).unwrap_err();
            assert_eq!((e.class, e.disposition()), (ErrorClass::Refused, Disposition::FailRow), "{reason}");
            assert!(e.message.contains(reason), "{e}");
        }
        // A flagged image is not kept even when it came.
        let png = crate::sim::png::make(2_000, 1, "x");
        assert_eq!(parse(&answer(&image_part(&png), "IMAGE_SAFETY")).unwrap_err().class, ErrorClass::Refused);
        let with_message = r#"{"candidates":[{"content":{"parts":[]},"finishReason":"IMAGE_PROHIBITED_CONTENT","finishMessage":"Unable to show the generated image."}]}"#;
        assert!(parse(with_message).unwrap_err().message.contains("Unable to show the generated image."));
    }

    #[test]
    fn finish_reasons_that_say_nothing_of_the_prompt_are_retried() {
        for reason in [
            "MALFORMED_RESPONSE",
            "IMAGE_OTHER",
            "OTHER",
            "NO_IMAGE",
            "FINISH_REASON_UNSPECIFIED",
            "SOMETHING_NEW_IN_2027",
        ] {
            let e = parse(&answer(r#"{"text":"hmm"}"#, reason)).unwrap_err();
            assert_eq!((e.class, e.disposition()), (ErrorClass::BadResponse, Disposition::Retry), "{reason}");
            assert!(e.message.contains(reason) && e.message.contains("hmm"), "{e}");
        }
        // STOP with words and no image: bounded retries, the words kept for results.csv.
        let text_only = parse(&answer(r#"{"text":"I cannot draw that."}"#, "STOP")).unwrap_err();
        assert_eq!(text_only.class, ErrorClass::BadResponse);
        assert!(text_only.message.contains("no image") && text_only.message.contains("I cannot draw that."));
        assert_eq!(parse(r#"{"candidates":[]}"#).unwrap_err().class, ErrorClass::BadResponse);
        assert_eq!(parse("{\"candidates\": [").unwrap_err().class, ErrorClass::BadResponse);
        let bad_b64 = r#"{"candidates":[{"content":{"parts":[{"inlineData":{"data":"%%%"}}]},"finishReason":"STOP"}]}"#;
        assert_eq!(parse(bad_b64).unwrap_err().class, ErrorClass::BadResponse);
    }

    #[test]
    fn a_damaged_image_is_a_bad_response_whatever_the_finish_reason() {
        let png = crate::sim::png::make(4_000, 5, "x");
        let html = [&png[..8], b"<html>502 Bad Gateway</html>".as_slice()].concat();
        for (bytes, says) in [(&png[..png.len() / 2], "cut short"), (html.as_slice(), "damaged PNG")] {
            let e = parse(&answer(&image_part(bytes), "STOP")).unwrap_err();
            assert_eq!((e.class, e.disposition()), (ErrorClass::BadResponse, Disposition::Retry));
            assert!(e.message.contains(says) && e.message.contains("mimeType image/png"), "{e}");
        }
    }

    #[test]
    fn max_tokens_keeps_a_complete_image_and_retries_a_cut_one() {
        let png = crate::sim::png::make(4_000, 5, "x");
        assert!(crate::output::is_complete_image(&png));
        assert_eq!(
            parse(&answer(&image_part(&png), "MAX_TOKENS")).unwrap(),
            Generated::Image(png.clone(), Said::finished("MAX_TOKENS"))
        );
        let cut = parse(&answer(&image_part(&png[..png.len() - 20]), "MAX_TOKENS")).unwrap_err();
        assert_eq!(cut.class, ErrorClass::BadResponse);
        assert!(cut.message.contains("cut short"), "{cut}");
        assert_eq!(parse(&answer(r#"{"text":"..."}"#, "MAX_TOKENS")).unwrap_err().class, ErrorClass::BadResponse);
        // No finishReason at all (some relays drop it): the image is the answer.
        let none = format!(r#"{{"candidates":[{{"content":{{"parts":[{}]}}}}]}}"#, image_part(&png));
        assert_eq!(parse(&none).unwrap(), Generated::Image(png, Said::default()));
    }

    #[test]
    fn a_limited_account_stops_the_run_with_its_own_advice() {
        let e = parse(&answer("", "PUP_LIMITED_DISABLED")).unwrap_err();
        assert_eq!((e.class, e.disposition()), (ErrorClass::Auth, Disposition::StopRun));
        assert_eq!(e.advice(), ACCOUNT_LIMITED);
        assert!(e.message.contains("PUP_LIMITED_DISABLED"));
    }

    #[test]
    fn a_relays_snake_case_and_url_safe_answer_reads_the_same() {
        let png = crate::sim::png::make(3_000, 7, "x");
        let b64 = base64::engine::general_purpose::URL_SAFE.encode(&png);
        // As google-genai's `to_json_dict()` dumps a GenerateContentResponse.
        let body = format!(
            r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"text":"draft","thought":true}},{{"inline_data":{{"mime_type":"image/png","data":"{b64}"}}}}]}},"finish_reason":"STOP","index":0}}],"usage_metadata":{{"prompt_token_count":8}},"model_version":"gemini-3-pro-image"}}"#
        );
        assert_eq!(parse(&body).unwrap(), Generated::Image(png.clone(), Said::finished("STOP")));
        // The same wrapped in a one-element array.
        assert_eq!(parse(&format!("[{body}]")).unwrap(), Generated::Image(png, Said::finished("STOP")));
        let blocked = parse(
            r#"{"prompt_feedback":{"block_reason":"PROHIBITED_CONTENT","block_reason_message":"The prompt was blocked."}}"#,
        )
        .unwrap_err();
        assert_eq!(blocked.class, ErrorClass::Refused);
        assert!(blocked.message.contains("PROHIBITED_CONTENT") && blocked.message.contains("The prompt was blocked."));
        let refused = parse(
            r#"[{"candidates":[{"content":{"parts":[]},"finish_reason":"IMAGE_SAFETY","finish_message":"no"}]}]"#,
        )
        .unwrap_err();
        assert_eq!(refused.class, ErrorClass::Refused);
        // An error object under a 200, bare or array-wrapped, is classified.
        let e =
            parse(r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#);
        assert_eq!(e.unwrap_err().class, ErrorClass::RateLimited);
        let e = parse(r#"[{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}]"#);
        assert_eq!(e.unwrap_err().class, ErrorClass::Auth);
        // An unspecified blockReason beside an image blocks nothing.
        let png = crate::sim::png::make(3_000, 8, "x");
        let fine = format!(
            r#"{{"candidates":[{{"content":{{"parts":[{}]}},"finishReason":"STOP"}}],"promptFeedback":{{"blockReason":"BLOCKED_REASON_UNSPECIFIED"}}}}"#,
            image_part(&png)
        );
        assert_eq!(parse(&fine).unwrap(), Generated::Image(png, Said::finished("STOP")));
    }

    #[test]
    fn the_image_data_is_borrowed_from_the_body_in_both_spellings() {
        for body in [
            r#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}}]}}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"inline_data":{"mime_type":"image/png","data":"iVBORw0KGgo="}}]}}]}"#,
        ] {
            let r: Response = serde_json::from_str(body).unwrap();
            let part = &r.candidates[0].content.as_ref().unwrap().parts[0];
            let data = part.inline_data.as_ref().unwrap();
            assert!(matches!(data.data, Cow::Borrowed(_)), "{body}");
            assert_eq!(data.mime_type.as_deref(), Some("image/png"));
        }
    }

    #[test]
    fn quota_region_and_billing_errors_say_what_fixes_them() {
        let free = r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-3-pro-image\nPlease retry in 38.1s.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaDimensions":{"location":"global","model":"gemini-3-pro-image"}}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"38s"}]}}"#;
        let e = class_of(429, free);
        assert_eq!((e.class, e.disposition()), (ErrorClass::Quota, Disposition::StopRun));
        assert_eq!(e.advice(), NO_QUOTA_AT_ALL);
        assert!(e.advice().contains("waiting never helps") && e.advice().contains("billing"));
        // A daily free-tier quota of 0 is still "no quota at all", not "wait for tomorrow".
        let daily_zero = r#"{"error":{"code":429,"message":"Quota exceeded for metric: generativelanguage.googleapis.com/generate_requests_per_model_per_day, limit: 0","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}}"#;
        assert_eq!(class_of(429, daily_zero).advice(), NO_QUOTA_AT_ALL);
        let by_value = r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quota_id":"GenerateRequestsPerMinute","quota_value":"0"}]}]}}"#;
        assert_eq!(class_of(429, by_value).advice(), NO_QUOTA_AT_ALL);
        // `limit: 0` must be the whole number.
        assert!(says_limit_zero("limit: 0, model: x") && says_limit_zero("limit: 0"));
        assert!(!says_limit_zero("limit: 05") && !says_limit_zero("limit: 0.5") && !says_limit_zero("limit: 10"));
        let daily = r#"{"error":{"code":429,"message":"Quota exceeded for metric: generativelanguage.googleapis.com/generate_requests_per_model_per_day, limit: 250","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel"}]}]}}"#;
        let e = class_of(429, daily);
        assert_eq!((e.class, e.advice()), (ErrorClass::Quota, DAILY_QUOTA));
        assert!(e.message.contains("daily quota"));

        let region = r#"{"error":{"code":400,"message":"User location is not supported for the API use.","status":"FAILED_PRECONDITION"}}"#;
        let e = class_of(400, region);
        assert_eq!((e.class, e.disposition()), (ErrorClass::Auth, Disposition::StopRun));
        assert_eq!(e.advice(), REGION_NOT_SERVED);
        assert!(!e.advice().contains("quota") && e.advice().contains("region"));
        // As a relay passes it on: Google's body inside its own message.
        let relayed = r#"{"error":{"message":"{\n \"error\": {\n \"code\": 400,\n \"message\": \"User location is not supported for the API use.\",\n \"status\": \"FAILED_PRECONDITION\"\n }\n}\n","code":400,"status":"Bad Request"}}"#;
        assert_eq!(class_of(400, relayed).advice(), REGION_NOT_SERVED);
        let billing = r#"{"error":{"code":400,"message":"Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.","status":"FAILED_PRECONDITION"}}"#;
        let e = class_of(400, billing);
        assert_eq!((e.class, e.advice()), (ErrorClass::Quota, ENABLE_BILLING));
        // Plain rate limits keep the class's (empty) advice and are retried.
        let rate = class_of(
            429,
            r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!((rate.class, rate.advice(), rate.disposition()), (ErrorClass::RateLimited, "", Disposition::Retry));
    }

    #[test]
    fn snake_case_details_conflicts_and_x_should_retry() {
        let snake = r#"{"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retry_delay":"12.5s"}]}}"#;
        assert_eq!(class_of(429, snake).retry_after, Some(Duration::from_millis(12_500)));
        let object = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":{"seconds":"7","nanos":500000000}}]}}"#;
        assert_eq!(class_of(429, object).retry_after, Some(Duration::from_millis(7_500)));
        let absurd = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1e20s"}]}}"#;
        assert_eq!(class_of(429, absurd).retry_after, Some(Duration::MAX), "saturates, never panics");
        let absurd = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":{"seconds":"1e30"}}]}}"#;
        assert_eq!(class_of(429, absurd).retry_after, Some(Duration::MAX));
        let aborted = class_of(409, r#"{"error":{"code":409,"message":"conflict","status":"ABORTED"}}"#);
        assert_eq!((aborted.class, aborted.disposition()), (ErrorClass::Server, Disposition::Retry));
        let mut h = HeaderMap::new();
        h.insert("x-should-retry", HeaderValue::from_static("false"));
        let e = classify(StatusCode::SERVICE_UNAVAILABLE, &h, br#"{"error":{"code":503,"status":"UNAVAILABLE"}}"#);
        assert_eq!((e.class, e.disposition()), (ErrorClass::Overloaded, Disposition::FailRow));
    }

    #[test]
    fn requests_carry_the_resolved_size_and_the_params() {
        let p = Gemini::new(&"https://generativelanguage.googleapis.com".parse().unwrap());
        let client = test_client();
        let key = ApiKey::new("k-123456");
        let size = WireSize::Gemini { image_size: "2K".into(), ratio: crate::size::AspectRatio::parse("16:9") };
        let mut params = crate::params::Params::new();
        crate::params::set(&mut params, "generationConfig.thinkingConfig.thinkingLevel", "low".into());
        let job = Job {
            prompt: "p",
            model: "m-1",
            size: &size,
            response_format: None,
            params: &params,
            refs: &[],
            mask: None,
            n: 1,
        };
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

    #[test]
    fn references_go_as_parts_before_the_text() {
        let p = Gemini::new(&"https://generativelanguage.googleapis.com".parse().unwrap());
        let client = test_client();
        let size = WireSize::Gemini { image_size: "1K".into(), ratio: None };
        let params = crate::params::Params::new();
        let refs = [
            RefPart::Inline { mime: "image/png", name: "a.png".into(), bytes: bytes::Bytes::from_static(b"\x89PNG..") },
            RefPart::File { mime: "image/jpeg", uri: "https://g.example/v1beta/files/abc".into() },
        ];
        let job = Job {
            prompt: "p",
            model: "m-1",
            size: &size,
            response_format: None,
            params: &params,
            refs: &refs,
            mask: None,
            n: 1,
        };
        let req = p.request(&client, None, &job).build().unwrap();
        let v: Value = serde_json::from_slice(req.body().unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(
            v["contents"][0]["parts"],
            serde_json::json!([
                {"inlineData": {"mimeType": "image/png", "data": "iVBORy4u"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://g.example/v1beta/files/abc"}},
                {"text": "p"}
            ])
        );
    }

    #[test]
    fn a_file_gone_is_not_a_bad_key() {
        let gone = class_of(
            403,
            r#"{"error":{"code":403,"message":"You do not have permission to access the File abc123 or it may not exist.","status":"PERMISSION_DENIED"}}"#,
        );
        assert_eq!(gone.class, ErrorClass::FileGone);
        assert!(gone.message.contains("abc123"), "{gone}");
        let denied = class_of(
            403,
            r#"{"error":{"code":403,"message":"Method doesn't allow unregistered callers","status":"PERMISSION_DENIED"}}"#,
        );
        assert_eq!(denied.class, ErrorClass::Auth);
    }

    #[test]
    fn uploads_announce_the_file_and_their_answers_are_read() {
        let base: Url = "https://generativelanguage.googleapis.com".parse().unwrap();
        let client = test_client();
        let key = ApiKey::new("k-uploads-1");
        let req = upload_start(&base, &client, Some(&key), "bulkgen-ab", "image/png", 1234).build().unwrap();
        assert_eq!(req.url().as_str(), "https://generativelanguage.googleapis.com/upload/v1beta/files");
        let h = req.headers();
        assert_eq!(h["x-goog-upload-protocol"], "resumable");
        assert_eq!(h["x-goog-upload-command"], "start");
        assert_eq!(h["x-goog-upload-header-content-length"], "1234");
        assert_eq!(h["x-goog-upload-header-content-type"], "image/png");
        assert_eq!(h["x-goog-api-key"], "k-uploads-1");
        let mut headers = HeaderMap::new();
        assert_eq!(upload_url(StatusCode::OK, &headers, b"").unwrap_err().class, ErrorClass::BadResponse);
        headers.insert("x-goog-upload-url", HeaderValue::from_static("https://g.example/upload?upload_id=7"));
        assert_eq!(upload_url(StatusCode::OK, &headers, b"").unwrap().as_str(), "https://g.example/upload?upload_id=7");
        let body = br#"{"file":{"name":"files/abc","uri":"https://g.example/v1beta/files/abc","mimeType":"image/png",
            "sizeBytes":"1234","expirationTime":"2026-11-26T10:00:00.500Z","state":"ACTIVE"}}"#;
        let f = parse_file(StatusCode::OK, &HeaderMap::new(), body).unwrap();
        assert_eq!(
            (f.name.as_str(), f.uri.as_str(), f.state.as_deref()),
            ("files/abc", "https://g.example/v1beta/files/abc", Some("ACTIVE"))
        );
        assert_eq!(f.expires_at, Some(1_795_687_200.5));
        let e = parse_file(StatusCode::OK, &HeaderMap::new(), br#"{"file":{}}"#).unwrap_err();
        assert_eq!(e.class, ErrorClass::BadResponse);
    }

    #[test]
    fn rfc3339_times_are_read_with_their_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(parse_rfc3339("2026-11-26T12:00:00+02:00"), parse_rfc3339("2026-11-26T10:00:00Z"));
        assert_eq!(parse_rfc3339("2026-11-26T08:30:00-01:30"), parse_rfc3339("2026-11-26T10:00:00Z"));
        for bad in ["", "2026-13-01T00:00:00Z", "tomorrow", "2026-11-26T25:00:00Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    fn test_client() -> Client {
        let policy = crate::http::HttpPolicy { connect_timeout: Duration::from_secs(1), http2: false, concurrency: 1 };
        crate::http::client(policy).unwrap()
    }
}
