//! Shared helpers: a simulator on 127.0.0.1:0 in the test process, the bulkgen binary
//! run as a child process against it, and readers for what it leaves in --out.

#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub use bulkgen::sim::{Fault, FaultSpec, SimConfig, SimServer, SimStats, prompt_tag, read_tag};

pub const KEY: &str = "sk-test-4f9c2a7e1b";

pub async fn sim(cfg: SimConfig) -> SimServer {
    SimServer::start(SimConfig { api_key: Some(KEY.into()), ..cfg }, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// A simulator whose calls all take `latency` (real time).
pub fn fixed(latency: Duration) -> SimConfig {
    SimConfig { time_scale: 1.0, fixed_latency: Some(latency), ..SimConfig::default() }
}

pub fn bin() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_bulkgen"));
    c.env_remove("BULKGEN_API_KEY").env("BULKGEN_API_KEY", KEY).kill_on_drop(true);
    c
}

/// `bulkgen run MANIFEST --base-url URL -o OUT` with fast backoff, no rate cap and a fixed
/// seed, then ARGS (a flag given again in ARGS wins).
pub fn run_cmd(base_url: &str, manifest: &Path, out: &Path, args: &[&str]) -> tokio::process::Command {
    let mut c = bin();
    c.arg("run").arg(manifest).arg("--base-url").arg(base_url).arg("-o").arg(out);
    c.args(["--backoff-base", "5ms", "--backoff-max", "50ms", "--rpm", "0", "--seed", "7"]);
    c.args(args);
    c
}

/// [`run_cmd`] against `sim`, to the end; returns the process's output.
pub async fn run(sim: &SimServer, manifest: &Path, out: &Path, args: &[&str]) -> Output {
    let mut c = run_cmd(&sim.base_url(), manifest, out, args);
    tokio::time::timeout(Duration::from_secs(120), c.output()).await.expect("run finishes").unwrap()
}

pub fn text(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A manifest of `n` rows cycling through 1K, 2K and 4K; returns the prompts by id.
pub fn manifest(dir: &Path, n: usize) -> (PathBuf, HashMap<String, String>) {
    let path = dir.join("manifest.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["id", "prompt", "size", "note"]).unwrap();
    let mut prompts = HashMap::new();
    for i in 0..n {
        let id = format!("r{i:04}");
        let prompt = format!("test prompt number {i}, a \"quoted\" word");
        let size = ["1K", "2K", "4K"][i % 3];
        w.write_record([id.as_str(), prompt.as_str(), size, &format!("note {i}")]).unwrap();
        prompts.insert(id, prompt);
    }
    w.flush().unwrap();
    (path, prompts)
}

/// results.csv as a list of maps, header name -> value.
pub fn results(out: &Path) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_path(out.join("results.csv")).expect("results.csv exists");
    let header = r.headers().unwrap().clone();
    r.records()
        .map(|rec| header.iter().zip(rec.unwrap().iter()).map(|(h, v)| (h.to_owned(), v.to_owned())).collect())
        .collect()
}

/// Every output file must be a whole simulator PNG made for its own row's prompt.
pub fn assert_images_match(out: &Path, prompts: &HashMap<String, String>) {
    for (id, prompt) in prompts {
        let path = out.join("images").join(format!("{id}.png"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tag = read_tag(&bytes).unwrap_or_else(|| panic!("{} is not a simulator PNG", path.display()));
        assert_eq!(tag["prompt"], prompt_tag(prompt), "{id} holds another prompt's image");
    }
}

/// Rows in each state, straight from the checkpoint.
pub fn states(out: &Path) -> HashMap<String, String> {
    let db = rusqlite::Connection::open(out.join("bulkgen.db")).unwrap();
    let mut st = db.prepare("SELECT id, state FROM rows WHERE seq IS NOT NULL").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

/// (id, kind, started_at, duration_s, error_class) of every attempt, in start order.
pub fn attempts(out: &Path) -> Vec<(String, String, f64, f64, Option<String>)> {
    let db = rusqlite::Connection::open(out.join("bulkgen.db")).unwrap();
    let mut st = db
        .prepare(
            "SELECT r.id, a.kind, a.started_at, a.duration_s, a.error_class FROM attempts a \
             JOIN rows r ON r.rid = a.rid ORDER BY a.started_at",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every prompt generated successfully exactly once.
pub fn assert_each_generated_once(stats: &SimStats, prompts: &HashMap<String, String>) {
    for (id, prompt) in prompts {
        let c = stats.per_prompt.get(&prompt_tag(prompt)).copied().unwrap_or_default();
        assert_eq!(c.successes, 1, "{id} was generated {} times", c.successes);
    }
}

/// [`run_cmd`] against `sim`, started in the background with its output captured.
pub fn spawn_run(sim: &SimServer, manifest: &Path, out: &Path, args: &[&str]) -> tokio::process::Child {
    spawn_run_at(&sim.base_url(), manifest, out, args)
}

/// [`spawn_run`] against any base URL (one where no simulator runs yet, say).
pub fn spawn_run_at(base_url: &str, manifest: &Path, out: &Path, args: &[&str]) -> tokio::process::Child {
    let mut c = run_cmd(base_url, manifest, out, args);
    c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    c.spawn().unwrap()
}

/// Polls `ready` until it holds (30 s at most).
pub async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !ready() {
        assert!(t.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends SIGINT (a Ctrl-C) to a running child.
pub fn send_sigint(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success();
    assert!(ok, "kill -INT {pid}");
}

/// `bulkgen report --format json -o OUT`, parsed.
pub async fn json_report(out: &Path) -> serde_json::Value {
    let o = bin().args(["report", "--format", "json", "-o"]).arg(out).output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}
