//! The model-list and model-get endpoints a preflight asks before the first paid call:
//! OpenAI's `GET /v1/models[/{id}]` (also under Google's OpenAI-compatible root
//! `/v1beta/openai/`) and Gemini's `GET /v1beta/models[/{model}]` with its pages (and the
//! same under `/v1`, where google-genai 3.x now sends them). They check the key like
//! generation does, and answer only for the models the simulator serves.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::rules::{Dialect, FIXTURES};
use super::wire::{self, Wire};

/// When every listed model was "created", as the list answers it.
const CREATED: u64 = 1_776_729_600;
/// Gemini's page size when none is asked, and the most it gives.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;
const TOKEN_PREFIX: &str = "sim-page-";

/// google-genai sends `x-goog-api-key`; the OpenAI SDK `Authorization: Bearer`.
fn is_gemini(headers: &HeaderMap) -> bool {
    headers.contains_key("x-goog-api-key") && !headers.contains_key(header::AUTHORIZATION)
}

/// Counts the call; then the answer when the endpoint does not exist or the key is wrong.
fn refuse(s: &Shared, wire: Wire, headers: &HeaderMap) -> Option<Response> {
    s.stats.lock().expect("stats lock").list_requests += 1;
    if !s.cfg.list_endpoint {
        return Some(
            (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "404 page not found")
                .into_response(),
        );
    }
    let key = match wire {
        Wire::OpenAi => wire::openai_key(headers),
        Wire::Gemini => wire::gemini_key(headers),
    };
    if !s.key_ok(&key) {
        s.stats.lock().expect("stats lock").auth_failures += 1;
        return Some(wire.bad_key(&key));
    }
    None
}

fn openai_model(id: &str) -> Value {
    let known = FIXTURES.model(id);
    let owned_by = known.and_then(|m| m.owned_by.clone()).unwrap_or_else(|| "system".into());
    let mut v = json!({"id": id, "object": "model", "created": CREATED, "owned_by": owned_by});
    // OpenAI's own models carry `shutdown_date` (YYYY-MM-DD, or null when none is
    // announced): developers.openai.com/api/docs/deprecations.
    if let Some(m) = known.filter(|m| m.dialect == Dialect::Openai && !m.aggregator) {
        v["shutdown_date"] = m.shutdown.clone().map_or(Value::Null, Value::String);
    }
    v
}

/// Google serves no OpenAI model.
fn gemini_serves(s: &Shared, model: &str) -> bool {
    s.serves(model) && FIXTURES.model(model).is_none_or(|m| m.dialect != Dialect::Openai)
}

fn gemini_model(id: &str) -> Value {
    let display = FIXTURES.model(id).and_then(|m| m.display_name.clone()).unwrap_or_else(|| id.to_owned());
    json!({
        "name": format!("models/{id}"),
        "version": "001",
        "displayName": display,
        "description": "Served by the bulkgen simulator.",
        "inputTokenLimit": 65536,
        "outputTokenLimit": 32768,
        "supportedGenerationMethods": ["generateContent", "countTokens", "batchGenerateContent"],
    })
}

fn ok(v: Value) -> Response {
    wire::json_response(StatusCode::OK, v.to_string())
}

fn openai_list_of(s: &Shared, headers: &HeaderMap) -> Response {
    if let Some(r) = refuse(s, Wire::OpenAi, headers) {
        return r;
    }
    let data: Vec<Value> = s.served.iter().map(|m| openai_model(m)).collect();
    ok(json!({"object": "list", "data": data}))
}

fn openai_get_of(s: &Shared, headers: &HeaderMap, id: &str) -> Response {
    if let Some(r) = refuse(s, Wire::OpenAi, headers) {
        return r;
    }
    if s.serves(id) { ok(openai_model(id)) } else { Wire::refusal(&FIXTURES.openai_not_found(id)) }
}

fn gemini_list_of(s: &Shared, headers: &HeaderMap, query: &HashMap<String, String>) -> Response {
    if let Some(r) = refuse(s, Wire::Gemini, headers) {
        return r;
    }
    let size = match query.get("pageSize").map(|p| p.parse::<usize>()) {
        None | Some(Ok(0)) => DEFAULT_PAGE,
        Some(Ok(n)) => n.min(MAX_PAGE),
        Some(Err(_)) => return Wire::Gemini.bad_request("Invalid value at 'page_size' (TYPE_INT32)"),
    };
    let start = match query.get("pageToken").map(String::as_str) {
        None | Some("") => 0,
        Some(t) => match t.strip_prefix(TOKEN_PREFIX).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => return Wire::Gemini.bad_request("Invalid page token."),
        },
    };
    let all: Vec<&String> = s.served.iter().filter(|m| gemini_serves(s, m)).collect();
    let page: Vec<Value> = all.iter().skip(start).take(size).map(|m| gemini_model(m)).collect();
    let mut body = json!({"models": page});
    if start + size < all.len() {
        body["nextPageToken"] = Value::String(format!("{TOKEN_PREFIX}{}", start + size));
    }
    ok(body)
}

fn gemini_get_of(s: &Shared, headers: &HeaderMap, model: &str, version: &str) -> Response {
    if let Some(r) = refuse(s, Wire::Gemini, headers) {
        return r;
    }
    if gemini_serves(s, model) {
        ok(gemini_model(model))
    } else {
        Wire::refusal(&FIXTURES.gemini_not_found(model, version))
    }
}

pub(super) async fn openai_list(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    openai_list_of(&s, &headers)
}

pub(super) async fn openai_get(State(s): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    openai_get_of(&s, &headers, &id)
}

pub(super) async fn gemini_list_v1beta(
    State(s): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    gemini_list_of(&s, &headers, &query)
}

pub(super) async fn gemini_get_v1beta(
    State(s): State<Arc<Shared>>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Response {
    gemini_get_of(&s, &headers, &model, "v1beta")
}

/// `GET /v1/models`: OpenAI's list, or Gemini's under the SDK's default version.
pub(super) async fn list_v1(
    State(s): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if is_gemini(&headers) { gemini_list_of(&s, &headers, &query) } else { openai_list_of(&s, &headers) }
}

/// `GET /v1/models/{id}`: OpenAI's retrieve, or Gemini's get under v1.
pub(super) async fn get_v1(State(s): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if is_gemini(&headers) { gemini_get_of(&s, &headers, &id, "v1") } else { openai_get_of(&s, &headers, &id) }
}
