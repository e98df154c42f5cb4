//! A hostile endpoint, through the CLI (issue 10, items 4-7): bodies that never end or
//! claim 10 GB, redirects that would carry the key away, result URLs at the cloud
//! metadata address, a key echoed across the cuts of error texts, and images that are
//! damaged. Every server here is a few lines of tokio on 127.0.0.1:0, so it can answer
//! what no real HTTP framework would let it.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers to one request.
#[derive(Clone)]
enum Reply {
    /// A whole answer with a Content-Length.
    Full { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// 200, chunked, with chunks forever (until the client goes away).
    Endless,
    /// 200 claiming this Content-Length, then bytes until the client goes away.
    Claims(u64),
}

impl Reply {
    fn json(status: u16, body: String) -> Reply {
        Reply::Full { status, headers: vec![("content-type".into(), "application/json".into())], body: body.into() }
    }

    fn redirect(status: u16, location: &str) -> Reply {
        Reply::Full { status, headers: vec![("location".into(), location.into())], body: Vec::new() }
    }
}

/// One request as the server saw it (header names in lower case).
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Seen {
    /// The `prompt` of an OpenAI-style request body, or of a Gemini one.
    fn prompt(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        v["prompt"].as_str().or_else(|| v["contents"][0]["parts"][0]["text"].as_str()).unwrap_or_default().to_owned()
    }

    /// Whether the request carried the API key in either dialect's header.
    fn carries(&self, key: &str) -> bool {
        self.headers.values().any(|v| v.contains(key))
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// The server: answers request N (from 0) with `handler(request, N)`. Stops when dropped.
struct Hostile {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Body bytes written in all, for the replies that never end.
    written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    async fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let written = Arc::new(AtomicU64::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (s, w) = (seen.clone(), written.clone());
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the accept task drops them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                conns.spawn(serve(stream, handler.clone(), s.clone(), w.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        Hostile { addr, seen, written, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: requests read one after the other (keep-alive), each answered.
async fn serve(mut stream: TcpStream, handler: Arc<Handler>, seen: Arc<Mutex<Vec<Seen>>>, written: Arc<AtomicU64>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let path = lines.next().unwrap_or_default().split(' ').nth(1).unwrap_or_default().to_owned();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let request = Seen { path, headers, body: buf[head_end..head_end + length].to_vec() };
        buf.drain(..head_end + length);
        let n = {
            let mut seen = seen.lock().unwrap();
            seen.push(request.clone());
            seen.len() - 1
        };
        match handler(&request, n) {
            Reply::Full { status, headers, body } => {
                let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&body);
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::Endless => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let data = vec![b'A'; 64 << 10];
                let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
                chunk.extend_from_slice(&data);
                chunk.extend_from_slice(b"\r\n");
                while stream.write_all(&chunk).await.is_ok() {
                    written.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                return;
            }
            Reply::Claims(n) => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {n}\r\n\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let data = vec![b'{'; 64 << 10];
                while stream.write_all(&data).await.is_ok() {
                    written.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                return;
            }
        }
    }
}

/// A key of 42 random-looking characters: any 8 of them in a row found in a file is a leak.
const LONG_KEY: &str = "sk-live-7Hq2Wm9Xc4Vb7Nz1Lk8Jf3Gd6Sa5Pt0RyE";

/// A manifest of (id, prompt) rows.
fn rows(dir: &Path, rows: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("manifest.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["id", "prompt"]).unwrap();
    for (id, prompt) in rows {
        w.write_record([id, prompt]).unwrap();
    }
    w.flush().unwrap();
    path
}

/// `bulkgen run` against `base`, without the preflight unless ARGS has it, the key
/// [`LONG_KEY`], to its end: 20 s at most, so a run that hangs fails the test.
async fn run_at(base: &str, manifest: &Path, out: &Path, args: &[&str]) -> Output {
    let mut c = run_cmd(base, manifest, out, &[]);
    c.env("BULKGEN_API_KEY", LONG_KEY).args(args);
    tokio::time::timeout(Duration::from_secs(20), c.output()).await.expect("the run ends within 20 s").unwrap()
}

fn png(seed: u64) -> Vec<u8> {
    bulkgen::sim::png::make(3_000, seed, "hostile=1")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An OpenAI images answer holding `image` as base64.
fn openai_image(image: &[u8]) -> Reply {
    Reply::json(200, format!(r#"{{"created":1,"data":[{{"b64_json":"{}"}}]}}"#, b64(image)))
}

/// An OpenAI images answer that points at `url`.
fn openai_url(url: &str) -> Reply {
    Reply::json(200, format!(r#"{{"created":1,"data":[{{"url":"{url}"}}]}}"#))
}

/// (kind, error_class, message) of every attempt, in order.
fn attempt_messages(out: &Path) -> Vec<(String, Option<String>, Option<String>)> {
    let db = rusqlite::Connection::open(out.join("bulkgen.db")).unwrap();
    let mut st = db.prepare("SELECT kind, error_class, message FROM attempts ORDER BY started_at, rowid").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

/// `path` holds exactly `image` (a short message when not: no byte dump).
fn assert_same_image(path: &Path, image: &[u8]) {
    let file = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        file == image,
        "{} holds {} bytes that are not the whole image of {} bytes",
        path.display(),
        file.len(),
        image.len()
    );
}

fn images(out: &Path) -> Vec<String> {
    match std::fs::read_dir(out.join("images")) {
        Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

// ---- item 4: no body, however large or endless, grows memory without bound ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_stops_at_max_response_bytes_and_the_row_fails_as_bad_response() {
    let server = Hostile::start(|_, _| Reply::Endless).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = rows(dir.path(), &[("endless", "a prompt")]);
    let out = dir.path().join("out");
    let args = ["--no-preflight", "--max-response-bytes", "1MiB", "--max-attempts", "2"];
    let o = run_at(&server.url(), &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let row = &results(&out)[0];
    assert_eq!((row["status"].as_str(), row["error_class"].as_str()), ("failed", "bad_response"), "{row:?}");
    assert!(
        row["error"].contains("--max-response-bytes 1 MiB") && row["error"].contains("while it streamed"),
        "{row:?}"
    );
    let tries = attempt_messages(&out);
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert!(tries.iter().all(|t| t.1.as_deref() == Some("bad_response")), "{tries:?}");
    assert_eq!(server.seen().len(), 2);
    // The client stopped reading near the cap: what the server got out is the cap plus
    // the sockets' buffers, not an ever-growing body.
    let written = server.written.load(Ordering::Relaxed);
    assert!(written < 64 << 20, "the server wrote {written} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_claims_10_gb_is_refused_before_it_is_read() {
    let server = Hostile::start(|_, _| Reply::Claims(10_000_000_000)).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = rows(dir.path(), &[("huge", "a prompt")]);
    let out = dir.path().join("out");
    let args = ["--no-preflight", "--max-response-bytes", "1MiB", "--max-attempts", "2"];
    let o = run_at(&server.url(), &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let row = &results(&out)[0];
    assert_eq!((row["status"].as_str(), row["error_class"].as_str()), ("failed", "bad_response"), "{row:?}");
    let error = &row["error"];
    assert!(error.contains("10000000000 bytes") && error.contains("Content-Length"), "{error}");
    assert!(error.contains("--max-response-bytes 1 MiB") && error.contains("refused before reading"), "{error}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--max-response-bytes"), "{}", text(&o));
    assert_eq!(server.seen().len(), 2);
    let written = server.written.load(Ordering::Relaxed);
    assert!(written < 64 << 20, "the server wrote {written} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_url_that_never_ends_fails_as_a_download() {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let server = Hostile::start(move |req, _| match req.path.as_str() {
        "/v1/images/generations" => openai_url(&format!("{}/image.png", b.lock().unwrap())),
        _ => Reply::Endless,
    })
    .await;
    *base.lock().unwrap() = server.url();
    let dir = tempfile::tempdir().unwrap();
    let manifest = rows(dir.path(), &[("far", "a prompt")]);
    let out = dir.path().join("out");
    let args = ["--no-preflight", "--max-response-bytes", "256KiB", "--max-attempts", "2"];
    let o = run_at(&server.url(), &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let row = &results(&out)[0];
    assert_eq!((row["status"].as_str(), row["error_class"].as_str()), ("failed", "download"), "{row:?}");
    assert!(row["error"].contains("the download passed --max-response-bytes 256 KiB"), "{row:?}");
    let generations = server.seen().iter().filter(|s| s.path == "/v1/images/generations").count();
    assert_eq!(generations, 1, "a paid image is downloaded again, never generated again");
    assert!(images(&out).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_response_bytes_takes_units_and_refuses_zero_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = rows(dir.path(), &[("a", "a prompt")]);
    let out = dir.path().join("out");
    for (value, says) in [("0", "at least 1 byte"), ("lots", "not a size"), ("5XB", "unknown unit")] {
        let o = run_at("http://127.0.0.1:9", &manifest, &out, &["--max-response-bytes", value]).await;
        assert_eq!(o.status.code(), Some(2), "{value}: {}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains("--max-response-bytes") && stderr.contains(says), "{value}: {stderr}");
        assert!(stderr.contains("128MiB"), "the message shows how to write a size: {stderr}");
        assert!(!out.exists(), "nothing is created on a usage error");
    }
    // Units are taken (the plan of a dry run needs no server).
    for value in ["1048576", "512KiB", "500MB", "2GiB", "64k"] {
        let o = run_at("http://127.0.0.1:9", &manifest, &out, &["--max-response-bytes", value, "--dry-run"]).await;
        assert_eq!(o.status.code(), Some(0), "{value}: {}", text(&o));
    }
}

// ---- item 5: the key goes only where --base-url says; result URLs are no SSRF ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_redirect_is_not_followed_and_the_key_never_reaches_its_target() {
    for dialect in ["openai", "gemini"] {
        for preflight in [false, true] {
            let evil = Hostile::start(|_, _| openai_image(&png(1))).await;
            let location = format!("{}/steal?from=bulkgen", evil.url());
            let to = location.clone();
            let server = Hostile::start(move |_, _| Reply::redirect(307, &to)).await;
            let dir = tempfile::tempdir().unwrap();
            let manifest = rows(dir.path(), &[("a", "first"), ("b", "second")]);
            let out = dir.path().join("out");
            let mut args = vec!["--provider", dialect, "-c", "1"];
            if !preflight {
                args.push("--no-preflight");
            }
            let o = run_at(&server.url(), &manifest, &out, &args).await;
            let case = format!("{dialect}, preflight {preflight}");
            assert_eq!(o.status.code(), Some(3), "{case}: {}", text(&o));
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(stderr.contains(&format!("to {location}")), "{case}: the Location is named: {stderr}");
            assert!(stderr.contains("as --base-url"), "{case}: the fix is named: {stderr}");
            assert!(!stderr.contains(LONG_KEY));
            let carried = evil.seen().iter().filter(|s| s.carries(LONG_KEY)).count();
            assert_eq!(carried, 0, "{case}: the key reached the redirect's target");
            assert!(evil.seen().is_empty(), "{case}: the redirect was followed");
            assert_eq!(server.seen().len(), 1, "{case}: one redirect stops the run");
            if !preflight {
                assert!(states(&out).values().all(|s| s == "pending"), "{case}: rows wait for a fixed --base-url");
            } else {
                assert!(!out.exists(), "{case}: the preflight stops before anything is created");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_url_at_a_metadata_address_is_refused_without_connecting() {
    let targets = [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[fe80::1]/x",
        "file:///etc/passwd",
    ];
    let server = Hostile::start(move |req, _| {
        let i: usize = req.prompt().parse().unwrap();
        openai_url(targets[i])
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = rows(dir.path(), &[("imds", "0"), ("imds6", "1"), ("linklocal", "2"), ("file", "3")]);
    let out = dir.path().join("out");
    // A connect attempt to 169.254.169.254 would take the connect timeout or more: the
    // 20 s guard and the text below tell a refusal from a failed connect.
    let o = run_at(&server.url(), &manifest, &out, &["--no-preflight", "--max-attempts", "2"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let by_id: HashMap<String, HashMap<String, String>> =
        results(&out).into_iter().map(|r| (r["id"].clone(), r)).collect();
    for id in ["imds", "imds6", "linklocal"] {
        let row = &by_id[id];
        assert_eq!((row["status"].as_str(), row["error_class"].as_str()), ("failed", "download"), "{row:?}");
        assert!(row["error"].contains("link-local or cloud metadata address"), "{row:?}");
        assert!(row["error"].contains("is not fetched"), "refused before any connect: {row:?}");
    }
    let file = &by_id["file"];
    assert_eq!(file["error_class"], "download");
    assert!(file["error"].contains("only http and https"), "{file:?}");
    let downloads: Vec<_> = attempt_messages(&out).into_iter().filter(|a| a.0 == "download").collect();
    assert_eq!(downloads.len(), 4, "one try per row: a URL refused as written is not tried again: {downloads:?}");
    assert!(downloads.iter().all(|d| d.1.as_deref() == Some("download")));
    assert!(images(&out).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_carry_no_key_and_follow_redirects_only_to_safe_addresses() {
    // The image host is another server (another port: another origin). The API server
    // hands out URLs on it, or on itself with a redirect there, or a redirect to the
    // metadata address.
    let host = Hostile::start(|_, _| Reply::Full { status: 200, headers: Vec::new(), body: png(9) }).await;
    let image_at = format!("{}/image.png", host.url());
    let api_base = Arc::new(Mutex::new(String::new()));
    let (at, api) = (image_at.clone(), api_base.clone());
    let server = Hostile::start(move |req, _| match (req.path.as_str(), req.prompt().as_str()) {
        ("/v1/images/generations", "direct") => openai_url(&at),
        ("/v1/images/generations", "via") => openai_url(&format!("{}/hop", api.lock().unwrap())),
        ("/v1/images/generations", _) => openai_url(&format!("{}/imds", api.lock().unwrap())),
        ("/hop", _) => Reply::redirect(302, &at),
        _ => Reply::redirect(302, "http://169.254.169.254/latest/meta-data/"),
    })
    .await;
    *api_base.lock().unwrap() = server.url();
    let dir = tempfile::tempdir().unwrap();
    let manifest = rows(dir.path(), &[("direct", "direct"), ("via", "via"), ("imds", "imds")]);
    let out = dir.path().join("out");
    let o = run_at(&server.url(), &manifest, &out, &["--no-preflight", "--max-attempts", "2"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let by_id: HashMap<String, HashMap<String, String>> =
        results(&out).into_iter().map(|r| (r["id"].clone(), r)).collect();
    assert_eq!(by_id["direct"]["status"], "done");
    assert_eq!(by_id["via"]["status"], "done", "a redirect to an ordinary host is followed");
    let imds = &by_id["imds"];
    assert_eq!((imds["status"].as_str(), imds["error_class"].as_str()), ("failed", "download"), "{imds:?}");
    assert!(imds["error"].contains("redirect") && imds["error"].contains("169.254.169.254"), "{imds:?}");
    assert_eq!(host.seen().len(), 2);
    for s in host.seen().iter().chain(server.seen().iter().filter(|s| s.path != "/v1/images/generations")) {
        assert!(!s.carries(LONG_KEY), "a download carried the key: {s:?}");
        assert!(!s.headers.contains_key("authorization") && !s.headers.contains_key("x-goog-api-key"), "{s:?}");
    }
    assert!(server.seen().iter().filter(|s| s.path == "/v1/images/generations").all(|s| s.carries(LONG_KEY)));
}

// ---- item 6: the key leaks nowhere, also when a cut goes through it ----

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { all.extend(files(&p)) } else { all.push(p) }
    }
    all
}

/// The first 8-byte piece of [`LONG_KEY`] in `bytes`, if any.
fn key_piece_in(bytes: &[u8]) -> Option<String> {
    LONG_KEY
        .as_bytes()
        .windows(8)
        .find(|piece| bytes.windows(8).any(|w| w == *piece))
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_echoed_across_the_cuts_leaks_nowhere() {
    // The key begins 16 bytes before each cut: the 300-byte snippet of a body that is
    // not JSON, the 500-byte cut of an error message, and the same under a 401 that
    // stops the run (its text goes to stderr).
    let echo =
        |before_cut: usize| format!("{}{LONG_KEY} is not valid here, and more words.", "x".repeat(before_cut - 16));
    let server = Hostile::start(move |req, _| match req.prompt().as_str() {
        "snippet" => Reply::Full { status: 400, headers: Vec::new(), body: echo(300).into_bytes() },
        "message" => Reply::json(
            400,
            serde_json::json!({"error": {"message": echo(500), "type": "invalid_request_error"}}).to_string(),
        ),
        _ => Reply::json(
            401,
            serde_json::json!({"error": {"message": echo(500), "type": "invalid_request_error"}}).to_string(),
        ),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut leaks = Vec::new();
    for (name, prompts) in [("rows", vec![("s", "snippet"), ("m", "message")]), ("stop", vec![("k", "stop")])] {
        let sub = dir.path().join(name);
        std::fs::create_dir(&sub).unwrap();
        let manifest = rows(&sub, &prompts);
        let out = sub.join("out");
        let o = run_at(&server.url(), &manifest, &out, &["--no-preflight", "-c", "1"]).await;
        let expected = if name == "stop" { 3 } else { 1 };
        assert_eq!(o.status.code(), Some(expected), "{name}: {}", text(&o));
        // The texts were there to leak: the errors are recorded and printed.
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains("xxxxxxxx"), "{name}: the error text is printed: {stderr}");
        for (what, bytes) in [("stdout", o.stdout.clone()), ("stderr", o.stderr.clone())] {
            if let Some(piece) = key_piece_in(&bytes) {
                leaks.push(format!("{name}: {what} holds {piece:?}"));
            }
        }
        let written = files(&out);
        assert!(
            written.iter().any(|f| f.ends_with("bulkgen.db")) && written.iter().any(|f| f.ends_with("results.csv"))
        );
        for f in written {
            if let Some(piece) = key_piece_in(&std::fs::read(&f).unwrap()) {
                leaks.push(format!("{name}: {} holds {piece:?}", f.display()));
            }
        }
        let messages = attempt_messages(&out);
        assert!(!messages.is_empty() && messages.iter().all(|m| m.2.as_deref().is_some_and(|t| t.contains("xxxx"))));
    }
    assert!(leaks.is_empty(), "parts of the key leaked:\n{}", leaks.join("\n"));
}

// ---- item 7: a damaged image is never marked done ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_png_is_retried_and_only_the_whole_one_is_kept() {
    let whole = png(5);
    let good = whole.clone();
    let server = Hostile::start(move |_, n| match n {
        0 => openai_image(&good[..good.len() / 2]),
        _ => openai_image(&good),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = rows(dir.path(), &[("cut", "a prompt")]);
    let out = dir.path().join("out");
    let o = run_at(&server.url(), &manifest, &out, &["--no-preflight", "--max-attempts", "3"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_same_image(&out.join("images/cut.png"), &whole);
    let tries = attempt_messages(&out);
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert_eq!(tries[0].1.as_deref(), Some("bad_response"));
    assert!(tries[0].2.as_deref().is_some_and(|m| m.contains("PNG cut short")), "{tries:?}");
    assert_eq!(tries[1].1, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_is_always_damaged_fails_the_row_and_leaves_no_file() {
    // A PNG signature in front of an error page (openai, and gemini's inlineData), and a
    // result URL that serves a PNG cut in half.
    let html = [b"\x89PNG\r\n\x1a\n".as_slice(), b"<html><body>502 Bad Gateway</body></html>"].concat();
    let half = png(6)[..1500].to_vec();
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let server = Hostile::start(move |req, _| {
        if req.path.contains(":generateContent") {
            return Reply::json(
                200,
                format!(
                    r#"{{"candidates":[{{"content":{{"parts":[{{"inlineData":{{"mimeType":"image/png","data":"{}"}}}}]}},"finishReason":"STOP"}}]}}"#,
                    b64(&html)
                ),
            );
        }
        match (req.path.as_str(), req.prompt().as_str()) {
            ("/v1/images/generations", "url") => openai_url(&format!("{}/half.png", b.lock().unwrap())),
            ("/v1/images/generations", _) => openai_image(&html),
            _ => Reply::Full { status: 200, headers: Vec::new(), body: half.clone() },
        }
    })
    .await;
    *base.lock().unwrap() = server.url();
    for (dialect, prompt, class, says) in [
        ("openai", "b64", "bad_response", "is a damaged PNG"),
        ("gemini", "b64", "bad_response", "is a damaged PNG"),
        ("openai", "url", "download", "is a PNG cut short"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let manifest = rows(dir.path(), &[("bad", prompt)]);
        let out = dir.path().join("out");
        let args = ["--provider", dialect, "--no-preflight", "--max-attempts", "2"];
        let o = run_at(&server.url(), &manifest, &out, &args).await;
        let case = format!("{dialect} {prompt}");
        assert_eq!(o.status.code(), Some(1), "{case}: {}", text(&o));
        let row = &results(&out)[0];
        assert_eq!((row["status"].as_str(), row["error_class"].as_str()), ("failed", class), "{case}: {row:?}");
        assert!(row["error"].contains(says), "{case}: {row:?}");
        let tries = attempt_messages(&out);
        assert_eq!(tries.iter().filter(|t| t.1.as_deref() == Some(class)).count(), 2, "{case}: {tries:?}");
        assert!(images(&out).is_empty(), "{case}: {:?}", images(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_image_in_the_stash_is_made_again_not_written() {
    // Run 1 stops at a 401 with the row pending; a damaged image is then put in the
    // stash (as a disk error or an older bulkgen could leave it). Run 2 must not write
    // it as the row's image: it generates the row again.
    let whole = png(7);
    let good = whole.clone();
    let server = Hostile::start(move |_, n| match n {
        0 => Reply::json(401, r#"{"error":{"message":"key revoked","code":"invalid_api_key"}}"#.into()),
        _ => openai_image(&good),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = rows(dir.path(), &[("kept", "a prompt")]);
    let out = dir.path().join("out");
    let o = run_at(&server.url(), &manifest, &out, &["--no-preflight"]).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    {
        let db = rusqlite::Connection::open(out.join("bulkgen.db")).unwrap();
        let html = [b"\x89PNG\r\n\x1a\n".as_slice(), b"<html>oops</html>"].concat();
        let stashed =
            db.execute("INSERT INTO stash(rid, bytes) SELECT rid, ?1 FROM rows WHERE id = 'kept'", [html]).unwrap();
        assert_eq!(stashed, 1);
    }
    let o = run_at(&server.url(), &manifest, &out, &["--no-preflight"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_same_image(&out.join("images/kept.png"), &whole);
    assert_eq!(server.seen().len(), 2, "the row was generated again");
    let db = rusqlite::Connection::open(out.join("bulkgen.db")).unwrap();
    let left: i64 = db.query_row("SELECT COUNT(*) FROM stash", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0, "the damaged stash is gone once the row is done");
}
