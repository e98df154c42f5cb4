//! The checkpoint under attack (issue 10): a regeneration killed mid-flight, the database
//! deleted, replaced or cut short under a run or between runs, and `bulkgen repair`.
//! Each test proves through the CLI that no image is lost, none is taken for another
//! prompt's, and nothing is paid for twice.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::*;

/// A manifest like [`manifest`] (same ids and sizes) whose prompts carry `version`, so a
/// second one changes every row's prompt.
fn manifest_version(dir: &Path, n: usize, version: &str) -> (PathBuf, HashMap<String, String>) {
    let path = dir.join(format!("manifest-{version}.csv"));
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["id", "prompt", "size"]).unwrap();
    let mut prompts = HashMap::new();
    for i in 0..n {
        let id = format!("r{i:04}");
        let prompt = format!("{version}: prompt number {i}");
        w.write_record([id.as_str(), prompt.as_str(), ["1K", "2K", "4K"][i % 3]]).unwrap();
        prompts.insert(id, prompt);
    }
    w.flush().unwrap();
    (path, prompts)
}

/// `bulkgen repair MANIFEST -o OUT ARGS`, to the end.
async fn repair(manifest: &Path, out: &Path, args: &[&str]) -> Output {
    let mut c = bin();
    c.arg("repair").arg(manifest).arg("-o").arg(out).args(args);
    tokio::time::timeout(Duration::from_secs(60), c.output()).await.expect("repair finishes").unwrap()
}

async fn inspect(command: &str, out: &Path) -> Output {
    bin().arg(command).arg("-o").arg(out).output().await.unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Image files in `out/images`.
fn images_in(out: &Path) -> usize {
    std::fs::read_dir(out.join("images"))
        .map(|d| d.filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".png")).count())
        .unwrap_or(0)
}

/// Every image file's bytes, by name.
fn image_bytes(out: &Path) -> HashMap<String, Vec<u8>> {
    std::fs::read_dir(out.join("images"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// Rows of the checkpoint per state, opened read-only (a run may be writing it).
fn state_counts(out: &Path) -> HashMap<String, u64> {
    let db = rusqlite::Connection::open_with_flags(out.join("bulkgen.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut st = db.prepare("SELECT state, COUNT(*) FROM rows WHERE seq IS NOT NULL GROUP BY state").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

fn remove_checkpoint(out: &Path) {
    for name in ["bulkgen.db", "bulkgen.db-wal", "bulkgen.db-shm"] {
        let _ = std::fs::remove_file(out.join(name));
    }
}

fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect()
}

/// Item 1: prompts change, `--regenerate-changed` starts, SIGKILL while calls are in
/// flight. The old images are still in place under the rows' names; the rerun must not
/// take them for the new prompts' images.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regeneration_killed_in_flight_never_takes_the_old_image_for_the_new_prompt() {
    let sim = sim(fixed(Duration::from_millis(400))).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (v1, old_prompts) = manifest_version(dir.path(), 12, "v1");
    let first = run(&sim, &v1, &out, &["-c", "12"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_images_match(&out, &old_prompts);

    let (v2, new_prompts) = manifest_version(dir.path(), 12, "v2");
    let concurrency = 4;
    let args = ["-c", "4", "--regenerate-changed"];
    let before = sim.stats().requests;
    let mut child = spawn_run(&sim, &v2, &out, &args);
    wait_until("calls in flight", || sim.stats().requests >= before + concurrency).await;
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let at_kill = sim.stats();
    let running = state_counts(&out).get("running").copied().unwrap_or(0);
    assert!(running >= 1, "the kill left no row in flight; the test proves nothing");

    let again = run(&sim, &v2, &out, &args).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(state_counts(&out).get("done"), Some(&12), "{}", text(&again));
    // Every image is the new prompt's: none of the old files was taken for a new one.
    assert_images_match(&out, &new_prompts);
    let stats = sim.stats();
    let mut resent = 0;
    for prompt in new_prompts.values() {
        let tag = prompt_tag(prompt);
        let count = stats.per_prompt.get(&tag).copied().unwrap_or_default();
        assert!(count.successes >= 1, "{prompt} was never made");
        let before_kill = at_kill.per_prompt.get(&tag).map_or(0, |c| c.requests);
        if before_kill > 0 && count.requests > before_kill {
            resent += 1;
        }
        assert!(count.requests <= 2, "{prompt} was sent {} times", count.requests);
    }
    assert!(resent <= concurrency as usize, "{resent} rows sent again after the kill (at most -c {concurrency})");
    assert!(resent >= 1, "the rows in flight at the kill were sent again, as they must be");
}

/// Item 8a: the database file is deleted while a run writes it. The run must notice,
/// stop starting calls and exit 3 naming `bulkgen repair`; the rerun refuses to pay for
/// the images on disk (8b), and `bulkgen repair` adopts them (8c): every image is made
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_deleted_mid_run_stops_the_run_and_repair_adopts_every_image() {
    let sim = sim(fixed(Duration::from_millis(150))).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (manifest, prompts) = manifest(dir.path(), 40);
    let child = spawn_run(&sim, &manifest, &out, &["-c", "4"]);
    wait_until("some images", || images_in(&out) >= 8).await;
    std::fs::remove_file(out.join("bulkgen.db")).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(stopped.status.code(), Some(3), "{}", text(&stopped));
    let err = stderr(&stopped);
    assert!(err.contains("was deleted or replaced during the run"), "{err}");
    assert!(err.contains(&format!("bulkgen repair {} --out {}", manifest.display(), out.display())), "{err}");
    let at_stop = sim.stats();
    assert!(at_stop.requests < 40, "the run went on paying after its checkpoint was gone");
    assert_eq!(images_in(&out) as u64, at_stop.successes, "every image paid for is on disk");

    // The same command again: no checkpoint, images of the manifest's rows: refused.
    let refused = run(&sim, &manifest, &out, &["-c", "4"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(stderr(&refused).contains("but there is no checkpoint"), "{}", text(&refused));
    assert_eq!(sim.stats().requests, at_stop.requests, "the refused run sent calls");

    let repaired = repair(&manifest, &out, &[]).await;
    assert_eq!(repaired.status.code(), Some(0), "{}", text(&repaired));
    let said = String::from_utf8_lossy(&repaired.stdout);
    assert!(said.contains(&format!("{} row(s) adopted as done", at_stop.successes)), "{said}");

    let finished = run(&sim, &manifest, &out, &["-c", "4"]).await;
    assert_eq!(finished.status.code(), Some(0), "{}", text(&finished));
    assert_images_match(&out, &prompts);
    assert_each_generated_once(&sim.stats(), &prompts);
}

/// Item 8b: a new checkpoint in a folder whose images/ holds the manifest's rows' images
/// must not start: exit 2 before anything is sent (the preflight included), nothing
/// overwritten, and the message names the count and `bulkgen repair`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_without_a_checkpoint_are_never_paid_for_or_overwritten() {
    let sim = sim(fixed(Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (manifest, prompts) = manifest(dir.path(), 6);
    let first = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    remove_checkpoint(&out);
    let images = image_bytes(&out);
    let before = sim.stats();

    let refused = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let err = stderr(&refused);
    assert!(err.contains("6 image(s) in"), "{err}");
    assert!(err.contains("a run would pay for them again"), "{err}");
    assert!(err.contains(&format!("bulkgen repair {} --out {}", manifest.display(), out.display())), "{err}");
    let after = sim.stats();
    assert_eq!(after.requests, before.requests, "calls were sent");
    assert_eq!(after.list_requests, before.list_requests, "the preflight ran before the check");
    assert_eq!(image_bytes(&out), images, "images were touched");
    assert!(!out.join("bulkgen.db").exists(), "a checkpoint was created");

    // Another folder is fine, and so is this one after a repair: still no call for them.
    let repaired = repair(&manifest, &out, &[]).await;
    assert_eq!(repaired.status.code(), Some(0), "{}", text(&repaired));
    let again = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(sim.stats().requests, before.requests);
    assert_images_match(&out, &prompts);
}

/// Item 8c: `bulkgen repair` keeps the old checkpoint aside, carries over what it can,
/// adopts complete images, moves a damaged image aside (its row pending), takes the
/// folder's lock, and the next run pays only for the rows without an image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_adopts_complete_images_and_moves_damaged_ones_aside_deleting_nothing() {
    let sim = sim(fixed(Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (manifest, prompts) = manifest(dir.path(), 9);
    let first = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let calls = attempts(&out).len();
    // One image cut short (a disk that lost its tail), one gone.
    let cut = out.join("images/r0001.png");
    let whole = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    std::fs::remove_file(out.join("images/r0002.png")).unwrap();

    {
        let _held = bulkgen::output::lock(&out).unwrap();
        let busy = repair(&manifest, &out, &[]).await;
        assert_eq!(busy.status.code(), Some(2), "{}", text(&busy));
        assert!(stderr(&busy).contains("another bulkgen run"), "{}", text(&busy));
    }

    let repaired = repair(&manifest, &out, &[]).await;
    assert_eq!(repaired.status.code(), Some(0), "{}", text(&repaired));
    let said = String::from_utf8_lossy(&repaired.stdout);
    assert!(said.contains("7 done, 2 pending"), "{said}");
    assert!(said.contains("1 damaged image file(s) moved to"), "{said}");
    assert!(said.contains("moved to"), "{said}");
    // Nothing deleted: the old checkpoint and the damaged image are kept aside.
    let old = files_starting(&out, "bulkgen.db.damaged-");
    assert!(!old.is_empty(), "the old checkpoint was not kept");
    let aside = files_starting(&out, "images-damaged-");
    assert_eq!(aside.len(), 1);
    assert_eq!(std::fs::read(aside[0].join("r0001.png")).unwrap(), &whole[..whole.len() / 2]);
    let states = states(&out);
    assert_eq!(states["r0001"], "pending");
    assert_eq!(states["r0002"], "pending");
    assert_eq!(states.values().filter(|s| *s == "done").count(), 7);
    assert_eq!(attempts(&out).len(), calls, "the old checkpoint's attempts were carried over");

    let before = sim.stats().requests;
    let finished = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(finished.status.code(), Some(0), "{}", text(&finished));
    assert_eq!(sim.stats().requests, before + 2, "only the two rows without an image were sent");
    assert_images_match(&out, &prompts);
}

/// Item 9: the database cut to half its size after a run. The next run stops before it
/// sends anything, naming the file, the damage and `bulkgen repair`; so do status and
/// report; after the repair the batch is done without a call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_checkpoint_is_named_with_the_repair_and_repair_brings_it_back_without_a_call() {
    let sim = sim(fixed(Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (manifest, prompts) = manifest(dir.path(), 9);
    let first = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let db = out.join("bulkgen.db");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&db).unwrap().set_len(len / 2).unwrap();
    let before = sim.stats();

    let stopped = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(stopped.status.code(), Some(3), "{}", text(&stopped));
    let err = stderr(&stopped);
    assert!(err.contains(&format!("the checkpoint {} is damaged", db.display())), "{err}");
    assert!(err.contains(&format!("bulkgen repair {} --out {}", manifest.display(), out.display())), "{err}");
    let after = sim.stats();
    assert_eq!(after.requests, before.requests, "calls were sent");
    assert_eq!(after.list_requests, before.list_requests, "the preflight ran before the check");
    for command in ["status", "report"] {
        let o = inspect(command, &out).await;
        assert_eq!(o.status.code(), Some(3), "{command}: {}", text(&o));
        assert!(stderr(&o).contains("is damaged"), "{command}: {}", text(&o));
        assert!(stderr(&o).contains(&format!("--out {}", out.display())), "{command}: {}", text(&o));
        assert!(stderr(&o).contains("bulkgen repair"), "{command}: {}", text(&o));
    }

    let repaired = repair(&manifest, &out, &[]).await;
    assert_eq!(repaired.status.code(), Some(0), "{}", text(&repaired));
    assert!(!files_starting(&out, "bulkgen.db.damaged-").is_empty(), "the damaged checkpoint was not kept");
    let finished = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(finished.status.code(), Some(0), "{}", text(&finished));
    assert_eq!(sim.stats().requests, before.requests, "the repaired batch paid again");
    assert!(states(&out).values().all(|s| s == "done"));
    assert_images_match(&out, &prompts);
}

/// Item 9, under a run: the database (holding an earlier batch, so not all of it is in
/// the write-ahead log) is cut to half while a run writes it. The run stops at its next
/// commit naming `bulkgen repair` (so does the next run, for damage SQLite wrote back at
/// close); after the repair every image is right and none was paid for twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_cut_short_under_a_run_is_caught_and_nothing_is_paid_twice() {
    let sim = sim(fixed(Duration::from_millis(100))).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (small, _) = manifest(dir.path(), 9);
    let first = run(&sim, &small, &out, &["-c", "9"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let (manifest, prompts) = manifest(dir.path(), 40);
    let child = spawn_run(&sim, &manifest, &out, &["-c", "4"]);
    wait_until("new images", || images_in(&out) >= 13).await;
    let db = out.join("bulkgen.db");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&db).unwrap().set_len(len / 2).unwrap();
    let cut = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap();
    // The write-ahead log holds this run's pages, so the file stays cut until the run
    // checks it before its next commit.
    assert_eq!(cut.status.code(), Some(3), "{}", text(&cut));
    assert!(stderr(&cut).contains("is damaged (cut short"), "{}", text(&cut));
    assert!(stderr(&cut).contains("bulkgen repair"), "{}", text(&cut));
    assert!(sim.stats().requests < 40, "the run went on paying with a damaged checkpoint");
    let mut repairs = 0;
    loop {
        let o = run(&sim, &manifest, &out, &["-c", "4"]).await;
        if o.status.code() == Some(0) {
            break;
        }
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(stderr(&o).contains("is damaged") && stderr(&o).contains("bulkgen repair"), "{}", text(&o));
        repairs += 1;
        assert!(repairs <= 2, "still damaged after a repair: {}", text(&o));
        let repaired = repair(&manifest, &out, &[]).await;
        assert_eq!(repaired.status.code(), Some(0), "{}", text(&repaired));
    }
    assert!(states(&out).values().all(|s| s == "done"));
    assert_images_match(&out, &prompts);
    assert_each_generated_once(&sim.stats(), &prompts);
}

/// Item 8a through the library: the file replaced under an open checkpoint (another file
/// renamed over it) stops the writer; nothing more is committed, and every later call
/// says so with the repair advice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_replaced_under_the_writer_refuses_every_later_write() {
    use bulkgen::checkpoint::{Checkpoint, CheckpointError};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    ckpt.begin_run("{}".into()).await.unwrap();
    let other = dir.path().join("other.db");
    std::fs::write(&other, b"").unwrap();
    std::fs::rename(&other, dir.path().join("bulkgen.db")).unwrap();
    let e = ckpt.begin_run("{}".into()).await.unwrap_err();
    assert!(matches!(e, CheckpointError::Gone { .. }), "{e}");
    assert!(e.to_string().contains("bulkgen repair MANIFEST.csv --out"), "{e}");
    assert!(matches!(ckpt.flush().await, Err(CheckpointError::Gone { .. })));
    assert!(matches!(ckpt.counts().await, Err(CheckpointError::Gone { .. })));
}

/// Item 8c through the library: what the old checkpoint knows beyond the images is
/// carried over, so a repair pays for nothing a run would not have: a row refused for
/// good stays failed, a paid result URL stays to be downloaded, attempts are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_carries_over_failed_rows_and_paid_result_urls() {
    use bulkgen::checkpoint::{Checkpoint, Made, RowDefaults, SyncOptions};
    use bulkgen::error::ErrorClass;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 3);
    let defaults = || RowDefaults { size: "1K".parse().unwrap(), model: "m".into(), params: Default::default() };
    let (old_dir, new_dir) = (dir.path().join("old"), dir.path().join("new"));
    for d in [&old_dir, &new_dir] {
        std::fs::create_dir_all(d.join("images")).unwrap();
    }
    let old = Checkpoint::open(&old_dir).unwrap();
    old.sync_manifest(manifest.clone(), Default::default(), defaults(), Default::default(), SyncOptions::default())
        .await
        .unwrap();
    let rows = old.pending_page(0, 10).await.unwrap();
    old.start_attempt(vec![rows[0].rid], 1.0).await.unwrap();
    old.mark_failed(rows[0].rid, ErrorClass::Refused, "blocked".into());
    old.start_attempt(vec![rows[1].rid], 1.0).await.unwrap();
    let made = Made { model: "m".into(), size_sent: "1024x1024".into() };
    old.save_url(rows[1].rid, "http://127.0.0.1:9/files/x".into(), 2.0, made, Default::default()).await.unwrap();
    old.close().await.unwrap();

    let new = Checkpoint::open(&new_dir).unwrap();
    let salvaged = new.salvage(old_dir.join("bulkgen.db")).await.unwrap();
    assert_eq!((salvaged.rows, salvaged.failed, salvaged.urls), (3, 1, 1), "{salvaged:?}");
    assert!(salvaged.stopped.is_empty(), "{salvaged:?}");
    new.sync_manifest(manifest, Default::default(), defaults(), Default::default(), SyncOptions::default())
        .await
        .unwrap();
    let counts = new.counts().await.unwrap();
    assert_eq!((counts.failed, counts.pending), (1, 2), "the refused row stays failed");
    let pending = new.pending_page(0, 10).await.unwrap();
    let with_url: Vec<_> = pending.iter().filter(|r| r.result_url.is_some()).map(|r| r.id.clone()).collect();
    assert_eq!(with_url, vec![rows[1].id.clone()], "the paid URL is downloaded, not generated again");
    new.close().await.unwrap();
}
