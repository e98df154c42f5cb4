//! What the report tells a user (issue 13, "Tell the truth while it runs"): advice from a
//! simulated run is in the time the simulation stands for, so pasting it back works; time
//! between runs is not latency; a report of zero successes still knows the rate cap,
//! prints no empty tables, and says the stop's cause and remedy once.

mod common;

use std::time::Duration;

use common::*;

/// `--simulate` runs in compressed time (0.01: a 45 s call takes 0.45 s). The report gives
/// latencies, the rate and the advice in the provider time they stand for; the timeouts
/// it recommends, pasted back into the same command, let every row finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_advice_is_in_the_time_it_stands_for_and_works_when_pasted_back() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 66);
    let out = dir.path().join("out");
    let sim_run = |out: &std::path::Path, extra: &[&str]| {
        let mut c = bin();
        c.arg("run").arg(&manifest).arg("-o").arg(out);
        c.args(["--simulate", "--time-scale", "0.01", "--rpm", "60", "-c", "64", "--seed", "3"]).args(extra);
        c
    };
    let o = tokio::time::timeout(Duration::from_secs(120), sim_run(&out, &[]).output()).await.unwrap().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report = json_report(&out).await;
    assert_eq!(report["simulated_time_scale"], 0.01, "{report}");
    assert_eq!(report["rate_cap_per_minute"], 60.0, "the cap as given, not 100 times it: {report}");
    let p50 = report["overall"]["call_latency_s"]["p50"].as_f64().unwrap();
    assert!(p50 > 5.0, "latencies in provider time (tens of seconds), not the 0.01 s-scale real time: {p50}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("simulated (--simulate, time scale 0.01)"), "{stdout}");
    assert!(!stdout.contains("6000 starts/min"), "{stdout}");
    // The chart says which time each axis is in.
    let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    assert!(svg.contains("simulated: provider time") && svg.contains("real time of the simulation"), "{svg}");
    let advice = stdout.lines().find_map(|l| l.strip_prefix("timeouts: ")).expect("timeout advice");
    let timeouts: Vec<&str> = advice.split(" (").next().unwrap().split_whitespace().collect();
    assert!(timeouts.len() >= 2 && timeouts[0] == "--timeout", "{advice}");

    // The advice, pasted back: rows do not time out (before, every one did). A tail
    // estimated from 22 calls a class may still cut the odd slowest call, which is retried.
    let out2 = dir.path().join("out2");
    let o = tokio::time::timeout(Duration::from_secs(120), sim_run(&out2, &timeouts).output()).await.unwrap().unwrap();
    assert_eq!(o.status.code(), Some(0), "with {timeouts:?}: {}", text(&o));
    let report = json_report(&out2).await;
    let timed_out = report["overall"]["errors"]["timeout"].as_u64().unwrap_or(0);
    assert!(timed_out <= 66 / 10, "{timed_out} calls timed out with {timeouts:?}: {report}");
}

/// A row that failed in one run and was made in the next: its end-to-end time is its time
/// in calls, not the pause between the runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_between_runs_is_not_end_to_end_time() {
    let sim = sim(SimConfig { fail_first: Some(Fault::Server), ..fixed(Duration::from_millis(100)) }).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 4);
    let out = dir.path().join("out");
    let first = run(&sim, &manifest, &out, &["--max-attempts", "1"]).await;
    assert_eq!(first.status.code(), Some(1), "every row's one attempt failed: {}", text(&first));
    let pause = Duration::from_secs(3);
    tokio::time::sleep(pause).await;
    let second = run(&sim, &manifest, &out, &["--max-attempts", "1"]).await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_images_match(&out, &prompts);
    for r in results(&out) {
        let e2e: f64 = r["end_to_end_s"].parse().unwrap();
        assert!(e2e < pause.as_secs_f64() / 2.0, "{}: {e2e}s includes the pause between runs", r["id"]);
        assert!(e2e >= 0.1, "{}: {e2e}s is less than its successful 100 ms call", r["id"]);
    }
}

/// A run that stops on a wrong key with a rate cap: the report knows the cap, prints
/// "none yet" rather than tables of dashes, counts one attempt (the one call sent, not
/// the rows that waited for the rate token), and the remedy is said once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_zero_successes_is_short_and_true() {
    let sim = sim(fixed(Duration::from_millis(20))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 12);
    let out = dir.path().join("out");
    let mut c = run_cmd(&sim.base_url(), &manifest, &out, &["--rpm", "60", "-c", "8", "--no-preflight"]);
    c.env("BULKGEN_API_KEY", "sk-wrong-0000");
    let o = c.output().await.unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stdout.contains("no rate cap was set"), "{stdout}");
    assert!(stdout.contains("the rate cap is 60 starts/min"), "{stdout}");
    for section in ["Successful call latency", "End-to-end time per row"] {
        let after = &stdout[stdout.find(section).expect(section)..];
        assert!(after.lines().nth(1) == Some("  none yet"), "no table of dashes: {stdout}");
    }
    assert!(stdout.contains("all: rows by attempts [1x: 1]"), "only the row whose call was sent: {stdout}");
    assert_eq!(stderr.matches("what to do:").count(), 1, "{stderr}");
    assert_eq!(sim.stats().auth_failures, 1, "{stderr}");
}

/// `--max-cost` caps the folder's whole spend, not each run's: the same command run again
/// spends nothing more (before, each run spent the cap again: $4.87, $9.85, $14.78).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_cost_caps_the_folders_spend_across_runs() {
    let sim = sim(fixed(Duration::from_millis(20))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 10);
    let out = dir.path().join("out");
    let args = ["-c", "1", "--price", "gpt-image-2:*=1", "--max-cost", "3"];
    let first = run(&sim, &manifest, &out, &args).await;
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert_eq!(sim.stats().successes, 3, "{}", text(&first));
    assert!(text(&first).contains("caps this folder's whole spend"), "{}", text(&first));
    let again = run(&sim, &manifest, &out, &args).await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert_eq!(sim.stats().successes, 3, "the same cap spends nothing more: {}", text(&again));
    assert!(text(&again).contains("$3.00 already spent by earlier runs"), "{}", text(&again));
    let raised = run(&sim, &manifest, &out, &["-c", "1", "--price", "gpt-image-2:*=1", "--max-cost", "10"]).await;
    assert_eq!(raised.status.code(), Some(0), "{}", text(&raised));
    assert_images_match(&out, &prompts);
    assert_eq!(sim.stats().successes, 10);
}

/// The plain progress line (stderr not a terminal) shows the errors so far by class, the
/// hold a 429 put on every call and when it ends, and a projected total spend beside the
/// spend so far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_shows_errors_by_class_holds_and_projected_spend() {
    let cfg = SimConfig {
        faults: vec![FaultSpec::new(Fault::Server, 0.3), FaultSpec::new(Fault::RateLimited, 0.1)],
        retry_after: Duration::from_millis(300),
        seed: 5,
        ..fixed(Duration::from_millis(60))
    };
    let sim = sim(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 30);
    let out = dir.path().join("out");
    let args = ["-c", "3", "--progress-interval", "50ms", "--price", "gpt-image-2:*=0.5", "--max-attempts", "9"];
    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(" done, ")).collect();
    assert!(lines.iter().any(|l| l.contains("errors so far: ") && l.contains("server ")), "{stderr}");
    assert!(lines.iter().any(|l| l.contains("rate_limited ")), "{stderr}");
    assert!(lines.iter().any(|l| l.contains("every call held until")), "the 429's hold: {stderr}");
    // 30 rows at $0.50: every projection made from done rows says $15.00.
    let projected: Vec<&str> = lines.iter().filter_map(|l| l.split("projected total ").nth(1)).collect();
    assert!(!projected.is_empty(), "{stderr}");
    assert!(projected.iter().all(|p| p.starts_with("$15.00")), "{projected:?}");
}

/// results.csv carries what a user would otherwise join back from the manifest: prompt,
/// size asked and sent, aspect ratio, model, and the engine that made the image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_csv_needs_no_join_with_the_manifest() {
    let sim = sim(fixed(Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.csv");
    std::fs::write(&manifest, "id,prompt,size,aspect_ratio\nwide,a wide one,2K,16:9\nsquare,a square one,1K,\n")
        .unwrap();
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows: std::collections::HashMap<String, std::collections::HashMap<String, String>> =
        results(&out).into_iter().map(|r| (r["id"].clone(), r)).collect();
    let wide = &rows["wide"];
    assert_eq!(
        (wide["prompt"].as_str(), wide["size"].as_str(), wide["aspect_ratio"].as_str(), wide["model"].as_str()),
        ("a wide one", "2K", "16:9", "gpt-image-2")
    );
    assert_eq!(wide["size_sent"], "2736x1536", "{wide:?}");
    assert_eq!(wide["engine"], "online");
    assert_eq!(rows["square"]["aspect_ratio"], "");
}
