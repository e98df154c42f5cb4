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

/// A job stuck in PENDING (the first one the simulator makes) or one that expires before
/// its lines run: at `--batch-deadline` the job is cancelled and its rows are made online.
async fn deadline_sends_rows_online(dialect: &str, model: &str, stuck: bool) {
    let what = format!("{dialect} {}", if stuck { "stuck" } else { "expired" });
    let mut cfg = scaled(20.0);
    if stuck {
        cfg.stuck_jobs = 1;
    } else {
        // Every job expires 1 simulated minute into its 5 minutes of running.
        cfg.batch_expiry = Some(Duration::from_secs(3 * 60));
    }
    let sim = sim(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let rows = text_rows(6, "late");
    let manifest = write_manifest(dir.path(), &rows);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &batch_args(dialect, model, &["--batch-deadline", "700ms"])).await;
    assert_eq!(o.status.code(), Some(0), "{what}: {}", text(&o));
    let prompts = prompts(&rows);
    assert_all_made_once(&out, &sim, &prompts);
    let st = sim.stats();
    assert_tokens_unique(&st);
    let by_engine = engines(&out);
    let online = by_engine.values().filter(|e| *e == "online").count();
    assert_eq!(st.requests as usize, online, "{what}: the online calls are the rows made online");
    if stuck {
        assert_eq!(online, rows.len(), "{what}: {by_engine:?}");
        assert_eq!(st.batch_jobs.len(), 1, "{what}: the stuck job is not resubmitted");
        assert!(st.batch_cancels >= 1, "{what}: the stuck job was cancelled");
        assert!(text(&o).contains("--batch-deadline"), "{what}: the run says why rows went online: {}", text(&o));
    } else {
        // An expired job's rows are submitted again until the deadline; OpenAI's expired
        // batches carry the lines they finished, which are taken, not paid for again.
        assert!(online >= 1, "{what}: {by_engine:?}");
        assert!(!st.batch_jobs.is_empty(), "{what}");
        // (Not "every Gemini row online": an expired Gemini job has no results, but the
        // job resubmitted after it may be cancelled at the deadline with lines done, and
        // those are taken.)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_job_is_finished_online_after_the_deadline_openai() {
    deadline_sends_rows_online("openai", "gpt-image-2", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_job_is_finished_online_after_the_deadline_gemini() {
    deadline_sends_rows_online("gemini", "gemini-3-pro-image", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_job_is_finished_online_after_the_deadline_openai() {
    deadline_sends_rows_online("openai", "gpt-image-2", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_job_is_finished_online_after_the_deadline_gemini() {
    deadline_sends_rows_online("gemini", "gemini-3-pro-image", false).await;
}

/// With `--batch-fallback none`, rows past the deadline fail (class timeout) and nothing
/// goes online; a later run with the default fallback makes them online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_fallback_late_rows_fail_and_a_later_run_makes_them_online() {
    let sim = sim(SimConfig { stuck_jobs: 1, ..scaled(20.0) }).await;
    let dir = tempfile::tempdir().unwrap();
    let rows = text_rows(4, "nofallback");
    let manifest = write_manifest(dir.path(), &rows);
    let out = dir.path().join("out");
    let (dialect, model) = DIALECTS[1];
    let o = run(
        &sim,
        &manifest,
        &out,
        &batch_args(dialect, model, &["--batch-deadline", "500ms", "--batch-fallback", "none"]),
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(sim.stats().requests, 0, "nothing went online");
    let res = results(&out);
    assert!(res.iter().all(|r| r["status"] == "failed" && r["error_class"] == "timeout"), "{res:?}");
    let again =
        run(&sim, &manifest, &out, &batch_args(dialect, model, &["--batch-deadline", "500ms", "--retry-failed"])).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_all_made_once(&out, &sim, &prompts(&rows));
    assert_eq!(sim.stats().batch_jobs.len(), 1, "the late rows were not submitted again");
}

/// Per-line errors: a refusal fails its row for good (class refused, sent once); a line
/// that fails as transient (500) every time goes back to the queue and into the next job,
/// then online at the deadline; the other rows of the job are made by batch.
async fn per_line_errors(dialect: &str, model: &str) {
    let cfg = SimConfig {
        line_faults: vec![("refuse-me".into(), Fault::Refuse), ("flaky-line".into(), Fault::Server)],
        ..scaled(20.0)
    };
    let sim = sim(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let mut rows = text_rows(5, "fine");
    rows.push(Row { id: "refused".into(), prompt: "please refuse-me now".into(), size: "1K", images: vec![] });
    rows.push(Row { id: "flaky".into(), prompt: "a flaky-line prompt".into(), size: "2K", images: vec![] });
    let manifest = write_manifest(dir.path(), &rows);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &batch_args(dialect, model, &["--batch-deadline", "600ms"])).await;
    assert_eq!(o.status.code(), Some(1), "{dialect}: one row failed for good: {}", text(&o));
    let res: HashMap<String, HashMap<String, String>> =
        results(&out).into_iter().map(|r| (r["id"].clone(), r)).collect();
    assert_eq!(res["refused"]["status"], "failed", "{dialect}");
    assert_eq!(res["refused"]["error_class"], "refused", "{dialect}: {:?}", res["refused"]);
    assert!(!res["refused"]["error"].is_empty(), "{dialect}: the provider's reason is kept");
    assert_eq!(res["flaky"]["status"], "done", "{dialect}: {:?}", res["flaky"]);
    let by_engine = engines(&out);
    assert_eq!(by_engine.get("flaky").map(String::as_str), Some("online"), "{dialect}");
    for r in rows.iter().filter(|r| r.id.starts_with("r0")) {
        assert_eq!(by_engine[&r.id], "batch", "{dialect} {}", r.id);
    }
    let st = sim.stats();
    assert_tokens_unique(&st);
    assert!(st.batch_jobs.len() >= 2, "{dialect}: the transient line was submitted again: {:?}", st.batch_jobs);
    let a = attempts(&out);
    let refused = a.iter().filter(|x| x.0 == "refused").count();
    assert_eq!(refused, 1, "{dialect}: the refused row was sent once: {a:?}");
    assert_eq!(st.requests, 1, "{dialect}: only the flaky row went online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_line_errors_are_classified_like_online_ones_openai() {
    per_line_errors("openai", "gpt-image-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_line_errors_are_classified_like_online_ones_gemini() {
    per_line_errors("gemini", "gemini-3-pro-image").await;
}

/// A run interrupted while its job waits at the provider; `bulkgen cancel` cancels the
/// job and says what was paid for; the same run command then takes what the job made and
/// submits the rest again, in a new job.
async fn cancel(dialect: &str, model: &str) {
    let sim = sim(SimConfig { stuck_jobs: 1, ..scaled(20.0) }).await;
    let dir = tempfile::tempdir().unwrap();
    let rows = text_rows(5, "cancel");
    let manifest = write_manifest(dir.path(), &rows);
    let out = dir.path().join("out");
    let args = batch_args(dialect, model, &[]);
    let child = spawn_run(&sim, &manifest, &out, &args);
    wait_until("the job polled", || sim.stats().batch_gets >= 2).await;
    send_sigint(&child);
    let o = child.wait_with_output().await.unwrap();
    assert_eq!(o.status.code(), Some(130), "{dialect}: {}", text(&o));
    assert_eq!(jobs(&out).len(), 1, "{dialect}: the job stays open after Ctrl-C");

    let c = bin().args(["cancel", "-o"]).arg(&out).output().await.unwrap();
    assert_eq!(c.status.code(), Some(0), "{dialect}: {}", text(&c));
    let said = String::from_utf8_lossy(&c.stdout);
    let name = sim.stats().batch_jobs[0].name.clone();
    assert!(said.contains(&name) && said.contains("cancel sent"), "{dialect}: {said}");
    assert!(said.contains("0 image(s) already made"), "{dialect}: says what was paid for: {said}");
    assert_eq!(sim.stats().batch_cancels, 1, "{dialect}");

    let again = run(&sim, &manifest, &out, &args).await;
    assert_eq!(again.status.code(), Some(0), "{dialect}: {}", text(&again));
    assert_all_made_once(&out, &sim, &prompts(&rows));
    let st = sim.stats();
    assert_tokens_unique(&st);
    assert_eq!(st.batch_jobs.len(), 2, "{dialect}: the cancelled job's rows went into one new job");
    assert!(st.batch_jobs[0].state.to_lowercase().contains("cancel"), "{dialect}: {:?}", st.batch_jobs[0]);
    assert_eq!(st.requests, 0, "{dialect}");
    // Nothing open is left to cancel.
    let c = bin().args(["cancel", "-o"]).arg(&out).output().await.unwrap();
    assert!(String::from_utf8_lossy(&c.stdout).contains("no open batch jobs"), "{dialect}: {}", text(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_cancels_the_folders_jobs_and_the_rerun_finishes_them_openai() {
    cancel("openai", "gpt-image-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_cancels_the_folders_jobs_and_the_rerun_finishes_them_gemini() {
    cancel("gemini", "gemini-3-pro-image").await;
}

/// `--max-cost` counts submitted work at the batch price: 10 × 1K rows at $0.067 in batch
/// ($0.134 online; Nano Banana Pro's catalogue prices, given with --price for OpenAI).
/// $0.70 makes them all by batch; $0.35 submits five ($0.335) and stops, still collecting
/// them; raising it submits the rest, nothing twice.
async fn max_cost(dialect: &str, model: &str) {
    let prices: Vec<String> = if dialect == "openai" {
        vec!["--price".into(), format!("{model}:*=0.134"), "--price".into(), format!("{model}:*:batch=0.067")]
    } else {
        vec![]
    };
    let with = |cap: &'static str| -> Vec<String> {
        let mut a: Vec<String> =
            batch_args(dialect, model, &["--max-cost", cap]).into_iter().map(String::from).collect();
        a.extend(prices.iter().cloned());
        a
    };
    let sim = sim(scaled(20.0)).await;
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row> = text_rows(10, "budget").into_iter().map(|r| Row { size: "1K", ..r }).collect();
    let manifest = write_manifest(dir.path(), &rows);
    let out = dir.path().join("out-all");
    let args = with("0.70");
    let o = run(&sim, &manifest, &out, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(o.status.code(), Some(0), "{dialect}: {}", text(&o));
    assert_all_made_once(&out, &sim, &prompts(&rows));
    assert!(text(&o).contains("$0.67"), "{dialect}: the spend is the batch price: {}", text(&o));

    let sim = sim_again().await;
    let out = dir.path().join("out-half");
    let args = with("0.35");
    let o = run(&sim, &manifest, &out, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(o.status.code(), Some(1), "{dialect}: {}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--max-cost $0.35"), "{dialect}: {}", text(&o));
    assert_eq!(lines_per_prompt(&sim.stats()), 5, "{dialect}: five rows fit $0.35 at $0.067");
    assert_eq!(count(&states(&out), "done"), 5, "{dialect}: the job submitted was collected");
    let args = with("1");
    let o = run(&sim, &manifest, &out, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(o.status.code(), Some(0), "{dialect}: {}", text(&o));
    assert_all_made_once(&out, &sim, &prompts(&rows));
    assert_eq!(lines_per_prompt(&sim.stats()), 10, "{dialect}: no row submitted twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_cost_counts_batch_work_at_the_batch_price_openai() {
    max_cost("openai", "gpt-image-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_cost_counts_batch_work_at_the_batch_price_gemini() {
    max_cost("gemini", "gemini-3-pro-image").await;
}

async fn sim_again() -> SimServer {
    sim(scaled(20.0)).await
}

/// An online run of a folder whose rows are in an open job leaves them alone (they are
/// not pending) and says so; the batch run then collects them: nothing is paid twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_run_of_the_same_folder_never_pays_for_rows_in_a_job() {
    let (dialect, model) = DIALECTS[0];
    let sim = sim(SimConfig { batch_pending: Duration::from_secs(60 * 60), ..scaled(20.0) }).await;
    let dir = tempfile::tempdir().unwrap();
    let rows = text_rows(6, "both");
    let manifest = write_manifest(dir.path(), &rows);
    let out = dir.path().join("out");
    let args = batch_args(dialect, model, &[]);
    let mut child = spawn_run(&sim, &manifest, &out, &args);
    wait_until("the job polled", || sim.stats().batch_gets >= 2).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let online = run(&sim, &manifest, &out, &["--provider", dialect, "--model", model]).await;
    assert_eq!(sim.stats().requests, 0, "the online run sent none of the job's rows: {}", text(&online));
    assert_eq!(online.status.code(), Some(1), "rows are left unfinished: {}", text(&online));
    assert!(text(&online).contains("in batch"), "it says where the rows are: {}", text(&online));
    let again = run(&sim, &manifest, &out, &args).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_all_made_once(&out, &sim, &prompts(&rows));
    assert_eq!(sim.stats().batch_jobs.len(), 1);
}
