//! The simulator's Batch APIs, driven over HTTP on 127.0.0.1 as the SDKs drive them
//! (tests/sdk/fixtures.json, `batch.requests`): Gemini's batchGenerateContent jobs (input
//! through the resumable Files API, results downloaded as JSONL) and OpenAI's /v1/batches
//! with its Files API. Each test checks a job's life (create, poll, list with real paging,
//! download, every key once, each image made for its row), or one way it goes wrong
//! (refused lines, failed, stuck and expired, cancelled, killed clients, bad requests,
//! limits), and that a large result streams.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bulkgen::sim::{Fault, FaultSpec, SimConfig, SimServer, prompt_tag, read_tag};
use futures::StreamExt;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const KEY: &str = "sk-batch-5d1e";
const FIXTURES: &str = include_str!("sdk/fixtures.json");
const MODEL: &str = "gemini-3-pro-image";

fn fixtures() -> Value {
    serde_json::from_str(FIXTURES).unwrap()
}

async fn start(cfg: SimConfig) -> SimServer {
    let cfg = SimConfig { api_key: Some(KEY.into()), image_bytes: 600, ..cfg };
    SimServer::start(cfg, "127.0.0.1:0".parse().unwrap()).await.expect("simulator starts")
}

/// A simulator whose jobs take `ms` real milliseconds per simulated minute.
fn scaled(ms_per_minute: f64) -> SimConfig {
    SimConfig { time_scale: ms_per_minute / 60_000.0, ..SimConfig::default() }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn b64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).expect("standard base64")
}

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

/// The error template `name` of `batch.hand_written.errors` with `{var}`s filled.
fn expected(name: &str, vars: &[(&str, &str)]) -> (u16, Value) {
    let f = fixtures();
    let e = &f["batch"]["hand_written"]["errors"][name];
    let mut text = e["body"].to_string();
    for (k, v) in vars {
        let v = serde_json::to_string(v).unwrap();
        text = text.replace(&format!("{{{k}}}"), &v[1..v.len() - 1]);
    }
    (e["status"].as_u64().unwrap() as u16, serde_json::from_str(&text).unwrap())
}

// --- Gemini --------------------------------------------------------------------------

/// Uploads `bytes` through the resumable Files API, as google-genai does; the file's name.
async fn gemini_upload(sim: &SimServer, bytes: &[u8], mime: &str) -> String {
    let start = client()
        .post(format!("{}/upload/v1beta/files", sim.base_url()))
        .header("x-goog-api-key", KEY)
        .header("x-goog-upload-protocol", "resumable")
        .header("x-goog-upload-command", "start")
        .header("x-goog-upload-header-content-length", bytes.len().to_string())
        .header("x-goog-upload-header-content-type", mime)
        .json(&json!({"file": {"display_name": "input.jsonl"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status().as_u16(), 200);
    let url = start.headers()["x-goog-upload-url"].to_str().unwrap().to_owned();
    let resp = client()
        .post(&url)
        .header("x-goog-upload-command", "upload, finalize")
        .header("x-goog-upload-offset", "0")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    body["file"]["name"].as_str().unwrap().to_owned()
}

/// A line as bulkgen sends it online (src/provider/gemini.rs), `parts` before the prompt.
fn gemini_line(key: &str, prompt: &str, size: &str, mut parts: Vec<Value>) -> Value {
    parts.push(json!({"text": prompt}));
    json!({"key": key, "request": {
        "contents": [{"role": "user", "parts": parts}],
        "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"imageSize": size, "aspectRatio": "1:1"}}}})
}

fn jsonl(lines: &[Value]) -> Vec<u8> {
    lines.iter().map(|l| l.to_string() + "\n").collect::<String>().into_bytes()
}

/// `n` rows `g0000`.. with distinct prompts.
fn gemini_rows(n: usize) -> (Vec<Value>, HashMap<String, String>) {
    let prompts: HashMap<String, String> =
        (0..n).map(|i| (format!("g{i:04}"), format!("a lighthouse, study {i}"))).collect();
    let mut keys: Vec<&String> = prompts.keys().collect();
    keys.sort();
    (keys.iter().map(|k| gemini_line(k, &prompts[*k], "1K", vec![])).collect(), prompts)
}

async fn gemini_create(sim: &SimServer, version: &str, file: &str, token: &str) -> (u16, Value) {
    // google-genai's body (fixtures: batch.requests."genai.batches.create").
    let resp = client()
        .post(format!("{}/{version}/models/{MODEL}:batchGenerateContent", sim.base_url()))
        .header("x-goog-api-key", KEY)
        .json(&json!({"batch": {"inputConfig": {"fileName": file}, "displayName": format!("bulkgen-{token}")}}))
        .send()
        .await
        .unwrap();
    json_of(resp).await
}

async fn gemini_get(sim: &SimServer, name: &str) -> Value {
    let resp = client().get(format!("{}/v1beta/{name}", sim.base_url())).header("x-goog-api-key", KEY).send().await;
    let (status, body) = json_of(resp.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The state of a Gemini batch wherever the answer puts it, without its prefix.
fn gemini_state(op: &Value) -> String {
    let s = op["metadata"]["state"].as_str().or(op["state"].as_str()).unwrap_or_else(|| panic!("no state: {op}"));
    s.trim_start_matches("BATCH_STATE_").trim_start_matches("JOB_STATE_").to_owned()
}

/// The responses file wherever the answer names it.
fn gemini_results(op: &Value) -> Option<String> {
    [&op["metadata"]["output"]["responsesFile"], &op["response"]["responsesFile"], &op["dest"]["fileName"]]
        .iter()
        .find_map(|v| v.as_str().map(str::to_owned))
}

async fn gemini_until_done(sim: &SimServer, name: &str) -> Value {
    let t = Instant::now();
    loop {
        let op = gemini_get(sim, name).await;
        if op["done"] == true {
            return op;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "never done: {op}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn download(url: String, headers: &[(&str, &str)]) -> (reqwest::header::HeaderMap, Vec<Value>) {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    assert!(text.ends_with('\n'), "JSONL ends with a newline");
    (headers, text.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
}

async fn gemini_download(sim: &SimServer, file: &str) -> Vec<Value> {
    // Where google-genai asks (fixtures: batch.requests."genai.files.download@v1beta").
    download(format!("{}/v1beta/{file}:download?alt=media", sim.base_url()), &[("x-goog-api-key", KEY)]).await.1
}

/// The final image of a GenerateContentResponse.
fn gemini_image(response: &Value) -> Option<Vec<u8>> {
    let parts = response["candidates"][0]["content"]["parts"].as_array()?;
    let data = parts.iter().rev().find(|p| p["thought"] != true && p["inlineData"].is_object())?;
    Some(b64_decode(data["inlineData"]["data"].as_str().unwrap()))
}

#[tokio::test]
async fn gemini_job_runs_and_its_results_name_every_row_once() {
    let sim = start(SimConfig { line_faults: vec![("REFUSE".into(), Fault::Refuse)], ..scaled(100.0) }).await;
    let reference = bulkgen::sim::png::make(300, 9, "ref=9");
    let ref_file = gemini_upload(&sim, &reference, "image/png").await;
    let (mut lines, mut prompts) = gemini_rows(30);
    // A row with a reference by fileData, one the rules refuse (3 Pro takes no 512), one
    // the line_faults knob refuses.
    let file_part =
        json!({"fileData": {"mimeType": "image/png", "fileUri": format!("{}/v1beta/{ref_file}", sim.base_url())}});
    lines.push(gemini_line("with-ref", "the product on a table", "1K", vec![file_part]));
    lines.push(gemini_line("too-small", "a tiny picture", "512", vec![]));
    lines.push(gemini_line("refused", "REFUSE this one", "1K", vec![]));
    prompts.extend(
        [("with-ref", "the product on a table"), ("too-small", "a tiny picture"), ("refused", "REFUSE this one")]
            .map(|(k, p)| (k.to_owned(), p.to_owned())),
    );
    let input = gemini_upload(&sim, &jsonl(&lines), "application/jsonl").await;

    let (status, op) = gemini_create(&sim, "v1beta", &input, "tok1").await;
    assert_eq!(status, 200, "{op}");
    let name = op["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("batches/"), "{op}");
    let meta = &op["metadata"];
    assert_eq!(meta["@type"], "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch");
    assert_eq!(meta["model"], format!("models/{MODEL}"));
    assert_eq!(meta["displayName"], "bulkgen-tok1");
    assert_eq!(meta["state"], "BATCH_STATE_PENDING", "the first job speaks the REST API's names");
    assert_eq!(meta["batchStats"], json!({"requestCount": "33", "pendingRequestCount": "33"}));
    assert!(op.get("done").is_none());

    let mut seen = HashSet::new();
    let done = loop {
        let op = gemini_get(&sim, &name).await;
        seen.insert(gemini_state(&op));
        if op["done"] == true {
            break op;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(seen.contains("PENDING") && seen.contains("RUNNING"), "{seen:?}");
    assert_eq!(gemini_state(&done), "SUCCEEDED");
    // 30 + with-ref succeed, the refusal is a 200 without an image, too-small is an error.
    assert_eq!(
        done["metadata"]["batchStats"],
        json!({"requestCount": "33", "successfulRequestCount": "32", "failedRequestCount": "1"})
    );
    let file = gemini_results(&done).expect("a responses file");
    assert_eq!(done["metadata"]["output"]["responsesFile"], file.as_str(), "job 0 names it in metadata.output");

    let results = gemini_download(&sim, &file).await;
    assert_eq!(results.len(), 33);
    let keys: Vec<&str> = results.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 33, "every key once");
    let mut in_input = keys.clone();
    in_input.sort();
    assert_ne!(keys, in_input, "results come in a shuffled order");
    for r in &results {
        let key = r["key"].as_str().unwrap();
        match key {
            "too-small" => {
                assert_eq!(r["error"]["code"], 400, "{r}");
                assert_eq!(r["error"]["status"], "INVALID_ARGUMENT");
                assert!(r["error"]["message"].as_str().unwrap().contains("image_size"), "{r}");
            }
            "refused" => {
                let resp = &r["response"];
                assert!(gemini_image(resp).is_none());
                assert!(
                    resp["promptFeedback"]["blockReason"].is_string()
                        || resp["candidates"][0]["finishReason"] == "IMAGE_SAFETY",
                    "{r}"
                );
            }
            _ => {
                let png = gemini_image(&r["response"]).unwrap_or_else(|| panic!("no image for {key}: {r}"));
                let tag = read_tag(&png).unwrap();
                assert_eq!(tag["prompt"], prompt_tag(&prompts[key]), "{key}");
                assert_eq!(tag["key"], key);
                assert_eq!(tag["model"], MODEL);
                let refs = bulkgen::sim::read_refs(&png).0;
                assert_eq!(refs, if key == "with-ref" { vec![sha(&reference)] } else { vec![] }, "{key}");
            }
        }
    }
    // The REST reference's path serves the same bytes.
    let (headers, again) =
        download(format!("{}/download/v1beta/{file}:download?alt=media", sim.base_url()), &[("x-goog-api-key", KEY)])
            .await;
    assert_eq!(headers.get("transfer-encoding").map(|h| h.to_str().unwrap()), Some("chunked"));
    assert_eq!(again, results);

    let stats = sim.stats();
    assert_eq!(stats.batch_creates, 1);
    assert_eq!(stats.batch_jobs.len(), 1);
    let job = &stats.batch_jobs[0];
    assert_eq!((job.name.as_str(), job.dialect.as_str(), job.token.as_str()), (name.as_str(), "gemini", "tok1"));
    assert_eq!((job.lines, job.state.as_str(), job.model.as_str()), (33, "BATCH_STATE_SUCCEEDED", MODEL));
    assert_eq!(stats.result_downloads, 2);
    assert_eq!(stats.faults.get("refuse"), Some(&1));
    for (key, prompt) in &prompts {
        let want = u64::from(!matches!(key.as_str(), "too-small" | "refused"));
        assert_eq!(stats.per_prompt[&prompt_tag(prompt)].successes, want, "{key}: made once, downloads do not count");
    }
}

#[tokio::test]
async fn gemini_answers_vary_the_state_names_and_where_the_results_file_is() {
    // Time scale 0: every job ends as it is made.
    let sim = start(SimConfig { time_scale: 0.0, ..SimConfig::default() }).await;
    let (lines, _) = gemini_rows(2);
    let input = gemini_upload(&sim, &jsonl(&lines), "application/jsonl").await;
    let mut ops = Vec::new();
    for i in 0..4 {
        let (status, op) = gemini_create(&sim, "v1", &input, &format!("t{i}")).await;
        assert_eq!(status, 200, "{op}");
        ops.push(gemini_get(&sim, op["name"].as_str().unwrap()).await);
    }
    let results = |op: &Value| gemini_results(op).unwrap();
    // Job 0: BATCH_STATE_*, metadata.output.
    assert_eq!(ops[0]["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
    assert!(ops[0]["metadata"]["output"]["responsesFile"].is_string());
    // Job 1: JOB_STATE_*, response.responsesFile.
    assert_eq!(ops[1]["metadata"]["state"], "JOB_STATE_SUCCEEDED");
    assert_eq!(
        ops[1]["response"]["@type"],
        "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput"
    );
    assert!(ops[1]["metadata"].get("output").is_none());
    // Job 2: a top-level state and dest.fileName only.
    assert_eq!(ops[2]["state"], "BATCH_STATE_SUCCEEDED");
    assert!(ops[2]["metadata"].get("state").is_none() && ops[2]["metadata"].get("output").is_none());
    assert!(ops[2]["dest"]["fileName"].is_string());
    // Job 3: back to metadata.output, with the SDK's names.
    assert_eq!(ops[3]["metadata"]["state"], "JOB_STATE_SUCCEEDED");
    let files: HashSet<String> = ops.iter().map(results).collect();
    assert_eq!(files.len(), 4, "one file per job");
    for op in &ops {
        assert_eq!(op["done"], true);
        assert_eq!(gemini_download(&sim, &results(op)).await.len(), 2);
        // The SDK's default version, v1, downloads too.
        let (_, v1) =
            download(format!("{}/v1/{}:download?alt=media", sim.base_url(), results(op)), &[("x-goog-api-key", KEY)])
                .await;
        assert_eq!(v1.len(), 2);
    }
}

#[tokio::test]
async fn gemini_list_pages_through_every_job_newest_first() {
    let sim = start(SimConfig { time_scale: 0.0, batch_page_max: Some(2), ..SimConfig::default() }).await;
    let (lines, _) = gemini_rows(1);
    let input = gemini_upload(&sim, &jsonl(&lines), "application/jsonl").await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(gemini_create(&sim, "v1beta", &input, &format!("t{i}")).await.1["name"].as_str().unwrap().to_owned());
    }
    let (mut listed, mut token, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let mut url = format!("{}/v1/batches?pageSize=100", sim.base_url());
        if let Some(t) = &token {
            url.push_str(&format!("&pageToken={t}"));
        }
        let (status, page) = json_of(client().get(url).header("x-goog-api-key", KEY).send().await.unwrap()).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let ops = page["operations"].as_array().unwrap();
        assert!(ops.len() <= 2, "the page cap holds");
        listed.extend(ops.iter().map(|o| o["name"].as_str().unwrap().to_owned()));
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    made.reverse();
    assert_eq!(listed, made, "newest first, each once");
    assert_eq!(sim.stats().batch_lists, 3);
}

#[tokio::test]
async fn gemini_failed_jobs_say_why_and_have_no_results() {
    let sim = start(SimConfig { time_scale: 0.0, fail_jobs: 1, ..SimConfig::default() }).await;
    let (lines, _) = gemini_rows(3);
    let good = gemini_upload(&sim, &jsonl(&lines), "application/jsonl").await;
    // The fail_jobs knob: the first job fails.
    let (_, op) = gemini_create(&sim, "v1beta", &good, "knob").await;
    let op = gemini_get(&sim, op["name"].as_str().unwrap()).await;
    assert_eq!(gemini_state(&op), "FAILED");
    assert_eq!(op["done"], true);
    assert_eq!(op["error"]["code"], 13, "{op}");
    assert!(gemini_results(&op).is_none());
    // A line that is not JSON fails the whole job (job 1, so JOB_STATE_* names).
    let mut bad = jsonl(&lines);
    bad.extend_from_slice(b"{\"key\": \"broken\", \"request\": \n");
    let bad = gemini_upload(&sim, &bad, "application/jsonl").await;
    let (_, op) = gemini_create(&sim, "v1beta", &bad, "bad").await;
    let op = gemini_get(&sim, op["name"].as_str().unwrap()).await;
    assert_eq!(op["metadata"]["state"], "JOB_STATE_FAILED");
    assert_eq!(op["error"]["code"], 3);
    assert!(op["error"]["message"].as_str().unwrap().contains("line 4"), "{op}");
    // So does a line without its key.
    let keyless = gemini_upload(&sim, &jsonl(&[json!({"request": lines[0]["request"]})]), "application/jsonl").await;
    let (_, op) = gemini_create(&sim, "v1beta", &keyless, "keyless").await;
    let op = gemini_get(&sim, op["name"].as_str().unwrap()).await;
    assert!(op["error"]["message"].as_str().unwrap().contains("key"), "{op}");
    let states: Vec<String> = sim.stats().batch_jobs.iter().map(|j| j.state.clone()).collect();
    assert_eq!(states, ["BATCH_STATE_FAILED"; 3]);
}

#[tokio::test]
async fn gemini_stuck_job_stays_pending_then_expires_without_results() {
    // Expiry after 10 simulated hours (1.2 s here), far from the checks below even on a
    // loaded machine (at 1 hour, 120 ms, a busy CI saw the job expire before the check).
    let sim = start(SimConfig { stuck_jobs: 1, batch_expiry: Some(Duration::from_secs(36_000)), ..scaled(2.0) }).await;
    let (lines, _) = gemini_rows(3);
    let input = gemini_upload(&sim, &jsonl(&lines), "application/jsonl").await;
    let name = gemini_create(&sim, "v1beta", &input, "stuck").await.1["name"].as_str().unwrap().to_owned();
    let early = gemini_get(&sim, &name).await;
    assert_eq!(gemini_state(&early), "PENDING");
    // The default pending (2 min) is 4 ms here.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(gemini_state(&gemini_get(&sim, &name).await), "PENDING", "stuck past its pending time");
    let op = gemini_until_done(&sim, &name).await;
    assert_eq!(gemini_state(&op), "EXPIRED");
    assert!(gemini_results(&op).is_none(), "{op}");
    assert!(op.get("error").is_none());
}

#[tokio::test]
async fn gemini_cancel_keeps_the_lines_already_done() {
    let sim = start(scaled(100.0)).await;
    let (lines, _) = gemini_rows(60);
    let input = gemini_upload(&sim, &jsonl(&lines), "application/jsonl").await;
    let name = gemini_create(&sim, "v1beta", &input, "cancel").await.1["name"].as_str().unwrap().to_owned();
    // Running for 500 ms: cancel once some lines are done.
    let t = Instant::now();
    loop {
        let op = gemini_get(&sim, &name).await;
        if op["metadata"]["batchStats"]["successfulRequestCount"].is_string() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{op}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resp = client().post(format!("{}/v1beta/{name}:cancel", sim.base_url())).header("x-goog-api-key", KEY).send();
    let (status, body) = json_of(resp.await.unwrap()).await;
    assert_eq!((status, body), (200, json!({})));
    let op = gemini_get(&sim, &name).await;
    assert_eq!(gemini_state(&op), "CANCELLED");
    assert_eq!(op["done"], true);
    assert_eq!(op["error"]["code"], 1);
    let done: usize = op["metadata"]["batchStats"]["successfulRequestCount"].as_str().unwrap().parse().unwrap();
    assert!(op["metadata"]["batchStats"].get("pendingRequestCount").is_none());
    let results = gemini_download(&sim, &gemini_results(&op).expect("partial results")).await;
    assert_eq!(results.len(), done);
    assert!(done > 0 && done < 60, "{done}");
    // Cancelling again changes nothing.
    let resp = client().post(format!("{}/v1/{name}:cancel", sim.base_url())).header("x-goog-api-key", KEY).send();
    assert_eq!(resp.await.unwrap().status().as_u16(), 200);
    assert_eq!(gemini_get(&sim, &name).await, op);
    assert_eq!(sim.stats().batch_cancels, 2);
}

#[tokio::test]
async fn gemini_job_is_listed_before_its_create_answers() {
    let sim =
        start(SimConfig { time_scale: 0.0, create_latency: Duration::from_millis(400), ..SimConfig::default() }).await;
    let (lines, _) = gemini_rows(2);
    let input = gemini_upload(&sim, &jsonl(&lines), "application/jsonl").await;
    let base = sim.base_url();
    let create = tokio::spawn(async move {
        client()
            .post(format!("{base}/v1beta/models/{MODEL}:batchGenerateContent"))
            .header("x-goog-api-key", KEY)
            .json(&json!({"batch": {"display_name": "bulkgen-orphan", "input_config": {"file_name": input}}}))
            .send()
            .await
            .unwrap()
    });
    let t = Instant::now();
    while sim.stats().batch_jobs.is_empty() {
        assert!(t.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (_, page) = json_of(
        client().get(format!("{}/v1beta/batches", sim.base_url())).header("x-goog-api-key", KEY).send().await.unwrap(),
    )
    .await;
    assert_eq!(page["operations"][0]["metadata"]["displayName"], "bulkgen-orphan", "snake_case read too");
    assert!(!create.is_finished(), "the create has not answered yet");
    create.abort();
    assert_eq!(sim.stats().batch_jobs[0].token, "orphan");
}

#[tokio::test]
async fn gemini_refuses_unknown_models_missing_files_and_too_many_jobs() {
    let sim = start(SimConfig { max_batch_jobs: 2, ..scaled(60_000.0) }).await;
    let (lines, _) = gemini_rows(1);
    let input = gemini_upload(&sim, &jsonl(&lines), "application/jsonl").await;
    let resp = client()
        .post(format!("{}/v1beta/models/gemini-2.5-flash-image:batchGenerateContent", sim.base_url()))
        .header("x-goog-api-key", KEY)
        .json(&json!({"batch": {"displayName": "x", "inputConfig": {"fileName": input}}}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(resp).await;
    let f = fixtures();
    let e = &f["hand_written"]["errors"]["gemini_not_found"];
    let msg = e["body"]["error"]["message"]
        .as_str()
        .unwrap()
        .replace("{model}", "gemini-2.5-flash-image")
        .replace("{version}", "v1beta");
    assert_eq!((status, body["error"]["message"].as_str().unwrap()), (404, msg.as_str()));
    let (status, _) = gemini_create(&sim, "v1beta", "files/nope", "x").await;
    assert_eq!(status, 403);
    // Two jobs pending for a minute each fill the (lowered) limit.
    assert_eq!(gemini_create(&sim, "v1beta", &input, "a").await.0, 200);
    assert_eq!(gemini_create(&sim, "v1beta", &input, "b").await.0, 200);
    let (status, body) = gemini_create(&sim, "v1beta", &input, "c").await;
    assert_eq!((status, body), expected("gemini_batch_quota", &[]));
    let resp = client().get(format!("{}/v1beta/batches/nope", sim.base_url())).header("x-goog-api-key", KEY).send();
    assert_eq!(resp.await.unwrap().status().as_u16(), 404);
    assert_eq!(sim.stats().batch_creates, 2);
}

// --- OpenAI ----------------------------------------------------------------------------

fn bearer() -> String {
    format!("Bearer {KEY}")
}

/// Uploads a file as openai-python does (fixtures: batch.requests."openai.files.create@*").
async fn openai_upload(sim: &SimServer, bytes: Vec<u8>, filename: &str, mime: &str, purpose: &str) -> (u16, Value) {
    let form = Form::new()
        .text("purpose", purpose.to_owned())
        .part("file", Part::bytes(bytes).file_name(filename.to_owned()).mime_str(mime).unwrap());
    let resp = client().post(format!("{}/v1/files", sim.base_url())).header("authorization", bearer()).multipart(form);
    json_of(resp.send().await.unwrap()).await
}

fn openai_line(custom_id: &str, url: &str, body: Value) -> Value {
    json!({"custom_id": custom_id, "method": "POST", "url": url, "body": body})
}

fn generation(prompt: &str) -> Value {
    json!({"model": "gpt-image-2", "prompt": prompt, "size": "1024x1024", "quality": "low"})
}

async fn openai_create(sim: &SimServer, body: Value) -> (u16, Value) {
    let resp = client().post(format!("{}/v1/batches", sim.base_url())).header("authorization", bearer()).json(&body);
    json_of(resp.send().await.unwrap()).await
}

async fn openai_batch_of(sim: &SimServer, file: &str, endpoint: &str, token: &str) -> Value {
    let (status, batch) = openai_create(
        sim,
        json!({"input_file_id": file, "endpoint": endpoint, "completion_window": "24h", "metadata": {"bulkgen_token": token}}),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    batch
}

async fn openai_get(sim: &SimServer, id: &str) -> Value {
    let resp = client().get(format!("{}/v1/batches/{id}", sim.base_url())).header("authorization", bearer()).send();
    let (status, body) = json_of(resp.await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn openai_until(sim: &SimServer, id: &str, ended: &[&str]) -> Value {
    let t = Instant::now();
    loop {
        let b = openai_get(sim, id).await;
        if ended.contains(&b["status"].as_str().unwrap()) {
            return b;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "never ended: {b}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn openai_content(sim: &SimServer, file: &str) -> Vec<Value> {
    download(format!("{}/v1/files/{file}/content", sim.base_url()), &[("authorization", &bearer())]).await.1
}

fn openai_image(line: &Value) -> Vec<u8> {
    b64_decode(line["response"]["body"]["data"][0]["b64_json"].as_str().unwrap())
}

#[tokio::test]
async fn openai_batch_runs_with_per_line_errors_in_the_error_file() {
    let faults = vec![("FAIL500".into(), Fault::Server), ("REFUSE".into(), Fault::Refuse)];
    let sim = start(SimConfig { line_faults: faults, ..scaled(100.0) }).await;
    let prompts: HashMap<String, String> =
        (0..25).map(|i| (format!("o{i:03}"), format!("a red bicycle, take {i}"))).collect();
    let mut lines: Vec<Value> =
        prompts.iter().map(|(k, p)| openai_line(k, "/v1/images/generations", generation(p))).collect();
    let mut refused = generation("a refused body");
    refused["response_format"] = json!("url");
    lines.push(openai_line("bad-param", "/v1/images/generations", refused));
    lines.push(openai_line("server", "/v1/images/generations", generation("FAIL500 please")));
    lines.push(openai_line("policy", "/v1/images/generations", generation("REFUSE this")));
    let (status, file) = openai_upload(&sim, jsonl(&lines), "batch.jsonl", "application/octet-stream", "batch").await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["object"], "file");
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["status"], "processed");
    assert_eq!(file["filename"], "batch.jsonl");
    assert_eq!(file["bytes"], jsonl(&lines).len());
    let file_id = file["id"].as_str().unwrap();
    assert!(file_id.starts_with("file-"));

    let batch = openai_batch_of(&sim, file_id, "/v1/images/generations", "tokA").await;
    assert_eq!(batch["object"], "batch");
    assert_eq!(batch["status"], "validating");
    assert_eq!(batch["metadata"], json!({"bulkgen_token": "tokA"}));
    assert_eq!(batch["request_counts"], json!({"total": 0, "completed": 0, "failed": 0}));
    assert!(batch["expires_at"].as_u64().unwrap() > batch["created_at"].as_u64().unwrap());
    let id = batch["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("batch_"));

    let mut seen = HashSet::new();
    let done = loop {
        let b = openai_get(&sim, &id).await;
        seen.insert(b["status"].as_str().unwrap().to_owned());
        if b["status"] == "completed" {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert!(seen.contains("validating") && seen.contains("in_progress"), "{seen:?}");
    assert_eq!(done["request_counts"], json!({"total": 28, "completed": 25, "failed": 3}));
    for field in ["in_progress_at", "finalizing_at", "completed_at"] {
        assert!(done[field].is_u64(), "{field}: {done}");
    }
    let output = openai_content(&sim, done["output_file_id"].as_str().unwrap()).await;
    let errors = openai_content(&sim, done["error_file_id"].as_str().unwrap()).await;
    assert_eq!((output.len(), errors.len()), (25, 3));
    let mut ids = HashSet::new();
    for line in &output {
        let key = line["custom_id"].as_str().unwrap();
        assert!(ids.insert(key.to_owned()), "{key} twice");
        assert_eq!(line["error"], Value::Null);
        assert_eq!(line["response"]["status_code"], 200);
        assert!(line["id"].as_str().unwrap().starts_with("batch_req_"));
        assert!(line["response"]["request_id"].is_string());
        let tag = read_tag(&openai_image(line)).unwrap();
        assert_eq!(tag["prompt"], prompt_tag(&prompts[key]), "{key}");
        assert_eq!(tag["size"], "1024x1024");
    }
    let by_key: HashMap<&str, &Value> = errors.iter().map(|l| (l["custom_id"].as_str().unwrap(), l)).collect();
    let param = &by_key["bad-param"]["response"];
    assert_eq!(param["status_code"], 400);
    assert_eq!(param["body"]["error"]["code"], "unknown_parameter");
    assert_eq!(by_key["server"]["response"]["status_code"], 500);
    assert_eq!(by_key["server"]["response"]["body"]["error"]["type"], "server_error");
    assert_eq!(by_key["policy"]["response"]["status_code"], 400);
    assert_eq!(by_key["policy"]["response"]["body"]["error"]["code"], "content_policy_violation");

    // The output file is a FileObject too.
    let resp = client().get(format!("{}/v1/files/{}", sim.base_url(), done["output_file_id"].as_str().unwrap()));
    let (status, meta) = json_of(resp.header("authorization", bearer()).send().await.unwrap()).await;
    assert_eq!((status, &meta["purpose"]), (200, &json!("batch_output")));
    let bytes: usize = output.iter().map(|l| l.to_string().len() + 1).sum();
    assert!(meta["bytes"].as_u64().unwrap() as usize >= bytes / 2, "{meta}");
    // An uploaded input is not handed back.
    let resp = client().get(format!("{}/v1/files/{file_id}/content", sim.base_url())).header("authorization", bearer());
    assert_eq!(resp.send().await.unwrap().status().as_u16(), 400);

    let stats = sim.stats();
    assert_eq!(stats.file_uploads_openai, 1);
    let job = &stats.batch_jobs[0];
    assert_eq!((job.dialect.as_str(), job.token.as_str(), job.state.as_str()), ("openai", "tokA", "completed"));
    assert_eq!((job.model.as_str(), job.endpoint.as_deref()), ("gpt-image-2", Some("/v1/images/generations")));
    assert_eq!(stats.faults.get("500"), Some(&1));
    assert_eq!(stats.per_model.get("gpt-image-2"), Some(&25));
}

#[tokio::test]
async fn openai_edit_batches_name_their_references_by_file_id() {
    let sim = start(SimConfig { time_scale: 0.0, ..SimConfig::default() }).await;
    let image = bulkgen::sim::png::make(400, 3, "ref=3");
    let mask = bulkgen::sim::png::make(200, 4, "mask=4");
    let (_, img) = openai_upload(&sim, image.clone(), "ref.png", "image/png", "vision").await;
    let (_, msk) = openai_upload(&sim, mask.clone(), "mask.png", "image/png", "vision").await;
    assert_eq!(img["purpose"], "vision");
    assert_eq!(img["expires_at"], Value::Null);
    let body = json!({"model": "gpt-image-2", "prompt": "the product on a beach", "size": "1024x1024",
        "images": [{"file_id": img["id"]}], "mask": {"file_id": msk["id"]}});
    let mut no_file = body.clone();
    no_file["images"] = json!([{"file_id": "file-missing"}]);
    let lines = [openai_line("edit-1", "/v1/images/edits", body), openai_line("edit-2", "/v1/images/edits", no_file)];
    let (_, file) = openai_upload(&sim, jsonl(&lines), "edits.jsonl", "application/jsonl", "batch").await;
    let batch = openai_batch_of(&sim, file["id"].as_str().unwrap(), "/v1/images/edits", "e").await;
    assert_eq!(batch["status"], "completed", "time scale 0: done at once");
    let output = openai_content(&sim, batch["output_file_id"].as_str().unwrap()).await;
    assert_eq!(output.len(), 1);
    let (refs, mask_hash) = bulkgen::sim::read_refs(&openai_image(&output[0]));
    assert_eq!((refs, mask_hash), (vec![sha(&image)], Some(sha(&mask))));
    let errors = openai_content(&sim, batch["error_file_id"].as_str().unwrap()).await;
    assert_eq!(errors[0]["custom_id"], "edit-2");
    assert_eq!(errors[0]["response"]["status_code"], 404);
}

#[tokio::test]
async fn openai_refuses_bad_batch_requests_as_the_sdk_types_say() {
    let sim = start(SimConfig { time_scale: 0.0, batch_max_bytes: Some(2000), ..SimConfig::default() }).await;
    let lines = [openai_line("a", "/v1/images/generations", generation("p"))];
    let (_, file) = openai_upload(&sim, jsonl(&lines), "batch.jsonl", "application/jsonl", "batch").await;
    let id = file["id"].as_str().unwrap();
    let create = |body: Value| openai_create(&sim, body);
    let ok = json!({"input_file_id": id, "endpoint": "/v1/images/generations", "completion_window": "24h"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let f = fixtures();
    let limits = &f["batch"]["openai"]["metadata"];
    let (pairs, key_max, value_max) = (
        limits["max_pairs"].as_u64().unwrap(),
        limits["max_key_chars"].as_u64().unwrap(),
        limits["max_value_chars"].as_u64().unwrap(),
    );
    assert_eq!((pairs, key_max, value_max), (16, 64, 512));
    let many: serde_json::Map<String, Value> = (0..=pairs).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (status, body) = create(with("metadata", Value::Object(many))).await;
    assert_eq!((status, body), expected("openai_metadata_too_many", &[("max", "16"), ("got", "17")]));
    let long_key = "k".repeat(key_max as usize + 1);
    let (status, body) = create(with("metadata", json!({long_key: "v"}))).await;
    assert_eq!((status, body), expected("openai_metadata_too_long", &[("path", ""), ("got", "65"), ("max", "64")]));
    let (status, body) = create(with("metadata", json!({"k": "v".repeat(value_max as usize + 1)}))).await;
    assert_eq!((status, body), expected("openai_metadata_too_long", &[("path", ".k"), ("got", "513"), ("max", "512")]));
    // Endpoints and windows: the SDK's literals.
    let (status, body) = create(with("endpoint", json!("/v1/images/variations"))).await;
    assert_eq!(
        (status, &body["error"]["param"], &body["error"]["code"]),
        (400, &json!("endpoint"), &json!("invalid_value"))
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("'/v1/images/edits'"), "{body}");
    let (status, body) = create(with("completion_window", json!("48h"))).await;
    assert_eq!((status, &body["error"]["param"]), (400, &json!("completion_window")));
    let (status, body) = create(with("input_file_id", json!("file-nope"))).await;
    assert_eq!((status, body), expected("openai_no_such_file", &[("id", "file-nope"), ("param", "input_file_id")]));
    let mut missing = ok.clone();
    missing.as_object_mut().unwrap().remove("endpoint");
    assert_eq!(create(missing).await.0, 400);
    // Uploads: over the (lowered) 200 MB, not .jsonl, an unknown purpose.
    let big: Vec<Value> =
        (0..40).map(|i| openai_line(&format!("r{i}"), "/v1/images/generations", generation("p"))).collect();
    let (status, body) = openai_upload(&sim, jsonl(&big), "big.jsonl", "application/jsonl", "batch").await;
    assert_eq!((status, body), expected("openai_file_too_large", &[]));
    let (status, body) = openai_upload(&sim, jsonl(&lines), "batch.txt", "text/plain", "batch").await;
    assert_eq!((status, body), expected("openai_batch_not_jsonl", &[]));
    let (status, body) = openai_upload(&sim, jsonl(&lines), "batch.jsonl", "text/plain", "batches").await;
    assert_eq!((status, &body["error"]["param"]), (400, &json!("purpose")));
    // A wrong key.
    let resp = client().get(format!("{}/v1/batches", sim.base_url())).header("authorization", "Bearer nope").send();
    assert_eq!(resp.await.unwrap().status().as_u16(), 401);
    assert_eq!(sim.stats().batch_creates, 0);
}

#[tokio::test]
async fn openai_bad_input_files_fail_the_batch_at_validation() {
    let sim = start(SimConfig { time_scale: 0.0, batch_max_lines: Some(3), ..SimConfig::default() }).await;
    let endpoint = "/v1/images/generations";
    let mut text = String::new();
    text.push_str(&openai_line("a", endpoint, generation("p")).to_string());
    text.push_str("\nnot json at all\n");
    text.push_str(&(openai_line("a", endpoint, generation("q")).to_string() + "\n"));
    let (_, f1) = openai_upload(&sim, text.into_bytes(), "b1.jsonl", "application/jsonl", "batch").await;
    let batch = openai_batch_of(&sim, f1["id"].as_str().unwrap(), endpoint, "v").await;
    assert_eq!(batch["status"], "failed");
    assert!(batch["failed_at"].is_u64());
    let data = batch["errors"]["data"].as_array().unwrap();
    let got: Vec<(&str, u64)> =
        data.iter().map(|e| (e["code"].as_str().unwrap(), e["line"].as_u64().unwrap())).collect();
    assert_eq!(got, [("invalid_json_line", 2), ("duplicate_custom_id", 3)]);
    assert_eq!(data[0]["message"], "This line is not parseable as valid JSON.");
    assert_eq!(batch["output_file_id"], Value::Null);
    // A line for another endpoint; a second model.
    let mut other = generation("r");
    other["model"] = json!("gpt-image-1.5");
    let lines = [openai_line("a", "/v1/images/edits", generation("p")), openai_line("b", endpoint, other)];
    let (_, f2) = openai_upload(&sim, jsonl(&lines), "b2.jsonl", "application/jsonl", "batch").await;
    let batch = openai_batch_of(&sim, f2["id"].as_str().unwrap(), endpoint, "v").await;
    let codes: Vec<&str> =
        batch["errors"]["data"].as_array().unwrap().iter().map(|e| e["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["url_mismatch", "model_mismatch"]);
    // Over the (lowered) 50,000 requests.
    let four: Vec<Value> = (0..4).map(|i| openai_line(&format!("r{i}"), endpoint, generation("p"))).collect();
    let (_, f3) = openai_upload(&sim, jsonl(&four), "b3.jsonl", "application/jsonl", "batch").await;
    let batch = openai_batch_of(&sim, f3["id"].as_str().unwrap(), endpoint, "v").await;
    assert_eq!(batch["errors"]["data"][0]["code"], "too_many_tasks");
    assert_eq!(sim.stats().batch_creates, 3, "bad files still make batches");
}

#[tokio::test]
async fn openai_stuck_batch_expires_with_every_request_in_the_error_file() {
    // Expiry after 10 simulated hours (1.2 s here), far from the checks below even on a
    // loaded machine (at 1 hour, 120 ms, a busy CI saw the job expire before the check).
    let sim = start(SimConfig { stuck_jobs: 1, batch_expiry: Some(Duration::from_secs(36_000)), ..scaled(2.0) }).await;
    let lines: Vec<Value> =
        (0..4).map(|i| openai_line(&format!("r{i}"), "/v1/images/generations", generation("p"))).collect();
    let (_, file) = openai_upload(&sim, jsonl(&lines), "b.jsonl", "application/jsonl", "batch").await;
    let id = openai_batch_of(&sim, file["id"].as_str().unwrap(), "/v1/images/generations", "s").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(openai_get(&sim, &id).await["status"], "validating", "stuck past its validation time");
    let b = openai_until(&sim, &id, &["expired"]).await;
    assert!(b["expired_at"].is_u64());
    assert_eq!(b["output_file_id"], Value::Null);
    let errors = openai_content(&sim, b["error_file_id"].as_str().unwrap()).await;
    assert_eq!(errors.len(), 4);
    let f = fixtures();
    for e in &errors {
        assert_eq!(e["response"], Value::Null);
        assert_eq!(e["error"], f["batch"]["hand_written"]["openai_expired_line_error"]);
    }
}

#[tokio::test]
async fn openai_cancel_goes_through_cancelling_and_keeps_finished_lines() {
    let sim = start(SimConfig { batch_cancelling: Duration::from_secs(60), ..scaled(100.0) }).await;
    let lines: Vec<Value> = (0..60)
        .map(|i| openai_line(&format!("r{i}"), "/v1/images/generations", generation(&format!("p{i}"))))
        .collect();
    let (_, file) = openai_upload(&sim, jsonl(&lines), "b.jsonl", "application/jsonl", "batch").await;
    let id = openai_batch_of(&sim, file["id"].as_str().unwrap(), "/v1/images/generations", "c").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = Instant::now();
    while openai_get(&sim, &id).await["request_counts"]["completed"] == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resp =
        client().post(format!("{}/v1/batches/{id}/cancel", sim.base_url())).header("authorization", bearer()).send();
    let (status, b) = json_of(resp.await.unwrap()).await;
    assert_eq!((status, &b["status"]), (200, &json!("cancelling")), "{b}");
    assert!(b["cancelling_at"].is_u64());
    let b = openai_until(&sim, &id, &["cancelled"]).await;
    let done = b["request_counts"]["completed"].as_u64().unwrap() as usize;
    assert!(done > 0 && done < 60, "{b}");
    let output = openai_content(&sim, b["output_file_id"].as_str().unwrap()).await;
    let errors = openai_content(&sim, b["error_file_id"].as_str().unwrap()).await;
    assert_eq!((output.len(), errors.len()), (done, 60 - done));
    assert!(errors.iter().all(|e| e["error"]["code"] == "batch_cancelled"));
    let all: HashSet<&str> = output.iter().chain(&errors).map(|l| l["custom_id"].as_str().unwrap()).collect();
    assert_eq!(all.len(), 60);
    // A cancelled batch cannot be cancelled into anything else; an ended one refuses.
    let resp =
        client().post(format!("{}/v1/batches/{id}/cancel", sim.base_url())).header("authorization", bearer()).send();
    assert_eq!(json_of(resp.await.unwrap()).await.1["status"], "cancelled");
}

#[tokio::test]
async fn openai_list_pages_with_limit_and_after_and_fails_jobs_on_request() {
    let sim = start(SimConfig { time_scale: 0.0, fail_jobs: 1, batch_page_max: Some(2), ..SimConfig::default() }).await;
    let lines = [openai_line("a", "/v1/images/generations", generation("p"))];
    let (_, file) = openai_upload(&sim, jsonl(&lines), "b.jsonl", "application/jsonl", "batch").await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(
            openai_batch_of(&sim, file["id"].as_str().unwrap(), "/v1/images/generations", &format!("t{i}")).await,
        );
    }
    assert_eq!(made[0]["status"], "failed", "fail_jobs: the first fails");
    assert_eq!(made[0]["errors"]["data"][0]["code"], "batch_failed");
    assert_eq!(made[1]["status"], "completed");
    let (mut listed, mut after) = (Vec::new(), None::<String>);
    loop {
        let mut url = format!("{}/v1/batches?limit=100", sim.base_url());
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let (status, page) = json_of(client().get(url).header("authorization", bearer()).send().await.unwrap()).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["object"], "list");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        assert_eq!(page["first_id"], data[0]["id"]);
        assert_eq!(page["last_id"], data[data.len() - 1]["id"]);
        listed.extend(data.iter().map(|b| b["metadata"]["bulkgen_token"].as_str().unwrap().to_owned()));
        if page["has_more"] == false {
            break;
        }
        after = page["last_id"].as_str().map(str::to_owned);
    }
    assert_eq!(listed, ["t4", "t3", "t2", "t1", "t0"]);
    let resp =
        client().get(format!("{}/v1/batches?limit=101", sim.base_url())).header("authorization", bearer()).send();
    assert_eq!(resp.await.unwrap().status().as_u16(), 400);
    // Ended batches refuse a cancel.
    let id = made[1]["id"].as_str().unwrap();
    let resp =
        client().post(format!("{}/v1/batches/{id}/cancel", sim.base_url())).header("authorization", bearer()).send();
    let (status, body) = json_of(resp.await.unwrap()).await;
    assert_eq!((status, body), expected("openai_cannot_cancel", &[("status", "completed")]));
}

#[tokio::test]
async fn openai_batch_is_listed_before_its_create_answers() {
    let sim =
        start(SimConfig { time_scale: 0.0, create_latency: Duration::from_millis(400), ..SimConfig::default() }).await;
    let lines = [openai_line("a", "/v1/images/generations", generation("p"))];
    let (_, file) = openai_upload(&sim, jsonl(&lines), "b.jsonl", "application/jsonl", "batch").await;
    let (base, file_id) = (sim.base_url(), file["id"].as_str().unwrap().to_owned());
    let create = tokio::spawn(async move {
        client()
            .post(format!("{base}/v1/batches"))
            .header("authorization", bearer())
            .json(&json!({"input_file_id": file_id, "endpoint": "/v1/images/generations", "completion_window": "24h", "metadata": {"bulkgen_token": "orphan"}}))
            .send()
            .await
    });
    let t = Instant::now();
    while sim.stats().batch_jobs.is_empty() {
        assert!(t.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (_, page) = json_of(
        client().get(format!("{}/v1/batches", sim.base_url())).header("authorization", bearer()).send().await.unwrap(),
    )
    .await;
    assert_eq!(page["data"][0]["metadata"]["bulkgen_token"], "orphan");
    assert!(!create.is_finished());
    create.abort();
}

#[tokio::test]
async fn random_faults_hit_batch_lines_with_the_seed() {
    let cfg = || SimConfig {
        time_scale: 0.0,
        faults: vec![FaultSpec::new(Fault::Overloaded, 0.3)],
        seed: 11,
        ..SimConfig::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let sim = start(cfg()).await;
        let lines: Vec<Value> = (0..40)
            .map(|i| openai_line(&format!("r{i}"), "/v1/images/generations", generation(&format!("p{i}"))))
            .collect();
        let (_, file) = openai_upload(&sim, jsonl(&lines), "b.jsonl", "application/jsonl", "batch").await;
        let b = openai_batch_of(&sim, file["id"].as_str().unwrap(), "/v1/images/generations", "f").await;
        let errors = openai_content(&sim, b["error_file_id"].as_str().unwrap()).await;
        assert!(errors.iter().all(|e| e["response"]["status_code"] == 503));
        let mut failed: Vec<String> = errors.iter().map(|e| e["custom_id"].as_str().unwrap().to_owned()).collect();
        failed.sort();
        assert_eq!(sim.stats().faults.get("503").copied(), Some(failed.len() as u64));
        runs.push(failed);
    }
    assert!(!runs[0].is_empty() && runs[0].len() < 40, "{:?}", runs[0]);
    assert_eq!(runs[0], runs[1], "the same seed, the same lines");
}

#[tokio::test]
async fn result_lines_come_one_at_a_time_so_a_client_can_die_mid_download() {
    let sim =
        start(SimConfig { time_scale: 0.0, result_latency: Duration::from_millis(150), ..SimConfig::default() }).await;
    let (lines, _) = gemini_rows(6);
    let input = gemini_upload(&sim, &jsonl(&lines), "application/jsonl").await;
    let op = gemini_get(&sim, gemini_create(&sim, "v1beta", &input, "slow").await.1["name"].as_str().unwrap()).await;
    let file = gemini_results(&op).unwrap();
    let resp = client()
        .get(format!("{}/v1beta/{file}:download?alt=media", sim.base_url()))
        .header("x-goog-api-key", KEY)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let line: Value = serde_json::from_slice(&first).expect("a chunk is a whole line");
    assert!(line["key"].is_string());
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = sim.stats();
    assert_eq!(stats.result_downloads, 1);
    assert!(stats.result_bytes < 3 * first.len() as u64, "the rest was never made: {} bytes", stats.result_bytes);
}

/// Resident memory of this process, in bytes (Linux).
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

#[tokio::test]
async fn large_results_stream_without_being_built_in_memory() {
    // 1,500 lines of 60 KB images: about 120 MB of JSONL (a debug build makes about
    // 50 MB/s of them; the benchmark makes gigabytes with a release build).
    let sim = SimServer::start(
        SimConfig { api_key: Some(KEY.into()), time_scale: 0.0, image_bytes: 60_000, ..SimConfig::default() },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let n = 1_500;
    let lines: Vec<Value> = (0..n).map(|i| gemini_line(&format!("k{i}"), &format!("wave {i}"), "1K", vec![])).collect();
    let input = gemini_upload(&sim, &jsonl(&lines), "application/jsonl").await;
    let op = gemini_get(&sim, gemini_create(&sim, "v1beta", &input, "big").await.1["name"].as_str().unwrap()).await;
    let file = gemini_results(&op).unwrap();
    let before = rss();
    let resp = client()
        .get(format!("{}/v1beta/{file}:download?alt=media", sim.base_url()))
        .header("x-goog-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers().get("transfer-encoding").map(|h| h.to_str().unwrap()), Some("chunked"));
    assert!(resp.headers().get("content-length").is_none());
    let (mut bytes, mut newlines, mut peak, mut sample_at) = (0u64, 0usize, before.unwrap_or(0), 0u64);
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len() as u64;
        // std's line splitting (built optimized, unlike this test) finds the newlines.
        newlines += std::io::BufRead::split(&chunk[..], b'\n').count() - usize::from(chunk.last() != Some(&b'\n'));
        if bytes >= sample_at {
            peak = peak.max(rss().unwrap_or(0));
            sample_at += 4 << 20;
        }
    }
    assert_eq!(newlines, n);
    assert!(bytes > 100_000_000, "{bytes}");
    let stats = sim.stats();
    assert_eq!(stats.result_bytes, bytes);
    assert_eq!(stats.result_downloads, 1);
    if let Some(before) = before {
        // Made line by line: memory grows by a few lines' worth, never by the file. The
        // bound is half the file, not a quarter: the other tests of this binary run in
        // the same process at the same time, and a loaded machine saw them add 30 MB.
        assert!(peak.saturating_sub(before) < bytes / 2, "resident memory grew {} MB", (peak - before) >> 20);
    }
}
