//! `run --dry-run`: what the run would do, worked out without sending anything — rows per
//! resolution class, rows already done in `--out`, the estimated cost, and the expected
//! wall time for the given concurrency and rate cap.
//!
//! Reference images: how many distinct ones the rows to run name, and the bytes that go
//! out for them. Gemini: each reference [`RefFile::upload_once`] says is shared or large is
//! uploaded once (Files API, kept 48 h), the others ride inline with their row. The openai
//! dialect's edits are multipart: every call sends its files again, so the bytes are the
//! sum over the rows.
//!
//! Expected latency per class: the mean of the successful calls already recorded in
//! `--out` when it has some, otherwise the mean of the published Gemini 3 Pro Image
//! figures (domain.md, as fitted in `sim::latency`). Wall time: the larger of the total
//! latency divided by `--concurrency` and the rows divided by the `--rpm` rate.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::catalog::Dialect;
use crate::checkpoint::{self, DB_FILE};
use crate::config::RunConfig;
use crate::cost::Usd;
use crate::http::bytes_text;
use crate::manifest::{ManifestReader, ReadError};
use crate::progress::human;
use crate::refs::{RefFile, References};
use crate::report::{self, Percentiles};
use crate::size::Resolution;

/// Why a plan could not be made (the manifest changed or the checkpoint is unreadable).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("cannot read manifest {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("manifest changed while read: {0}")]
    Changed(String),
    #[error("cannot write the plan to stdout: {0}")]
    Stdout(std::io::Error),
}

#[derive(Default)]
struct ClassPlan {
    rows: u64,
    done: u64,
    cost: f64,
    unpriced: u64,
    /// At Batch API prices (`--engine batch`).
    batch_cost: f64,
    batch_unpriced: u64,
}

/// The bytes the reference images of the rows to run send (see the module's text).
#[derive(Debug, Default, PartialEq, Eq)]
struct RefPlan {
    /// Distinct references the rows to run name (by content).
    distinct: HashSet<String>,
    /// Gemini: bytes uploaded once each (Files API).
    uploaded: u64,
    /// Gemini: bytes sent inline with rows; openai: every byte sent with every call.
    sent: u64,
}

impl RefPlan {
    fn add(&mut self, dialect: Dialect, file: &RefFile) {
        let new = self.distinct.insert(file.hash.clone());
        match dialect {
            Dialect::Gemini if file.upload_once() => self.uploaded += if new { file.len } else { 0 },
            _ => self.sent += file.len,
        }
    }

    fn text(&self, dialect: Dialect) -> String {
        let n = self.distinct.len();
        match dialect {
            Dialect::Gemini => format!(
                "reference images: {n} distinct; {} uploaded once (Files API, kept 48 h) and {} sent inline with \
                 their rows",
                bytes_text(self.uploaded),
                bytes_text(self.sent)
            ),
            Dialect::Openai => format!(
                "reference images: {n} distinct; {} sent in all (edits are multipart: every call sends its files \
                 again)",
                bytes_text(self.sent)
            ),
        }
    }
}

pub async fn print(cfg: &RunConfig, references: Arc<References>) -> Result<(), PlanError> {
    let cfg = cfg.clone();
    let text = tokio::task::spawn_blocking(move || plan(&cfg, &references)).await.expect("planning does not panic")?;
    match crate::exit::write_stdout(&text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(PlanError::Stdout(e)),
        _ => Ok(()),
    }
}

fn plan(cfg: &RunConfig, references: &References) -> Result<String, PlanError> {
    let prices = &cfg.prices;
    let db_path = cfg.out.join(DB_FILE);
    let db = if db_path.is_file() {
        Some(
            Connection::open_with_flags(&db_path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(checkpoint::CheckpointError::Sql)?,
        )
    } else {
        None
    };
    let observed: BTreeMap<String, Percentiles> = match &db {
        Some(c) => {
            let inputs = checkpoint::report_inputs(c)?;
            report::build(&inputs, prices).classes.into_iter().map(|g| (g.name, g.call_latency_s)).collect()
        }
        None => BTreeMap::new(),
    };
    let mut classes: BTreeMap<Resolution, ClassPlan> = BTreeMap::new();
    let mut refs = RefPlan::default();
    let reader = ManifestReader::open_with(&cfg.manifest, &cfg.manifest_read)?;
    let mut lookup = match &db {
        Some(c) => Some(c.prepare("SELECT state FROM rows WHERE id = ?1").map_err(checkpoint::CheckpointError::Sql)?),
        None => None,
    };
    // Manifest rows, beside the images they make (a row of count c is c images below).
    let mut manifest_rows = 0u64;
    for row in reader {
        let row = match row {
            Ok(r) => r,
            Err(ReadError::Io(e)) => return Err(PlanError::Io { path: cfg.manifest.clone(), source: e }),
            Err(ReadError::Row(p)) => return Err(PlanError::Changed(p.to_string())),
        };
        if row.k == 1 {
            manifest_rows += 1;
        }
        let class = row.size.unwrap_or(cfg.size).resolution();
        let model = row.model.as_deref().unwrap_or(&cfg.model);
        let plan = classes.entry(class).or_default();
        plan.rows += 1;
        let state: Option<String> = match lookup.as_mut() {
            Some(st) => st.query_row([&row.id], |r| r.get(0)).optional().map_err(checkpoint::CheckpointError::Sql)?,
            None => None,
        };
        if state.as_deref() == Some("done") {
            plan.done += 1;
            continue;
        }
        match prices.get(model, class) {
            Some(p) => plan.cost += p,
            None => plan.unpriced += 1,
        }
        match prices.price(crate::catalog::Engine::Batch, model, class) {
            Some(p) => plan.batch_cost += p,
            None => plan.batch_unpriced += 1,
        }
        if !(row.images.is_empty() && row.mask.is_none()) {
            let named = references
                .row_refs(&row.images, row.mask.as_deref())
                .ok_or_else(|| PlanError::Changed(format!("line {}: a reference was not read", row.line)))?;
            for hash in named.images.iter().chain(&named.mask) {
                let file = references.get(hash).expect("row_refs gives hashes of read references");
                refs.add(cfg.dialect, file);
            }
        }
    }

    let scale = cfg.simulate.as_ref().map_or(1.0, |s| s.time_scale);
    let mut out = String::new();
    let _ = writeln!(out, "dry run: nothing was sent.\n");
    let _ = writeln!(out, "  class   rows   done  to run   est. cost   expected latency");
    let (mut to_run, mut total_latency, mut cost, mut unpriced, mut longest) = (0u64, 0.0, 0.0, 0u64, 0.0f64);
    for (class, p) in &classes {
        let (mean, source) = match observed.get(class.as_str()).and_then(|o| o.mean.map(|m| (m, o.n))) {
            Some((m, n)) => (m, format!("observed, mean of {n} calls")),
            None => (crate::sim::latency::model(*class).mean() * scale, "published table, mean".to_owned()),
        };
        let remaining = p.rows - p.done;
        to_run += remaining;
        total_latency += remaining as f64 * mean;
        cost += p.cost;
        unpriced += p.unpriced;
        longest = longest.max(if remaining > 0 { mean } else { 0.0 });
        let _ = writeln!(
            out,
            "  {:<5}{:>7}{:>7}{:>8}{:>12}   {} ({source})",
            class.as_str(),
            p.rows,
            p.done,
            remaining,
            if p.unpriced > 0 { "?".to_owned() } else { Usd(p.cost).to_string() },
            human(mean)
        );
    }
    let by_slots = total_latency / cfg.concurrency as f64;
    let rate = cfg.rpm.map(|n| f64::from(n.get()) / cfg.rate_window.as_secs_f64());
    let by_rate = rate.map_or(0.0, |r| to_run as f64 / r);
    let wall = by_slots.max(by_rate).max(longest);
    let bound = if by_rate > by_slots { "the --rpm cap" } else { "--concurrency" };
    let _ = writeln!(
        out,
        "\n{} rows, {} already done in {}, {to_run} to run",
        classes.values().map(|p| p.rows).sum::<u64>(),
        classes.values().map(|p| p.done).sum::<u64>(),
        cfg.out.display()
    );
    let images: u64 = classes.values().map(|p| p.rows).sum();
    if images != manifest_rows {
        let _ = writeln!(
            out,
            "{manifest_rows} manifest rows make {images} images (--count / the count column); each image is a \
             row above, priced and run on its own"
        );
    }
    let _ = writeln!(
        out,
        "estimated cost: {}{}",
        Usd(cost),
        if unpriced > 0 {
            format!(" plus {unpriced} row(s) with no known price (give --price MODEL:RES=USD)")
        } else {
            String::new()
        }
    );
    if cfg.engine == crate::catalog::Engine::Batch {
        let (batch, batch_unpriced): (f64, u64) =
            classes.values().fold((0.0, 0), |(c, u), p| (c + p.batch_cost, u + p.batch_unpriced));
        let _ = writeln!(
            out,
            "estimated cost with --engine batch: {}{} (online: {}); results within 24 h, rows not done \
             --batch-deadline after submission go {}",
            Usd(batch),
            if batch_unpriced > 0 {
                format!(" plus {batch_unpriced} row(s) with no known batch price (give --price MODEL:RES:batch=USD)")
            } else {
                String::new()
            },
            Usd(cost),
            match cfg.batch_fallback {
                crate::flags::BatchFallback::Online => "online",
                crate::flags::BatchFallback::None => "failed (--batch-fallback none)",
            }
        );
    }
    if !references.is_empty() {
        let _ = writeln!(out, "{}", refs.text(cfg.dialect));
    }
    if to_run > 0 && cfg.engine == crate::catalog::Engine::Online {
        let _ = writeln!(
            out,
            "expected wall time: about {} at --concurrency {} and {}; {bound} is the bound{}",
            human(wall),
            cfg.concurrency,
            rate.map_or("no rate cap".to_owned(), |r| format!("{:.1} starts/min", r * 60.0)),
            if cfg.simulate.is_some() { " (simulated time)" } else { "" }
        );
    }
    Ok(out)
}
