//! `DIR/metadata.jsonl`: one JSON line per image on disk, for the people and programs that
//! keep the images (schema/metadata.schema.json).
//!
//! Written from the checkpoint only, so it says what the checkpoint says: rebuilt whole
//! (atomically) when a run starts and when it ends, and in between a line is appended by
//! the checkpoint writer for each done mark, after the image is in place. A line is never
//! written for an image not on disk; a line appended just before a kill whose done mark
//! did not commit names an image that is on disk, and the next run's rebuild settles it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::Engine;
use crate::cost::Prices;
use crate::output;
use crate::refs::RowRefs;
use crate::size::Resolution;

pub const METADATA_FILE: &str = "metadata.jsonl";

/// What is read from an image's bytes when it is written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageFacts {
    pub sha256: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// What the provider said beside it, where given (`provider::Said`).
    pub revised_prompt: Option<String>,
    pub finish_reason: Option<String>,
}

impl ImageFacts {
    pub fn of(bytes: &[u8]) -> ImageFacts {
        let (width, height) = output::dimensions(bytes).unzip();
        let sha256 = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        ImageFacts { sha256, width, height, ..ImageFacts::default() }
    }
}

/// Where lines go during a run, and the prices a line's cost is given at.
#[derive(Default)]
pub(super) struct Sink {
    open: Mutex<Option<(File, Prices)>>,
}

/// One line of metadata.jsonl (field order is the file's).
#[derive(Serialize)]
struct Line<'a> {
    /// The image's id (the file's stem).
    id: &'a str,
    /// The manifest row's id, and which of its images this is (from 1).
    row_id: &'a str,
    k: i64,
    /// Relative to the output folder.
    file: String,
    sha256: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    prompt: &'a str,
    /// The model that made the image (a fallback model when it took over).
    model: &'a str,
    /// As asked in the manifest (1K/2K/4K or WxH), and as sent.
    size: &'a str,
    size_sent: Option<&'a str>,
    aspect_ratio: Option<&'a str>,
    params: serde_json::Value,
    reference_hashes: Vec<String>,
    mask_hash: Option<String>,
    engine: &'a str,
    latency_s: Option<f64>,
    end_to_end_s: Option<f64>,
    attempts: i64,
    /// At the engine's price (catalogue or --price); null when none is known.
    cost_usd: Option<f64>,
    /// What the provider said beside the image, where it did (OpenAI's revised prompt,
    /// Gemini's finishReason); null for a downloaded URL or an image from the stash.
    revised_prompt: Option<String>,
    finish_reason: Option<String>,
}

const COLUMNS: &str = "id, file, sha256, width, height, prompt, COALESCE(made_by, model), size, size_sent, \
                       aspect_ratio, params, refs, COALESCE(engine, 'online'), latency_s, e2e_s, attempts, resolution, rid, \
                       COALESCE(row_id, id), k, revised_prompt, finish_reason";

/// The line of the done row `r` (selected with [`COLUMNS`]); facts missing from the
/// checkpoint (images made before it kept them, or adopted by `repair`) are read from
/// the file and stored.
fn line_of(c: &Connection, r: &rusqlite::Row<'_>, images: &Path, prices: &Prices) -> rusqlite::Result<String> {
    let text = |i: usize| -> rusqlite::Result<Option<String>> { r.get(i) };
    let file: String = r.get(1)?;
    let mut facts = ImageFacts {
        sha256: text(2)?.unwrap_or_default(),
        width: r.get(3)?,
        height: r.get(4)?,
        ..ImageFacts::default()
    };
    if facts.sha256.is_empty()
        && let Ok(bytes) = std::fs::read(images.join(&file))
    {
        facts = ImageFacts::of(&bytes);
        c.prepare_cached("UPDATE rows SET sha256=?1, width=?2, height=?3 WHERE rid=?4")?.execute(params![
            facts.sha256,
            facts.width,
            facts.height,
            r.get::<_, i64>(17)?
        ])?;
    }
    let (id, prompt, model, size): (String, String, String, String) = (r.get(0)?, r.get(5)?, r.get(6)?, r.get(7)?);
    let (size_sent, aspect_ratio) = (text(8)?, text(9)?);
    let params: serde_json::Value =
        serde_json::from_str(&text(10)?.unwrap_or_default()).unwrap_or(serde_json::Value::Object(Default::default()));
    let refs = RowRefs::from_column(&text(11)?.unwrap_or_default()).unwrap_or_default();
    let engine: String = r.get(12)?;
    let resolution: String = r.get(16)?;
    let cost_usd = Resolution::parse(&resolution)
        .and_then(|res| prices.price(Engine::parse(&engine).unwrap_or_default(), &model, res));
    let row_id: String = r.get(18)?;
    let line = Line {
        id: &id,
        row_id: &row_id,
        k: r.get(19)?,
        file: format!("{}/{file}", output::IMAGES_DIR),
        sha256: (!facts.sha256.is_empty()).then_some(facts.sha256),
        width: facts.width,
        height: facts.height,
        prompt: &prompt,
        model: &model,
        size: &size,
        size_sent: size_sent.as_deref(),
        aspect_ratio: aspect_ratio.as_deref(),
        params,
        reference_hashes: refs.images,
        mask_hash: refs.mask,
        engine: &engine,
        latency_s: r.get(13)?,
        end_to_end_s: r.get(14)?,
        attempts: r.get(15)?,
        cost_usd,
        revised_prompt: text(20)?,
        finish_reason: text(21)?,
    };
    let mut json = serde_json::to_string(&line).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    json.push('\n');
    Ok(json)
}

impl Sink {
    /// Rewrites `dir/metadata.jsonl` from the checkpoint's done rows, in manifest order;
    /// with `keep_open`, keeps it open so each done mark appends its line.
    pub(super) fn rebuild(
        &self,
        c: &Connection,
        dir: &Path,
        images: &Path,
        prices: Prices,
        keep_open: bool,
    ) -> Result<(), super::CheckpointError> {
        let mut open = self.open.lock().expect("metadata lock");
        *open = None;
        let path = dir.join(METADATA_FILE);
        let mut st =
            c.prepare(&format!("SELECT {COLUMNS} FROM rows WHERE seq IS NOT NULL AND state='done' ORDER BY seq"))?;
        let mut rows = st.query([])?;
        let mut failed: Option<rusqlite::Error> = None;
        output::write_atomically(&path, |w| {
            while let Some(r) = rows.next().map_err(std::io::Error::other)? {
                match line_of(c, r, images, &prices) {
                    Ok(line) => w.write_all(line.as_bytes())?,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            Ok(())
        })
        .map_err(|e| io_at(&path, e))?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        if keep_open {
            let file = OpenOptions::new().append(true).open(&path).map_err(|e| io_at(&path, e))?;
            *open = Some((file, prices));
        }
        Ok(())
    }

    /// Appends the line of row `rid`, just marked done, if a run keeps the file open. A
    /// failed append is not the checkpoint's failure: the file is rebuilt at the end.
    pub(super) fn append(&self, c: &Connection, images: &Path, rid: i64) -> rusqlite::Result<()> {
        let mut open = self.open.lock().expect("metadata lock");
        let Some((file, prices)) = open.as_mut() else { return Ok(()) };
        let mut st = c.prepare_cached(&format!("SELECT {COLUMNS} FROM rows WHERE rid=?1 AND state='done'"))?;
        let mut rows = st.query([rid])?;
        if let Some(r) = rows.next()? {
            let line = line_of(c, r, images, prices)?;
            // One write of the whole line on an O_APPEND file: lines never interleave.
            let _ = file.write_all(line.as_bytes());
        }
        Ok(())
    }

    pub(super) fn close(&self) {
        *self.open.lock().expect("metadata lock") = None;
    }
}

fn io_at(path: &Path, e: std::io::Error) -> super::CheckpointError {
    super::CheckpointError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}
