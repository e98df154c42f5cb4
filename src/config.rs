//! Run settings, validated once into a typed [`RunConfig`] before any work starts.
//!
//! Everything a user can get wrong on the command line (durations, timeouts, the base URL,
//! a missing key, plain HTTP to a remote host) is caught here and reported with exit 2.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::Serialize;

use crate::catalog::{Catalog, Dialect, Engine, ResponseFormat, SizePolicy};
use crate::flags::{BatchFallback, RunArgs};
use crate::manifest::{self, Delimiter};
use crate::params::{self, Params};
use crate::retry::Backoff;
use crate::secret::ApiKey;
use crate::size::{Resolution, Size};

/// The deadline of one call, per resolution class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timeouts(pub [Duration; 4]);

impl Default for Timeouts {
    fn default() -> Timeouts {
        let s = Duration::from_secs;
        Timeouts([s(300), s(300), s(300), s(600)])
    }
}

impl Timeouts {
    pub fn get(&self, r: Resolution) -> Duration {
        self.0[r.index()]
    }

    /// Applies `RES=DUR` settings, each possibly a comma-separated list.
    pub fn apply(&mut self, specs: &[String]) -> Result<(), String> {
        for spec in specs.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
            let (res, dur) =
                spec.split_once('=').ok_or_else(|| format!("--timeout {spec:?}: write RES=DURATION, e.g. 4K=600s"))?;
            let res = Resolution::parse(res)
                .ok_or_else(|| format!("--timeout {spec:?}: unknown resolution {res:?} (use 512, 1K, 2K or 4K)"))?;
            let dur = parse_duration(dur).map_err(|e| format!("--timeout {spec:?}: {e}"))?;
            if dur.is_zero() {
                return Err(format!("--timeout {spec:?}: a deadline must be longer than zero"));
            }
            self.0[res.index()] = dur;
        }
        Ok(())
    }
}

/// How the progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProgressMode {
    /// A live bar on a terminal, a plain line every `interval` otherwise.
    Auto {
        interval: Duration,
    },
    Quiet,
}

/// The simulated provider a `--simulate` run starts for itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimSettings {
    pub time_scale: f64,
    pub faults: Vec<crate::sim::FaultSpec>,
    pub seed: u64,
}

/// Where a run was started from, so `bulkgen resume` can start it again. Flags are kept
/// as given (never the key: it only ever comes from the environment).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Origin {
    pub cwd: PathBuf,
    pub argv: Vec<String>,
}

/// Every setting of a run, checked.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub manifest: PathBuf,
    /// `--delimiter` as given (None: found from the manifest's header).
    pub delimiter: Option<Delimiter>,
    /// How every reader of the manifest reads it: the delimiter and the catalogue's prompt
    /// limits.
    #[serde(skip)]
    pub manifest_read: manifest::ReadSettings,
    /// `--count`: images for rows whose `count` cell is empty (also in `manifest_read`).
    pub count: u32,
    /// `--images-per-call`: a cap on the catalogue's `images_per_call` (None: no cap).
    pub images_per_call: Option<u32>,
    /// Where relative reference paths (`images`, `mask`) are looked up: `--images-dir`, or
    /// the manifest's folder.
    pub images_dir: PathBuf,
    pub out: PathBuf,
    /// `--shard-dirs`: new images go to `images/<2 hex>/`.
    pub shard_dirs: bool,
    pub dialect: Dialect,
    pub base_url: Url,
    /// The variable the key came from; the key itself is never serialized.
    pub api_key_env: String,
    #[serde(skip)]
    pub api_key: Option<ApiKey>,
    pub model: String,
    /// `--models-file` as given; `catalog` is the catalogue with it applied.
    pub models_file: Option<PathBuf>,
    #[serde(skip)]
    pub catalog: Catalog,
    pub size_policy: SizePolicy,
    /// `--param` fields, nested, for every row (a row's `param.KEY` columns win).
    pub params: Params,
    /// Check endpoint, key and models before the first paid call.
    pub preflight: bool,
    /// After `fallback_after` overloaded answers, a row's next attempts use this model.
    pub fallback_model: Option<String>,
    pub fallback_after: u32,
    pub size: Size,
    /// `--response-format` as given; None: the model's own (nothing is sent).
    pub response_format: Option<ResponseFormat>,
    pub concurrency: usize,
    /// At most this many starts in any `rate_window` (None: no cap).
    pub rpm: Option<NonZeroU32>,
    pub rate_window: Duration,
    pub connect_timeout: Duration,
    pub timeouts: Timeouts,
    pub download_timeout: Duration,
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// How long the endpoint may stay unreachable before the run stops.
    pub max_wait: Duration,
    /// `--max-response-bytes`: the most bytes of one answer or download.
    pub max_response_bytes: u64,
    pub http2: bool,
    pub allow_plain_http: bool,
    pub retry_failed: bool,
    pub regenerate_changed: bool,
    /// Rows whose result URL failed to download are generated again, not downloaded.
    pub regenerate_expired: bool,
    pub progress: ProgressMode,
    /// Seed for the backoff jitter (random when not given).
    pub seed: Option<u64>,
    /// `--price MODEL:RES=USD` overrides as given (kept with the run's settings).
    pub price_overrides: Vec<String>,
    /// The built-in prices with those overrides applied.
    #[serde(skip)]
    pub prices: crate::cost::Prices,
    /// Stop starting calls before this run's estimated spend would pass this.
    pub max_cost: Option<f64>,
    pub dry_run: bool,
    /// Online calls, or the provider's Batch API.
    pub engine: Engine,
    /// With the batch engine: how often open jobs are polled.
    pub poll_interval: Duration,
    /// With the batch engine: how long after a row's first submission it may stay in
    /// batch before `batch_fallback` takes it.
    pub batch_deadline: Duration,
    pub batch_fallback: BatchFallback,
    pub simulate: Option<SimSettings>,
    pub origin: Option<Origin>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The most characters a row's prompt may have: its model's `max_prompt_chars`, or the
/// fallback model's when that is less (a row may move to it), with whose limit it is.
fn prompt_limit(catalog: &Catalog, fallback: Option<&str>) -> std::sync::Arc<manifest::PromptLimit> {
    let limit_of = {
        let catalog = catalog.clone();
        move |model: &str| catalog.lookup(model).and_then(|m| m.max_prompt_chars)
    };
    let fallback = fallback.and_then(|f| limit_of(f).map(|max| (max, format!("--fallback-model {f}"))));
    std::sync::Arc::new(move |model: &str| {
        let own = limit_of(model).map(|max| (max, format!("model {model}")));
        match (own, fallback.clone()) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    })
}

impl RunConfig {
    pub fn from_args(args: &RunArgs) -> Result<RunConfig, ConfigError> {
        let err = |m: String| ConfigError(m);
        let dur = |name: &str, v: &str| parse_duration(v).map_err(|e| err(format!("{name} {v:?}: {e}")));

        let size: Size = args.size.parse().map_err(|e| err(format!("--size: {e}")))?;
        let catalog = Catalog::load(args.models_file.as_deref()).map_err(err)?;
        let model = match &args.model {
            Some(m) if m.trim().is_empty() => return Err(err("--model is empty: name a model".into())),
            Some(m) => m.trim().to_owned(),
            None => catalog.default_model(args.provider).map(str::to_owned).ok_or_else(|| {
                err(format!(
                    "the catalogue names no default model for the {} dialect: give --model",
                    args.provider.as_str()
                ))
            })?,
        };
        if args.provider == Dialect::Gemini && args.response_format.is_some() {
            return Err(err(
                "--response-format: the gemini dialect always returns the image inline; leave the flag out".into(),
            ));
        }
        if let Some(format) = args.response_format
            && let Some(entry) = catalog.lookup(&model).filter(|m| !m.response_format)
        {
            return Err(err(format!(
                "--response-format {}: {} does not take response_format (GPT image models always return base64, \
                 and answer 400 to the field); leave the flag out",
                format.as_str(),
                entry.name
            )));
        }
        let mut params = Params::new();
        for spec in &args.params {
            let (key, value) = params::parse_flag(spec).map_err(err)?;
            if let Some(field) = params::collision(&key, crate::provider::fields_set(args.provider)) {
                return Err(err(format!(
                    "--param {spec:?}: bulkgen sets `{field}` itself in the {} dialect; use its own flag \
                     (--model, --size, --response-format, or the manifest's columns) instead",
                    args.provider.as_str()
                )));
            }
            params::set(&mut params, &key, value);
        }
        let prices = crate::cost::Prices::with_overrides(&catalog, &args.prices).map_err(err)?;
        if let Some(cap) = args.max_cost
            && !(cap.is_finite() && cap > 0.0)
        {
            return Err(err(format!("--max-cost {cap}: give a positive amount in USD, e.g. --max-cost 25")));
        }
        if args.fallback_after == 0 {
            return Err(err("--fallback-after must be at least 1".into()));
        }
        if args.concurrency == 0 {
            return Err(err("--concurrency must be at least 1".into()));
        }
        if !(1..=manifest::MAX_COUNT).contains(&args.count) {
            return Err(err(format!(
                "--count {}: give a whole number of images per row from 1 to {}",
                args.count,
                manifest::MAX_COUNT
            )));
        }
        if args.images_per_call == Some(0) {
            return Err(err("--images-per-call must be at least 1 (1: one call per image)".into()));
        }
        if args.max_attempts == 0 {
            return Err(err("--max-attempts must be at least 1".into()));
        }
        let mut timeouts = Timeouts::default();
        timeouts.apply(&args.timeouts).map_err(err)?;
        let connect_timeout = dur("--connect-timeout", &args.connect_timeout)?;
        let download_timeout = dur("--download-timeout", &args.download_timeout)?;
        let mut backoff =
            Backoff { base: dur("--backoff-base", &args.backoff_base)?, max: dur("--backoff-max", &args.backoff_max)? };
        if backoff.max < backoff.base {
            return Err(err(format!(
                "--backoff-max ({}) is shorter than --backoff-base ({})",
                args.backoff_max, args.backoff_base
            )));
        }
        let mut max_wait = dur("--max-wait", &args.max_wait)?;
        let max_response_bytes = parse_bytes(&args.max_response_bytes)
            .map_err(|e| err(format!("--max-response-bytes {:?}: {e}", args.max_response_bytes)))?;
        let progress = if args.quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::Auto { interval: dur("--progress-interval", &args.progress_interval)? }
        };
        let mut rate_window = Duration::from_secs(60);
        let mut poll_interval = dur("--poll-interval", &args.poll_interval)?;
        let mut batch_deadline = dur("--batch-deadline", &args.batch_deadline)?;
        if poll_interval.is_zero() {
            return Err(err("--poll-interval must be longer than zero, e.g. 30s".into()));
        }
        if args.engine == Engine::Batch {
            batch_check(&catalog, args.provider, args.response_format).map_err(err)?;
        }

        let simulate = if args.simulate {
            let time_scale = args.time_scale.unwrap_or(0.01);
            if !(time_scale.is_finite() && time_scale >= 0.0) {
                return Err(err(format!("--time-scale {time_scale}: must be a number >= 0")));
            }
            let faults = args
                .sim_faults
                .iter()
                .map(|f| crate::sim::parse_fault(f).map_err(|e| err(format!("--sim-fault: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            // A simulated run is the real run in compressed time: the provider's latencies
            // shrink by the time scale, and so do the clocks bulkgen keeps for it.
            let scale = |d: Duration| d.mul_f64(time_scale);
            for t in &mut timeouts.0 {
                *t = scale(*t).max(Duration::from_millis(100));
            }
            backoff = Backoff { base: scale(backoff.base), max: scale(backoff.max) };
            max_wait = scale(max_wait);
            rate_window = scale(rate_window);
            poll_interval = scale(poll_interval).max(Duration::from_millis(10));
            batch_deadline = scale(batch_deadline);
            Some(SimSettings { time_scale, faults, seed: args.seed.unwrap_or(1) })
        } else {
            if args.time_scale.is_some() || !args.sim_faults.is_empty() {
                return Err(err("--time-scale and --sim-fault only apply with --simulate".into()));
            }
            None
        };

        let base_url = args.base_url.as_deref().unwrap_or(args.provider.default_base_url());
        let base_url = parse_base_url(base_url, args.allow_plain_http).map_err(err)?;
        let api_key = if simulate.is_some() {
            None
        } else if args.dry_run {
            // A dry run sends nothing: it needs no key (product.md).
            ApiKey::from_env(&args.api_key_env)
        } else {
            Some(ApiKey::from_env(&args.api_key_env).ok_or_else(|| {
                err(format!(
                    "no API key: the environment variable {} is not set (name another one with --api-key-env, \
                     or try the built-in simulator with --simulate)",
                    args.api_key_env
                ))
            })?)
        };

        let images_dir = match &args.images_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(err("--images-dir is empty: name the folder of the reference images".into()));
            }
            Some(dir) => dir.clone(),
            None => match args.manifest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            },
        };

        // Every reader of the manifest (check, sync, repair, plan) reads it this way.
        let manifest_read = manifest::ReadSettings {
            delimiter: args.delimiter,
            prompt_limit: Some(prompt_limit(&catalog, args.fallback_model.as_deref())),
            default_count: args.count,
        };

        Ok(RunConfig {
            manifest: args.manifest.clone(),
            delimiter: args.delimiter,
            manifest_read,
            count: args.count,
            images_per_call: args.images_per_call,
            images_dir,
            out: args.out.clone(),
            shard_dirs: args.shard_dirs,
            dialect: args.provider,
            base_url,
            api_key_env: args.api_key_env.clone(),
            api_key,
            model,
            models_file: args.models_file.clone(),
            catalog,
            size_policy: args.size_policy,
            params,
            preflight: !args.no_preflight,
            response_format: args.response_format,
            fallback_model: args.fallback_model.clone(),
            fallback_after: args.fallback_after,
            size,
            concurrency: args.concurrency,
            rpm: NonZeroU32::new(args.rpm),
            rate_window,
            connect_timeout,
            timeouts,
            download_timeout,
            max_attempts: args.max_attempts,
            backoff,
            max_wait,
            max_response_bytes,
            http2: args.http2,
            allow_plain_http: args.allow_plain_http,
            retry_failed: args.retry_failed,
            regenerate_changed: args.regenerate_changed,
            regenerate_expired: args.regenerate_expired,
            progress,
            seed: args.seed,
            price_overrides: args.prices.clone(),
            prices,
            max_cost: args.max_cost,
            dry_run: args.dry_run,
            engine: args.engine,
            poll_interval,
            batch_deadline,
            batch_fallback: args.batch_fallback,
            simulate,
            origin: None,
        })
    }

    /// How many images of one manifest row one call of `model` asks for at most: the
    /// catalogue's `images_per_call` (openai dialect only), capped by `--images-per-call`.
    pub fn images_per_call(&self, model: &str) -> u32 {
        let catalogue = self.catalog.images_per_call(self.dialect, model);
        self.images_per_call.map_or(catalogue, |cap| catalogue.min(cap))
    }
}

/// `--engine batch` needs the catalogue's Batch API limits for the dialect, and images
/// that come back inline (a Batch API's result file carries them).
fn batch_check(catalog: &Catalog, dialect: Dialect, response_format: Option<ResponseFormat>) -> Result<(), String> {
    if catalog.batch_limits(dialect).is_none() {
        return Err(format!(
            "--engine batch: the catalogue has no Batch API limits for the {} dialect; add a [[batch]] entry with \
             --models-file, or use --engine online",
            dialect.as_str()
        ));
    }
    if response_format == Some(ResponseFormat::Url) {
        return Err("--engine batch --response-format url: a batch result file carries the images themselves; leave \
                    --response-format out"
            .into());
    }
    Ok(())
}

/// Checks the API root; plain `http://` is only for loopback unless the user opts in,
/// because the key would cross the network in clear text.
pub fn parse_base_url(raw: &str, allow_plain_http: bool) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("--base-url {raw:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            if !allow_plain_http && !is_loopback(&url) {
                return Err(format!(
                    "--base-url {raw:?} is plain http to a host that is not loopback: the API key would \
                     travel in clear text. Use https, or pass --allow-plain-http if this network is private"
                ));
            }
        }
        other => {
            return Err(format!("--base-url {raw:?}: scheme {other:?} is not http or https"));
        }
    }
    if url.host_str().is_none() {
        return Err(format!("--base-url {raw:?} has no host"));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Sizes as users write them: plain bytes (`1048576`), binary units (`KiB`, `MiB`,
/// `GiB`, and curl's `k`, `m`, `g`, as its `--max-filesize` reads them) or decimal ones
/// (`KB`, `MB`, `GB`); case does not matter, a fraction is allowed (`1.5GiB`). At least
/// one byte.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let hint = "write a size such as 128MiB, 500MB, 2GiB or a number of bytes";
    let value: f64 = num.parse().map_err(|_| format!("not a size ({hint})"))?;
    let unit_size: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("unknown unit {other:?} ({hint})")),
    };
    let bytes = (value * unit_size as f64).round();
    if bytes < 1.0 {
        return Err(format!("must be at least 1 byte ({hint})"));
    }
    if bytes >= u64::MAX as f64 {
        return Err(format!("is out of range ({hint})"));
    }
    Ok(bytes as u64)
}

/// Durations as users write them: `300s`, `10m`, `1500ms`, `1h`, `2.5s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (write e.g. 300s, 10m, 1500ms)"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "" => return Err(format!("{s:?} needs a unit: ms, s, m or h (e.g. {t}s)")),
        u => return Err(format!("{s:?}: unknown unit {u:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_fail_without() {
        assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("300").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn sizes_parse_with_binary_and_decimal_units_and_zero_is_refused() {
        assert_eq!(parse_bytes("128MiB"), Ok(128 << 20));
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("1 KiB"), Ok(1024));
        assert_eq!(parse_bytes("2gib"), Ok(2 << 30));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("10kb"), Ok(10_000));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert_eq!(parse_bytes("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_bytes("10B"), Ok(10));
        assert!(parse_bytes("0").unwrap_err().contains("at least 1 byte"));
        assert!(parse_bytes("0MiB").unwrap_err().contains("at least 1 byte"));
        assert!(parse_bytes("12XB").unwrap_err().contains("unknown unit \"xb\""));
        assert!(parse_bytes("lots").unwrap_err().contains("not a size"));
        assert!(parse_bytes("").unwrap_err().contains("not a size"));
        assert!(parse_bytes("-5MiB").unwrap_err().contains("not a size"));
        assert!(parse_bytes("99999999999GiB").unwrap_err().contains("out of range"));
    }

    #[test]
    fn timeouts_take_single_and_comma_separated_settings() {
        let mut t = Timeouts::default();
        t.apply(&["4K=900s".into(), "1k=2m, 2K=150s".into()]).unwrap();
        assert_eq!(t.get(Resolution::K1), Duration::from_secs(120));
        assert_eq!(t.get(Resolution::K2), Duration::from_secs(150));
        assert_eq!(t.get(Resolution::K4), Duration::from_secs(900));
        assert!(t.apply(&["8K=1s".into()]).unwrap_err().contains("unknown resolution"));
        t.apply(&["512=30s".into()]).unwrap();
        assert_eq!(t.get(Resolution::Px512), Duration::from_secs(30));
        assert!(t.apply(&["4K".into()]).unwrap_err().contains("RES=DURATION"));
        assert!(t.apply(&["4K=0s".into()]).unwrap_err().contains("longer than zero"));
    }

    #[test]
    fn plain_http_is_refused_for_remote_hosts_only() {
        assert!(parse_base_url("http://127.0.0.1:8080", false).is_ok());
        assert!(parse_base_url("http://localhost:16888/v1", false).is_ok());
        assert!(parse_base_url("http://[::1]:9000", false).is_ok());
        let e = parse_base_url("http://api.example.com:16888/v1", false).unwrap_err();
        assert!(e.contains("clear text") && e.contains("--allow-plain-http"), "{e}");
        assert!(parse_base_url("http://api.example.com:16888/v1", true).is_ok());
        assert!(parse_base_url("https://api.example.com", false).is_ok());
        assert!(parse_base_url("ftp://x", false).unwrap_err().contains("scheme"));
    }
}
