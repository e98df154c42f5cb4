//! DIR/metadata.jsonl (issue 13): one line per image on disk, with what a user keeps
//! besides pixels. The file must agree with the images on disk and with results.csv after
//! a clean run, while a run is killed, and after the resume; batch-made images too.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn lines(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("metadata.jsonl")).expect("metadata.jsonl exists");
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn schema() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/metadata.schema.json")))
            .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Every line names a file on disk whose bytes have the line's hash and size, and no id
/// has two lines.
fn assert_lines_match_disk(out: &Path, lines: &[Value]) {
    let mut ids = HashSet::new();
    for l in lines {
        let id = l["id"].as_str().unwrap();
        assert!(ids.insert(id.to_owned()), "{id} has two lines");
        let bytes = std::fs::read(out.join(l["file"].as_str().unwrap()))
            .unwrap_or_else(|e| panic!("{id}: a line for an image not on disk: {e}"));
        let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(l["sha256"], sha.as_str(), "{id}");
        let (w, h) = bulkgen::output::dimensions(&bytes).expect("a PNG with a header");
        assert_eq!((l["width"].as_u64(), l["height"].as_u64()), (Some(w as u64), Some(h as u64)), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_image_has_one_line_that_agrees_with_the_file_and_results_csv() {
    let sim = sim(fixed(Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 12);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["--price", "gpt-image-2:*=0.04", "--param", "quality=high"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines = lines(&out);
    assert_eq!(lines.len(), 12);
    assert_lines_match_disk(&out, &lines);
    let validator = schema();
    for l in &lines {
        let errors: Vec<String> = validator.iter_errors(l).map(|e| format!("{e} at {}", e.instance_path)).collect();
        assert!(errors.is_empty(), "{errors:?} in {l}");
    }
    let results: HashMap<String, HashMap<String, String>> =
        results(&out).into_iter().map(|r| (r["id"].clone(), r)).collect();
    for l in &lines {
        let id = l["id"].as_str().unwrap();
        let r = &results[id];
        assert_eq!(l["prompt"], prompts[id].as_str());
        for (field, column) in [("file", "file"), ("size", "size"), ("size_sent", "size_sent"), ("model", "model")] {
            assert_eq!(l[field], r[column].as_str(), "{id}: {field}");
        }
        assert_eq!(l["attempts"].as_i64().unwrap().to_string(), r["attempts"], "{id}");
        assert_eq!(l["cost_usd"], 0.04, "{id}");
        assert_eq!(l["params"]["quality"], "high", "{id}");
        assert_eq!(l["engine"], "online");
        assert!(l["latency_s"].as_f64().unwrap() > 0.0, "{id}");
        // The simulator's GPT image answers carry no revised prompt, as the real ones.
        assert_eq!((&l["revised_prompt"], &l["finish_reason"]), (&Value::Null, &Value::Null), "{id}");
    }
    // The schema is not a rubber stamp.
    let mut broken = lines[0].clone();
    broken["sha256"] = "not a hash".into();
    assert!(!validator.is_valid(&broken));
}

/// Killed while images land: every line then written names an image on disk with its
/// hash (a line is appended only after its file is in place); the resume's file holds
/// one line per done row, and agrees with the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_match_the_disk_across_sigkills_and_resumes() {
    let sim = sim(fixed(Duration::from_millis(40))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 60);
    let out = dir.path().join("out");
    for round in 0..2 {
        let mut child = spawn_run(&sim, &manifest, &out, &["-c", "4"]);
        let before = sim.stats().successes;
        wait_until("images landing", || sim.stats().successes >= before + 8).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        let at_kill = lines(&out);
        assert!(!at_kill.is_empty(), "round {round}: lines were appended while the run went on");
        assert_lines_match_disk(&out, &at_kill);
    }
    let o = run(&sim, &manifest, &out, &["-c", "4"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines = lines(&out);
    assert_eq!(lines.len(), prompts.len());
    assert_lines_match_disk(&out, &lines);
    assert_images_match(&out, &prompts);
}

/// Images made by a batch job get their lines too, with the engine that made them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_made_images_have_their_lines() {
    let sim = sim(SimConfig { time_scale: 20.0 / 60_000.0, ..SimConfig::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 6);
    let out = dir.path().join("out");
    let args =
        ["--provider", "gemini", "--model", "gemini-3-pro-image", "--engine", "batch", "--poll-interval", "20ms"];
    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines = lines(&out);
    assert_eq!(lines.len(), 6);
    assert_lines_match_disk(&out, &lines);
    for l in &lines {
        assert_eq!(l["engine"], "batch");
        // What Gemini said beside the image, from the batch result line's response.
        assert_eq!(l["finish_reason"], "STOP", "{l}");
        // The catalogue's batch price for Nano Banana Pro: half the online one.
        let cost = l["cost_usd"].as_f64().unwrap();
        assert!([0.067, 0.12].iter().any(|p| (cost - p).abs() < 1e-9), "{l}");
    }
}
