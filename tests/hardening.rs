//! Issue 10's hardening, through the CLI: manifest line numbers with any line end,
//! duplicate and unportable ids, a closed stdout, calls abandoned by a kill, and result
//! URLs that expired.

mod common;

use std::time::Duration;

use common::*;

/// `bulkgen run` on a manifest with these bytes: exit 2, nothing sent, nothing created;
/// returns stderr.
async fn refused(body: &[u8]) -> String {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.csv");
    std::fs::write(&manifest, body).unwrap();
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(sim.stats().requests, 0, "nothing was sent");
    assert!(!out.exists(), "the output folder was created");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_errors_name_the_physical_line_with_crlf_a_bom_and_multiline_fields() {
    // Line 1 header, 2 a, 3-4 a quoted field over two lines, 5 blank, 6 the bad row, 7 a
    // duplicate of line 2.
    let lf = "prompt,id\nok,a\n\"two\nlines\",b\n\n ,c\nok,a\n";
    for (name, body) in [
        ("LF", lf.as_bytes().to_vec()),
        ("CRLF", lf.replace('\n', "\r\n").into_bytes()),
        ("BOM + CRLF", [b"\xEF\xBB\xBF".as_slice(), lf.replace('\n', "\r\n").as_bytes()].concat()),
    ] {
        let err = refused(&body).await;
        assert!(err.contains("  line 6: empty prompt"), "{name}: {err}");
        assert!(err.contains("  line 7: duplicate id \"a\" (first used on line 2)"), "{name}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_duplicate_ids_print_twenty_problems_and_a_count() {
    let mut body = String::from("prompt,id\r\n");
    for i in 0..5_000 {
        body.push_str(&format!("prompt {i},same\r\n"));
    }
    body.push_str(",empty\r\n");
    let err = refused(body.as_bytes()).await;
    let listed: Vec<&str> = err.lines().filter(|l| l.starts_with("  line ")).collect();
    assert_eq!(listed.len(), 20, "{err}");
    assert!(listed.iter().all(|l| l.ends_with("duplicate id \"same\" (first used on line 2)")), "{err}");
    assert_eq!(listed[0], "  line 3: duplicate id \"same\" (first used on line 2)");
    assert!(err.contains("has 5000 problem(s); nothing was sent"), "{err}");
    assert!(err.contains("  ... and 4980 more problem(s) (duplicate id 4979, empty prompt 1)"), "{err}");
    assert!(err.lines().count() <= 25, "{} lines on stderr", err.lines().count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_collide_ignoring_case_or_name_a_windows_device_are_refused() {
    let err = refused(b"prompt,id\r\nx,cat\r\nx,fine\r\nx,Cat\r\nx,nul.txt\r\nx,COM1\r\nx,Aux\r\nx,console\r\n").await;
    assert!(
        err.contains(
            "  line 4: id \"Cat\" collides with id \"cat\" on line 2 ignoring case: files images/Cat.png and \
             images/cat.png are the same file on macOS and Windows"
        ),
        "{err}"
    );
    for (line, stem) in [(5, "nul"), (6, "COM1"), (7, "Aux")] {
        let expected = format!("  line {line}: unsafe id");
        let l = err.lines().find(|l| l.starts_with(&expected)).unwrap_or_else(|| panic!("{expected} in {err}"));
        assert!(l.contains(&format!("{stem} is a Windows device name")), "{l}");
    }
    assert!(!err.contains("line 3") && !err.contains("line 8"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_closes_stdout_early_ends_the_command_quietly() {
    let sim = sim(fixed(Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 6);
    let out = dir.path().join("out");
    assert_eq!(run(&sim, &manifest, &out, &[]).await.status.code(), Some(0));
    let out = out.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["report", "--out", out],
        &["report", "--out", out, "--format", "json"],
        &["report", "--out", out, "--format", "md"],
        &["status", "--out", out],
        &["models"],
        &["models", "--format", "json"],
    ];
    for args in commands {
        // `bulkgen ARGS | head -0`: the reader is gone before the first write.
        let mut c = bin();
        c.args(*args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        drop(child.stdout.take());
        let o = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");

        // `bulkgen ARGS | head -1`: one line read, then the reader goes.
        let mut c = bin();
        c.args(*args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut first).await.unwrap();
        assert!(!first.is_empty(), "{args:?}");
        drop(stdout);
        let o = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap();
        assert_ne!(o.status.code(), Some(101), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "{args:?}");
    }
}

/// `bulkgen report --format json -o OUT`, parsed.
async fn json_report(out: &std::path::Path) -> serde_json::Value {
    let o = bin().args(["report", "--format", "json", "-o"]).arg(out).output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

async fn status_of(out: &std::path::Path) -> String {
    let o = bin().args(["status", "-o"]).arg(out).output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn send_sigint(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_at_a_kill_are_counted_as_outcome_unknown_and_priced_as_spend_up_to() {
    let sim = sim(fixed(Duration::from_millis(400))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 12);
    let out = dir.path().join("out");
    let price = ["-c", "4", "--price", "gpt-image-2:*=0.05"];
    let mut child = spawn_run(&sim, &manifest, &out, &price);
    wait_until("4 calls in flight", || sim.stats().requests >= 4).await;
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let o = run(&sim, &manifest, &out, &price).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_images_match(&out, &prompts);

    let report = json_report(&out).await;
    let all = &report["overall"];
    let requests = sim.stats().requests;
    let unknown = all["outcome_unknown"].as_u64().unwrap();
    assert!((1..=4).contains(&unknown), "{all}");
    assert!(all["attempts"].as_u64().unwrap() >= requests, "calls {} < {requests} requests: {all}", all["attempts"]);
    let (spend, up_to) = (all["spend_usd"].as_f64().unwrap(), all["spend_up_to_usd"].as_f64().unwrap());
    assert!((spend - 0.6).abs() < 1e-9, "12 done x $0.05: {all}");
    assert!((up_to - spend - 0.05 * unknown as f64).abs() < 1e-9, "{all}");

    let line = format!(
        "{unknown} call(s) with outcome unknown (abandoned by a kill or a second Ctrl-C; they may have been billed)"
    );
    let status = status_of(&out).await;
    assert!(status.contains(&line) && status.contains("spend: up to $"), "{status}");
    let plain = bin().args(["report", "-o"]).arg(&out).output().await.unwrap();
    assert!(String::from_utf8_lossy(&plain.stdout).contains(&line), "{}", text(&plain));
    // A later run does not count them again.
    assert_eq!(run(&sim, &manifest, &out, &price).await.status.code(), Some(0));
    assert_eq!(json_report(&out).await["overall"]["outcome_unknown"], unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_abandoned_by_a_second_ctrl_c_are_counted_as_outcome_unknown() {
    let slow = sim(fixed(Duration::from_secs(20))).await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = manifest(dir.path(), 8);
    let out = dir.path().join("out");
    let child = spawn_run(&slow, &manifest, &out, &["-c", "4"]);
    wait_until("4 calls in flight", || slow.stats().requests >= 4).await;
    send_sigint(&child);
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_sigint(&child);
    let o = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let all = json_report(&out).await["overall"].clone();
    assert_eq!(all["outcome_unknown"], 4, "{all}");
    assert_eq!(all["attempts"].as_u64(), Some(slow.stats().requests), "{all}");
    assert!(states(&out).values().all(|s| s == "pending"), "the rows went back to the queue");
}
