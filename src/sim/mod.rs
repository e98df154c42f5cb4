//! The built-in simulated provider: an OpenAI-compatible image endpoint on loopback with
//! the latency of the real thing (scaled by a time factor), faults injected at chosen
//! rates, a key check, real PNG bytes that name their prompt, and counters that tests
//! read to prove what the runner did (calls per prompt, successes per prompt, most calls
//! in flight at once, arrival times).
//!
//! `bulkgen sim` serves it on its own; `bulkgen run --simulate` starts one in-process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::size::Size;

pub mod latency;
pub mod png;

pub use png::{prompt_tag, read_tag};

/// A fault the simulator injects at a given rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Fault {
    /// 429 rate_limit_exceeded with `retry-after` and `retry-after-ms`.
    RateLimited,
    /// 503 "The model is overloaded".
    Overloaded,
    /// 500 internal error.
    Server,
    /// Never answers (well past any deadline).
    Stall,
    /// Sends half the body, then drops the connection.
    Reset,
    /// 200 with a body that is not JSON.
    BadJson,
    /// 400 content_policy_violation.
    Refuse,
    /// The first download of a result URL fails with 500 (url mode).
    Download,
}

impl Fault {
    pub const ALL: [(&'static str, Fault); 8] = [
        ("429", Fault::RateLimited),
        ("503", Fault::Overloaded),
        ("500", Fault::Server),
        ("stall", Fault::Stall),
        ("reset", Fault::Reset),
        ("badjson", Fault::BadJson),
        ("refuse", Fault::Refuse),
        ("download", Fault::Download),
    ];

    pub fn name(self) -> &'static str {
        Fault::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// `KIND=RATE`, e.g. `429=0.05`.
pub fn parse_fault(spec: &str) -> Result<(Fault, f64), String> {
    let names = || {
        Fault::ALL
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (kind, rate) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec:?}: write KIND=RATE, e.g. 429=0.05"))?;
    let fault = Fault::ALL
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(kind.trim()))
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("{spec:?}: unknown fault {kind:?} (known: {})", names()))?;
    let rate: f64 = rate
        .trim()
        .parse()
        .map_err(|_| format!("{spec:?}: rate {rate:?} is not a number"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("{spec:?}: rate must be between 0 and 1"));
    }
    Ok((fault, rate))
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Multiplies every simulated duration (latency, Retry-After advice).
    pub time_scale: f64,
    pub faults: Vec<(Fault, f64)>,
    pub seed: u64,
    /// The key callers must present; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// Size of each PNG, in bytes (about).
    pub image_bytes: usize,
    /// The Retry-After advice sent with a 429, in simulated time.
    pub retry_after: Duration,
    /// Replaces the latency model with a fixed latency (simulated time), for tests.
    pub fixed_latency: Option<Duration>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            time_scale: 0.01,
            faults: Vec::new(),
            seed: 1,
            api_key: None,
            image_bytes: 16 * 1024,
            retry_after: Duration::from_secs(20),
            fixed_latency: None,
        }
    }
}

/// Counters of one prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PromptCount {
    /// Generation requests that reached the handler (including refused keys).
    pub requests: u64,
    /// Images the simulator handed out for this prompt.
    pub successes: u64,
}

/// What the simulator saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimStats {
    pub requests: u64,
    pub successes: u64,
    pub auth_failures: u64,
    pub downloads: u64,
    pub download_failures: u64,
    pub max_in_flight: usize,
    /// Keyed by [`prompt_tag`] of the prompt.
    pub per_prompt: HashMap<String, PromptCount>,
    /// Injected faults by name.
    pub faults: HashMap<String, u64>,
    /// Arrival time of every generation request, since the simulator started.
    pub arrivals: Vec<Duration>,
}

struct Shared {
    cfg: SimConfig,
    started: Instant,
    rng: Mutex<StdRng>,
    in_flight: AtomicUsize,
    next_image: AtomicU64,
    stats: Mutex<SimStats>,
    /// Images waiting to be downloaded (url mode), with "fail the first fetch" marks.
    files: Mutex<HashMap<String, (Vec<u8>, bool)>>,
}

/// A running simulator. Dropping it stops the server.
pub struct SimServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl SimServer {
    pub async fn start(cfg: SimConfig, listen: SocketAddr) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            rng: Mutex::new(StdRng::seed_from_u64(cfg.seed)),
            cfg,
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            next_image: AtomicU64::new(0),
            stats: Mutex::new(SimStats::default()),
            files: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/v1/images/generations", post(generate))
            .route("/files/{name}", get(download))
            .route("/_sim/stats", get(stats))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(SimServer { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API root to give bulkgen's `--base-url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats.lock().expect("stats lock").clone()
    }

    pub fn stop(self) {}
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Decrements the in-flight count however the handler ends (also when the client hangs
/// up and the handler is dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(serde::Deserialize)]
struct GenerateRequest {
    #[serde(default)]
    model: String,
    prompt: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    response_format: Option<String>,
}

fn error_json(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    let body = serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn generate(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let arrived = s.started.elapsed();
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&s.in_flight);
    let req: Result<GenerateRequest, _> = serde_json::from_slice(&body);
    let tag = req
        .as_ref()
        .map(|r| prompt_tag(&r.prompt))
        .unwrap_or_default();
    {
        let mut st = s.stats.lock().expect("stats lock");
        st.requests += 1;
        st.max_in_flight = st.max_in_flight.max(now);
        st.arrivals.push(arrived);
        st.per_prompt.entry(tag.clone()).or_default().requests += 1;
    }

    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let key_ok = match &s.cfg.api_key {
        Some(k) => presented == k,
        None => !presented.is_empty(),
    };
    if !key_ok {
        s.stats.lock().expect("stats lock").auth_failures += 1;
        // Real providers quote (part of) the key back; quoting all of it tests masking.
        return error_json(
            StatusCode::UNAUTHORIZED,
            &format!(
                "Incorrect API key provided: {presented}. You can find your API key in your account settings."
            ),
            "invalid_request_error",
            "invalid_api_key",
        );
    }
    let Ok(req) = req else {
        return error_json(
            StatusCode::BAD_REQUEST,
            "could not parse the JSON body",
            "invalid_request_error",
            "",
        );
    };
    let resolution = req
        .size
        .as_deref()
        .and_then(|s| s.parse::<Size>().ok())
        .map(Size::resolution);
    let Some(resolution) = resolution else {
        return error_json(
            StatusCode::BAD_REQUEST,
            "Invalid size",
            "invalid_request_error",
            "invalid_size",
        );
    };

    let (fault, latency, fail_download) = {
        let mut rng = s.rng.lock().expect("rng lock");
        let mut u: f64 = rng.random();
        let mut fault = None;
        for (f, rate) in s.cfg.faults.iter().filter(|(f, _)| *f != Fault::Download) {
            if u < *rate {
                fault = Some(*f);
                break;
            }
            u -= rate;
        }
        let latency = match s.cfg.fixed_latency {
            Some(d) => d.as_secs_f64(),
            None => latency::model(resolution).sample(&mut *rng),
        };
        let download_rate = s
            .cfg
            .faults
            .iter()
            .filter(|(f, _)| *f == Fault::Download)
            .map(|(_, r)| *r)
            .sum::<f64>();
        (fault, latency, rng.random::<f64>() < download_rate)
    };
    if let Some(f) = fault {
        *s.stats
            .lock()
            .expect("stats lock")
            .faults
            .entry(f.name().to_owned())
            .or_default() += 1;
    }
    let scaled = |secs: f64| Duration::from_secs_f64((secs * s.cfg.time_scale).max(0.0));
    let pause = |d: Duration| async move {
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    };

    match fault {
        Some(Fault::RateLimited) => {
            let after = scaled(s.cfg.retry_after.as_secs_f64());
            let mut resp = error_json(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached for images per minute. Please try again later.",
                "requests",
                "rate_limit_exceeded",
            );
            let h = resp.headers_mut();
            h.insert(
                "retry-after",
                after
                    .as_secs_f64()
                    .ceil()
                    .to_string()
                    .parse()
                    .expect("number"),
            );
            h.insert(
                "retry-after-ms",
                after.as_millis().to_string().parse().expect("number"),
            );
            return resp;
        }
        Some(Fault::Overloaded) => {
            return error_json(
                StatusCode::SERVICE_UNAVAILABLE,
                "The model is overloaded. Please try again later.",
                "server_error",
                "model_overloaded",
            );
        }
        Some(Fault::Server) => {
            pause(scaled(latency / 2.0)).await;
            return error_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
                "server_error",
                "",
            );
        }
        Some(Fault::Stall) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Some(Fault::Refuse) => {
            pause(scaled(latency / 4.0)).await;
            return error_json(
                StatusCode::BAD_REQUEST,
                "Your request was rejected as a result of our safety system.",
                "invalid_request_error",
                "content_policy_violation",
            );
        }
        _ => pause(scaled(latency)).await,
    }

    if fault == Some(Fault::BadJson) {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"created\": 1, \"data\": [{\"b64_",
        )
            .into_response();
    }
    let n = s.next_image.fetch_add(1, Ordering::SeqCst);
    let text = format!(
        "prompt={tag};model={};size={};n={n}",
        req.model,
        req.size.as_deref().unwrap_or("")
    );
    let seed = u64::from_str_radix(&tag, 16).unwrap_or(n);
    let image = png::make(s.cfg.image_bytes, seed, &text);
    let datum = if req.response_format.as_deref() == Some("url") {
        let name = format!("{n}.png");
        s.files
            .lock()
            .expect("files lock")
            .insert(name.clone(), (image, fail_download));
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        serde_json::json!({"url": format!("http://{host}/files/{name}")})
    } else {
        serde_json::json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(&image)})
    };
    let body = serde_json::json!({"created": 1_713_833_628u64, "data": [datum]}).to_string();

    if fault == Some(Fault::Reset) {
        let half = body.as_bytes()[..body.len() / 2].to_vec();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "simulated reset",
            )),
        ];
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .expect("valid response");
    }
    {
        let mut st = s.stats.lock().expect("stats lock");
        st.successes += 1;
        st.per_prompt.entry(tag).or_default().successes += 1;
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn download(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let mut files = s.files.lock().expect("files lock");
    let mut st = s.stats.lock().expect("stats lock");
    st.downloads += 1;
    match files.get_mut(&name) {
        Some((_, fail_first)) if *fail_first => {
            *fail_first = false;
            st.download_failures += 1;
            (StatusCode::INTERNAL_SERVER_ERROR, "simulated storage error").into_response()
        }
        Some((image, _)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "image/png")],
            image.clone(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    let st = s.stats.lock().expect("stats lock").clone();
    axum::Json(st).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_bad_ones_are_named() {
        assert_eq!(parse_fault("429=0.05"), Ok((Fault::RateLimited, 0.05)));
        assert_eq!(parse_fault("STALL=1"), Ok((Fault::Stall, 1.0)));
        assert!(
            parse_fault("418=0.1")
                .unwrap_err()
                .contains("unknown fault")
        );
        assert!(
            parse_fault("503=2")
                .unwrap_err()
                .contains("between 0 and 1")
        );
        assert!(parse_fault("503").unwrap_err().contains("KIND=RATE"));
    }
}
