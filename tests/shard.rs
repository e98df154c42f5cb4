//! `--shard-dirs` (issue 13): for 100,000+ images, files go to `images/<2 hex>/`. The
//! paths in results.csv and metadata.jsonl are the files'; a kill, a resume, a lost
//! checkpoint and `bulkgen repair` all find images in either layout.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::*;

/// Every row done, its file where results.csv says, under a two-hex folder, holding its
/// own prompt's image.
fn assert_sharded(out: &Path, prompts: &HashMap<String, String>) {
    let rows = results(out);
    assert_eq!(rows.len(), prompts.len());
    for r in rows {
        assert_eq!(r["status"], "done", "{r:?}");
        let file = &r["file"];
        let parts: Vec<&str> = file.split('/').collect();
        assert_eq!(parts.len(), 3, "images/<shard>/<id>.png: {file}");
        assert_eq!(parts[1], bulkgen::output::shard_of(&r["id"]), "{file}");
        let bytes = std::fs::read(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(read_tag(&bytes).unwrap()["prompt"], prompt_tag(&prompts[&r["id"]]), "{file}");
    }
    let meta = std::fs::read_to_string(out.join("metadata.jsonl")).unwrap();
    for line in meta.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = v["file"].as_str().unwrap();
        assert!(out.join(file).is_file(), "metadata names {file}");
        assert_eq!(file.split('/').count(), 3, "{file}");
    }
    assert_eq!(meta.lines().count(), prompts.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_dirs_spread_files_and_every_record_names_their_path() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 40);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["--shard-dirs", "-c", "8"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_sharded(&out, &prompts);
    let folders = std::fs::read_dir(out.join("images")).unwrap().count();
    assert!(folders > 20, "40 ids spread over many of the 256 folders: {folders}");
    // Nothing is sent again.
    let again = run(&sim, &manifest, &out, &["--shard-dirs"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_each_generated_once(&sim.stats(), &prompts);
}

/// SIGKILL while images land, then the resume; then the checkpoint lost: a run refuses to
/// pay again for the sharded images and `bulkgen repair` adopts them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_a_lost_checkpoint_and_repair_find_sharded_images() {
    let sim = sim(fixed(Duration::from_millis(40))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 40);
    let out = dir.path().join("out");
    let args = ["--shard-dirs", "-c", "4"];
    let mut child = spawn_run(&sim, &manifest, &out, &args);
    wait_until("images landing", || sim.stats().successes >= 10).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_sharded(&out, &prompts);
    let paid = sim.stats().successes;
    assert!(paid <= 40 + 4, "at most -c 4 paid twice: {paid}");

    for f in ["bulkgen.db", "bulkgen.db-wal", "bulkgen.db-shm"] {
        let _ = std::fs::remove_file(out.join(f));
    }
    let refused = run(&sim, &manifest, &out, &args).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("bulkgen repair"), "{}", text(&refused));
    let repair = bin().arg("repair").arg(&manifest).arg("-o").arg(&out).args(["--base-url", &sim.base_url()]).output();
    let repair = repair.await.unwrap();
    assert_eq!(repair.status.code(), Some(0), "{}", text(&repair));
    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sim.stats().successes, paid, "repair adopted every sharded image: nothing paid again");
    assert_sharded(&out, &prompts);
}
