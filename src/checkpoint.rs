//! The SQLite checkpoint `DIR/bulkgen.db`: every row's state, every attempt, every run's
//! settings (never the key). It is what makes a batch resumable.
//!
//! One thread owns the connection. Callers send it closures over a channel; it runs
//! whatever has queued up in one transaction and answers each caller only after the
//! commit, so an acknowledged write is durable (WAL, `synchronous=FULL`). Batching keeps
//! the number of fsyncs far below the number of writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::error::{Disposition, ErrorClass};
use crate::manifest::{ManifestReader, ReadError};
use crate::output;
use crate::params::Params;
use crate::size::{AspectRatio, Resolution, Size};

pub const DB_FILE: &str = "bulkgen.db";
/// 2: rows gained `params` (part of a row's identity) and `size_sent`.
const SCHEMA_VERSION: i64 = 2;
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
    /// A generated image not yet downloaded: fetch it, never generate again.
    pub result_url: Option<String>,
    /// The file of an earlier generation (a changed row being regenerated).
    pub old_file: Option<String>,
    /// Image bytes received but not yet written (the disk failed): write them, no call.
    pub stashed: bool,
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
    /// Done rows whose prompt, size, aspect ratio or model changed, kept as they are.
    pub changed_kept: u64,
    /// The first few of those ids, to show the user.
    pub changed_kept_ids: Vec<String>,
    /// Failed rows whose last error was transient (they ran out of attempts in an earlier
    /// run), back in the queue: attempts are per run (product.md).
    #[serde(default)]
    pub retried_transient: u64,
}

/// What recovery found among rows a dead process left `running`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    pub done_from_file: u64,
    pub back_to_pending: u64,
}

/// Rows whose result URL failed to download in an earlier run, put back in the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requeued {
    /// To be downloaded again (their URL kept: nothing is paid again).
    pub download: u64,
    /// To be generated again, their URL dropped (`--regenerate-expired`).
    pub regenerate: u64,
}

/// Rows of the current manifest per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.pending + self.running + self.done + self.failed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    Generate,
    Download,
}

impl AttemptKind {
    fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Generate => "generate",
            AttemptKind::Download => "download",
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
    /// First dispatch to file in place, seconds, for done rows.
    pub e2e: Vec<f64>,
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
    /// The last run's rate cap in starts per second of real time.
    pub rate_per_s: Option<f64>,
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
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Checkpoint {
    /// Opens (or creates) `dir/bulkgen.db` and starts the writer thread.
    pub fn open(dir: &Path) -> Result<Checkpoint, CheckpointError> {
        let path = dir.join(DB_FILE);
        let open_err = |source| CheckpointError::Open { path: path.clone(), source };
        let conn = Connection::open(&path).map_err(open_err)?;
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
        migrate(&conn).map_err(open_err)?;
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION.to_string()],
        )
        .map_err(open_err)?;

        let (tx, rx) = mpsc::channel::<Job>();
        let images = dir.join(output::IMAGES_DIR);
        let failure = Arc::new(Mutex::new(None));
        let writer_failure = failure.clone();
        let thread = std::thread::Builder::new()
            .name("bulkgen-checkpoint".into())
            .spawn(move || writer(conn, rx, writer_failure, images))?;
        Ok(Checkpoint { tx: Mutex::new(Some(tx)), failure, thread: Mutex::new(Some(thread)) })
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
        let job = Job {
            work: Box::new(move |conn| {
                let result = f(conn);
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
        let work = Box::new(move |conn: &Connection| -> Reply {
            if let Err(e) = f(conn) {
                failure.lock().expect("failure lock").get_or_insert_with(|| e.to_string());
            }
            Box::new(|| {})
        });
        if !self.send(Job { work, sync_images }) {
            self.failure.lock().expect("failure lock").get_or_insert_with(|| "the writer thread has stopped".into());
        }
    }

    fn writer_gone(&self) -> CheckpointError {
        let why = self.failure.lock().expect("failure lock").clone();
        CheckpointError::Writer(why.unwrap_or_else(|| "the writer thread has stopped".into()))
    }

    /// Waits until every write queued so far is committed; reports the first failed one.
    pub async fn flush(&self) -> Result<(), CheckpointError> {
        self.call(|_| Ok(())).await?;
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
            c.execute("INSERT INTO runs(started_at, settings) VALUES (?1, ?2)", params![now_unix(), settings])?;
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

    /// Settles rows a dead process left `running`: a complete image file means done
    /// (files only ever appear complete), anything else goes back to pending, keeping
    /// a result URL if one was saved. Also removes temporary files left half-written,
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
            let running: Vec<(i64, String, Option<f64>)> = c
                .prepare("SELECT rid, id, first_dispatch FROM rows WHERE state = 'running'")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let mut found = Recovered::default();
            if !running.is_empty() {
                // Files a dead process renamed into place may not be flushed yet: flush
                // them before any of them is marked done.
                output::make_durable(&images)?;
            }
            for (rid, id, first) in running {
                if let Some(file) = output::find_image(&images, &id)? {
                    let done_at = now_unix();
                    c.execute(
                        "UPDATE rows SET state='done', file=?1, done_at=?2, e2e_s=?3, error_class=NULL, error=NULL \
                         WHERE rid=?4",
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

    /// Puts the rows whose result URL failed to download back in the queue: a URL may
    /// have been unreachable for a while, so by default the download is tried again
    /// (nothing is paid again); with `regenerate` (the user's `--regenerate-expired`) the
    /// URL is dropped and the row is generated, and paid for, again. Runs before the
    /// manifest sync, so `--retry-failed` cannot requeue such a row with its URL first.
    pub async fn requeue_downloads(&self, regenerate: bool) -> Result<Requeued, CheckpointError> {
        self.call(move |c| {
            let failed = "seq IS NOT NULL AND state = 'failed' AND error_class = 'download' AND result_url IS NOT NULL";
            let forget =
                if regenerate { ", result_url = NULL, made_by = NULL, size_sent = NULL, latency_s = NULL" } else { "" };
            let n = c.execute(
                &format!("UPDATE rows SET state = 'pending', error_class = NULL, error = NULL{forget} WHERE {failed}"),
                [],
            )? as u64;
            Ok(if regenerate {
                Requeued { regenerate: n, download: 0 }
            } else {
                Requeued { download: n, regenerate: 0 }
            })
        })
        .await
    }

    /// Takes the manifest in: new rows become pending, known rows keep their state. A done
    /// row whose prompt, size, aspect ratio or model changed is listed and kept unless
    /// `regenerate_changed`; a failed row is retried when `retry_failed` or when it changed.
    /// The manifest must have been validated.
    pub async fn sync_manifest(
        &self,
        manifest: PathBuf,
        defaults: RowDefaults,
        opts: SyncOptions,
    ) -> Result<SyncReport, CheckpointError> {
        self.call(move |c| {
            // A resume of an unchanged manifest with the same defaults cannot change a row:
            // skip reading a million rows into the checkpoint again.
            let digest = manifest_digest(&manifest, &defaults, opts)?;
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
            let mut report = sync(c, &manifest, &defaults, opts)?;
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
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT rid, seq, id, prompt, size, aspect_ratio, model, result_url, file, \
                 EXISTS (SELECT 1 FROM stash WHERE stash.rid = rows.rid), params \
                 FROM rows WHERE state='pending' AND seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = st
                .query_map(params![after_seq, limit as i64], |r| {
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
                        result_url: r.get(7)?,
                        old_file: r.get(8)?,
                        stashed: r.get(9)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Marks the row in flight before its call is sent, so that a crash can never leave
    /// a paid-for call unaccounted for. Returns once committed.
    pub async fn start_attempt(&self, rid: i64, at: f64) -> Result<(), CheckpointError> {
        self.call(move |c| {
            c.prepare_cached(
                "UPDATE rows SET state='running', attempts = attempts + 1, \
                 first_dispatch = COALESCE(first_dispatch, ?1) WHERE rid = ?2",
            )?
            .execute(params![at, rid])?;
            Ok(())
        })
        .await
    }

    pub fn record_attempt(&self, a: AttemptRecord) {
        self.post(move |c| {
            let (class, message) = match &a.error {
                Some((class, message)) => (Some(class.as_str()), Some(message.as_str())),
                None => (None, None),
            };
            c.prepare_cached(
                "INSERT INTO attempts(rid, run_id, kind, model, resolution, started_at, duration_s, wait_s, \
                 outcome, http_status, error_class, message) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
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
                if a.error.is_none() { "ok" } else { "error" },
                a.http_status,
                class,
                message
            ])?;
            Ok(())
        });
    }

    /// A generation call abandoned before its answer (a second Ctrl-C): it may have been
    /// billed, so it is recorded with outcome `unknown` (its `error` is ignored).
    pub fn record_abandoned(&self, a: AttemptRecord) {
        self.post(move |c| {
            c.prepare_cached(
                "INSERT INTO attempts(rid, run_id, kind, model, resolution, started_at, duration_s, wait_s, \
                 outcome, message) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,'unknown',?9)",
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
                "abandoned by a second Ctrl-C before the answer came"
            ])?;
            Ok(())
        });
    }

    /// Keeps a generated image's URL before downloading it, so that neither a failed
    /// download nor a crash ever leads to generating the row again. Returns once committed.
    pub async fn save_url(&self, rid: i64, url: String, latency_s: f64, made: Made) -> Result<(), CheckpointError> {
        self.call(move |c| {
            c.prepare_cached("UPDATE rows SET result_url=?1, latency_s=?2, made_by=?3, size_sent=?4 WHERE rid=?5")?
                .execute(params![url, latency_s, made.model, made.size_sent, rid])?;
            Ok(())
        })
        .await
    }

    /// The row's file is in place: the row is done (committed after the images are made
    /// durable, so the file is as durable as the mark).
    /// `made` is None when the row's maker was recorded with its URL or stash already.
    pub fn mark_done(&self, rid: i64, file: String, latency_s: Option<f64>, made: Option<Made>) {
        self.post_job(true, move |c| {
            let done_at = now_unix();
            let (model, size_sent) = made.map(|m| (m.model, m.size_sent)).unzip();
            c.prepare_cached(
                "UPDATE rows SET state='done', file=?1, latency_s=COALESCE(?2, latency_s), \
                 made_by=COALESCE(?3, made_by), size_sent=COALESCE(?4, size_sent), \
                 done_at=?5, e2e_s = ?5 - first_dispatch, error_class=NULL, error=NULL WHERE rid=?6",
            )?
            .execute(params![file, latency_s, model, size_sent, done_at, rid])?;
            c.prepare_cached("DELETE FROM stash WHERE rid = ?1")?.execute([rid])?;
            Ok(())
        });
    }

    /// Keeps image bytes the output folder would not take, so a rerun writes them
    /// without paying for the generation again. Returns once committed.
    pub async fn stash(&self, rid: i64, bytes: Vec<u8>) -> Result<(), CheckpointError> {
        self.call(move |c| {
            c.execute("INSERT OR REPLACE INTO stash(rid, bytes) VALUES (?1, ?2)", params![rid, bytes])?;
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
                    _ => {}
                }
            }
            Ok(counts)
        })
        .await
    }

    /// Writes results.csv, one line per manifest row in manifest order, atomically.
    pub async fn write_results(&self, path: PathBuf) -> Result<(), CheckpointError> {
        self.call(move |c| {
            let extra_names: Vec<String> = c
                .query_row("SELECT value FROM meta WHERE key='extra_columns'", [], |r| r.get::<_, String>(0))
                .optional()?
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or_default();
            let mut st = c.prepare(
                "SELECT id, state, file, resolution, COALESCE(made_by, model), attempts, latency_s, e2e_s, \
                 error_class, error, extra, prompt, size, size_sent FROM rows WHERE seq IS NOT NULL ORDER BY seq",
            )?;
            let mut rows = st.query([])?;
            output::write_atomically(&path, |w| {
                let mut csv = csv::Writer::from_writer(w);
                let mut header: Vec<&str> = vec![
                    "id",
                    "status",
                    "file",
                    "prompt",
                    "size",
                    "size_sent",
                    "resolution",
                    "model",
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
                    csv.write_field(text(1)?)?;
                    match text(2)? {
                        "" => csv.write_field("")?,
                        file => formatted(&mut csv, format_args!("images/{file}"))?,
                    }
                    csv.write_field(text(11)?)?;
                    csv.write_field(text(12)?)?;
                    csv.write_field(text(13)?)?;
                    csv.write_field(text(3)?)?;
                    csv.write_field(text(4)?)?;
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

    pub async fn report_inputs(&self) -> Result<ReportInputs, CheckpointError> {
        self.call(report_inputs).await
    }

    /// Commits what is queued and stops the writer thread.
    pub async fn close(&self) -> Result<(), CheckpointError> {
        let flushed = self.flush().await;
        self.tx.lock().expect("checkpoint sender").take();
        let thread = self.thread.lock().expect("checkpoint thread").take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        flushed
    }
}

fn writer(conn: Connection, rx: mpsc::Receiver<Job>, failure: Arc<Mutex<Option<String>>>, images: PathBuf) {
    let fail = |e: String| {
        failure.lock().expect("failure lock").get_or_insert(e);
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
            return fail(e.to_string());
        }
        let sync_images = batch.iter().any(|job| job.sync_images);
        let replies: Vec<Reply> = batch.into_iter().map(|job| (job.work)(&conn)).collect();
        // Renames become durable before the marks that rely on them; dropping the
        // replies on failure tells every waiting caller the write did not land.
        if sync_images && let Err(e) = output::make_durable(&images) {
            let _ = conn.execute_batch("ROLLBACK");
            return fail(format!("cannot sync {}: {e}", images.display()));
        }
        if let Some(delay) = slow_commit {
            std::thread::sleep(delay);
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => replies.into_iter().for_each(|reply| reply()),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return fail(e.to_string());
            }
        }
    }
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

/// A fingerprint of the manifest's bytes and of what a sync does with them.
fn manifest_digest(path: &Path, defaults: &RowDefaults, opts: SyncOptions) -> std::io::Result<String> {
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
    let cell_of = |cells: &mut Vec<Cell>, res: &str, model: &str| -> usize {
        match cells.iter().rposition(|c| c.resolution == res && c.model == model) {
            Some(i) => i,
            None => {
                cells.push(Cell { resolution: res.to_owned(), model: model.to_owned(), ..Cell::default() });
                cells.len() - 1
            }
        }
    };
    // Counted here rather than by GROUP BY, which sorts every row first (a fifth of a
    // million-row resume's time).
    let mut st =
        c.prepare("SELECT resolution, COALESCE(made_by, model), state, attempts FROM rows WHERE seq IS NOT NULL")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let i = cell_of(&mut cells, r.get_ref(0)?.as_str()?, r.get_ref(1)?.as_str()?);
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
        "SELECT resolution, COALESCE(made_by, model), e2e_s FROM rows \
         WHERE seq IS NOT NULL AND state = 'done' AND e2e_s IS NOT NULL",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let i = cell_of(&mut cells, r.get_ref(0)?.as_str()?, r.get_ref(1)?.as_str()?);
        cells[i].e2e.push(r.get(2)?);
    }
    let mut st = c.prepare(
        "SELECT a.resolution, a.model, a.kind = 'generate', a.outcome = 'ok', a.duration_s, a.wait_s, a.error_class, \
         a.outcome = 'unknown' FROM attempts a JOIN rows r ON r.rid = a.rid WHERE r.seq IS NOT NULL",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let i = cell_of(&mut cells, r.get_ref(0)?.as_str()?, r.get_ref(1)?.as_str()?);
        let cell = &mut cells[i];
        let (generate, ok): (bool, bool) = (r.get(2)?, r.get(3)?);
        cell.calls += 1;
        if r.get(7)? {
            // Neither its latency nor its wait is known.
            cell.unknown += 1;
        } else if generate {
            cell.wait.push(r.get(5)?);
            if ok {
                cell.latency.push(r.get(4)?);
            }
        }
        if let Some(class) = r.get_ref(6)?.as_str_or_null()? {
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
    let rate_per_s = last_settings(c)?.and_then(|s| rate_of(&s));
    Ok(ReportInputs { cells, completions, runs, rate_per_s })
}

/// Starts per second allowed by a run's settings (`rpm` per `rate_window`).
fn rate_of(settings: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(settings).ok()?;
    let rpm = v.get("rpm")?.as_f64()?;
    let w = v.get("rate_window")?;
    let window = w.get("secs")?.as_f64()? + w.get("nanos").and_then(serde_json::Value::as_f64).unwrap_or(0.0) / 1e9;
    (window > 0.0).then(|| rpm / window)
}

/// A row the checkpoint already has: rid, prompt, size, aspect ratio, model, state, params.
type Known = (i64, String, String, Option<String>, String, String, String);

fn sync(c: &Connection, path: &Path, defaults: &RowDefaults, opts: SyncOptions) -> Result<SyncReport, CheckpointError> {
    let reader = ManifestReader::open(path).map_err(|e| CheckpointError::Writer(e.to_string()))?;
    c.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('extra_columns', ?1)",
        [serde_json::to_string(reader.extra_columns()).expect("strings serialize")],
    )?;
    c.execute("UPDATE rows SET seq = NULL WHERE seq IS NOT NULL", [])?;
    let mut find = c.prepare("SELECT rid, prompt, size, aspect_ratio, model, state, params FROM rows WHERE id = ?1")?;
    let mut insert = c.prepare(
        "INSERT INTO rows(seq, id, prompt, size, resolution, aspect_ratio, model, extra, params, state) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending')",
    )?;
    let mut keep = c.prepare("UPDATE rows SET seq=?1, extra=?2 WHERE rid=?3")?;
    let mut requeue =
        c.prepare("UPDATE rows SET seq=?1, extra=?2, state='pending', error_class=NULL, error=NULL WHERE rid=?3")?;
    let mut replace = c.prepare(
        "UPDATE rows SET seq=?1, extra=?2, prompt=?3, size=?4, resolution=?5, aspect_ratio=?6, model=?7, \
         params=?8, state='pending', result_url=NULL, error_class=NULL, error=NULL, first_dispatch=NULL, \
         e2e_s=NULL WHERE rid=?9",
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
        let seq = row.index as i64;
        let known: Option<Known> = find
            .query_row([&row.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
            .optional()?;
        let Some((rid, prompt, old_size, old_aspect, old_model, state, old_params)) = known else {
            insert.execute(params![
                seq,
                row.id,
                row.prompt,
                size_text,
                resolution,
                aspect,
                model,
                extra,
                params_text
            ])?;
            report.new += 1;
            continue;
        };
        let changed = prompt != row.prompt
            || old_size != size_text
            || old_aspect.as_deref() != aspect
            || old_model != model
            || old_params != params_text;
        match (state.as_str(), changed) {
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
                    rid
                ])?;
                c.execute("DELETE FROM stash WHERE rid = ?1", [rid])?;
                if state == "done" {
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

/// Brings a checkpoint of an older schema up to this one (columns added with defaults
/// that mean what older bulkgen did: no params, size sent unknown).
fn migrate(c: &Connection) -> rusqlite::Result<()> {
    let mut st = c.prepare("SELECT name FROM pragma_table_info('rows')")?;
    let columns: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for (name, decl) in [("params", "TEXT NOT NULL DEFAULT '{}'"), ("size_sent", "TEXT")] {
        if !columns.iter().any(|c| c == name) {
            c.execute_batch(&format!("ALTER TABLE rows ADD COLUMN {name} {decl}"))?;
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
-- seq: position in the current manifest (data row number); NULL for rows it no longer has.
CREATE TABLE IF NOT EXISTS rows (
    rid INTEGER PRIMARY KEY,
    seq INTEGER,
    id TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL,
    size TEXT NOT NULL,
    resolution TEXT NOT NULL,
    aspect_ratio TEXT,
    model TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    extra TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    result_url TEXT,
    file TEXT,
    made_by TEXT,
    size_sent TEXT,
    error_class TEXT,
    error TEXT,
    latency_s REAL,
    first_dispatch REAL,
    done_at REAL,
    e2e_s REAL
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
CREATE TABLE IF NOT EXISTS stash (rid INTEGER PRIMARY KEY REFERENCES rows(rid), bytes BLOB NOT NULL);
";
