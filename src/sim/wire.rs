//! How the simulator speaks each dialect: request fields it reads, and the exact shapes
//! of its answers — successes, provider errors, refusals and broken bodies — as the real
//! providers send them (wire-formats.md).

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::rules::{FIXTURES, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Gemini,
}

/// What the simulator needs from a generation request.
pub struct Request {
    pub model: String,
    pub prompt: String,
    /// `1K`/`2K`/`4K` or `WxH`.
    pub size: String,
    pub url_mode: bool,
    /// The key presented, or "" when none.
    pub key: String,
    /// Images asked for: OpenAI's `n` (a number in JSON, text in an edit's form; checked
    /// against the fixtures' range before it is used), 1 for Gemini.
    pub n: usize,
}

/// The key of an OpenAI-dialect request (`Authorization: Bearer KEY`), or "".
pub fn openai_key(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned()
}

/// The key of a Gemini request (`x-goog-api-key: KEY`), or "".
pub fn gemini_key(headers: &HeaderMap) -> String {
    headers.get("x-goog-api-key").and_then(|h| h.to_str().ok()).unwrap_or("").to_owned()
}

impl Wire {
    pub fn parse(self, model_path: Option<&str>, headers: &HeaderMap, v: &Value) -> Result<Request, String> {
        let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
        match self {
            Wire::OpenAi => Ok(Request {
                model: text(&v["model"]),
                prompt: text(&v["prompt"]),
                size: text(&v["size"]),
                url_mode: v["response_format"] == "url",
                key: openai_key(headers),
                n: v["n"].as_u64().or_else(|| v["n"].as_str().and_then(|t| t.parse().ok())).map_or(1, |n| n as usize),
            }),
            Wire::Gemini => {
                let model = model_path
                    .and_then(|p| p.strip_suffix(":generateContent"))
                    .ok_or("expected models/{model}:generateContent")?;
                let generation =
                    if v["generationConfig"].is_null() { &v["generation_config"] } else { &v["generationConfig"] };
                let config = if generation["imageConfig"].is_null() {
                    &generation["image_config"]
                } else {
                    &generation["imageConfig"]
                };
                let size = if config["imageSize"].is_null() { &config["image_size"] } else { &config["imageSize"] };
                // Reference images come first as inline or file parts; the prompt is the
                // last text part.
                let prompt = v["contents"][0]["parts"]
                    .as_array()
                    .and_then(|parts| parts.iter().rev().find_map(|p| p["text"].as_str()))
                    .unwrap_or("");
                Ok(Request {
                    model: model.to_owned(),
                    prompt: prompt.to_owned(),
                    size: size.as_str().unwrap_or("1K").to_owned(),
                    url_mode: false,
                    key: gemini_key(headers),
                    n: 1,
                })
            }
        }
    }

    /// A refusal from the rules in the fixtures, with its real body.
    pub fn refusal(r: &Refusal) -> Response {
        json_response(StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST), r.body.to_string())
    }

    fn openai_error_body(message: &str, kind: &str, code: &str) -> Value {
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
    }

    fn gemini_error_body(code: u16, status: &str, message: &str, details: Value) -> Value {
        json!({"error": {"code": code, "message": message, "status": status, "details": details}})
    }

    fn openai_error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
        json_response(status, Wire::openai_error_body(message, kind, code).to_string())
    }

    fn gemini_error(code: u16, status: &str, message: &str, details: Value) -> Response {
        let body = Wire::gemini_error_body(code, status, message, details);
        json_response(StatusCode::from_u16(code).expect("valid status"), body.to_string())
    }

    /// A status and JSON body as a response.
    pub fn answer((status, body): (u16, Value)) -> Response {
        json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body.to_string())
    }

    pub fn bad_request(self, why: &str) -> Response {
        match self {
            Wire::OpenAi => Wire::openai_error(StatusCode::BAD_REQUEST, why, "invalid_request_error", ""),
            Wire::Gemini => Wire::gemini_error(400, "INVALID_ARGUMENT", why, json!([])),
        }
    }

    /// A wrong or missing key. Real providers quote (part of) the key back; quoting all
    /// of it lets tests prove bulkgen masks it.
    pub fn bad_key(self, presented: &str) -> Response {
        match self {
            Wire::OpenAi => Wire::openai_error(
                StatusCode::UNAUTHORIZED,
                &format!(
                    "Incorrect API key provided: {presented}. You can find your API key in your account settings."
                ),
                "invalid_request_error",
                "invalid_api_key",
            ),
            Wire::Gemini => Wire::gemini_error(
                400,
                "INVALID_ARGUMENT",
                &format!("API key not valid. Please pass a valid API key. (got {presented})"),
                json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]),
            ),
        }
    }

    /// A model the endpoint does not serve (unknown, or shut down). `version` is the
    /// Gemini API version of the path (`v1beta`, or `v1` as the SDK now defaults to).
    pub fn unknown_model(self, model: &str, version: &str) -> Response {
        match self {
            Wire::OpenAi => Wire::refusal(&FIXTURES.openai_not_found(model)),
            Wire::Gemini => Wire::refusal(&FIXTURES.gemini_not_found(model, version)),
        }
    }

    pub fn rate_limited(self, after: Duration) -> Response {
        let mut resp = Wire::answer((429, self.rate_limited_body(after)));
        if self == Wire::OpenAi {
            let h = resp.headers_mut();
            h.insert("retry-after", after.as_secs_f64().ceil().to_string().parse().expect("number"));
            h.insert("retry-after-ms", after.as_millis().to_string().parse().expect("number"));
        }
        resp
    }

    /// The body of a 429 (OpenAI's advice goes in headers; Gemini's is in the body).
    pub fn rate_limited_body(self, after: Duration) -> Value {
        match self {
            Wire::OpenAi => Wire::openai_error_body(
                "Rate limit reached for images per minute. Please try again later.",
                "requests",
                "rate_limit_exceeded",
            ),
            Wire::Gemini => Wire::gemini_error_body(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{:.3}s", after.as_secs_f64())}]),
            ),
        }
    }

    pub fn quota(self) -> Response {
        match self {
            Wire::OpenAi => Wire::openai_error(
                StatusCode::TOO_MANY_REQUESTS,
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            ),
            Wire::Gemini => Wire::gemini_error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                json!([
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model_per_day",
                        "quotaId": "GenerateRequestsPerDayPerProjectPerModel"}]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"}
                ]),
            ),
        }
    }

    pub fn overloaded(self) -> Response {
        Wire::answer((503, self.overloaded_body()))
    }

    /// The body of a 503.
    pub fn overloaded_body(self) -> Value {
        match self {
            Wire::OpenAi => Wire::openai_error_body(
                "The model is overloaded. Please try again later.",
                "server_error",
                "model_overloaded",
            ),
            Wire::Gemini => Wire::gemini_error_body(
                503,
                "UNAVAILABLE",
                "The model is overloaded. Please try again later.",
                json!([]),
            ),
        }
    }

    /// The body of a 500.
    pub fn server_error_body(self) -> Value {
        match self {
            Wire::OpenAi => {
                Wire::openai_error_body("The server had an error while processing your request.", "server_error", "")
            }
            Wire::Gemini => Wire::gemini_error_body(500, "INTERNAL", "An internal error has occurred.", json!([])),
        }
    }

    pub fn server_error(self, code: u16) -> Response {
        match (self, code) {
            (_, 502) => html(StatusCode::BAD_GATEWAY, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
            (Wire::OpenAi, 504) => {
                html(StatusCode::GATEWAY_TIMEOUT, "<html><body><h1>504 Gateway Time-out</h1></body></html>")
            }
            (Wire::Gemini, 504) => Wire::gemini_error(
                504,
                "DEADLINE_EXCEEDED",
                "Deadline expired before operation could complete.",
                json!([]),
            ),
            (wire, _) => Wire::answer((500, wire.server_error_body())),
        }
    }

    /// A refusal: OpenAI's policy 400; Gemini's 200 with a blockReason, or (every other
    /// time) a candidate stopped for IMAGE_SAFETY.
    pub fn refused(self, alternate: bool) -> Response {
        Wire::answer(self.refused_body(alternate))
    }

    /// The status and body of a refusal (a 400, or Gemini's 200 without an image).
    pub fn refused_body(self, alternate: bool) -> (u16, Value) {
        match self {
            Wire::OpenAi => (
                400,
                Wire::openai_error_body(
                    "Your request was rejected as a result of our safety system.",
                    "invalid_request_error",
                    "content_policy_violation",
                ),
            ),
            Wire::Gemini if alternate => (
                200,
                json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "IMAGE_SAFETY", "index": 0}]}),
            ),
            Wire::Gemini => (
                200,
                json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 9}}),
            ),
        }
    }

    /// A 200 whose body holds no image.
    pub fn no_image(self) -> Response {
        Wire::answer((200, self.no_image_body()))
    }

    pub fn no_image_body(self) -> Value {
        match self {
            Wire::OpenAi => json!({"created": 1_713_833_628u64, "data": []}),
            Wire::Gemini => {
                json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "I can describe it, but here is no picture."}]}, "finishReason": "STOP"}]})
            }
        }
    }

    /// The success body: the image as base64 (or a URL), and for Gemini a draft image
    /// and thoughts first, as the thinking models send them. It is built in one buffer: at time scale 0 the simulator shares the
    /// machine with the client under test, so it must not spend more than it needs (no JSON
    /// tree holding a copy of the base64, no escaping pass over it: base64 needs none).
    pub fn success(self, image: Image<'_>, draft_png: &[u8], model: &str, n: u64) -> String {
        self.success_of(&[image], draft_png, model, n)
    }

    /// The success body of several images: OpenAI's `data` holds one element per image
    /// (`n`); Gemini answers one, the first.
    pub fn success_of(self, images: &[Image<'_>], draft_png: &[u8], model: &str, n: u64) -> String {
        let size: usize = images
            .iter()
            .map(|image| match image {
                Image::Png(png) => png.len().div_ceil(3) * 4,
                Image::Text(t) | Image::Url(t) => t.len() + 16,
            })
            .sum();
        let mut out = String::with_capacity(size + draft_png.len() * 2 + 512 + 64 * images.len());
        let push_image = |out: &mut String, image: &Image<'_>| match image {
            Image::Png(png) => base64::engine::general_purpose::STANDARD.encode_string(png, out),
            Image::Text(t) => out.push_str(t),
            Image::Url(_) => unreachable!("a URL is not inline data"),
        };
        match self {
            Wire::OpenAi => {
                out.push_str("{\"created\":1713833628,\"data\":[");
                for (i, image) in images.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match image {
                        Image::Url(u) => {
                            out.push_str("{\"url\":");
                            out.push_str(&json_string(u));
                            // As DALL-E 3 answered URLs: with the prompt it used.
                            out.push_str(",\"revised_prompt\":\"");
                            out.push_str(SIM_REVISED_PROMPT);
                            out.push_str("\"}");
                        }
                        _ => {
                            out.push_str("{\"b64_json\":\"");
                            push_image(&mut out, image);
                            out.push_str("\"}");
                        }
                    }
                }
                out.push_str("],\"usage\":{\"total_tokens\":100}}");
            }
            Wire::Gemini => {
                out.push_str("{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[");
                out.push_str("{\"text\":\"Planning the composition.\",\"thought\":true},");
                out.push_str("{\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"");
                base64::engine::general_purpose::STANDARD.encode_string(draft_png, &mut out);
                out.push_str("\"},\"thought\":true},{\"text\":\"Here is the image.\"},");
                out.push_str("{\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"");
                if let Some(image) = images.first() {
                    push_image(&mut out, image);
                }
                out.push_str("\"}}]},\"finishReason\":\"STOP\",\"index\":0}],");
                out.push_str("\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":1120,");
                out.push_str("\"totalTokenCount\":1128},\"modelVersion\":");
                out.push_str(&json_string(model));
                out.push_str(&format!(",\"responseId\":\"sim-{n}\"}}"));
            }
        }
        out
    }

    /// A 200 whose base64 does not decode.
    pub fn bad_base64(self) -> String {
        self.success(Image::Text("%%%not-base64%%%"), &[], "sim", 0)
    }
}

/// The image of a success: PNG bytes (sent as base64), text put in the base64 field as it
/// is (to break it; it must need no JSON escaping), or a URL (openai dialect only).
/// The `revised_prompt` beside every URL answer (plain text: no JSON escaping needed).
pub const SIM_REVISED_PROMPT: &str = "the prompt as the simulated model revised it";

#[derive(Clone, Copy)]
pub enum Image<'a> {
    Png(&'a [u8]),
    Text(&'a str),
    Url(&'a str),
}

fn json_string(s: &str) -> String {
    Value::from(s).to_string()
}

pub fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub fn html(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}
