//! Reference images and edits, through the CLI against the simulator: each row's own
//! references reach the provider (the simulator's PNG names the hash of every reference
//! it received), shared references are uploaded once, a file the provider forgot is
//! uploaded again once, a kill during uploads loses and repays nothing, and a changed
//! reference counts as a changed row.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A reference image of about `len` bytes, written to `dir/name`; returns its hash.
fn reference(dir: &Path, name: &str, len: usize, seed: u64) -> String {
    let png = bulkgen::sim::png::make(len, seed, &format!("ref={name}"));
    std::fs::write(dir.join(name), &png).unwrap();
    sha256(&png)
}

struct Row {
    id: &'static str,
    prompt: String,
    images: Vec<&'static str>,
    mask: Option<&'static str>,
}

fn row(id: &'static str, images: &[&'static str], mask: Option<&'static str>) -> Row {
    Row { id, prompt: format!("prompt of {id}"), images: images.to_vec(), mask }
}

fn write_manifest(dir: &Path, rows: &[Row]) -> PathBuf {
    let path = dir.join("manifest.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["id", "prompt", "images", "mask"]).unwrap();
    for r in rows {
        w.write_record([r.id, &r.prompt, &r.images.join(";"), r.mask.unwrap_or("")]).unwrap();
    }
    w.flush().unwrap();
    path
}

/// Every row's image names its own prompt and exactly its references (and mask), by hash;
/// results.csv records the same hashes.
fn assert_rows_got_their_references(out: &Path, rows: &[Row], hashes: &HashMap<&str, String>) {
    let results: HashMap<String, HashMap<String, String>> =
        results(out).into_iter().map(|r| (r["id"].clone(), r)).collect();
    for r in rows {
        let png = std::fs::read(out.join("images").join(format!("{}.png", r.id))).unwrap();
        let tag = read_tag(&png).unwrap_or_else(|| panic!("{} is not a simulator PNG", r.id));
        assert_eq!(tag["prompt"], prompt_tag(&r.prompt), "{} holds another prompt's image", r.id);
        let want: Vec<String> = r.images.iter().map(|n| hashes[n].clone()).collect();
        let want_mask = r.mask.map(|n| hashes[n].clone());
        let (got, got_mask) = bulkgen::sim::read_refs(&png);
        assert_eq!(got, want, "{}: the references the provider received", r.id);
        assert_eq!(got_mask, want_mask, "{}: the mask the provider received", r.id);
        assert_eq!(results[r.id]["reference_hashes"], want.join(";"), "{}: results.csv", r.id);
        assert_eq!(results[r.id]["mask_hash"], want_mask.unwrap_or_default(), "{}: results.csv", r.id);
    }
}

/// Text-only rows, rows sharing two references, rows with their own, in one batch.
fn mixed(dir: &Path, with_mask: bool) -> (Vec<Row>, HashMap<&'static str, String>) {
    let mut hashes = HashMap::new();
    hashes.insert("style.png", reference(dir, "style.png", 40_000, 1));
    hashes.insert("product.png", reference(dir, "product.png", 2_000_000, 2));
    hashes.insert("own-1.png", reference(dir, "own-1.png", 9_000, 3));
    hashes.insert("own-2.png", reference(dir, "own-2.png", 1_500_000, 4));
    hashes.insert("mask.png", reference(dir, "mask.png", 3_000, 5));
    let mut rows = vec![
        row("text-1", &[], None),
        row("text-2", &[], None),
        row("own-small", &["own-1.png"], None),
        row("own-large", &["own-2.png"], None),
    ];
    for id in ["shared-1", "shared-2", "shared-3", "shared-4", "shared-5", "shared-6"] {
        rows.push(row(id, &["style.png", "product.png"], None));
    }
    rows.push(row("shared-reversed", &["product.png", "style.png"], None));
    if with_mask {
        rows.push(row("edit-masked", &["product.png"], Some("mask.png")));
    }
    (rows, hashes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_reaches_each_dialect_with_each_rows_own_references() {
    for (dialect, model) in [("openai", "gpt-image-2"), ("gemini", "gemini-3-pro-image")] {
        let sim = sim(SimConfig { time_scale: 0.0005, ..SimConfig::default() }).await;
        let dir = tempfile::tempdir().unwrap();
        let (rows, hashes) = mixed(dir.path(), dialect == "openai");
        let manifest = write_manifest(dir.path(), &rows);
        let out = dir.path().join("out");
        let o = run(&sim, &manifest, &out, &["--provider", dialect, "--model", model, "-c", "4"]).await;
        assert_eq!(o.status.code(), Some(0), "{dialect}: {}", text(&o));
        assert_rows_got_their_references(&out, &rows, &hashes);
        let st = sim.stats();
        assert_eq!(st.successes, rows.len() as u64, "{dialect}: one image per row");
        if dialect == "gemini" {
            // Shared (style, product) and large (own-2) references are uploaded once
            // each; the small one-off (own-1) goes inline.
            assert_eq!(st.uploads, 3, "{dialect}: uploads");
            let uploaded = std::fs::metadata(dir.path().join("style.png")).unwrap().len()
                + std::fs::metadata(dir.path().join("product.png")).unwrap().len()
                + std::fs::metadata(dir.path().join("own-2.png")).unwrap().len();
            assert_eq!(st.upload_bytes, uploaded, "{dialect}: bytes uploaded");
        } else {
            let with_refs = rows.iter().filter(|r| !r.images.is_empty()).count() as u64;
            assert_eq!(st.edits, with_refs, "{dialect}: rows with references go to /v1/images/edits");
            assert_eq!(st.uploads, 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_provider_forgot_mid_run_is_uploaded_again_once() {
    let sim = sim(SimConfig { time_scale: 0.0005, forget_files_after: Some(6), ..SimConfig::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut hashes = HashMap::new();
    hashes.insert("style.png", reference(dir.path(), "style.png", 30_000, 1));
    hashes.insert("product.png", reference(dir.path(), "product.png", 60_000, 2));
    const IDS: [&str; 24] = [
        "r01", "r02", "r03", "r04", "r05", "r06", "r07", "r08", "r09", "r10", "r11", "r12", "r13", "r14", "r15", "r16",
        "r17", "r18", "r19", "r20", "r21", "r22", "r23", "r24",
    ];
    let rows: Vec<Row> = IDS.iter().map(|id| row(id, &["style.png", "product.png"], None)).collect();
    let manifest = write_manifest(dir.path(), &rows);
    let out = dir.path().join("out");
    let args = ["--provider", "gemini", "--model", "gemini-3-pro-image", "-c", "4", "--max-attempts", "2"];
    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_rows_got_their_references(&out, &rows, &hashes);
    let st = sim.stats();
    assert!(st.files_gone >= 1, "the simulator answered no 403: the test proves nothing");
    // Two references, each uploaded at the start and once more after the 403s.
    assert_eq!(st.uploads, 4, "uploads: {} (403s answered: {})", st.uploads, st.files_gone);
    assert!(states(&out).values().all(|s| s == "done"));
    // The 403s were no failures of the rows.
    let failed: Vec<_> = attempts(&out).into_iter().filter(|a| a.4.as_deref() == Some("auth")).collect();
    assert!(failed.is_empty(), "a gone file was taken for a bad key: {failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_changed_between_runs_changes_exactly_its_rows() {
    for dialect in ["openai", "gemini"] {
        let sim = sim(SimConfig { time_scale: 0.0005, ..SimConfig::default() }).await;
        let dir = tempfile::tempdir().unwrap();
        let mut hashes = HashMap::new();
        hashes.insert("a.png", reference(dir.path(), "a.png", 20_000, 1));
        hashes.insert("b.png", reference(dir.path(), "b.png", 20_000, 2));
        let rows = vec![
            row("uses-a", &["a.png"], None),
            row("uses-a-too", &["a.png", "b.png"], None),
            row("uses-b", &["b.png"], None),
            row("none", &[], None),
        ];
        let manifest = write_manifest(dir.path(), &rows);
        let out = dir.path().join("out");
        let args = ["--provider", dialect, "-c", "2"];
        let o = run(&sim, &manifest, &out, &args).await;
        assert_eq!(o.status.code(), Some(0), "{dialect}: {}", text(&o));
        let first = sim.stats().successes;
        assert_eq!(first, 4);

        // The manifest is the same; a.png's content is not.
        hashes.insert("a.png", reference(dir.path(), "a.png", 20_000, 99));
        let o = run(&sim, &manifest, &out, &args).await;
        assert_eq!(o.status.code(), Some(0), "{dialect}: {}", text(&o));
        let said = text(&o);
        assert!(said.contains("uses-a") && said.contains("--regenerate-changed"), "{dialect}: {said}");
        assert_eq!(sim.stats().successes, first, "{dialect}: kept rows were paid again without --regenerate-changed");

        let mut again = args.to_vec();
        again.push("--regenerate-changed");
        let o = run(&sim, &manifest, &out, &again).await;
        assert_eq!(o.status.code(), Some(0), "{dialect}: {}", text(&o));
        assert_eq!(sim.stats().successes, first + 2, "{dialect}: exactly the two rows naming a.png are made again");
        assert_rows_got_their_references(&out, &rows, &hashes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_during_uploads_lose_nothing_and_repay_nothing() {
    // Uploads take a while (the simulator's upload latency), so kills land during them.
    let cfg = SimConfig {
        time_scale: 0.001,
        upload_latency: Duration::from_millis(150),
        fixed_latency: Some(Duration::from_secs(40)),
        ..SimConfig::default()
    };
    let sim = sim(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let mut hashes = HashMap::new();
    let names = ["r1.png", "r2.png", "r3.png", "r4.png", "r5.png", "r6.png"];
    for (i, n) in names.iter().enumerate() {
        hashes.insert(*n, reference(dir.path(), n, 30_000 + i * 1000, i as u64 + 1));
    }
    let rows: Vec<Row> = (0..30)
        .map(|i| {
            let id: &'static str = Box::leak(format!("k{i:02}").into_boxed_str());
            let a = names[i % 6];
            let b = names[(i + 1) % 6];
            row(id, &[a, b], None)
        })
        .collect();
    let manifest = write_manifest(dir.path(), &rows);
    let out = dir.path().join("out");
    let args = ["--provider", "gemini", "--model", "gemini-3-pro-image", "-c", "3"];
    let (mut kills, mut during_upload) = (0, 0);
    for round in 0..4 {
        let before = sim.stats().upload_starts;
        let mut child = spawn_run(&sim, &manifest, &out, &args);
        wait_until("an upload to start", || sim.stats().upload_starts > before).await;
        tokio::time::sleep(Duration::from_millis(40 + 30 * round)).await;
        let st = sim.stats();
        if st.upload_starts > st.uploads {
            during_upload += 1;
        }
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        kills += 1;
    }
    let done_before: Vec<String> = states(&out).into_iter().filter(|(_, s)| s == "done").map(|(id, _)| id).collect();
    let successes_before: HashMap<String, u64> =
        sim.stats().per_prompt.iter().map(|(k, v)| (k.clone(), v.successes)).collect();
    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_rows_got_their_references(&out, &rows, &hashes);
    let st = sim.stats();
    for r in rows.iter().filter(|r| done_before.iter().any(|d| d == r.id)) {
        let tag = prompt_tag(&r.prompt);
        assert_eq!(st.per_prompt[&tag].successes, successes_before[&tag], "{}: done, then paid again", r.id);
    }
    assert!(during_upload > 0, "no kill landed while an upload was in flight: the test proves nothing");
    // Each reference: one upload, plus at most one per kill that came between its upload
    // and its record.
    assert!(st.uploads <= names.len() as u64 + kills, "uploads {} after {kills} kills", st.uploads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_references_that_swap_contents_change_both_rows() {
    let sim = sim(SimConfig { time_scale: 0.0005, ..SimConfig::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut hashes = HashMap::new();
    hashes.insert("a.png", reference(dir.path(), "a.png", 20_000, 1));
    hashes.insert("b.png", reference(dir.path(), "b.png", 20_000, 2));
    let rows = vec![row("uses-a", &["a.png"], None), row("uses-b", &["b.png"], None), row("none", &[], None)];
    let manifest = write_manifest(dir.path(), &rows);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["-c", "2"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Same manifest, same set of contents: only which file holds which changed.
    let (a, b) = (std::fs::read(dir.path().join("a.png")).unwrap(), std::fs::read(dir.path().join("b.png")).unwrap());
    std::fs::write(dir.path().join("a.png"), &b).unwrap();
    std::fs::write(dir.path().join("b.png"), &a).unwrap();
    let (ha, hb) = (hashes["a.png"].clone(), hashes["b.png"].clone());
    hashes.insert("a.png", hb);
    hashes.insert("b.png", ha);
    // A resume of an unchanged manifest skips reading it again: the swap must still show.
    let o = run(&sim, &manifest, &out, &["-c", "2"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("2 done row(s) changed") && said.contains("uses-a") && said.contains("uses-b"), "{said}");
    let o = run(&sim, &manifest, &out, &["-c", "2", "--regenerate-changed"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sim.stats().successes, 5, "both rows naming a swapped file are made again, the third is not");
    assert_rows_got_their_references(&out, &rows, &hashes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_model_takes_over_only_rows_whose_references_it_takes() {
    // gpt-image-2 is overloaded for good; nano-banana-pro (the catalogue: no edit mask)
    // may take the text row and the plain edit, never the masked one.
    let overloaded = FaultSpec { fault: Fault::Overloaded, rate: 1.0, model: Some("gpt-image-2".into()) };
    let sim = sim(SimConfig { time_scale: 0.0005, faults: vec![overloaded], ..SimConfig::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut hashes = HashMap::new();
    hashes.insert("a.png", reference(dir.path(), "a.png", 20_000, 1));
    hashes.insert("mask.png", reference(dir.path(), "mask.png", 3_000, 2));
    let rows = vec![row("text", &[], None), row("edit", &["a.png"], None), row("masked", &["a.png"], Some("mask.png"))];
    let manifest = write_manifest(dir.path(), &rows);
    let out = dir.path().join("out");
    let args = ["--model", "gpt-image-2", "--fallback-model", "nano-banana-pro", "--fallback-after", "1"];
    let o = run(&sim, &manifest, &out, &[&args[..], &["--max-attempts", "3", "-c", "1"]].concat()).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o)); // rows failed
    let results: HashMap<String, HashMap<String, String>> =
        results(&out).into_iter().map(|r| (r["id"].clone(), r)).collect();
    for id in ["text", "edit"] {
        assert_eq!(results[id]["status"], "done", "{id}");
        assert_eq!(results[id]["model"], "nano-banana-pro", "{id}");
    }
    assert_eq!(results["masked"]["status"], "failed");
    assert_eq!(results["masked"]["error_class"], "overloaded");
    assert_eq!(sim.stats().per_model.get("nano-banana-pro"), Some(&2), "the masked row never went to the fallback");
}
