//! What goes wrong, through the CLI: bad keys, bad manifests, a killed process, plain
//! HTTP, and a manifest edited between runs.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::*;

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(files(&p)) } else { out.push(p) }
    }
    out
}

fn assert_key_absent(dir: &Path, key: &str) {
    for f in files(dir) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()), "the key is written in {}", f.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_stops_the_run_at_once_and_a_rerun_with_the_right_key_finishes() {
    let sim = sim(fixed(Duration::from_millis(20))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 50);
    let out = dir.path().join("out");
    let wrong = "sk-wrong-0a1b2c3d4e5f";
    let mut c = bin();
    c.env("BULKGEN_API_KEY", wrong).arg("run").arg(&manifest).arg("--base-url").arg(sim.base_url());
    // Without the preflight (which stops a wrong key before any call, tests/models.rs),
    // the first 401 of the run itself stops it: a key revoked mid-run.
    c.arg("-o").arg(&out).args(["-c", "4", "--rpm", "0", "--no-preflight"]);
    let o = c.output().await.unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("auth") && stderr.contains("--api-key-env"), "{stderr}");
    assert!(stderr.contains("50 row(s) left pending"), "{stderr}");
    assert!(!stderr.contains(wrong), "the key is printed");
    assert!(sim.stats().requests <= 4, "{} calls after a 401", sim.stats().requests);
    assert!(states(&out).values().all(|s| s == "pending"));
    assert!(results(&out).iter().all(|r| r["status"] == "pending"));
    assert_key_absent(&out, wrong);

    let o = run(&sim, &manifest, &out, &["-c", "4"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_images_match(&out, &prompts);
    assert_key_absent(&out, KEY);
}

/// Where a run is killed: after a delay from its start (startup: the writer is busy
/// taking in the manifest), or once this many images are in place.
enum KillAt {
    Delay(Duration),
    Images(usize),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_five_times_resumes_each_time_without_paying_twice() {
    let sim = sim(fixed(Duration::from_millis(15))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 2000);
    let out = dir.path().join("out");
    let images = out.join("images");
    let concurrency = 8;
    let count = |dir: &Path| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let points = [
        KillAt::Delay(Duration::from_millis(40)),
        KillAt::Images(150),
        KillAt::Delay(Duration::from_millis(60)),
        KillAt::Images(700),
        KillAt::Images(1400),
    ];
    // (images in place at the kill, simulator counters at the kill)
    let mut kills: Vec<(Vec<String>, SimStats)> = Vec::new();
    for point in &points {
        let mut child = spawn_run(&sim, &manifest, &out, &["-c", &concurrency.to_string(), "--quiet"]);
        match point {
            KillAt::Delay(d) => tokio::time::sleep(*d).await,
            KillAt::Images(n) => {
                let t = std::time::Instant::now();
                while count(&images) < *n {
                    assert!(t.elapsed() < Duration::from_secs(60), "no progress");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        let finished: Vec<String> = std::fs::read_dir(&images)
            .map(|d| {
                d.filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".png").map(str::to_owned)).collect()
            })
            .unwrap_or_default();
        kills.push((finished, sim.stats()));
    }
    // A half-written temp file, as a kill during the temp-name-and-rename path leaves it:
    // the run after a killed one removes it.
    let leftover = images.join(".r-left.png.4242.partial");
    std::fs::write(&leftover, b"\x89PNG half").unwrap();
    let o = run(&sim, &manifest, &out, &["-c", &concurrency.to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!leftover.exists(), "the temp file a killed run left is still there");
    assert_images_match(&out, &prompts);
    assert!(states(&out).values().all(|s| s == "done"));
    let last = sim.stats();
    assert_each_generated_once_or_lost_in_a_kill(&last, &prompts, kills.len() * concurrency);
    for (k, (finished, at_kill)) in kills.iter().enumerate() {
        let next = kills.get(k + 1).map(|(_, s)| s).unwrap_or(&last);
        let prev = k.checked_sub(1).map(|p| &kills[p].1);
        for id in finished {
            let tag = prompt_tag(&prompts[id]);
            assert_eq!(last.per_prompt[&tag], at_kill.per_prompt[&tag], "kill {k}: {id} was done and sent again");
        }
        let finished: std::collections::HashSet<&String> = finished.iter().collect();
        let resent = prompts
            .iter()
            .filter(|(id, _)| !finished.contains(id))
            .map(|(_, p)| prompt_tag(p))
            .filter(|t| {
                // Sent by the killed run itself (a run killed during its start-up sends
                // nothing, and the rows an earlier kill lost are that kill's), and sent again.
                let requests = |s: Option<&SimStats>| s.and_then(|s| s.per_prompt.get(t)).map_or(0, |c| c.requests);
                let before = requests(Some(at_kill));
                before > requests(prev) && requests(Some(next)) > before
            })
            .count();
        assert!(resent <= concurrency, "kill {k}: {resent} rows in flight at the kill were sent again");
    }
}

/// Each prompt made once, except at most `lost` made again after a kill took them.
fn assert_each_generated_once_or_lost_in_a_kill(stats: &SimStats, prompts: &HashMap<String, String>, lost: usize) {
    let twice = prompts.values().filter(|p| stats.per_prompt[&prompt_tag(p)].successes > 1).count();
    assert!(prompts.values().all(|p| stats.per_prompt[&prompt_tag(p)].successes >= 1));
    assert!(twice <= lost, "{twice} prompts were generated more than once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_manifest_error_exits_2_names_its_line_and_sends_nothing() {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        ("empty prompt", b"prompt,id\nfine,a\n  ,b\n", "line 3: empty prompt"),
        ("unknown size", b"prompt,size\nfine,1K\nx,3K\n", "line 3: unknown size \"3K\""),
        ("bad aspect ratio", b"prompt,aspect_ratio\nx,7-5\n", "line 2: bad aspect ratio \"7-5\""),
        ("duplicate id", b"prompt,id\nx,a\ny,a\n", "line 3: duplicate id \"a\" (first used on line 2)"),
        ("path in id", b"prompt,id\nx,../../etc/passwd\n", "line 2: unsafe id"),
        ("hidden id", b"prompt,id\nx,.bashrc\n", "line 2: unsafe id \".bashrc\": starts with '.'"),
        ("undecodable", b"prompt,id\n\xff\xfeoops,a\n", "line 2: undecodable text"),
        ("no prompt column", b"text\nx\n", "no `prompt` column"),
    ];
    for (name, body, expected) in cases {
        let manifest = dir.path().join(format!("{}.csv", name.replace(' ', "-")));
        std::fs::write(&manifest, body).unwrap();
        let out = dir.path().join(format!("out-{}", name.replace(' ', "-")));
        let o = run(&sim, &manifest, &out, &[]).await;
        assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(expected), "{name}: expected {expected:?} in {stderr}");
        assert!(!out.exists(), "{name}: the output folder was created");
    }
    // All problems of one file at once.
    let manifest = dir.path().join("many.csv");
    std::fs::write(&manifest, b"prompt,id,size\n,a,1K\nx,b,9K\nx,b,1K\n").unwrap();
    let o = run(&sim, &manifest, &dir.path().join("out-many"), &[]).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    for line in ["line 2:", "line 3:", "line 4:"] {
        assert!(stderr.contains(line), "{line} missing from {stderr}");
    }
    let o = run(&sim, &dir.path().join("missing.csv"), &dir.path().join("out-missing"), &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.csv"));
    assert_eq!(sim.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_exit_2_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 2);
    let cases: &[(&[&str], &str)] = &[
        (&["--base-url", "http://example.invalid:16888/v1"], "clear text"),
        (&["--timeout", "8K=10s"], "unknown resolution"),
        (&["--connect-timeout", "10"], "needs a unit"),
        (&["-c", "0"], "--concurrency"),
        (&["--size", "huge"], "unknown size"),
        (&["--api-key-env", "BULKGEN_TEST_UNSET_VAR"], "BULKGEN_TEST_UNSET_VAR is not set"),
    ];
    for (args, expected) in cases {
        let out = dir.path().join("out");
        let o = bin().arg("run").arg(&manifest).arg("-o").arg(&out).args(*args).output().await.unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(expected), "{args:?}: {}", text(&o));
        assert!(!out.exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_rows_are_listed_and_kept_unless_regeneration_is_asked_for() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, mut prompts) = manifest(dir.path(), 6);
    let out = dir.path().join("out");
    assert_eq!(run(&sim, &manifest, &out, &[]).await.status.code(), Some(0));
    let text_before = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text_before.replace("test prompt number 2,", "a new prompt for row two,")).unwrap();
    prompts.insert("r0002".into(), "a new prompt for row two, a \"quoted\" word".into());

    let requests = sim.stats().requests;
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("1 done row(s) changed") && stderr.contains("r0002"), "{stderr}");
    assert!(stderr.contains("--regenerate-changed"));
    assert_eq!(sim.stats().requests, requests, "a changed row was sent without being asked");

    let o = run(&sim, &manifest, &out, &["--regenerate-changed"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sim.stats().requests, requests + 1);
    assert_images_match(&out, &prompts);
    let by_id: HashMap<_, _> = results(&out).into_iter().map(|r| (r["id"].clone(), r)).collect();
    assert_eq!(by_id["r0002"]["status"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_prompts_fail_at_once_and_the_exit_code_says_so() {
    let sim =
        sim(SimConfig { faults: vec![FaultSpec::new(Fault::Refuse, 0.3)], seed: 2, ..fixed(Duration::from_millis(5)) })
            .await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 20);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rows = results(&out);
    let refused: Vec<_> = rows.iter().filter(|r| r["status"] == "failed").collect();
    assert!(!refused.is_empty());
    for r in &refused {
        assert_eq!(r["error_class"], "refused");
        assert_eq!(r["attempts"], "1", "a refusal was retried");
        assert!(r["error"].contains("safety system"), "{r:?}");
    }
    // --retry-failed puts them back; the simulator may refuse again, but it is asked.
    let requests = sim.stats().requests;
    let _ = run(&sim, &manifest, &out, &["--retry-failed"]).await;
    assert!(sim.stats().requests >= requests + refused.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_once_lets_calls_in_flight_finish_and_be_recorded() {
    let sim = sim(fixed(Duration::from_millis(400))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 40);
    let out = dir.path().join("out");
    let child = spawn_run(&sim, &manifest, &out, &["-c", "4"]);
    wait_until("the second wave of calls", || sim.stats().requests >= 8).await;
    send_sigint(&child);
    let o = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("waiting for") && stderr.contains("Ctrl-C again"), "{stderr}");
    // Every image the provider handed out is on disk and recorded: nothing paid is lost.
    let stats = sim.stats();
    let on_disk = std::fs::read_dir(out.join("images")).unwrap().count();
    assert_eq!(stats.successes as usize, on_disk);
    assert!(on_disk >= 8, "calls in flight at the Ctrl-C finished: {on_disk}");
    let rows = results(&out);
    assert_eq!(rows.iter().filter(|r| r["status"] == "done").count(), on_disk);
    assert!(rows.iter().all(|r| r["status"] == "done" || r["status"] == "pending"), "{rows:?}");
    assert!(out.join("report.json").is_file());
    // The rerun finishes the rest and sends nothing twice.
    let o = run(&sim, &manifest, &out, &["-c", "8"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_each_generated_once(&sim.stats(), &prompts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_twice_stops_at_once_and_puts_calls_in_flight_back() {
    let slow = sim(fixed(Duration::from_secs(20))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 20);
    let out = dir.path().join("out");
    let child = spawn_run(&slow, &manifest, &out, &["-c", "4"]);
    wait_until("4 calls in flight", || slow.stats().requests >= 4).await;
    send_sigint(&child);
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_sigint(&child);
    let t = std::time::Instant::now();
    let o = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output()).await.unwrap().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?} to stop", t.elapsed());
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("stopping now"), "{}", text(&o));
    assert!(states(&out).values().all(|s| s == "pending"), "rows in flight went back to pending");
    assert!(results(&out).iter().all(|r| r["status"] == "pending"));
    // The abandoned calls may have been billed: counted, with outcome unknown.
    let all = json_report(&out).await["overall"].clone();
    assert_eq!(all["outcome_unknown"], 4, "{all}");
    assert_eq!(all["attempts"].as_u64(), Some(slow.stats().requests), "{all}");

    let fast = sim(fixed(Duration::from_millis(5))).await;
    let o = run(&fast, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_images_match(&out, &prompts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_folder_that_cannot_be_made_stops_with_exit_3_before_any_call() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 3);
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").unwrap();
    let o = run(&sim, &manifest, &blocker.join("out"), &[]).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not-a-folder"), "{}", text(&o));
    assert_eq!(sim.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_images_folder_stops_the_run_and_the_rerun_pays_for_nothing_again() {
    let sim = sim(fixed(Duration::from_millis(150))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 30);
    let out = dir.path().join("out");
    let images = out.join("images");
    let moved = out.join("images.moved");
    let child = spawn_run(&sim, &manifest, &out, &["-c", "4"]);
    wait_until("a few images", || std::fs::read_dir(&images).map(|d| d.count()).unwrap_or(0) >= 6).await;
    // The images folder goes away under the running batch (as a full or failed disk would
    // make writes fail): every write from now on fails.
    std::fs::rename(&images, &moved).unwrap();
    std::fs::write(&images, b"not a folder").unwrap();
    let o = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("cannot write the image") && stderr.contains("kept in the checkpoint"), "{stderr}");
    // No row is done without its file.
    for (id, state) in states(&out) {
        if state == "done" {
            assert!(moved.join(format!("{id}.png")).is_file(), "{id} is done without its file");
        }
    }
    std::fs::remove_file(&images).unwrap();
    std::fs::rename(&moved, &images).unwrap();
    let o = run(&sim, &manifest, &out, &["-c", "4"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_images_match(&out, &prompts);
    assert_each_generated_once(&sim.stats(), &prompts);
}
