//! The simulator is as strict as the real APIs, by the rules in tests/sdk/fixtures.json
//! (made with the official SDKs): each rule, with the exact status and body, plus the
//! model-list endpoints and what the simulator records of the requests it saw.

use base64::Engine;
use bulkgen::sim::{SimConfig, SimServer, prompt_tag, read_tag};
use serde_json::{Value, json};

const KEY: &str = "sk-strict-5d1e";

async fn start(cfg: SimConfig) -> SimServer {
    let cfg = SimConfig { api_key: Some(KEY.into()), time_scale: 0.0, image_bytes: 512, ..cfg };
    SimServer::start(cfg, "127.0.0.1:0".parse().unwrap()).await.expect("simulator starts")
}

async fn default_sim() -> SimServer {
    start(SimConfig::default()).await
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Status, content type and body text of a response.
async fn read(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let ctype =
        resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("").to_owned();
    (status, ctype, resp.text().await.expect("body"))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// POST an OpenAI-dialect body to `path` with the right key.
async fn openai_at(sim: &SimServer, path: &str, body: Value) -> (u16, Value) {
    let resp =
        client().post(format!("{}{path}", sim.base_url())).bearer_auth(KEY).json(&body).send().await.expect("request");
    let (status, _, text) = read(resp).await;
    (status, parse(&text))
}

async fn openai(sim: &SimServer, body: Value) -> (u16, Value) {
    openai_at(sim, "/v1/images/generations", body).await
}

/// A Gemini generateContent body, as the SDK builds it (tests/sdk/fixtures.json,
/// requests."genai.models.generate_content").
fn gemini_body(prompt: &str, size: Option<&str>, ratio: Option<&str>) -> Value {
    let mut image_config = json!({});
    if let Some(s) = size {
        image_config["imageSize"] = s.into();
    }
    if let Some(r) = ratio {
        image_config["aspectRatio"] = r.into();
    }
    json!({
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": image_config},
    })
}

async fn gemini_at(sim: &SimServer, version: &str, model: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{}/{version}/models/{model}:generateContent", sim.base_url()))
        .header("x-goog-api-key", KEY)
        .json(&body)
        .send()
        .await
        .expect("request");
    let (status, _, text) = read(resp).await;
    (status, parse(&text))
}

async fn gemini(sim: &SimServer, model: &str, body: Value) -> (u16, Value) {
    gemini_at(sim, "v1beta", model, body).await
}

enum Auth<'a> {
    Bearer(&'a str),
    Goog(&'a str),
    None,
}

async fn get(sim: &SimServer, path: &str, auth: Auth<'_>) -> (u16, String, String) {
    let mut req = client().get(format!("{}{path}", sim.base_url()));
    req = match auth {
        Auth::Bearer(k) => req.bearer_auth(k),
        Auth::Goog(k) => req.header("x-goog-api-key", k),
        Auth::None => req,
    };
    read(req.send().await.expect("request")).await
}

async fn get_json(sim: &SimServer, path: &str, auth: Auth<'_>) -> (u16, Value) {
    let (status, _, text) = get(sim, path, auth).await;
    (status, parse(&text))
}

fn openai_not_found(model: &str) -> Value {
    json!({"error": {
        "message": format!("The model `{model}` does not exist or you do not have access to it."),
        "type": "invalid_request_error", "param": null, "code": "model_not_found"}})
}

fn gemini_not_found(model: &str, version: &str) -> Value {
    json!({"error": {"code": 404, "status": "NOT_FOUND", "message": format!(
        "models/{model} is not found for API version {version}, or is not supported for generateContent.")}})
}

fn unknown_response_format() -> Value {
    json!({"error": {"message": "Unknown parameter: 'response_format'.", "type": "invalid_request_error",
        "param": "response_format", "code": "unknown_parameter"}})
}

#[test]
fn the_fixtures_record_both_sdk_versions_and_when_they_were_made() {
    let f: Value = serde_json::from_str(include_str!("sdk/fixtures.json")).expect("fixtures parse");
    assert_eq!(f["sdk"]["openai"]["version"], "3.54.0");
    assert_eq!(f["sdk"]["google-genai"]["version"], "3.4.0");
    assert!(f["generated"]["date"].as_str().is_some_and(|d| d.len() == 10), "a generation date");
    let versions = &bulkgen::sim::rules::FIXTURES.sdk_versions;
    assert!(versions.contains(&("openai".into(), "3.54.0".into())), "{versions:?}");
    assert!(versions.contains(&("google-genai".into(), "3.4.0".into())), "{versions:?}");
    // Every extracted fact names where it came from.
    for fact in ["image_models", "size_rules", "response_format", "quality"] {
        let text = f["openai"][fact].to_string();
        assert!(text.contains("openai/types/"), "openai.{fact} has a source: {text}");
    }
    assert!(f["gemini"]["aspect_ratio_enum"]["source"].as_str().unwrap().contains("google/genai/types.py"));
}

#[tokio::test]
async fn response_format_is_an_unknown_parameter_to_gpt_image_models() {
    let sim = default_sim().await;
    for model in ["gpt-image-2", "gpt-image-1.5", "chatgpt-image-latest", "gpt-image-2.6-flare"] {
        let (status, body) = openai(&sim, json!({"model": model, "prompt": "p", "response_format": "b64_json"})).await;
        assert_eq!((status, body), (400, unknown_response_format()), "{model}");
    }
    // Google's OpenAI-compatible root applies the same rules.
    let (status, body) = openai_at(
        &sim,
        "/v1beta/openai/images/generations",
        json!({"model": "gpt-image-2", "prompt": "p", "response_format": "url"}),
    )
    .await;
    assert_eq!((status, body), (400, unknown_response_format()));
    assert_eq!(sim.stats().successes, 0);
}

#[tokio::test]
async fn the_aggregators_nano_banana_pro_takes_response_format_and_only_its_sizes() {
    let sim = default_sim().await;
    let (status, body) =
        openai(&sim, json!({"model": "nano-banana-pro", "prompt": "p", "size": "2048x2048", "response_format": "url"}))
            .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"][0]["url"].as_str().is_some_and(|u| u.starts_with("http://")), "{body}");
    let (status, body) = openai(
        &sim,
        json!({"model": "nano-banana-pro", "prompt": "p", "size": "1024x1024", "response_format": "b64_json"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"][0]["b64_json"].is_string());

    let (status, body) = openai(&sim, json!({"model": "nano-banana-pro", "prompt": "p", "size": "1536x1024"})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": {"message": "Invalid value: '1536x1024'. Supported values are: '1024x1024', '2048x2048', and '4096x4096'.",
            "type": "invalid_request_error", "param": "size", "code": "invalid_value"}})
    );
    let (status, _) =
        openai(&sim, json!({"model": "nano-banana-pro", "prompt": "p", "size": "4096x4096", "response_format": "ftp"}))
            .await;
    assert_eq!(status, 400, "only url and b64_json");
}

#[tokio::test]
async fn gpt_image_2_takes_free_sizes_within_its_limits() {
    let sim = default_sim().await;
    for size in ["1536x1024", "3840x2160", "2160x3840", "2048x2048", "1536x864", "auto"] {
        let (status, body) = openai(&sim, json!({"model": "gpt-image-2", "prompt": "p", "size": size})).await;
        assert_eq!(status, 200, "{size}: {body}");
    }
    for (size, why) in [
        ("4096x4096", "longest edge"),
        ("1000x1000", "divisible by 16"),
        ("3840x1008", "aspect ratio"),
        ("512x512", "pixel count"),
        ("1024X1024", "WIDTHxHEIGHT"),
    ] {
        let (status, body) = openai(&sim, json!({"model": "gpt-image-2", "prompt": "p", "size": size})).await;
        assert_eq!(status, 400, "{size}");
        let e = &body["error"];
        assert_eq!((e["param"].as_str(), e["code"].as_str()), (Some("size"), Some("invalid_value")), "{body}");
        assert_eq!(e["type"], "invalid_request_error");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.starts_with(&format!("Invalid value: '{size}'.")) && msg.contains(why), "{size}: {msg}");
    }
}

#[tokio::test]
async fn gpt_image_1_5_takes_only_its_fixed_sizes() {
    let sim = default_sim().await;
    for size in ["1024x1024", "1536x1024", "1024x1536", "auto"] {
        let (status, body) = openai(&sim, json!({"model": "gpt-image-1.5", "prompt": "p", "size": size})).await;
        assert_eq!(status, 200, "{size}: {body}");
    }
    let (status, body) = openai(&sim, json!({"model": "gpt-image-1.5", "prompt": "p", "size": "2048x2048"})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": {
            "message": "Invalid value: '2048x2048'. Supported values are: '1024x1024', '1536x1024', '1024x1536', and 'auto'.",
            "type": "invalid_request_error", "param": "size", "code": "invalid_value"}})
    );
}

#[tokio::test]
async fn quality_and_documented_enums_are_checked() {
    let sim = default_sim().await;
    let (status, body) = openai(&sim, json!({"model": "gpt-image-2", "prompt": "p", "quality": "xhigh"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "quality");
    assert_eq!(
        body["error"]["message"],
        "Invalid value: 'xhigh'. Supported values are: 'low', 'medium', 'high', and 'auto'."
    );
    let (status, body) = openai(&sim, json!({"model": "gpt-image-2.5-flare", "prompt": "p", "quality": "max"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = openai(&sim, json!({"model": "gpt-image-2", "prompt": "p", "quality": "hd"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_value")), "DALL-E only");
    let (status, body) = openai(&sim, json!({"model": "gpt-image-2", "prompt": "p", "output_format": "tiff"})).await;
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("output_format")));
    let (status, body) =
        openai(&sim, json!({"model": "gpt-image-2", "prompt": "p", "quality": "high", "output_format": "webp", "background": "opaque", "moderation": "low"}))
            .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn gemini_models_take_only_their_sizes_and_ratios() {
    let sim = default_sim().await;
    let (status, body) = gemini(&sim, "gemini-3-pro-image", gemini_body("p", Some("512"), None)).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
            "* GenerateContentRequest.generation_config.image_config.image_size: image_size must be one of '1K', '2K', or '4K'.\n"}})
    );
    let (status, body) = gemini(&sim, "gemini-3-pro-image", gemini_body("p", Some("2K"), Some("1:8"))).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        body["error"]["message"],
        "* GenerateContentRequest.generation_config.image_config.aspect_ratio: aspect_ratio must be one of \
         '1:1', '2:3', '3:2', '3:4', '4:3', '4:5', '5:4', '9:16', '16:9', or '21:9'.\n"
    );
    let (status, body) = gemini(&sim, "gemini-3-pro-image", gemini_body("p", Some("4K"), Some("21:9"))).await;
    assert_eq!(status, 200, "{body}");
    // The upper-case K is part of the value.
    let (status, _) = gemini(&sim, "gemini-3-pro-image", gemini_body("p", Some("2k"), None)).await;
    assert_eq!(status, 400);

    for (size, ratio) in [("512", "1:8"), ("1K", "8:1"), ("2K", "1:4"), ("4K", "4:1")] {
        let (status, body) = gemini(&sim, "gemini-3.1-flash-image", gemini_body("p", Some(size), Some(ratio))).await;
        assert_eq!(status, 200, "{size} {ratio}: {body}");
        assert!(body["candidates"][0]["content"]["parts"].is_array());
    }
    // The same under /v1, where google-genai 3.x sends it by default.
    let (status, _) = gemini_at(&sim, "v1", "gemini-3.1-flash-image", gemini_body("p", Some("512"), Some("1:8"))).await;
    assert_eq!(status, 200);
    let (status, _) = gemini_at(&sim, "v1", "gemini-3-pro-image", gemini_body("p", Some("512"), None)).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn shut_down_and_unknown_models_are_not_found_on_generation() {
    let sim = default_sim().await;
    for model in ["gpt-image-1", "dall-e-3", "dall-e-2", "gpt-image-9"] {
        let (status, body) = openai(&sim, json!({"model": model, "prompt": "p"})).await;
        assert_eq!((status, body), (404, openai_not_found(model)), "{model}");
    }
    for model in ["gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview", "gemini-2.5-flash-image", "gemini-9"]
    {
        let (status, body) = gemini(&sim, model, gemini_body("p", None, None)).await;
        assert_eq!((status, body), (404, gemini_not_found(model, "v1beta")), "{model}");
    }
    let (status, body) = gemini_at(&sim, "v1", "gemini-2.5-flash-image", gemini_body("p", None, None)).await;
    assert_eq!((status, body), (404, gemini_not_found("gemini-2.5-flash-image", "v1")));
    // Google serves no OpenAI model.
    let (status, body) = gemini(&sim, "gpt-image-2", gemini_body("p", None, None)).await;
    assert_eq!((status, body), (404, gemini_not_found("gpt-image-2", "v1beta")));
}

#[tokio::test]
async fn model_get_answers_for_served_models_and_404s_the_rest() {
    let sim = default_sim().await;
    for path in ["/v1/models/gpt-image-2", "/v1beta/openai/models/gpt-image-2"] {
        let (status, body) = get_json(&sim, path, Auth::Bearer(KEY)).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!((body["id"].as_str(), body["object"].as_str()), (Some("gpt-image-2"), Some("model")));
        assert!(body["created"].is_u64() && body["owned_by"].is_string(), "{body}");
    }
    let (_, body) = get_json(&sim, "/v1/models/gpt-image-1.5", Auth::Bearer(KEY)).await;
    assert_eq!(body["shutdown_date"], "2026-12-01", "a deprecated model says when it goes");
    for model in ["gpt-image-1", "dall-e-3"] {
        let (status, body) = get_json(&sim, &format!("/v1/models/{model}"), Auth::Bearer(KEY)).await;
        assert_eq!((status, body), (404, openai_not_found(model)));
    }

    let (status, body) = get_json(&sim, "/v1beta/models/gemini-3-pro-image", Auth::Goog(KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], "models/gemini-3-pro-image");
    assert!(body["displayName"].is_string());
    let methods: Vec<&str> =
        body["supportedGenerationMethods"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(methods.contains(&"generateContent") && methods.contains(&"batchGenerateContent"), "{methods:?}");
    for model in ["gemini-3-pro-image-preview", "gemini-2.5-flash-image", "gpt-image-2"] {
        let (status, body) = get_json(&sim, &format!("/v1beta/models/{model}"), Auth::Goog(KEY)).await;
        assert_eq!((status, body), (404, gemini_not_found(model, "v1beta")), "{model}");
    }
    // google-genai 3.x asks under /v1: the key's header says which dialect is asking.
    let (status, body) = get_json(&sim, "/v1/models/gemini-3.1-flash-image", Auth::Goog(KEY)).await;
    assert_eq!((status, body["name"].as_str()), (200, Some("models/gemini-3.1-flash-image")));
    let (status, body) = get_json(&sim, "/v1/models/gemini-3-pro-image-preview", Auth::Goog(KEY)).await;
    assert_eq!((status, body), (404, gemini_not_found("gemini-3-pro-image-preview", "v1")));
}

#[tokio::test]
async fn model_lists_show_what_is_served_and_gemini_pages() {
    let sim = default_sim().await;
    for path in ["/v1/models", "/v1beta/openai/models"] {
        let (status, body) = get_json(&sim, path, Auth::Bearer(KEY)).await;
        assert_eq!((status, body["object"].as_str()), (200, Some("list")), "{path}");
        let ids: Vec<&str> = body["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
        for served in
            ["gpt-image-2", "gpt-image-2.6-sunburst", "gpt-image-1.5", "chatgpt-image-latest", "nano-banana-pro"]
        {
            assert!(ids.contains(&served), "{path}: {served} in {ids:?}");
        }
        for gone in ["gpt-image-1", "dall-e-2", "dall-e-3", "gemini-3-pro-image-preview"] {
            assert!(!ids.contains(&gone), "{path}: {gone} is shut down");
        }
        for m in body["data"].as_array().unwrap() {
            assert_eq!(m["object"], "model");
            assert!(m["created"].is_u64() && m["owned_by"].is_string(), "{m}");
        }
    }

    // Gemini's list, one model a page, followed to the end.
    for version in ["v1beta", "v1"] {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..50 {
            let path = match &token {
                Some(t) => format!("/{version}/models?pageSize=1&pageToken={t}"),
                None => format!("/{version}/models?pageSize=1"),
            };
            let (status, body) = get_json(&sim, &path, Auth::Goog(KEY)).await;
            assert_eq!(status, 200, "{path}: {body}");
            let page = body["models"].as_array().unwrap();
            assert!(page.len() <= 1, "pageSize=1 gave {}", page.len());
            names.extend(page.iter().filter_map(|m| m["name"].as_str().map(str::to_owned)));
            token = body["nextPageToken"].as_str().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        assert!(token.is_none(), "the pages end");
        assert!(names.len() >= 2, "{names:?}");
        assert!(names.contains(&"models/gemini-3-pro-image".to_owned()), "{names:?}");
        assert!(names.contains(&"models/gemini-3.1-flash-image".to_owned()), "{names:?}");
        for gone in ["models/gemini-3-pro-image-preview", "models/gemini-2.5-flash-image", "models/gpt-image-2"] {
            assert!(!names.contains(&gone.to_owned()), "{gone} in {names:?}");
        }
        // One big page holds them all, without a next token.
        let (_, body) = get_json(&sim, &format!("/{version}/models?pageSize=1000"), Auth::Goog(KEY)).await;
        assert_eq!(body["models"].as_array().unwrap().len(), names.len());
        assert!(body.get("nextPageToken").is_none());
    }
    let (status, body) = get_json(&sim, "/v1beta/models?pageToken=garbage", Auth::Goog(KEY)).await;
    assert_eq!((status, body["error"]["status"].as_str()), (400, Some("INVALID_ARGUMENT")));
}

#[tokio::test]
async fn without_the_list_endpoint_every_list_and_get_is_a_plain_404() {
    let sim = start(SimConfig { list_endpoint: false, ..SimConfig::default() }).await;
    let paths = [
        ("/v1/models", Auth::Bearer(KEY)),
        ("/v1/models/gpt-image-2", Auth::Bearer(KEY)),
        ("/v1beta/openai/models", Auth::Bearer(KEY)),
        ("/v1beta/openai/models/gpt-image-2", Auth::Bearer(KEY)),
        ("/v1beta/models", Auth::Goog(KEY)),
        ("/v1beta/models/gemini-3-pro-image", Auth::Goog(KEY)),
        ("/v1/models/gemini-3-pro-image", Auth::Goog(KEY)),
    ];
    let n = paths.len() as u64;
    for (path, auth) in paths {
        let (status, ctype, text) = get(&sim, path, auth).await;
        assert_eq!(status, 404, "{path}");
        assert!(!ctype.contains("json") && serde_json::from_str::<Value>(&text).is_err(), "{path}: {ctype} {text}");
    }
    assert_eq!(sim.stats().list_requests, n, "each ask is counted");
    // Generation still works.
    let (status, _) = openai(&sim, json!({"model": "gpt-image-2", "prompt": "p"})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn list_endpoints_check_the_key() {
    let sim = default_sim().await;
    for (path, auth) in [("/v1/models", Auth::Bearer("sk-wrong")), ("/v1/models/gpt-image-2", Auth::None)] {
        let (status, body) = get_json(&sim, path, auth).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(
            (body["error"]["code"].as_str(), body["error"]["type"].as_str()),
            (Some("invalid_api_key"), Some("invalid_request_error"))
        );
    }
    for path in ["/v1beta/models", "/v1beta/models/gemini-3-pro-image", "/v1/models/gemini-3-pro-image"] {
        let (status, body) = get_json(&sim, path, Auth::Goog("wrong")).await;
        assert_eq!((status, body["error"]["status"].as_str()), (400, Some("INVALID_ARGUMENT")), "{path}");
        assert_eq!(body["error"]["details"][0]["reason"], "API_KEY_INVALID", "{path}");
    }
    let st = sim.stats();
    assert_eq!(st.list_requests, 5);
    assert_eq!(st.auth_failures, 5);
    assert_eq!(st.requests, 0, "no generation was asked");
}

#[tokio::test]
async fn a_list_of_models_serves_exactly_those_names_leniently() {
    let sim = start(SimConfig { models: Some(vec!["primary".into(), "backup".into()]), ..SimConfig::default() }).await;
    let (status, body) =
        openai(&sim, json!({"model": "primary", "prompt": "p", "size": "7x9", "response_format": "url"})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"][0]["url"].is_string());
    let (status, _) = gemini(&sim, "backup", gemini_body("p", Some("9K"), Some("7:5"))).await;
    assert_eq!(status, 200);
    let (status, body) = openai(&sim, json!({"model": "gpt-image-2", "prompt": "p"})).await;
    assert_eq!((status, body), (404, openai_not_found("gpt-image-2")));
    let (_, body) = get_json(&sim, "/v1/models", Auth::Bearer(KEY)).await;
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["primary", "backup"]);
}

#[tokio::test]
async fn the_simulator_records_what_was_sent() {
    let sim = default_sim().await;
    let openai_body = json!({"model": "gpt-image-2", "prompt": "a red fox", "size": "1536x1024", "quality": "high"});
    openai(&sim, openai_body.clone()).await;
    // Reference images come first; the prompt is the last text part.
    let reference = bulkgen::sim::png::make(64, 1, "ref");
    let png = base64::engine::general_purpose::STANDARD.encode(&reference);
    let gemini_body = json!({
        "contents": [{"role": "user", "parts": [
            {"inlineData": {"mimeType": "image/png", "data": png}},
            {"text": "a note that is not the prompt"},
            {"text": "a blue heron"}]}],
        "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"}},
    });
    let (status, body) = gemini(&sim, "gemini-3-pro-image", gemini_body.clone()).await;
    assert_eq!(status, 200);
    let parts = body["candidates"][0]["content"]["parts"].as_array().unwrap();
    let last = parts.iter().rev().find(|p| p["thought"].is_null() && p["inlineData"].is_object()).unwrap();
    let image = base64::engine::general_purpose::STANDARD.decode(last["inlineData"]["data"].as_str().unwrap()).unwrap();
    let tag = read_tag(&image).expect("a simulator image");
    assert_eq!(tag.get("prompt"), Some(&prompt_tag("a blue heron")), "the image names the prompt");
    get(&sim, "/v1/models", Auth::Bearer(KEY)).await;
    // A refused request is recorded too: it was sent.
    let refused = json!({"model": "gpt-image-2", "prompt": "p", "response_format": "url"});
    openai_at(&sim, "/v1beta/openai/images/generations", refused.clone()).await;

    // Kept bodies hold a summary of each inline image, not its base64.
    let mut kept = gemini_body.clone();
    kept["contents"][0]["parts"][0]["inlineData"]["data"] =
        json!({"sha256": bulkgen::sim::refs::sha256_hex(&reference), "len": reference.len()});
    let st = sim.stats();
    assert_eq!(
        st.bodies,
        vec![
            ("/v1/images/generations".to_owned(), openai_body),
            ("/v1beta/models/gemini-3-pro-image:generateContent".to_owned(), kept),
            ("/v1beta/openai/images/generations".to_owned(), refused),
        ]
    );
    assert_eq!(st.list_requests, 1);
    assert_eq!(st.requests, 3);
}

#[tokio::test]
async fn requests_shaped_like_the_sdks_are_accepted() {
    // The bodies the official SDKs sent (tests/sdk/fixtures.json, requests) pass the
    // simulator's rules: the simulator is not stricter than the real API.
    let f: Value = serde_json::from_str(include_str!("sdk/fixtures.json")).unwrap();
    let sim = default_sim().await;
    let recorded = &f["requests"]["openai.images.generate"]["requests"][0];
    assert_eq!(recorded["path"], "/v1/images/generations");
    let (status, body) = openai(&sim, recorded["json"].clone()).await;
    assert_eq!(status, 200, "{body}");
    for name in ["genai.models.generate_content", "genai.models.generate_content@v1beta"] {
        let recorded = &f["requests"][name]["requests"][0];
        let path = recorded["path"].as_str().unwrap();
        let resp = client()
            .post(format!("{}{path}", sim.base_url()))
            .header("x-goog-api-key", KEY)
            .json(&recorded["json"])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{name}: {path}");
    }
}
