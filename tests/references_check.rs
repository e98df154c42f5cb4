//! The manifest's reference images (`images`, `mask`), checked before anything is sent:
//! local paths under --images-dir, URLs fetched once with the rules of result downloads,
//! formats by their bytes, the row's model's limits from the catalogue, and what a dry run
//! says would be uploaded. Through the CLI.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn png(bytes: usize, seed: u64) -> Vec<u8> {
    bulkgen::sim::png::make(bytes, seed, "ref=1")
}

/// SOI, an APP0-like segment, SOS, entropy-coded data with a stuffed 0xFF00, EOI: what
/// `output::check_image` takes as a whole JPEG.
fn jpeg() -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 6, b'J', b'F', b'I', b'F'];
    j.extend_from_slice(&[0xFF, 0xDA, 0, 4, 1, 2]);
    j.extend_from_slice(&[9, 8, 0xFF, 0x00, 7, 6, 5]);
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}

/// RIFF, its size, WEBP, one odd-sized VP8L chunk and its pad byte.
fn webp() -> Vec<u8> {
    let mut w = b"RIFF\0\0\0\0WEBPVP8L\x05\0\0\0\x2f\x01\x02\x03\x04\0".to_vec();
    let size = (w.len() - 8) as u32;
    w[4..8].copy_from_slice(&size.to_le_bytes());
    w
}

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Writes `rows` (each: id, prompt, images, mask, model) as a manifest.
fn write_manifest(path: &Path, rows: &[[&str; 5]]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(["id", "prompt", "Images", "MASK", "model"]).unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
}

/// What the little file server answers on a path.
#[derive(Clone)]
enum Route {
    Body(Vec<u8>),
    Status(u16),
    /// A PNG signature, then zeros for as long as anyone reads.
    Endless,
    /// A Content-Length far over any cap, and no body.
    Declared(u64),
}

/// A plain HTTP/1.1 server on 127.0.0.1:0 serving fixed routes; it records every path
/// asked for and counts the bytes of endless bodies it managed to write.
struct Files {
    base: String,
    asked: Arc<Mutex<Vec<String>>>,
    endless_written: Arc<AtomicU64>,
}

impl Files {
    async fn start(routes: HashMap<&'static str, Route>) -> Files {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let endless_written = Arc::new(AtomicU64::new(0));
        let routes: Arc<HashMap<String, Route>> =
            Arc::new(routes.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        let (a, e) = (asked.clone(), endless_written.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (routes, asked, written) = (routes.clone(), a.clone(), e.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
                    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                    asked.lock().unwrap().push(path.clone());
                    let ok = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n";
                    match routes.get(&path).cloned().unwrap_or(Route::Status(404)) {
                        Route::Body(body) => {
                            let h = format!("{ok}Content-Length: {}\r\n\r\n", body.len());
                            let _ = sock.write_all(h.as_bytes()).await;
                            let _ = sock.write_all(&body).await;
                        }
                        Route::Status(code) => {
                            let h = format!("HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                            let _ = sock.write_all(h.as_bytes()).await;
                        }
                        Route::Declared(n) => {
                            let _ = sock.write_all(format!("{ok}Content-Length: {n}\r\n\r\n").as_bytes()).await;
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                        Route::Endless => {
                            let _ = sock.write_all(format!("{ok}\r\n").as_bytes()).await;
                            let _ = sock.write_all(b"\x89PNG\r\n\x1a\n").await;
                            let zeros = vec![0u8; 64 << 10];
                            while sock.write_all(&zeros).await.is_ok() {
                                written.fetch_add(zeros.len() as u64, Ordering::Relaxed);
                            }
                        }
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        Files { base, asked, endless_written }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn times_asked(&self, path: &str) -> usize {
        self.asked.lock().unwrap().iter().filter(|p| *p == path).count()
    }
}

/// `bulkgen run` against `sim` with a private TMPDIR (to see what a dry run leaves there).
async fn run_with_tmp(sim: &SimServer, manifest: &Path, out: &Path, tmp: &Path, args: &[&str]) -> Output {
    let mut c = run_cmd(&sim.base_url(), manifest, out, args);
    c.env("TMPDIR", tmp).arg("-q");
    tokio::time::timeout(Duration::from_secs(60), c.output()).await.expect("run finishes").unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_nothing_sent(sim: &SimServer) {
    let stats = sim.stats();
    assert_eq!((stats.requests, stats.list_requests), (0, 0), "nothing may reach the provider");
}

/// The line of stderr that reports `line` for row `id`, with every piece in `want`.
fn assert_problem(err: &str, line: u64, id: &str, want: &[&str]) {
    let prefix = format!("line {line}: row {id}: ");
    let found =
        err.lines().map(str::trim).filter(|l| l.starts_with(&prefix)).find(|l| want.iter().all(|w| l.contains(w)));
    assert!(found.is_some(), "no problem `{prefix}...` naming {want:?} in:\n{err}");
}

const RELAY_MODELS: &str = r#"
[[model]]
name = "strict-relay"
dialect = "openai"
sizes = { kind = "list", sizes = ["1024x1024"] }
max_reference_images = 2
reference_formats = ["png"]
max_reference_bytes = 1000
source = "a test"
as_of = "2026-11-24"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_reference_is_reported_at_once_and_nothing_is_sent() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let files =
        Files::start(HashMap::from([("/ok.png", Route::Body(png(400, 9))), ("/gone.png", Route::Status(404))])).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("small.png"), png(300, 1)).unwrap();
    std::fs::write(d.join("big.png"), png(3_000, 2)).unwrap();
    std::fs::write(d.join("pic.webp"), webp()).unwrap();
    std::fs::write(d.join("pic.jpg"), jpeg()).unwrap();
    std::fs::write(d.join("half.png"), &png(3_000, 3)[..1_000]).unwrap();
    std::fs::write(d.join("notes.png"), b"these are notes, not an image").unwrap();
    std::fs::write(d.join("relay.toml"), RELAY_MODELS).unwrap();
    let seventeen = vec!["small.png"; 17].join(";");
    let (gone, ok) = (files.url("/gone.png"), files.url("/ok.png"));
    let metadata = "http://169.254.169.254/latest/meta-data/x.png";
    let manifest = d.join("m.csv");
    write_manifest(
        &manifest,
        &[
            ["fine", "p", "small.png", "", ""],                               // line 2
            ["missing", "p", "nothere.png", "", ""],                          // line 3
            ["webp", "p", "pic.webp", "", "strict-relay"],                    // line 4
            ["large", "p", "big.png", "", "strict-relay"],                    // line 5
            ["many", "p", &seventeen, "", ""],                                // line 6
            ["damaged", "p", "half.png", "", ""],                             // line 7
            ["text", "p", "notes.png", "", ""],                               // line 8
            ["gemmask", "p", "small.png", "small.png", "gemini-3-pro-image"], // line 9
            ["jpegmask", "p", "small.png", "pic.jpg", ""],                    // line 10
            ["url1", "p", &format!("{gone};{ok}"), "", ""],                   // line 11
            ["url2", "p", &gone, "", ""],                                     // line 12
            ["meta", "p", metadata, "", ""],                                  // line 13
        ],
    );
    let out = d.join("out");
    let started = Instant::now();
    let o = run(&sim, &manifest, &out, &["--models-file", d.join("relay.toml").to_str().unwrap()]).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(started.elapsed() < Duration::from_secs(20), "the metadata URL was never connected to");
    assert!(err.contains("has 11 problem(s); nothing was sent"), "{err}");
    let tried = d.join("nothere.png");
    assert_problem(
        &err,
        3,
        "missing",
        &["nothere.png", "cannot be read", &tried.display().to_string(), "--images-dir"],
    );
    assert_problem(&err, 4, "webp", &["pic.webp is a WebP image", "strict-relay takes png only"]);
    assert_problem(&err, 5, "large", &["big.png is", "more than the 1000 bytes strict-relay takes"]);
    assert_problem(&err, 6, "many", &["names 17 reference images", "gpt-image-2 takes at most 16"]);
    assert_problem(&err, 7, "damaged", &["half.png is a PNG cut short"]);
    assert_problem(&err, 8, "text", &["notes.png is not a PNG, JPEG or WebP image"]);
    assert_problem(&err, 9, "gemmask", &["has a mask (small.png)", "gemini-3-pro-image takes no edit mask"]);
    assert_problem(&err, 10, "jpegmask", &["mask pic.jpg is a JPEG image", "an edit mask is a PNG"]);
    assert_problem(&err, 11, "url1", &[&gone, "could not be fetched", "HTTP 404"]);
    assert_problem(&err, 12, "url2", &[&gone, "could not be fetched", "HTTP 404"]);
    assert_problem(&err, 13, "meta", &[metadata, "link-local or cloud metadata"]);
    assert!(!err.contains("line 2:"), "the good row is fine: {err}");
    assert_nothing_sent(&sim);
    assert_eq!(files.times_asked("/gone.png"), 1, "each distinct URL is fetched once");
    assert_eq!(files.times_asked("/ok.png"), 1);
    // The URL that was fetched is kept by its content hash in DIR/refs; nothing half-written.
    let cached: Vec<String> = std::fs::read_dir(out.join("refs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached, vec![format!("{}.png", sha(&png(400, 9)))]);
    assert!(!out.join("bulkgen.db").exists(), "no checkpoint is made for a manifest that fails");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_manifest_plans_its_distinct_references_and_the_bytes_sent() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let shared_url = png(2_000, 7);
    let own_url = png(600, 8);
    let files = Files::start(HashMap::from([
        ("/shared.png", Route::Body(shared_url.clone())),
        ("/own.png", Route::Body(own_url.clone())),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (d, refs) = (dir.path(), dir.path().join("refs-folder"));
    std::fs::create_dir(&refs).unwrap();
    let (shared, own_jpg, own_webp, mask, large) = (png(5_000, 1), jpeg(), webp(), png(800, 4), png(1_200_000, 5));
    assert!(large.len() > 1 << 20, "a reference Gemini rows upload even when one row names it");
    for (name, bytes) in [
        ("shared.png", &shared),
        ("own.jpg", &own_jpg),
        ("own.webp", &own_webp),
        ("mask.png", &mask),
        ("large.png", &large),
    ] {
        std::fs::write(refs.join(name), bytes).unwrap();
    }
    let abs_shared = refs.join("shared.png").display().to_string();
    let (su, ou) = (files.url("/shared.png"), files.url("/own.png"));
    // The same file by three spellings is one distinct reference; row b names it twice.
    let rows = [
        ["a", "p", &format!("shared.png; {su}"), "", ""],
        ["b", "p", &format!("./shared.png;{abs_shared}"), "", ""],
        ["c", "p", &format!("{abs_shared};own.jpg;{su};"), "", ""],
        ["d", "p", &format!("own.webp;{ou}"), "", ""],
        ["e", "p", "large.png", "", ""],
        ["f", "p", "", "", ""],
    ];
    let manifest = d.join("m.csv");
    write_manifest(&manifest, &rows);
    let tmp = tempfile::tempdir().unwrap();
    let out = d.join("out");
    let images_dir = ["--images-dir", refs.to_str().unwrap()];
    let bytes = |n: usize| bulkgen::http::bytes_text(n as u64);

    // Gemini: references several rows share, and large ones, are uploaded once each; the
    // rest ride inline with their row.
    let args = [&["--dry-run", "--provider", "gemini"][..], &images_dir].concat();
    let o = run_with_tmp(&sim, &manifest, &out, tmp.path(), &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let plan = String::from_utf8_lossy(&o.stdout);
    let uploaded = shared.len() + shared_url.len() + large.len();
    let inline = own_jpg.len() + own_webp.len() + own_url.len();
    let want = format!(
        "reference images: 6 distinct; {} uploaded once (Files API, kept 48 h) and {} sent inline with their rows",
        bytes(uploaded),
        bytes(inline)
    );
    assert!(plan.contains(&want), "{want}\n{plan}");
    assert!(plan.contains("6 rows, 0 already done"), "{plan}");
    assert_eq!(files.times_asked("/shared.png"), 1, "each distinct URL is fetched once");
    assert_eq!(files.times_asked("/own.png"), 1);
    assert_nothing_sent(&sim);
    assert!(!out.exists(), "a dry run creates nothing in --out");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nor leaves its scratch folder behind");

    // openai: multipart edits send every file with every call; a mask is one more file.
    let mut rows = rows;
    let c_mask = [rows[2][0], rows[2][1], rows[2][2], "mask.png", ""];
    rows[2] = c_mask;
    write_manifest(&manifest, &rows);
    let o = run_with_tmp(&sim, &manifest, &out, tmp.path(), &[&["--dry-run"][..], &images_dir].concat()).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let plan = String::from_utf8_lossy(&o.stdout);
    let sent = (shared.len() + shared_url.len()) // a
        + 2 * shared.len() // b: two spellings, two files sent
        + (shared.len() + own_jpg.len() + shared_url.len() + mask.len()) // c
        + (own_webp.len() + own_url.len()) // d
        + large.len(); // e
    let want = format!("reference images: 7 distinct; {} sent in all", bytes(sent));
    assert!(plan.contains(&want), "{want}\n{plan}");
    assert_nothing_sent(&sim);
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_paths_are_looked_up_in_the_manifests_folder_unless_images_dir_says_otherwise() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let (beside, elsewhere) = (dir.path().join("manifests"), dir.path().join("pictures"));
    std::fs::create_dir(&beside).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(beside.join("here.png"), png(300, 1)).unwrap();
    std::fs::write(elsewhere.join("there.png"), png(300, 2)).unwrap();
    let manifest = beside.join("m.csv");
    write_manifest(&manifest, &[["a", "p", "here.png", "", ""]]);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["--dry-run"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("reference images: 1 distinct"), "{}", text(&o));

    write_manifest(&manifest, &[["a", "p", "there.png", "", ""]]);
    let o = run(&sim, &manifest, &out, &["--dry-run"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_problem(&stderr(&o), 2, "a", &[&beside.join("there.png").display().to_string(), "--images-dir"]);
    let o = run(&sim, &manifest, &out, &["--dry-run", "--images-dir", elsewhere.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_nothing_sent(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_or_oversized_reference_url_stops_at_max_response_bytes() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let files =
        Files::start(HashMap::from([("/endless.png", Route::Endless), ("/huge.png", Route::Declared(10 << 30))])).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.csv");
    let (endless, huge) = (files.url("/endless.png"), files.url("/huge.png"));
    write_manifest(&manifest, &[["a", "p", &endless, "", ""], ["b", "p", &huge, "", ""]]);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["--max-response-bytes", "1MiB", "--download-timeout", "30s"]).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_problem(&err, 2, "a", &[&endless, "passed --max-response-bytes 1 MiB while it streamed"]);
    assert_problem(&err, 3, "b", &[&huge, "Content-Length", "refused before reading"]);
    assert_nothing_sent(&sim);
    // What the server could push is the cap plus what socket buffers hold, not more.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = files.endless_written.load(Ordering::Relaxed);
    assert!(written < 32 << 20, "the endless body was read on: {written} bytes written");
    let left: Vec<PathBuf> = std::fs::read_dir(out.join("refs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "no partial file is left: {left:?}");
}
