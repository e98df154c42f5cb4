//! Several images in one call (issue 13): the openai dialect's `n`, through the CLI. The
//! images of one manifest row (`--count`, `count`) share a call up to the catalogue's
//! `images_per_call` for the model (capped by `--images-per-call`); each image is still
//! its own checkpoint row, file, price and attempt. Gemini makes a call per image.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A manifest with a `count` column: (id, prompt, count cell).
fn counted(dir: &Path, rows: &[(&str, &str, &str)]) -> PathBuf {
    let path = dir.join("manifest.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["id", "prompt", "count"]).unwrap();
    for (id, prompt, count) in rows {
        w.write_record([*id, *prompt, *count]).unwrap();
    }
    w.flush().unwrap();
    path
}

/// `n` of every generation request the simulator received, largest first (1 where the
/// body has none, as the API reads it); an edit's form carries it as text.
fn ns(sim: &SimServer) -> Vec<u64> {
    let mut ns: Vec<u64> = sim
        .stats()
        .bodies
        .iter()
        .map(|(_, body)| {
            let n = if body["fields"].is_object() { &body["fields"]["n"] } else { &body["n"] };
            n.as_u64().or_else(|| n.as_str().and_then(|t| t.parse().ok())).unwrap_or(1)
        })
        .collect();
    ns.sort_by(|a, b| b.cmp(a));
    ns
}

/// The images on disk, each read once: id -> (prompt tag, simulator image number).
fn images(out: &Path) -> Vec<(String, String, String)> {
    let mut found: Vec<(String, String, String)> = std::fs::read_dir(out.join("images"))
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let stem = path.file_name()?.to_str()?.strip_suffix(".png")?.to_owned();
            let tag = read_tag(&std::fs::read(&path).ok()?)?;
            Some((stem, tag["prompt"].to_string(), tag["n"].to_string()))
        })
        .collect();
    found.sort();
    found
}

fn metadata(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("metadata.jsonl")).expect("metadata.jsonl exists");
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// gpt-image-2 takes `n` (1 to 10): a row of count 4 is one request with n=4, and its four
/// images are four different images, each in its own file, results line and metadata
/// line; a row of count 12 takes two calls (10 + 2). Running again sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_of_a_row_share_one_call_with_n() {
    let sim = sim(fixed(Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(dir.path(), &[("four", "four foxes", "4"), ("twelve", "twelve owls", "12")]);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["-c", "1"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(ns(&sim), vec![10, 4, 2], "one call per row, at most 10 images each");
    assert_eq!((sim.stats().requests, sim.stats().successes), (3, 16));

    let on_disk = images(&out);
    assert_eq!(on_disk.len(), 16);
    let numbers: HashSet<&str> = on_disk.iter().map(|(_, _, n)| n.as_str()).collect();
    assert_eq!(numbers.len(), 16, "every file holds a different image: {on_disk:?}");
    for (id, prompt, _) in &on_disk {
        let want = if id.starts_with("four_") { "four foxes" } else { "twelve owls" };
        assert_eq!(*prompt, prompt_tag(want), "{id}");
    }
    let results = results(&out);
    assert_eq!(results.len(), 16);
    assert!(results.iter().all(|r| r["status"] == "done" && r["attempts"] == "1"), "{results:?}");
    let hashes: HashSet<String> = metadata(&out).iter().map(|l| l["sha256"].as_str().unwrap().to_owned()).collect();
    assert_eq!(hashes.len(), 16, "one metadata line per image, each its own");
    let report = json_report(&out).await;
    assert_eq!((&report["overall"]["done"], &report["overall"]["attempts"]), (&16.into(), &3.into()), "{report}");
    assert_eq!(report["manifest_rows"], 2, "{report}");
    assert!(text(&o).contains("16 images from 2 manifest rows: 16 done, 0 failed, 0 pending; 3 calls"), "{}", text(&o));

    let again = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(sim.stats().requests, 3, "nothing sent again");
}

/// `--images-per-call` caps `n`; 1 turns it off (a call per image, `n` = 1 as ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_per_call_caps_n_and_one_turns_it_off() {
    for (cap, want) in [("2", vec![2, 2, 1]), ("1", vec![1, 1, 1, 1, 1])] {
        let sim = sim(fixed(Duration::from_millis(5))).await;
        let dir = tempfile::tempdir().unwrap();
        let manifest = counted(dir.path(), &[("r", "five hares", "5")]);
        let out = dir.path().join("out");
        let o = run(&sim, &manifest, &out, &["-c", "1", "--images-per-call", cap]).await;
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_eq!(ns(&sim), want, "--images-per-call {cap}");
        assert_eq!(images(&out).len(), 5);
    }
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(dir.path(), &[("r", "x", "2")]);
    let o = run(&sim, &manifest, &dir.path().join("out"), &["--images-per-call", "0"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--images-per-call must be at least 1"), "{}", text(&o));
    assert_eq!(sim.stats().requests, 0);
}

/// Gemini's generateContent makes one image: a row of count 3 is three calls, and no
/// request carries `n`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_makes_a_call_per_image() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(dir.path(), &[("g", "three geckos", "3")]);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["--provider", "gemini", "--model", "gemini-3-pro-image"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sim.stats().requests, 3);
    assert!(sim.stats().bodies.iter().all(|(_, b)| b.get("n").is_none()), "no n in a Gemini body");
    assert_eq!(images(&out).len(), 3);
}

/// A row with a reference image is an edit: the multipart form carries `n` too, and every
/// image of the call is made from the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_asks_for_its_images_in_one_call() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cat.png"), bulkgen::sim::png::make(2000, 7, "ref=cat")).unwrap();
    let path = dir.path().join("manifest.csv");
    std::fs::write(&path, "id,prompt,images,count\ne,the cat in a hat,cat.png,3\n").unwrap();
    let out = dir.path().join("out");
    let o = run(&sim, &path, &out, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!((sim.stats().edits, ns(&sim)), (1, vec![3]), "one edit with n=3");
    for k in 1..=3 {
        let png = std::fs::read(out.join(format!("images/e_{k}.png"))).unwrap();
        let (refs, _) = bulkgen::sim::read_refs(&png);
        assert_eq!(refs.len(), 1, "e_{k} was made from the reference");
    }
}

/// An endpoint that ignores `n` (an OpenAI-compatible relay answering one image whatever
/// is asked): every image is still made, none is paid twice, the images not answered are
/// asked for again, and the run says once how to stop asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_ignores_n_still_gets_every_image_asked_for_once() {
    let sim = sim(SimConfig { max_images_per_answer: Some(1), ..fixed(Duration::from_millis(5)) }).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(dir.path(), &[("r", "three robins", "3")]);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(ns(&sim), vec![3, 2, 1], "the images not answered are asked for again");
    assert_eq!(sim.stats().successes, 3, "no image made twice");
    assert_eq!(images(&out).len(), 3);
    let said = text(&o);
    assert_eq!(said.matches("an answer held 1 of the").count(), 1, "said once: {said}");
    assert!(said.contains("--images-per-call 1"), "{said}");
    let results = results(&out);
    let mut attempts: Vec<&str> = results.iter().map(|r| r["attempts"].as_str()).collect();
    attempts.sort();
    assert_eq!(attempts, ["1", "2", "3"], "an image left out of an answer spent an attempt");
    // Three calls, two of which came back short: each is one error of the call's.
    let report = json_report(&out).await;
    assert_eq!(report["overall"]["attempts"], 3, "{report}");
    assert_eq!(report["overall"]["errors"]["bad_response"], 2, "{report}");
}

/// `--max-cost` holds the price of every image a call asks for: with room for two of a
/// row's three images, the call asks for two (n=2) and the run stops; raising the cap
/// asks for the third alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_cost_asks_for_only_the_images_it_can_pay_for() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(dir.path(), &[("r", "three rabbits", "3")]);
    let out = dir.path().join("out");
    let price = ["--price", "gpt-image-2:*=1"];
    let o = run(&sim, &manifest, &out, &[&price[..], &["--max-cost", "2"]].concat()).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(ns(&sim), vec![2]);
    assert_eq!(images(&out).len(), 2);
    let o = run(&sim, &manifest, &out, &[&price[..], &["--max-cost", "3"]].concat()).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(ns(&sim), vec![2, 1]);
    assert_eq!(sim.stats().successes, 3);
}

/// A fallback model takes over a whole call, so a call never asks for more images than
/// the fallback takes: with a fallback the catalogue gives one image per call, each image
/// is its own call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_asks_for_no_more_images_than_its_fallback_takes() {
    let cfg =
        SimConfig { models: Some(vec!["gpt-image-2".into(), "backup".into()]), ..fixed(Duration::from_millis(5)) };
    let sim = sim(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(dir.path(), &[("r", "three ravens", "3")]);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["--fallback-model", "backup"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(ns(&sim), vec![1, 1, 1]);
}

/// A model the catalogue extends with `images_per_call` and `response_format`: a relay
/// answering URLs, one per image of the call, each saved before it is downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_answered_with_urls_downloads_every_image() {
    let cfg = SimConfig { models: Some(vec!["relay-image".into()]), ..fixed(Duration::from_millis(5)) };
    let sim = sim(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models.toml");
    std::fs::write(
        &models,
        "[[model]]\nname = \"relay-image\"\ndialect = \"openai\"\nsizes = { kind = \"list\", sizes = \
         [\"1024x1024\"] }\nresponse_format = true\nimages_per_call = 4\nsource = \"a test\"\nas_of = \"2026-11-24\"\n",
    )
    .unwrap();
    let manifest = counted(dir.path(), &[("u", "three urls", "3")]);
    let out = dir.path().join("out");
    let args = ["--model", "relay-image", "--models-file", models.to_str().unwrap(), "--response-format", "url"];
    let o = run(&sim, &manifest, &out, &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!((ns(&sim), sim.stats().downloads), (vec![3], 3));
    let on_disk = images(&out);
    assert_eq!(on_disk.len(), 3);
    assert_eq!(on_disk.iter().map(|(_, _, n)| n).collect::<HashSet<_>>().len(), 3, "{on_disk:?}");
    // What the answer said beside each URL is kept through the download into metadata.
    let lines = metadata(&out);
    assert_eq!(lines.len(), 3);
    for line in &lines {
        assert_eq!(line["revised_prompt"], bulkgen::sim::SIM_REVISED_PROMPT, "{line}");
    }

    // A Gemini entry cannot claim several images per call.
    std::fs::write(
        &models,
        "[[model]]\nname = \"g\"\ndialect = \"gemini\"\nsizes = { kind = \"gemini\", classes = [\"1K\"], ratios = \
         [\"1:1\"], pixels_1k = { \"1:1\" = \"1024x1024\" } }\nimages_per_call = 4\nsource = \"t\"\nas_of = \
         \"2026-11-24\"\n",
    )
    .unwrap();
    let o = run(&sim, &manifest, &dir.path().join("g"), &["--models-file", models.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("only the openai dialect asks for several images in one call"), "{}", text(&o));
}

/// Errors are counted by call, on the progress line as in the report: a call of three
/// images that the provider refused as overloaded is one error, not three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_of_n_images_is_one_error() {
    let sim = sim(SimConfig { fail_first: Some(Fault::Overloaded), ..fixed(Duration::from_millis(300)) }).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(dir.path(), &[("o", "three otters", "3")]);
    let out = dir.path().join("out");
    let o = run(&sim, &manifest, &out, &["--progress-interval", "100ms"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(ns(&sim), vec![3, 3], "the call is retried whole");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let last = stderr.lines().rfind(|l| l.starts_with("[00:0")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(last.contains("errors so far: overloaded 1;"), "{last}");
    // A call of three images is one call in flight.
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("[00:0")).collect();
    assert!(lines.iter().all(|l| l.contains(" 0 in flight") || l.contains(" 1 in flight")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains(" 1 in flight")), "{lines:?}");
    let report = json_report(&out).await;
    assert_eq!(report["overall"]["errors"]["overloaded"], 1, "{report}");
    assert_eq!(report["overall"]["attempts"], 2, "{report}");
}

/// A call never asks for more images than one answer within `--max-response-bytes` can
/// hold at the size sent (each counted as uncompressed RGBA in base64), so an answer is
/// never cut at the cap with paid images in it: 1024x1024 is 5.6 MB that way, so 20 MiB
/// holds three; the 128 MiB default holds three 3840x2160 images.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_asks_for_no_more_images_than_an_answer_may_hold() {
    let sim = sim(fixed(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = counted(dir.path(), &[("s", "five squares", "5")]);
    let o = run(&sim, &manifest, &dir.path().join("a"), &["-c", "1", "--max-response-bytes", "20MiB"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(ns(&sim), vec![3, 2]);

    let sim = common::sim(fixed(Duration::from_millis(5))).await;
    let path = dir.path().join("4k.csv");
    std::fs::write(&path, "id,prompt,size,aspect_ratio,count\nw,five wide views,4K,16:9,5\n").unwrap();
    let o = run(&sim, &path, &dir.path().join("b"), &["-c", "1"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(ns(&sim), vec![3, 2], "3840x2160 x 4 x 4/3 = 44 MB an image");
}
