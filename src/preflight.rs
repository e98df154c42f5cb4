//! The check before the first paid call: is every model the run will use still alive
//! (catalogue), does the endpoint answer, does it take the key, and does it serve the
//! models (OpenAI `GET /v1/models`, Gemini `GET /v1beta/models/{model}`)? It takes a
//! few requests and seconds, so a typo'd host, https to a plain-http port, a bad key or a
//! retired model stops a 10,000-row batch at row 0 instead of row by row.
//!
//! An endpoint without a model list (many aggregators) gets a note and the run goes on.
//! `bulkgen models --base-url` uses [`served`] to show what an endpoint serves.

use std::time::Duration;

use reqwest::{Client, StatusCode, Url};
use serde_json::Value;

use crate::catalog::{Catalog, Dialect, status_text};
use crate::error::CallError;
use crate::provider;
use crate::secret::ApiKey;

/// The longest a single preflight request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pages of a Gemini model list read at most (1000 models a page).
const MAX_PAGES: usize = 20;

/// Where the run will send its calls.
pub struct Target<'a> {
    pub dialect: Dialect,
    pub base_url: &'a Url,
    pub key: Option<&'a ApiKey>,
    pub client: &'a Client,
}

/// Why the run must not start; the text names the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PreflightError(pub String);

/// What an endpoint says it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    Models(Vec<String>),
    /// It has no model list; what it answered instead.
    NoList(String),
}

/// Checks `models` against the catalogue and the endpoint. Ok holds notes to show (a
/// deprecated model, a missing list endpoint, models the catalogue does not know).
pub async fn run(t: &Target<'_>, catalog: &Catalog, models: &[String]) -> Result<Vec<String>, PreflightError> {
    let mut notes = Vec::new();
    let today = crate::catalog::today();
    for model in models {
        match catalog.lookup(model) {
            Some(m) if m.is_shut_down(&today) => {
                let instead = m.replacement.as_deref().map(|r| format!(": use {r} instead")).unwrap_or_default();
                return Err(PreflightError(format!(
                    "model {model} was shut down ({}){instead}. Change --model or the manifest's model column \
                     (`bulkgen models` lists the catalogue); nothing was sent",
                    status_text(m)
                )));
            }
            Some(m) if m.status == crate::catalog::Status::Deprecated => notes.push(format!(
                "warning: model {model} is deprecated and {}",
                status_text(m).trim_start_matches("deprecated: ")
            )),
            Some(_) => {}
            None => notes.push(format!(
                "note: the catalogue knows nothing of model {model}: its rows are sent the size they give as is, \
                 and no price or size rule is checked (describe it in a --models-file to change that)"
            )),
        }
    }
    let not_served = match t.dialect {
        Dialect::Openai => match served(t).await? {
            Served::NoList(why) => {
                notes.push(no_list_note(t, &why));
                return Ok(notes);
            }
            Served::Models(list) => {
                let serves = |m: &str| {
                    let last = m.rsplit('/').next().unwrap_or(m);
                    list.iter().any(|s| s == m || s.rsplit('/').next() == Some(last))
                };
                models.iter().filter(|m| !serves(m)).cloned().map(|m| (m, list.clone())).collect::<Vec<_>>()
            }
        },
        Dialect::Gemini => {
            let mut missing = Vec::new();
            for model in models {
                let url = provider::endpoint(t.base_url, &format!("/v1beta/models/{}", bare(model)));
                let (status, body) = get(t, url).await?;
                if status.is_success() {
                    continue;
                }
                let call = refused(t, status, &body)?;
                if status == StatusCode::NOT_FOUND && is_json_error(&body) {
                    let list = match gemini_list(t).await? {
                        Served::Models(list) => list,
                        Served::NoList(_) => Vec::new(),
                    };
                    missing.push((model.clone(), list));
                } else if status == StatusCode::NOT_FOUND {
                    notes.push(no_list_note(t, &call.detail()));
                    return Ok(notes);
                } else {
                    notes.push(format!("note: could not check model {model} before the run: {call}"));
                }
            }
            missing
        }
    };
    if let Some((model, list)) = not_served.into_iter().next() {
        let mut text = format!("model {model} is not served by {}", t.base_url);
        if let Some(m) = catalog.lookup(&model) {
            text.push_str(&format!(" (the catalogue says: {})", status_text(m)));
        }
        let close = Catalog::close_names(&model, list.iter().map(String::as_str));
        if !close.is_empty() {
            text.push_str(&format!("; close names it serves: {}", close.join(", ")));
        }
        text.push_str(
            ". Change --model or the manifest's model column (`bulkgen models --base-url URL` lists what the endpoint \
             serves); nothing was sent",
        );
        return Err(PreflightError(text));
    }
    Ok(notes)
}

fn no_list_note(t: &Target<'_>, why: &str) -> String {
    format!(
        "note: {} has no model list ({}), so the models could not be checked before the run; it goes on",
        t.base_url,
        crate::secret::cut(why, 120)
    )
}

/// What the endpoint serves: OpenAI `GET /v1/models`, or Gemini's paged
/// `GET /v1beta/models`. Transport failures and refused keys are errors.
pub async fn served(t: &Target<'_>) -> Result<Served, PreflightError> {
    match t.dialect {
        Dialect::Openai => {
            let (status, body) = get(t, provider::endpoint(t.base_url, "/v1/models")).await?;
            if !status.is_success() {
                let call = refused(t, status, &body)?;
                return Ok(Served::NoList(call.detail()));
            }
            // {"object":"list","data":[{"id":"gpt-image-2",...}]} (wire-formats.md).
            let ids = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
                v.get("data")?
                    .as_array()
                    .map(|d| d.iter().filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned)).collect())
            });
            Ok(match ids {
                Some(ids) => Served::Models(ids),
                None => Served::NoList(format!("HTTP {status} without a `data` list")),
            })
        }
        Dialect::Gemini => gemini_list(t).await,
    }
}

/// `GET /v1beta/models?pageSize=1000[&pageToken=T]`, page after page.
async fn gemini_list(t: &Target<'_>) -> Result<Served, PreflightError> {
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut url = provider::endpoint(t.base_url, "/v1beta/models");
        url.query_pairs_mut().append_pair("pageSize", "1000");
        if let Some(tok) = &token {
            url.query_pairs_mut().append_pair("pageToken", tok);
        }
        let (status, body) = get(t, url).await?;
        if !status.is_success() {
            let call = refused(t, status, &body)?;
            return Ok(Served::NoList(call.detail()));
        }
        let Ok(v) = serde_json::from_slice::<Value>(&body) else {
            return Ok(Served::NoList(format!("HTTP {status}, not JSON")));
        };
        let page = v.get("models").and_then(Value::as_array).cloned().unwrap_or_default();
        names.extend(page.iter().filter_map(|m| m.get("name").and_then(Value::as_str)).map(|n| bare(n).to_owned()));
        token = v.get("nextPageToken").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    Ok(Served::Models(names))
}

fn bare(model: &str) -> &str {
    model.trim().trim_start_matches("models/")
}

fn is_json_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| {
        let v = if let Value::Array(items) = &v { items.first().cloned().unwrap_or(Value::Null) } else { v };
        v.get("error").is_some()
    })
}

/// A non-2xx answer as an error of the dialect; a refused key (or account) stops here.
fn refused(t: &Target<'_>, status: StatusCode, body: &[u8]) -> Result<CallError, PreflightError> {
    let headers = reqwest::header::HeaderMap::new();
    let mut call = match t.dialect {
        Dialect::Openai => provider::openai::classify(status, &headers, body),
        Dialect::Gemini => provider::gemini::classify(status, &headers, body),
    };
    if let Some(key) = t.key {
        call.message = key.mask(&call.message);
    }
    use crate::error::{Disposition, ErrorClass};
    if call.class.disposition() == Disposition::StopRun && call.class != ErrorClass::NotFound {
        return Err(PreflightError(format!(
            "{} refused the run before any paid call: {call}\n  what to do: {}",
            t.base_url,
            call.advice()
        )));
    }
    Ok(call)
}

/// The most bytes of a preflight answer: a model list is small (Gemini's 1000-model page
/// is well under 1 MiB), and the preflight knows nothing of `--max-response-bytes`.
const MAX_BODY: u64 = 16 << 20;

/// One GET with the key, the body read whole (at most [`MAX_BODY`]). A redirect is not
/// followed (`http::client`) and stops the run: the key would go where it points.
async fn get(t: &Target<'_>, url: Url) -> Result<(StatusCode, Vec<u8>), PreflightError> {
    let mut req = t.client.get(url.clone()).timeout(REQUEST_TIMEOUT);
    if let Some(key) = t.key {
        req = match t.dialect {
            Dialect::Openai => req.bearer_auth(key.expose()),
            Dialect::Gemini => req.header("x-goog-api-key", key.expose()),
        };
    }
    let unreachable = |e: reqwest::Error| PreflightError(unreachable_text(&url, &e));
    let resp = req.send().await.map_err(unreachable)?;
    let status = resp.status();
    if let Some(e) = crate::http::refused_redirect(&resp) {
        return Err(PreflightError(format!(
            "{} refused the run before any paid call: {e}\n  what to do: {}",
            t.base_url,
            e.advice()
        )));
    }
    let body = crate::http::read_body(resp, MAX_BODY).await.map_err(|e| match e {
        crate::http::BodyError::Transport(e) => unreachable(e),
        too_large => PreflightError(format!(
            "{}. Nothing was sent; if this endpoint is right, skip the check with --no-preflight",
            too_large.describe(&format!("the answer of {url}"), "the preflight's limit of")
        )),
    })?;
    if crate::http::tls_port_page(&url, status, &body) {
        let cause = crate::http::SchemeMismatch::TlsPort.describe(&url);
        return Err(PreflightError(format!("cannot reach {}: {cause}. Nothing was sent", url.as_str())));
    }
    Ok((status, body))
}

/// "cannot reach URL: CAUSE", with the likely cause named from the error chain.
pub fn unreachable_text(url: &Url, e: &reqwest::Error) -> String {
    let mut chain = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    let detail = chain.last().cloned().unwrap_or_default();
    let all = chain.join(": ").to_ascii_lowercase();
    let host = url.host_str().unwrap_or("?");
    let port = url.port_or_known_default().map(|p| p.to_string()).unwrap_or_default();
    let cause = if let Some(mismatch) = crate::http::scheme_mismatch(e) {
        mismatch.describe(url)
    } else if e.is_timeout() {
        format!("no answer within {}s: a wrong host, or a firewall that drops the packets", REQUEST_TIMEOUT.as_secs())
    } else if ["dns error", "failed to lookup", "name or service not known", "no such host", "nodename nor servname"]
        .iter()
        .any(|s| all.contains(s))
    {
        format!("the host name {host} does not resolve: a typo in --base-url?")
    } else if all.contains("connection refused") {
        format!("nothing accepts connections at {host}:{port}: a wrong port, or the server is not running")
    } else if url.scheme() == "https"
        && ["tls", "handshake", "certificate", "invalidmessage", "alert"].iter().any(|s| all.contains(s))
    {
        format!(
            "the TLS handshake with {host}:{port} failed ({detail}): check the server's certificate, and that this \
             port speaks TLS at all (if it speaks plain HTTP, use http://)"
        )
    } else if url.scheme() == "http" && (all.contains("closed") || all.contains("reset")) {
        format!("{host}:{port} closed the connection: if that port speaks HTTPS, write https://")
    } else {
        detail.clone()
    };
    format!("cannot reach {}: {cause}. Nothing was sent", url.as_str())
}
