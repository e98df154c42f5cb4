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
//! Reference images: the Gemini Files API ([`files`]: resumable upload, get, delete;
//! only hashes are kept, and the lines of JSONL batch inputs), `inlineData`/`fileData` parts in `generateContent`, and OpenAI's
//! multipart `/v1/images/edits` ([`edits`]). Every image handed out names, in its PNG tag,
//! the sha256 of each reference and of the mask it was made from ([`read_refs`]).
//!
//! Batch APIs ([`batch`]): Gemini's `batchGenerateContent` jobs (input uploaded through
//! the Files API above, results downloaded as JSONL) and OpenAI's `/v1/batches` with its
//! Files API ([`openai_files`]), on a compressed timeline (`batch_*` knobs, scaled by the
//! time scale), each line checked and answered like an online request.
//!
//! `bulkgen sim` serves it on its own; `bulkgen run --simulate` starts one in-process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
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

mod batch;
mod edits;
mod files;
pub mod latency;
mod listing;
mod openai_files;
pub mod png;
pub mod refs;
pub mod rules;
mod wire;

use rules::{Dialect, FIXTURES, Model};
use wire::Wire;

pub use batch::SimBatchJob;
pub use png::{prompt_tag, read_refs, read_tag};
pub use wire::SIM_REVISED_PROMPT;

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
    /// How long an uploaded file lives, in simulated time (scaled by `time_scale`, except
    /// at time scale 0, where it is taken as real time). Default: the Files API's 48 h
    /// (tests/sdk/fixtures.json).
    pub file_ttl: Duration,
    /// After the N-th generation request that carries a `fileData` part, the simulator
    /// forgets every uploaded file, once (as if expired or deleted): later `fileData`
    /// naming them get the real 403 until they are uploaded again.
    pub forget_files_after: Option<u64>,
    /// Overrides the per-file limit of references (an edit's image or mask, a Files API
    /// upload) for tests; `None`: each model's limit from the fixtures.
    pub max_reference_bytes: Option<u64>,
    /// The largest JSON generation body read. Default: the largest inline Gemini request
    /// the fixtures allow (100 MB). A Gemini body over it gets Google's 400, an OpenAI one
    /// a 413.
    pub max_json_body: usize,
    /// How long the Files APIs (Gemini's finalized upload, OpenAI's `/v1/files`) take to
    /// answer (real time), so tests can kill a run while an upload is in flight.
    pub upload_latency: Duration,
    /// How long a batch job waits in PENDING (`validating`), in simulated time. Default
    /// 2 min.
    pub batch_pending: Duration,
    /// How long it runs (RUNNING, `in_progress`), in simulated time; its lines finish
    /// evenly over it, in a seeded random order. OpenAI's `finalizing` then lasts a tenth
    /// of it. Default 5 min. At time scale 0 a job finishes as it is created.
    pub batch_running: Duration,
    /// How long OpenAI's `cancelling` lasts, in simulated time. Default 1 min (the SDK
    /// says "up to 10 minutes").
    pub batch_cancelling: Duration,
    /// When a job not yet finished expires, in simulated time after its creation. `None`
    /// (default): each dialect's own, Gemini's 48 h (tests/sdk/fixtures.json) and OpenAI's
    /// completion window (`24h`). An expired Gemini job has no results; an expired OpenAI
    /// batch has its finished lines in its output and error files and the rest as
    /// `batch_expired` lines in its error file.
    pub batch_expiry: Option<Duration>,
    /// The first N jobs created (both dialects, in creation order) stay PENDING
    /// (`validating`) until they expire. Default 0.
    pub stuck_jobs: u64,
    /// The N jobs created after the stuck ones fail when PENDING ends, with a job error.
    /// Default 0.
    pub fail_jobs: u64,
    /// Real time a batch create waits after the job exists and is listed, before it
    /// answers (a client killed then never hears of its job). Default 0.
    pub create_latency: Duration,
    /// Real time before each line of a result file is sent. Default 0.
    pub result_latency: Duration,
    /// Jobs in flight (not ended) per dialect. Over it, Gemini answers 429
    /// RESOURCE_EXHAUSTED and makes no job; OpenAI makes the batch, which fails with
    /// `token_limit_exceeded`. Default: Gemini's 100 (tests/sdk/fixtures.json).
    pub max_batch_jobs: u64,
    /// The most jobs a list page holds, below each dialect's own maximum (OpenAI 100,
    /// Gemini 100), so tests can make paging happen. `None` (default): the dialect's.
    pub batch_page_max: Option<usize>,
    /// A batch line whose prompt contains the string gets the fault, every time (faults
    /// that make sense for a line: refuse, 500, 503, 429, noimage, badbase64).
    pub line_faults: Vec<(String, Fault)>,
    /// Overrides the requests an OpenAI batch file may hold (50,000), for tests.
    pub batch_max_lines: Option<u64>,
    /// Overrides the bytes an OpenAI batch file may hold (200 MB), for tests.
    pub batch_max_bytes: Option<u64>,
    /// An OpenAI-compatible relay that ignores `n`: answers hold at most this many images
    /// whatever was asked (None: as many as `n` asks).
    pub max_images_per_answer: Option<usize>,
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
            file_ttl: Duration::from_secs(FIXTURES.files.ttl_hours * 3600),
            forget_files_after: None,
            max_reference_bytes: None,
            max_json_body: usize::try_from(FIXTURES.files.max_request_bytes).unwrap_or(usize::MAX),
            upload_latency: Duration::ZERO,
            batch_pending: Duration::from_secs(120),
            batch_running: Duration::from_secs(300),
            batch_cancelling: Duration::from_secs(60),
            batch_expiry: None,
            stuck_jobs: 0,
            fail_jobs: 0,
            create_latency: Duration::ZERO,
            result_latency: Duration::ZERO,
            max_batch_jobs: FIXTURES.batch.gemini_max_concurrent_jobs,
            batch_page_max: None,
            line_faults: Vec::new(),
            batch_max_lines: None,
            batch_max_bytes: None,
            max_images_per_answer: None,
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
    /// Files API uploads started (`X-Goog-Upload-Command: start`, whatever the answer).
    pub upload_starts: u64,
    /// Uploads finalized (files created).
    pub uploads: u64,
    /// Bytes of the finalized uploads.
    pub upload_bytes: u64,
    /// `files.get` calls.
    pub file_gets: u64,
    /// 403s for a file that is gone (missing, deleted, expired, forgotten), from
    /// `fileData` parts and `files.get`.
    pub files_gone: u64,
    /// Edit requests (`/images/edits`), whatever their answer; they count in `requests`
    /// too.
    pub edits: u64,
    /// References accepted: edit images, Gemini `inlineData` and `fileData` parts.
    pub references: u64,
    /// `fileData` uses per file name (`files/<id>`).
    pub file_uses: HashMap<String, u64>,
    /// Batch create requests that made a job (either dialect).
    pub batch_creates: u64,
    /// Every batch job made, in creation order, with its state now. Lines of a job that
    /// ran count, once the job has ended, in `per_prompt` (requests; successes when its
    /// images are delivered), `successes`, `per_model` and `faults`; never in `requests`
    /// or `arrivals`, which are about HTTP requests.
    pub batch_jobs: Vec<SimBatchJob>,
    /// Batch get calls (whatever their answer).
    pub batch_gets: u64,
    /// Batch list calls (pages).
    pub batch_lists: u64,
    /// Batch cancel calls.
    pub batch_cancels: u64,
    /// Downloads of result files started.
    pub result_downloads: u64,
    /// Bytes of result files sent.
    pub result_bytes: u64,
    /// Files uploaded to OpenAI's Files API.
    pub file_uploads_openai: u64,
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
    /// Files uploaded through the Files API (hashes only; the lines of JSONL files).
    file_store: Mutex<files::FileStore>,
    /// Batch jobs of both dialects, and their result files.
    batches: Mutex<batch::Jobs>,
    /// Files uploaded through OpenAI's Files API.
    openai_files: Mutex<openai_files::Store>,
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
            file_store: Mutex::new(files::FileStore::default()),
            batches: Mutex::new(batch::Jobs::default()),
            openai_files: Mutex::new(openai_files::Store::default()),
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
            // Reference images: OpenAI's multipart edits (streamed, bounded by what the
            // fixtures allow), and the Gemini Files API (uploads streamed and hashed).
            .route("/v1/images/edits", post(edits::edit).layer(DefaultBodyLimit::max(edit_body_limit())))
            .route("/v1beta/openai/images/edits", post(edits::edit).layer(DefaultBodyLimit::max(edit_body_limit())))
            .route("/upload/v1beta/files", post(files::upload))
            .route("/upload/v1/files", post(files::upload))
            .route("/v1beta/files/{id}", get(files::get).delete(files::delete))
            .route("/v1/files/{id}", get(files::get_v1).delete(files::delete_v1))
            // Batch APIs. Gemini's create is `models/{model}:batchGenerateContent` (above);
            // under /v1, Gemini's batches (the SDK's default version) share OpenAI's paths
            // and are told apart by the key's header.
            .route("/v1beta/batches", get(batch::gemini::list))
            .route("/v1beta/batches/{id}", get(batch::gemini::get).post(batch::gemini::cancel))
            .route("/v1/batches", get(batch::list_v1).post(batch::openai::create))
            .route("/v1/batches/{id}", get(batch::get_v1).post(batch::gemini::cancel))
            .route("/v1/batches/{id}/cancel", post(batch::openai::cancel))
            .route("/download/v1beta/files/{id}", get(batch::gemini::download))
            .route("/download/v1/files/{id}", get(batch::gemini::download))
            .route("/v1/files", post(openai_files::upload).layer(DefaultBodyLimit::max(openai_files::body_limit())))
            .route("/v1/files/{id}/content", get(openai_files::content))
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

    /// What the simulator saw so far (batch jobs brought up to now first).
    pub fn stats(&self) -> SimStats {
        self.shared.advance_batches();
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

async fn generate_openai(State(s): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let body = read_body(&s, Wire::OpenAi, body).await;
    serve(&s, Wire::OpenAi, uri.path(), None, &headers, body).await
}

async fn generate_gemini(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    Path(model_action): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = read_body(&s, Wire::Gemini, body).await;
    if model_action.ends_with(":batchGenerateContent") {
        return batch::gemini::create(&s, uri.path(), &model_action, &headers, body).await;
    }
    serve(&s, Wire::Gemini, uri.path(), Some(&model_action), &headers, body).await
}

/// A JSON generation body, read up to [`SimConfig::max_json_body`]; over it, the
/// dialect's answer to a request too large (Google's 400, or a 413).
async fn read_body(s: &Shared, wire: Wire, body: Body) -> Result<axum::body::Bytes, rules::Refusal> {
    let limit = s.cfg.max_json_body;
    axum::body::to_bytes(body, limit).await.map_err(|_| match wire {
        Wire::Gemini => FIXTURES.gemini_request_too_large(limit as u64),
        Wire::OpenAi => FIXTURES.request_too_large(limit as u64),
    })
}

/// The bound on an edit's multipart body: the most images of the largest size any model
/// takes, and a mask, and a megabyte of fields. Read as a stream, never buffered.
pub(crate) fn edit_body_limit() -> usize {
    let files = FIXTURES
        .models
        .iter()
        .filter(|m| m.edits)
        .map(|m| {
            let images = m.max_reference_images as u64 * m.max_reference_bytes.unwrap_or(0);
            images + m.mask.as_ref().map_or(0, |k| k.max_bytes)
        })
        .max()
        .unwrap_or(0);
    usize::try_from(files + 1024 * 1024).unwrap_or(usize::MAX)
}

/// The Gemini API version a path is under (`v1beta` or `v1`), for the 404 text.
fn api_version(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or("v1beta")
}

impl Shared {
    /// The bookkeeping of a generation request as it arrives: counts, arrival time, the
    /// body kept for tests. Returns whether it is the first request of its prompt.
    fn arrive(&self, arrived: Duration, in_flight: usize, path: &str, kept: Value, tag: &str) -> bool {
        let mut st = self.stats.lock().expect("stats lock");
        st.requests += 1;
        st.max_in_flight = st.max_in_flight.max(in_flight);
        st.arrivals.push(arrived);
        if st.bodies.len() < MAX_BODIES {
            st.bodies.push((path.to_owned(), kept));
        }
        let count = st.per_prompt.entry(tag.to_owned()).or_default();
        count.requests += 1;
        count.requests == 1
    }

    /// The references of a Gemini request checked against the model (count, MIME types,
    /// decodable images) and resolved (`fileData` to an uploaded, unexpired file):
    /// their content hashes in order, or the real refusal.
    fn gemini_references(
        &self,
        model: Option<&Model>,
        parts: &[refs::GeminiRef],
    ) -> Result<Vec<String>, rules::Refusal> {
        let model = model.filter(|m| m.dialect == Dialect::Gemini);
        if let Some(m) = model
            && parts.len() > m.max_reference_images
        {
            return Err(FIXTURES.gemini_too_many_images());
        }
        let mime_ok = |mime: &str| model.is_none_or(|m| m.reference_formats.iter().any(|f| f == mime));
        let mut hashes = Vec::with_capacity(parts.len());
        let mut used = Vec::new();
        let carries_files = parts.iter().any(|p| matches!(p, refs::GeminiRef::File { .. }));
        let result = (|| {
            for part in parts {
                match part {
                    refs::GeminiRef::Inline { mime, decoded } => {
                        if !mime_ok(mime) {
                            return Err(FIXTURES.gemini_unsupported_mime(mime));
                        }
                        match decoded {
                            Some(d) if d.kind.is_some() => hashes.push(d.sha256.clone()),
                            _ => return Err(FIXTURES.gemini_invalid_image()),
                        }
                    }
                    refs::GeminiRef::File { uri, mime } => {
                        let id = refs::file_id(uri).unwrap_or(uri.as_str());
                        let (sha, stored_mime, kind) = {
                            let mut store = self.file_store.lock().expect("files lock");
                            match store.resolve(id) {
                                Ok(f) => (f.sha256_hex(), f.mime.clone(), f.kind),
                                Err(files::Gone) => {
                                    self.stats.lock().expect("stats lock").files_gone += 1;
                                    return Err(FIXTURES.gemini_file_gone(id));
                                }
                            }
                        };
                        let mime = mime.clone().unwrap_or(stored_mime);
                        if !mime_ok(&mime) {
                            return Err(FIXTURES.gemini_unsupported_mime(&mime));
                        }
                        if kind.is_none() {
                            return Err(FIXTURES.gemini_invalid_image());
                        }
                        used.push(format!("files/{id}"));
                        hashes.push(sha);
                    }
                }
            }
            Ok(())
        })();
        if carries_files {
            self.file_store.lock().expect("files lock").note_file_request(self.cfg.forget_files_after);
        }
        result?;
        let mut st = self.stats.lock().expect("stats lock");
        st.references += hashes.len() as u64;
        for name in used {
            *st.file_uses.entry(name).or_default() += 1;
        }
        Ok(hashes)
    }
}

/// A generation request that passed every check, on its way to an answer.
struct Accepted<'a> {
    wire: Wire,
    req: &'a wire::Request,
    tag: String,
    first_of_prompt: bool,
    /// sha256 (hex) of each reference received, in order.
    refs: Vec<String>,
    /// sha256 (hex) of the edit's mask.
    mask: Option<String>,
}

/// One generation request, in either dialect: bookkeeping, key and model checks, the
/// model's acceptance rules and references, then the answer.
async fn serve(
    s: &Shared,
    wire: Wire,
    path: &str,
    model_path: Option<&str>,
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, rules::Refusal>,
) -> Response {
    let arrived = s.started.elapsed();
    let (_guard, now) = InFlight::enter(&s.in_flight);
    let (body, too_large) = match body {
        Ok(b) => (b, None),
        Err(r) => (axum::body::Bytes::new(), Some(r)),
    };
    let json: Result<Value, String> =
        serde_json::from_slice(&body).map_err(|e| format!("could not parse the JSON body: {e}"));
    let req = json.as_ref().map_err(Clone::clone).and_then(|v| wire.parse(model_path, headers, v));
    let tag = req.as_ref().map(|r| prompt_tag(&r.prompt)).unwrap_or_default();
    // Inline references are decoded and hashed once, here; the kept body holds their
    // summaries instead of the payloads.
    let (parts, kept) = match (&json, wire) {
        (Ok(v), Wire::Gemini) => refs::gemini_parts(v),
        (Ok(v), Wire::OpenAi) => (Vec::new(), v.clone()),
        (Err(_), _) if too_large.is_some() => (Vec::new(), Value::String("(body over the size limit)".into())),
        (Err(_), _) => (Vec::new(), Value::String(String::from_utf8_lossy(&body).into_owned())),
    };
    // The payloads are no longer needed: the checks below read the kept body (the same
    // but for inline data).
    drop(json);
    let body_len = body.len() as u64;
    let first_of_prompt = s.arrive(arrived, now, path, kept.clone(), &tag);
    if let Some(refusal) = too_large {
        return Wire::refusal(&refusal);
    }
    let req = match req {
        Ok(r) => r,
        Err(why) => return wire.bad_request(&why),
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
        Wire::OpenAi => FIXTURES.check_openai(known, &kept),
        Wire::Gemini => FIXTURES.check_gemini(known, &kept),
    };
    if let Err(refusal) = checked {
        return Wire::refusal(&refusal);
    }
    let mut references = Vec::new();
    if wire == Wire::Gemini {
        if let Some(max) = known.and_then(|m| m.max_request_bytes).filter(|max| body_len > *max) {
            return Wire::refusal(&FIXTURES.gemini_request_too_large(max));
        }
        match s.gemini_references(known, &parts) {
            Ok(hashes) => references = hashes,
            Err(refusal) => return Wire::refusal(&refusal),
        }
    }
    let accepted = Accepted { wire, req: &req, tag, first_of_prompt, refs: references, mask: None };
    answer(s, accepted, headers).await
}

/// The answer to an accepted request: the fault and latency draws, then the image (or
/// the drawn fault).
async fn answer(s: &Shared, a: Accepted<'_>, headers: &HeaderMap) -> Response {
    let Accepted { wire, req, tag, first_of_prompt, refs, mask } = a;
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

    // One image per `n` asked (OpenAI; checked against the fixtures' range already), each
    // its own draw: numbered, tagged, and (in URL mode) its own file.
    let asked = req.n.max(1).min(s.cfg.max_images_per_answer.unwrap_or(usize::MAX)) as u64;
    let first = s.next_image.fetch_add(asked, Ordering::SeqCst);
    let made: Vec<(Vec<u8>, u64)> = (first..first + asked)
        .map(|n| {
            let mut text = format!("prompt={tag};model={};size={};n={n}", req.model, req.size);
            if !refs.is_empty() {
                text.push_str(&format!(";refs={}", refs.join(",")));
            }
            if let Some(mask) = &mask {
                text.push_str(&format!(";mask={mask}"));
            }
            let seed = u64::from_str_radix(&tag, 16).unwrap_or(n) ^ (n - first);
            (png::make(s.cfg.image_bytes, seed, &text), n)
        })
        .collect();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let urls: Option<Vec<(String, String)>> = req
        .url_mode
        .then(|| made.iter().map(|(_, n)| (format!("http://{host}/files/{n}.png"), format!("{n}.png"))).collect());
    let draft = if wire == Wire::Gemini { png::make(64, first, "prompt=draft") } else { Vec::new() };
    let body = match &urls {
        Some(urls) => {
            let images: Vec<wire::Image> = urls.iter().map(|(url, _)| wire::Image::Url(url)).collect();
            wire.success_of(&images, &draft, &req.model, first)
        }
        None => {
            let images: Vec<wire::Image> = made.iter().map(|(png, _)| wire::Image::Png(png)).collect();
            wire.success_of(&images, &draft, &req.model, first)
        }
    };
    if let Some(urls) = urls {
        let mut files = s.files.lock().expect("files lock");
        for ((_, name), (image, _)) in urls.into_iter().zip(made) {
            files.insert(name, (image, fail_download));
        }
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
        st.successes += asked;
        st.per_prompt.entry(tag).or_default().successes += asked;
        *st.per_model.entry(req.model.clone()).or_default() += asked;
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
    s.advance_batches();
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
