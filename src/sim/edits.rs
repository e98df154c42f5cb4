//! OpenAI's `/v1/images/edits` (and Google's OpenAI-compatible `/v1beta/openai/images/edits`):
//! `multipart/form-data` as openai-python sends it (tests/sdk/fixtures.json, `requests`
//! `openai.images.edit*`): text fields first, then `image` (one file) or repeated `image[]`
//! (a list), then `mask`. Files are hashed as they stream in and never kept.
//!
//! What a model takes comes from the fixtures: how many images, their types (the part's
//! declared type, as the API checks it, and the bytes' magic), the size of each, the
//! PNG mask; plus every rule of a generation (model, size, `response_format`, enums).

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::rules::{Dialect, FIXTURES, Refusal};
use super::wire::Wire;
use super::{Accepted, InFlight, Shared, refs};

/// The most a text field may hold (a prompt is at most 32,000 characters).
const MAX_TEXT_FIELD: usize = 1024 * 1024;

/// One file part as received.
#[derive(Debug, Clone)]
struct FilePart {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    sha256: String,
    len: u64,
    kind: Option<&'static str>,
}

impl FilePart {
    fn summary(&self) -> Value {
        json!({"name": self.name, "filename": self.filename, "content_type": self.content_type,
               "sha256": self.sha256, "len": self.len})
    }

    /// The declared type; a part without one is what httpx sends for bare bytes.
    fn declared(&self) -> &str {
        self.content_type.as_deref().unwrap_or("application/octet-stream")
    }
}

struct Form {
    fields: Map<String, Value>,
    files: Vec<FilePart>,
}

fn is_image_field(name: &str) -> bool {
    name == "image" || name.starts_with("image[")
}

async fn read_form(req: Request) -> Result<Form, Response> {
    let too_large = |s: StatusCode| {
        if s == StatusCode::PAYLOAD_TOO_LARGE {
            Some(Wire::refusal(&FIXTURES.request_too_large(super::edit_body_limit() as u64)))
        } else {
            None
        }
    };
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|e| Wire::OpenAi.bad_request(&format!("Expected a multipart/form-data body: {}", e.body_text())))?;
    let mut form = Form { fields: Map::new(), files: Vec::new() };
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(too_large(e.status()).unwrap_or_else(|| Wire::OpenAi.bad_request(&e.body_text()))),
        };
        let name = field.name().unwrap_or("").to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        if filename.is_some() || is_image_field(&name) || name == "mask" {
            let (mut hasher, mut len, mut head) = (Sha256::new(), 0u64, Vec::new());
            loop {
                match field.chunk().await {
                    Ok(Some(bytes)) => {
                        len += bytes.len() as u64;
                        if head.len() < refs::SNIFF_LEN {
                            let take = (refs::SNIFF_LEN - head.len()).min(bytes.len());
                            head.extend_from_slice(&bytes[..take]);
                        }
                        hasher.update(&bytes);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Err(too_large(e.status()).unwrap_or_else(|| Wire::OpenAi.bad_request(&e.body_text())));
                    }
                }
            }
            form.files.push(FilePart {
                name,
                filename,
                content_type,
                sha256: refs::hex(&hasher.finalize()),
                len,
                kind: refs::sniff(&head),
            });
        } else {
            let mut value = Vec::new();
            loop {
                match field.chunk().await {
                    Ok(Some(bytes)) => {
                        if value.len() + bytes.len() > MAX_TEXT_FIELD {
                            return Err(Wire::OpenAi.bad_request(&format!("Field '{name}' is too long.")));
                        }
                        value.extend_from_slice(&bytes);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Err(too_large(e.status()).unwrap_or_else(|| Wire::OpenAi.bad_request(&e.body_text())));
                    }
                }
            }
            form.fields.insert(name, Value::String(String::from_utf8_lossy(&value).into_owned()));
        }
    }
    Ok(form)
}

/// `POST /v1/images/edits`.
pub async fn edit(State(s): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, req: Request) -> Response {
    let arrived = s.started.elapsed();
    let (_guard, now) = InFlight::enter(&s.in_flight);
    s.stats.lock().expect("stats lock").edits += 1;
    let form = read_form(req).await;
    let fields = form.as_ref().map(|f| Value::Object(f.fields.clone())).unwrap_or(Value::Null);
    let parsed = Wire::OpenAi.parse(None, &headers, &fields);
    let tag = parsed.as_ref().map(|r| super::prompt_tag(&r.prompt)).unwrap_or_default();
    let kept = match &form {
        Ok(f) => json!({"fields": f.fields, "files": f.files.iter().map(FilePart::summary).collect::<Vec<_>>()}),
        Err(_) => Value::String("(not a multipart/form-data body)".into()),
    };
    let first_of_prompt = s.arrive(arrived, now, uri.path(), kept, &tag);
    let form = match form {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let req = match parsed {
        Ok(r) => r,
        Err(why) => return Wire::OpenAi.bad_request(&why),
    };
    if !s.key_ok(&req.key) {
        s.stats.lock().expect("stats lock").auth_failures += 1;
        return Wire::OpenAi.bad_key(&req.key);
    }
    if !form.fields.contains_key("prompt") {
        return Wire::refusal(&FIXTURES.openai_missing_parameter("prompt"));
    }
    let images: Vec<&FilePart> = form.files.iter().filter(|f| is_image_field(&f.name)).collect();
    let mask = form.files.iter().find(|f| f.name == "mask");
    if images.is_empty() {
        return Wire::refusal(&FIXTURES.openai_missing_parameter("image"));
    }
    if !s.serves(&req.model) {
        return Wire::OpenAi.unknown_model(&req.model, "v1");
    }
    let known = FIXTURES.model(&req.model);
    if let Err(refusal) = check(&s, known, &fields, &images, mask) {
        return Wire::refusal(&refusal);
    }
    {
        let mut st = s.stats.lock().expect("stats lock");
        st.references += images.len() as u64;
    }
    let accepted = Accepted {
        wire: Wire::OpenAi,
        req: &req,
        tag,
        first_of_prompt,
        refs: images.iter().map(|f| f.sha256.clone()).collect(),
        mask: mask.map(|m| m.sha256.clone()),
    };
    super::answer(&s, accepted, &headers).await
}

/// The model's rules: a generation's, then the images' and the mask's. Models the
/// fixtures do not know (a test's `primary`) are let through.
fn check(
    s: &Shared,
    known: Option<&super::rules::Model>,
    fields: &Value,
    images: &[&FilePart],
    mask: Option<&FilePart>,
) -> Result<(), Refusal> {
    let Some(m) = known else { return Ok(()) };
    if m.dialect != Dialect::Openai || !m.edits {
        return Err(FIXTURES.openai_edits_unsupported(&m.id));
    }
    FIXTURES.check_openai(Some(m), fields)?;
    if images.len() > m.max_reference_images {
        return Err(FIXTURES.openai_too_many_images(m.max_reference_images, images.len()));
    }
    let max_bytes = s.cfg.max_reference_bytes.or(m.max_reference_bytes);
    // The API names the formats in alphabetical order.
    let mut formats = m.reference_formats.clone();
    formats.sort();
    for (i, image) in images.iter().enumerate() {
        let param = if image.name == "image" { "image".to_owned() } else { format!("image[{i}]") };
        if !formats.iter().any(|f| f == image.declared()) {
            return Err(FIXTURES.openai_unsupported_mimetype(&param, image.declared(), &formats));
        }
        if let Some(max) = max_bytes.filter(|max| image.len > *max) {
            return Err(FIXTURES.openai_file_too_large(&param, image.len, max));
        }
        if !image.kind.is_some_and(|k| formats.iter().any(|f| f == k)) {
            return Err(FIXTURES.openai_invalid_image_file(i + 1));
        }
    }
    if let Some(mask) = mask {
        let Some(rule) = &m.mask else { return Err(FIXTURES.openai_unknown_parameter("mask")) };
        if !rule.formats.iter().any(|f| f == mask.declared()) {
            return Err(FIXTURES.openai_unsupported_mimetype("mask", mask.declared(), &rule.formats));
        }
        let max = s.cfg.max_reference_bytes.map_or(rule.max_bytes, |o| o.min(rule.max_bytes));
        if mask.len > max {
            return Err(FIXTURES.openai_file_too_large("mask", mask.len, max));
        }
        if !mask.kind.is_some_and(|k| rule.formats.iter().any(|f| f == k)) {
            return Err(FIXTURES.openai_invalid_mask());
        }
    }
    Ok(())
}
