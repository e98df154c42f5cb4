//! The `run` flags as clap parses them. They become a checked `config::RunConfig` in one
//! direction only: nothing here knows about settings, and settings never see clap.

use std::path::PathBuf;

use clap::Args;

use crate::catalog::{Dialect, Engine, ResponseFormat, SizePolicy};
use crate::manifest::Delimiter;

#[derive(Debug, Clone, Args)]
#[command(args_override_self = true)]
pub struct RunArgs {
    /// The manifest: a CSV with a `prompt` column (and optionally id, size, aspect_ratio, model,
    /// images, mask).
    pub manifest: PathBuf,
    /// What separates the manifest's fields: , or ; or tab [default: found from the header,
    /// the one that splits it into known columns with `prompt` among them].
    #[arg(long, value_enum, env = "BULKGEN_DELIMITER", value_name = ",|;|tab")]
    pub delimiter: Option<Delimiter>,
    /// Where the relative paths of the manifest's `images` and `mask` columns are looked up
    /// [default: the manifest's folder].
    #[arg(long, value_name = "DIR", env = "BULKGEN_IMAGES_DIR")]
    pub images_dir: Option<PathBuf>,
    /// Output folder: images, checkpoint, results.csv, reports.
    #[arg(short = 'o', long, env = "BULKGEN_OUT", default_value = "bulkgen-out")]
    pub out: PathBuf,
    /// Spread new image files over images/<2 hex>/ subfolders (256 of them, by the row id's
    /// SHA-256), for folders of 100,000+ images; results.csv and metadata.jsonl give each path.
    #[arg(long)]
    pub shard_dirs: bool,
    /// API dialect: openai (OpenAI-compatible images API) or gemini (generateContent).
    #[arg(long, value_enum, env = "BULKGEN_PROVIDER", default_value = "openai")]
    pub provider: Dialect,
    /// API root [default: https://api.openai.com, or https://generativelanguage.googleapis.com
    /// for gemini]; a trailing /v1 or /v1beta is accepted as is.
    #[arg(long, env = "BULKGEN_BASE_URL")]
    pub base_url: Option<String>,
    /// Environment variable that holds the API key.
    #[arg(long, default_value = "BULKGEN_API_KEY")]
    pub api_key_env: String,
    /// Model for rows that name none [default: the catalogue's default for the dialect,
    /// see `bulkgen models`].
    #[arg(long, env = "BULKGEN_MODEL")]
    pub model: Option<String>,
    /// Catalogue entries to add or override (TOML, the format of the built-in catalogue).
    #[arg(long, env = "BULKGEN_MODELS_FILE")]
    pub models_file: Option<PathBuf>,
    /// Size for rows that name none: 512, 1K, 2K, 4K or WxH.
    #[arg(long, env = "BULKGEN_SIZE", default_value = "1K")]
    pub size: String,
    /// A size the row's model cannot render exactly: refuse it at the manifest check
    /// (exact), or send the nearest size the model renders (nearest; both are recorded).
    #[arg(long, value_enum, env = "BULKGEN_SIZE_POLICY", default_value = "exact")]
    pub size_policy: SizePolicy,
    /// A request field bulkgen does not model, e.g. quality=high or
    /// generationConfig.thinkingConfig.thinkingLevel=low: VALUE is JSON, else a string;
    /// dotted keys nest (repeatable; a manifest column param.KEY sets it per row).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// How the image comes back, for models that take `response_format` (aggregator
    /// models; never sent to GPT image models) [default: the model's own].
    #[arg(long, value_enum, env = "BULKGEN_RESPONSE_FORMAT")]
    pub response_format: Option<ResponseFormat>,
    /// Skip the check of endpoint, key and model before the first paid call.
    #[arg(long)]
    pub no_preflight: bool,
    /// After --fallback-after overloaded answers, a row's next attempts use this model.
    #[arg(long, env = "BULKGEN_FALLBACK_MODEL")]
    pub fallback_model: Option<String>,
    /// Overloaded answers a row takes before it switches to --fallback-model.
    #[arg(long, default_value_t = 2)]
    pub fallback_after: u32,
    /// Most requests in flight at once.
    #[arg(short = 'c', long, env = "BULKGEN_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
    /// Most request starts in any 60 s window, retries included (0: no cap).
    #[arg(long, env = "BULKGEN_RPM", default_value_t = 60)]
    pub rpm: u32,
    /// TCP + TLS connect timeout.
    #[arg(long, env = "BULKGEN_CONNECT_TIMEOUT", default_value = "10s")]
    pub connect_timeout: String,
    /// Deadline of one call by resolution, e.g. 4K=600s (repeatable, or comma-separated)
    /// [default: 1K=300s,2K=300s,4K=600s].
    #[arg(long = "timeout", value_name = "RES=DUR", env = "BULKGEN_TIMEOUT", value_delimiter = ',')]
    pub timeouts: Vec<String>,
    /// Deadline of one download of a result URL.
    #[arg(long, env = "BULKGEN_DOWNLOAD_TIMEOUT", default_value = "60s")]
    pub download_timeout: String,
    /// Images per manifest row, for rows whose `count` cell is empty (1 to 100): files
    /// `<id>_<k>.<ext>`, k from 1, when over 1.
    #[arg(long, env = "BULKGEN_COUNT", default_value_t = 1, value_name = "N")]
    pub count: u32,
    /// At most N images of one manifest row in one call (the openai dialect's `n`), for
    /// models whose catalogue entry takes several (`images_per_call`); 1: a call per image.
    /// [default: the catalogue's]
    #[arg(long, env = "BULKGEN_IMAGES_PER_CALL", value_name = "N")]
    pub images_per_call: Option<u32>,
    /// Attempts per row for transient errors (and per download).
    #[arg(long, env = "BULKGEN_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// The longest the run waits for an endpoint that cannot be reached at all (calls
    /// paused, no row's attempts spent) before it stops with exit 3.
    #[arg(long, env = "BULKGEN_MAX_WAIT", default_value = "10m")]
    pub max_wait: String,
    /// Base of the full-jitter exponential backoff.
    #[arg(long, default_value = "2s")]
    pub backoff_base: String,
    /// Longest backoff wait.
    #[arg(long, default_value = "60s")]
    pub backoff_max: String,
    /// The most bytes one answer or download may have: 128MiB, 500MB, 1GiB or plain bytes.
    /// A Content-Length over it is refused before reading, a body that passes it while it
    /// streams is dropped there (bad_response for an answer, download for a result URL).
    #[arg(long, value_name = "BYTES", env = "BULKGEN_MAX_RESPONSE_BYTES", default_value = "128MiB")]
    pub max_response_bytes: String,
    /// Allow HTTP/2 (HTTP/1.1 only by default: long calls fare better on it through proxies).
    #[arg(long)]
    pub http2: bool,
    /// Allow sending the key over plain http:// to a host that is not loopback.
    #[arg(long)]
    pub allow_plain_http: bool,
    /// Run against the built-in simulator on loopback; no key needed. Time is compressed by
    /// --time-scale: latencies, call deadlines, backoff and the --rpm window alike.
    #[arg(long)]
    pub simulate: bool,
    /// With --simulate: simulated time multiplier [default: 0.01].
    #[arg(long)]
    pub time_scale: Option<f64>,
    /// With --simulate: inject a fault at a rate, e.g. 429=0.05, or only for one model,
    /// 503@MODEL=1 (kinds as for `bulkgen sim --fault`); repeatable.
    #[arg(long = "sim-fault", value_name = "KIND[@MODEL]=RATE")]
    pub sim_faults: Vec<String>,
    /// Put rows that failed for good in an earlier run back in the queue.
    #[arg(long)]
    pub retry_failed: bool,
    /// Generate again the done rows whose prompt, size, aspect ratio, model, params or reference images changed.
    #[arg(long)]
    pub regenerate_changed: bool,
    /// Generate again (and pay again for) the rows whose result URL could not be
    /// downloaded in an earlier run (expired or unreachable). Without it such rows only
    /// have their download tried again.
    #[arg(long)]
    pub regenerate_expired: bool,
    /// No progress display.
    #[arg(short, long)]
    pub quiet: bool,
    /// How often the plain progress line is printed when stderr is not a terminal.
    #[arg(long, default_value = "10s")]
    pub progress_interval: String,
    /// Seed for the backoff jitter and the simulator (runs are repeatable with it).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Price of one image, MODEL:RES=USD (RES may be *), for spend estimates; repeatable.
    /// Overrides the catalogue's online prices (`bulkgen models` lists them).
    #[arg(long = "price", value_name = "MODEL:RES=USD")]
    pub prices: Vec<String>,
    /// Stop starting calls before the folder's estimated spend (done and in flight, across
    /// runs) would pass this many USD; exit 1.
    #[arg(long, value_name = "USD", env = "BULKGEN_MAX_COST")]
    pub max_cost: Option<f64>,
    /// Validate and print the plan (rows per class, already done, cost and time estimate); send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How images are made: online (one call each) or batch (the provider's Batch API: half
    /// price, results within 24 h; resumable like an online run).
    #[arg(long, value_enum, env = "BULKGEN_ENGINE", default_value = "online")]
    pub engine: Engine,
    /// With --engine batch: how often open batch jobs are polled.
    #[arg(long, env = "BULKGEN_POLL_INTERVAL", default_value = "30s")]
    pub poll_interval: String,
    /// With --engine batch: rows not done this long after they were first submitted (the
    /// clock does not restart when a row is submitted again) go to --batch-fallback.
    #[arg(long, env = "BULKGEN_BATCH_DEADLINE", default_value = "24h")]
    pub batch_deadline: String,
    /// With --engine batch: what happens to rows past --batch-deadline: sent online (at the
    /// online price), or failed.
    #[arg(long, value_enum, env = "BULKGEN_BATCH_FALLBACK", default_value = "online")]
    pub batch_fallback: BatchFallback,
}

/// What happens to rows a batch job did not finish by `--batch-deadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BatchFallback {
    /// Sent online, one call each, at the online price.
    Online,
    /// Failed (class timeout); a later run with --batch-fallback online sends them.
    None,
}
