//! The runner: takes a validated configuration through one run.
//!
//! manifest (validated) -> checkpoint (recover, sync) -> dispatcher: for each pending
//! row a task that passes the gate (slot, rate, hold), calls the provider, writes the
//! image file, and reports to the checkpoint -> results.csv and the report.
//!
//! Invariants: a row is marked running (committed) before its call is sent; a row is
//! done only after its file is renamed into place; a result URL is committed before it
//! is downloaded, so a generation that succeeded is never paid for twice; a row is never
//! in flight twice (each pending row is handed to exactly one task).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::attach::{Attach, Gone, NotReady, Prepared};
use crate::catalog::{Engine, ResponseFormat, WireSize};
use crate::checkpoint::{
    self, AttemptKind, AttemptRecord, Checkpoint, CheckpointError, Counts, Made as MadeBy, PendingRow, Recovered,
    RowDefaults, SyncOptions, SyncReport, now_unix,
};
use crate::config::RunConfig;
use crate::cost::Usd;
use crate::error::{CallError, Disposition, ErrorClass};
use crate::exit;
use crate::fdlimit;
use crate::http::{self, Caller, HttpPolicy};
use crate::limits::{self, Gate};
use crate::manifest::{self, ManifestError, Rules};
use crate::output::{self, OutDir};
use crate::plan;
use crate::preflight;
use crate::progress::{self, Progress};
use crate::provider::{self, Generated, Job};
use crate::refs::{self, References};
use crate::report::{self, Report};
use crate::size::Resolution;

mod batch;
mod online;
pub use batch::cancel;
mod rows;

/// Rows fetched from the checkpoint at a time.
const PAGE: usize = 256;
/// Failures printed one by one before the rest are only counted.
const MAX_FAILURE_NOTES: u64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("output folder {path}: {source}")]
    Output { path: PathBuf, source: std::io::Error },
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("{0}")]
    Settings(String),
    #[error("preflight: {0}")]
    Preflight(#[from] preflight::PreflightError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Manifest(_) | RunError::Settings(_) | RunError::Plan(_) => exit::USAGE,
            _ => exit::STOPPED,
        }
    }
}

/// Why a run stopped before its queue was empty.
#[derive(Debug, Clone)]
pub enum StopReason {
    /// An API error that retrying cannot fix (auth, quota, not_found).
    Api(CallError),
    /// The output folder or the checkpoint failed.
    Local(String),
    /// The user pressed Ctrl-C (or sent SIGTERM).
    Interrupted,
    /// The next call would have passed `--max-cost`.
    Budget(f64),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Api(e) => {
                write!(f, "the provider answered {e}")?;
                let advice = e.advice();
                if !advice.is_empty() {
                    write!(f, "\n  what to do: {advice}")?;
                }
                Ok(())
            }
            StopReason::Local(m) => f.write_str(m),
            StopReason::Interrupted => f.write_str("interrupted"),
            StopReason::Budget(cap) => write!(
                f,
                "the next call would pass --max-cost {}, which caps this folder's whole spend across runs: no more \
                 calls are started (to go on, run the same command again with a higher cap)",
                Usd(*cap)
            ),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub exit_code: i32,
    pub counts: Counts,
    pub report: Report,
    pub stopped: Option<StopReason>,
    pub out: PathBuf,
    /// What this run uploaded of the reference images.
    pub references: crate::attach::AttachStats,
}

struct Ctx {
    cfg: RunConfig,
    caller: Caller,
    /// Reference images: bytes shared by calls in flight, Gemini uploads.
    attach: Attach,
    gate: Gate,
    ckpt: Arc<Checkpoint>,
    out: OutDir,
    run_id: i64,
    progress: Arc<Progress>,
    /// No new calls start (fatal error, first Ctrl-C).
    stop: CancellationToken,
    /// Calls in flight are abandoned too (second Ctrl-C).
    abort: CancellationToken,
    stopped: Mutex<Option<StopReason>>,
    rng: Mutex<StdRng>,
    /// Downloads of result URLs at once (`-c`): they take no generation slot, as the
    /// image is already paid for, but each holds a socket and, once read, an image.
    downloads: Semaphore,
    /// Image writes at once: creates and renames in one folder serialize on its lock in
    /// the kernel, and more writers than cores only spin on it.
    writers: Semaphore,
    /// `--max-cost` in micro-USD, and what this run has spent or holds for calls in flight.
    budget: Option<(u64, AtomicU64)>,
    /// Since when no call could connect, and how many in a row failed so.
    unreachable: Mutex<Option<(Instant, u32)>>,
    /// Whether `unreachable` is set: every call's answer reads this, not the lock.
    endpoint_away: std::sync::atomic::AtomicBool,
    /// An answer held fewer images than its call asked for (`n`): said once a run.
    said_short: std::sync::Once,
}

/// See `Ctx::writers`.
const MAX_WRITERS: usize = 2;

impl Ctx {
    fn stop_run(&self, reason: StopReason) {
        let mut stopped = self.stopped.lock().expect("stop lock");
        if stopped.is_none() {
            // The cause's first line now, as it happens; the whole message, with what to
            // do, is said once when the run ends (after the report).
            let text = reason.to_string();
            let first = text.lines().next().unwrap_or_default();
            let more = if text.contains('\n') { " (what to do is said at the end)" } else { "" };
            self.progress.note(&format!("bulkgen: stopping: {first}{more}"));
            *stopped = Some(reason);
        }
        self.stop.cancel();
    }

    /// Holds the price of one call against `--max-cost`; false when it would pass the cap.
    fn reserve(&self, model: &str, res: Resolution) -> Option<u64> {
        if self.budget.is_none() {
            return Some(0);
        }
        let price = micro_usd(self.cfg.prices.get(model, res).unwrap_or(0.0));
        self.reserve_micro(price).then_some(price)
    }

    /// Holds `price` (micro-USD) against `--max-cost`; false when it would pass the cap.
    fn reserve_micro(&self, price: u64) -> bool {
        let Some((cap, committed)) = &self.budget else { return true };
        committed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| (c + price <= *cap).then_some(c + price)).is_ok()
    }

    /// A call could not connect: how long every call now pauses, or None when the
    /// endpoint has been away longer than `--max-wait` (the run is stopped).
    fn unreachable(&self, e: &CallError) -> Option<Duration> {
        let mut state = self.unreachable.lock().expect("unreachable lock");
        let (since, streak) = state.get_or_insert_with(|| {
            self.progress.note(&format!(
                "bulkgen: {} cannot be reached ({e}); every call is paused and retried, without spending rows' \
                 attempts, for up to --max-wait",
                self.cfg.base_url
            ));
            (Instant::now(), 0)
        });
        *streak += 1;
        self.endpoint_away.store(true, Ordering::Relaxed);
        if since.elapsed() > self.cfg.max_wait {
            let away = since.elapsed();
            drop(state);
            self.stop_run(StopReason::Local(format!(
                "{} has been unreachable for {:.0?} (longer than --max-wait): {e}. Check --base-url and the network, \
                 then run the same command again",
                self.cfg.base_url, away
            )));
            return None;
        }
        let wait = self.cfg.backoff.ceiling(*streak).min(self.cfg.max_wait);
        drop(state);
        self.hold(wait, &format!("{} cannot be reached; the next call probes it", self.cfg.base_url));
        Some(wait)
    }

    /// A call got an answer: the endpoint is back.
    fn reachable(&self) {
        if !self.endpoint_away.load(Ordering::Relaxed) {
            return;
        }
        self.endpoint_away.store(false, Ordering::Relaxed);
        let mut state = self.unreachable.lock().expect("unreachable lock");
        if let Some((since, _)) = state.take() {
            self.progress.note(&format!("bulkgen: {} answers again after {:.0?}", self.cfg.base_url, since.elapsed()));
        }
    }

    /// A call that failed is not billed: its reservation goes back.
    fn release(&self, reserved: u64) {
        if let Some((_, committed)) = &self.budget {
            committed.fetch_sub(reserved, Ordering::SeqCst);
        }
    }

    /// No call starts on any worker for `wait`; the progress line shows the hold and
    /// its end.
    fn hold(&self, wait: Duration, why: &str) {
        self.gate.hold_for(wait);
        self.progress.held(wait, why);
    }

    /// The wait before retry number `retry` after `e`: the server's advice when it gave
    /// one, else the jittered backoff. Advice longer than `--max-wait` (a `Retry-After`
    /// of a day, an HTTP date in 9999) is not waited out with every worker idle: the run
    /// stops (exit 3) naming the wait, and the row stays pending. Returns None then.
    fn retry_wait(&self, retry: u32, e: &CallError) -> Option<Duration> {
        if let Some(advised) = e.retry_after
            && advised > self.cfg.max_wait
        {
            let asked = if advised >= Duration::from_secs(100 * 365 * 86_400) {
                "forever (an absurd Retry-After)".to_owned()
            } else {
                progress::human(advised.as_secs_f64())
            };
            self.stop_run(StopReason::Local(format!(
                "the provider asked to wait {asked} before the next call ({e}), longer than --max-wait {}: rows \
                 stay pending. Run the same command again later, or raise --max-wait to wait it out",
                progress::human(self.cfg.max_wait.as_secs_f64())
            )));
            return None;
        }
        Some(self.cfg.backoff.wait(retry, e.retry_after, &mut *self.rng.lock().expect("rng lock")))
    }

    fn note_failure(&self, row: &PendingRow, e: &CallError) {
        let n = self.progress.counters.failed.load(Ordering::Relaxed);
        if n <= MAX_FAILURE_NOTES {
            self.progress.note(&format!("row {} failed: {e}", row.id));
            if n == MAX_FAILURE_NOTES {
                self.progress.note("further failures are not printed; see results.csv");
            }
        }
    }
}

fn micro_usd(usd: f64) -> u64 {
    (usd * 1e6).round() as u64
}

/// Ctrl-C as the runner sees it: `first` stops new calls and lets those in flight finish;
/// `second` abandons those too. The CLI cancels them from signal handlers; tests and
/// library users can cancel them directly.
#[derive(Debug, Clone, Default)]
pub struct Interrupts {
    pub first: CancellationToken,
    pub second: CancellationToken,
}

/// What the manifest check found: the counts the plan and the preflight need, and every
/// distinct reference image the rows name (read, checked and hashed once each).
#[derive(Debug)]
pub struct CheckedManifest {
    pub stats: manifest::ManifestStats,
    pub references: References,
}

/// Streams the manifest and checks every row against the catalogue (each row's size
/// resolved by its model, `--response-format` only where taken, its reference images read
/// and fitted to its model's limits); nothing is sent to the provider. `run` and `repair`
/// both start here, so a row's identity is computed the same way.
///
/// Reference URLs are fetched first, each distinct one once, [`refs::FETCH_CONCURRENCY`] at
/// a time, with the rules of result downloads (keyless client, no link-local or metadata
/// address, `--max-response-bytes`, `--download-timeout`), into `DIR/refs/<sha256>.<ext>`.
/// A dry run fetches them into a scratch folder under the system's temporary folder that
/// is removed when the check ends, so it still creates nothing: the `RefFile::path` of a
/// URL is then gone, and only its hash and length are meant to be used.
pub async fn check_manifest(cfg: &RunConfig) -> Result<CheckedManifest, RunError> {
    let (path, read) = (cfg.manifest.clone(), cfg.manifest_read.clone());
    let urls = tokio::task::spawn_blocking(move || refs::manifest_urls(&path, &read))
        .await
        .expect("reading the manifest does not panic")?;
    let scratch = cfg.dry_run.then(refs::ScratchDir::new);
    let fetched = if urls.is_empty() {
        std::collections::HashMap::new()
    } else {
        let policy =
            HttpPolicy { connect_timeout: cfg.connect_timeout, http2: cfg.http2, concurrency: refs::FETCH_CONCURRENCY };
        let settings = refs::FetchSettings {
            client: http::download_client(policy)?,
            timeout: cfg.download_timeout,
            max_bytes: cfg.max_response_bytes,
            dir: scratch.as_ref().map_or_else(|| cfg.out.join(refs::CACHE_DIR), |s| s.0.clone()),
            concurrency: refs::FETCH_CONCURRENCY,
        };
        refs::fetch_all(urls, &settings).await
    };
    let checked = cfg.clone();
    let result = tokio::task::spawn_blocking(move || {
        let cfg = checked;
        let check = |model: &str, size, ratio| -> Result<(), String> {
            cfg.catalog.resolve(cfg.dialect, model, size, ratio, cfg.size_policy)?;
            if cfg.engine == Engine::Batch && !cfg.catalog.lookup(model).is_some_and(|m| m.batch) {
                return Err(format!(
                    "--engine batch: the catalogue does not list model {model} as offered through the {} Batch API \
                     (`bulkgen models`); use --engine online, another model, or a --models-file entry with \
                     batch = true if the provider takes it",
                    cfg.dialect.as_str()
                ));
            }
            if let (Some(format), Some(entry)) = (cfg.response_format, cfg.catalog.lookup(model))
                && !entry.response_format
            {
                return Err(format!(
                    "model {model} does not take response_format, and --response-format {} was given: leave the \
                     flag out, or use a model that takes it (`bulkgen models`)",
                    format.as_str()
                ));
            }
            Ok(())
        };
        let checker =
            refs::Checker::new(&cfg.catalog, cfg.dialect, cfg.images_dir.clone(), cfg.max_response_bytes, fetched);
        let ref_check = |model: &str, images: &[String], mask: Option<&str>| checker.check_row(model, images, mask);
        let rules = Rules {
            default_size: cfg.size,
            default_model: &cfg.model,
            reserved_params: provider::fields_set(cfg.dialect),
            check: &check,
            refs: Some(&ref_check),
        };
        let stats = manifest::validate_with(&cfg.manifest, &rules, &cfg.manifest_read)?;
        Ok::<_, RunError>(CheckedManifest { stats, references: checker.into_references() })
    })
    .await
    .expect("manifest validation does not panic");
    drop(scratch);
    result
}

/// Runs (or resumes) the batch described by `cfg`; with `--dry-run`, prints the plan and
/// returns None.
pub async fn run(cfg: RunConfig, interrupts: Interrupts) -> Result<Option<Outcome>, RunError> {
    let CheckedManifest { stats: manifest_stats, references } = check_manifest(&cfg).await?;
    // Every distinct reference image, read and hashed: rows map their spellings to hashes
    // (`References::row_refs`) for their identity (sync) and their calls (attach).
    let references = Arc::new(references);
    // Before anything is sent (the preflight included): a damaged checkpoint, or images
    // of the manifest's rows in a folder without one, would have this run pay again.
    let (out_dir, manifest, read) = (cfg.out.clone(), cfg.manifest.clone(), cfg.manifest_read.clone());
    tokio::task::spawn_blocking(move || checkpoint::check_folder(&out_dir, &manifest, &read))
        .await
        .expect("checking the folder does not panic")
        .map_err(|e| match e {
            CheckpointError::Unadopted { .. } => RunError::Settings(e.to_string()),
            e => RunError::Checkpoint(e),
        })?;

    if cfg.dry_run {
        plan::print(&cfg, references.clone()).await?;
        return Ok(None);
    }
    let policy = HttpPolicy { connect_timeout: cfg.connect_timeout, http2: cfg.http2, concurrency: cfg.concurrency };
    let client = http::client(policy)?;
    let mut notes = Vec::new();
    if manifest_stats.delimiter != manifest::Delimiter::Comma {
        notes.push(format!(
            "manifest {} read as {}-separated{}",
            cfg.manifest.display(),
            manifest_stats.delimiter.word(),
            if manifest_stats.delimiter_detected { " (found from its header; --delimiter chooses)" } else { "" }
        ));
    }
    if cfg.preflight {
        let mut models: Vec<String> = manifest_stats.models.iter().cloned().collect();
        models.extend(cfg.fallback_model.iter().filter(|f| !manifest_stats.models.contains(*f)).cloned());
        let target = preflight::Target {
            dialect: cfg.dialect,
            base_url: &cfg.base_url,
            key: cfg.api_key.as_ref(),
            client: &client,
        };
        notes.extend(preflight::run(&target, &cfg.catalog, &models).await?);
    }
    let fd_note = open_files(&cfg, manifest_stats.rows)?;
    let out = OutDir::create(&cfg.out).map_err(|source| RunError::Output { path: cfg.out.clone(), source })?;
    let _lock = output::lock(&out.root).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => RunError::Settings(e.to_string()),
        _ => RunError::Output { path: out.root.clone(), source: e },
    })?;
    let ckpt = Arc::new(Checkpoint::open(&out.root).map_err(|e| e.with_manifest(&cfg.manifest))?);
    ckpt.set_manifest(cfg.manifest.clone());
    let settings = serde_json::to_string(&cfg).expect("settings serialize");
    let run_id = ckpt.begin_run(settings).await?;
    let recovered = ckpt.recover(out.images.clone()).await?;
    let regenerate_expired = if cfg.regenerate_expired { ckpt.forget_expired_urls().await? } else { 0 };
    let defaults = RowDefaults { size: cfg.size, model: cfg.model.clone(), params: cfg.params.clone() };
    let opts = SyncOptions { retry_failed: cfg.retry_failed, regenerate_changed: cfg.regenerate_changed };
    let sync =
        ckpt.sync_manifest(cfg.manifest.clone(), cfg.manifest_read.clone(), defaults, references.clone(), opts).await?;
    let before = ckpt.counts().await?;
    if cfg.max_cost.is_some() {
        let fallback = cfg.fallback_model.iter().flat_map(|m| Resolution::ALL.map(|r| (m.clone(), r)));
        let needed = ckpt.pending_models().await?.into_iter().chain(fallback);
        let needed: Vec<(String, Resolution)> = needed.collect();
        let mut unpriced: Vec<String> = Vec::new();
        if cfg.engine == Engine::Online || cfg.batch_fallback == crate::flags::BatchFallback::Online {
            unpriced.extend(
                needed.iter().filter(|(m, r)| cfg.prices.get(m, *r).is_none()).map(|(m, r)| format!("{m}:{r}")),
            );
        }
        if cfg.engine == Engine::Batch {
            unpriced.extend(
                needed
                    .iter()
                    .filter(|(m, r)| cfg.prices.price(Engine::Batch, m, *r).is_none())
                    .map(|(m, r)| format!("{m}:{r}:batch")),
            );
        }
        if !unpriced.is_empty() {
            return Err(RunError::Settings(format!(
                "--max-cost needs a price for every model and class the run may use; missing: {} (give --price \
                 MODEL:RES=USD, or MODEL:RES:batch=USD for a batch price)",
                unpriced.join(", ")
            )));
        }
    }

    let progress = Progress::new(before.total(), before.done + before.failed, cfg.progress);
    progress.set_time_scale(cfg.simulate.as_ref().map(|s| s.time_scale));
    // A manifest with counts is counted in images (more of them than manifest rows).
    progress.counting_images(manifest_stats.rows != manifest_stats.manifest_rows);
    Progress::add(&progress.counters.in_batch, before.batch);
    for note in notes.iter().chain(&fd_note) {
        progress.note(note);
    }
    announce(&progress, &recovered, &sync, &before, manifest_stats.manifest_rows);
    if regenerate_expired > 0 {
        progress.note(&format!(
            "{regenerate_expired} row(s) whose result URL expired will be generated and paid for again \
             (--regenerate-expired)"
        ));
    }
    let provider = provider::for_dialect(cfg.dialect, &cfg.base_url);
    let limits =
        http::CallLimits { download_timeout: cfg.download_timeout, max_response_bytes: cfg.max_response_bytes };
    let caller = Caller::new(client, http::download_client(policy)?, provider, cfg.api_key.clone(), limits);
    let attach = Attach::new(references.clone(), cfg.dialect, cfg.base_url.clone(), ckpt.clone()).await?;
    let gate = Gate::new(cfg.concurrency, cfg.rpm.map(|n| (n, cfg.rate_window)));
    let rng = match cfg.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::seed_from_u64(rand::rng().next_u64()),
    };
    // --max-cost caps the folder's whole spend, across runs: what earlier runs paid for
    // (done images at their engine's price, and calls of unknown outcome) counts first.
    let spent = match cfg.max_cost {
        Some(cap) => {
            let inputs = ckpt.report_inputs().await?;
            let earlier = report::build(&inputs, &cfg.prices).overall;
            let spent = earlier.spend_up_to_usd.or(earlier.spend_usd).unwrap_or(0.0);
            if spent > 0.0 {
                progress.note(&format!(
                    "--max-cost {} counts this folder's whole spend: {} already spent by earlier runs, {} left",
                    Usd(cap),
                    Usd(spent),
                    Usd((cap - spent).max(0.0))
                ));
            }
            spent
        }
        None => 0.0,
    };
    // metadata.jsonl as the checkpoint has it (a kill may have left a line whose done
    // mark never committed), then a line appended for each image of this run.
    ckpt.write_metadata(out.root.clone(), cfg.prices.clone(), true).await?;
    let display = progress::start(progress.clone(), cfg.progress);
    let (max_cost, concurrency) = (cfg.max_cost, cfg.concurrency);
    let ctx = Arc::new(Ctx {
        cfg,
        caller,
        attach,
        gate,
        ckpt: ckpt.clone(),
        out,
        run_id,
        progress,
        stop: CancellationToken::new(),
        abort: interrupts.second.clone(),
        stopped: Mutex::new(None),
        rng: Mutex::new(rng),
        downloads: Semaphore::new(concurrency),
        writers: Semaphore::new(MAX_WRITERS),
        budget: max_cost.map(|cap| (micro_usd(cap), AtomicU64::new(micro_usd(spent)))),
        unreachable: Mutex::new(None),
        endpoint_away: std::sync::atomic::AtomicBool::new(false),
        said_short: std::sync::Once::new(),
    });
    let both = (interrupts.first.clone(), interrupts.second.clone());
    let watcher = tokio::spawn(watch_interrupts(ctx.clone(), interrupts));

    match ctx.cfg.engine {
        Engine::Online => {
            if before.batch > 0 {
                ctx.progress.note(&format!(
                    "{} row(s) are in batch jobs still open at the provider: this online run leaves them (they are \
                     paid for there); `--engine batch` collects them, `bulkgen cancel` cancels the jobs",
                    before.batch
                ));
            }
            online::dispatch(ctx.clone(), checkpoint::Pending::All).await;
        }
        Engine::Batch => batch::run(ctx.clone()).await,
    }
    if both.0.is_cancelled() && both.1.is_cancelled() {
        // Past both waits: the second Ctrl-C's note is said before the run ends, not lost
        // to an abort that came first (the calls it abandoned can end before it is said).
        let _ = watcher.await;
    } else {
        watcher.abort();
    }
    display.finish();

    if let Err(e) = ckpt.flush().await {
        ctx.stop_run(StopReason::Local(e.to_string()));
    }
    let counts = ckpt.counts().await?;
    let stopped = ctx.stopped.lock().expect("stop lock").clone();
    let exit_code = if matches!(stopped, Some(StopReason::Interrupted)) {
        exit::INTERRUPTED
    } else if matches!(stopped, Some(StopReason::Budget(_))) {
        exit::ROWS_FAILED
    } else if stopped.is_some() {
        exit::STOPPED
    } else if counts.failed > 0 || counts.pending > 0 || counts.running > 0 || counts.batch > 0 {
        exit::ROWS_FAILED
    } else {
        exit::OK
    };
    ckpt.end_run(run_id, exit_code).await?;
    ckpt.write_results(ctx.out.results()).await?;
    ckpt.write_metadata(ctx.out.root.clone(), ctx.cfg.prices.clone(), false).await?;
    let inputs = ckpt.report_inputs().await?;
    let report = report::build(&inputs, &ctx.cfg.prices);
    report::write_files(&report, &inputs, &ctx.out.root)
        .map_err(|source| RunError::Output { path: ctx.out.root.clone(), source })?;
    ckpt.close().await?;
    let references = ctx.attach.stats();
    Ok(Some(Outcome { exit_code, counts, report, stopped, out: ctx.out.root.clone(), references }))
}

/// Raises the open-file limit to what the calls in flight need (`fdlimit`); the note to
/// print when it did. With `--http2` calls share connections, so a limit too low for one
/// socket per call is raised as far as it goes and the run goes on.
fn open_files(cfg: &RunConfig, rows: u64) -> Result<Option<String>, RunError> {
    let downloads = cfg.response_format == Some(ResponseFormat::Url);
    // A socket per call, one per download (bounded by -c too), and the server's end of
    // both when the simulator runs in this process.
    let sockets_per_call = (1 + u64::from(downloads)) * (1 + u64::from(cfg.simulate.is_some()));
    let at_once = cfg.concurrency.min(usize::try_from(rows).unwrap_or(usize::MAX)).max(1);
    let raised =
        |r: fdlimit::Raised| format!("open-file limit raised from {} to {} for {at_once} calls at once", r.from, r.to);
    match fdlimit::ensure(fdlimit::needed(at_once, sockets_per_call), cfg.concurrency, sockets_per_call) {
        Ok(r) => Ok(r.map(raised)),
        Err(e) if cfg.http2 => Ok(Some(format!(
            "{e}; going on, as HTTP/2 calls share connections{}",
            match fdlimit::raise_to_hard() {
                Some(r) => format!(" ({})", raised(r)),
                None => String::new(),
            }
        ))),
        Err(e) => Err(RunError::Settings(e)),
    }
}

fn announce(progress: &Progress, recovered: &Recovered, sync: &SyncReport, counts: &Counts, manifest_rows: u64) {
    if recovered.done_from_file + recovered.back_to_pending > 0 {
        progress.note(&format!(
            "resuming after an interrupted run: {} row(s) found complete on disk, {} back in the queue",
            recovered.done_from_file, recovered.back_to_pending
        ));
    }
    if sync.unchanged {
        progress.note("the manifest and defaults are unchanged since the last run: nothing new to take in");
    }
    if sync.changed_kept > 0 {
        let more = if sync.changed_kept > sync.changed_kept_ids.len() as u64 { ", ..." } else { "" };
        progress.note(&format!(
            "{} done row(s) changed in the manifest since their image was made (prompt, size, aspect ratio, model, params or reference images): \
             {}{more}. Their old images are kept; pass --regenerate-changed to make them again",
            sync.changed_kept,
            sync.changed_kept_ids.join(", ")
        ));
    }
    if sync.regenerated > 0 {
        progress.note(&format!("{} changed row(s) will be generated again (--regenerate-changed)", sync.regenerated));
    }
    if sync.retried_download > 0 {
        progress.note(&format!(
            "{} row(s) whose result URL could not be downloaded last time: downloading again (not paid again; \
             --regenerate-expired generates them anew instead)",
            sync.retried_download
        ));
    }
    let other_transient = sync.retried_transient - sync.retried_download;
    if other_transient > 0 {
        progress.note(&format!(
            "{other_transient} row(s) ran out of attempts on transient errors in an earlier run and are tried again"
        ));
    }
    if sync.failed_kept > 0 {
        progress.note(&format!(
            "{} row(s) failed for good in an earlier run (refused or invalid) and are left as they are (pass \
             --retry-failed to try them again)",
            sync.failed_kept
        ));
    }
    // With --count or a count column, rows of the checkpoint are images.
    let what = if manifest_rows != counts.total() {
        format!("{} images from {manifest_rows} manifest rows", counts.total())
    } else {
        format!("{} rows in the manifest", counts.total())
    };
    progress.note(&format!("{what}: {} already done, {} to run", counts.done, counts.pending + counts.running));
}

async fn watch_interrupts(ctx: Arc<Ctx>, interrupts: Interrupts) {
    interrupts.first.cancelled().await;
    ctx.stop_run(StopReason::Interrupted);
    let in_flight = ctx.progress.counters.in_flight.load(Ordering::Relaxed);
    ctx.progress.note(&format!(
        "bulkgen: interrupted: no new calls; waiting for {in_flight} call(s) in flight to finish and be recorded \
         (Ctrl-C again to stop now; they go back to the queue)"
    ));
    interrupts.second.cancelled().await;
    ctx.progress.note("bulkgen: stopping now: calls in flight are abandoned and their rows go back to the queue");
}

fn reap(result: Result<(), tokio::task::JoinError>) {
    if let Err(e) = result
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}
