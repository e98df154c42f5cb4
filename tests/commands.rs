//! The commands a user lives in — report, status, resume, --dry-run, --max-cost, the
//! folder lock and the progress line — through the CLI.

mod common;

use std::time::Duration;

use common::*;

fn cmd(args: &[&str], out: &std::path::Path) -> tokio::process::Command {
    let mut c = bin();
    c.args(args).arg("-o").arg(out);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_comes_in_every_format_and_the_json_matches_its_schema() {
    let sim =
        sim(SimConfig { faults: vec![FaultSpec::new(Fault::Overloaded, 0.2)], ..fixed(Duration::from_millis(5)) })
            .await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 30);
    let out = dir.path().join("out");
    let price = ["--price", "gpt-image-2:*=0.05"];
    assert_eq!(run(&sim, &manifest, &out, &price).await.status.code(), Some(0));

    let json = cmd(&["report", "--format", "json"], &out).output().await.unwrap();
    assert_eq!(json.status.code(), Some(0), "{}", text(&json));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/report.schema.json"))).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&report).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(report["overall"]["done"], 30);
    assert_eq!(report["classes"].as_array().unwrap().len(), 3);
    assert!((report["overall"]["spend_usd"].as_f64().unwrap() - 1.5).abs() < 1e-9, "30 x $0.05");
    // The file written at the end of the run is the same report.
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(file, report);
    // The schema is not a rubber stamp.
    let mut broken = report.clone();
    broken["overall"]["call_latency_s"]["p50"] = "fast".into();
    assert!(!validator.is_valid(&broken));

    // The chart: well-formed SVG, one legend entry (one series) per class of the run.
    let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let texts: Vec<&str> = doc.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).collect();
    for class in ["1K", "2K", "4K"] {
        let legend = format!("{class} (N=10)");
        assert_eq!(texts.iter().filter(|t| t.trim() == legend).count(), 1, "{legend} in {texts:?}");
    }
    assert!(texts.iter().any(|t| t.contains("Images completed over time")));

    let md = String::from_utf8(cmd(&["report", "--format", "md"], &out).output().await.unwrap().stdout).unwrap();
    assert!(md.starts_with("# bulkgen latency report") && md.contains("| 4K |"), "{md}");
    let plain = String::from_utf8(cmd(&["report"], &out).output().await.unwrap().stdout).unwrap();
    assert!(plain.contains("30 rows: 30 done") && plain.contains("spend: $1.50"), "{plain}");
    let csv = String::from_utf8(cmd(&["report", "--format", "csv"], &out).output().await.unwrap().stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("kind,group,rows,done"));
    assert_eq!(lines.len(), 1 + 3 + 1 + 1, "3 classes, 1 model, all: {csv}");
    let missing = cmd(&["report"], &dir.path().join("nowhere")).output().await.unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no checkpoint"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_report_work_during_a_run_and_a_second_run_is_refused() {
    let sim = sim(fixed(Duration::from_millis(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 40);
    let out = dir.path().join("out");
    let child = spawn_run(&sim, &manifest, &out, &["-c", "4", "-q"]);
    wait_until("a first wave of images", || sim.stats().successes >= 4).await;
    let status = cmd(&["status"], &out).output().await.unwrap();
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(status_text.contains("a run is active right now"), "{}", text(&status));
    assert!(status_text.contains("40 rows:"), "{status_text}");
    let report = cmd(&["report"], &out).output().await.unwrap();
    assert_eq!(report.status.code(), Some(0), "{}", text(&report));
    assert!(String::from_utf8_lossy(&report.stdout).contains("pending"));

    let second = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another bulkgen run"), "{}", text(&second));

    let o = child.wait_with_output().await.unwrap();
    assert_eq!(o.status.code(), Some(0));
    let after = String::from_utf8(cmd(&["status"], &out).output().await.unwrap().stdout).unwrap();
    assert!(after.contains("no run is active") && after.contains("40 done"), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_rows_by_state_and_class_and_failures_by_class() {
    // Every prompt is refused on its first call, and refusals are final: 7 failed rows.
    let sim = sim(SimConfig { fail_first: Some(Fault::Refuse), ..fixed(Duration::from_millis(5)) }).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 7);
    let out = dir.path().join("out");
    assert_eq!(run(&sim, &manifest, &out, &[]).await.status.code(), Some(1));
    let status = cmd(&["status"], &out).output().await.unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let s = String::from_utf8_lossy(&status.stdout);
    assert!(s.contains("7 rows: 0 done, 7 failed, 0 pending, 0 running"), "{s}");
    // r0000..r0006 cycle 1K, 2K, 4K: 3, 2 and 2 rows.
    for line in ["  1K            0        0        0        3", "  2K            0        0        0        2"] {
        assert!(s.lines().any(|l| l == line), "{line:?} in {s}");
    }
    assert!(s.contains("failed for good, by class: refused 7"), "{s}");
    assert!(s.contains("latest errors (newest first):"), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_reuses_the_stored_flags_and_flags_given_to_it_win() {
    let sim = sim(fixed(Duration::from_millis(40))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 24);
    let out = dir.path().join("out");
    // The first run stops at once on a budget of one image, after storing its flags.
    let first = run(&sim, &manifest, &out, &["-c", "3", "--price", "gpt-image-2:*=1", "--max-cost", "1"]).await;
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert!(String::from_utf8_lossy(&first.stderr).contains("--max-cost $1.00"), "{}", text(&first));
    assert_eq!(sim.stats().successes, 1, "the cap held calls in flight too");

    let resumed = cmd(&["resume"], &out).args(["--max-cost", "100", "--retry-failed"]).output().await.unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_images_match(&out, &prompts);
    assert!(sim.stats().max_in_flight <= 3, "the stored -c 3 was used");
    let bad = cmd(&["resume"], &dir.path().join("nowhere")).output().await.unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_without_sending_anything() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 30);
    let out = dir.path().join("out");
    let dry = run(&sim, &manifest, &out, &["--dry-run", "--model", "gemini-3-pro-image", "-c", "10"]).await;
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let plan = String::from_utf8_lossy(&dry.stdout);
    assert!(plan.contains("nothing was sent") && plan.contains("0 already done"), "{plan}");
    // 10 rows per class: 20 x $0.134 + 10 x $0.24.
    assert!(plan.contains("estimated cost: $5.08"), "{plan}");
    assert!(plan.contains("published table"), "{plan}");
    assert_eq!(sim.stats().requests, 0);
    assert!(!out.exists(), "a dry run creates nothing");

    assert_eq!(run(&sim, &manifest, &out, &["--model", "gemini-3-pro-image"]).await.status.code(), Some(0));
    let again = run(&sim, &manifest, &out, &["--dry-run", "--model", "gemini-3-pro-image"]).await;
    let plan = String::from_utf8_lossy(&again.stdout);
    assert!(plan.contains("30 already done") && plan.contains("0 to run") && plan.contains("observed"), "{plan}");
    assert_eq!(sim.stats().requests, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_a_terminal_progress_is_a_plain_line_at_the_asked_interval() {
    let sim = sim(fixed(Duration::from_millis(100))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 20);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["-c", "2", "--progress-interval", "200ms"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("rows settled")).collect();
    assert!(lines.len() >= 3, "about one line per 200 ms of a ~1 s run: {stderr}");
    assert!(lines.iter().all(|l| l.contains("/20 rows settled") && l.contains("in flight")), "{lines:?}");
    let quiet = run(&sim, &manifest, &dir.path().join("quiet"), &["-q"]).await;
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("rows settled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_progress_is_a_live_bar_with_latency_per_class() {
    let sim = sim(fixed(Duration::from_millis(150))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 24);
    let out = dir.path().join("out");
    // util-linux `script` runs the command on a pseudo-terminal and copies what it draws.
    let command = format!(
        "{} run {} --base-url {} -o {} -c 2 --rpm 0",
        env!("CARGO_BIN_EXE_bulkgen"),
        manifest.display(),
        sim.base_url(),
        out.display()
    );
    let o = tokio::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("BULKGEN_API_KEY", KEY)
        .env("TERM", "xterm")
        .output()
        .await
        .expect("util-linux `script` is needed for this test (apt-get install bsdutils)");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(screen.contains("rows settled") && screen.contains("in flight"), "{screen}");
    assert!(screen.contains("latency (latest calls): 1K P50"), "{screen}");
    assert!(!screen.contains("] 0/24 rows settled;"), "the plain line is for non-terminals only: {screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulkgen_sim_serves_a_batch_as_its_own_process_and_stops_on_ctrl_c() {
    use tokio::io::AsyncBufReadExt;
    let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_bulkgen"))
        .args(["sim", "--listen", "127.0.0.1:0", "--time-scale", "0", "--api-key-env", "BULKGEN_API_KEY"])
        .env("BULKGEN_API_KEY", KEY)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(sim.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let url = first.strip_prefix("bulkgen sim: listening on ").expect("the address comes first").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");

    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 12);
    let out = dir.path().join("out");
    let o = run_cmd(&url, &manifest, &out, &["-q"]).output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_images_match(&out, &prompts);
    let stats: serde_json::Value = serde_json::from_str(&http_get(&format!("{url}/_sim/stats")).await).unwrap();
    assert_eq!(stats["successes"], 12);

    let pid = sim.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let mut rest = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push_str(&line);
    }
    assert_eq!(sim.wait().await.unwrap().code(), Some(0));
    assert!(rest.contains("12 requests, 12 images"), "{rest}");
}

/// A plain HTTP/1.1 GET over a TCP socket (the tests need no HTTP client of their own).
async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf.split_once("\r\n\r\n").unwrap().1.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_can_come_from_bulkgen_environment_variables() {
    let sim = sim(fixed(Duration::from_millis(50))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 12);
    let out = dir.path().join("from-env");
    let mut c = bin();
    c.arg("run").arg(&manifest).args(["--rpm", "0", "-q"]);
    c.env("BULKGEN_BASE_URL", sim.base_url()).env("BULKGEN_OUT", &out).env("BULKGEN_CONCURRENCY", "2");
    let o = c.output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_images_match(&out, &prompts);
    assert_eq!(sim.stats().max_in_flight, 2, "BULKGEN_CONCURRENCY=2 was the cap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_needs_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/prompts.csv");
    let o = bin()
        .env_remove("BULKGEN_API_KEY")
        .args(["run", manifest, "--dry-run", "-o"])
        .arg(dir.path().join("out"))
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("reference images: 3 distinct"), "{said}");
}
