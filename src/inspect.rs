//! Commands that read a batch's folder without running it — `status`, `report` — and
//! what `resume` needs from it. They open the checkpoint read-only, so they work while a
//! run is active, after a crash, and after many resumes.

use std::fmt::Write as _;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::catalog::Catalog;
use crate::checkpoint::{self, DB_FILE};
use crate::config::Origin;
use crate::cost::Prices;
use crate::exit;
use crate::output;
use crate::progress;
use crate::report;
use crate::report::ReportFormat;

/// Why a folder could not be read: the message, and the exit code (3 when the checkpoint
/// is damaged, a local error; 2 otherwise, e.g. no checkpoint).
pub struct Failed {
    pub text: String,
    pub code: i32,
}

impl From<String> for Failed {
    fn from(text: String) -> Failed {
        Failed { text, code: exit::USAGE }
    }
}

/// The failure for an error of the checkpoint at `out`: damage is named with the way out.
fn failed(out: &Path, e: checkpoint::CheckpointError) -> Failed {
    let path = out.join(DB_FILE);
    if !e.needs_repair() {
        return Failed::from(e.to_string());
    }
    let e = e.with_repair_advice(&path, None);
    let e = match last_manifest(&path) {
        Some(m) => e.with_manifest(&m),
        None => e,
    };
    Failed { text: e.to_string(), code: exit::STOPPED }
}

/// The manifest of the last run, if the (damaged) checkpoint still tells it.
fn last_manifest(path: &Path) -> Option<std::path::PathBuf> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    let settings: serde_json::Value = serde_json::from_str(&checkpoint::last_settings(&c).ok()??).ok()?;
    let manifest: std::path::PathBuf = serde_json::from_value(settings.get("manifest")?.clone()).ok()?;
    let cwd: Option<std::path::PathBuf> =
        settings.get("origin").and_then(|o| serde_json::from_value(o.get("cwd")?.clone()).ok());
    Some(match cwd {
        Some(cwd) if manifest.is_relative() => cwd.join(manifest),
        _ => manifest,
    })
}

/// The checkpoint, read-only, after the same checks a run makes (a file cut short, then
/// `PRAGMA quick_check`): a damaged one is reported with `bulkgen repair`, not read.
fn open(out: &Path) -> Result<Connection, Failed> {
    open_checked(out, true)
}

/// [`open`]; `full`: also `PRAGMA quick_check` (which reads every page: `resume` leaves it
/// to the run it starts, which makes it anyway).
fn open_checked(out: &Path, full: bool) -> Result<Connection, Failed> {
    let path = out.join(DB_FILE);
    if !path.is_file() {
        return Err(Failed::from(format!(
            "no checkpoint in {} ({DB_FILE} is missing): start the batch with `bulkgen run MANIFEST.csv -o {}`",
            out.display(),
            out.display()
        )));
    }
    let damaged = |detail: String| checkpoint::CheckpointError::Damaged { path: path.clone(), manifest: None, detail };
    match checkpoint::header_damage(&path) {
        Ok(Some(why)) => return Err(failed(out, damaged(why))),
        Ok(None) => {}
        Err(e) => return Err(Failed::from(format!("cannot read {}: {e}", path.display()))),
    }
    let c = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| failed(out, checkpoint::CheckpointError::Open { path: path.clone(), source: e }))?;
    if !full {
        return Ok(c);
    }
    checkpoint::quick_check(&c).map_err(|e| match e {
        checkpoint::CheckpointError::Damaged { detail, .. } => failed(out, damaged(detail)),
        other => failed(out, other),
    })?;
    Ok(c)
}

fn last_settings(c: &Connection) -> Option<serde_json::Value> {
    checkpoint::last_settings(c).ok().flatten().and_then(|s| serde_json::from_str(&s).ok())
}

/// The prices the last run used (the catalogue with its `--models-file`, plus its
/// `--price` overrides); the built-in catalogue's when those no longer load.
fn prices(c: &Connection) -> Prices {
    let settings = last_settings(c);
    let field = |name: &str| settings.as_ref().and_then(|s| s.get(name).cloned());
    let overrides: Vec<String> =
        field("price_overrides").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let models_file: Option<std::path::PathBuf> = field("models_file").and_then(|v| serde_json::from_value(v).ok());
    let catalog = Catalog::load(models_file.as_deref()).unwrap_or_else(|_| Catalog::built_in());
    Prices::with_overrides(&catalog, &overrides)
        .unwrap_or_else(|_| Prices::with_overrides(&catalog, &[]).expect("catalogue prices"))
}

pub fn last_origin(out: &Path) -> Result<Origin, String> {
    let c = open_checked(out, false).map_err(|f| f.text)?;
    last_settings(&c)
        .and_then(|s| serde_json::from_value(s.get("origin")?.clone()).ok())
        .ok_or_else(|| format!("the checkpoint in {} holds no run that can be resumed", out.display()))
}

/// The report's inputs; when no run holds the folder, with the calls a killed run left
/// in flight counted as calls of unknown outcome (the next run records them).
fn report_inputs(c: &Connection, out: &Path) -> Result<checkpoint::ReportInputs, Failed> {
    let mut inputs = checkpoint::report_inputs(c).map_err(|e| failed(out, e))?;
    if output::active_run(out).is_none() {
        checkpoint::add_unrecorded_calls(c, &mut inputs).map_err(|e| failed(out, e))?;
    }
    Ok(inputs)
}

/// `bulkgen report`: the text to print (the CLI prints it), or what went wrong.
pub fn report(out: &Path, format: ReportFormat) -> Result<String, Failed> {
    let c = open(out)?;
    let inputs = report_inputs(&c, out)?;
    let r = report::build(&inputs, &prices(&c));
    Ok(match format {
        ReportFormat::Text => report::render(&r, false),
        ReportFormat::Md => report::render(&r, true),
        ReportFormat::Json => report::render_json(&r) + "\n",
        ReportFormat::Csv => report::render_csv(&r),
    })
}

/// `bulkgen status`: the text to print (the CLI prints it), or what went wrong.
pub fn status(out: &Path) -> Result<String, Failed> {
    status_text(out)
}

fn status_text(out: &Path) -> Result<String, Failed> {
    let c = open(out)?;
    let sql = |e: rusqlite::Error| failed(out, checkpoint::CheckpointError::Sql(e));
    let mut text = String::new();
    let _ = match output::active_run(out) {
        Some(pid) => writeln!(text, "{}: a run is active right now (pid {pid})", out.display()),
        None => writeln!(text, "{}: no run is active", out.display()),
    };
    // Rows by class and state: [pending, running, done, failed], from the report's cells.
    let inputs = report_inputs(&c, out)?;
    let mut by_class: std::collections::BTreeMap<&str, [u64; 4]> = Default::default();
    for cell in &inputs.cells {
        let n = by_class.entry(&cell.resolution).or_default();
        for (slot, count) in n.iter_mut().zip([cell.pending, cell.running, cell.done, cell.failed]) {
            *slot += count;
        }
    }
    let total: [u64; 4] = by_class.values().fold([0; 4], |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]);
    // With counts (a manifest row of count > 1), the checkpoint's rows are images: say so,
    // and how many manifest rows they come from.
    let counted = counted_rows(&c).map_err(sql)?;
    let (unit, from) = match counted {
        Some(1) => ("images", " (from 1 manifest row)".to_owned()),
        Some(manifest_rows) => ("images", format!(" (from {manifest_rows} manifest rows)")),
        None => ("rows", String::new()),
    };
    let _ = writeln!(
        text,
        "{} {unit}{from}: {} done, {} failed, {} pending, {} running",
        total.iter().sum::<u64>(),
        total[2],
        total[3],
        total[0],
        total[1]
    );
    let _ = writeln!(text, "  class   pending  running     done   failed");
    for (class, n) in &by_class {
        let _ = writeln!(text, "  {class:<6}{:>9}{:>9}{:>9}{:>9}", n[0], n[1], n[2], n[3]);
    }
    let in_batch: u64 = c
        .query_row("SELECT COUNT(*) FROM rows WHERE seq IS NOT NULL AND state = 'batch'", [], |r| r.get(0))
        .map_err(sql)?;
    if in_batch > 0 {
        let _ =
            writeln!(text, "{in_batch} of the pending {unit} are in open batch jobs (paid for there, not sent online)");
    }
    // A checkpoint from before batch jobs has no jobs table: no jobs.
    let jobs = checkpoint::list_jobs(&c, true).unwrap_or_default();
    if !jobs.is_empty() {
        let open = jobs.iter().filter(|j| j.step != checkpoint::JobStep::Closed).count();
        let _ = writeln!(text, "batch jobs: {open} open, {} closed", jobs.len() - open);
        let now = checkpoint::now_unix();
        for j in jobs.iter().take(20) {
            let age = now - j.created_at.unwrap_or(j.assigned_at);
            let ended = j.closed_at.map_or(String::new(), |t| format!(", closed {} ago", progress::human(now - t)));
            let _ = writeln!(
                text,
                "  {:<28} {:<10} {:<22} {:>6} {unit} {:>6} done {:>5} failed  age {}{ended}{}",
                j.name.as_deref().unwrap_or("(not created yet)"),
                j.step.as_str(),
                j.state.as_deref().unwrap_or("-"),
                j.lines,
                j.succeeded,
                j.failed,
                progress::human(age.max(0.0)),
                j.note.as_deref().map_or(String::new(), |n| format!(" ({n})"))
            );
        }
    }
    let failed: Vec<String> = c
        .prepare(
            "SELECT COALESCE(error_class, 'unknown'), COUNT(*) FROM rows WHERE seq IS NOT NULL AND state = 'failed' \
             GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .map_err(sql)?
        .query_map([], |r| Ok(format!("{} {}", r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    if !failed.is_empty() {
        let _ = writeln!(text, "failed for good, by class: {}", failed.join(", "));
    }
    let r = report::build(&inputs, &prices(&c));
    if let Some(line) = report::unknown_text(&r.overall) {
        let _ = writeln!(text, "{line}");
    }
    let _ = writeln!(text, "spend: {}", report::spend_text(&r.overall));
    let mut st = c
        .prepare(
            "SELECT r.id, a.error_class, COALESCE(a.http_status, ''), a.message FROM attempts a \
             JOIN rows r ON r.rid = a.rid WHERE a.outcome = 'error' ORDER BY a.started_at DESC LIMIT 8",
        )
        .map_err(sql)?;
    let errors: Vec<String> = st
        .query_map([], |r| {
            let status: String = r.get::<_, rusqlite::types::Value>(2).map(|v| match v {
                rusqlite::types::Value::Integer(i) => format!("HTTP {i}: "),
                _ => String::new(),
            })?;
            Ok(format!("  {} ({}): {status}{}", r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(3)?))
        })
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    if errors.is_empty() {
        let _ = writeln!(text, "no errors so far");
    } else {
        let _ = writeln!(text, "latest errors (newest first):\n{}", errors.join("\n"));
    }
    Ok(text)
}

/// How many manifest rows the current manifest's images come from, when some row asked
/// for several (an image whose row id is not its own id, `<id>_<k>`); None for a folder
/// whose rows are one image each (or a checkpoint from before counts, with no row ids).
fn counted_rows(c: &Connection) -> rusqlite::Result<Option<u64>> {
    let has_row_id: bool =
        c.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('rows') WHERE name = 'row_id'", [], |r| r.get(0))?;
    if !has_row_id {
        return Ok(None);
    }
    let (counted, manifest_rows): (bool, u64) = c.query_row(
        "SELECT COALESCE(MAX(COALESCE(row_id, id) <> id), 0), COUNT(DISTINCT COALESCE(row_id, id)) FROM rows \
         WHERE seq IS NOT NULL",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(counted.then_some(manifest_rows))
}
