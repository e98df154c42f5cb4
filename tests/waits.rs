//! Advised waits and outages: a server's advice to wait, however absurd, never panics
//! or hangs a run; a short hold shows in progress with its end; an outage spends no
//! row's attempts; rows that ran out of transient attempts are tried again by the next
//! run. The hostile servers are small in-process servers on 127.0.0.1.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use common::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One scripted answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

#[derive(Default)]
struct Script {
    /// Answers given in order; when empty, `then` (or a valid image) forever.
    queue: Mutex<VecDeque<Answer>>,
    /// Answers for requests whose body contains the text, in order, before the queue.
    by_prompt: Mutex<Vec<(&'static str, VecDeque<Answer>)>>,
    then: Option<Answer>,
    hits: AtomicUsize,
    times: Mutex<Vec<Instant>>,
}

/// A valid image answer in the dialect the path asks for.
fn image_answer(path: &str) -> Answer {
    let png = bulkgen::sim::png::make(2000, 1, "scripted");
    let b64 = base64::engine::general_purpose::STANDARD.encode(png);
    let body = if path.contains("generateContent") {
        serde_json::json!({"candidates": [{"content": {"role": "model", "parts": [{"inlineData": {"mimeType": "image/png", "data": b64}}]}, "finishReason": "STOP"}]})
    } else {
        serde_json::json!({"created": 1, "data": [{"b64_json": b64}]})
    };
    (200, vec![("content-type", "application/json".into())], body.to_string())
}

async fn answer(State(script): State<Arc<Script>>, uri: Uri, _headers: HeaderMap, body: Bytes) -> Response {
    script.hits.fetch_add(1, Ordering::SeqCst);
    script.times.lock().unwrap().push(Instant::now());
    let body = String::from_utf8_lossy(&body);
    let mine = script
        .by_prompt
        .lock()
        .unwrap()
        .iter_mut()
        .find(|(text, _)| body.contains(text))
        .and_then(|(_, q)| q.pop_front());
    let next = mine.or_else(|| script.queue.lock().unwrap().pop_front());
    let (status, headers, body) = next.or_else(|| script.then.clone()).unwrap_or_else(|| image_answer(uri.path()));
    let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (k, v) in headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

struct Scripted {
    url: String,
    script: Arc<Script>,
    task: JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn scripted(script: Script) -> Scripted {
    let script = Arc::new(script);
    let app = axum::Router::new().fallback(answer).with_state(script.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Scripted { url, script, task }
}

fn rate_limited(header: &'static str, value: &str) -> Answer {
    let body = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
    (429, vec![(header, value.to_owned())], body.to_owned())
}

fn gemini_rate_limited(delay: &str) -> Answer {
    let body = serde_json::json!({"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}});
    (429, vec![], body.to_string())
}

async fn run_against(
    url: &str,
    manifest: &std::path::Path,
    out: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    let mut c = run_cmd(url, manifest, out, args);
    c.arg("--no-preflight");
    tokio::time::timeout(Duration::from_secs(60), c.output()).await.expect("the run ends").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_advised_waits_stop_the_run_cleanly_and_every_rerun_too() {
    let cases: Vec<(&str, Answer)> = vec![
        ("openai", rate_limited("retry-after", "1e19")),
        ("openai", rate_limited("retry-after-ms", "1e25")),
        ("openai", rate_limited("retry-after", "1e12")),
        ("openai", rate_limited("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")),
        ("gemini", gemini_rate_limited("1e20s")),
    ];
    for (provider, advice) in cases {
        let server = scripted(Script { then: Some(advice.clone()), ..Script::default() }).await;
        let dir = tempfile::tempdir().unwrap();
        let (manifest, _) = manifest(dir.path(), 4);
        let out = dir.path().join("out");
        let model = if provider == "gemini" { "gemini-3-pro-image" } else { "gpt-image-2" };
        for round in 0..2 {
            let o =
                run_against(&server.url, &manifest, &out, &["-c", "2", "--provider", provider, "--model", model]).await;
            let shown = format!("{advice:?}, round {round}: {}", text(&o));
            assert_eq!(o.status.code(), Some(3), "{shown}");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("asked to wait") && err.contains("--max-wait"), "{shown}");
            assert!(!err.contains("panicked"), "{shown}");
            // Nothing is left running, and nothing failed: the rows wait for a rerun.
            let states = states(&out);
            assert!(states.values().all(|s| s == "pending"), "{shown}\n{states:?}");
        }
        // Each run stopped at its first answers: at most -c calls each.
        assert!(
            server.script.hits.load(Ordering::SeqCst) <= 4,
            "{provider}: {}",
            server.script.hits.load(Ordering::SeqCst)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advised_wait_within_max_wait_holds_every_call_and_shows_when_it_ends() {
    let server =
        scripted(Script { queue: Mutex::new(VecDeque::from([rate_limited("retry-after", "1")])), ..Script::default() })
            .await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 3);
    let out = dir.path().join("out");
    let o = run_against(&server.url, &manifest, &out, &["-c", "1", "--progress-interval", "200ms"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("every call is held for 1.0s (until ") && err.contains(" UTC)"), "{}", text(&o));
    assert!(err.contains("every call held until "), "the progress line shows the hold: {}", text(&o));
    let times = server.script.times.lock().unwrap().clone();
    assert_eq!(times.len(), 4, "one 429, then three images");
    assert!(
        times[1] - times[0] >= Duration::from_millis(990),
        "the advice was not waited out: {:?}",
        times[1] - times[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_out_of_transient_attempts_go_back_to_the_queue_on_the_next_run_final_ones_do_not() {
    // Row 1 gets three 503s (its attempts), row 2 a content-policy refusal; the rest work.
    let overloaded =
        (503, vec![], r#"{"error":{"message":"The model is overloaded","type":"server_error"}}"#.to_owned());
    let refused = (
        400,
        vec![],
        r#"{"error":{"message":"blocked","type":"invalid_request_error","code":"moderation_blocked"}}"#.to_owned(),
    );
    let server = scripted(Script {
        by_prompt: Mutex::new(vec![
            ("number 0,", VecDeque::from([overloaded.clone(), overloaded.clone(), overloaded])),
            ("number 1,", VecDeque::from([refused])),
        ]),
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 3);
    let out = dir.path().join("out");
    let o = run_against(&server.url, &manifest, &out, &["-c", "1", "--max-attempts", "3"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rows = results(&out);
    assert_eq!(rows[0]["error_class"], "overloaded", "{rows:?}");
    assert_eq!(rows[1]["error_class"], "refused", "{rows:?}");

    let before = server.script.hits.load(Ordering::SeqCst);
    let o = run_against(&server.url, &manifest, &out, &["-c", "1", "--max-attempts", "3"]).await;
    assert_eq!(o.status.code(), Some(1), "the refused row is still failed: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("1 row(s) ran out of attempts on transient errors"),
        "{}",
        text(&o)
    );
    assert_eq!(server.script.hits.load(Ordering::SeqCst) - before, 1, "only the overloaded row was sent again");
    let rows = results(&out);
    assert_eq!(rows[0]["status"], "done", "{rows:?}");
    assert_eq!(rows[1]["status"], "failed", "a final failure waits for --retry-failed: {rows:?}");
    assert_eq!(rows[2]["status"], "done", "{rows:?}");

    let o = run_against(&server.url, &manifest, &out, &["-c", "1", "--retry-failed"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(server.script.hits.load(Ordering::SeqCst), 7, "3 + 1 + 1, then 1 again, then 1 with --retry-failed");
}

/// A TCP relay in front of a server that can go down (the port refuses, every open
/// connection is cut) and come back on the same port: an outage as a client sees it.
struct Relay {
    addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay { addr: listener.local_addr().unwrap(), upstream, tasks: Arc::default() };
        relay.serve(listener);
        relay
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, tasks) = (self.upstream, self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    fn down(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    async fn up(&self) {
        // The port was just closed: bind may need a moment.
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                return self.serve(listener);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot listen on {} again", self.addr);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.down();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_run_pauses_the_calls_and_spends_no_rows_attempts() {
    let sim = sim(fixed(Duration::from_millis(150))).await;
    let relay = Relay::start(sim.base_url().trim_start_matches("http://").parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 40);
    let out = dir.path().join("out");
    let url = format!("http://{}", relay.addr);
    let mut cmd = run_cmd(&url, &manifest, &out, &["-c", "4", "--max-attempts", "2", "--no-preflight"]);
    let child = cmd.output();
    let outage = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        relay.down();
        // Long enough for many connects to be refused: with 5-50 ms backoff, each row
        // would spend its two attempts many times over.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        relay.up().await;
    };
    let (o, ()) =
        tokio::join!(async { tokio::time::timeout(Duration::from_secs(60), child).await.unwrap().unwrap() }, outage);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot be reached"), "the outage was seen: {}", text(&o));
    assert!(err.contains("answers again"), "{}", text(&o));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = results(&out);
    assert_eq!(rows.len(), prompts.len());
    assert!(rows.iter().all(|r| r["status"] == "done"), "{rows:?}");
}
