//! OpenAI's Files API, as much as its Batch API needs (tests/sdk/fixtures.json, `batch`):
//! `POST /v1/files` (multipart: `purpose`, then `file` with its name and type, as
//! openai-python sends it) answering a FileObject; `GET /v1/files/{id}`;
//! `GET /v1/files/{id}/content` for a batch's output and error files (streamed, made line
//! by line); `DELETE /v1/files/{id}`.
//!
//! A `batch` file must be named `.jsonl` and hold at most 200 MB (a 400 at upload, as
//! OpenAI answers); its lines are parsed as they stream in and kept in a compact form (the
//! checks of each line wait for the batch's validation). Other files (reference images
//! for batch edits, purpose `vision`) keep only their hash, size and image kind, like the
//! Gemini Files API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::batch::{self, LineReader, Which, openai, unix};
use super::rules::FIXTURES;
use super::wire::{self, Wire};
use super::{Shared, refs};

/// What an uploaded file holds, as kept.
#[derive(Debug, Clone)]
pub enum Content {
    /// A JSONL file's lines.
    Batch(Arc<Vec<openai::InputLine>>),
    /// Anything else: its hash, size and image kind (if it is an image).
    Image { sha256: String, len: u64, kind: Option<&'static str> },
}

#[derive(Debug, Clone)]
pub struct OpenAiFile {
    pub id: String,
    pub filename: String,
    pub purpose: String,
    pub bytes: u64,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub content: Content,
}

impl OpenAiFile {
    /// The FileObject (openai/types/file_object.py).
    fn json(&self) -> Value {
        json!({
            "id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
            "filename": self.filename, "purpose": self.purpose, "status": "processed",
            "expires_at": self.expires_at, "status_details": null,
        })
    }
}

#[derive(Default)]
pub struct Store {
    next: u64,
    pub files: HashMap<String, OpenAiFile>,
}

/// The most `files.create` takes, read as a stream (512 MB, the SDK's docstring).
pub fn body_limit() -> usize {
    usize::try_from(FIXTURES.batch.openai_file_max_bytes + 1024 * 1024).unwrap_or(usize::MAX)
}

fn key_refused(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let key = wire::openai_key(headers);
    if s.key_ok(&key) {
        return None;
    }
    s.stats.lock().expect("stats lock").auth_failures += 1;
    Some(Wire::OpenAi.bad_key(&key))
}

/// The file part of an upload, as it streamed in.
struct Part {
    filename: String,
    len: u64,
    lines: Option<Vec<openai::InputLine>>,
    sha256: String,
    kind: Option<&'static str>,
}

/// `POST /v1/files`.
pub(super) async fn upload(State(s): State<Arc<Shared>>, headers: HeaderMap, req: Request) -> Response {
    if let Some(r) = key_refused(&s, &headers) {
        return r;
    }
    let mut multipart = match Multipart::from_request(req, &()).await {
        Ok(m) => m,
        Err(e) => return Wire::OpenAi.bad_request(&format!("Expected a multipart/form-data body: {}", e.body_text())),
    };
    let too_large = || Wire::refusal(&FIXTURES.batch.error("openai_file_too_large", &[]));
    let (mut purpose, mut part): (Option<String>, Option<Part>) = (None, None);
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(),
            Err(e) => return Wire::OpenAi.bad_request(&e.body_text()),
        };
        let name = field.name().unwrap_or("").to_owned();
        if name != "file" {
            let mut value = Vec::new();
            while let Ok(Some(bytes)) = field.chunk().await {
                if value.len() + bytes.len() > 64 * 1024 {
                    return Wire::OpenAi.bad_request(&format!("Field '{name}' is too long."));
                }
                value.extend_from_slice(&bytes);
            }
            if name == "purpose" {
                purpose = Some(String::from_utf8_lossy(&value).into_owned());
            }
            continue;
        }
        let filename = field.file_name().unwrap_or("upload").to_owned();
        let jsonl =
            filename.to_ascii_lowercase().ends_with(".jsonl") || field.content_type().is_some_and(batch::is_jsonl_mime);
        let max_line = usize::try_from(FIXTURES.files.max_request_bytes).unwrap_or(usize::MAX);
        let mut reader = jsonl.then(|| (LineReader::new(max_line), Vec::new()));
        // Past what a batch file may hold its lines are of no use (the upload is refused,
        // or is not a batch's): they are not kept.
        let batch_limit = s.cfg.batch_max_bytes.unwrap_or(FIXTURES.batch.openai_max_input_bytes);
        let (mut hasher, mut head, mut len) = (Sha256::new(), Vec::new(), 0u64);
        loop {
            match field.chunk().await {
                Ok(Some(bytes)) => {
                    len += bytes.len() as u64;
                    if len > batch_limit {
                        reader = None;
                    }
                    match reader.as_mut() {
                        Some((r, lines)) => r.push(&bytes, |l| lines.push(openai::parse_line(l))),
                        None => {
                            if head.len() < refs::SNIFF_LEN {
                                let take = (refs::SNIFF_LEN - head.len()).min(bytes.len());
                                head.extend_from_slice(&bytes[..take]);
                            }
                            hasher.update(&bytes);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(),
                Err(e) => return Wire::OpenAi.bad_request(&e.body_text()),
            }
        }
        let lines = reader.map(|(mut r, mut lines)| {
            r.finish(|l| lines.push(openai::parse_line(l)));
            lines
        });
        part = Some(Part { filename, len, lines, sha256: refs::hex(&hasher.finalize()), kind: refs::sniff(&head) });
    }
    let Some(purpose) = purpose else { return Wire::refusal(&FIXTURES.openai_missing_parameter("purpose")) };
    let Some(part) = part else { return Wire::refusal(&FIXTURES.openai_missing_parameter("file")) };
    let rules = &FIXTURES.batch;
    if !rules.file_purposes.contains(&purpose) {
        return Wire::refusal(&FIXTURES.openai_invalid_choice("purpose", &purpose, &rules.file_purposes));
    }
    let batch_limit = s.cfg.batch_max_bytes.unwrap_or(rules.openai_max_input_bytes);
    if part.len > rules.openai_file_max_bytes || (purpose == "batch" && part.len > batch_limit) {
        return too_large();
    }
    let content = match part.lines {
        Some(lines) => Content::Batch(Arc::new(lines)),
        None if purpose == "batch" => return Wire::refusal(&FIXTURES.batch.error("openai_batch_not_jsonl", &[])),
        None => Content::Image { sha256: part.sha256, len: part.len, kind: part.kind },
    };
    let now = unix(SystemTime::now());
    let file = {
        let mut store = s.openai_files.lock().expect("openai files lock");
        store.next += 1;
        let ttl = Duration::from_secs(rules.openai_batch_file_ttl_days * 86_400).as_secs();
        let file = OpenAiFile {
            id: format!("file-{}", openai::hex_id(s.cfg.seed, store.next)),
            filename: part.filename,
            expires_at: (purpose == "batch").then_some(now + ttl),
            purpose,
            bytes: part.len,
            created_at: now,
            content,
        };
        store.files.insert(file.id.clone(), file.clone());
        file
    };
    s.stats.lock().expect("stats lock").file_uploads_openai += 1;
    // The file is stored before the answer is held back, as a provider's would be: a
    // client killed now never hears of it.
    if !s.cfg.upload_latency.is_zero() {
        tokio::time::sleep(s.cfg.upload_latency).await;
    }
    batch::ok(&file.json())
}

/// A batch's output or error file, if `id` is one: its results and which lines.
fn result_file(s: &Shared, id: &str) -> Option<(Arc<batch::Results>, Which, String, u64)> {
    s.advance_batches();
    let jobs = s.batches.lock().expect("batches lock");
    let (i, which) = *jobs.files.get(id)?;
    let job = &jobs.jobs[i];
    let ended = job.ended_after(job.phase(std::time::Instant::now())).unwrap_or_default();
    Some((job.results.clone()?, which, job.id.clone(), unix(job.wall(ended))))
}

fn no_such_file(id: &str) -> Response {
    Wire::refusal(&FIXTURES.batch.error("openai_no_such_file", &[("id", id), ("param", "id")]))
}

/// `GET /v1/files/{id}` (OpenAI's key): the FileObject. A result file's size is counted
/// by making it once.
pub(super) async fn retrieve(s: &Arc<Shared>, id: &str, headers: &HeaderMap) -> Response {
    if let Some(r) = key_refused(s, headers) {
        return r;
    }
    if let Some(f) = s.openai_files.lock().expect("openai files lock").files.get(id) {
        return batch::ok(&f.json());
    }
    match result_file(s, id) {
        Some((results, which, job, created_at)) => {
            let kind = if which == Which::Output { "output" } else { "error" };
            batch::ok(&json!({
                "id": id, "object": "file", "bytes": Shared::result_file_len(&results, which),
                "created_at": created_at, "filename": format!("{job}_{kind}.jsonl"), "purpose": "batch_output",
                "status": "processed", "expires_at": null, "status_details": null,
            }))
        }
        None => no_such_file(id),
    }
}

/// `DELETE /v1/files/{id}` (OpenAI's key).
pub(super) async fn delete(s: &Arc<Shared>, id: &str, headers: &HeaderMap) -> Response {
    if let Some(r) = key_refused(s, headers) {
        return r;
    }
    let removed = s.openai_files.lock().expect("openai files lock").files.remove(id).is_some()
        || s.batches.lock().expect("batches lock").files.remove(id).is_some();
    if removed { batch::ok(&json!({"id": id, "object": "file", "deleted": true})) } else { no_such_file(id) }
}

/// `GET /v1/files/{id}/content`: a batch's output or error file, streamed.
pub(super) async fn content(State(s): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = key_refused(&s, &headers) {
        return r;
    }
    if let Some((results, which, ..)) = result_file(&s, &id) {
        return s.stream_results(results, which);
    }
    let purpose = s.openai_files.lock().expect("openai files lock").files.get(&id).map(|f| f.purpose.clone());
    match purpose {
        // OpenAI's answer for uploads it does not hand back.
        Some(p) => Wire::OpenAi.bad_request(&format!("Not allowed to download files of purpose: {p}")),
        None => no_such_file(&id),
    }
}
