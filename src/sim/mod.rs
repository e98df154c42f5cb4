//! The built-in simulated provider: an OpenAI-compatible image endpoint on loopback with
//! the latency of the real thing (scaled by a time factor), faults injected at chosen
//! rates, a key check, real PNG bytes that name their prompt, and counters that tests
//! read to prove what the runner did (calls per prompt, successes per prompt, most calls
//! in flight at once, arrival times).
//!
//! It is as strict as the real APIs: what each model accepts (sizes, `response_format`,
//! image sizes and aspect ratios), which models are served and which are shut down, and
//! the error bodies come from `tests/sdk/fixtures.json`, made with the providers' official
//! SDKs ([`rules`]), never from bulkgen's own tables. It also answers the model-list
//! endpoints a preflight asks ([`listing`]).
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
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::size::Resolution;

pub mod latency;
mod listing;
pub mod png;
pub mod rules;
mod wire;

use rules::{Dialect, FIXTURES};
use wire::Wire;

pub use png::{prompt_tag, read_tag};

/// A fault the simulator injects at a given rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Fault {
    /// 429 with the dialect's retry advice (`retry-after` headers, or RetryInfo).
    RateLimited,
    /// 429 insufficient_quota / a per-day QuotaFailure: the account is out.
    Quota,
    /// 503 "The model is overloaded".
    Overloaded,
    /// 500 internal error.
    Server,
    /// 502 from a proxy, with an HTML body.
    BadGateway,
    /// 504.
    GatewayTimeout,
    /// Never answers (well past any deadline).
    Stall,
    /// Sends half the body, then drops the connection.
    Reset,
    /// 200 with JSON cut short.
    BadJson,
    /// 200 with an HTML page instead of JSON.
    Html,
    /// 200 with no image in it.
    NoImage,
    /// 200 whose base64 does not decode.
    BadBase64,
    /// A safety refusal.
    Refuse,
    /// The first download of a result URL fails with 500 (url mode).
    Download,
}

impl Fault {
    pub const ALL: [(&'static str, Fault); 14] = [
        ("429", Fault::RateLimited),
        ("quota", Fault::Quota),
        ("503", Fault::Overloaded),
        ("500", Fault::Server),
        ("502", Fault::BadGateway),
        ("504", Fault::GatewayTimeout),
        ("stall", Fault::Stall),
        ("reset", Fault::Reset),
        ("badjson", Fault::BadJson),
        ("html", Fault::Html),
        ("noimage", Fault::NoImage),
        ("badbase64", Fault::BadBase64),
        ("refuse", Fault::Refuse),
        ("download", Fault::Download),
    ];

    pub fn name(self) -> &'static str {
        Fault::ALL.iter().find(|(_, f)| *f == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// A fault, the rate it is injected at, and optionally the one model it hits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultSpec {
    pub fault: Fault,
    pub rate: f64,
    pub model: Option<String>,
}

impl FaultSpec {
    pub fn new(fault: Fault, rate: f64) -> FaultSpec {
        FaultSpec { fault, rate, model: None }
    }

    fn applies_to(&self, model: &str) -> bool {
        self.model.as_deref().is_none_or(|m| m == model)
    }
}

/// `KIND[@MODEL]=RATE`, e.g. `429=0.05` or `503@gemini-3-pro-image-preview=1`.
pub fn parse_fault(spec: &str) -> Result<FaultSpec, String> {
    let names = || Fault::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    let (kind, rate) =
        spec.rsplit_once('=').ok_or_else(|| format!("{spec:?}: write KIND=RATE or KIND@MODEL=RATE, e.g. 429=0.05"))?;
    let (kind, model) = match kind.split_once('@') {
        Some((k, m)) => (k, Some(m.trim().to_owned())),
        None => (kind, None),
    };
    let fault = Fault::ALL
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(kind.trim()))
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("{spec:?}: unknown fault {kind:?} (known: {})", names()))?;
    let rate: f64 = rate.trim().parse().map_err(|_| format!("{spec:?}: rate {rate:?} is not a number"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("{spec:?}: rate must be between 0 and 1"));
    }
    Ok(FaultSpec { fault, rate, model })
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Multiplies every simulated duration (latency, Retry-After advice).
    pub time_scale: f64,
    pub faults: Vec<FaultSpec>,
    pub seed: u64,
    /// The key callers must present; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// Size of each PNG, in bytes (about).
    pub image_bytes: usize,
    /// The Retry-After advice sent with a 429, in simulated time.
    pub retry_after: Duration,
    /// Replaces the latency model with a fixed latency (simulated time), for tests.
    pub fixed_latency: Option<Duration>,
    /// The models it serves; others get the provider's 404. `None` serves the default
    /// set: the fixtures' active and deprecated-but-not-yet-shut-down models and the
    /// aggregator's names. A list serves exactly those names; names the fixtures do not
    /// know (a test's `primary`, `backup`) take any size and `response_format`.
    pub models: Option<Vec<String>>,
    /// The first request of every prompt gets this fault (deterministic tests).
    pub fail_first: Option<Fault>,
    /// How long a download of a result URL takes (real time).
    pub download_latency: Duration,
    /// Whether the model-list and model-get endpoints exist. `false` answers each with a
    /// plain-text 404, like an aggregator that lacks them.
    pub list_endpoint: bool,
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
            models: None,
            fail_first: None,
            download_latency: Duration::ZERO,
            list_endpoint: true,
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
    pub max_downloads_in_flight: usize,
    /// Keyed by [`prompt_tag`] of the prompt.
    pub per_prompt: HashMap<String, PromptCount>,
    /// Injected faults by name.
    pub faults: HashMap<String, u64>,
    /// Images handed out per model.
    pub per_model: HashMap<String, u64>,
    /// Arrival time of every generation request, since the simulator started.
    pub arrivals: Vec<Duration>,
    /// Request path and JSON body of the first [`MAX_BODIES`] generation requests, as
    /// received (a body that is not JSON is kept as a string), so tests can prove what
    /// bulkgen sent.
    pub bodies: Vec<(String, Value)>,
    /// Calls to the model-list and model-get endpoints (whatever their answer).
    pub list_requests: u64,
}

/// How many generation bodies [`SimStats::bodies`] keeps.
pub const MAX_BODIES: usize = 10_000;

struct Shared {
    cfg: SimConfig,
    /// The model names served (see [`SimConfig::models`]).
    served: Vec<String>,
    started: Instant,
    rng: Mutex<StdRng>,
    in_flight: AtomicUsize,
    downloads_in_flight: AtomicUsize,
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
        let served = cfg.models.clone().unwrap_or_else(|| FIXTURES.default_served());
        let shared = Arc::new(Shared {
            served,
            rng: Mutex::new(StdRng::seed_from_u64(cfg.seed)),
            cfg,
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            downloads_in_flight: AtomicUsize::new(0),
            next_image: AtomicU64::new(0),
            stats: Mutex::new(SimStats::default()),
            files: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/v1/images/generations", post(generate_openai))
            // Google's OpenAI-compatible root: the OpenAI SDK posts `{root}images/generations`.
            .route("/v1beta/openai/images/generations", post(generate_openai))
            .route("/v1beta/models/{model_action}", post(generate_gemini).get(listing::gemini_get_v1beta))
            // google-genai 3.x defaults to API version v1 (tests/sdk/fixtures.json,
            // gemini.default_api_version): the same paths under /v1. A GET there is told
            // from OpenAI's by the key's header.
            .route("/v1/models/{model_action}", post(generate_gemini).get(listing::get_v1))
            .route("/v1/models", get(listing::list_v1))
            .route("/v1beta/models", get(listing::gemini_list_v1beta))
            .route("/v1beta/openai/models", get(listing::openai_list))
            .route("/v1beta/openai/models/{id}", get(listing::openai_get))
            .route("/files/{name}", get(download))
            .route("/_sim/stats", get(stats))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(SimServer { addr, shared, task })
    }

    /// The API root to give bulkgen's `--base-url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats.lock().expect("stats lock").clone()
    }
}

impl Shared {
    fn key_ok(&self, key: &str) -> bool {
        match &self.cfg.api_key {
            Some(k) => key == k,
            None => !key.is_empty(),
        }
    }

    fn serves(&self, model: &str) -> bool {
        self.served.iter().any(|m| m == model)
    }
}

/// The latency class of a requested size, by the simulator's own small mapping (not
/// bulkgen's size tables): `512` and `1K` render like 1K; `WxH` by pixel count, up to
/// 2.1 MP as 1K, up to 8.4 MP as 2K, above as 4K. Anything else (`auto`, none) as 1K.
fn latency_class(size: &str) -> Resolution {
    match size.trim().to_ascii_uppercase().as_str() {
        "2K" => Resolution::K2,
        "4K" => Resolution::K4,
        other => match rules::parse_wxh(&other.to_ascii_lowercase()) {
            Some((w, h)) if u64::from(w) * u64::from(h) > 8_400_000 => Resolution::K4,
            Some((w, h)) if u64::from(w) * u64::from(h) > 2_100_000 => Resolution::K2,
            _ => Resolution::K1,
        },
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Decrements the in-flight count however the handler ends (also when the client hangs
/// up and the handler is dropped).
/// One request counted in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Counts one more in flight; also returns how many are now.
    fn enter(counter: &'a AtomicUsize) -> (InFlight<'a>, usize) {
        let now = counter.fetch_add(1, Ordering::SeqCst) + 1;
        (InFlight(counter), now)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn generate_openai(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    serve(&s, Wire::OpenAi, uri.path(), None, &headers, &body).await
}

async fn generate_gemini(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    Path(model_action): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    serve(&s, Wire::Gemini, uri.path(), Some(&model_action), &headers, &body).await
}

/// The Gemini API version a path is under (`v1beta` or `v1`), for the 404 text.
fn api_version(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or("v1beta")
}

/// One generation request, in either dialect: bookkeeping, key and model checks, the
/// model's acceptance rules, the fault and latency draws, then the answer.
async fn serve(
    s: &Shared,
    wire: Wire,
    path: &str,
    model_path: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let arrived = s.started.elapsed();
    let (_guard, now) = InFlight::enter(&s.in_flight);
    let json: Result<Value, String> =
        serde_json::from_slice(body).map_err(|e| format!("could not parse the JSON body: {e}"));
    let req = json.clone().and_then(|v| wire.parse(model_path, headers, &v));
    let tag = req.as_ref().map(|r| prompt_tag(&r.prompt)).unwrap_or_default();
    let first_of_prompt = {
        let mut st = s.stats.lock().expect("stats lock");
        st.requests += 1;
        st.max_in_flight = st.max_in_flight.max(now);
        st.arrivals.push(arrived);
        if st.bodies.len() < MAX_BODIES {
            let kept = json.clone().unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
            st.bodies.push((path.to_owned(), kept));
        }
        let count = st.per_prompt.entry(tag.clone()).or_default();
        count.requests += 1;
        count.requests == 1
    };
    let (req, json) = match (req, json) {
        (Ok(r), Ok(v)) => (r, v),
        (Err(why), _) | (_, Err(why)) => return wire.bad_request(&why),
    };
    if !s.key_ok(&req.key) {
        s.stats.lock().expect("stats lock").auth_failures += 1;
        return wire.bad_key(&req.key);
    }
    let known = FIXTURES.model(&req.model);
    // Google serves none of OpenAI's models on generateContent.
    let wrong_dialect = wire == Wire::Gemini && known.is_some_and(|m| m.dialect == Dialect::Openai);
    if !s.serves(&req.model) || wrong_dialect {
        return wire.unknown_model(&req.model, api_version(path));
    }
    let checked = match wire {
        Wire::OpenAi => FIXTURES.check_openai(known, &json),
        Wire::Gemini => FIXTURES.check_gemini(known, &json),
    };
    if let Err(refusal) = checked {
        return Wire::refusal(&refusal);
    }
    let resolution = latency_class(&req.size);

    let (fault, latency, fail_download, alternate) = {
        let mut rng = s.rng.lock().expect("rng lock");
        let mut u: f64 = rng.random();
        let mut fault = None;
        let applicable = s.cfg.faults.iter().filter(|f| f.fault != Fault::Download && f.applies_to(&req.model));
        for f in applicable {
            if u < f.rate {
                fault = Some(f.fault);
                break;
            }
            u -= f.rate;
        }
        let latency = match s.cfg.fixed_latency {
            Some(d) => d.as_secs_f64(),
            None => latency::model(resolution).sample(&mut *rng),
        };
        let download_rate = s
            .cfg
            .faults
            .iter()
            .filter(|f| f.fault == Fault::Download && f.applies_to(&req.model))
            .map(|f| f.rate)
            .sum::<f64>();
        let fault = if first_of_prompt { s.cfg.fail_first.or(fault) } else { fault };
        (fault, latency, rng.random::<f64>() < download_rate, rng.random::<bool>())
    };
    if let Some(f) = fault {
        *s.stats.lock().expect("stats lock").faults.entry(f.name().to_owned()).or_default() += 1;
    }
    let scaled = |secs: f64| Duration::from_secs_f64((secs * s.cfg.time_scale).max(0.0));
    let pause = |d: Duration| async move {
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    };

    // Errors that come back at once, as overload and limits do in practice.
    match fault {
        Some(Fault::RateLimited) => return wire.rate_limited(scaled(s.cfg.retry_after.as_secs_f64())),
        Some(Fault::Quota) => return wire.quota(),
        Some(Fault::Overloaded) => return wire.overloaded(),
        Some(Fault::Stall) => tokio::time::sleep(Duration::from_secs(3600)).await,
        _ => {}
    }
    // The rest take (part of) a render.
    match fault {
        Some(Fault::Server) => {
            pause(scaled(latency / 2.0)).await;
            return wire.server_error(500);
        }
        Some(Fault::BadGateway) => {
            pause(scaled(latency / 2.0)).await;
            return wire.server_error(502);
        }
        Some(Fault::GatewayTimeout) => {
            pause(scaled(latency)).await;
            return wire.server_error(504);
        }
        Some(Fault::Refuse) => {
            pause(scaled(latency / 4.0)).await;
            return wire.refused(alternate);
        }
        _ => pause(scaled(latency)).await,
    }
    match fault {
        Some(Fault::BadJson) => {
            return wire::json_response(StatusCode::OK, "{\"created\": 1, \"data\": [{\"b64_".into());
        }
        Some(Fault::Html) => {
            return wire::html(StatusCode::OK, "<html><body>Service temporarily unavailable</body></html>");
        }
        Some(Fault::NoImage) => return wire.no_image(),
        Some(Fault::BadBase64) => return wire::json_response(StatusCode::OK, wire.bad_base64()),
        _ => {}
    }

    let n = s.next_image.fetch_add(1, Ordering::SeqCst);
    let text = format!("prompt={tag};model={};size={};n={n}", req.model, req.size);
    let seed = u64::from_str_radix(&tag, 16).unwrap_or(n);
    let image = png::make(s.cfg.image_bytes, seed, &text);
    let url = req.url_mode.then(|| {
        let name = format!("{n}.png");
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
        (format!("http://{host}/files/{name}"), name)
    });
    let draft = if wire == Wire::Gemini { png::make(64, n, "prompt=draft") } else { Vec::new() };
    let body = match &url {
        Some((url, _)) => wire.success(wire::Image::Url(url), &draft, &req.model, n),
        None => wire.success(wire::Image::Png(&image), &draft, &req.model, n),
    };
    if let Some((_, name)) = url {
        s.files.lock().expect("files lock").insert(name, (image, fail_download));
    }

    if fault == Some(Fault::Reset) {
        // Headers and half the body go out; a moment later the connection drops.
        let half = body.as_bytes()[..body.len() / 2].to_vec();
        let chunks = futures::stream::unfold(Some(half), |half| async move {
            match half {
                Some(h) => Some((Ok(h), None)),
                None => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some((Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated reset")), None))
                }
            }
        });
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from_stream(chunks))
            .expect("valid response");
    }
    {
        let mut st = s.stats.lock().expect("stats lock");
        st.successes += 1;
        st.per_prompt.entry(tag).or_default().successes += 1;
        *st.per_model.entry(req.model.clone()).or_default() += 1;
    }
    wire::json_response(StatusCode::OK, body)
}

async fn download(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let (_guard, now) = InFlight::enter(&s.downloads_in_flight);
    {
        let mut st = s.stats.lock().expect("stats lock");
        st.downloads += 1;
        st.max_downloads_in_flight = st.max_downloads_in_flight.max(now);
    }
    if !s.cfg.download_latency.is_zero() {
        tokio::time::sleep(s.cfg.download_latency).await;
    }
    let mut files = s.files.lock().expect("files lock");
    match files.get_mut(&name) {
        Some((_, fail_first)) if *fail_first => {
            *fail_first = false;
            s.stats.lock().expect("stats lock").download_failures += 1;
            (StatusCode::INTERNAL_SERVER_ERROR, "simulated storage error").into_response()
        }
        Some((image, _)) => (StatusCode::OK, [(header::CONTENT_TYPE, "image/png")], image.clone()).into_response(),
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
        assert_eq!(parse_fault("429=0.05"), Ok(FaultSpec::new(Fault::RateLimited, 0.05)));
        assert_eq!(parse_fault("STALL=1"), Ok(FaultSpec::new(Fault::Stall, 1.0)));
        assert_eq!(
            parse_fault("503@gemini-3-pro-image-preview=1"),
            Ok(FaultSpec { fault: Fault::Overloaded, rate: 1.0, model: Some("gemini-3-pro-image-preview".into()) })
        );
        assert!(parse_fault("418=0.1").unwrap_err().contains("unknown fault"));
        assert!(parse_fault("503=2").unwrap_err().contains("between 0 and 1"));
        assert!(parse_fault("503").unwrap_err().contains("KIND=RATE"));
    }

    #[test]
    fn latency_classes_come_from_the_simulators_own_mapping() {
        for (size, class) in [
            ("512", Resolution::K1),
            ("1K", Resolution::K1),
            ("2K", Resolution::K2),
            ("4K", Resolution::K4),
            ("1024x1024", Resolution::K1),
            ("2048x1024", Resolution::K1),
            ("2048x2048", Resolution::K2),
            ("3840x2160", Resolution::K2),
            ("4096x4096", Resolution::K4),
            ("auto", Resolution::K1),
            ("", Resolution::K1),
        ] {
            assert_eq!(latency_class(size), class, "{size}");
        }
    }
}
