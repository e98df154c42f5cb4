//! The SQLite checkpoint `DIR/bulkgen.db`: every row's state, every attempt, every run's
//! settings (never the key). It is what makes a batch resumable.
//!
//! One thread owns the connection. Callers send it closures over a channel; it runs
//! whatever has queued up in one transaction and answers each caller only after the
//! commit, so an acknowledged write is durable (WAL, `synchronous=FULL`). Batching keeps
//! the number of fsyncs far below the number of writes.
//!
//! The file itself is watched: before each commit the writer checks that `DIR/bulkgen.db`
//! is still the file it opened (same device and inode), and any statement that meets a
//! damaged database (`SQLITE_CORRUPT`, `SQLITE_NOTADB`) stops the writer. Either way every
//! caller gets an error that names the file and `bulkgen repair`, and nothing more is
//! committed. [`check_folder`] is the read-only check a run makes before it sends anything.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::error::{Disposition, ErrorClass};
use crate::manifest::{ManifestReader, ReadError, ReadSettings};
use crate::output;
use crate::params::Params;
use crate::provider::Said;
use crate::refs::{References, RowRefs};
use crate::size::{AspectRatio, Resolution, Size};

pub const DB_FILE: &str = "bulkgen.db";
/// 2: rows gained `params` (part of a row's identity) and `size_sent`.
/// 3: rows gained `stale_sig`, the fingerprint of the image an earlier identity of the row
/// left in place (see [`file_fingerprint`]): recovery never takes that file for the new one.
/// 4: rows gained `refs`, the content hashes of their reference images (part of a row's
/// identity); the `uploads` table records Gemini Files API uploads by content hash.
const SCHEMA_VERSION: i64 = 7;

mod jobs;
mod metadata;
pub use jobs::{JobCounts, JobRecord, JobStep, NewJob, jobs as list_jobs};
pub use metadata::{ImageFacts, METADATA_FILE};
/// The image extensions bulkgen writes (`output::write_image`), in the order they are looked for.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "webp"];
/// Most writes folded into one transaction.
const MAX_BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("checkpoint {path} was written by a newer bulkgen (schema {found}, this one knows {SCHEMA_VERSION})")]
    Version { path: PathBuf, found: i64 },
    #[error("checkpoint write failed: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("checkpoint holds an unexpected value: {0}")]
    Value(#[from] rusqlite::types::FromSqlError),
    #[error("checkpoint: {0}")]
    Io(#[from] std::io::Error),
    #[error("checkpoint writer stopped: {0}")]
    Writer(String),
    /// The database file was unlinked or replaced under a run.
    #[error("{}", gone_text(path, manifest.as_deref()))]
    Gone { path: PathBuf, manifest: Option<PathBuf> },
    /// The database file is damaged (truncated, overwritten, not a database).
    #[error("{}", damaged_text(path, manifest.as_deref(), detail))]
    Damaged { path: PathBuf, manifest: Option<PathBuf>, detail: String },
    /// No checkpoint, but images named after manifest rows: a run would pay for them again.
    #[error("{}", unadopted_text(dir, manifest, *count, examples))]
    Unadopted { dir: PathBuf, manifest: PathBuf, count: u64, examples: Vec<String> },
}

/// `bulkgen repair MANIFEST --out DIR`, with the paths filled in where known.
pub fn repair_command(dir: &Path, manifest: Option<&Path>) -> String {
    let manifest = manifest.map_or_else(|| "MANIFEST.csv".to_owned(), |m| m.display().to_string());
    format!("bulkgen repair {manifest} --out {}", dir.display())
}

fn folder_of(db: &Path) -> &Path {
    db.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn gone_text(path: &Path, manifest: Option<&Path>) -> String {
    let dir = folder_of(path);
    format!(
        "the checkpoint {} was deleted or replaced during the run: no more calls are started, and the images \
         already made are kept in {}. Rebuild the checkpoint from them with `{}` (it sends nothing), then run the \
         same command again",
        path.display(),
        dir.join(output::IMAGES_DIR).display(),
        repair_command(dir, manifest)
    )
}

fn damaged_text(path: &Path, manifest: Option<&Path>, detail: &str) -> String {
    let dir = folder_of(path);
    format!(
        "the checkpoint {} is damaged ({detail}); the images in {} are not affected. Rebuild the checkpoint from \
         them with `{}` (it sends nothing and keeps the damaged file aside), then run the same command again",
        path.display(),
        dir.join(output::IMAGES_DIR).display(),
        repair_command(dir, manifest)
    )
}

fn unadopted_text(dir: &Path, manifest: &Path, count: u64, examples: &[String]) -> String {
    format!(
        "{count} image(s) in {} are named after rows of {} ({}{}), but there is no checkpoint ({} is missing): a \
         run would pay for them again and overwrite them. Run `{}` to adopt them as done, or use another --out",
        dir.join(output::IMAGES_DIR).display(),
        manifest.display(),
        examples.join(", "),
        if count > examples.len() as u64 { ", ..." } else { "" },
        dir.join(DB_FILE).display(),
        repair_command(dir, Some(manifest))
    )
}

/// Whether an SQLite error means the database file itself is damaged.
pub fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase))
}

impl CheckpointError {
    /// Whether the checkpoint file is gone or damaged (`bulkgen repair` is the way out).
    pub fn needs_repair(&self) -> bool {
        match self {
            CheckpointError::Gone { .. } | CheckpointError::Damaged { .. } => true,
            CheckpointError::Open { source, .. } | CheckpointError::Sql(source) => is_damage(source),
            _ => false,
        }
    }

    /// This error, naming `manifest` in its advice when it names none yet.
    pub fn with_manifest(self, manifest: &Path) -> CheckpointError {
        match self {
            CheckpointError::Gone { path, manifest: None } => {
                CheckpointError::Gone { path, manifest: Some(manifest.to_owned()) }
            }
            CheckpointError::Damaged { path, manifest: None, detail } => {
                CheckpointError::Damaged { path, manifest: Some(manifest.to_owned()), detail }
            }
            other => other,
        }
    }

    /// This error, with the damage named and `bulkgen repair` advised when the file is damaged.
    pub fn with_repair_advice(self, path: &Path, manifest: Option<&Path>) -> CheckpointError {
        match self {
            CheckpointError::Open { source, .. } | CheckpointError::Sql(source) if is_damage(&source) => {
                CheckpointError::Damaged {
                    path: path.to_owned(),
                    manifest: manifest.map(Path::to_owned),
                    detail: source.to_string(),
                }
            }
            other => other,
        }
    }
}

/// Why the writer stopped for good, beyond a failed statement.
#[derive(Debug, Clone)]
enum Broken {
    Gone,
    Damaged(String),
}

/// A reference image uploaded with Gemini's Files API.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// Content hash of the reference (SHA-256 hex).
    pub hash: String,
    /// `files/...`
    pub name: String,
    /// What `fileData.fileUri` carries.
    pub uri: String,
    pub mime: String,
    /// Unix seconds.
    pub expires_at: f64,
    pub uploaded_at: f64,
}

/// A row to work on, as the dispatcher needs it.
#[derive(Debug, Clone)]
pub struct PendingRow {
    pub rid: i64,
    pub seq: i64,
    pub id: String,
    pub prompt: String,
    pub size: Size,
    pub aspect_ratio: Option<AspectRatio>,
    pub model: String,
    /// Request fields beyond bulkgen's own (`--param` merged with the row's columns).
    pub params: Params,
    /// Reference images and mask, by content hash.
    pub refs: RowRefs,
    /// A generated image not yet downloaded: fetch it, never generate again.
    pub result_url: Option<String>,
    /// The file of an earlier generation (a changed row being regenerated).
    pub old_file: Option<String>,
    /// Image bytes received but not yet written (the disk failed): write them, no call.
    pub stashed: bool,
    /// The manifest row it is an image of (its own id unless the row has a count).
    pub row_id: String,
}

/// Which pending rows a page holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pending {
    All,
    /// Never submitted to a batch job, or first submitted at `cutoff` or later (unix s):
    /// rows the batch engine may still submit.
    BatchSince {
        cutoff: f64,
    },
    /// First submitted to a batch job before `cutoff`: past `--batch-deadline`.
    BatchBefore {
        cutoff: f64,
    },
}

/// The columns [`pending_row`] reads, in its order.
const PENDING_COLUMNS: &str = "rid, seq, id, prompt, size, aspect_ratio, model, result_url, file, \
     EXISTS (SELECT 1 FROM stash WHERE stash.rid = rows.rid), params, refs, COALESCE(row_id, id)";

fn pending_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingRow> {
    let size: String = r.get(4)?;
    let aspect: Option<String> = r.get(5)?;
    Ok(PendingRow {
        rid: r.get(0)?,
        seq: r.get(1)?,
        id: r.get(2)?,
        prompt: r.get(3)?,
        size: size.parse().unwrap_or(Size::Class(crate::size::Resolution::K1)),
        aspect_ratio: aspect.as_deref().and_then(AspectRatio::parse),
        model: r.get(6)?,
        params: serde_json::from_str(r.get_ref(10)?.as_str()?).unwrap_or_default(),
        // A row is never sent without the references it names.
        refs: RowRefs::from_column(r.get_ref(11)?.as_str()?)
            .map_err(|why| rusqlite::Error::FromSqlConversionFailure(11, rusqlite::types::Type::Text, why.into()))?,
        result_url: r.get(7)?,
        old_file: r.get(8)?,
        stashed: r.get(9)?,
        row_id: r.get(12)?,
    })
}

/// Defaults for rows that name no size or model, and the `--param` fields every row gets
/// (a row's own `param.KEY` columns win).
#[derive(Debug, Clone)]
pub struct RowDefaults {
    pub size: Size,
    pub model: String,
    pub params: Params,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    pub retry_failed: bool,
    pub regenerate_changed: bool,
}

/// How the manifest met the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncReport {
    /// The manifest and the defaults were the same as at the last sync: nothing was
    /// read into the checkpoint (the rest of this report is the last sync's).
    #[serde(default)]
    pub unchanged: bool,
    pub rows: u64,
    pub new: u64,
    pub already_done: u64,
    pub failed_kept: u64,
    pub retried_failed: u64,
    pub regenerated: u64,
    /// Done rows whose prompt, size, aspect ratio, model, params or reference images changed, kept as they are.
    pub changed_kept: u64,
    /// The first few of those ids, to show the user.
    pub changed_kept_ids: Vec<String>,
    /// Failed rows whose last error was transient (they ran out of attempts in an earlier
    /// run), back in the queue: attempts are per run (product.md).
    #[serde(default)]
    pub retried_transient: u64,
    /// Of those, rows whose result URL could not be downloaded: downloaded again, with
    /// nothing paid again.
    #[serde(default)]
    pub retried_download: u64,
    /// Rows changed in the manifest while in an open batch job: kept as sent until the
    /// job ends.
    #[serde(default)]
    pub changed_in_batch: u64,
}

/// What recovery found among rows a dead process left `running`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    pub done_from_file: u64,
    pub back_to_pending: u64,
}

/// Rows of the current manifest per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    /// In an open batch job.
    pub batch: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.pending + self.running + self.done + self.failed + self.batch
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    Generate,
    Download,
    /// A line of a batch job's results: its duration is the job's, from creation.
    Batch,
}

impl AttemptKind {
    fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Generate => "generate",
            AttemptKind::Download => "download",
            AttemptKind::Batch => "batch",
        }
    }
}

/// Who made a row's image: the model (the fallback, if the row switched) and the size it
/// was sent, as results.csv shows them beside what the row asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub model: String,
    pub size_sent: String,
}

/// One call, as it ended.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub rid: i64,
    pub run_id: i64,
    pub kind: AttemptKind,
    pub model: String,
    pub resolution: &'static str,
    pub started_at: f64,
    pub duration_s: f64,
    pub wait_s: f64,
    pub http_status: Option<u16>,
    /// None: the call succeeded.
    pub error: Option<(ErrorClass, String)>,
}

/// What the report needs about the rows of one resolution class made by (or asking
/// for) one model: counts, and the samples percentiles are taken from.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub resolution: String,
    pub model: String,
    /// The engine that made the done rows' images and made the calls: `online` or `batch`
    /// (rows not done are counted with `online`).
    pub engine: String,
    pub done: u64,
    pub failed: u64,
    pub pending: u64,
    /// In flight now, or left so by a dead process.
    pub running: u64,
    /// Rows by number of attempts (rows with none are left out).
    pub attempts_per_row: BTreeMap<u32, u64>,
    pub calls: u64,
    /// Generation calls whose outcome was never recorded (abandoned by a kill or a
    /// second Ctrl-C): they may have been billed. Counted in `calls` too.
    pub unknown: u64,
    pub errors: BTreeMap<String, u64>,
    /// Successful generation latencies, seconds.
    pub latency: Vec<f64>,
    /// First dispatch to file in place, seconds, for rows done online.
    pub e2e: Vec<f64>,
    /// First batch submission to file in place, seconds, for rows done by batch (hours
    /// where online rows take minutes: kept apart so neither hides the other).
    pub batch_e2e: Vec<f64>,
    /// Time each generation waited for a slot or the limiter, seconds.
    pub wait: Vec<f64>,
}

/// Inputs of the latency report: the current manifest's rows and their calls, gathered
/// per (class, model) cell, so memory grows with the samples, not with per-row text.
#[derive(Debug, Clone, Default)]
pub struct ReportInputs {
    pub cells: Vec<Cell>,
    /// When each done row's file was put in place (unix seconds).
    pub completions: Vec<f64>,
    /// Wall time of every run on this folder: (started, ended).
    pub runs: Vec<(f64, Option<f64>)>,
    /// The last run's rate cap in starts per second (of the time the run stands for: see
    /// `time_scale`).
    pub rate_per_s: Option<f64>,
    /// The last run was simulated (`--simulate`) at this time scale: its durations and
    /// rates are given here in the provider time they stand for (real seconds divided by
    /// the scale), so the advice pasted back into the same command holds.
    pub time_scale: Option<f64>,
    /// The manifest rows the images come from, when some row has a count over 1 (then
    /// the rows counted here are images).
    pub manifest_rows: Option<u64>,
}

type Reply = Box<dyn FnOnce() + Send>;

/// One unit of work for the writer thread.
struct Job {
    work: Box<dyn FnOnce(&Connection) -> Reply + Send>,
    /// The images must be made durable before this job's transaction commits (it marks
    /// a row done after its image was written).
    sync_images: bool,
}

/// Handle to the checkpoint; cheap to share behind an `Arc`.
pub struct Checkpoint {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    /// The first write error of a fire-and-forget write, reported by [`Checkpoint::flush`].
    failure: Arc<Mutex<Option<String>>>,
    /// Set when the file was found gone or damaged: the writer has stopped for good.
    broken: Arc<Mutex<Option<Broken>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    images: PathBuf,
    /// The manifest of the last sync, named in the advice of errors.
    manifest: Mutex<Option<PathBuf>>,
    /// metadata.jsonl, appended by the writer as rows are marked done during a run.
    metadata: Arc<metadata::Sink>,
}

pub fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Checkpoint {
    /// Opens (or creates) `dir/bulkgen.db` and starts the writer thread. A file cut
    /// short is refused at once (its header names more pages than it holds); other damage
    /// is met by the first statement that reads it, which stops the writer (see
    /// [`check_folder`] for the full check a run makes first).
    pub fn open(dir: &Path) -> Result<Checkpoint, CheckpointError> {
        let path = dir.join(DB_FILE);
        let damaged = |detail: String| CheckpointError::Damaged { path: path.clone(), manifest: None, detail };
        if let Some(why) = header_damage(&path)? {
            return Err(damaged(why));
        }
        let open_err = |source: rusqlite::Error| {
            CheckpointError::Open { path: path.clone(), source }.with_repair_advice(&path, None)
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        // The file this connection writes: the writer checks before every commit that the
        // path still names it (a deleted or replaced checkpoint stops the run).
        let identity = file_identity(&path)?.ok_or_else(|| {
            CheckpointError::Io(std::io::Error::other(format!("{} vanished as it was opened", path.display())))
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(open_err)?;
        // WAL + FULL: a committed "done" survives a crash or power loss.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        let found: i64 = conn
            .query_row("SELECT value FROM meta WHERE key='schema_version'", [], |r| r.get::<_, String>(0))
            .optional()
            .map_err(open_err)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(CheckpointError::Version { path, found });
        }
        let images = dir.join(output::IMAGES_DIR);
        migrate(&conn, found, &images).map_err(|e| match e {
            CheckpointError::Sql(source) => open_err(source),
            other => other,
        })?;
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION.to_string()],
        )
        .map_err(open_err)?;

        let (tx, rx) = mpsc::channel::<Job>();
        let failure = Arc::new(Mutex::new(None));
        let broken = Arc::new(Mutex::new(None));
        let watch = Watch { path: path.clone(), identity, longest: 0, broken: broken.clone() };
        let (writer_failure, writer_images) = (failure.clone(), images.clone());
        let thread = std::thread::Builder::new()
            .name("bulkgen-checkpoint".into())
            .spawn(move || writer(conn, rx, writer_failure, writer_images, watch))?;
        Ok(Checkpoint {
            tx: Mutex::new(Some(tx)),
            failure,
            broken,
            thread: Mutex::new(Some(thread)),
            path,
            images,
            manifest: Mutex::new(None),
            metadata: Arc::default(),
        })
    }

    /// The manifest to name in the advice of errors (`sync_manifest` sets it too).
    pub fn set_manifest(&self, manifest: PathBuf) {
        *self.manifest.lock().expect("manifest lock") = Some(manifest);
    }

    /// The error for a writer stopped because its file is gone or damaged.
    fn broken_error(&self, broken: Broken) -> CheckpointError {
        let manifest = self.manifest.lock().expect("manifest lock").clone();
        match broken {
            Broken::Gone => CheckpointError::Gone { path: self.path.clone(), manifest },
            Broken::Damaged(detail) => CheckpointError::Damaged { path: self.path.clone(), manifest, detail },
        }
    }

    fn send(&self, job: Job) -> bool {
        match self.tx.lock().expect("checkpoint sender").as_ref() {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        }
    }

    /// Runs `f` on the writer and waits until its transaction is committed.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, CheckpointError> + Send + 'static,
    ) -> Result<R, CheckpointError> {
        let (tx, rx) = oneshot::channel();
        let broken = self.broken.clone();
        let job = Job {
            work: Box::new(move |conn| {
                let result = f(conn);
                if let Err(CheckpointError::Sql(e)) = &result {
                    note_damage(&broken, e);
                }
                Box::new(move || {
                    let _ = tx.send(result);
                })
            }),
            sync_images: false,
        };
        if !self.send(job) {
            return Err(self.writer_gone());
        }
        rx.await.map_err(|_| self.writer_gone())?
    }

    /// Queues a write without waiting; a failure is kept for [`Checkpoint::flush`].
    fn post(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static) {
        self.post_job(false, f);
    }

    fn post_job(&self, sync_images: bool, f: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static) {
        let failure = self.failure.clone();
        let broken = self.broken.clone();
        let work = Box::new(move |conn: &Connection| -> Reply {
            if let Err(e) = f(conn) {
                note_damage(&broken, &e);
                failure.lock().expect("failure lock").get_or_insert_with(|| e.to_string());
            }
            Box::new(|| {})
        });
        if !self.send(Job { work, sync_images }) {
            self.failure.lock().expect("failure lock").get_or_insert_with(|| "the writer thread has stopped".into());
        }
    }

    fn writer_gone(&self) -> CheckpointError {
        if let Some(broken) = self.broken.lock().expect("broken lock").clone() {
            return self.broken_error(broken);
        }
        let why = self.failure.lock().expect("failure lock").clone();
        CheckpointError::Writer(why.unwrap_or_else(|| "the writer thread has stopped".into()))
    }

    /// Waits until every write queued so far is committed; reports the first failed one.
    pub async fn flush(&self) -> Result<(), CheckpointError> {
        self.call(|_| Ok(())).await?;
        if let Some(broken) = self.broken.lock().expect("broken lock").clone() {
            return Err(self.broken_error(broken));
        }
        match self.failure.lock().expect("failure lock").clone() {
            Some(why) => Err(CheckpointError::Writer(why)),
            None => Ok(()),
        }
    }

    /// Records the start of a run with its settings (JSON, without the key), after
    /// accounting for the calls the run before it left without an outcome
    /// ([`record_unknown_outcomes`]).
    pub async fn begin_run(&self, settings: String) -> Result<i64, CheckpointError> {
        self.call(move |c| {
            record_unknown_outcomes(c)?;
            let now = now_unix();
            leave_out_time_between_runs(c, now)?;
            c.execute("INSERT INTO runs(started_at, settings) VALUES (?1, ?2)", params![now, settings])?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    pub async fn end_run(&self, run_id: i64, exit_code: i32) -> Result<(), CheckpointError> {
        self.call(move |c| {
            c.execute(
                "UPDATE runs SET ended_at = ?1, exit_code = ?2 WHERE run_id = ?3",
                params![now_unix(), exit_code, run_id],
            )?;
            Ok(())
        })
        .await
    }

    /// Settles rows a dead process left `running`: a complete image file made for the
    /// row's current identity means done (files only ever appear complete), anything else
    /// goes back to pending, keeping a result URL if one was saved. A row regenerated
    /// because its identity changed still has its earlier image in place until the new
    /// one replaces it: that file (known by the fingerprint `sync` recorded, `stale_sig`)
    /// is never taken for the new image. Also removes temporary files left half-written,
    /// unless the run before this one (begun just now) finished with exit 0: then there
    /// are none, and listing a million-file folder would take a good part of a resume's
    /// time. (A run stopped by a failing disk may have failed to remove its temp file.)
    pub async fn recover(&self, images: PathBuf) -> Result<Recovered, CheckpointError> {
        self.call(move |c| {
            let previous_clean: Option<bool> = c
                .query_row(
                    "SELECT ended_at IS NOT NULL AND exit_code = 0 FROM runs WHERE run_id < (SELECT MAX(run_id) FROM runs) \
                     ORDER BY run_id DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            if previous_clean != Some(true) {
                output::remove_temp_files(&images)?;
            }
            let running: Vec<(i64, String, Option<f64>, Option<String>)> = c
                .prepare("SELECT rid, id, first_dispatch, stale_sig FROM rows WHERE state = 'running'")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<_, _>>()?;
            let mut found = Recovered::default();
            if !running.is_empty() {
                // Files a dead process renamed into place may not be flushed yet: flush
                // them before any of them is marked done.
                output::make_durable(&images)?;
            }
            for (rid, id, first, stale) in running {
                // A file of the row's earlier identity (stale_sig) is not its image.
                let fresh = |bytes: &[u8]| stale.as_deref().is_none_or(|stale| fingerprint(bytes) != stale);
                let file = output::find_image(&images, &id, fresh)?;
                if let Some(file) = file {
                    let done_at = now_unix();
                    c.execute(
                        "UPDATE rows SET state='done', file=?1, done_at=?2, e2e_s=?3, error_class=NULL, error=NULL, \
                         stale_sig=NULL WHERE rid=?4",
                        params![file, done_at, first.map(|f| done_at - f), rid],
                    )?;
                    found.done_from_file += 1;
                } else {
                    c.execute("UPDATE rows SET state='pending' WHERE rid=?1", [rid])?;
                    found.back_to_pending += 1;
                }
            }
            Ok(found)
        })
        .await
    }

    /// `--regenerate-expired`: rows whose result URL could not be downloaded drop it and
    /// go back to the queue, to be generated, and paid for, again. Without the flag such
    /// rows are requeued with their URL kept, as any transient failure is (see
    /// `requeue_transient`). Runs before the manifest sync, so `--retry-failed` cannot
    /// requeue such a row with its URL first.
    pub async fn forget_expired_urls(&self) -> Result<u64, CheckpointError> {
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE rows SET state = 'pending', error_class = NULL, error = NULL, result_url = NULL, \
                 made_by = NULL, size_sent = NULL, latency_s = NULL \
                 WHERE seq IS NOT NULL AND state = 'failed' AND error_class = 'download' AND result_url IS NOT NULL",
                [],
            )? as u64)
        })
        .await
    }

    /// Takes the manifest in: new rows become pending, known rows keep their state. A done
    /// row whose prompt, size, aspect ratio, model, params or reference images changed is listed and kept unless
    /// `regenerate_changed`; a failed row is retried when `retry_failed` or when it changed.
    /// The manifest must have been validated.
    pub async fn sync_manifest(
        &self,
        manifest: PathBuf,
        read: ReadSettings,
        defaults: RowDefaults,
        references: Arc<References>,
        opts: SyncOptions,
    ) -> Result<SyncReport, CheckpointError> {
        self.set_manifest(manifest.clone());
        let images = self.images.clone();
        self.call(move |c| {
            // A resume of an unchanged manifest with the same defaults cannot change a row:
            // skip reading a million rows into the checkpoint again.
            let digest = manifest_digest(&manifest, &defaults, &references, opts)?;
            let stored = |key: &str| -> rusqlite::Result<Option<String>> {
                c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()
            };
            let may_skip = !opts.retry_failed && !opts.regenerate_changed;
            if may_skip
                && stored("manifest_digest")?.as_deref() == Some(digest.as_str())
                && let Some(last) = stored("last_sync")?.and_then(|j| serde_json::from_str::<SyncReport>(&j).ok())
            {
                let mut report = SyncReport { unchanged: true, ..last };
                requeue_transient(c, &mut report)?;
                return Ok(report);
            }
            let mut report = sync(c, &manifest, &read, &images, &defaults, &references, opts)?;
            let save = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)";
            c.execute(save, ["manifest_digest", &digest])?;
            c.execute(save, ["last_sync", &serde_json::to_string(&report).expect("report serializes")])?;
            requeue_transient(c, &mut report)?;
            Ok(report)
        })
        .await
    }

    /// The next pending rows of the manifest after position `after_seq`.
    pub async fn pending_page(&self, after_seq: i64, limit: usize) -> Result<Vec<PendingRow>, CheckpointError> {
        self.pending_page_where(after_seq, limit, Pending::All).await
    }

    /// The next pending rows after `after_seq` that `which` selects.
    pub async fn pending_page_where(
        &self,
        after_seq: i64,
        limit: usize,
        which: Pending,
    ) -> Result<Vec<PendingRow>, CheckpointError> {
        self.call(move |c| {
            let (filter, cutoff) = match which {
                Pending::All => ("1", 0.0),
                Pending::BatchSince { cutoff } => ("(batch_since IS NULL OR batch_since >= ?3)", cutoff),
                Pending::BatchBefore { cutoff } => ("batch_since < ?3", cutoff),
            };
            // `?3 = ?3` names the cutoff in every form of the statement, so one parameter
            // list binds them all.
            let sql = format!(
                "SELECT {PENDING_COLUMNS} FROM rows WHERE state='pending' AND seq > ?1 AND ({filter}) \
                 AND ?3 = ?3 ORDER BY seq LIMIT ?2"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows =
                st.query_map(params![after_seq, limit as i64, cutoff], pending_row)?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Marks the rows of one call in flight before it is sent, so that a crash can never
    /// leave a paid-for call unaccounted for. Returns once committed (one transaction).
    pub async fn start_attempt(&self, rids: Vec<i64>, at: f64) -> Result<(), CheckpointError> {
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "UPDATE rows SET state='running', attempts = attempts + 1, \
                 first_dispatch = COALESCE(first_dispatch, ?1), revised_prompt=NULL, finish_reason=NULL \
                 WHERE rid = ?2",
            )?;
            for rid in rids {
                st.execute(params![at, rid])?;
            }
            Ok(())
        })
        .await
    }

    pub fn record_attempt(&self, a: AttemptRecord) {
        self.post(move |c| {
            // A batch result line read again after a kill (its record committed, its row's
            // done mark not) is the same attempt: one line of one job, recorded once.
            if a.kind == AttemptKind::Batch {
                let seen: bool = c
                    .prepare_cached(
                        "SELECT EXISTS(SELECT 1 FROM attempts WHERE rid=?1 AND kind='batch' AND started_at=?2)",
                    )?
                    .query_row(params![a.rid, a.started_at], |r| r.get(0))?;
                if seen {
                    return Ok(());
                }
            }
            let outcome = if a.error.is_none() { "ok" } else { "error" };
            let (class, message) = match &a.error {
                Some((class, message)) => (Some(class.as_str()), Some(message.as_str())),
                None => (None, None),
            };
            insert_attempt(c, &a, outcome, class, message)
        });
    }

    /// A generation call abandoned before its answer (a second Ctrl-C): it may have been
    /// billed, so it is recorded with outcome `unknown` (its `error` is ignored).
    pub fn record_abandoned(&self, a: AttemptRecord) {
        self.post(move |c| {
            insert_attempt(c, &a, "unknown", None, Some("abandoned by a second Ctrl-C before the answer came"))
        });
    }

    /// The Files API uploads recorded for `endpoint` that have not expired by `now`.
    pub async fn uploads(&self, endpoint: String, now: f64) -> Result<Vec<Upload>, CheckpointError> {
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT hash, name, uri, mime, expires_at, uploaded_at FROM uploads \
                 WHERE endpoint = ?1 AND expires_at > ?2",
            )?;
            let rows = st
                .query_map(params![endpoint, now], |r| {
                    Ok(Upload {
                        hash: r.get(0)?,
                        name: r.get(1)?,
                        uri: r.get(2)?,
                        mime: r.get(3)?,
                        expires_at: r.get(4)?,
                        uploaded_at: r.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Records an upload (replacing an earlier one of the same content). Returns once
    /// committed: a crash after this never uploads the reference again.
    pub async fn save_upload(&self, endpoint: String, u: Upload) -> Result<(), CheckpointError> {
        self.call(move |c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO uploads(hash, endpoint, name, uri, mime, expires_at, uploaded_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![u.hash, endpoint, u.name, u.uri, u.mime, u.expires_at, u.uploaded_at])?;
            Ok(())
        })
        .await
    }

    /// Forgets an upload the provider says is gone (only if it is still the one named).
    pub fn forget_upload(&self, endpoint: String, hash: String, name: String) {
        self.post(move |c| {
            c.prepare_cached("DELETE FROM uploads WHERE hash = ?1 AND endpoint = ?2 AND name = ?3")?
                .execute(params![hash, endpoint, name])?;
            Ok(())
        });
    }

    /// Keeps a generated image's URL before downloading it, so that neither a failed
    /// download nor a crash ever leads to generating the row again. Returns once committed.
    pub async fn save_url(
        &self,
        rid: i64,
        url: String,
        latency_s: f64,
        made: Made,
        said: Said,
    ) -> Result<(), CheckpointError> {
        self.call(move |c| {
            c.prepare_cached(
                "UPDATE rows SET result_url=?1, latency_s=?2, made_by=?3, size_sent=?4, revised_prompt=?6, \
                 finish_reason=?7 WHERE rid=?5",
            )?
            .execute(params![
                url,
                latency_s,
                made.model,
                made.size_sent,
                rid,
                said.revised_prompt,
                said.finish_reason
            ])?;
            Ok(())
        })
        .await
    }

    /// The row's file is in place: the row is done (committed after the images are made
    /// durable, so the file is as durable as the mark).
    /// `made` is None when the row's maker was recorded with its URL or stash already.
    pub fn mark_done(&self, rid: i64, file: String, latency_s: Option<f64>, made: Option<Made>, facts: ImageFacts) {
        self.mark_done_by(rid, None, file, latency_s, made, facts);
    }

    /// A row's image is in place: done, by the online engine (`job` None) or by batch job
    /// `job` (then only a row still in that job is marked: a result is never taken
    /// twice); its stash cleared and its metadata line appended. Committed after the
    /// images are made durable, so the file is as durable as the mark.
    fn mark_done_by(
        &self,
        rid: i64,
        job: Option<i64>,
        file: String,
        latency_s: Option<f64>,
        made: Option<Made>,
        facts: ImageFacts,
    ) {
        let (sink, images) = (self.metadata.clone(), self.images.clone());
        self.post_job(true, move |c| {
            let (model, size_sent) = made.map(|m| (m.model, m.size_sent)).unzip();
            let marked = c
                .prepare_cached(
                    "UPDATE rows SET state='done', file=?1, latency_s=COALESCE(?2, latency_s), \
                     made_by=COALESCE(?3, made_by), size_sent=COALESCE(?4, size_sent), \
                     done_at=?5, e2e_s = ?5 - first_dispatch, error_class=NULL, error=NULL, stale_sig=NULL, \
                     engine=CASE WHEN ?7 IS NULL THEN 'online' ELSE 'batch' END, job=NULL, \
                     sha256=?8, width=?9, height=?10, revised_prompt=COALESCE(?11, revised_prompt), \
                     finish_reason=COALESCE(?12, finish_reason) \
                     WHERE rid=?6 AND (?7 IS NULL OR (state='batch' AND job=?7))",
                )?
                .execute(params![
                    file,
                    latency_s,
                    model,
                    size_sent,
                    now_unix(),
                    rid,
                    job,
                    facts.sha256,
                    facts.width,
                    facts.height,
                    facts.revised_prompt,
                    facts.finish_reason
                ])?;
            if marked == 0 {
                return Ok(());
            }
            c.prepare_cached("DELETE FROM stash WHERE rid = ?1")?.execute([rid])?;
            sink.append(c, &images, rid)
        });
    }

    /// Rewrites `dir/metadata.jsonl` from the done rows (see `checkpoint/metadata.rs`);
    /// with `keep_open`, each later done mark appends its line until [`Checkpoint::close`].
    pub async fn write_metadata(
        &self,
        dir: PathBuf,
        prices: crate::cost::Prices,
        keep_open: bool,
    ) -> Result<(), CheckpointError> {
        let (sink, images) = (self.metadata.clone(), self.images.clone());
        self.call(move |c| sink.rebuild(c, &dir, &images, prices, keep_open)).await
    }

    /// Keeps image bytes the output folder would not take, so a rerun writes them
    /// without paying for the generation again. Returns once committed.
    /// Keeps an image the output folder refused, and what the provider said of it (kept
    /// on the row until its done mark), for the next run to write without a call.
    pub async fn stash(&self, rid: i64, bytes: Vec<u8>, said: Said) -> Result<(), CheckpointError> {
        self.call(move |c| {
            c.execute("INSERT OR REPLACE INTO stash(rid, bytes) VALUES (?1, ?2)", params![rid, bytes])?;
            c.execute(
                "UPDATE rows SET revised_prompt=?1, finish_reason=?2 WHERE rid=?3",
                params![said.revised_prompt, said.finish_reason, rid],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn stashed(&self, rid: i64) -> Result<Option<Vec<u8>>, CheckpointError> {
        self.call(move |c| Ok(c.query_row("SELECT bytes FROM stash WHERE rid = ?1", [rid], |r| r.get(0)).optional()?))
            .await
    }

    pub fn mark_failed(&self, rid: i64, class: ErrorClass, message: String) {
        self.post(move |c| {
            c.prepare_cached("UPDATE rows SET state='failed', error_class=?1, error=?2 WHERE rid=?3")?
                .execute(params![class.as_str(), message, rid])?;
            Ok(())
        });
    }

    /// Back in the queue (the run stopped before this row could finish).
    pub fn mark_pending(&self, rid: i64) {
        self.post(move |c| {
            c.prepare_cached("UPDATE rows SET state='pending' WHERE rid=?1")?.execute([rid])?;
            Ok(())
        });
    }

    /// Back in the queue with the attempt `start_attempt` counted taken back: the run
    /// stopped while the row waited for its rate token, so no request was sent.
    pub fn mark_pending_unsent(&self, rid: i64) {
        self.post(move |c| {
            c.prepare_cached("UPDATE rows SET state='pending', attempts = MAX(attempts - 1, 0) WHERE rid=?1")?
                .execute([rid])?;
            Ok(())
        });
    }

    /// The (model, class) pairs pending rows of the manifest will call.
    pub async fn pending_models(&self) -> Result<Vec<(String, Resolution)>, CheckpointError> {
        self.call(|c| {
            let mut st = c.prepare(
                "SELECT DISTINCT model, resolution FROM rows WHERE seq IS NOT NULL AND state IN ('pending', 'running')",
            )?;
            let pairs = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .filter_map(|p| p.map(|(m, r)| Resolution::parse(&r).map(|r| (m, r))).transpose())
                .collect::<Result<_, _>>()?;
            Ok(pairs)
        })
        .await
    }

    pub async fn counts(&self) -> Result<Counts, CheckpointError> {
        self.call(|c| {
            let mut counts = Counts::default();
            let mut st = c.prepare("SELECT state, COUNT(*) FROM rows WHERE seq IS NOT NULL GROUP BY state")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let n: i64 = r.get(1)?;
                let state: String = r.get(0)?;
                match state.as_str() {
                    "pending" => counts.pending = n as u64,
                    "running" => counts.running = n as u64,
                    "done" => counts.done = n as u64,
                    "failed" => counts.failed = n as u64,
                    "batch" => counts.batch = n as u64,
                    _ => {}
                }
            }
            Ok(counts)
        })
        .await
    }

    /// Writes results.csv, one line per image of the manifest, in manifest order, atomically.
    pub async fn write_results(&self, path: PathBuf) -> Result<(), CheckpointError> {
        self.call(move |c| {
            let extra_names: Vec<String> = c
                .query_row("SELECT value FROM meta WHERE key='extra_columns'", [], |r| r.get::<_, String>(0))
                .optional()?
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or_default();
            let mut st = c.prepare(
                "SELECT id, state, file, resolution, COALESCE(made_by, model), attempts, latency_s, e2e_s, \
                 error_class, error, extra, prompt, size, size_sent, refs, aspect_ratio, \
                 CASE WHEN state = 'done' THEN COALESCE(engine, 'online') END, COALESCE(row_id, id), k \
                 FROM rows WHERE seq IS NOT NULL ORDER BY seq",
            )?;
            let mut rows = st.query([])?;
            output::write_atomically(&path, |w| {
                let mut csv = csv::Writer::from_writer(w);
                let mut header: Vec<&str> = vec![
                    "id",
                    "row_id",
                    "k",
                    "status",
                    "file",
                    "prompt",
                    "size",
                    "size_sent",
                    "aspect_ratio",
                    "resolution",
                    "model",
                    "engine",
                    "reference_hashes",
                    "mask_hash",
                    "attempts",
                    "latency_s",
                    "end_to_end_s",
                    "error_class",
                    "error",
                ];
                header.extend(extra_names.iter().map(String::as_str));
                csv.write_record(&header)?;
                // Fields are written from borrowed text, through one reused buffer for the
                // numbers: a million-row resume rewrites this whole file.
                let mut buf = String::new();
                while let Some(r) = rows.next().map_err(std::io::Error::other)? {
                    let text = |i: usize| -> std::io::Result<&str> {
                        Ok(r.get_ref(i)
                            .map_err(std::io::Error::other)?
                            .as_str_or_null()
                            .map_err(std::io::Error::other)?
                            .unwrap_or(""))
                    };
                    let mut formatted = |csv: &mut csv::Writer<_>, args: std::fmt::Arguments<'_>| {
                        buf.clear();
                        std::fmt::Write::write_fmt(&mut buf, args).expect("writing to a String");
                        csv.write_field(&buf)
                    };
                    csv.write_field(text(0)?)?;
                    csv.write_field(text(17)?)?;
                    formatted(&mut csv, format_args!("{}", r.get::<_, i64>(18).map_err(std::io::Error::other)?))?;
                    csv.write_field(text(1)?)?;
                    match text(2)? {
                        "" => csv.write_field("")?,
                        file => formatted(&mut csv, format_args!("images/{file}"))?,
                    }
                    csv.write_field(text(11)?)?;
                    csv.write_field(text(12)?)?;
                    csv.write_field(text(13)?)?;
                    csv.write_field(text(15)?)?;
                    csv.write_field(text(3)?)?;
                    csv.write_field(text(4)?)?;
                    csv.write_field(text(16)?)?;
                    let refs = RowRefs::from_column(text(14)?).map_err(std::io::Error::other)?;
                    csv.write_field(refs.images.join(";"))?;
                    csv.write_field(refs.mask.as_deref().unwrap_or(""))?;
                    formatted(&mut csv, format_args!("{}", r.get::<_, i64>(5).map_err(std::io::Error::other)?))?;
                    for i in [6, 7] {
                        match r.get::<_, Option<f64>>(i).map_err(std::io::Error::other)? {
                            Some(secs) => formatted(&mut csv, format_args!("{secs:.3}"))?,
                            None => csv.write_field("")?,
                        }
                    }
                    csv.write_field(text(8)?)?;
                    csv.write_field(text(9)?)?;
                    if !extra_names.is_empty() {
                        let extra: Vec<String> = serde_json::from_str(text(10)?).unwrap_or_default();
                        for field in &extra {
                            csv.write_field(field)?;
                        }
                    }
                    csv.write_record(None::<&[u8]>)?;
                }
                csv.flush()?;
                Ok(())
            })?;
            Ok(())
        })
        .await
    }

    /// `bulkgen repair`: copies what can still be read from an old (possibly damaged)
    /// checkpoint into this new one: rows with their state, attempts, files and result
    /// URLs (a row left running becomes pending), stashed images, attempts, runs. Reading
    /// stops at the first damaged page of each table; what was read is kept. Errors of the
    /// old file never mark this one damaged.
    pub async fn salvage(&self, old: PathBuf) -> Result<Salvaged, CheckpointError> {
        self.call(move |c| Ok(salvage_into(c, &old))).await
    }

    /// The manifest's rows after position `after_seq`, as `bulkgen repair` checks them
    /// against the images.
    pub async fn rows_to_check(&self, after_seq: i64, limit: usize) -> Result<Vec<RowOnDisk>, CheckpointError> {
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT rid, seq, id, state, file, stale_sig FROM rows WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = st
                .query_map(params![after_seq, limit as i64], |r| {
                    Ok(RowOnDisk {
                        rid: r.get(0)?,
                        seq: r.get(1)?,
                        id: r.get(2)?,
                        state: r.get(3)?,
                        file: r.get(4)?,
                        stale_sig: r.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Applies what `bulkgen repair` found on disk. The images it adopts were made durable
    /// before (one `syncfs`), so a done mark is never ahead of its file.
    pub async fn apply_disk_state(&self, fixes: Vec<DiskFix>) -> Result<(), CheckpointError> {
        self.call(move |c| {
            let now = now_unix();
            let mut done = c.prepare_cached(
                "UPDATE rows SET state='done', file=?1, done_at=COALESCE(done_at, ?2), error_class=NULL, error=NULL, \
                 stale_sig=NULL WHERE rid=?3",
            )?;
            let mut lost = c.prepare_cached("UPDATE rows SET state='pending', file=NULL WHERE rid=?1")?;
            for fix in fixes {
                match fix {
                    DiskFix::Done { rid, file } => done.execute(params![file, now, rid])?,
                    DiskFix::Lost { rid } => lost.execute([rid])?,
                };
            }
            Ok(())
        })
        .await
    }

    pub async fn report_inputs(&self) -> Result<ReportInputs, CheckpointError> {
        self.call(report_inputs).await
    }

    /// Commits what is queued and stops the writer thread.
    pub async fn close(&self) -> Result<(), CheckpointError> {
        let flushed = self.flush().await;
        self.metadata.close();
        self.tx.lock().expect("checkpoint sender").take();
        let thread = self.thread.lock().expect("checkpoint thread").take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        flushed
    }
}

/// What the writer checks before each commit: that `path` still names the file it opened.
struct Watch {
    path: PathBuf,
    identity: (u64, u64),
    /// The longest the file was seen: bulkgen never shrinks it (no vacuum; the log is
    /// checkpointed into it only ever growing it), so a shorter file was cut under the run.
    longest: u64,
    broken: Arc<Mutex<Option<Broken>>>,
}

impl Watch {
    /// One `stat` per commit batch: a path gone or naming another file means the run's
    /// writes would land in a file nobody will ever read again; a file shorter than it
    /// was means it was cut short under the run. (Its header's page count is no guide
    /// while the log is in use: a checkpoint held back by a reader writes page 1 and not
    /// yet every page it counts.)
    fn check(&mut self) -> Option<Broken> {
        use std::os::unix::fs::MetadataExt;
        let m = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Broken::Gone),
            // Not evidence of a replacement (a permission hiccup): the commit will tell.
            Err(_) => return None,
        };
        if (m.dev(), m.ino()) != self.identity {
            return Some(Broken::Gone);
        }
        if m.len() < self.longest {
            return Some(Broken::Damaged(format!(
                "cut short under the run: {} bytes, where it had {}",
                m.len(),
                self.longest
            )));
        }
        self.longest = m.len();
        None
    }

    fn broken(&self) -> bool {
        self.broken.lock().expect("broken lock").is_some()
    }

    fn set(&self, b: Broken) {
        self.broken.lock().expect("broken lock").get_or_insert(b);
    }
}

/// Marks the checkpoint damaged when `e` says the file is.
fn note_damage(broken: &Mutex<Option<Broken>>, e: &rusqlite::Error) {
    if is_damage(e) {
        broken.lock().expect("broken lock").get_or_insert_with(|| Broken::Damaged(e.to_string()));
    }
}

fn writer(
    conn: Connection,
    rx: mpsc::Receiver<Job>,
    failure: Arc<Mutex<Option<String>>>,
    images: PathBuf,
    mut watch: Watch,
) {
    let broken = watch.broken.clone();
    let fail = |e: rusqlite::Error| {
        note_damage(&broken, &e);
        failure.lock().expect("failure lock").get_or_insert(e.to_string());
    };
    // Fault injection for tests and benchmarks: every commit takes this much longer, as
    // on a slow or busy disk. Not a user setting.
    let slow_commit = std::env::var("BULKGEN_TEST_SLOW_COMMIT_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(std::time::Duration::from_millis);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            return fail(e);
        }
        let sync_images = batch.iter().any(|job| job.sync_images);
        let replies: Vec<Reply> = batch.into_iter().map(|job| (job.work)(&conn)).collect();
        // A statement met a damaged file, or the file is no longer the one opened: commit
        // nothing more, and stop. Dropping the replies tells every waiting caller the
        // write did not land; they then read why from `broken`.
        if !watch.broken()
            && let Some(b) = watch.check()
        {
            watch.set(b);
        }
        if watch.broken() {
            let _ = conn.execute_batch("ROLLBACK");
            return;
        }
        // Renames become durable before the marks that rely on them.
        if sync_images && let Err(e) = output::make_durable(&images) {
            let _ = conn.execute_batch("ROLLBACK");
            failure.lock().expect("failure lock").get_or_insert(format!("cannot sync {}: {e}", images.display()));
            return;
        }
        if let Some(delay) = slow_commit {
            std::thread::sleep(delay);
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => replies.into_iter().for_each(|reply| reply()),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return fail(e);
            }
        }
    }
}

/// End-to-end time is time spent running, not time between runs (an overnight pause is
/// not latency): the first-dispatch time of every row started but not finished moves
/// forward by the gap since the last run ended (its end, or for a killed run its last
/// recorded call). Rows in an open batch job keep theirs: the provider works on them while
/// no run does.
fn leave_out_time_between_runs(c: &Connection, now: f64) -> rusqlite::Result<usize> {
    let last_end: Option<f64> = c
        .query_row(
            "SELECT COALESCE(r.ended_at, \
                    (SELECT MAX(a.started_at + a.duration_s) FROM attempts a WHERE a.run_id = r.run_id), \
                    r.started_at) \
             FROM runs r ORDER BY r.run_id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let Some(end) = last_end.filter(|e| *e < now) else { return Ok(0) };
    c.execute(
        "UPDATE rows SET first_dispatch = first_dispatch + (?1 - ?2) \
         WHERE first_dispatch IS NOT NULL AND first_dispatch <= ?2 AND state IN ('pending', 'running', 'failed')",
        params![now, end],
    )
}

/// Accounts for generation calls a dead process (SIGKILL, power loss, a third Ctrl-C)
/// left without an outcome: a row is marked `running` and its `attempts` counted, in a
/// committed transaction, before each call, and every call that ends is recorded (in
/// the same order, so a later commit carries the earlier records), so a `running` row
/// with fewer generation records than attempts had a call in flight when the process
/// died. That call may have been billed: it is recorded with outcome `unknown`, against
/// the run that made it (the latest one; only one run at a time holds the folder).
fn record_unknown_outcomes(c: &Connection) -> rusqlite::Result<usize> {
    c.execute(
        "INSERT INTO attempts(rid, run_id, kind, model, resolution, started_at, duration_s, wait_s, outcome, message) \
         SELECT r.rid, (SELECT COALESCE(MAX(run_id), 0) FROM runs), 'generate', r.model, r.resolution, \
                COALESCE((SELECT MAX(a.started_at + a.duration_s) FROM attempts a WHERE a.rid = r.rid), \
                         r.first_dispatch, 0), 0, 0, 'unknown', \
                'in flight when the process was killed: the outcome was never recorded' \
         FROM rows r WHERE r.state = 'running' \
           AND r.attempts > (SELECT COUNT(*) FROM attempts a WHERE a.rid = r.rid AND a.kind = 'generate')",
        [],
    )
}

/// For `status` and `report` when no run holds the folder: the calls a dead process
/// left without an outcome ([`record_unknown_outcomes`] records them when the next run
/// starts), added to the report's cells as calls of unknown outcome.
pub fn add_unrecorded_calls(c: &Connection, inputs: &mut ReportInputs) -> Result<(), CheckpointError> {
    let mut st = c.prepare(
        "SELECT r.resolution, r.model, COUNT(*) FROM rows r WHERE r.seq IS NOT NULL AND r.state = 'running' \
           AND r.attempts > (SELECT COUNT(*) FROM attempts a WHERE a.rid = r.rid AND a.kind = 'generate') \
         GROUP BY 1, 2",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let (resolution, model, n): (String, String, u64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let i = match inputs.cells.iter().position(|c| c.resolution == resolution && c.model == model) {
            Some(i) => i,
            None => {
                inputs.cells.push(Cell { resolution, model, ..Cell::default() });
                inputs.cells.len() - 1
            }
        };
        inputs.cells[i].calls += n;
        inputs.cells[i].unknown += n;
    }
    Ok(())
}

/// One row of `attempts`.
fn insert_attempt(
    c: &Connection,
    a: &AttemptRecord,
    outcome: &str,
    class: Option<&str>,
    message: Option<&str>,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO attempts(rid, run_id, kind, model, resolution, started_at, duration_s, wait_s, outcome, \
         http_status, error_class, message) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
    )?
    .execute(params![
        a.rid,
        a.run_id,
        a.kind.as_str(),
        a.model,
        a.resolution,
        a.started_at,
        a.duration_s,
        a.wait_s,
        outcome,
        a.http_status,
        class,
        message
    ])?;
    Ok(())
}

/// (device, inode) of the file at `path`; None when there is none.
fn file_identity(path: &Path) -> std::io::Result<Option<(u64, u64)>> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Why the SQLite file at `path` cannot be whole, read from its 100-byte header: not a
/// database at all, or shorter than the page count the header gives (a file cut short).
/// One small read, so every open can afford it. An empty or missing file is a new one.
/// With a write-ahead log beside it (a run killed, or one under way) the header is no
/// guide, as a checkpoint held back by a reader writes page 1 before every page it
/// counts: then only `PRAGMA quick_check`, which reads through the log, can tell.
pub fn header_damage(path: &Path) -> std::io::Result<Option<String>> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Ok(None);
    }
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut header = [0u8; 100];
    if len < 100 || file.read_exact(&mut header).is_err() {
        return Ok(Some(format!("{len} bytes, shorter than an SQLite header")));
    }
    if &header[..16] != b"SQLite format 3\0" {
        return Ok(Some("not an SQLite database".into()));
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    let be32 = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    // The page count is valid when the change counter matches "version valid for".
    let pages = u64::from(be32(28));
    if be32(24) == be32(92) && pages > 0 && len < pages * page_size {
        return Ok(Some(format!("cut short: {len} bytes of the {} its header gives", pages * page_size)));
    }
    Ok(None)
}

/// Bytes of the start and of the end of an image that its fingerprint reads.
const FINGERPRINT_SAMPLE: usize = 64 * 1024;

/// A fingerprint of an image file: its length and two checksums (CRC-32 and 64-bit
/// FNV-1a) of its first and last 64 KiB. Two generations of one row differ in their
/// compressed pixel data, which fills both ends, so the fingerprint tells them apart
/// without reading whole files (a sync that requeues 100,000 changed rows reads 12 GiB
/// less). It is content, not inode or mtime, so it survives the folder being copied.
pub fn fingerprint(bytes: &[u8]) -> String {
    if bytes.len() <= 2 * FINGERPRINT_SAMPLE {
        fingerprint_parts(bytes.len() as u64, bytes, &[])
    } else {
        fingerprint_parts(bytes.len() as u64, &bytes[..FINGERPRINT_SAMPLE], &bytes[bytes.len() - FINGERPRINT_SAMPLE..])
    }
}

fn fingerprint_parts(len: u64, head: &[u8], tail: &[u8]) -> String {
    let mut crc = crc32fast::Hasher::new();
    let mut fnv: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [head, tail] {
        crc.update(part);
        for b in part {
            fnv ^= u64::from(*b);
            fnv = fnv.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{len}:{:08x}:{fnv:016x}", crc.finalize())
}

/// [`fingerprint`] of the file at `path`, reading only the parts it needs; None when
/// there is no such file.
pub fn file_fingerprint(path: &Path) -> std::io::Result<Option<String>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len <= 2 * FINGERPRINT_SAMPLE as u64 {
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes)?;
        return Ok(Some(fingerprint(&bytes)));
    }
    let (mut head, mut tail) = (vec![0u8; FINGERPRINT_SAMPLE], vec![0u8; FINGERPRINT_SAMPLE]);
    file.read_exact(&mut head)?;
    file.seek(std::io::SeekFrom::Start(len - FINGERPRINT_SAMPLE as u64))?;
    file.read_exact(&mut tail)?;
    Ok(Some(fingerprint_parts(len, &head, &tail)))
}

/// The read-only check a run makes of its folder before it sends anything (the preflight
/// included): an existing checkpoint must be whole (`PRAGMA quick_check`, which reads
/// every page: 55 ms per 100,000 rows, 0.5 s per million, from the page cache; the
/// resume reads those pages next anyway), and a folder without one must not
/// hold images named after the manifest's rows, which a new checkpoint would pay for
/// again. Only `images/` is listed, and the manifest is read only when it holds images.
pub fn check_folder(dir: &Path, manifest: &Path, read: &ReadSettings) -> Result<(), CheckpointError> {
    let path = dir.join(DB_FILE);
    let damaged =
        |detail: String| CheckpointError::Damaged { path: path.clone(), manifest: Some(manifest.to_owned()), detail };
    let len = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        // The folder cannot be read (not a folder, no permission): creating or opening it
        // next says so, with its path.
        Err(_) => return Ok(()),
    };
    if len > 0 {
        if let Some(why) = header_damage(&path)? {
            return Err(damaged(why));
        }
        let advice = |e: rusqlite::Error| {
            CheckpointError::Open { path: path.clone(), source: e }.with_repair_advice(&path, Some(manifest))
        };
        // Only damage stops here. A file this read-only look cannot open or check (a log
        // without its `-shm`, say) is left to the run's own open, which recovers it.
        let c = match Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY) {
            Ok(c) => c,
            Err(e) if is_damage(&e) => return Err(advice(e)),
            Err(_) => return Ok(()),
        };
        return match quick_check(&c) {
            Err(CheckpointError::Sql(e)) if is_damage(&e) => Err(advice(e)),
            Err(CheckpointError::Damaged { detail, .. }) => Err(damaged(detail)),
            _ => Ok(()),
        };
    }
    // No checkpoint: a write-ahead log left without its database (deleted under a run)
    // would be replayed into a new one, so it too needs `bulkgen repair`, which moves it
    // aside; images of the manifest's rows are named first, as the likelier case.
    let wal = dir.join(format!("{DB_FILE}-wal"));
    let stray_wal = || -> Result<(), CheckpointError> {
        match std::fs::metadata(&wal) {
            Ok(m) if m.len() > 0 => {
                Err(damaged(format!("{DB_FILE} is missing, but its write-ahead log {} is left", wal.display())))
            }
            _ => Ok(()),
        }
    };
    let stems = image_stems(&dir.join(output::IMAGES_DIR))?;
    if stems.is_empty() {
        return stray_wal();
    }
    let reader = ManifestReader::open_with(manifest, read).map_err(|e| CheckpointError::Writer(e.to_string()))?;
    let (mut count, mut examples) = (0u64, Vec::new());
    for row in reader {
        let id = match row {
            Ok(r) => r.id,
            Err(ReadError::Io(e)) => return Err(e.into()),
            Err(ReadError::Row(_)) => continue,
        };
        if let Some(name) = stems.get(&id) {
            count += 1;
            if examples.len() < 5 {
                examples.push(name.clone());
            }
        }
    }
    match count {
        0 => stray_wal(),
        _ => Err(CheckpointError::Unadopted { dir: dir.to_owned(), manifest: manifest.to_owned(), count, examples }),
    }
}

/// Image files in `images` by id: `<id>.<png|jpg|webp>` -> the file's name.
fn image_stems(images: &Path) -> Result<std::collections::HashMap<String, String>, CheckpointError> {
    let mut stems = std::collections::HashMap::new();
    let at =
        |e: std::io::Error| CheckpointError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", images.display())));
    // Shard folders (--shard-dirs) too: a folder's runs may have used either layout.
    for (folder, prefix) in output::image_folders(images).map_err(at)? {
        for entry in std::fs::read_dir(&folder).map_err(at)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some((stem, ext)) = name.rsplit_once('.')
                && !stem.is_empty()
                && IMAGE_EXTENSIONS.contains(&ext)
            {
                stems.entry(stem.to_owned()).or_insert(format!("{prefix}{name}"));
            }
        }
    }
    Ok(stems)
}

/// `PRAGMA quick_check` (every page, every index entry; no cross-checks of the index
/// contents): `Damaged` with its first complaint when the file is not whole.
pub fn quick_check(c: &Connection) -> Result<(), CheckpointError> {
    let mut st = c.prepare("PRAGMA quick_check")?;
    let found: Vec<String> = st.query_map([], |r| r.get(0))?.take(100).collect::<Result<_, _>>()?;
    if found.first().map(String::as_str) == Some("ok") {
        return Ok(());
    }
    // One complaint per line, sometimes hundreds in one row: name the first two.
    let lines: Vec<&str> = found
        .iter()
        .flat_map(|f| f.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("***"))
        .collect();
    let mut detail = lines.iter().take(2).copied().collect::<Vec<_>>().join("; ");
    if lines.len() > 2 {
        detail.push_str("; and more");
    }
    if detail.is_empty() {
        detail = "PRAGMA quick_check found problems".into();
    }
    Err(CheckpointError::Damaged { path: PathBuf::new(), manifest: None, detail })
}

/// What `bulkgen repair` read back from an old checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Salvaged {
    pub rows: u64,
    pub done: u64,
    pub failed: u64,
    /// Rows whose image was paid for and not yet downloaded (a result URL).
    pub urls: u64,
    pub stashed: u64,
    pub attempts: u64,
    pub runs: u64,
    /// Rows whose values could not be taken (a damaged record).
    pub skipped: u64,
    /// Where reading stopped early, and why.
    pub stopped: Vec<String>,
}

/// A manifest row as `bulkgen repair` checks it against the images.
#[derive(Debug, Clone)]
pub struct RowOnDisk {
    pub rid: i64,
    pub seq: i64,
    pub id: String,
    pub state: String,
    pub file: Option<String>,
    pub stale_sig: Option<String>,
}

/// What `bulkgen repair` sets from the images.
#[derive(Debug, Clone)]
pub enum DiskFix {
    /// A complete image made for the row is in place.
    Done { rid: i64, file: String },
    /// Marked done, but its image is missing or damaged: back to pending.
    Lost { rid: i64 },
}

/// The columns copied from an old checkpoint's rows, and what a column an older schema
/// lacks stands for (None: the column is required).
const SALVAGED_ROW_COLUMNS: [(&str, Option<&str>); 27] = [
    ("id", None),
    ("prompt", None),
    ("size", None),
    ("resolution", None),
    ("aspect_ratio", Some("NULL")),
    ("model", None),
    ("params", Some("'{}'")),
    ("extra", Some("'[]'")),
    ("state", Some("'pending'")),
    ("attempts", Some("0")),
    ("result_url", Some("NULL")),
    ("file", Some("NULL")),
    ("made_by", Some("NULL")),
    ("size_sent", Some("NULL")),
    ("error_class", Some("NULL")),
    ("error", Some("NULL")),
    ("latency_s", Some("NULL")),
    ("first_dispatch", Some("NULL")),
    ("done_at", Some("NULL")),
    ("e2e_s", Some("NULL")),
    ("stale_sig", Some("NULL")),
    ("refs", Some("''")),
    ("sha256", Some("NULL")),
    ("width", Some("NULL")),
    ("height", Some("NULL")),
    ("revised_prompt", Some("NULL")),
    ("finish_reason", Some("NULL")),
];

fn salvage_into(c: &Connection, old: &Path) -> Salvaged {
    let mut s = Salvaged::default();
    let old = match Connection::open_with_flags(old, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(o) => o,
        Err(e) => {
            s.stopped.push(format!("cannot open it: {e}"));
            return s;
        }
    };
    // Each table on its own: damage in one does not cost the others.
    if let Err(e) = salvage_rows(c, &old, &mut s) {
        s.stopped.push(format!("rows: {e}"));
    }
    let copied = |what: &str, s: &mut Salvaged, r: rusqlite::Result<u64>| match r {
        Ok(_) => {}
        Err(e) => s.stopped.push(format!("{what}: {e}")),
    };
    let r = copy_where_ids(
        c,
        &old,
        "SELECT r.id, s.bytes FROM stash s JOIN rows r ON r.rid = s.rid",
        "INSERT OR REPLACE INTO stash(rid, bytes) SELECT rid, ?2 FROM rows WHERE id = ?1",
        &mut s.stashed,
    );
    copied("stash", &mut s, r);
    let r = copy_where_ids(
        c,
        &old,
        "SELECT r.id, a.run_id, a.kind, a.model, a.resolution, a.started_at, a.duration_s, a.wait_s, a.outcome, \
         a.http_status, a.error_class, a.message FROM attempts a JOIN rows r ON r.rid = a.rid",
        "INSERT INTO attempts(rid, run_id, kind, model, resolution, started_at, duration_s, wait_s, outcome, \
         http_status, error_class, message) SELECT rid, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12 FROM rows \
         WHERE id = ?1",
        &mut s.attempts,
    );
    copied("attempts", &mut s, r);
    let r = copy_where_ids(
        c,
        &old,
        "SELECT run_id, started_at, ended_at, exit_code, settings FROM runs",
        "INSERT OR IGNORE INTO runs(run_id, started_at, ended_at, exit_code, settings) VALUES (?1, ?2, ?3, ?4, ?5)",
        &mut s.runs,
    );
    copied("runs", &mut s, r);
    s
}

/// Copies the old checkpoint's rows; a row left running becomes pending.
fn salvage_rows(c: &Connection, old: &Connection, s: &mut Salvaged) -> rusqlite::Result<()> {
    let present: Vec<String> = old
        .prepare("SELECT name FROM pragma_table_info('rows')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut select = Vec::new();
    for (name, default) in SALVAGED_ROW_COLUMNS {
        match (present.iter().any(|p| p == name), default) {
            (true, _) => select.push(name.to_owned()),
            (false, Some(d)) => select.push(d.to_owned()),
            (false, None) => {
                s.stopped.push(format!("rows: the old checkpoint has no {name} column"));
                return Ok(());
            }
        }
    }
    let names: Vec<&str> = SALVAGED_ROW_COLUMNS.iter().map(|(n, _)| *n).collect();
    let holes: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    let mut insert =
        c.prepare(&format!("INSERT OR IGNORE INTO rows({}) VALUES ({})", names.join(", "), holes.join(", ")))?;
    let mut st = old.prepare(&format!("SELECT {} FROM rows ORDER BY rid", select.join(", ")))?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let mut values: Vec<rusqlite::types::Value> = (0..names.len()).map(|i| r.get(i)).collect::<Result<_, _>>()?;
        use rusqlite::types::Value;
        let state = match &values[8] {
            Value::Text(t) if t == "running" => "pending".to_owned(),
            Value::Text(t) if ["pending", "done", "failed"].contains(&t.as_str()) => t.clone(),
            _ => "pending".to_owned(),
        };
        values[8] = Value::Text(state.clone());
        match insert.execute(rusqlite::params_from_iter(values.iter())) {
            Ok(1) => {
                s.rows += 1;
                match state.as_str() {
                    "done" => s.done += 1,
                    "failed" => s.failed += 1,
                    _ if !matches!(values[10], Value::Null) => s.urls += 1,
                    _ => {}
                }
            }
            _ => s.skipped += 1,
        }
    }
    Ok(())
}

/// Runs `select` on the old checkpoint and `insert` with each of its rows (same columns);
/// counts the rows inserted into `n`.
fn copy_where_ids(c: &Connection, old: &Connection, select: &str, insert: &str, n: &mut u64) -> rusqlite::Result<u64> {
    let mut insert = c.prepare(insert)?;
    let mut st = old.prepare(select)?;
    let width = st.column_count();
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let values: Vec<rusqlite::types::Value> = (0..width).map(|i| r.get(i)).collect::<Result<_, _>>()?;
        if let Ok(k) = insert.execute(rusqlite::params_from_iter(values.iter())) {
            *n += k as u64;
        }
    }
    Ok(*n)
}

/// A fingerprint of the manifest's bytes and of what a sync does with them.
fn manifest_digest(
    path: &Path,
    defaults: &RowDefaults,
    references: &References,
    opts: SyncOptions,
) -> std::io::Result<String> {
    use std::hash::{Hash, Hasher};
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let (mut a, mut b) = (std::hash::DefaultHasher::new(), std::hash::DefaultHasher::new());
    0u8.hash(&mut a);
    1u8.hash(&mut b);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        a.write(&buf[..n]);
        b.write(&buf[..n]);
    }
    for h in [&mut a, &mut b] {
        let params = serde_json::to_string(&defaults.params).expect("params serialize");
        (defaults.size.to_string(), &defaults.model, params, opts.retry_failed, opts.regenerate_changed).hash(h);
        // A reference file changed under an unchanged manifest changes rows too, and so
        // do two files that swapped contents: what each spelling names is hashed.
        let mut named: Vec<(&str, &str)> = references.spellings().collect();
        named.sort_unstable();
        named.hash(h);
    }
    Ok(format!("{:016x}{:016x}", a.finish(), b.finish()))
}

/// The settings (JSON) of the latest run, if any.
pub fn last_settings(c: &Connection) -> Result<Option<String>, CheckpointError> {
    Ok(c.query_row("SELECT settings FROM runs ORDER BY run_id DESC LIMIT 1", [], |r| r.get(0)).optional()?)
}

/// Reads what the report needs; also used on a read-only connection by `bulkgen report`.
pub fn report_inputs(c: &Connection) -> Result<ReportInputs, CheckpointError> {
    let mut cells: Vec<Cell> = Vec::new();
    // There are a handful of cells (classes x models): a scan by &str beats sorting a
    // million rows or allocating a key per row.
    let cell_of = |cells: &mut Vec<Cell>, res: &str, model: &str, engine: &str| -> usize {
        match cells.iter().rposition(|c| c.resolution == res && c.model == model && c.engine == engine) {
            Some(i) => i,
            None => {
                cells.push(Cell {
                    resolution: res.to_owned(),
                    model: model.to_owned(),
                    engine: engine.to_owned(),
                    ..Cell::default()
                });
                cells.len() - 1
            }
        }
    };
    // Counted here rather than by GROUP BY, which sorts every row first (a fifth of a
    // million-row resume's time).
    let mut st =
        c.prepare(
            "SELECT resolution, COALESCE(made_by, model), state, attempts, \
             CASE WHEN state = 'done' AND engine = 'batch' THEN 'batch' ELSE 'online' END FROM rows WHERE seq IS NOT NULL",
        )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let i = cell_of(&mut cells, r.get_ref(0)?.as_str()?, r.get_ref(1)?.as_str()?, r.get_ref(4)?.as_str()?);
        let attempts: u32 = r.get(3)?;
        let cell = &mut cells[i];
        match r.get_ref(2)?.as_str()? {
            "done" => cell.done += 1,
            "failed" => cell.failed += 1,
            "running" => cell.running += 1,
            _ => cell.pending += 1,
        }
        if attempts > 0 {
            *cell.attempts_per_row.entry(attempts).or_default() += 1;
        }
    }
    let mut st = c.prepare(
        "SELECT resolution, COALESCE(made_by, model), e2e_s, COALESCE(engine, 'online') = 'batch' FROM rows \
         WHERE seq IS NOT NULL AND state = 'done' AND e2e_s IS NOT NULL",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let batch: bool = r.get(3)?;
        let engine = if batch { "batch" } else { "online" };
        let i = cell_of(&mut cells, r.get_ref(0)?.as_str()?, r.get_ref(1)?.as_str()?, engine);
        let e2e = r.get(2)?;
        if batch { cells[i].batch_e2e.push(e2e) } else { cells[i].e2e.push(e2e) }
    }
    let mut st = c.prepare(
        "SELECT a.resolution, a.model, a.kind = 'generate', a.outcome = 'ok', a.duration_s, a.wait_s, a.error_class, \
         a.outcome = 'unknown', CASE WHEN a.kind = 'batch' THEN 'batch' ELSE 'online' END, \
         a.kind <> 'generate' OR ROW_NUMBER() OVER (PARTITION BY a.run_id, a.kind, a.model, a.started_at, \
         a.duration_s ORDER BY a.rowid) = 1, \
         a.kind <> 'generate' OR ROW_NUMBER() OVER (PARTITION BY a.run_id, a.kind, a.model, a.started_at, \
         a.duration_s, a.error_class ORDER BY a.rowid) = 1 \
         FROM attempts a JOIN rows r ON r.rid = a.rid WHERE r.seq IS NOT NULL",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let i = cell_of(&mut cells, r.get_ref(0)?.as_str()?, r.get_ref(1)?.as_str()?, r.get_ref(8)?.as_str()?);
        let cell = &mut cells[i];
        let (generate, ok): (bool, bool) = (r.get(2)?, r.get(3)?);
        // The images of one call (`n`) each record the call, with the same start and
        // duration: it is one call, and each image an attempt.
        let first_of_call: bool = r.get(9)?;
        cell.calls += u64::from(first_of_call);
        if r.get(7)? {
            // Neither its latency nor its wait is known.
            cell.unknown += 1;
        } else if generate && first_of_call {
            // One sample per call: a call's latency and wait are not its images' each.
            cell.wait.push(r.get(5)?);
            if ok {
                cell.latency.push(r.get(4)?);
            }
        }
        // An error is the call's: once per call (a call that came back short is one).
        let first_of_class: bool = r.get(10)?;
        if let Some(class) = r.get_ref(6)?.as_str_or_null()?
            && first_of_class
        {
            *cell.errors.entry(class.to_owned()).or_default() += 1;
        }
    }
    let runs = c
        .prepare("SELECT started_at, ended_at FROM runs ORDER BY run_id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let completions = c
        .prepare("SELECT done_at FROM rows WHERE seq IS NOT NULL AND state = 'done' AND done_at IS NOT NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let settings = last_settings(c)?;
    let rate_per_s = settings.as_deref().and_then(rate_of);
    let time_scale = settings.as_deref().and_then(time_scale_of);
    let (images, manifest_rows): (u64, u64) = c.query_row(
        "SELECT COUNT(*), COUNT(DISTINCT COALESCE(row_id, id)) FROM rows WHERE seq IS NOT NULL",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let manifest_rows = (manifest_rows < images).then_some(manifest_rows);
    let mut inputs = ReportInputs { cells, completions, runs, rate_per_s, time_scale, manifest_rows };
    if let Some(scale) = time_scale.filter(|s| *s > 0.0) {
        for cell in &mut inputs.cells {
            for xs in [&mut cell.latency, &mut cell.e2e, &mut cell.batch_e2e, &mut cell.wait] {
                xs.iter_mut().for_each(|x| *x /= scale);
            }
        }
        inputs.rate_per_s = inputs.rate_per_s.map(|r| r * scale);
    }
    Ok(inputs)
}

/// The time scale of a simulated run's settings (`simulate.time_scale`), if it was one.
fn time_scale_of(settings: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(settings).ok()?;
    v.get("simulate")?.get("time_scale")?.as_f64()
}

/// Starts per second allowed by a run's settings (`rpm` per `rate_window`).
fn rate_of(settings: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(settings).ok()?;
    let rpm = v.get("rpm")?.as_f64()?;
    let w = v.get("rate_window")?;
    let window = w.get("secs")?.as_f64()? + w.get("nanos").and_then(serde_json::Value::as_f64).unwrap_or(0.0) / 1e9;
    (window > 0.0).then(|| rpm / window)
}

/// A row the checkpoint already has: rid, prompt, size, aspect ratio, model, state, params, file.
type Known = (i64, String, String, Option<String>, String, String, String, Option<String>, String);

fn sync(
    c: &Connection,
    path: &Path,
    read: &ReadSettings,
    images: &Path,
    defaults: &RowDefaults,
    references: &References,
    opts: SyncOptions,
) -> Result<SyncReport, CheckpointError> {
    let reader = ManifestReader::open_with(path, read).map_err(|e| CheckpointError::Writer(e.to_string()))?;
    c.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('extra_columns', ?1)",
        [serde_json::to_string(reader.extra_columns()).expect("strings serialize")],
    )?;
    c.execute("UPDATE rows SET seq = NULL WHERE seq IS NOT NULL", [])?;
    let mut find =
        c.prepare("SELECT rid, prompt, size, aspect_ratio, model, state, params, file, refs FROM rows WHERE id = ?1")?;
    let mut insert = c.prepare(
        "INSERT INTO rows(seq, id, prompt, size, resolution, aspect_ratio, model, extra, params, refs, state, \
         row_id, k) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', ?11, ?12)",
    )?;
    // An image's row id and k are kept up to date: `a_2` may have been a row's own id in
    // an earlier manifest and be image 2 of row `a` now (or the other way round).
    let mut place = c.prepare("UPDATE rows SET row_id=?1, k=?2 WHERE rid=?3 AND (row_id IS NOT ?1 OR k IS NOT ?2)")?;
    let mut keep = c.prepare("UPDATE rows SET seq=?1, extra=?2 WHERE rid=?3")?;
    let mut requeue =
        c.prepare("UPDATE rows SET seq=?1, extra=?2, state='pending', error_class=NULL, error=NULL WHERE rid=?3")?;
    let mut replace = c.prepare(
        "UPDATE rows SET seq=?1, extra=?2, prompt=?3, size=?4, resolution=?5, aspect_ratio=?6, model=?7, \
         params=?8, refs=?9, state='pending', result_url=NULL, error_class=NULL, error=NULL, \
         first_dispatch=NULL, e2e_s=NULL, revised_prompt=NULL, finish_reason=NULL WHERE rid=?10",
    )?;
    let mut report = SyncReport::default();
    for row in reader {
        let row = match row {
            Ok(r) => r,
            Err(ReadError::Io(e)) => return Err(e.into()),
            Err(ReadError::Row(p)) => {
                return Err(CheckpointError::Writer(format!("manifest changed while read: {p}")));
            }
        };
        report.rows += 1;
        let size = row.size.unwrap_or(defaults.size);
        let size_text = size.to_string();
        let resolution = size.resolution().as_str();
        let aspect = row.aspect_ratio.map(|a| a.to_string());
        let aspect = aspect.as_deref();
        let model = row.model.as_deref().unwrap_or(&defaults.model);
        let mut merged = defaults.params.clone();
        crate::params::merge_into(&mut merged, &row.params);
        let params_text = serde_json::to_string(&merged).expect("params serialize");
        let extra = serde_json::to_string(&row.extra).expect("strings serialize");
        let refs_text = references
            .row_refs(&row.images, row.mask.as_deref())
            .ok_or_else(|| {
                CheckpointError::Writer(format!(
                    "row {}: a reference image was not read by the manifest check (was the manifest changed while \
                     the run started?)",
                    row.id
                ))
            })?
            .to_column();
        let seq = row.seq as i64;
        let known: Option<Known> = find
            .query_row([&row.id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
            })
            .optional()?;
        let Some((rid, prompt, old_size, old_aspect, old_model, state, old_params, old_file, old_refs)) = known else {
            insert.execute(params![
                seq,
                row.id,
                row.prompt,
                size_text,
                resolution,
                aspect,
                model,
                extra,
                params_text,
                refs_text,
                row.row_id,
                row.k
            ])?;
            report.new += 1;
            continue;
        };
        place.execute(params![row.row_id, row.k, rid])?;
        let changed = prompt != row.prompt
            || old_size != size_text
            || old_aspect.as_deref() != aspect
            || old_model != model
            || old_params != params_text
            || old_refs != refs_text;
        match (state.as_str(), changed) {
            ("batch", true) => {
                // Sent as it was to a batch job still open: its result (paid for) is taken
                // when the job ends, and the change is met then like a done row's.
                keep.execute(params![seq, extra, rid])?;
                report.changed_in_batch += 1;
            }
            ("done", false) => {
                keep.execute(params![seq, extra, rid])?;
                report.already_done += 1;
            }
            ("done", true) if !opts.regenerate_changed => {
                keep.execute(params![seq, extra, rid])?;
                report.changed_kept += 1;
                if report.changed_kept_ids.len() < 20 {
                    report.changed_kept_ids.push(row.id.clone());
                }
            }
            (_, true) => {
                replace.execute(params![
                    seq,
                    extra,
                    row.prompt,
                    size_text,
                    resolution,
                    aspect,
                    model,
                    params_text,
                    refs_text,
                    rid
                ])?;
                c.execute("DELETE FROM stash WHERE rid = ?1", [rid])?;
                if state == "done" {
                    // The done image stays in place until the new one replaces it: record
                    // what it is, so recovery after a crash never takes it for the new
                    // image. (A row not done keeps the fingerprint it has: its file, if
                    // any, is still an earlier identity's.)
                    let stale = match &old_file {
                        Some(file) => file_fingerprint(&images.join(file))?,
                        None => None,
                    };
                    c.execute("UPDATE rows SET stale_sig = ?1 WHERE rid = ?2", params![stale, rid])?;
                    report.regenerated += 1;
                }
            }
            ("failed", false) if opts.retry_failed => {
                requeue.execute(params![seq, extra, rid])?;
                report.retried_failed += 1;
            }
            ("failed", false) => {
                keep.execute(params![seq, extra, rid])?;
                report.failed_kept += 1;
            }
            (_, false) => {
                keep.execute(params![seq, extra, rid])?;
            }
        }
    }
    Ok(report)
}

/// Puts back in the queue every failed row of the manifest whose last error was
/// transient: it ran out of attempts in an earlier run (an outage, a 503 storm), and the
/// same command tried again is meant to finish it. Final classes (refused,
/// invalid_request) stay failed until `--retry-failed`. Then counts the rows left failed.
fn requeue_transient(c: &Connection, report: &mut SyncReport) -> rusqlite::Result<()> {
    let transient: Vec<String> = ErrorClass::ALL
        .into_iter()
        .filter(|class| class.disposition() == Disposition::Retry)
        .map(|class| format!("'{}'", class.as_str()))
        .collect();
    report.retried_download = c.query_row(
        "SELECT COUNT(*) FROM rows WHERE state='failed' AND seq IS NOT NULL AND error_class='download' \
         AND result_url IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    let requeued = c.execute(
        &format!(
            "UPDATE rows SET state='pending' WHERE state='failed' AND seq IS NOT NULL AND error_class IN ({})",
            transient.join(", ")
        ),
        [],
    )?;
    report.retried_transient = requeued as u64;
    report.failed_kept =
        c.query_row("SELECT COUNT(*) FROM rows WHERE state='failed' AND seq IS NOT NULL", [], |r| r.get(0))?;
    Ok(())
}

/// Brings a checkpoint of an older schema (`found`; 0: a new file) up to this one:
/// columns added with defaults that mean what older bulkgen did (no params, size sent
/// unknown). Schema 3 adds `stale_sig`; for a checkpoint of schema 1 or 2 it is filled
/// for rows not done that name a file: only a done row gets a file, so such a file was
/// made for an earlier identity of the row (one regenerated and not done yet). A row
/// left running whose new image did land gets its new file recorded so and is paid
/// again once, as at most `--concurrency` rows can be.
fn migrate(c: &Connection, found: i64, images: &Path) -> Result<(), CheckpointError> {
    let mut st = c.prepare("SELECT name FROM pragma_table_info('rows')")?;
    let columns: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for (name, decl) in [
        ("params", "TEXT NOT NULL DEFAULT '{}'"),
        ("size_sent", "TEXT"),
        ("stale_sig", "TEXT"),
        ("refs", "TEXT NOT NULL DEFAULT ''"),
        ("job", "INTEGER"),
        ("batch_since", "REAL"),
        ("engine", "TEXT"),
        ("sha256", "TEXT"),
        ("width", "INTEGER"),
        ("height", "INTEGER"),
        ("revised_prompt", "TEXT"),
        ("finish_reason", "TEXT"),
        ("row_id", "TEXT"),
        ("k", "INTEGER NOT NULL DEFAULT 1"),
    ] {
        if !columns.iter().any(|c| c == name) {
            c.execute_batch(&format!("ALTER TABLE rows ADD COLUMN {name} {decl}"))?;
        }
    }
    if (1..3).contains(&found) {
        let earlier: Vec<(i64, String)> = c
            .prepare("SELECT rid, file FROM rows WHERE state != 'done' AND file IS NOT NULL")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (rid, file) in earlier {
            let stale = file_fingerprint(&images.join(&file))?;
            c.execute("UPDATE rows SET stale_sig = ?1 WHERE rid = ?2", params![stale, rid])?;
        }
    }
    Ok(())
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    ended_at REAL,
    exit_code INTEGER,
    settings TEXT NOT NULL
);
-- One row per image. seq: position in the current manifest (image number: a manifest row of
-- count c is c images); NULL for images it no longer has. id: the image's id (the file's
-- stem); row_id and k: the manifest row it belongs to and which of its images it is (from
-- 1); row_id NULL (schema 6 and older) means the id itself.
CREATE TABLE IF NOT EXISTS rows (
    rid INTEGER PRIMARY KEY,
    seq INTEGER,
    id TEXT NOT NULL UNIQUE,
    row_id TEXT,
    k INTEGER NOT NULL DEFAULT 1,
    prompt TEXT NOT NULL,
    size TEXT NOT NULL,
    resolution TEXT NOT NULL,
    aspect_ratio TEXT,
    model TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    -- Reference images by content hash (refs::RowRefs::to_column); '' for none.
    refs TEXT NOT NULL DEFAULT '',
    extra TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    result_url TEXT,
    file TEXT,
    made_by TEXT,
    size_sent TEXT,
    -- Fingerprint of the image an earlier identity left in place (a regenerated row).
    stale_sig TEXT,
    error_class TEXT,
    error TEXT,
    latency_s REAL,
    first_dispatch REAL,
    done_at REAL,
    e2e_s REAL,
    -- The image's SHA-256 and size in pixels, read from its bytes when it was written.
    sha256 TEXT,
    width INTEGER,
    height INTEGER,
    -- What the provider said beside the image (OpenAI revised_prompt, Gemini finishReason).
    revised_prompt TEXT,
    finish_reason TEXT,
    -- The open batch job holding the row (state 'batch'), its first submission to any
    -- batch job (the --batch-deadline clock), and the engine that made its image.
    job INTEGER,
    batch_since REAL,
    engine TEXT
);
CREATE INDEX IF NOT EXISTS rows_seq ON rows(seq);
CREATE INDEX IF NOT EXISTS rows_pending ON rows(seq) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS attempts (
    rid INTEGER NOT NULL REFERENCES rows(rid),
    run_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    resolution TEXT NOT NULL,
    started_at REAL NOT NULL,
    duration_s REAL NOT NULL,
    wait_s REAL NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER,
    error_class TEXT,
    message TEXT
);
CREATE INDEX IF NOT EXISTS attempts_rid ON attempts(rid);
-- Images received but not yet written because the output folder failed.
-- Gemini Files API uploads of reference images, by content hash and endpoint (files are
-- per project; another endpoint has its own). A row is written only once the upload's
-- answer is in hand (attach.rs); `expires_at` is the provider's expirationTime.
CREATE TABLE IF NOT EXISTS uploads (
    hash TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    name TEXT NOT NULL,
    uri TEXT NOT NULL,
    mime TEXT NOT NULL,
    expires_at REAL NOT NULL,
    uploaded_at REAL NOT NULL,
    PRIMARY KEY (hash, endpoint)
);
CREATE TABLE IF NOT EXISTS stash (rid INTEGER PRIMARY KEY REFERENCES rows(rid), bytes BLOB NOT NULL);
-- Batch API jobs (jobs.rs). `step` is how far bulkgen got, each step committed before the
-- next is taken: assigned (rows set aside, token chosen) -> uploaded (input_file) ->
-- creating (the create request may have been sent: find the job by its token before
-- creating anything) -> open (name known) -> closed (results taken, rows not done back
-- in the queue).
CREATE TABLE IF NOT EXISTS jobs (
    jid INTEGER PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    dialect TEXT NOT NULL,
    model TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    step TEXT NOT NULL,
    input_file TEXT,
    name TEXT,
    state TEXT,
    result_file TEXT,
    error_file TEXT,
    lines INTEGER NOT NULL,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    price_micro INTEGER NOT NULL DEFAULT 0,
    assigned_at REAL NOT NULL,
    created_at REAL,
    polled_at REAL,
    cancel_sent_at REAL,
    closed_at REAL,
    note TEXT
);
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_reads_both_ends_and_tells_images_apart() {
        let dir = tempfile::tempdir().unwrap();
        for size in [100, 2 * FINGERPRINT_SAMPLE, 300 * 1024] {
            let a = crate::sim::png::make(size, 1, "prompt=a");
            let b = crate::sim::png::make(size, 2, "prompt=b");
            assert_ne!(fingerprint(&a), fingerprint(&b), "{size}");
            let path = dir.path().join("a.png");
            std::fs::write(&path, &a).unwrap();
            assert_eq!(file_fingerprint(&path).unwrap(), Some(fingerprint(&a)), "{size}: file and bytes agree");
        }
        assert_eq!(file_fingerprint(&dir.path().join("none.png")).unwrap(), None);
    }

    #[test]
    fn a_database_cut_short_is_told_by_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        assert_eq!(header_damage(&path).unwrap(), None, "no file: a new checkpoint");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c.execute_batch("CREATE TABLE filler(x); INSERT INTO filler VALUES (zeroblob(100000));").unwrap();
        drop(c);
        assert_eq!(header_damage(&path).unwrap(), None);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
        assert!(header_damage(&path).unwrap().unwrap().contains("cut short"));
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        assert_eq!(header_damage(&path).unwrap().as_deref(), Some("not an SQLite database"));
    }

    /// A schema-2 checkpoint whose row was requeued by `--regenerate-changed` (not done,
    /// its old file named) and then left running by a killed run: the migration records
    /// the old file's fingerprint, so recovery does not take it for the new image.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_schema_2_checkpoint_learns_which_files_are_an_earlier_identitys() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join(output::IMAGES_DIR);
        std::fs::create_dir_all(&images).unwrap();
        let old_image = crate::sim::png::make(1000, 1, "prompt=old");
        std::fs::write(images.join("a.png"), &old_image).unwrap();
        std::fs::write(images.join("b.png"), crate::sim::png::make(1000, 2, "prompt=b")).unwrap();
        {
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            c.execute_batch(&SCHEMA.replace("    stale_sig TEXT,\n", "")).unwrap();
            c.execute_batch(
                "INSERT INTO meta VALUES ('schema_version', '2');
                 INSERT INTO rows(seq, id, prompt, size, resolution, model, state, file)
                     VALUES (1, 'a', 'new prompt', '1K', '1K', 'm', 'running', 'a.png'),
                            (2, 'b', 'prompt b', '1K', '1K', 'm', 'running', NULL);",
            )
            .unwrap();
        }
        let ckpt = Checkpoint::open(dir.path()).unwrap();
        ckpt.begin_run("{}".into()).await.unwrap();
        let recovered = ckpt.recover(images.clone()).await.unwrap();
        assert_eq!(recovered, Recovered { done_from_file: 1, back_to_pending: 1 });
        let counts = ckpt.counts().await.unwrap();
        assert_eq!((counts.done, counts.pending), (1, 1), "b is done; a waits for its new image");
        ckpt.close().await.unwrap();
        assert_eq!(std::fs::read(images.join("a.png")).unwrap(), old_image, "the old image is kept");
    }
}
