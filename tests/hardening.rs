//! Issue 10's hardening, through the CLI: manifest line numbers with any line end,
//! duplicate and unportable ids, a closed stdout, calls abandoned by a kill, and result
//! URLs that expired.

mod common;

use std::time::Duration;

use common::*;

/// `bulkgen run` on a manifest with these bytes: exit 2, nothing sent, nothing created;
/// returns stderr.
async fn refused(body: &[u8]) -> String {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.csv");
    std::fs::write(&manifest, body).unwrap();
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(sim.stats().requests, 0, "nothing was sent");
    assert!(!out.exists(), "the output folder was created");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_errors_name_the_physical_line_with_crlf_a_bom_and_multiline_fields() {
    // Line 1 header, 2 a, 3-4 a quoted field over two lines, 5 blank, 6 the bad row, 7 a
    // duplicate of line 2.
    let lf = "prompt,id\nok,a\n\"two\nlines\",b\n\n ,c\nok,a\n";
    for (name, body) in [
        ("LF", lf.as_bytes().to_vec()),
        ("CRLF", lf.replace('\n', "\r\n").into_bytes()),
        ("BOM + CRLF", [b"\xEF\xBB\xBF".as_slice(), lf.replace('\n', "\r\n").as_bytes()].concat()),
    ] {
        let err = refused(&body).await;
        assert!(err.contains("  line 6: empty prompt"), "{name}: {err}");
        assert!(err.contains("  line 7: duplicate id \"a\" (first used on line 2)"), "{name}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_duplicate_ids_print_twenty_problems_and_a_count() {
    let mut body = String::from("prompt,id\r\n");
    for i in 0..5_000 {
        body.push_str(&format!("prompt {i},same\r\n"));
    }
    body.push_str(",empty\r\n");
    let err = refused(body.as_bytes()).await;
    let listed: Vec<&str> = err.lines().filter(|l| l.starts_with("  line ")).collect();
    assert_eq!(listed.len(), 20, "{err}");
    assert!(listed.iter().all(|l| l.ends_with("duplicate id \"same\" (first used on line 2)")), "{err}");
    assert_eq!(listed[0], "  line 3: duplicate id \"same\" (first used on line 2)");
    assert!(err.contains("has 5000 problem(s); nothing was sent"), "{err}");
    assert!(err.contains("  ... and 4980 more problem(s) (duplicate id 4979, empty prompt 1)"), "{err}");
    assert!(err.lines().count() <= 25, "{} lines on stderr", err.lines().count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_collide_ignoring_case_or_name_a_windows_device_are_refused() {
    let err = refused(b"prompt,id\r\nx,cat\r\nx,fine\r\nx,Cat\r\nx,nul.txt\r\nx,COM1\r\nx,Aux\r\nx,console\r\n").await;
    assert!(
        err.contains(
            "  line 4: id \"Cat\" collides with id \"cat\" on line 2 ignoring case: files images/Cat.png and \
             images/cat.png are the same file on macOS and Windows"
        ),
        "{err}"
    );
    for (line, stem) in [(5, "nul"), (6, "COM1"), (7, "Aux")] {
        let expected = format!("  line {line}: unsafe id");
        let l = err.lines().find(|l| l.starts_with(&expected)).unwrap_or_else(|| panic!("{expected} in {err}"));
        assert!(l.contains(&format!("{stem} is a Windows device name")), "{l}");
    }
    assert!(!err.contains("line 3") && !err.contains("line 8"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_closes_stdout_early_ends_the_command_quietly() {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 6);
    let out = dir.path().join("out");
    assert_eq!(run(&sim, &manifest, &out, &[]).await.status.code(), Some(0));
    let out = out.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["report", "--out", out],
        &["report", "--out", out, "--format", "json"],
        &["report", "--out", out, "--format", "md"],
        &["status", "--out", out],
        &["models"],
        &["models", "--format", "json"],
    ];
    for args in commands {
        // `bulkgen ARGS | head -0`: the reader is gone before the first write.
        let mut c = bin();
        c.args(*args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        drop(child.stdout.take());
        let o = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");

        // `bulkgen ARGS | head -1`: one line read, then the reader goes.
        let mut c = bin();
        c.args(*args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut first).await.unwrap();
        assert!(!first.is_empty(), "{args:?}");
        drop(stdout);
        let o = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap();
        assert_ne!(o.status.code(), Some(101), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "{args:?}");
    }
}

/// `bulkgen report --format json -o OUT`, parsed.
async fn status_of(out: &std::path::Path) -> String {
    let o = bin().args(["status", "-o"]).arg(out).output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_at_a_kill_are_counted_as_outcome_unknown_and_priced_as_spend_up_to() {
    let sim = sim(fixed(Duration::from_millis(400))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 12);
    let out = dir.path().join("out");
    let price = ["-c", "4", "--price", "gpt-image-2:*=0.05"];
    let mut child = spawn_run(&sim, &manifest, &out, &price);
    wait_until("4 calls in flight", || sim.stats().requests >= 4).await;
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    // Read before any rerun: the calls the killed run left in flight are already counted.
    let after_kill = json_report(&out).await["overall"]["outcome_unknown"].as_u64().unwrap();
    assert!((1..=4).contains(&after_kill), "{after_kill}");
    let o = run(&sim, &manifest, &out, &price).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_images_match(&out, &prompts);

    let report = json_report(&out).await;
    let all = &report["overall"];
    let requests = sim.stats().requests;
    let unknown = all["outcome_unknown"].as_u64().unwrap();
    assert_eq!(unknown, after_kill, "the rerun recorded what the report counted: {all}");
    assert!(all["attempts"].as_u64().unwrap() >= requests, "calls {} < {requests} requests: {all}", all["attempts"]);
    let (spend, up_to) = (all["spend_usd"].as_f64().unwrap(), all["spend_up_to_usd"].as_f64().unwrap());
    assert!((spend - 0.6).abs() < 1e-9, "12 done x $0.05: {all}");
    assert!((up_to - spend - 0.05 * unknown as f64).abs() < 1e-9, "{all}");

    let line = format!(
        "{unknown} image(s) from calls with outcome unknown (abandoned by a kill or a second Ctrl-C; they may have been billed)"
    );
    let status = status_of(&out).await;
    assert!(status.contains(&line) && status.contains("spend: up to $"), "{status}");
    let plain = bin().args(["report", "-o"]).arg(&out).output().await.unwrap();
    assert!(String::from_utf8_lossy(&plain.stdout).contains(&line), "{}", text(&plain));
    // A later run does not count them again.
    assert_eq!(run(&sim, &manifest, &out, &price).await.status.code(), Some(0));
    assert_eq!(json_report(&out).await["overall"]["outcome_unknown"], unknown);
}

/// An aggregator that answers every generation with a URL to itself; the image of the
/// first generation is gone (404), later ones download.
struct Expiring {
    addr: std::net::SocketAddr,
    generations: std::sync::Arc<std::sync::atomic::AtomicU64>,
    downloads: std::sync::Arc<std::sync::atomic::AtomicU64>,
    keyed_downloads: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Expiring {
    async fn start() -> Expiring {
        use axum::extract::Path;
        use axum::http::{HeaderMap, StatusCode, header};
        use axum::response::IntoResponse;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (generations, downloads, keyed) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let g = generations.clone();
        let (d, k) = (downloads.clone(), keyed.clone());
        let app = axum::Router::new()
            .route(
                "/v1/images/generations",
                axum::routing::post(move || {
                    let n = g.fetch_add(1, Ordering::SeqCst);
                    async move {
                        axum::Json(
                            serde_json::json!({"created": 1, "data": [{"url": format!("http://{addr}/img/{n}.png")}]}),
                        )
                    }
                }),
            )
            .route(
                "/img/{name}",
                axum::routing::get(move |Path(name): Path<String>, headers: HeaderMap| {
                    d.fetch_add(1, Ordering::SeqCst);
                    if headers.contains_key(header::AUTHORIZATION) {
                        k.fetch_add(1, Ordering::SeqCst);
                    }
                    async move {
                        if name == "0.png" {
                            (StatusCode::NOT_FOUND, "The specified key does not exist.").into_response()
                        } else {
                            let png = bulkgen::sim::png::make(2048, 1, "prompt=regenerated");
                            (StatusCode::OK, [(header::CONTENT_TYPE, "image/png")], png).into_response()
                        }
                    }
                }),
            );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Expiring { addr, generations, downloads, keyed_downloads: keyed, task }
    }

    fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (self.generations.load(Ordering::SeqCst), self.downloads.load(Ordering::SeqCst))
    }
}

impl Drop for Expiring {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_result_url_fails_its_row_clearly_and_only_regenerate_expired_pays_again() {
    let server = Expiring::start().await;
    let base = format!("http://{}", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 1);
    let out = dir.path().join("out");
    let args = ["--model", "nano-banana-pro", "--response-format", "url", "--no-preflight", "--max-attempts", "3"];
    let go = |extra: &'static [&'static str]| {
        let mut c = run_cmd(&base, &manifest, &out, &args);
        c.args(extra);
        async move { tokio::time::timeout(Duration::from_secs(30), c.output()).await.unwrap().unwrap() }
    };

    let o = go(&[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("the result URL of row r0000 has expired or is unreachable (result URL answered HTTP 404"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "the image was paid for but cannot be fetched: run again to try the download again, or run again with \
             --regenerate-expired to pay for a new one"
        ),
        "{stderr}"
    );
    assert_eq!(server.counts(), (1, 3), "one generation, three downloads");
    let row = &results(&out)[0];
    assert_eq!((row["status"].as_str(), row["error_class"].as_str()), ("failed", "download"), "{row:?}");
    assert!(row["error"].starts_with("HTTP 404: the result URL of row r0000 has expired"), "{row:?}");

    // A plain rerun tries the download again (it may have been a passing outage); it
    // pays for nothing.
    let o = go(&[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("downloading again (not paid again"), "{}", text(&o));
    assert_eq!(server.counts(), (1, 6));
    // --retry-failed does not generate it again either.
    assert_eq!(go(&["--retry-failed"]).await.status.code(), Some(1));
    assert_eq!(server.counts().0, 1);

    // Only when asked: a new generation, whose URL downloads.
    let o = go(&["--regenerate-expired"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 row(s) whose result URL expired will be generated"));
    assert_eq!(server.counts(), (2, 10));
    assert_eq!(states(&out)["r0000"], "done");
    assert!(out.join("images/r0000.png").is_file());
    assert_eq!(server.keyed_downloads.load(std::sync::atomic::Ordering::SeqCst), 0, "a download carried the key");
    // Done is done: the flag pays for nothing more.
    assert_eq!(go(&["--regenerate-expired"]).await.status.code(), Some(0));
    assert_eq!(server.counts().0, 2);
}
