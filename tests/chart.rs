//! The chart `DIR/latency.svg` as a run leaves it, read as text.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// The non-blank text nodes of the folder's chart.
fn chart_texts(out: &Path) -> Vec<String> {
    let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let texts = doc.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).map(str::trim);
    texts.filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// A latency as the report prints it.
fn secs(v: &serde_json::Value) -> String {
    let s = v.as_f64().unwrap();
    if s < 10.0 { format!("{s:.2}s") } else { format!("{s:.1}s") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_run_twice_has_both_runs_marked_and_the_reports_percentiles() {
    let sim = sim(fixed(Duration::from_millis(40))).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");

    // Run 1: 10 rows per class, too few for a P95.
    let (manifest_path, _) = manifest(dir.path(), 30);
    let first = run(&sim, &manifest_path, &out, &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let texts = chart_texts(&out);
    assert!(texts.iter().any(|t| t == "1K (N=10)"), "{texts:?}");
    assert_eq!(texts.iter().filter(|t| *t == "P95/P99 need 20 calls").count(), 3, "{texts:?}");
    assert!(!texts.iter().any(|t| t.starts_with("run ")), "a single run needs no marker: {texts:?}");
    assert!(texts.iter().any(|t| t == "time since the run started (s)"), "{texts:?}");

    // A pause, then run 2 on the same folder with 30 more rows: 20 per class.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (manifest_path, _) = manifest(dir.path(), 60);
    let second = run(&sim, &manifest_path, &out, &[]).await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let texts = chart_texts(&out);
    for expected in ["run 1", "run 2", "time in runs (s), pauses between runs cut out"] {
        assert!(texts.iter().any(|t| t == expected), "missing {expected:?} in {texts:?}");
    }
    assert!(texts.iter().any(|t| t.starts_with("between runs ")), "the pause is labelled: {texts:?}");
    assert!(!texts.iter().any(|t| t == "P95/P99 need 20 calls"), "{texts:?}");

    // The figures are the report's own, per class.
    let report = json_report(&out).await;
    for class in report["classes"].as_array().unwrap() {
        let p = &class["call_latency_s"];
        assert_eq!(p["n"], 20, "{class}");
        let name = class["name"].as_str().unwrap();
        assert!(texts.iter().any(|t| *t == format!("{name} (N=20)")), "{name} in {texts:?}");
        for q in ["p50", "p95", "p99"] {
            let label = format!("{} {}", q.to_uppercase(), secs(&p[q]));
            assert!(texts.contains(&label), "{name}: missing {label:?} in {texts:?}");
        }
    }
}
