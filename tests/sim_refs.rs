//! Reference images in the simulator, driven over HTTP on 127.0.0.1: the Gemini Files API
//! (resumable upload as google-genai sends it, get, expiry, forgetting), `inlineData` and
//! `fileData` parts in `generateContent`, and OpenAI's multipart `/v1/images/edits`.
//! Every image handed out names the hashes of the references it was made from; every
//! refusal is the real status and body from tests/sdk/fixtures.json.

use std::time::Duration;

use base64::Engine;
use bulkgen::sim::{SimConfig, SimServer, read_refs};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const KEY: &str = "sk-refs-8c2f";
const FIXTURES: &str = include_str!("sdk/fixtures.json");

async fn start(cfg: SimConfig) -> SimServer {
    let cfg = SimConfig { api_key: Some(KEY.into()), time_scale: 0.0, image_bytes: 512, ..cfg };
    SimServer::start(cfg, "127.0.0.1:0".parse().unwrap()).await.expect("simulator starts")
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn fixtures() -> Value {
    serde_json::from_str(FIXTURES).unwrap()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn png(seed: u64) -> Vec<u8> {
    bulkgen::sim::png::make(300, seed, &format!("ref={seed}"))
}

fn jpeg(seed: u8) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0];
    j.extend(std::iter::repeat_n(seed, 64));
    j.extend([0xFF, 0xD9]);
    j
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The error template `name` of the fixtures with `{var}`s filled, as the simulator must
/// send it.
fn expected(name: &str, vars: &[(&str, &str)]) -> (u16, Value) {
    let f = fixtures();
    let e = &f["hand_written"]["errors"][name];
    let mut text = e["body"].to_string();
    for (k, v) in vars {
        let v = serde_json::to_string(v).unwrap();
        text = text.replace(&format!("{{{k}}}"), &v[1..v.len() - 1]);
    }
    (e["status"].as_u64().unwrap() as u16, serde_json::from_str(&text).unwrap())
}

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

/// Uploads `bytes` the way google-genai does (tests/sdk/fixtures.json,
/// requests."genai.files.upload@v1beta"): a start with the key and the X-Goog-Upload-*
/// headers, then the bytes to the returned URL (no key) in chunks of `chunk` bytes.
async fn upload_chunked(sim: &SimServer, bytes: &[u8], mime: &str, chunk: usize) -> Value {
    let start = client()
        .post(format!("{}/upload/v1beta/files", sim.base_url()))
        .header("x-goog-api-key", KEY)
        .header("content-type", "application/json")
        .header("x-goog-upload-protocol", "resumable")
        .header("x-goog-upload-command", "start")
        .header("x-goog-upload-header-content-length", bytes.len().to_string())
        .header("x-goog-upload-header-content-type", mime)
        .json(&json!({"file": {"display_name": "ref", "mime_type": mime, "size_bytes": bytes.len()}}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status().as_u16(), 200);
    assert_eq!(start.headers()["x-goog-upload-status"], "active");
    let url = start.headers()["x-goog-upload-url"].to_str().unwrap().to_owned();
    assert!(url.starts_with(&sim.base_url()), "{url}");
    let pieces: Vec<&[u8]> = bytes.chunks(chunk.max(1)).collect();
    let mut offset = 0;
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let resp = client()
            .post(&url)
            .header("x-goog-upload-command", if last { "upload, finalize" } else { "upload" })
            .header("x-goog-upload-offset", offset.to_string())
            .body(piece.to_vec())
            .send()
            .await
            .unwrap();
        offset += piece.len();
        if !last {
            assert_eq!(resp.headers()["x-goog-upload-status"], "active");
            continue;
        }
        assert_eq!(resp.headers()["x-goog-upload-status"], "final");
        let (status, body) = json_of(resp).await;
        assert_eq!(status, 200, "{body}");
        return body["file"].clone();
    }
    unreachable!("no bytes")
}

async fn upload(sim: &SimServer, bytes: &[u8], mime: &str) -> Value {
    upload_chunked(sim, bytes, mime, bytes.len()).await
}

fn gemini_body(parts: Vec<Value>) -> Value {
    json!({"contents": [{"role": "user", "parts": parts}],
           "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"imageSize": "1K"}}})
}

async fn generate(sim: &SimServer, model: &str, body: &Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{}/v1beta/models/{model}:generateContent", sim.base_url()))
        .header("x-goog-api-key", KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    json_of(resp).await
}

/// The last non-thought image of a Gemini answer.
fn gemini_image(body: &Value) -> Vec<u8> {
    let parts = body["candidates"][0]["content"]["parts"].as_array().unwrap();
    let data = parts
        .iter()
        .rev()
        .find(|p| p["inlineData"].is_object() && p["thought"].is_null())
        .and_then(|p| p["inlineData"]["data"].as_str())
        .unwrap();
    base64::engine::general_purpose::STANDARD.decode(data).unwrap()
}

fn file_part(file: &Value) -> Value {
    json!({"fileData": {"fileUri": file["uri"], "mimeType": file["mimeType"]}})
}

/// Every string in `v` (recursively).
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn an_uploaded_file_and_an_inline_image_are_named_in_the_image() {
    let sim = start(SimConfig::default()).await;
    let (reference, inline) = (png(1), jpeg(7));
    let file = upload(&sim, &reference, "image/png").await;
    assert_eq!(file["name"], "files/sim-1");
    assert_eq!(file["sizeBytes"], reference.len().to_string());
    assert_eq!(file["mimeType"], "image/png");
    assert_eq!(file["state"], "ACTIVE");
    assert_eq!(file["source"], "UPLOADED");
    assert_eq!(file["displayName"], "ref");
    assert_eq!(file["sha256Hash"], b64(&Sha256::digest(&reference)), "base64, as the SDK documents it");
    assert_eq!(file["uri"], format!("{}/v1beta/files/sim-1", sim.base_url()));
    assert!(file["expirationTime"].as_str().unwrap().ends_with('Z'));

    let got = client()
        .get(format!("{}/v1beta/files/sim-1", sim.base_url()))
        .header("x-goog-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(got).await, (200, file.clone()));

    let body = gemini_body(vec![
        json!({"inlineData": {"mimeType": "image/jpeg", "data": b64(&inline)}}),
        file_part(&file),
        json!({"text": "a product shot"}),
    ]);
    let (status, answer) = generate(&sim, "gemini-3-pro-image", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(read_refs(&gemini_image(&answer)), (vec![sha(&inline), sha(&reference)], None));

    let st = sim.stats();
    assert_eq!((st.upload_starts, st.uploads, st.upload_bytes), (1, 1, reference.len() as u64));
    assert_eq!((st.file_gets, st.files_gone, st.references), (1, 0, 2));
    assert_eq!(st.file_uses["files/sim-1"], 1);
    // The kept body holds the inline image's summary, not its base64.
    let (path, kept) = st.bodies.last().unwrap();
    assert_eq!(path, "/v1beta/models/gemini-3-pro-image:generateContent");
    assert_eq!(
        kept["contents"][0]["parts"][0]["inlineData"]["data"],
        json!({"sha256": sha(&inline), "len": inline.len()})
    );
    let mut all = Vec::new();
    strings(kept, &mut all);
    assert!(all.iter().all(|s| !s.contains(&b64(&inline)[..40])), "{kept}");
}

#[tokio::test]
async fn requests_shaped_like_the_sdks_are_accepted() {
    // The recorded google-genai requests (fixtures: upload, then generate_content with an
    // inline part in URL-safe base64 and the SDK's snake_case keys inside the parts).
    let f = fixtures();
    let sim = start(SimConfig::default()).await;
    let recorded = &f["requests"]["genai.files.upload@v1beta"]["requests"];
    let start_req = &recorded[0];
    let mut req = client().post(format!("{}{}", sim.base_url(), start_req["path"].as_str().unwrap()));
    for (k, v) in start_req["headers"].as_object().unwrap() {
        if !["content-length", "x-goog-upload-header-content-length"].contains(&k.as_str()) {
            req = req.header(k, v.as_str().unwrap());
        }
    }
    let bytes = png(9);
    let req = req
        .header("x-goog-upload-header-content-length", bytes.len().to_string())
        .header("x-goog-api-key", KEY)
        .json(&start_req["json"]);
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let url = resp.headers()["x-goog-upload-url"].to_str().unwrap().to_owned();
    // The SDK sends the bytes with the start's headers again and no key.
    let mut put = client().post(&url);
    for (k, v) in recorded[1]["headers"].as_object().unwrap() {
        if !["content-length", "x-goog-upload-header-content-length"].contains(&k.as_str()) {
            put = put.header(k, v.as_str().unwrap());
        }
    }
    let (status, file) = json_of(put.body(bytes.clone()).send().await.unwrap()).await;
    assert_eq!(status, 200, "{file}");

    let mut body = f["requests"]["genai.models.generate_content@refs@v1beta"]["requests"][0]["json"].clone();
    let parts = body["contents"][0]["parts"].as_array_mut().unwrap();
    parts[1]["fileData"]["file_uri"] = file["file"]["uri"].clone();
    parts[1]["fileData"]["mime_type"] = "image/png".into();
    let inline = parts[0]["inlineData"]["data"].as_str().unwrap().to_owned();
    assert!(inline.contains(['-', '_']), "the recording is URL-safe base64");
    let inline = base64::engine::general_purpose::URL_SAFE.decode(&inline).unwrap();
    let (status, answer) = generate(&sim, "gemini-3-pro-image", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(read_refs(&gemini_image(&answer)).0, vec![sha(&inline), sha(&bytes)]);

    // The edit as openai-python sends it: image[] parts, then mask.
    let rec = &f["requests"]["openai.images.edit"]["requests"][0]["multipart"];
    let mut form = Form::new();
    let (mut images, mut mask) = (Vec::new(), None);
    for (i, part) in rec.as_array().unwrap().iter().enumerate() {
        let name = part["name"].as_str().unwrap().to_owned();
        form = match part["filename"].as_str() {
            None => form.text(name, part["value"].as_str().unwrap().to_owned()),
            Some(filename) => {
                let ctype = part["content_type"].as_str().unwrap();
                let bytes = if ctype == "image/jpeg" { jpeg(i as u8) } else { png(i as u64) };
                if name == "mask" {
                    mask = Some(sha(&bytes));
                } else {
                    images.push(sha(&bytes));
                }
                form.part(name, Part::bytes(bytes).file_name(filename.to_owned()).mime_str(ctype).unwrap())
            }
        };
    }
    let (status, answer) = edit(&sim, form).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(read_refs(&openai_image(&answer)), (images, mask));
}

#[tokio::test]
async fn a_chunked_upload_hashes_every_chunk() {
    let sim = start(SimConfig::default()).await;
    let bytes = bulkgen::sim::png::make(40_000, 3, "big");
    let file = upload_chunked(&sim, &bytes, "image/png", 7_000).await;
    assert_eq!(file["sha256Hash"], b64(&Sha256::digest(&bytes)));
    assert_eq!(sim.stats().upload_bytes, bytes.len() as u64);
}

#[tokio::test]
async fn an_expired_file_gets_the_real_403() {
    // 60 simulated seconds at time scale 0.001: 60 ms.
    let cfg = SimConfig {
        api_key: Some(KEY.into()),
        time_scale: 0.001,
        fixed_latency: Some(Duration::ZERO),
        image_bytes: 512,
        file_ttl: Duration::from_secs(60),
        ..SimConfig::default()
    };
    let sim = SimServer::start(cfg.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let file = upload(&sim, &png(2), "image/png").await;
    let body = gemini_body(vec![file_part(&file), json!({"text": "p"})]);
    assert_eq!(generate(&sim, "gemini-3-pro-image", &body).await.0, 200);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let gone = expected("gemini_file_gone", &[("id", "sim-1")]);
    assert_eq!(generate(&sim, "gemini-3-pro-image", &body).await, gone);
    assert_eq!(gone.1["error"]["message"], "You do not have permission to access the File sim-1 or it may not exist.");
    let got = client()
        .get(format!("{}/v1beta/files/sim-1", sim.base_url()))
        .header("x-goog-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(got).await, gone);
    assert_eq!(sim.stats().files_gone, 2);
    // A file never uploaded, and one deleted, answer the same.
    let never = gemini_body(vec![
        json!({"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/nope", "mimeType": "image/png"}}),
        json!({"text": "p"}),
    ]);
    assert_eq!(generate(&sim, "gemini-3-pro-image", &never).await, expected("gemini_file_gone", &[("id", "nope")]));
    // A deleted file, on a simulator whose files live the Files API's 48 h (172 s here):
    // with the 60 ms above, a loaded machine saw the file expire before the delete.
    let sim =
        SimServer::start(SimConfig { file_ttl: SimConfig::default().file_ttl, ..cfg }, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let file = upload(&sim, &png(3), "image/png").await;
    let del = client()
        .delete(format!("{}/v1beta/files/sim-1", sim.base_url()))
        .header("x-goog-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status().as_u16(), 200);
    let body = gemini_body(vec![file_part(&file), json!({"text": "p"})]);
    assert_eq!(generate(&sim, "gemini-3-pro-image", &body).await, expected("gemini_file_gone", &[("id", "sim-1")]));
}

#[tokio::test]
async fn forgotten_files_get_403_until_uploaded_again() {
    let sim = start(SimConfig { forget_files_after: Some(2), ..SimConfig::default() }).await;
    let bytes = png(4);
    let file = upload(&sim, &bytes, "image/png").await;
    let body = gemini_body(vec![file_part(&file), json!({"text": "p"})]);
    // An inline-only request does not count.
    let inline =
        gemini_body(vec![json!({"inlineData": {"mimeType": "image/png", "data": b64(&bytes)}}), json!({"text": "q"})]);
    assert_eq!(generate(&sim, "gemini-3-pro-image", &inline).await.0, 200);
    assert_eq!(generate(&sim, "gemini-3-pro-image", &body).await.0, 200);
    assert_eq!(generate(&sim, "gemini-3-pro-image", &body).await.0, 200, "the 2nd still finds its file");
    assert_eq!(generate(&sim, "gemini-3-pro-image", &body).await, expected("gemini_file_gone", &[("id", "sim-1")]));
    let again = upload(&sim, &bytes, "image/png").await;
    assert_eq!(again["name"], "files/sim-2");
    let body = gemini_body(vec![file_part(&again), json!({"text": "p"})]);
    let (status, answer) = generate(&sim, "gemini-3-pro-image", &body).await;
    assert_eq!(status, 200, "forgotten once only");
    assert_eq!(read_refs(&gemini_image(&answer)).0, vec![sha(&bytes)]);
    let st = sim.stats();
    assert_eq!((st.uploads, st.files_gone), (2, 1));
}

#[tokio::test]
async fn gemini_reference_rules_come_from_the_fixtures() {
    let sim = start(SimConfig { max_json_body: 64 * 1024, ..SimConfig::default() }).await;
    let part = |mime: &str, bytes: &[u8]| json!({"inlineData": {"mimeType": mime, "data": b64(bytes)}});
    let max = fixtures()["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "gemini-3-pro-image")
        .unwrap()["max_reference_images"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(max, 14);
    let mut parts: Vec<Value> = (0..max).map(|i| part("image/png", &png(i as u64))).collect();
    parts.push(json!({"text": "p"}));
    assert_eq!(generate(&sim, "gemini-3-pro-image", &gemini_body(parts.clone())).await.0, 200);
    parts.insert(0, part("image/png", &png(99)));
    assert_eq!(
        generate(&sim, "gemini-3-pro-image", &gemini_body(parts)).await,
        expected("gemini_too_many_images", &[])
    );
    let gif = gemini_body(vec![part("image/gif", b"GIF89a......"), json!({"text": "p"})]);
    let (status, body) = generate(&sim, "gemini-3.1-flash-image", &gif).await;
    assert_eq!((status, &body), (400, &expected("gemini_unsupported_mime", &[("mime", "image/gif")]).1));
    assert_eq!(body["error"]["message"], "Unsupported MIME type: image/gif");
    let not_image = gemini_body(vec![part("image/png", b"this is text, not a PNG"), json!({"text": "p"})]);
    assert_eq!(generate(&sim, "gemini-3-pro-image", &not_image).await, expected("gemini_invalid_image", &[]));
    let huge = gemini_body(vec![part("image/png", &vec![0u8; 80 * 1024]), json!({"text": "p"})]);
    assert_eq!(
        generate(&sim, "gemini-3-pro-image", &huge).await,
        expected("gemini_request_too_large", &[("limit", "65536")])
    );
    // A file whose bytes are no image is refused when used.
    let file = upload(&sim, b"plain text", "image/png").await;
    let body = gemini_body(vec![file_part(&file), json!({"text": "p"})]);
    assert_eq!(generate(&sim, "gemini-3-pro-image", &body).await, expected("gemini_invalid_image", &[]));
}

#[tokio::test]
async fn uploads_follow_the_protocol() {
    let sim = start(SimConfig { max_reference_bytes: Some(1000), ..SimConfig::default() }).await;
    let start_with = |headers: &[(&str, &str)], key: &str| {
        let mut r = client().post(format!("{}/upload/v1beta/files", sim.base_url())).header("x-goog-api-key", key);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.json(&json!({"file": {"display_name": "x"}})).send()
    };
    let good = [
        ("x-goog-upload-protocol", "resumable"),
        ("x-goog-upload-command", "start"),
        ("x-goog-upload-header-content-length", "10"),
        ("x-goog-upload-header-content-type", "image/png"),
    ];
    let (status, body) = json_of(start_with(&good[..3], KEY).await.unwrap()).await;
    assert_eq!((status, body["error"]["status"].as_str()), (400, Some("INVALID_ARGUMENT")), "{body}");
    let (status, body) = json_of(start_with(&good, "sk-wrong").await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("API key not valid"), "{body}");
    let big = [good[0], good[1], ("x-goog-upload-header-content-length", "1001"), good[3]];
    assert_eq!(
        json_of(start_with(&big, KEY).await.unwrap()).await,
        expected("gemini_request_too_large", &[("limit", "1000")])
    );
    // More bytes than announced.
    let resp = start_with(&good, KEY).await.unwrap();
    let url = resp.headers()["x-goog-upload-url"].to_str().unwrap().to_owned();
    let over = client()
        .post(&url)
        .header("x-goog-upload-command", "upload, finalize")
        .header("x-goog-upload-offset", "0")
        .body(vec![0u8; 11])
        .send()
        .await
        .unwrap();
    assert_eq!(over.status().as_u16(), 400);
    let st = sim.stats();
    assert_eq!((st.upload_starts, st.uploads, st.auth_failures), (4, 0, 1));
}

fn edit_form(model: &str, images: &[(&str, Vec<u8>, &str)]) -> Form {
    let mut form =
        Form::new().text("model", model.to_owned()).text("prompt", "put it on the table").text("size", "1024x1024");
    for (name, bytes, ctype) in images {
        form = form.part(name.to_string(), Part::bytes(bytes.clone()).file_name("f").mime_str(ctype).unwrap());
    }
    form
}

async fn edit_at(sim: &SimServer, path: &str, form: Form) -> (u16, Value) {
    let resp =
        client().post(format!("{}{path}", sim.base_url())).bearer_auth(KEY).multipart(form).send().await.unwrap();
    json_of(resp).await
}

async fn edit(sim: &SimServer, form: Form) -> (u16, Value) {
    edit_at(sim, "/v1/images/edits", form).await
}

fn openai_image(body: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(body["data"][0]["b64_json"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn an_edit_names_its_images_and_mask() {
    let sim = start(SimConfig::default()).await;
    let (a, b, mask) = (png(11), jpeg(12), png(13));
    let form = edit_form(
        "gpt-image-2",
        &[
            ("image[]", a.clone(), "image/png"),
            ("image[]", b.clone(), "image/jpeg"),
            ("mask", mask.clone(), "image/png"),
        ],
    );
    let (status, body) = edit(&sim, form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(read_refs(&openai_image(&body)), (vec![sha(&a), sha(&b)], Some(sha(&mask))));
    // A single `image` part, as the SDK sends one file.
    let (status, body) = edit(&sim, edit_form("gpt-image-2", &[("image", b.clone(), "image/jpeg")])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(read_refs(&openai_image(&body)), (vec![sha(&b)], None));

    let st = sim.stats();
    assert_eq!((st.edits, st.requests, st.successes, st.references), (2, 2, 2, 3));
    let (path, kept) = &st.bodies[0];
    assert_eq!(path, "/v1/images/edits");
    assert_eq!(kept["fields"], json!({"model": "gpt-image-2", "prompt": "put it on the table", "size": "1024x1024"}));
    assert_eq!(
        kept["files"][2],
        json!({"name": "mask", "filename": "f", "content_type": "image/png", "sha256": sha(&mask), "len": mask.len()})
    );
    let mut all = Vec::new();
    strings(kept, &mut all);
    assert!(all.iter().all(|s| s.len() < 100), "no payload kept: {kept}");
}

#[tokio::test]
async fn edits_are_refused_with_the_real_bodies() {
    let sim = start(SimConfig { max_reference_bytes: Some(2_000), ..SimConfig::default() }).await;
    let image = |b: Vec<u8>| ("image[]", b, "image/png");

    let too_many: Vec<_> = (0..17).map(|i| image(png(i))).collect();
    assert_eq!(
        edit(&sim, edit_form("gpt-image-2", &too_many)).await,
        expected("openai_too_many_images", &[("max", "16"), ("got", "17")])
    );
    let formats = "'image/jpeg', 'image/png', and 'image/webp'";
    let (status, body) =
        edit(&sim, edit_form("gpt-image-2", &[image(png(1)), ("image[]", png(2), "application/octet-stream")])).await;
    assert_eq!(
        (status, body.clone()),
        expected(
            "openai_unsupported_mimetype",
            &[("param", "image[1]"), ("mime", "application/octet-stream"), ("list", formats)]
        )
    );
    assert_eq!(
        body["error"]["message"],
        "Invalid file 'image[1]': unsupported mimetype ('application/octet-stream'). Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'."
    );
    assert_eq!(
        edit(&sim, edit_form("gpt-image-2", &[image(b"GIF89a not a png".to_vec())])).await,
        expected("openai_invalid_image_file", &[("index", "1")])
    );
    let big = bulkgen::sim::png::make(3_000, 1, "big");
    assert_eq!(
        edit(&sim, edit_form("gpt-image-2", &[("image", big.clone(), "image/png")])).await,
        expected("openai_file_too_large", &[("param", "image"), ("got", &big.len().to_string()), ("max", "2000")])
    );
    assert_eq!(
        edit(&sim, edit_form("gpt-image-2", &[image(png(1)), ("mask", jpeg(1), "image/jpeg")])).await,
        expected("openai_unsupported_mimetype", &[("param", "mask"), ("mime", "image/jpeg"), ("list", "'image/png'")])
    );
    assert_eq!(
        edit(&sim, edit_form("gpt-image-2", &[image(png(1)), ("mask", jpeg(1), "image/png")])).await,
        expected("openai_invalid_mask", &[])
    );
    assert_eq!(
        edit(&sim, edit_form("gpt-image-2", &[])).await,
        expected("openai_missing_parameter", &[("param", "image")])
    );
    // The generation rules hold on edits too.
    let form = edit_form("gpt-image-2", &[image(png(1))]).text("response_format", "b64_json");
    assert_eq!(edit(&sim, form).await, expected("openai_unknown_parameter", &[("param", "response_format")]));
    let (status, body) = edit(&sim, edit_form("gpt-image-2", &[image(png(1))]).text("size", "1000x1000")).await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("size")), "{body}");
    assert_eq!(
        edit(&sim, edit_form("gpt-image-1", &[image(png(1))])).await,
        expected("openai_model_not_found", &[("model", "gpt-image-1")])
    );
    // The aggregator's Gemini-backed model takes no mask.
    let form = edit_form("nano-banana-pro", &[image(png(1)), ("mask", png(2), "image/png")]);
    assert_eq!(edit(&sim, form).await, expected("openai_unknown_parameter", &[("param", "mask")]));
    // A wrong key, and a body that is not multipart.
    let resp = client()
        .post(format!("{}/v1/images/edits", sim.base_url()))
        .bearer_auth("sk-nope")
        .multipart(edit_form("gpt-image-2", &[image(png(1))]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = client()
        .post(format!("{}/v1/images/edits", sim.base_url()))
        .bearer_auth(KEY)
        .json(&json!({"model": "gpt-image-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let st = sim.stats();
    assert_eq!((st.edits, st.successes, st.references), (13, 0, 0));
}

#[tokio::test]
async fn images_without_references_keep_their_old_tag() {
    let sim = start(SimConfig::default()).await;
    let (status, answer) = generate(&sim, "gemini-3-pro-image", &gemini_body(vec![json!({"text": "p"})])).await;
    assert_eq!(status, 200);
    let png = gemini_image(&answer);
    assert_eq!(read_refs(&png), (Vec::new(), None));
    assert!(!bulkgen::sim::read_tag(&png).unwrap().contains_key("refs"));
}
