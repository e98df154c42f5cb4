//! Several images per row (issue 13): `--count N` and the manifest's `count` column,
//! through the CLI. Each image is its own checkpoint row `<id>_<k>`: made once, kept
//! through kills, paid and capped per image, and a row's count changed between runs adds
//! or leaves out only the images that changed.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A manifest with a `count` column: (id, prompt, size, count cell).
fn counted(dir: &Path, rows: &[(&str, &str, &str, &str)]) -> PathBuf {
    let path = dir.join("manifest.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["id", "prompt", "size", "count", "note"]).unwrap();
    for (id, prompt, size, count) in rows {
        w.write_record([*id, *prompt, *size, *count, &format!("note of {id}")]).unwrap();
    }
    w.flush().unwrap();
    path
}

/// The image files in DIR/images: file stem -> its PNG's prompt tag.
fn images_on_disk(out: &Path) -> HashMap<String, String> {
    std::fs::read_dir(out.join("images"))
        .map(|d| {
            d.filter_map(|e| {
                let path = e.unwrap().path();
                let stem = path.file_name()?.to_str()?.strip_suffix(".png")?.to_owned();
                let tag = read_tag(&std::fs::read(&path).ok()?)?;
                Some((stem, tag["prompt"].to_string()))
            })
            .collect()
        })
        .unwrap_or_default()
}

fn metadata(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("metadata.jsonl")).expect("metadata.jsonl exists");
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Successful generations of `prompt` the simulator served.
fn made(sim: &SimServer, prompt: &str) -> u64 {
    sim.stats().per_prompt.get(&prompt_tag(prompt)).map_or(0, |c| c.successes)
}

/// The images each (id, prompt, count) row must have: image id -> (row id, k, prompt).
fn expected(rows: &[(&str, &str, u32)]) -> HashMap<String, (String, u32, String)> {
    let mut want = HashMap::new();
    for (id, prompt, count) in rows {
        if *count == 1 {
            want.insert(id.to_string(), (id.to_string(), 1, prompt.to_string()));
        } else {
            for k in 1..=*count {
                want.insert(format!("{id}_{k}"), (id.to_string(), k, prompt.to_string()));
            }
        }
    }
    want
}

/// Every expected image is on disk with its row's prompt; results.csv has one line per
/// image with its row id and k; metadata.jsonl one line per image, agreeing with the file.
fn assert_outputs(out: &Path, want: &HashMap<String, (String, u32, String)>) {
    let disk = images_on_disk(out);
    for (id, (_, _, prompt)) in want {
        assert_eq!(disk.get(id), Some(&prompt_tag(prompt)), "images/{id}.png holds its row's prompt");
    }
    let results = results(out);
    assert_eq!(results.len(), want.len(), "results.csv has one line per image");
    for r in &results {
        let id = &r["id"];
        let (row_id, k, _) = want.get(id).unwrap_or_else(|| panic!("results.csv names {id}"));
        assert_eq!(r["status"], "done", "{id}");
        assert_eq!(r["file"], format!("images/{id}.png"));
        assert_eq!((&r["row_id"], &r["k"]), (row_id, &k.to_string()), "{id}");
        assert_eq!(r["note"], format!("note of {row_id}"), "{id}: the row's extra columns are carried");
    }
    let lines = metadata(out);
    assert_eq!(lines.len(), want.len(), "metadata.jsonl has one line per image");
    let mut seen = HashSet::new();
    for l in &lines {
        let id = l["id"].as_str().unwrap();
        assert!(seen.insert(id.to_owned()), "{id} has two lines");
        let bytes = std::fs::read(out.join(l["file"].as_str().unwrap())).unwrap();
        let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(l["sha256"], sha.as_str(), "{id}");
        let r = results.iter().find(|r| r["id"] == id).unwrap();
        assert_eq!(l["row_id"], r["row_id"].as_str(), "{id}");
        assert_eq!(l["k"].to_string(), r["k"], "{id}");
    }
}

/// A manifest mixing a `count` column with `--count`: every image made once, named
/// `<id>_<k>`, and results.csv and metadata.jsonl agree with the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_manifest_makes_each_image_once_named_by_row_and_k() {
    let sim = sim(fixed(Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().unwrap();
    // "" takes --count 2; "1" keeps the row's own id.
    let manifest = counted(
        dir.path(),
        &[("m3", "three cats", "1K", "3"), ("m2", "two dogs", "2K", ""), ("single", "one owl", "1K", "1")],
    );
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["--count", "2", "-c", "4"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = [("m3", "three cats", 3), ("m2", "two dogs", 2), ("single", "one owl", 1)];
    assert_outputs(&out, &expected(&rows));
    for (id, prompt, count) in rows {
        assert_eq!(made(&sim, prompt), u64::from(count), "{id}");
    }
    // gpt-image-2 takes `n` (images_per_call = 10): one call per manifest row.
    assert_eq!(sim.stats().requests, 3, "one call per manifest row");
    let report = json_report(&out).await;
    assert_eq!(report["overall"]["done"], 6, "the report counts images: {report}");

    // The same command again: nothing is sent.
    let again = run(&sim, &manifest, &out, &["--count", "2"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(sim.stats().requests, 3);
    // BULKGEN_COUNT is --count.
    let env = run_cmd(&sim.base_url(), &manifest, &out, &[]).env("BULKGEN_COUNT", "2").output().await.unwrap();
    assert_eq!(env.status.code(), Some(0), "{}", text(&env));
    assert_eq!(sim.stats().requests, 3, "BULKGEN_COUNT=2 is the same manifest: {}", text(&env));
}

/// SIGKILL in the middle of a run of many images per row, then a resume: no image is
/// lost, each is on disk once, and at most `-c` calls (of up to 4 images each, `n`) are
/// paid twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_way_resumes_without_losing_or_paying_twice_for_an_image() {
    let sim = sim(fixed(Duration::from_millis(30))).await;
    let dir = tempfile::tempdir().unwrap();
    let prompts: Vec<(String, String)> = (0..15).map(|i| (format!("m{i:02}"), format!("prompt {i}"))).collect();
    let rows: Vec<(&str, &str, &str, &str)> =
        prompts.iter().map(|(id, p)| (id.as_str(), p.as_str(), "1K", "")).collect();
    let manifest = counted(dir.path(), &rows);
    let out = dir.path().join("out");
    let concurrency = 4;
    let args = ["--count", "4", "-c", "4", "--quiet"];
    let mut child = spawn_run(&sim, &manifest, &out, &args);
    wait_until("images landing", || images_on_disk(&out).len() >= 20).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let at_kill = sim.stats().successes;
    assert!(at_kill < 60, "killed before the end");
    let o = run(&sim, &manifest, &out, &["--count", "4", "-c", "4"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let want: Vec<(&str, &str, u32)> = prompts.iter().map(|(id, p)| (id.as_str(), p.as_str(), 4)).collect();
    assert_outputs(&out, &expected(&want));
    let paid = sim.stats().successes;
    let most = 60 + concurrency * 4;
    assert!(paid >= 60 && paid <= most, "{paid} images paid for 60 (at most -c {concurrency} calls of 4 twice)");
}

/// Count changed between runs: 2 -> 3 makes image 3 only; 3 -> 2 sends nothing and
/// image 3 leaves the manifest (its file stays); 1 -> 2 keeps `<id>.png` and makes
/// `<id>_1`, `<id>_2`; back to 1 finds `<id>` done without a call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_count_adds_or_leaves_out_only_the_images_that_changed() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let with = |count: &str| counted(dir.path(), &[("m", "a red fox", "1K", count), ("s", "a blue jay", "1K", "1")]);
    let go = |manifest: PathBuf| {
        let sim = &sim;
        let out = out.clone();
        async move {
            let o = run(sim, &manifest, &out, &[]).await;
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        }
    };
    // gpt-image-2 takes `n`: the images of one row that are pending share a call.
    go(with("2")).await;
    assert_eq!(sim.stats().requests, 2);
    go(with("3")).await;
    assert_eq!(sim.stats().requests, 3, "2 -> 3 makes image 3 only");
    assert_eq!(sim.stats().successes, 4);
    assert_outputs(&out, &expected(&[("m", "a red fox", 3), ("s", "a blue jay", 1)]));
    go(with("2")).await;
    assert_eq!(sim.stats().requests, 3, "3 -> 2 sends nothing");
    assert_eq!(results(&out).len(), 3, "image 3 is no longer a manifest line");
    assert!(out.join("images/m_3.png").is_file(), "image 3's file stays");

    // 1 -> 2: the image of count 1 is kept (a row no longer in the manifest); the two
    // images of count 2 are made.
    go(with("1")).await;
    assert_eq!(sim.stats().requests, 4, "count 1 is image `m`, not yet made");
    go(with("2")).await;
    assert_eq!(sim.stats().requests, 4, "back to 2: m_1 and m_2 are still done");
    assert!(out.join("images/m.png").is_file(), "the count-1 image stays on disk");
    go(with("1")).await;
    assert_eq!(sim.stats().requests, 4, "back to 1: `m` is done already");

    // A changed prompt regenerates a row's images only with --regenerate-changed.
    let changed = counted(dir.path(), &[("m", "a grey fox", "1K", "2"), ("s", "a blue jay", "1K", "1")]);
    let o = run(&sim, &changed, &out, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sim.stats().requests, 4, "changed rows are listed, not paid for");
    let o = run(&sim, &changed, &out, &["--regenerate-changed"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sim.stats().requests, 5, "both images of the changed row are made again, in one call");
    assert_eq!(sim.stats().successes, 7);
    assert_outputs(&out, &expected(&[("m", "a grey fox", 2), ("s", "a blue jay", 1)]));
}

/// `--max-cost` counts images, not rows: at $1 an image and a cap of $5, two rows of
/// count 3 make five images.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_cost_counts_images_not_rows() {
    let sim = sim(fixed(Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(dir.path(), &[("a", "first", "1K", "3"), ("b", "second", "1K", "3")]);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["-c", "1", "--price", "gpt-image-2:*=1", "--max-cost", "5"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(sim.stats().successes, 5, "{}", text(&o));
    let dry = run(&sim, &manifest, &dir.path().join("dry"), &["--dry-run", "--price", "gpt-image-2:*=1"]).await;
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let plan = String::from_utf8_lossy(&dry.stdout);
    assert!(plan.contains("$6.00"), "the plan prices six images: {plan}");
    assert!(plan.contains("2 manifest rows make 6 images"), "{plan}");
}

/// A bad count, and an id `<id>_<k>` made by a count that another row already has, are
/// refused at the check with their lines: exit 2, nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_count_and_a_colliding_image_id_are_refused_before_anything_is_sent() {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8], &[&str], &str)] = &[
        ("zero", b"id,prompt,count\na,x,0\n", &[], "line 2: bad count \"0\""),
        ("over", b"id,prompt,count\na,x,101\n", &[], "from 1 to 100"),
        ("word", b"id,prompt,count\na,x,two\n", &[], "line 2: bad count \"two\""),
        (
            "clash",
            b"id,prompt,count\na_2,x,1\na,y,3\n",
            &[],
            "line 3: duplicate id \"a_2\": image 2 of row \"a\" (count 3) and the row on line 2",
        ),
        (
            "clash-after",
            b"id,prompt,count\na,y,\nA_2,x,1\n",
            &["--count", "2"],
            "line 3: id \"A_2\" collides with id \"a_2\" on line 2 ignoring case",
        ),
        ("flag", b"id,prompt\na,x\n", &["--count", "0"], "--count 0"),
    ];
    for (name, body, args, want) in cases {
        let manifest = dir.path().join(format!("{name}.csv"));
        std::fs::write(&manifest, body).unwrap();
        let out = dir.path().join(format!("out-{name}"));
        let o = run(&sim, &manifest, &out, args).await;
        assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(want), "{name}: expected {want:?} in {stderr}");
        assert!(!out.exists(), "{name}: the output folder was created");
    }
    assert_eq!(sim.stats().requests, 0);
}

/// The batch engine sends one line per image, and writes each as its own file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_engine_makes_one_line_per_image() {
    let sim = sim(SimConfig { time_scale: 20.0 / 60_000.0, ..SimConfig::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(dir.path(), &[("m", "a batch of cats", "1K", "3"), ("n", "one batch dog", "1K", "")]);
    let out = dir.path().join("out");
    let args = [
        "--provider",
        "gemini",
        "--model",
        "gemini-3-pro-image",
        "--engine",
        "batch",
        "--poll-interval",
        "20ms",
        "--count",
        "2",
    ];
    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_outputs(&out, &expected(&[("m", "a batch of cats", 3), ("n", "one batch dog", 2)]));
    assert_eq!(made(&sim, "a batch of cats"), 3);
    assert_eq!(made(&sim, "one batch dog"), 2);
    assert!(results(&out).iter().all(|r| r["engine"] == "batch"));
}

/// `--count 3 --shard-dirs`: each image lands in `images/<2 hex of its id>/<id>_<k>.png`,
/// results.csv and metadata.jsonl name those paths, and the same command again sends
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_with_shard_dirs_puts_each_image_in_its_ids_folder() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(dir.path(), &[("a", "sharded cats", "1K", ""), ("b", "sharded dogs", "2K", "")]);
    let out = dir.path().join("out");
    let args = ["--count", "3", "--shard-dirs", "-c", "4"];
    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let want = expected(&[("a", "sharded cats", 3), ("b", "sharded dogs", 3)]);
    let path_of = |id: &str| format!("images/{}/{id}.png", bulkgen::output::shard_of(id));

    for (id, (_, _, prompt)) in &want {
        let bytes = std::fs::read(out.join(path_of(id))).unwrap_or_else(|e| panic!("{}: {e}", path_of(id)));
        assert_eq!(read_tag(&bytes).unwrap()["prompt"], prompt_tag(prompt), "{id}");
    }
    let flat: Vec<_> =
        std::fs::read_dir(out.join("images")).unwrap().map(|e| e.unwrap().path()).filter(|p| !p.is_dir()).collect();
    assert!(flat.is_empty(), "no image outside a shard folder: {flat:?}");

    let rows = results(&out);
    assert_eq!(rows.len(), 6, "one results line per image");
    for r in &rows {
        let id = &r["id"];
        let (row_id, k, _) = want.get(id).unwrap_or_else(|| panic!("results.csv names {id}"));
        assert_eq!(r["status"], "done", "{id}");
        assert_eq!(r["file"], path_of(id), "{id}");
        assert_eq!((&r["row_id"], &r["k"]), (row_id, &k.to_string()), "{id}");
    }
    let lines = metadata(&out);
    assert_eq!(lines.len(), 6, "one metadata line per image");
    let named: HashSet<(String, String)> =
        lines.iter().map(|l| (l["id"].as_str().unwrap().to_owned(), l["file"].as_str().unwrap().to_owned())).collect();
    let wanted: HashSet<(String, String)> = want.keys().map(|id| (id.clone(), path_of(id))).collect();
    assert_eq!(named, wanted, "metadata.jsonl names each image's sharded path");
    // A call per manifest row (`n` = 3), six images.
    assert_eq!((sim.stats().requests, sim.stats().successes), (2, 6));

    let again = run(&sim, &manifest, &out, &args).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(sim.stats().requests, 2, "the second run sends nothing: {}", text(&again));
}

/// The checkpoint of a counted folder lost: `bulkgen repair` with the run's `--count`
/// adopts every `<id>_<k>` image, and the same run command then sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_adopts_every_image_of_a_counted_folder() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(
        dir.path(),
        &[("r", "repaired cats", "1K", ""), ("s", "repaired dogs", "1K", ""), ("t", "a lone owl", "1K", "1")],
    );
    let out = dir.path().join("out");
    let args = ["--count", "2", "-c", "4"];
    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let made_before = sim.stats().requests;
    // A call per manifest row (`n` = 2, 2 and 1), five images.
    assert_eq!((made_before, sim.stats().successes), (3, 5));

    for f in ["bulkgen.db", "bulkgen.db-wal", "bulkgen.db-shm"] {
        let _ = std::fs::remove_file(out.join(f));
    }
    let repair = bin().arg("repair").arg(&manifest).arg("-o").arg(&out).args(["--count", "2"]).output();
    let repair = tokio::time::timeout(Duration::from_secs(60), repair).await.expect("repair finishes").unwrap();
    assert_eq!(repair.status.code(), Some(0), "{}", text(&repair));
    let said = text(&repair);
    assert!(said.contains("5 image(s) adopted as done"), "{said}");
    assert!(said.contains("(5 images from 3 manifest rows)"), "{said}");
    let after_repair = states(&out);
    let ids: HashSet<&str> = after_repair.keys().map(String::as_str).collect();
    assert_eq!(ids, HashSet::from(["r_1", "r_2", "s_1", "s_2", "t"]));
    assert!(after_repair.values().all(|s| s == "done"), "{after_repair:?}");

    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sim.stats().requests, made_before, "repair adopted every image: nothing sent again");
    assert_outputs(&out, &expected(&[("r", "repaired cats", 2), ("s", "repaired dogs", 2), ("t", "a lone owl", 1)]));
}

/// `bulkgen status` of a counted folder counts images and names the manifest rows they
/// come from; a plain folder's status still counts rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_images_of_a_counted_folder_and_rows_of_a_plain_one() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let status = |out: PathBuf| async move {
        let o = bin().arg("status").arg("-o").arg(&out).output().await.unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    // Two rows of 3 images, capped at 5 images: one image left pending.
    let manifest = counted(dir.path(), &[("a", "first", "1K", "3"), ("b", "second", "1K", "3")]);
    let out = dir.path().join("counted");
    let o = run(&sim, &manifest, &out, &["-c", "1", "--price", "gpt-image-2:*=1", "--max-cost", "5"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let said = status(out).await;
    assert!(said.contains("\n6 images (from 2 manifest rows): 5 done, 0 failed, 1 pending, 0 running\n"), "{said}");
    assert!(!said.contains(" rows:"), "{said}");

    // One row of 2 images: "1 manifest row".
    let one = dir.path().join("one");
    std::fs::create_dir(&one).unwrap();
    let manifest = counted(&one, &[("c", "third", "1K", "2")]);
    let out = dir.path().join("one-out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let said = status(out).await;
    assert!(said.contains("\n2 images (from 1 manifest row): 2 done, 0 failed, 0 pending, 0 running\n"), "{said}");

    // A plain manifest: rows, as before.
    let plain = dir.path().join("plain-in");
    std::fs::create_dir(&plain).unwrap();
    let manifest = counted(&plain, &[("p", "plain one", "1K", ""), ("q", "plain two", "1K", "1")]);
    let out = dir.path().join("plain");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let said = status(out).await;
    assert!(said.contains("\n2 rows: 2 done, 0 failed, 0 pending, 0 running\n"), "{said}");
    assert!(!said.contains("images"), "{said}");
}

/// The plain progress lines (stderr is not a terminal here) of a run of MANIFEST, at
/// least one.
async fn plain_progress_lines(sim: &SimServer, manifest: &Path, out: &Path) -> Vec<String> {
    // -c 1 at 150 ms a call: 3 calls span several 100 ms ticks of the plain line.
    let o = run(sim, manifest, out, &["-c", "1", "--progress-interval", "100ms"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let lines: Vec<String> = stderr.lines().filter(|l| l.starts_with("[00:0")).map(str::to_owned).collect();
    assert!(!lines.is_empty(), "no plain progress line: {stderr}");
    lines
}

/// A counted run's plain line counts images: "N/3 images settled" for one row of count 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_line_of_a_counted_run_counts_images() {
    // One call of n=3 (gpt-image-2 takes `n`): 300 ms spans several 100 ms ticks.
    let sim = sim(fixed(Duration::from_millis(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(dir.path(), &[("a", "progress cats", "1K", "3")]);
    let lines = plain_progress_lines(&sim, &manifest, &dir.path().join("out")).await;
    for l in &lines {
        assert!(l.contains("/3 images settled; "), "{l}");
    }
}

/// A plain run's line still says "rows settled" (every row is one image).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_line_of_a_plain_run_counts_rows() {
    let sim = sim(fixed(Duration::from_millis(150))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(
        dir.path(),
        &[("a", "plain cats", "1K", "1"), ("b", "plain dogs", "1K", ""), ("c", "plain owls", "1K", "")],
    );
    let lines = plain_progress_lines(&sim, &manifest, &dir.path().join("out")).await;
    for l in &lines {
        assert!(l.contains("/3 rows settled; "), "{l}");
    }
}
