//! The batch engine (issue 12) through the CLI, in both dialects, against the simulator's
//! Batch APIs on a compressed timeline: a mixed batch made entirely by batch, SIGKILL at
//! each step of a job's life with the simulator's own job list proving no job was ever
//! created twice, stuck and expired jobs finished online after the deadline, per-line
//! refusals, `bulkgen cancel`, `--max-cost` at batch prices, and an online run of the same
//! folder never paying for rows a job holds.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

const DIALECTS: [(&str, &str); 2] = [("openai", "gpt-image-2"), ("gemini", "gemini-3-pro-image")];

/// A simulator whose jobs take `ms` real milliseconds per simulated minute (a job pends
/// 2 simulated minutes and runs 5).
fn scaled(ms_per_minute: f64) -> SimConfig {
    SimConfig { time_scale: ms_per_minute / 60_000.0, image_bytes: 2_000, ..SimConfig::default() }
}

/// The flags of a batch run in `dialect`, polling every 20 ms, then `extra`.
fn batch_args<'a>(dialect: &'a str, model: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--provider", dialect, "--model", model, "--engine", "batch", "--poll-interval", "20ms"];
    a.extend_from_slice(extra);
    a
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// One manifest row: id, prompt, size and reference file names.
struct Row {
    id: String,
    prompt: String,
    size: &'static str,
    images: Vec<&'static str>,
}

/// `n` text rows cycling 1K, 2K, 4K, each prompt carrying `word` (for line faults).
fn text_rows(n: usize, word: &str) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            id: format!("r{i:03}"),
            prompt: format!("batch prompt {i} {word}"),
            size: ["1K", "2K", "4K"][i % 3],
            images: vec![],
        })
        .collect()
}

fn write_manifest(dir: &Path, rows: &[Row]) -> PathBuf {
    let path = dir.join("manifest.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["id", "prompt", "size", "images"]).unwrap();
    for r in rows {
        w.write_record([r.id.as_str(), &r.prompt, r.size, &r.images.join(";")]).unwrap();
    }
    w.flush().unwrap();
    path
}

fn prompts(rows: &[Row]) -> HashMap<String, String> {
    rows.iter().map(|r| (r.id.clone(), r.prompt.clone())).collect()
}

/// No job was created twice: every job the simulator made carries its own bulkgen token.
fn assert_tokens_unique(stats: &SimStats) {
    let tokens: HashSet<&str> = stats.batch_jobs.iter().map(|j| j.token.as_str()).collect();
    assert!(stats.batch_jobs.iter().all(|j| !j.token.is_empty()), "a job without a bulkgen token");
    assert_eq!(tokens.len(), stats.batch_jobs.len(), "a token was used for two jobs: {:?}", stats.batch_jobs);
    assert_eq!(stats.batch_creates, stats.batch_jobs.len() as u64);
}

/// How many batch lines each prompt was sent in, over every job the simulator made.
fn lines_per_prompt(stats: &SimStats) -> u64 {
    stats.batch_jobs.iter().map(|j| j.lines).sum()
}

/// Rows by engine that made them, from the checkpoint.
fn engines(out: &Path) -> HashMap<String, String> {
    let db = rusqlite::Connection::open(out.join("bulkgen.db")).unwrap();
    let mut st =
        db.prepare("SELECT id, COALESCE(engine, '') FROM rows WHERE seq IS NOT NULL AND state='done'").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

/// The checkpoint's jobs: (step, name) in creation order.
fn jobs(out: &Path) -> Vec<(String, Option<String>)> {
    let db = rusqlite::Connection::open(out.join("bulkgen.db")).unwrap();
    let mut st = db.prepare("SELECT step, name FROM jobs ORDER BY jid").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

fn count(states: &HashMap<String, String>, state: &str) -> usize {
    states.values().filter(|s| *s == state).count()
}

/// Every row done, each image made for its own prompt, and made once.
fn assert_all_made_once(out: &Path, sim: &SimServer, prompts: &HashMap<String, String>) {
    let states = states(out);
    assert_eq!(count(&states, "done"), prompts.len(), "{states:?}");
    assert_images_match(out, prompts);
    assert_each_generated_once(&sim.stats(), prompts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_is_made_entirely_by_batch_in_each_dialect() {
    for (dialect, model) in DIALECTS {
        let sim = sim(scaled(20.0)).await;
        let dir = tempfile::tempdir().unwrap();
        let mut hashes = HashMap::new();
        for (name, len, seed) in [("style.png", 30_000, 1), ("own.png", 9_000, 2)] {
            let png = bulkgen::sim::png::make(len, seed, &format!("ref={name}"));
            std::fs::write(dir.path().join(name), &png).unwrap();
            hashes.insert(name, sha256(&png));
        }
        let mut rows = text_rows(9, "mixed");
        for (i, images) in [vec!["style.png"], vec!["style.png"], vec!["style.png", "own.png"]].into_iter().enumerate()
        {
            rows.push(Row { id: format!("ref{i}"), prompt: format!("edit prompt {i}"), size: "1K", images });
        }
        let manifest = write_manifest(dir.path(), &rows);
        let out = dir.path().join("out");
        let args = batch_args(dialect, model, &[]);
        let o = run(&sim, &manifest, &out, &args).await;
        assert_eq!(o.status.code(), Some(0), "{dialect}: {}", text(&o));
        let prompts = prompts(&rows);
        assert_all_made_once(&out, &sim, &prompts);
        let st = sim.stats();
        assert_eq!(st.requests, 0, "{dialect}: no online call was made");
        assert_tokens_unique(&st);
        // OpenAI: generations and edits are separate endpoints, so separate jobs.
        let want_jobs = if dialect == "openai" { 2 } else { 1 };
        assert_eq!(st.batch_jobs.len(), want_jobs, "{dialect}: {:?}", st.batch_jobs);
        assert_eq!(lines_per_prompt(&st), rows.len() as u64, "{dialect}: one line per row");
        assert!(engines(&out).values().all(|e| e == "batch"), "{dialect}: {:?}", engines(&out));
        // Each row's references reached the provider (the PNG names them by hash).
        for r in &rows {
            let png = std::fs::read(out.join("images").join(format!("{}.png", r.id))).unwrap();
            let (got, _) = bulkgen::sim::read_refs(&png);
            let want: Vec<String> = r.images.iter().map(|n| hashes[n].clone()).collect();
            assert_eq!(got, want, "{dialect} {}: references received", r.id);
        }
        for r in results(&out) {
            assert_eq!(r["attempts"], "1", "{dialect} {}: one submission", r["id"]);
            assert!(!r["end_to_end_s"].is_empty(), "{dialect} {}: end-to-end time recorded", r["id"]);
        }
        let report = json_report(&out).await;
        let batch = report["engines"].as_array().unwrap().iter().find(|e| e["name"] == "batch").cloned();
        assert_eq!(batch.map(|b| b["done"].clone()), Some(serde_json::json!(rows.len())), "{dialect}: {report}");
        let status = bin().args(["status", "-o"]).arg(&out).output().await.unwrap();
        let s = String::from_utf8_lossy(&status.stdout);
        assert!(s.contains(&format!("batch jobs: 0 open, {want_jobs} closed")), "{dialect}: {s}");

        // The same command again pays for nothing.
        let again = run(&sim, &manifest, &out, &args).await;
        assert_eq!(again.status.code(), Some(0), "{dialect}: {}", text(&again));
        assert_eq!(sim.stats().batch_creates, want_jobs as u64, "{dialect}: nothing submitted again");
    }
}

/// Where a test kills the run.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// The job's input is being uploaded: no create sent.
    BeforeCreate,
    /// The create reached the provider (the job exists) but its answer never came back.
    BetweenCreateAndRecord,
    /// The job is recorded and being polled.
    MidPoll,
    /// The result file is being read.
    MidIngest,
}

async fn killed_at(step: Step, dialect: &str, model: &str) {
    let what = format!("{dialect} {step:?}");
    let mut cfg = scaled(20.0);
    match step {
        Step::BeforeCreate => cfg.upload_latency = Duration::from_secs(3),
        Step::BetweenCreateAndRecord => {
            cfg.create_latency = Duration::from_secs(3);
            // Paging matters: the job is looked for over pages of one job each.
            cfg.batch_page_max = Some(1);
        }
        // Pending for 1.2 s of real time: polled many times before it runs.
        Step::MidPoll => cfg.batch_pending = Duration::from_secs(60 * 60),
        Step::MidIngest => cfg.result_latency = Duration::from_millis(60),
    }
    let sim = sim(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let rows = text_rows(12, "kill");
    let manifest = write_manifest(dir.path(), &rows);
    let out = dir.path().join("out");
    let args = batch_args(dialect, model, &[]);
    let mut child = spawn_run(&sim, &manifest, &out, &args);
    match step {
        Step::BeforeCreate => {
            wait_until("the input upload", || sim.stats().upload_starts + sim.stats().file_uploads_openai >= 1).await;
        }
        Step::BetweenCreateAndRecord => wait_until("the job created", || sim.stats().batch_jobs.len() == 1).await,
        Step::MidPoll => wait_until("polls", || sim.stats().batch_gets >= 3).await,
        Step::MidIngest => {
            wait_until("the result download", || sim.stats().result_downloads >= 1).await;
            wait_until("some rows ingested", || count(&states(&out), "done") >= 2).await
        }
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let at_kill = sim.stats();
    match step {
        Step::BeforeCreate => {
            assert_eq!(at_kill.batch_creates, 0, "{what}");
            assert_eq!(jobs(&out).len(), 1, "{what}: the job's rows were assigned before the upload");
        }
        Step::BetweenCreateAndRecord => {
            assert_eq!(jobs(&out), vec![("creating".to_string(), None)], "{what}: the create was never answered")
        }
        Step::MidPoll => assert_eq!(jobs(&out).len(), 1, "{what}"),
        Step::MidIngest => {
            let done = count(&states(&out), "done");
            assert!(done < rows.len(), "{what}: the kill came after the ingest ended; the test proves nothing");
        }
    }

    let again = run(&sim, &manifest, &out, &args).await;
    assert_eq!(again.status.code(), Some(0), "{what}: {}", text(&again));
    let prompts = prompts(&rows);
    assert_all_made_once(&out, &sim, &prompts);
    let st = sim.stats();
    assert_tokens_unique(&st);
    assert_eq!(st.batch_jobs.len(), 1, "{what}: one job, never created twice: {:?}", st.batch_jobs);
    assert_eq!(st.requests, 0, "{what}: nothing went online");
    if let Step::BetweenCreateAndRecord = step {
        assert!(String::from_utf8_lossy(&again.stderr).contains("found at the provider by its token"), "{what}");
    }
    // Each row has exactly one batch result taken: reading the result file again after
    // the kill wrote nothing twice.
    let taken = attempts(&out).into_iter().filter(|a| a.1 == "batch" && a.4.is_none()).count();
    assert_eq!(taken, rows.len(), "{what}: one result taken per row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_create_the_job_is_created_once_openai() {
    killed_at(Step::BeforeCreate, "openai", "gpt-image-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_create_the_job_is_created_once_gemini() {
    killed_at(Step::BeforeCreate, "gemini", "gemini-3-pro-image").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_create_and_record_the_job_is_adopted_by_its_token_openai() {
    killed_at(Step::BetweenCreateAndRecord, "openai", "gpt-image-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_create_and_record_the_job_is_adopted_by_its_token_gemini() {
    killed_at(Step::BetweenCreateAndRecord, "gemini", "gemini-3-pro-image").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_poll_the_job_is_picked_up_openai() {
    killed_at(Step::MidPoll, "openai", "gpt-image-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_poll_the_job_is_picked_up_gemini() {
    killed_at(Step::MidPoll, "gemini", "gemini-3-pro-image").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_ingest_nothing_is_written_twice_openai() {
    killed_at(Step::MidIngest, "openai", "gpt-image-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_ingest_nothing_is_written_twice_gemini() {
    killed_at(Step::MidIngest, "gemini", "gemini-3-pro-image").await;
}
