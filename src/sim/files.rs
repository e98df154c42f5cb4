//! The Gemini Files API, as google-genai 3.4.0 speaks it (tests/sdk/fixtures.json,
//! `requests` `genai.files.*`): a resumable upload (a `start` POST carrying the
//! `X-Goog-Upload-*` headers and the key, answered with `x-goog-upload-url`; then one or
//! more POSTs of the bytes to that URL, `upload` with the running offset and
//! `upload, finalize` on the last, which the SDK sends without the key), `files.get`, and
//! delete. Limits come from the fixtures (2 GB a file, 48 h).
//!
//! Only a file's sha256, MIME type, size, image kind and expiry are kept, never its
//! bytes: an upload is hashed as it streams in. A JSONL upload (a batch's input) also
//! keeps its lines, parsed as they stream in, in the compact form of
//! [`super::batch::gemini::InputLine`] (inline image payloads replaced by their hashes).
//!
//! `GET {version}/files/{id}:download` (where google-genai's `files.download` asks) serves
//! a batch's results file; on `/v1/files/{id}`, a request with OpenAI's key goes to
//! OpenAI's Files API ([`super::openai_files`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine;
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::batch::{self, LineReader, gemini::InputLine};
use super::rules::FIXTURES;
use super::wire::{self, Wire};
use super::{Shared, openai_files, refs};

/// The upload granularity google-genai uses (fixtures: gemini.files.upload_chunk_bytes).
const CHUNK_GRANULARITY: u64 = 8 * 1024 * 1024;

/// One uploaded file: what it was, never its bytes.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub sha256: [u8; 32],
    pub mime: String,
    pub size: u64,
    /// The image kind its first bytes show, if any.
    pub kind: Option<&'static str>,
    pub display_name: Option<String>,
    pub version: String,
    pub created: SystemTime,
    pub expires: Instant,
    pub expires_wall: SystemTime,
    /// The lines of a JSONL upload.
    pub content: Option<Arc<Vec<InputLine>>>,
}

impl StoredFile {
    pub fn sha256_hex(&self) -> String {
        refs::hex(&self.sha256)
    }

    fn json(&self, id: &str, host: &str) -> Value {
        let mut v = json!({
            "name": format!("files/{id}"),
            "mimeType": self.mime,
            "sizeBytes": self.size.to_string(),
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(self.created),
            "expirationTime": rfc3339(self.expires_wall),
            // base64, as google-genai's File.sha256_hash documents it.
            "sha256Hash": base64::engine::general_purpose::STANDARD.encode(self.sha256),
            "uri": format!("http://{host}/{}/files/{id}", self.version),
            "state": "ACTIVE",
            "source": "UPLOADED",
        });
        if let Some(name) = &self.display_name {
            v["displayName"] = Value::from(name.as_str());
        }
        v
    }
}

/// An upload between its start and its finalize.
struct Session {
    mime: String,
    display_name: Option<String>,
    announced: u64,
    received: u64,
    hasher: Sha256,
    head: Vec<u8>,
    version: String,
    /// A JSONL upload's lines so far.
    jsonl: Option<(LineReader, Vec<InputLine>)>,
}

#[derive(Default)]
pub struct FileStore {
    next: u64,
    sessions: HashMap<u64, Session>,
    files: HashMap<String, StoredFile>,
    /// Generation requests that carried a `fileData` part.
    file_requests: u64,
    forgotten: bool,
}

/// Why a file cannot be used.
pub struct Gone;

impl FileStore {
    /// The file `id`, if it exists and has not expired (an expired one is dropped).
    pub fn resolve(&mut self, id: &str) -> Result<&StoredFile, Gone> {
        let expired = self.files.get(id).map(|f| f.expires <= Instant::now());
        match expired {
            Some(false) => Ok(&self.files[id]),
            Some(true) => {
                self.files.remove(id);
                Err(Gone)
            }
            None => Err(Gone),
        }
    }

    /// Counts one generation request that carried `fileData`; after the `forget_after`-th,
    /// every uploaded file is forgotten (once), as if expired or deleted.
    pub fn note_file_request(&mut self, forget_after: Option<u64>) {
        self.file_requests += 1;
        if forget_after.is_some_and(|n| self.file_requests >= n) && !self.forgotten {
            self.forgotten = true;
            self.files.clear();
        }
    }
}

/// The file lifetime in real time: `file_ttl` scaled like every simulated duration,
/// except at time scale 0 (answers at once), where it is taken as it is, so files do not
/// expire the moment they are made.
fn real_ttl(s: &Shared) -> Duration {
    if s.cfg.time_scale > 0.0 {
        Duration::try_from_secs_f64(s.cfg.file_ttl.as_secs_f64() * s.cfg.time_scale).unwrap_or(Duration::MAX)
    } else {
        s.cfg.file_ttl
    }
}

/// The largest file an upload may announce.
pub fn max_file_bytes(s: &Shared) -> u64 {
    s.cfg.max_reference_bytes.unwrap_or(FIXTURES.files.max_bytes)
}

fn host(headers: &HeaderMap) -> String {
    headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_owned()
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|h| h.to_str().ok()).map(str::trim)
}

/// `POST /upload/{v1beta|v1}/files`: the start of an upload, or (with `upload_id`) its
/// bytes.
pub async fn upload(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let version = uri.path().trim_start_matches("/upload/").split('/').next().unwrap_or("v1beta").to_owned();
    match query.get("upload_id") {
        Some(id) => chunk(&s, id, &headers, body).await,
        None => start(&s, &version, &headers, body).await,
    }
}

async fn start(s: &Shared, version: &str, headers: &HeaderMap, body: Body) -> Response {
    s.stats.lock().expect("stats lock").upload_starts += 1;
    let key = wire::gemini_key(headers);
    if !s.key_ok(&key) {
        s.stats.lock().expect("stats lock").auth_failures += 1;
        return Wire::Gemini.bad_key(&key);
    }
    let bad = |why: String| Wire::Gemini.bad_request(&why);
    if !header_text(headers, "x-goog-upload-protocol").is_some_and(|p| p.eq_ignore_ascii_case("resumable")) {
        return bad("X-Goog-Upload-Protocol must be 'resumable'.".into());
    }
    if !header_text(headers, "x-goog-upload-command").is_some_and(|c| c.eq_ignore_ascii_case("start")) {
        return bad("X-Goog-Upload-Command must be 'start' to begin an upload.".into());
    }
    let Some(announced) =
        header_text(headers, "x-goog-upload-header-content-length").and_then(|n| n.parse::<u64>().ok())
    else {
        return bad("X-Goog-Upload-Header-Content-Length is missing or not a number.".into());
    };
    let Some(mime) = header_text(headers, "x-goog-upload-header-content-type").filter(|m| !m.is_empty()) else {
        return bad("X-Goog-Upload-Header-Content-Type is missing.".into());
    };
    // A batch's input (JSONL) may be as large as the Batch API takes; a reference as
    // large as the Files API (and the test's override) allows.
    let jsonl = batch::is_jsonl_mime(mime);
    let limit = if jsonl { FIXTURES.batch.gemini_input_max_bytes } else { max_file_bytes(s) };
    if announced > limit {
        return Wire::refusal(&FIXTURES.gemini_request_too_large(limit));
    }
    // The metadata: {"file": {"display_name": .., "mime_type": .., "size_bytes": ..}}
    // (the SDK's snake_case; camelCase read too). Small: bounded at 64 KiB.
    let meta = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) if b.is_empty() => Value::Null,
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(v) => v,
            Err(e) => return bad(format!("could not parse the JSON body: {e}")),
        },
        Err(_) => return bad("the upload's metadata is larger than 64 KiB".into()),
    };
    let file = &meta["file"];
    let display_name =
        file.get("display_name").or_else(|| file.get("displayName")).and_then(Value::as_str).map(str::to_owned);
    let id = {
        let mut store = s.file_store.lock().expect("files lock");
        store.next += 1;
        let id = store.next;
        store.sessions.insert(
            id,
            Session {
                mime: mime.to_owned(),
                display_name,
                announced,
                received: 0,
                hasher: Sha256::new(),
                head: Vec::new(),
                version: version.to_owned(),
                jsonl: jsonl.then(|| {
                    let max_line = usize::try_from(FIXTURES.files.max_request_bytes).unwrap_or(usize::MAX);
                    (LineReader::new(max_line), Vec::new())
                }),
            },
        );
        id
    };
    let url = format!("http://{}/upload/{version}/files?upload_id={id}&upload_protocol=resumable", host(headers));
    Response::builder()
        .status(StatusCode::OK)
        .header("x-goog-upload-url", url)
        .header("x-goog-upload-status", "active")
        .header("x-goog-upload-chunk-granularity", CHUNK_GRANULARITY.to_string())
        .body(Body::empty())
        .expect("valid response")
}

fn upload_status(status: &'static str, received: u64) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header("x-goog-upload-status", status)
        .header("x-goog-upload-size-received", received.to_string())
        .body(Body::empty())
        .expect("valid response")
}

async fn chunk(s: &Shared, upload_id: &str, headers: &HeaderMap, body: Body) -> Response {
    let bad = |why: String| Wire::Gemini.bad_request(&why);
    let command = header_text(headers, "x-goog-upload-command").unwrap_or("").to_ascii_lowercase();
    let commands: Vec<&str> = command.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
    let id: u64 = upload_id.parse().unwrap_or(0);
    // The session leaves the store while its bytes stream in (the lock is not held
    // across awaits), and goes back unless finalized or failed.
    let Some(mut session) = s.file_store.lock().expect("files lock").sessions.remove(&id) else {
        return wire::json_response(
            StatusCode::NOT_FOUND,
            json!({"error": {"code": 404, "message": format!("No upload session {upload_id:?}."), "status": "NOT_FOUND"}})
                .to_string(),
        );
    };
    let put_back = |session: Session| {
        s.file_store.lock().expect("files lock").sessions.insert(id, session);
    };
    if commands == ["query"] {
        let received = session.received;
        put_back(session);
        return upload_status("active", received);
    }
    let upload = commands.contains(&"upload");
    let finalize = commands.contains(&"finalize");
    if !upload && !finalize || commands.iter().any(|c| !matches!(*c, "upload" | "finalize")) {
        put_back(session);
        return bad(format!("X-Goog-Upload-Command {command:?}: expected 'upload', 'upload, finalize' or 'finalize'."));
    }
    let offset = header_text(headers, "x-goog-upload-offset").and_then(|o| o.parse::<u64>().ok());
    if upload && offset != Some(session.received) {
        let received = session.received;
        put_back(session);
        return bad(format!("X-Goog-Upload-Offset must be {received}, the bytes received so far."));
    }
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let Ok(bytes) = frame else {
            // The client went away: the session is dropped, as a failed upload.
            return bad("the upload was interrupted".into());
        };
        session.received += bytes.len() as u64;
        if session.received > session.announced {
            return bad(format!(
                "The upload is longer than the {} bytes announced in X-Goog-Upload-Header-Content-Length.",
                session.announced
            ));
        }
        if session.head.len() < refs::SNIFF_LEN {
            let take = (refs::SNIFF_LEN - session.head.len()).min(bytes.len());
            session.head.extend_from_slice(&bytes[..take]);
        }
        session.hasher.update(&bytes);
        if let Some((reader, lines)) = session.jsonl.as_mut() {
            reader.push(&bytes, |l| lines.push(batch::gemini::parse_line(l)));
        }
    }
    if !finalize {
        let received = session.received;
        put_back(session);
        return upload_status("active", received);
    }
    if session.received != session.announced {
        return bad(format!(
            "The upload has {} bytes, not the {} announced in X-Goog-Upload-Header-Content-Length.",
            session.received, session.announced
        ));
    }
    if !s.cfg.upload_latency.is_zero() {
        tokio::time::sleep(s.cfg.upload_latency).await;
    }
    let ttl = real_ttl(s);
    let now = SystemTime::now();
    let content = session.jsonl.take().map(|(mut reader, mut lines)| {
        reader.finish(|l| lines.push(batch::gemini::parse_line(l)));
        Arc::new(lines)
    });
    let file = StoredFile {
        sha256: session.hasher.finalize().into(),
        kind: refs::sniff(&session.head),
        mime: session.mime,
        size: session.received,
        display_name: session.display_name,
        version: session.version,
        created: now,
        expires: Instant::now().checked_add(ttl).unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 40)),
        expires_wall: now.checked_add(ttl).unwrap_or(now + Duration::from_secs(1 << 40)),
        content,
    };
    let file_id = format!("sim-{id}");
    let answer = json!({"file": file.json(&file_id, &host(headers))});
    {
        let mut st = s.stats.lock().expect("stats lock");
        st.uploads += 1;
        st.upload_bytes += file.size;
    }
    s.file_store.lock().expect("files lock").files.insert(file_id, file);
    let mut resp = wire::json_response(StatusCode::OK, answer.to_string());
    resp.headers_mut().insert("x-goog-upload-status", "final".parse().expect("header"));
    resp
}

/// `GET /{version}/files/{id}`: the file, or the 403 of a file that is gone; with
/// `:download`, a batch's results file.
pub async fn get(State(s): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(id) = id.strip_suffix(":download") {
        return batch::gemini::download_file(&s, id, &headers).await;
    }
    lookup(&s, &id, &headers, false)
}

/// `DELETE /{version}/files/{id}`.
pub async fn delete(State(s): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    lookup(&s, &id, &headers, true)
}

/// `/v1/files/{id}` is OpenAI's too: a request without Google's key header is OpenAI's
/// files.retrieve.
pub async fn get_v1(state: State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if headers.get("x-goog-api-key").is_none() {
        return openai_files::retrieve(&state.0, &id, &headers).await;
    }
    get(state, Path(id), headers).await
}

pub async fn delete_v1(State(s): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if headers.get("x-goog-api-key").is_none() {
        return openai_files::delete(&s, &id, &headers).await;
    }
    lookup(&s, &id, &headers, true)
}

fn lookup(s: &Shared, id: &str, headers: &HeaderMap, delete: bool) -> Response {
    let key = wire::gemini_key(headers);
    if !s.key_ok(&key) {
        s.stats.lock().expect("stats lock").auth_failures += 1;
        return Wire::Gemini.bad_key(&key);
    }
    let found = {
        let mut store = s.file_store.lock().expect("files lock");
        let found = store.resolve(id).map(|f| f.json(id, &host(headers))).ok();
        if delete && found.is_some() {
            store.files.remove(id);
        }
        found
    };
    let mut st = s.stats.lock().expect("stats lock");
    if !delete {
        st.file_gets += 1;
    }
    match found {
        Some(_) if delete => wire::json_response(StatusCode::OK, "{}".into()),
        Some(file) => wire::json_response(StatusCode::OK, file.to_string()),
        None => {
            st.files_gone += 1;
            Wire::refusal(&FIXTURES.gemini_file_gone(id))
        }
    }
}

/// RFC 3339 in UTC with microseconds, as Google writes times: `2026-11-26T10:00:00.000000Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    format!(
        "{}T{:02}:{:02}:{:02}.{:06}Z",
        crate::catalog::civil_date(days as i64),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_687_200) + Duration::from_micros(5);
        assert_eq!(rfc3339(t), "2026-11-26T10:00:00.000005Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn forgetting_happens_once_after_the_nth_request() {
        let mut store = FileStore::default();
        let file = || StoredFile {
            sha256: [0; 32],
            mime: "image/png".into(),
            size: 1,
            kind: None,
            display_name: None,
            version: "v1beta".into(),
            created: SystemTime::now(),
            expires: Instant::now() + Duration::from_secs(60),
            expires_wall: SystemTime::now(),
            content: None,
        };
        store.files.insert("a".into(), file());
        store.note_file_request(Some(2));
        assert!(store.resolve("a").is_ok());
        store.note_file_request(Some(2));
        assert!(store.resolve("a").is_err());
        store.files.insert("a".into(), file());
        store.note_file_request(Some(2));
        assert!(store.resolve("a").is_ok(), "only once");
    }
}
