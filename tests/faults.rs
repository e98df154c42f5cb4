//! The fault matrix: every fault a real provider produces, in both dialects, each test
//! asserting what happened to the rows and what the simulator saw.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

const DIALECTS: [&str; 2] = ["openai", "gemini"];

/// `run` with `--provider DIALECT` in front of the other arguments.
async fn run_in(
    dialect: &str,
    sim: &SimServer,
    manifest: &std::path::Path,
    out: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    let mut all = vec!["--provider", dialect];
    all.extend_from_slice(args);
    run(sim, manifest, out, &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_storms_are_waited_out_and_hold_every_worker() {
    for dialect in DIALECTS {
        // Every prompt's first call is rate limited, then a third of the others.
        let sim = sim(SimConfig {
            fail_first: Some(Fault::RateLimited),
            faults: vec![FaultSpec::new(Fault::RateLimited, 0.3)],
            retry_after: Duration::from_millis(400),
            seed: 3,
            ..fixed(Duration::from_millis(20))
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (manifest, prompts) = manifest(dir.path(), 12);
        let out = dir.path().join("out");
        let o = run_in(dialect, &sim, &manifest, &out, &["-c", "4", "--max-attempts", "10"]).await;
        assert_eq!(o.status.code(), Some(0), "{dialect}: {}", text(&o));
        assert_images_match(&out, &prompts);
        let all = attempts(&out);
        let limited: Vec<_> = all.iter().filter(|a| a.4.as_deref() == Some("rate_limited")).collect();
        assert!(limited.len() >= 12, "{dialect}: every row met a 429");
        for (id, _, start, took, _) in &limited {
            let answered = start + took;
            let next = all.iter().find(|a| &a.0 == id && a.2 > *start).expect("the row was retried");
            assert!(
                next.2 >= answered + 0.395,
                "{dialect}: {id} retried {:.3}s after a 0.4s advice",
                next.2 - answered
            );
            // No worker starts while the hold is in force (a start already past the gate
            // when the 429 arrived may land within a few ms).
            for other in &all {
                assert!(
                    !(other.2 > answered + 0.02 && other.2 < answered + 0.395),
                    "{dialect}: {} started {:.3}s into a 0.4s hold",
                    other.0,
                    other.2 - answered
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_model_hands_its_rows_to_the_fallback() {
    for dialect in DIALECTS {
        let sim = sim(SimConfig {
            faults: vec![FaultSpec { fault: Fault::Overloaded, rate: 1.0, model: Some("primary".into()) }],
            models: Some(vec!["primary".into(), "backup".into()]),
            ..fixed(Duration::from_millis(10))
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (manifest, prompts) = manifest(dir.path(), 12);
        let out = dir.path().join("out");
        let args = ["--model", "primary", "--fallback-model", "backup", "--fallback-after", "2", "-c", "4"];
        let o = run_in(dialect, &sim, &manifest, &out, &args).await;
        assert_eq!(o.status.code(), Some(0), "{dialect}: {}", text(&o));
        assert_images_match(&out, &prompts);
        for r in results(&out) {
            assert_eq!(r["model"], "backup", "{dialect}: results.csv names the model that made the image");
            assert_eq!(r["attempts"], "3", "{dialect}: two overloaded answers, then the fallback");
        }
        let stats = sim.stats();
        assert_eq!(stats.per_model.get("backup"), Some(&12));
        assert_eq!(stats.per_model.get("primary"), None);
        assert_eq!(stats.requests, 36);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_up_to_max_attempts_then_fail_with_the_last_class() {
    let cases = [
        (Fault::Server, "server", "500"),
        (Fault::BadGateway, "server", "Bad Gateway"),
        (Fault::GatewayTimeout, "server", "504"),
        (Fault::Reset, "network", "body"),
        (Fault::BadJson, "bad_response", "JSON"),
        (Fault::Html, "bad_response", "JSON"),
        (Fault::BadBase64, "bad_response", "base64"),
        (Fault::NoImage, "bad_response", "no image"),
    ];
    for dialect in DIALECTS {
        for (fault, class, says) in cases {
            let sim =
                sim(SimConfig { faults: vec![FaultSpec::new(fault, 1.0)], ..fixed(Duration::from_millis(5)) }).await;
            let dir = tempfile::tempdir().unwrap();
            let (manifest, _) = manifest(dir.path(), 3);
            let out = dir.path().join("out");
            let o = run_in(dialect, &sim, &manifest, &out, &["--max-attempts", "3"]).await;
            let what = format!("{dialect} {fault:?}");
            // Gemini's "STOP with text and no image part" is retried too, as NO_IMAGE is.
            let attempts = 3;
            assert_eq!(o.status.code(), Some(1), "{what}: {}", text(&o));
            for r in results(&out) {
                assert_eq!(r["status"], "failed", "{what}");
                assert_eq!(r["error_class"], class, "{what}: {r:?}");
                assert_eq!(r["attempts"], attempts.to_string(), "{what}");
                assert!(r["error"].contains(says), "{what}: error {:?} should mention {says:?}", r["error"]);
            }
            assert_eq!(sim.stats().requests, 3 * attempts, "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_never_answer_are_abandoned_at_each_resolutions_own_deadline() {
    for dialect in DIALECTS {
        // Every prompt's first call stalls; the retry answers.
        let sim = sim(SimConfig { fail_first: Some(Fault::Stall), ..fixed(Duration::from_millis(30)) }).await;
        let dir = tempfile::tempdir().unwrap();
        let (manifest, prompts) = manifest(dir.path(), 12);
        let out = dir.path().join("out");
        let args = ["-c", "12", "--timeout", "1K=400ms,2K=600ms,4K=900ms"];
        let o = run_in(dialect, &sim, &manifest, &out, &args).await;
        assert_eq!(o.status.code(), Some(0), "{dialect}: {}", text(&o));
        assert_images_match(&out, &prompts);
        let resolution: HashMap<String, String> =
            results(&out).into_iter().map(|r| (r["id"].clone(), r["resolution"].clone())).collect();
        let timeouts: Vec<_> = attempts(&out).into_iter().filter(|a| a.4.as_deref() == Some("timeout")).collect();
        assert_eq!(timeouts.len(), 12, "{dialect}: one abandoned call per row");
        for (id, _, _, took, _) in &timeouts {
            let deadline = match resolution[id].as_str() {
                "1K" => 0.4,
                "2K" => 0.6,
                _ => 0.9,
            };
            assert!(*took >= deadline - 0.01 && *took < deadline + 0.3, "{dialect}: {id} gave up after {took}s");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_final_at_once_with_their_reason() {
    for dialect in DIALECTS {
        let sim = sim(SimConfig {
            faults: vec![FaultSpec::new(Fault::Refuse, 0.4)],
            seed: 2,
            ..fixed(Duration::from_millis(5))
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (manifest, _) = manifest(dir.path(), 24);
        let out = dir.path().join("out");
        let o = run_in(dialect, &sim, &manifest, &out, &[]).await;
        assert_eq!(o.status.code(), Some(1), "{dialect}: {}", text(&o));
        let refused: Vec<_> = results(&out).into_iter().filter(|r| r["status"] == "failed").collect();
        assert!(refused.len() >= 3, "{dialect}");
        let reasons = ["safety system", "PROHIBITED_CONTENT", "IMAGE_SAFETY"];
        for r in &refused {
            assert_eq!(r["error_class"], "refused", "{dialect}");
            assert_eq!(r["attempts"], "1", "{dialect}: a refusal was retried");
            assert!(reasons.iter().any(|why| r["error"].contains(why)), "{dialect}: {:?}", r["error"]);
        }
        assert_eq!(sim.stats().requests, 24, "{dialect}: no retries");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_quota_and_unknown_models_stop_the_run_at_once() {
    for dialect in DIALECTS {
        // (what, sim settings, extra args, words the message must hold)
        let cases: Vec<(&str, SimConfig, Vec<&str>, &[&str])> = vec![
            (
                "quota",
                SimConfig { faults: vec![FaultSpec::new(Fault::Quota, 1.0)], ..fixed(Duration::from_millis(5)) },
                vec![],
                &["quota", "add credit"],
            ),
            (
                "unknown model",
                SimConfig { models: Some(vec!["known".into()]), ..fixed(Duration::from_millis(5)) },
                vec!["--model", "nonesuch"],
                &["not_found", "--model"],
            ),
        ];
        for (what, cfg, extra, words) in cases {
            let sim = sim(cfg).await;
            let dir = tempfile::tempdir().unwrap();
            let (manifest, _) = manifest(dir.path(), 40);
            let out = dir.path().join("out");
            // The preflight stops an unknown model before any call (tests/models.rs); this
            // is the run's own stop, for what only shows mid-run.
            let mut args = vec!["-c", "4", "--no-preflight"];
            args.extend(extra);
            let o = run_in(dialect, &sim, &manifest, &out, &args).await;
            assert_eq!(o.status.code(), Some(3), "{dialect} {what}: {}", text(&o));
            let stderr = String::from_utf8_lossy(&o.stderr);
            for w in words {
                assert!(stderr.contains(w), "{dialect} {what}: {w:?} missing from {stderr}");
            }
            assert!(stderr.contains("40 row(s) left pending"), "{dialect} {what}: {stderr}");
            assert!(sim.stats().requests <= 4, "{dialect} {what}: {} calls", sim.stats().requests);
            assert!(states(&out).values().all(|s| s == "pending"), "{dialect} {what}");
        }
        // A wrong key, in the dialect's own shape (Gemini: 400 API_KEY_INVALID).
        let sim = sim(fixed(Duration::from_millis(5))).await;
        let dir = tempfile::tempdir().unwrap();
        let (manifest, _) = manifest(dir.path(), 40);
        let out = dir.path().join("out");
        let mut c = bin();
        c.env("BULKGEN_API_KEY", "sk-wrong-99887766").args(["run", "--provider", dialect, "-c", "4", "--rpm", "0"]);
        c.arg("--no-preflight");
        c.arg(&manifest).arg("--base-url").arg(sim.base_url()).arg("-o").arg(&out);
        let o = c.output().await.unwrap();
        assert_eq!(o.status.code(), Some(3), "{dialect} wrong key: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("auth"), "{dialect}: {}", text(&o));
        assert!(!text(&o).contains("sk-wrong-99887766"), "{dialect}: the key is printed");
        assert!(sim.stats().requests <= 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_row_batch_with_thirty_percent_faults_makes_every_image_once() {
    let sim = sim(SimConfig {
        time_scale: 0.0,
        seed: 17,
        image_bytes: 2048,
        retry_after: Duration::from_millis(1),
        faults: [Fault::RateLimited, Fault::Overloaded, Fault::Server, Fault::Reset, Fault::BadJson, Fault::BadGateway]
            .into_iter()
            .map(|f| FaultSpec::new(f, 0.05))
            .collect(),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, prompts) = manifest(dir.path(), 10_000);
    let out = dir.path().join("out");
    let o = run(
        &sim,
        &manifest,
        &out,
        &["-c", "64", "--max-attempts", "20", "--backoff-base", "1ms", "--backoff-max", "5ms"],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stats = sim.stats();
    assert!(stats.faults.values().sum::<u64>() > 2_500, "{:?}", stats.faults);
    assert_each_generated_once(&stats, &prompts);
    assert_eq!(stats.successes, 10_000);
    assert!(states(&out).values().all(|s| s == "done"));
    assert_eq!(std::fs::read_dir(out.join("images")).unwrap().count(), 10_000);
}

/// A fallback model that renders fewer sizes takes over only the rows it can render as
/// asked: 2K rows stay on the overloaded primary (and fail as overloaded), never quietly
/// rendered at 1K by the fallback while results.csv says 2K (issue 13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_that_renders_fewer_sizes_never_takes_a_row_it_cannot_render_as_asked() {
    let sim = sim(SimConfig {
        faults: vec![FaultSpec { fault: Fault::Overloaded, rate: 1.0, model: Some("primary".into()) }],
        models: Some(vec!["primary".into(), "backup".into()]),
        ..fixed(Duration::from_millis(5))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models.toml");
    let entry = |name: &str, sizes: &str| {
        format!(
            "[[model]]\nname = \"{name}\"\ndialect = \"openai\"\nsizes = {{ kind = \"list\", sizes = [{sizes}] }}\n\
             source = \"a test\"\nas_of = \"2026-11-24\"\n\n"
        )
    };
    let toml = entry("primary", "\"1024x1024\", \"2048x2048\"") + &entry("backup", "\"1024x1024\"");
    std::fs::write(&models, toml).unwrap();
    let manifest = dir.path().join("m.csv");
    let mut csv = String::from("id,prompt,size\n");
    for i in 0..8 {
        csv += &format!("r{i},prompt {i},{}\n", if i % 2 == 0 { "1K" } else { "2K" });
    }
    std::fs::write(&manifest, csv).unwrap();
    let out = dir.path().join("out");
    let models_arg = models.display().to_string();
    let args = [
        "--models-file",
        &models_arg,
        "--model",
        "primary",
        "--fallback-model",
        "backup",
        "--fallback-after",
        "2",
        "--max-attempts",
        "4",
    ];
    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(1), "the 2K rows fail: {}", text(&o));
    for r in results(&out) {
        if r["size"] == "1K" {
            assert_eq!((r["status"].as_str(), r["model"].as_str()), ("done", "backup"), "{r:?}");
            assert_eq!(r["size_sent"], "1024x1024", "{r:?}");
        } else {
            assert_eq!((r["status"].as_str(), r["error_class"].as_str()), ("failed", "overloaded"), "{r:?}");
            assert_eq!(r["model"], "primary", "{r:?}");
            assert_eq!(r["file"], "", "{r:?}");
        }
    }
    assert_eq!(sim.stats().per_model.get("backup"), Some(&4), "only the four 1K rows reached the fallback");
}
