//! Issue 9 through the CLI: today's models, exact requests, params, the preflight, and
//! `bulkgen models`. The simulator judges every request by rules made from the official
//! SDKs (tests/sdk/fixtures.json), never by bulkgen's catalogue, so a mistake in the
//! catalogue fails here.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The generation bodies the simulator received, by the prompt they carried.
fn bodies(sim: &SimServer) -> Vec<(String, Value)> {
    sim.stats().bodies
}

fn body_for<'a>(bodies: &'a [(String, Value)], prompt: &str) -> &'a Value {
    let found = bodies.iter().find(|(_, b)| {
        b["prompt"] == prompt
            || b["contents"][0]["parts"].as_array().is_some_and(|p| p.iter().any(|x| x["text"] == prompt))
    });
    &found.unwrap_or_else(|| panic!("no request carried {prompt:?}")).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_models_get_requests_the_real_apis_accept() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "m.csv",
        "id,prompt,size,aspect_ratio\nsq,square one,1K,\nwide,a wide 4K one,4K,16:9\npano,a 21:9 one,4K,21:9\n\
         px,exact pixels,1536x1024,\n",
    );
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let b = bodies(&sim);
    for (_, body) in &b {
        assert_eq!(body["model"], "gpt-image-2", "the default openai model");
        assert!(body.get("response_format").is_none(), "GPT image models refuse response_format: {body}");
    }
    assert_eq!(body_for(&b, "square one")["size"], "1024x1024");
    assert_eq!(body_for(&b, "a wide 4K one")["size"], "3840x2160");
    assert_eq!(body_for(&b, "a 21:9 one")["size"], "3840x1648");
    assert_eq!(body_for(&b, "exact pixels")["size"], "1536x1024");
    let rows = results(&out);
    let wide = rows.iter().find(|r| r["id"] == "wide").unwrap();
    assert_eq!((wide["size"].as_str(), wide["size_sent"].as_str()), ("4K", "3840x2160"));
    assert_eq!(wide["prompt"], "a wide 4K one");
    assert!(sim.stats().list_requests >= 1, "the preflight asked for the model list");

    // The gemini dialect: gemini-3-pro-image with imageSize and aspectRatio.
    let out = dir.path().join("out-gemini");
    let before = bodies(&sim).len();
    let manifest =
        write(dir.path(), "g.csv", "id,prompt,size,aspect_ratio\ng1,gemini wide,2K,16:9\ng2,gemini px,2752x1536,\n");
    let o = run(&sim, &manifest, &out, &["--provider", "gemini"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let b = bodies(&sim)[before..].to_vec();
    assert!(b.iter().all(|(path, _)| path.contains("/v1beta/models/gemini-3-pro-image:generateContent")), "{b:?}");
    for prompt in ["gemini wide", "gemini px"] {
        let config = &body_for(&b, prompt)["generationConfig"]["imageConfig"];
        assert_eq!(config, &serde_json::json!({"aspectRatio": "16:9", "imageSize": "2K"}), "{prompt}");
    }
    let rows = results(&out);
    assert_eq!(rows.iter().find(|r| r["id"] == "g2").unwrap()["size_sent"], "2K 16:9");

    // An aggregator model that takes response_format gets it; url results are downloaded.
    let out = dir.path().join("out-agg");
    let before = bodies(&sim).len();
    let o = run(
        &sim,
        &manifest_of(dir.path(), "a.csv", 3),
        &out,
        &["--model", "nano-banana-pro", "--response-format", "url"],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let b = bodies(&sim)[before..].to_vec();
    assert_eq!(b.len(), 3);
    assert!(b.iter().all(|(_, body)| body["response_format"] == "url" && body["size"] == "1024x1024"), "{b:?}");
}

fn manifest_of(dir: &std::path::Path, name: &str, n: usize) -> std::path::PathBuf {
    let mut text = String::from("id,prompt\n");
    for i in 0..n {
        text.push_str(&format!("r{i},prompt {name} {i}\n"));
    }
    write(dir, name, &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_a_model_cannot_render_are_refused_at_the_check_or_sent_as_the_nearest() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "m.csv",
        "id,prompt,size,aspect_ratio,model\nok,fine,1K,,\ntoo-big,over the edge,4096x4096,,\n\
         legacy,old model 2K,2K,,gpt-image-1.5\ntall,too tall,1K,1:4,\nodd,not by 16,1000x1000,,\n",
    );
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for expected in [
        "line 3: row too-big: gpt-image-2 cannot render 4096x4096: the longer side must be at most 3840",
        "line 4: row legacy: gpt-image-1.5 renders only 1024x1024 1536x1024 1024x1536, not 2K at 1:1",
        "line 5: row tall: gpt-image-2 renders aspect ratios from 1:3 to 3:1, not 1:4",
        "line 6: row odd: gpt-image-2 cannot render 1000x1000: both sides must be divisible by 16",
        "--size-policy nearest",
    ] {
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
    assert_eq!(sim.stats().requests, 0, "nothing was sent");
    assert_eq!(sim.stats().list_requests, 0, "not even the preflight");
    assert!(!out.exists());

    // Gemini: 512 and 1:8 are Nano Banana 2's, not Nano Banana Pro's.
    let g = write(
        dir.path(),
        "g.csv",
        "id,prompt,size,aspect_ratio,model\na,x,512,,\nb,y,1K,1:8,\nc,z,512,1:8,gemini-3.1-flash-image\n",
    );
    let o = run(&sim, &g, &out, &["--provider", "gemini"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 2: row a: gemini-3-pro-image renders imageSize 1K 2K 4K, not 512"), "{err}");
    assert!(err.contains("line 3: row b: gemini-3-pro-image takes aspect ratios"), "{err}");
    assert!(!err.contains("line 4"), "gemini-3.1-flash-image renders 512 at 1:8: {err}");

    // --size-policy nearest sends what the model renders and records both sizes.
    let o = run(&sim, &manifest, &out, &["--size-policy", "nearest"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = results(&out);
    let sent = |id: &str| {
        let r = rows.iter().find(|r| r["id"] == id).unwrap();
        (r["size"].clone(), r["size_sent"].clone())
    };
    assert_eq!(sent("too-big"), ("4096x4096".into(), "2880x2880".into()));
    assert_eq!(sent("legacy"), ("2K".into(), "1024x1024".into()));
    assert_eq!(sent("odd"), ("1000x1000".into(), "1008x1008".into()));
    assert_eq!(sim.stats().faults.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_reach_the_request_are_part_of_identity_and_may_not_collide() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(dir.path(), "m.csv", "id,prompt,param.output_format\na,first,webp\nb,second,\n");
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["--param", "quality=high", "--param", "output_compression=80"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let b = bodies(&sim);
    let first = body_for(&b, "first");
    assert_eq!((first["quality"].as_str(), first["output_compression"].as_i64()), (Some("high"), Some(80)));
    assert_eq!(first["output_format"], "webp");
    assert!(body_for(&b, "second").get("output_format").is_none());

    // A changed param changes the rows' identity: kept by default, made again on request.
    let o = run(&sim, &manifest, &out, &["--param", "quality=low", "--param", "output_compression=80"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 done row(s) changed"), "{}", text(&o));
    let args = ["--param", "quality=low", "--param", "output_compression=80", "--regenerate-changed"];
    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sim.stats().requests, 4);

    // Fields bulkgen sets are refused, with the fix named, and nothing is sent.
    let cases: [(&[&str], &str); 3] = [
        (&["--param", "size=4096x4096"], "bulkgen sets `size` itself"),
        (
            &["--provider", "gemini", "--param", "generationConfig.imageConfig.imageSize=4K"],
            "sets `generationConfig.imageConfig`",
        ),
        (&["--param", "response_format=url"], "sets `response_format`"),
    ];
    for (args, expected) in cases {
        let o = run(&sim, &manifest, &dir.path().join("never"), args).await;
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(expected), "{args:?}: {}", text(&o));
    }
    let bad = write(dir.path(), "bad.csv", "prompt,param.model\nx,gpt-image-1\n");
    let o = run(&sim, &bad, &dir.path().join("never"), &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("column `param.model` would overwrite `model`"),
        "{}",
        text(&o)
    );
    let o = run(&sim, &manifest, &dir.path().join("never"), &["--response-format", "url"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("gpt-image-2 does not take response_format"), "{}", text(&o));
    assert_eq!(sim.stats().requests, 4, "no bad invocation sent anything");
    assert!(!dir.path().join("never").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_stops_retired_unknown_and_unserved_models_before_any_paid_call() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_of(dir.path(), "m.csv", 5);
    let out = dir.path().join("out");
    let cases: [(&[&str], &[&str]); 4] = [
        (&["--model", "gpt-image-1"], &["model gpt-image-1 was shut down", "use gpt-image-2 instead"]),
        (&["--model", "gpt-imag-2"], &["model gpt-imag-2 is not served by", "close names it serves: gpt-image-2"]),
        (
            &["--provider", "gemini", "--model", "gemini-3-pro-image-preview"],
            &["shut down 2026-06-25", "use gemini-3-pro-image instead"],
        ),
        (
            &["--provider", "gemini", "--model", "gemini-3-pro-imag"],
            &["model gemini-3-pro-imag is not served", "gemini-3-pro-image"],
        ),
    ];
    for (args, expected) in cases {
        let o = run(&sim, &manifest, &out, args).await;
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        for e in expected {
            assert!(err.contains(e), "{args:?}: expected {e:?} in {err}");
        }
    }
    assert_eq!(sim.stats().requests, 0, "no generation was sent");
    assert!(!out.exists(), "nothing was created");

    // A deprecated model runs, with a warning that names its date.
    let o = run(&sim, &manifest, &out, &["--model", "gpt-image-1.5"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("gpt-image-1.5 is deprecated and shuts down 2026-12-01"));

    // A bad key stops at the preflight, masked.
    let mut c = run_cmd(&sim.base_url(), &manifest, &dir.path().join("out2"), &["--api-key-env", "WRONG_KEY"]);
    c.env("WRONG_KEY", "sk-wrong-0123456789abcdef");
    let o = c.output().await.unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refused the run before any paid call") && !err.contains("0123456789abcdef"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_without_a_model_list_gets_a_note_but_a_retired_model_is_still_caught() {
    let sim = sim(SimConfig { list_endpoint: false, ..fixed(Duration::from_millis(5)) }).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_of(dir.path(), "m.csv", 3);
    let o = run(&sim, &manifest, &dir.path().join("out"), &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no model list"), "{}", text(&o));
    for args in [&["--model", "gpt-image-1"][..], &["--provider", "gemini", "--model", "gemini-2.5-flash-image"]] {
        let o = run(&sim, &manifest, &dir.path().join("out2"), args).await;
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("was shut down"), "{}", text(&o));
    }
    assert_eq!(sim.stats().requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_stop_at_once_naming_the_url_and_the_cause() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_of(dir.path(), "m.csv", 3);
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cases = [
        (format!("http://{closed}"), "nothing accepts connections at 127.0.0.1"),
        (sim.base_url().replace("http://", "https://"), "the TLS handshake with 127.0.0.1"),
    ];
    for (url, expected) in cases {
        let o = run_cmd(&url, &manifest, &dir.path().join("out"), &[]).output().await.unwrap();
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("cannot reach {url}")) && err.contains(expected), "{err}");
        assert!(!dir.path().join("out").exists());
    }
    assert_eq!(sim.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn googles_openai_compatible_root_is_a_base_url() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_of(dir.path(), "m.csv", 2);
    let base = format!("{}/v1beta/openai", sim.base_url());
    let o = run_cmd(&base, &manifest, &dir.path().join("out"), &[]).output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(bodies(&sim).iter().all(|(path, _)| path == "/v1beta/openai/images/generations"), "{:?}", bodies(&sim));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_models_command_prints_the_catalogue_and_what_an_endpoint_serves() {
    let o = bin().args(["models", "--format", "json"]).output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let models = v["models"].as_array().unwrap();
    let entry = |name: &str| models.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(entry("gpt-image-2")["default"], true);
    assert_eq!(entry("gemini-3-pro-image")["default"], true);
    assert_eq!(entry("gpt-image-1")["status"], "shutdown");
    assert!(entry("gpt-image-1")["source"].as_str().is_some_and(|s| !s.is_empty()));

    let dir = tempfile::tempdir().unwrap();
    let extra = write(
        dir.path(),
        "models.toml",
        "[[model]]\nname = \"relay-image\"\ndialect = \"openai\"\nsizes = { kind = \"list\", sizes = [\"1024x1024\"] }\n\
         source = \"our relay\"\nas_of = \"2026-11-24\"\n",
    );
    let o = bin().args(["models", "--provider", "openai"]).arg("--models-file").arg(&extra).output().await.unwrap();
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(listing.contains("relay-image  [openai]") && !listing.contains("gemini-3-pro-image"), "{listing}");

    let sim = sim(fixed(Duration::from_millis(5))).await;
    let o = bin().args(["models", "--base-url", &sim.base_url()]).output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(listing.contains("gpt-image-2") && listing.contains("nano-banana-pro"), "{listing}");
    assert!(listing.contains("deprecated: shuts down 2026-12-01"), "{listing}");
    let o = bin()
        .args(["models", "--provider", "gemini", "--format", "json", "--base-url", &sim.base_url()])
        .output()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let served: Vec<&str> = v["served"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(served.contains(&"gemini-3-pro-image") && !served.contains(&"gemini-3-pro-image-preview"), "{served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_cannot_connect_spends_no_attempt_and_waits_for_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_of(dir.path(), "m.csv", 6);
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();

    // Nobody there, past --max-wait: exit 3, rows pending, none failed.
    let addr = free_port();
    let out = dir.path().join("gone");
    let args = ["--no-preflight", "--max-attempts", "1", "--max-wait", "300ms"];
    let o = run_cmd(&format!("http://{addr}"), &manifest, &out, &args).output().await.unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot be reached") && err.contains("longer than --max-wait"), "{err}");
    assert!(states(&out).values().all(|s| s == "pending"), "{:?}", states(&out));

    // The endpoint comes up while the calls wait: with one attempt a row, every row is
    // still made, because calls that reached nobody spent none.
    let addr = free_port();
    let out = dir.path().join("back");
    let args = ["--no-preflight", "--max-attempts", "1", "--max-wait", "60s", "-c", "3"];
    let child = spawn_run_at(&format!("http://{addr}"), &manifest, &out, &args);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let sim = SimServer::start(SimConfig { api_key: Some(KEY.into()), ..fixed(Duration::from_millis(5)) }, addr)
        .await
        .expect("the port is still free");
    let o = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot be reached") && err.contains("answers again"), "{err}");
    assert_eq!(sim.stats().successes, 6);
    assert!(attempts(&out).iter().any(|a| a.4.as_deref() == Some("unreachable")), "the failed connects are recorded");
}
