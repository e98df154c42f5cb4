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
    c.arg("-o").arg(&out).args(["-c", "4", "--rpm", "0"]);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_without_paying_twice_for_finished_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 120);
    let out = dir.path().join("out");
    let images = out.join("images");
    let concurrency = 4;
    for round in 0..3 {
        let sim = sim(fixed(Duration::from_millis(60))).await;
        let mut c = bin();
        c.arg("run").arg(&manifest).arg("--base-url").arg(sim.base_url()).arg("-o").arg(&out);
        c.args(["-c", &concurrency.to_string(), "--rpm", "0", "--quiet"]);
        let mut child = c.spawn().unwrap();
        // Kill it once a few more images are in place (different points each round).
        let target = 15 + round * 30;
        let t = std::time::Instant::now();
        while std::fs::read_dir(&images).map(|d| d.count()).unwrap_or(0) < target {
            assert!(t.elapsed() < Duration::from_secs(30), "no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        let before = sim.stats();
        let finished: Vec<String> = std::fs::read_dir(&images)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".png").map(str::to_owned))
            .collect();
        // Resume once to the end, then check nothing finished was sent again.
        let o = run(&sim, &manifest, &out, &["-c", &concurrency.to_string()]).await;
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let after = sim.stats();
        for id in &finished {
            let tag = prompt_tag(&prompts[id]);
            assert_eq!(after.per_prompt[&tag], before.per_prompt[&tag], "{id} was done before the kill and sent again");
        }
        let resent = prompts
            .values()
            .map(|p| prompt_tag(p))
            .filter(|t| {
                before.per_prompt.get(t).is_some_and(|c| c.requests > 0)
                    && after.per_prompt[t].requests > before.per_prompt[t].requests
            })
            .count();
        assert!(resent <= concurrency, "round {round}: {resent} rows sent twice");
        assert_images_match(&out, &prompts);
        assert!(states(&out).values().all(|s| s == "done"));
        // Start the next round from scratch, killed at another point.
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_manifest_error_exits_2_names_its_line_and_sends_nothing() {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        ("empty prompt", b"prompt,id\nfine,a\n  ,b\n", "line 3: empty prompt"),
        ("unknown size", b"prompt,size\nfine,1K\nx,3K\n", "line 3: unknown size \"3K\""),
        ("bad aspect ratio", b"prompt,aspect_ratio\nx,7:5\n", "line 2: bad aspect ratio \"7:5\""),
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
    let sim = sim(SimConfig { faults: vec![FaultSpec::new(Fault::Refuse, 0.3)], seed: 2, ..fixed(Duration::from_millis(5)) }).await;
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
