//! The manifest: a CSV of prompts, read as a stream.
//!
//! [`validate`] reads the whole file once and collects every bad row before anything is
//! sent; [`ManifestReader`] then yields the rows one by one for the checkpoint to take in.
//! Neither holds the file in memory (duplicate ids are found through 128-bit hashes).
//!
//! The field separator is a comma, a semicolon (Excel in many locales) or a tab: taken from
//! `--delimiter`, else found from the header (the one that splits it into known columns,
//! `prompt` among them). Every reader of one manifest agrees, as detection only reads the
//! header.
//!
//! Line numbers are counted from the raw bytes ([`Lines`]), not taken from csv's
//! `Position::line`, which is one too low after a CRLF line end (it counts a record's
//! `\n` only once the next record is read) and names the line before any blank lines.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::hash::{DefaultHasher, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::params::{self, Params};
use crate::size::{AspectRatio, Size};

/// One data row, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    /// Line of the file where the record starts (1 = the header).
    pub line: u64,
    /// Data row number, from 1.
    pub index: u64,
    /// Image number in the manifest, from 1: a row of count c yields c images, each its own
    /// `ManifestRow` (its position in the checkpoint's queue).
    pub seq: u64,
    /// The image's id: the row's id, or `<row id>_<k>` when the row has more than one image.
    pub id: String,
    /// The manifest row's own id (the `id` column, or `row-N`).
    pub row_id: String,
    /// Which of the row's images this is, from 1.
    pub k: u32,
    /// How many images the row asks for (`count` column, else `--count`).
    pub count: u32,
    pub prompt: String,
    pub size: Option<Size>,
    pub aspect_ratio: Option<AspectRatio>,
    pub model: Option<String>,
    /// The row's `param.KEY` columns that are not empty, nested.
    pub params: Params,
    /// The `images` column: reference images as written (paths or URLs), in order.
    pub images: Vec<String>,
    /// The `mask` column, as written.
    pub mask: Option<String>,
    /// Values of the columns bulkgen does not know, in header order.
    pub extra: Vec<String>,
}

/// A bad row: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The physical line of the file where the row's record starts (1 = the header).
    pub line: u64,
    pub kind: ProblemKind,
    pub reason: String,
    /// The row's id when it had a valid one: it still counts for duplicate checks.
    pub id: Option<String>,
}

/// What is wrong with a row, to count the problems that are not listed one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    UnreadableCsv,
    UnsafeId,
    DuplicateId,
    CaseCollision,
    TooManyFields,
    Undecodable,
    EmptyPrompt,
    BadSize,
    BadAspectRatio,
    /// The row's model cannot render it as asked (the catalogue's check).
    Model,
    /// A reference image (`images`, `mask`) that cannot be read, fetched, or sent to the
    /// row's model.
    Reference,
    /// A prompt longer than the row's model takes (the catalogue's `max_prompt_chars`).
    PromptTooLong,
    /// A `count` that is not an integer in 1..=[`MAX_COUNT`].
    BadCount,
}

impl ProblemKind {
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::UnreadableCsv => "unreadable CSV",
            ProblemKind::UnsafeId => "unsafe id",
            ProblemKind::DuplicateId => "duplicate id",
            ProblemKind::CaseCollision => "id colliding with another ignoring case",
            ProblemKind::TooManyFields => "too many fields",
            ProblemKind::Undecodable => "undecodable text",
            ProblemKind::EmptyPrompt => "empty prompt",
            ProblemKind::BadSize => "bad size",
            ProblemKind::BadAspectRatio => "bad aspect ratio",
            ProblemKind::Model => "not renderable by its model",
            ProblemKind::Reference => "bad reference image",
            ProblemKind::PromptTooLong => "prompt too long for its model",
            ProblemKind::BadCount => "bad count",
        }
    }
}

/// Problems listed one by one; the rest of a manifest's problems are only counted, so a
/// million duplicate rows make a screen of text, not a million lines.
pub const MAX_LISTED_PROBLEMS: usize = 20;

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("manifest {path}: {reason}")]
    Header { path: PathBuf, reason: String },
    #[error("manifest {path} has {total} problem(s); nothing was sent:\n{}", list(problems, unlisted))]
    Rows {
        path: PathBuf,
        /// The first [`MAX_LISTED_PROBLEMS`] problems, in file order.
        problems: Vec<Problem>,
        /// All problems, listed or not.
        total: u64,
        /// The problems not listed, by kind.
        unlisted: BTreeMap<ProblemKind, u64>,
    },
}

fn list(problems: &[Problem], unlisted: &BTreeMap<ProblemKind, u64>) -> String {
    let mut lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    if !unlisted.is_empty() {
        let n: u64 = unlisted.values().sum();
        let kinds: Vec<String> = unlisted.iter().map(|(k, n)| format!("{} {n}", k.label())).collect();
        lines.push(format!("  ... and {n} more problem(s) ({})", kinds.join(", ")));
    }
    lines.join("\n")
}

/// Every problem is counted; the first [`MAX_LISTED_PROBLEMS`] are kept.
#[derive(Default)]
struct Collected {
    listed: Vec<Problem>,
    total: u64,
    unlisted: BTreeMap<ProblemKind, u64>,
    /// Listed case collisions, whose reason names the other id once it is read again:
    /// (index in `listed`, the row's id, the line and k of the other id, the reason as
    /// first written).
    collisions: Vec<(usize, String, (u64, u32), String)>,
}

impl Collected {
    fn push(&mut self, p: Problem) -> bool {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_PROBLEMS {
            self.listed.push(p);
            true
        } else {
            *self.unlisted.entry(p.kind).or_default() += 1;
            false
        }
    }

    /// The problem of a row whose id clashes with an earlier one. `image`: (row id, k,
    /// count) when the id is image k's of a row of count > 1.
    fn clash(&mut self, id: &str, line: u64, image: Option<(&str, u32, u32)>, clash: Clash) {
        let (kind, mut reason) = match clash {
            Clash::Duplicate(first, 0) if image.is_none() => {
                (ProblemKind::DuplicateId, format!("duplicate id {id:?} (first used on line {first})"))
            }
            Clash::Duplicate(first, first_k) => {
                let first_is = match first_k {
                    0 => format!("the row on line {first}"),
                    k => {
                        // The same spelling: the first row's id is this id less its `_<k>`.
                        let row = id.strip_suffix(&format!("_{k}")).unwrap_or(id);
                        format!("image {k} of row {row:?} on line {first} (its count is over 1)")
                    }
                };
                (
                    ProblemKind::DuplicateId,
                    format!(
                        "duplicate id {id:?}: {} and {first_is} both name images/{id}.<ext>; give one of the rows \
                         another id",
                        describe(image)
                    ),
                )
            }
            Clash::Case(first, _) => (ProblemKind::CaseCollision, collision(id, None, first)),
        };
        if let (Clash::Case(..), Some(_)) = (&clash, image) {
            reason = format!("{}: {reason}", describe(image));
        }
        if self.push(Problem { line, kind, reason: reason.clone(), id: None })
            && let Clash::Case(first, first_k) = clash
        {
            self.collisions.push((self.listed.len() - 1, id.to_owned(), (first, first_k), reason));
        }
    }

    /// Names the other id of each listed case collision: ids are kept only as hashes, so
    /// the lines they were first used on are read again (only when there are collisions).
    fn spell_collisions(&mut self, path: &Path, settings: &ReadSettings) {
        if self.collisions.is_empty() {
            return;
        }
        let mut wanted: HashMap<(u64, u32), Option<String>> = self.collisions.iter().map(|c| (c.2, None)).collect();
        let last = wanted.keys().map(|w| w.0).max().unwrap_or(0);
        if let Ok(reader) = ManifestReader::open_with(path, settings) {
            let ids = reader.filter_map(|r| match r {
                Ok(row) => Some(((row.line, if row.count > 1 { row.k } else { 0 }), row.id)),
                Err(ReadError::Row(p)) => p.id.map(|id| ((p.line, 0), id)),
                Err(ReadError::Io(_)) => None,
            });
            for (at, id) in ids.take_while(|(at, _)| at.0 <= last) {
                if let Some(slot) = wanted.get_mut(&at) {
                    *slot = Some(id);
                }
            }
        }
        for (i, id, first, written) in &self.collisions {
            let spelled = collision(id, wanted[first].as_deref(), first.0);
            let generic = collision(id, None, first.0);
            self.listed[*i].reason = written.replace(&generic, &spelled);
        }
    }
}

/// What a valid manifest holds, for the plan, the preflight and the progress display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestStats {
    /// Images the manifest asks for: a row of count c counts c times.
    pub rows: u64,
    /// Rows of the manifest (data records).
    pub manifest_rows: u64,
    /// Images per resolution class, in `Resolution::ALL` order, with `default_size` applied.
    pub per_class: [u64; 4],
    /// The models rows use (the default included when a row names none), up to
    /// [`MAX_MODELS`] of them.
    pub models: std::collections::BTreeSet<String>,
    /// What separates the fields, and whether it was found from the header (not given).
    pub delimiter: Delimiter,
    pub delimiter_detected: bool,
}

/// Distinct model names collected for the preflight; a manifest with more is checked on
/// these only.
pub const MAX_MODELS: usize = 1000;

const MAX_ID_LEN: usize = 128;

/// What a row gets when it names no size or model, the request fields a `param.KEY`
/// column may not name, and the model's own check of a row (can it render this size,
/// does it take the params): the runner builds it from the catalogue.
/// A model's check of one row: (model, size, aspect ratio) -> why it cannot be sent.
pub type RowCheck<'a> = dyn Fn(&str, Size, Option<AspectRatio>) -> Result<(), String> + 'a;

pub struct Rules<'a> {
    pub default_size: Size,
    pub default_model: &'a str,
    pub reserved_params: &'a [&'a str],
    pub check: &'a RowCheck<'a>,
    /// The check of a row's reference images, when there is one.
    pub refs: Option<&'a RefCheck<'a>>,
}

/// The check of a row's reference images: (model, images, mask) -> every reason the row
/// cannot be sent as it names them (none: fine). It is called for every row whose id is
/// its own, in file order, whatever the model check says of it.
pub type RefCheck<'a> = dyn Fn(&str, &[String], Option<&str>) -> Vec<String> + 'a;

impl Rules<'_> {
    /// Rules for tests and callers with no model restrictions.
    pub fn sizes_only(default_size: Size) -> Rules<'static> {
        Rules { default_size, default_model: "", reserved_params: &[], check: &|_, _, _| Ok(()), refs: None }
    }
}

/// Reads every row and reports all problems at once: empty prompts, unknown sizes, bad
/// aspect ratios, unsafe or duplicate ids, undecodable text, sizes the row's model cannot
/// render, params that would overwrite bulkgen's own fields.
/// Prompts longer than their model takes (`settings.prompt_limit`) are refused too.
///
/// With the default settings (delimiter found from the header, no prompt limit); a run
/// uses [`validate_with`] and its own settings.
pub fn validate(path: &Path, rules: &Rules<'_>) -> Result<ManifestStats, ManifestError> {
    validate_with(path, rules, &ReadSettings::default())
}

/// [`validate`] with the settings given.
pub fn validate_with(path: &Path, rules: &Rules<'_>, settings: &ReadSettings) -> Result<ManifestStats, ManifestError> {
    let mut reader = ManifestReader::open_with(path, settings)?;
    for key in &reader.layout.param_keys {
        if let Some(field) = params::collision(key, rules.reserved_params) {
            return Err(ManifestError::Header {
                path: path.to_owned(),
                reason: format!(
                    "column `param.{key}` would overwrite `{field}`, which bulkgen sets itself: use the manifest's \
                     own columns (model, size, aspect_ratio) instead"
                ),
            });
        }
    }
    let (delimiter, delimiter_detected) = reader.delimiter();
    let mut stats = ManifestStats { delimiter, delimiter_detected, ..ManifestStats::default() };
    let mut problems = Collected::default();
    let mut ids = Ids::default();
    // Whether the manifest row whose images are being read was refused (its images are
    // then left out of the counts, though their ids are still claimed).
    let mut row_refused = false;
    for row in &mut reader {
        match row {
            Err(ReadError::Io(source)) => {
                return Err(ManifestError::Io { path: path.to_owned(), source });
            }
            Err(ReadError::Row(p)) => {
                if let Some(id) = &p.id
                    && let Some(clash) = ids.claim(id, p.line, 0)
                {
                    problems.clash(id, p.line, None, clash);
                }
                problems.push(p);
            }
            Ok(row) => {
                let image = (row.count > 1).then_some((row.row_id.as_str(), row.k, row.count));
                let k = if row.count > 1 { row.k } else { 0 };
                if let Some(clash) = ids.claim(&row.id, row.line, k) {
                    problems.clash(&row.id, row.line, image, clash);
                    if row.k == 1 {
                        row_refused = true;
                    }
                    continue;
                }
                // A row's other images share its checks: only their ids are new.
                if row.k > 1 {
                    if !row_refused {
                        stats.rows += 1;
                        stats.per_class[row.size.unwrap_or(rules.default_size).resolution().index()] += 1;
                    }
                    continue;
                }
                row_refused = true;
                let size = row.size.unwrap_or(rules.default_size);
                let model = row.model.as_deref().unwrap_or(rules.default_model);
                let mut refused = false;
                if let Some((max, whose)) = settings.prompt_limit.as_ref().and_then(|limit| limit(model)) {
                    // The providers state the limit in characters: Unicode scalar values.
                    let chars = row.prompt.chars().count() as u64;
                    if chars > max {
                        refused = true;
                        problems.push(Problem {
                            line: row.line,
                            kind: ProblemKind::PromptTooLong,
                            reason: format!(
                                "row {}: the prompt is {chars} characters long, over the {max} that {whose} takes; \
                                 shorten it",
                                row.row_id
                            ),
                            id: None,
                        });
                    }
                }
                if let Some(refs) = rules.refs
                    && !(row.images.is_empty() && row.mask.is_none())
                {
                    for why in refs(model, &row.images, row.mask.as_deref()) {
                        refused = true;
                        problems.push(Problem {
                            line: row.line,
                            kind: ProblemKind::Reference,
                            reason: format!("row {}: {why}", row.row_id),
                            id: None,
                        });
                    }
                }
                if let Err(why) = (rules.check)(model, size, row.aspect_ratio) {
                    problems.push(Problem {
                        line: row.line,
                        kind: ProblemKind::Model,
                        reason: format!("row {}: {why}", row.row_id),
                        id: None,
                    });
                    continue;
                }
                if refused {
                    continue;
                }
                row_refused = false;
                if stats.models.len() < MAX_MODELS && !stats.models.contains(model) {
                    stats.models.insert(model.to_owned());
                }
                stats.manifest_rows += 1;
                stats.rows += 1;
                stats.per_class[size.resolution().index()] += 1;
            }
        }
    }
    if problems.total > 0 {
        problems.spell_collisions(path, settings);
        let Collected { listed, total, unlisted, .. } = problems;
        return Err(ManifestError::Rows { path: path.to_owned(), problems: listed, total, unlisted });
    }
    if stats.rows == 0 {
        return Err(ManifestError::Header { path: path.to_owned(), reason: "has no data rows".into() });
    }
    Ok(stats)
}

/// The ids claimed so far, to find duplicates and ids that differ only in case (their
/// files would be one file on macOS and Windows). Keyed by a 128-bit hash of the id in
/// lower case, with the line of its first use and a hash of its exact spelling, so memory
/// grows with the number of rows, never with their text.
#[derive(Default)]
struct Ids {
    /// Folded hash -> (line, exact hash, k: which image of its row the id names, 0 for a
    /// row of count 1).
    seen: HashMap<u128, (u64, u64, u32)>,
}

/// How an id clashes with the one first used on a line.
enum Clash {
    /// The same id: the line of its first use, and which image of that row it names (0:
    /// the row's own id, count 1).
    Duplicate(u64, u32),
    /// The same id in another case: the line of its first use and its k, as above.
    Case(u64, u32),
}

impl Ids {
    /// Claims `id`; the clash when an earlier row holds it, or an id that differs from it
    /// only in case.
    fn claim(&mut self, id: &str, line: u64, k: u32) -> Option<Clash> {
        let exact = exact_hash(id);
        match self.seen.entry(folded_hash(id)) {
            Entry::Vacant(slot) => {
                slot.insert((line, exact, k));
                None
            }
            Entry::Occupied(first) => {
                let (first_line, first_exact, first_k) = *first.get();
                Some(if first_exact == exact {
                    Clash::Duplicate(first_line, first_k)
                } else {
                    Clash::Case(first_line, first_k)
                })
            }
        }
    }
}

/// Two independent 64-bit hashes of the id in ASCII lower case: a false clash would need
/// a 128-bit collision.
fn folded_hash(id: &str) -> u128 {
    // Ids are checked to be at most MAX_ID_LEN bytes before they are claimed.
    let mut folded = [0u8; MAX_ID_LEN];
    let n = id.len().min(MAX_ID_LEN);
    for (f, b) in folded.iter_mut().zip(id.bytes()) {
        *f = b.to_ascii_lowercase();
    }
    let half = |seed: u8| {
        let mut h = DefaultHasher::new();
        h.write_u8(seed);
        h.write(&folded[..n]);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

fn exact_hash(id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    h.write_u8(2);
    h.write(id.as_bytes());
    h.finish()
}

/// What an id names, for a clash: the row itself, or one of a row's images.
fn describe(image: Option<(&str, u32, u32)>) -> String {
    match image {
        Some((row, k, count)) => format!("image {k} of row {row:?} (count {count})"),
        None => "this row".to_owned(),
    }
}

fn collision(id: &str, first_id: Option<&str>, first_line: u64) -> String {
    match first_id {
        Some(first_id) => format!(
            "id {id:?} collides with id {first_id:?} on line {first_line} ignoring case: files images/{id}.png and \
             images/{first_id}.png are the same file on macOS and Windows; give one of them another id"
        ),
        None => format!(
            "id {id:?} collides with the id on line {first_line} ignoring case: their files in images/ are the same \
             file on macOS and Windows; give one of them another id"
        ),
    }
}

/// Physical line numbers of the manifest, counted from the bytes as the CSV reader pulls
/// them through [`Counted`]. Only the bytes between the last record start and what the
/// reader has read ahead are kept: a record and a buffer, at most.
struct Lines {
    /// Bytes read but not yet counted; `pending[0]` is at offset `base` of the file.
    pending: Vec<u8>,
    /// How much of `pending` is counted already (kept until it is worth compacting).
    counted: usize,
    base: u64,
    /// The line the byte at `base` is on.
    line: u64,
}

impl Lines {
    fn new() -> Lines {
        Lines { pending: Vec::new(), counted: 0, base: 0, line: 1 }
    }

    /// Counts the line ends up to `offset` (as far as bytes were read): `\n`, `\r\n`
    /// (counted at its `\n`), or a lone `\r`, as old Mac files end lines.
    fn advance(&mut self, offset: u64) {
        let n = (offset.saturating_sub(self.base)).min((self.pending.len() - self.counted) as u64) as usize;
        let (from, to) = (self.counted, self.counted + n);
        let chunk = &self.pending[from..to];
        let lf = chunk.iter().filter(|&&b| b == b'\n').count();
        let lone_cr = if chunk.contains(&b'\r') {
            let next = |i: usize| self.pending.get(from + i + 1);
            chunk.iter().enumerate().filter(|&(i, &b)| b == b'\r' && next(i) != Some(&b'\n')).count()
        } else {
            0
        };
        self.line += (lf + lone_cr) as u64;
        self.counted = to;
        self.base += n as u64;
        if self.counted > 1 << 16 && self.counted * 2 > self.pending.len() {
            self.pending.drain(..self.counted);
            self.counted = 0;
        }
    }

    /// The line where a record starts that csv says begins at `offset`: csv's offset is
    /// where the last record ended, so the `\n` of a CRLF line end and any blank lines
    /// (which csv skips) come first.
    fn record_line(&mut self, offset: u64) -> u64 {
        self.advance(offset);
        while let Some(&b) = self.pending.get(self.counted)
            && (b == b'\n' || b == b'\r')
        {
            self.advance(self.base + 1);
        }
        self.line
    }
}

/// The manifest file, feeding [`Lines`] with every byte the CSV reader takes.
struct Counted {
    file: File,
    lines: Arc<Mutex<Lines>>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.lines.lock().expect("line counter").pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// What separates a manifest's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Delimiter {
    /// `,` (the CSV default).
    #[default]
    #[value(name = ",", alias = "comma")]
    Comma,
    /// `;`, as Excel saves CSV where the decimal separator is a comma.
    #[value(name = ";", alias = "semicolon")]
    Semicolon,
    /// A tab (TSV).
    #[value(name = "tab", alias = "\t")]
    Tab,
}

impl Delimiter {
    /// The order detection prefers them in when several fit a header equally.
    pub const ALL: [Delimiter; 3] = [Delimiter::Comma, Delimiter::Semicolon, Delimiter::Tab];

    pub fn byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Semicolon => b';',
            Delimiter::Tab => b'\t',
        }
    }

    /// As `--delimiter` takes it.
    pub fn flag(self) -> &'static str {
        match self {
            Delimiter::Comma => ",",
            Delimiter::Semicolon => ";",
            Delimiter::Tab => "tab",
        }
    }

    /// "comma", "semicolon", "tab", for messages.
    pub fn word(self) -> &'static str {
        match self {
            Delimiter::Comma => "comma",
            Delimiter::Semicolon => "semicolon",
            Delimiter::Tab => "tab",
        }
    }
}

/// A row's model -> the most characters its prompt may have, and whose limit that is
/// (None: no known limit).
pub type PromptLimit = dyn Fn(&str) -> Option<(u64, String)> + Send + Sync;

/// How a manifest is read beyond what its bytes say: `--delimiter`, and the prompt limits
/// of the catalogue. Built once with a run's settings (`RunConfig::manifest_read`) and
/// handed to every reader of its manifest.
#[derive(Clone)]
pub struct ReadSettings {
    /// None: found from the header.
    pub delimiter: Option<Delimiter>,
    pub prompt_limit: Option<Arc<PromptLimit>>,
    /// Images for a row whose `count` cell is empty or absent (`--count`), 1..=[`MAX_COUNT`].
    pub default_count: u32,
}

impl Default for ReadSettings {
    fn default() -> ReadSettings {
        ReadSettings { delimiter: None, prompt_limit: None, default_count: 1 }
    }
}

impl fmt::Debug for ReadSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadSettings")
            .field("delimiter", &self.delimiter)
            .field("prompt_limit", &self.prompt_limit.as_ref().map(|_| "by model"))
            .field("default_count", &self.default_count)
            .finish()
    }
}

/// What re-saving a file as UTF-8 takes, for every message about text that is not UTF-8.
const RESAVE_AS_UTF8: &str = "re-save the file as \"CSV UTF-8\" (Excel: File > Save As > CSV UTF-8)";

/// How many of a header's names bulkgen knows, when `prompt` is one of them.
fn known_columns(names: &[String]) -> Option<usize> {
    let known = |n: &&String| {
        let lower = n.to_ascii_lowercase();
        matches!(lower.as_str(), "prompt" | "id" | "size" | "aspect_ratio" | "model" | "images" | "mask" | "count")
            || lower.starts_with("param.")
    };
    names.iter().any(|n| n.eq_ignore_ascii_case("prompt")).then(|| names.iter().filter(known).count())
}

/// The header of the manifest split at `delimiter`: names trimmed, a UTF-8 BOM dropped,
/// bytes that are not UTF-8 replaced (only to compare and show them).
fn header_at(path: &Path, delimiter: Delimiter) -> std::io::Result<Vec<String>> {
    let file = File::open(path)?;
    let mut rdr = csv::ReaderBuilder::new().flexible(true).delimiter(delimiter.byte()).from_reader(file);
    let header = match rdr.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => match e.into_kind() {
            csv::ErrorKind::Io(io) => return Err(io),
            _ => return Ok(Vec::new()),
        },
    };
    Ok(header
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let raw = if i == 0 { raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw) } else { raw };
            String::from_utf8_lossy(raw).trim().to_owned()
        })
        .collect())
}

/// A header's names as one delimiter splits it.
type Split = (Delimiter, Vec<String>);

/// The delimiter that splits the header into the most known columns with `prompt` among
/// them (ties: comma, then semicolon, then tab); Err: the header as each delimiter splits
/// it, for the message, when none has a `prompt` column.
fn detect(path: &Path) -> std::io::Result<Result<Delimiter, Vec<Split>>> {
    let mut best: Option<(usize, Delimiter)> = None;
    let mut splits = Vec::new();
    for d in Delimiter::ALL {
        let names = header_at(path, d)?;
        if let Some(n) = known_columns(&names)
            && best.is_none_or(|(m, _)| n > m)
        {
            best = Some((n, d));
        }
        splits.push((d, names));
    }
    Ok(best.map(|(_, d)| d).ok_or(splits))
}

/// "has no `prompt` column" with the columns found, as split at the delimiter that gives
/// the most of them, and the way out.
fn no_prompt_column(splits: &[Split]) -> String {
    let (d, names) = splits
        .iter()
        .fold(None::<&Split>, |best, s| match best {
            Some(b) if b.1.len() >= s.1.len() => Some(b),
            _ => Some(s),
        })
        .expect("three delimiters tried");
    let at = if *d == Delimiter::Comma { String::new() } else { format!(", split at each {}", d.word()) };
    format!(
        "has no `prompt` column (columns found{at}: {}): name the column of prompts `prompt`, or give \
         --delimiter ,|;|tab if its fields are separated otherwise",
        names.join(", ")
    )
}

/// Where each known column sits in a record.
#[derive(Debug, Clone)]
struct Layout {
    width: usize,
    prompt: usize,
    id: Option<usize>,
    size: Option<usize>,
    aspect_ratio: Option<usize>,
    model: Option<usize>,
    images: Option<usize>,
    mask: Option<usize>,
    count: Option<usize>,
    /// `param.KEY` columns: where, and KEY.
    params: Vec<usize>,
    param_keys: Vec<String>,
    extra: Vec<usize>,
    /// Every column's name, as the header writes it (for messages).
    names: Vec<String>,
}

pub enum ReadError {
    Io(std::io::Error),
    Row(Problem),
}

/// Streams checked rows (ids are checked for form here, for uniqueness by [`validate`]).
pub struct ManifestReader {
    records: csv::ByteRecordsIntoIter<Counted>,
    lines: Arc<Mutex<Lines>>,
    layout: Layout,
    extra_columns: Vec<String>,
    index: u64,
    /// Images yielded so far.
    seq: u64,
    default_count: u32,
    /// A row of count > 1 whose images are being yielded: the row (as image 1) and the
    /// next k.
    expanding: Option<(ManifestRow, u32)>,
    delimiter: Delimiter,
    /// Whether the delimiter was found from the header (not given).
    detected: bool,
}

impl ManifestReader {
    /// Opens the manifest with the default settings (delimiter found from the header, no
    /// prompt limit); a run's readers use [`ManifestReader::open_with`] and its settings.
    pub fn open(path: &Path) -> Result<ManifestReader, ManifestError> {
        ManifestReader::open_with(path, &ReadSettings::default())
    }

    pub fn open_with(path: &Path, settings: &ReadSettings) -> Result<ManifestReader, ManifestError> {
        let io = |source| ManifestError::Io { path: path.to_owned(), source };
        let header_err = |reason: String| ManifestError::Header { path: path.to_owned(), reason };
        let file = File::open(path).map_err(io)?;
        let (delimiter, detected) = match settings.delimiter {
            Some(d) => (d, false),
            None => match detect(path).map_err(io)? {
                Ok(d) => (d, true),
                // The reader below reports an empty or unreadable header as such.
                Err(splits) if splits.iter().all(|(_, names)| names.iter().all(String::is_empty)) => {
                    (Delimiter::Comma, true)
                }
                Err(splits) => return Err(header_err(no_prompt_column(&splits))),
            },
        };
        let lines = Arc::new(Mutex::new(Lines::new()));
        // csv buffers its input itself.
        let counted = Counted { file, lines: lines.clone() };
        let mut rdr = csv::ReaderBuilder::new().flexible(true).delimiter(delimiter.byte()).from_reader(counted);
        let header = rdr.byte_headers().map_err(|e| header_err(format!("unreadable header: {e}")))?.clone();
        if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
            return Err(header_err("is empty: it needs a header row with at least a `prompt` column".into()));
        }
        let mut names = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            let raw = if i == 0 { raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw) } else { raw };
            let name = std::str::from_utf8(raw).map_err(|_| {
                header_err(format!(
                    "header column {} ({:?}) is not UTF-8 text: {RESAVE_AS_UTF8}",
                    i + 1,
                    String::from_utf8_lossy(raw).trim()
                ))
            })?;
            names.push(name.trim().to_owned());
        }
        let mut layout = Layout {
            width: names.len(),
            prompt: usize::MAX,
            id: None,
            size: None,
            aspect_ratio: None,
            model: None,
            images: None,
            mask: None,
            count: None,
            params: Vec::new(),
            param_keys: Vec::new(),
            extra: Vec::new(),
            names: names.clone(),
        };
        let mut extra_columns = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let slot = match name.to_ascii_lowercase().as_str() {
                "prompt" => {
                    if layout.prompt != usize::MAX {
                        return Err(header_err("has two `prompt` columns".into()));
                    }
                    layout.prompt = i;
                    continue;
                }
                "id" => &mut layout.id,
                "size" => &mut layout.size,
                "aspect_ratio" => &mut layout.aspect_ratio,
                "model" => &mut layout.model,
                "images" => &mut layout.images,
                "mask" => &mut layout.mask,
                "count" => &mut layout.count,
                lower if lower.starts_with("param.") => {
                    let key = name["param.".len()..].trim().to_owned();
                    params::check_key(&key).map_err(|e| header_err(format!("column {name:?}: {e}")))?;
                    if layout.param_keys.contains(&key) {
                        return Err(header_err(format!("has two `param.{key}` columns")));
                    }
                    layout.params.push(i);
                    layout.param_keys.push(key);
                    continue;
                }
                _ => {
                    layout.extra.push(i);
                    extra_columns.push(name.clone());
                    continue;
                }
            };
            if slot.replace(i).is_some() {
                return Err(header_err(format!("has two `{}` columns", name.to_ascii_lowercase())));
            }
        }
        if layout.prompt == usize::MAX && detected {
            return Err(header_err(no_prompt_column(&[(delimiter, names)])));
        }
        if layout.prompt == usize::MAX {
            let mut reason = format!(
                "has no `prompt` column when split at each {} (--delimiter {}; columns found: {})",
                delimiter.word(),
                delimiter.flag(),
                names.join(", ")
            );
            if let Ok(Ok(found)) = detect(path) {
                reason.push_str(&format!(
                    "; split at each {} it has one: give --delimiter {} or leave the flag out",
                    found.word(),
                    found.flag()
                ));
            }
            return Err(header_err(reason));
        }
        Ok(ManifestReader {
            records: rdr.into_byte_records(),
            lines,
            layout,
            extra_columns,
            index: 0,
            seq: 0,
            default_count: settings.default_count,
            expanding: None,
            delimiter,
            detected,
        })
    }

    /// What separates the fields, and whether it was found from the header (not given).
    pub fn delimiter(&self) -> (Delimiter, bool) {
        (self.delimiter, self.detected)
    }

    /// Whether the manifest has an `images` or a `mask` column.
    pub fn has_references(&self) -> bool {
        self.layout.images.is_some() || self.layout.mask.is_some()
    }

    /// Names of the columns carried through to results.csv, in header order.
    pub fn extra_columns(&self) -> &[String] {
        &self.extra_columns
    }

    fn check(&self, record: &csv::ByteRecord, line: u64, index: u64) -> Result<ManifestRow, Problem> {
        let problem = |kind: ProblemKind, reason: String| Problem { line, kind, reason, id: None };
        let text = |col: usize| -> Result<&str, Problem> {
            let raw = record.get(col).unwrap_or(b"");
            std::str::from_utf8(raw).map_err(|_| {
                let name = self.layout.names.get(col).map_or("?", String::as_str);
                problem(
                    ProblemKind::Undecodable,
                    format!("undecodable text in column `{name}` (column {}): not UTF-8; {RESAVE_AS_UTF8}", col + 1),
                )
            })
        };
        let optional = |col: Option<usize>| -> Result<Option<&str>, Problem> {
            match col {
                Some(c) => text(c).map(|t| Some(t.trim()).filter(|t| !t.is_empty())),
                None => Ok(None),
            }
        };
        // The id first: a row with other problems still claims its id.
        let id = match optional(self.layout.id)? {
            Some(id) => {
                check_id(id).map_err(|why| problem(ProblemKind::UnsafeId, format!("unsafe id {id:?}: {why}")))?;
                id.to_owned()
            }
            None => format!("row-{index}"),
        };
        let with_id = |p: Problem| {
            // "undecodable text in column `x` (column 2), row ID: not UTF-8; ..."
            let reason = match p.kind {
                ProblemKind::Undecodable => p.reason.replacen(": not UTF-8", &format!(", row {id}: not UTF-8"), 1),
                _ => p.reason,
            };
            Problem { id: Some(id.clone()), reason, ..p }
        };
        let rest = || -> Result<ManifestRow, Problem> {
            if record.len() > self.layout.width {
                return Err(problem(
                    ProblemKind::TooManyFields,
                    format!(
                        "has {} fields but the header has {} columns (an unquoted {}?)",
                        record.len(),
                        self.layout.width,
                        self.delimiter.word()
                    ),
                ));
            }
            let prompt = text(self.layout.prompt)?;
            if prompt.trim().is_empty() {
                return Err(problem(ProblemKind::EmptyPrompt, "empty prompt".into()));
            }
            let size = optional(self.layout.size)?
                .map(str::parse::<Size>)
                .transpose()
                .map_err(|why| problem(ProblemKind::BadSize, why))?;
            let aspect_ratio = match optional(self.layout.aspect_ratio)? {
                Some(a) => Some(AspectRatio::parse(a).ok_or_else(|| {
                    problem(
                        ProblemKind::BadAspectRatio,
                        format!("bad aspect ratio {a:?}: write W:H, such as 16:9 (see `bulkgen models`)"),
                    )
                })?),
                None => None,
            };
            let model = optional(self.layout.model)?.map(str::to_owned);
            let mut row_params = Params::new();
            for (col, key) in self.layout.params.iter().zip(&self.layout.param_keys) {
                if let Some(raw) = optional(Some(*col))? {
                    params::set(&mut row_params, key, params::value_of(raw));
                }
            }
            let images = optional(self.layout.images)?.map(split_references).unwrap_or_default();
            let mask = optional(self.layout.mask)?.map(str::to_owned);
            let count = match optional(self.layout.count)? {
                None => self.default_count,
                Some(raw) => match raw.parse::<u32>() {
                    Ok(n) if (1..=MAX_COUNT).contains(&n) => n,
                    _ => {
                        return Err(problem(
                            ProblemKind::BadCount,
                            format!("bad count {raw:?}: give a whole number of images from 1 to {MAX_COUNT}"),
                        ));
                    }
                },
            };
            if count > 1 && image_id(&id, count).len() > MAX_ID_LEN {
                return Err(problem(
                    ProblemKind::UnsafeId,
                    format!(
                        "with count {count} the row's images are named {id}_1 to {}, longer than {MAX_ID_LEN} \
                         characters: give the row a shorter id",
                        image_id(&id, count)
                    ),
                ));
            }
            let extra = self.layout.extra.iter().map(|&c| text(c).map(str::to_owned)).collect::<Result<_, _>>()?;
            Ok(ManifestRow {
                line,
                index,
                seq: 0,
                id: if count > 1 { image_id(&id, 1) } else { id.clone() },
                row_id: id.clone(),
                k: 1,
                count,
                prompt: prompt.to_owned(),
                size,
                aspect_ratio,
                model,
                params: row_params,
                images,
                mask,
                extra,
            })
        };
        rest().map_err(with_id)
    }
}

/// The most images one row may ask for. Each image is a checkpoint row, a file and a paid
/// call: a bound keeps a typo (`1000` for `10`) from turning one line into a thousand paid
/// images, and keeps `<id>_<k>` at most 4 characters longer than the row's id. A row that
/// needs more is better written as several rows with their own prompts.
pub const MAX_COUNT: u32 = 100;

/// The id of image `k` of a row of count > 1: `<row id>_<k>`, k from 1.
pub fn image_id(row_id: &str, k: u32) -> String {
    format!("{row_id}_{k}")
}

/// The `images` column: references separated by `;`, each trimmed, empty pieces ignored
/// (so a trailing `;` or `a;;b` is fine). A URL holding a `;` cannot be named.
pub fn split_references(cell: &str) -> Vec<String> {
    cell.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Ids become file names: only `A-Z a-z 0-9 . _ -`, 1 to 128 of them, no leading dot, so
/// no id can name a hidden file, `..`, or a path outside the images folder.
fn check_id(id: &str) -> Result<(), String> {
    if id.len() > MAX_ID_LEN {
        return Err(format!("longer than {MAX_ID_LEN} characters"));
    }
    if id.starts_with('.') {
        return Err("starts with '.'".into());
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("contains {c:?}; only A-Z a-z 0-9 . _ - are allowed"));
    }
    if let Some(device) = windows_device(id) {
        return Err(format!(
            "{device} is a Windows device name (CON, PRN, AUX, NUL, COM0-COM9, LPT0-LPT9, in any case and with any \
             extension): images/{id}.png cannot be created on Windows; give the row another id"
        ));
    }
    Ok(())
}

/// The id's stem (before its first '.') when Windows reserves it for a device: `nul.txt`
/// names the device too, and so would `nul.txt.png`. (The superscript forms `COM¹` and
/// the like cannot occur: ids are ASCII.)
fn windows_device(id: &str) -> Option<&str> {
    let stem = id.split('.').next().unwrap_or(id);
    let upper = stem.to_ascii_uppercase();
    let numbered = upper.len() == 4
        && (upper.starts_with("COM") || upper.starts_with("LPT"))
        && upper.as_bytes()[3].is_ascii_digit();
    (numbered || matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")).then_some(stem)
}

impl Iterator for ManifestReader {
    type Item = Result<ManifestRow, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        // A row of count c is yielded as c images, one after the other.
        if let Some((row, k)) = self.expanding.take() {
            let image = ManifestRow { seq: self.seq + 1, id: image_id(&row.row_id, k), k, ..row.clone() };
            self.seq += 1;
            if k < row.count {
                self.expanding = Some((row, k + 1));
            }
            return Some(Ok(image));
        }
        let record = match self.records.next()? {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| self.lines.lock().expect("line counter").record_line(p.byte()));
                return Some(match e.into_kind() {
                    csv::ErrorKind::Io(io) => Err(ReadError::Io(io)),
                    other => Err(ReadError::Row(Problem {
                        line,
                        kind: ProblemKind::UnreadableCsv,
                        reason: format!("unreadable CSV: {other:?}"),
                        id: None,
                    })),
                });
            }
        };
        self.index += 1;
        let line = record.position().map_or(0, |p| self.lines.lock().expect("line counter").record_line(p.byte()));
        match self.check(&record, line, self.index) {
            Ok(mut row) => {
                self.seq += 1;
                row.seq = self.seq;
                if row.count > 1 {
                    self.expanding = Some((row.clone(), 2));
                }
                Some(Ok(row))
            }
            Err(p) => Some(Err(ReadError::Row(p))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::Resolution;
    use std::io::Write;

    fn manifest(text: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text).unwrap();
        f
    }

    fn rows(text: &[u8]) -> Vec<ManifestRow> {
        let f = manifest(text);
        ManifestReader::open(f.path()).unwrap().map(|r| r.ok().unwrap()).collect()
    }

    #[test]
    fn reads_quoted_multiline_fields_bom_and_any_case_headers() {
        let rows = rows(b"\xEF\xBB\xBFPrompt,ID,Size,Aspect_Ratio,Model,team\n\"a, \"\"quoted\"\"\nprompt\",x1,2k,16:9,m1,blue\nplain,,,,,red\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].prompt, "a, \"quoted\"\nprompt");
        assert_eq!(rows[0].id, "x1");
        assert_eq!(rows[0].size, Some(Size::Class(Resolution::K2)));
        assert_eq!(rows[0].aspect_ratio.unwrap().to_string(), "16:9");
        assert_eq!(rows[0].model.as_deref(), Some("m1"));
        assert_eq!(rows[0].extra, vec!["blue"]);
        assert_eq!(rows[1].id, "row-2");
        assert_eq!(rows[1].line, 4, "the second record starts after the two-line field");
        assert_eq!(rows[1].size, None);
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line() {
        let f = manifest(b"prompt,id,size,aspect_ratio\n ,a,1K,\nok,b,3K,\nok,c,1K,7-5\nok,b2,1K,\nok,b2,1K,\nok,../x,1K,\nok,.hid,1K,\nok,d,1K,,extra\n\xff\xfe,e,1K,\n");
        let err = validate(f.path(), &Rules::sizes_only(Size::Class(Resolution::K1))).unwrap_err();
        let ManifestError::Rows { problems, .. } = err else { panic!("{err}") };
        let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 6, 7, 8, 9, 10], "{problems:?}");
        assert!(problems[0].reason.contains("empty prompt"));
        assert!(problems[1].reason.contains("unknown size"));
        assert!(problems[2].reason.contains("bad aspect ratio"));
        assert!(problems[3].reason.contains("duplicate id \"b2\" (first used on line 5)"));
        assert!(problems[4].reason.contains("unsafe id"));
        assert!(problems[5].reason.contains("starts with '.'"));
        assert!(problems[6].reason.contains("fields"));
        assert_eq!(
            problems[7].reason,
            "undecodable text in column `prompt` (column 1), row e: not UTF-8; re-save the file as \"CSV UTF-8\" \
             (Excel: File > Save As > CSV UTF-8)"
        );
    }

    fn lines_of(text: &[u8]) -> Vec<u64> {
        let f = manifest(text);
        ManifestReader::open(f.path())
            .unwrap()
            .map(|r| match r {
                Ok(row) => row.line,
                Err(ReadError::Row(p)) => p.line,
                Err(ReadError::Io(e)) => panic!("{e}"),
            })
            .collect()
    }

    #[test]
    fn lines_are_physical_lines_whatever_the_line_ends() {
        let lf = b"prompt,id\na,1\n\"two\nlines\",2\nc,3\n\n\nd,4\ne,5";
        assert_eq!(lines_of(lf), vec![2, 3, 5, 8, 9]);
        let crlf: Vec<u8> = String::from_utf8(lf.to_vec()).unwrap().replace('\n', "\r\n").into_bytes();
        assert_eq!(lines_of(&crlf), vec![2, 3, 5, 8, 9], "CRLF");
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(&crlf);
        assert_eq!(lines_of(&bom), vec![2, 3, 5, 8, 9], "BOM and CRLF");
        let cr: Vec<u8> = lf.iter().map(|&b| if b == b'\n' { b'\r' } else { b }).collect();
        assert_eq!(lines_of(&cr), vec![2, 3, 5, 8, 9], "old Mac line ends");
        // A quoted field with CRLF inside, and a record longer than csv's buffer.
        let long = "x".repeat(100_000);
        let text = format!("prompt,id\r\n\"a\r\nb\r\nc\",1\r\n{long},2\r\n\r\n{long},3\r\nz,4\r\n");
        assert_eq!(lines_of(text.as_bytes()), vec![2, 5, 7, 8]);
    }

    #[test]
    fn problems_in_a_crlf_file_name_the_line_the_record_starts_on() {
        let f = manifest(b"prompt,id\r\nok,a\r\n\"multi\r\nline\",b\r\n ,c\r\nok,a\r\n");
        let ManifestError::Rows { problems, .. } =
            validate(f.path(), &Rules::sizes_only(Size::Class(Resolution::K1))).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(problems[0].line, 5, "{problems:?}");
        assert!(problems[0].reason.contains("empty prompt"));
        assert_eq!(problems[1].line, 6);
        assert!(problems[1].reason.contains("duplicate id \"a\" (first used on line 2)"), "{problems:?}");
    }

    #[test]
    fn a_duplicate_names_the_first_use_and_only_twenty_problems_are_listed() {
        let mut text = b"prompt,id\n".to_vec();
        for _ in 0..5000 {
            text.extend_from_slice(b"p,dup\n");
        }
        text.extend_from_slice(b" ,last\n");
        let f = manifest(&text);
        let err = validate(f.path(), &Rules::sizes_only(Size::Class(Resolution::K1))).unwrap_err();
        let shown = err.to_string();
        let ManifestError::Rows { problems, total, unlisted, .. } = err else { panic!() };
        assert_eq!(total, 5000, "4999 duplicates and an empty prompt");
        assert_eq!(problems.len(), MAX_LISTED_PROBLEMS);
        assert!(problems.iter().all(|p| p.reason == "duplicate id \"dup\" (first used on line 2)"), "{problems:?}");
        assert_eq!(unlisted, BTreeMap::from([(ProblemKind::DuplicateId, 4979), (ProblemKind::EmptyPrompt, 1)]));
        assert!(shown.starts_with(&format!("manifest {} has 5000 problem(s)", f.path().display())), "{shown}");
        assert!(shown.ends_with("  ... and 4980 more problem(s) (duplicate id 4979, empty prompt 1)"), "{shown}");
        assert_eq!(shown.lines().count(), 1 + 20 + 1);
    }

    #[test]
    fn ids_that_differ_only_in_case_collide() {
        let f = manifest(b"prompt,id\na,cat\nb,Cat\nc,DOG\nd,dog\ne,Dog\nf,DOG\n");
        let ManifestError::Rows { problems, .. } =
            validate(f.path(), &Rules::sizes_only(Size::Class(Resolution::K1))).unwrap_err()
        else {
            panic!()
        };
        let got: Vec<(u64, ProblemKind)> = problems.iter().map(|p| (p.line, p.kind)).collect();
        use ProblemKind::*;
        assert_eq!(got, vec![(3, CaseCollision), (5, CaseCollision), (6, CaseCollision), (7, DuplicateId)]);
        assert_eq!(
            problems[0].reason,
            "id \"Cat\" collides with id \"cat\" on line 2 ignoring case: files images/Cat.png and images/cat.png are \
             the same file on macOS and Windows; give one of them another id"
        );
        assert!(problems[1].reason.starts_with("id \"dog\" collides with id \"DOG\" on line 4"), "{problems:?}");
        assert_eq!(problems[3].reason, "duplicate id \"DOG\" (first used on line 4)");
    }

    #[test]
    fn windows_device_names_are_refused_with_any_case_and_extension() {
        for bad in ["CON", "con", "Prn", "aux", "NUL", "nul.txt", "nul.tar.gz", "COM1", "com9", "LPT1", "lpt0.x"] {
            let why = check_id(bad).expect_err(bad);
            assert!(why.contains("is a Windows device name"), "{bad}: {why}");
        }
        for fine in ["console", "nully", "com", "COM10", "lpt", "a.nul", "x-con", "aux_1", "COMA"] {
            assert_eq!(check_id(fine), Ok(()), "{fine}");
        }
    }

    #[test]
    fn a_default_id_that_collides_with_an_explicit_one_is_a_duplicate() {
        let f = manifest(b"prompt,id\na,row-2\nb,\n");
        let err = validate(f.path(), &Rules::sizes_only(Size::Class(Resolution::K1))).unwrap_err();
        assert!(err.to_string().contains("duplicate id \"row-2\""), "{err}");
    }

    #[test]
    fn header_problems_are_named() {
        let f = manifest(b"text,id\nhello,a\n");
        let err = validate(f.path(), &Rules::sizes_only(Size::Class(Resolution::K1))).unwrap_err().to_string();
        assert!(err.contains("no `prompt` column") && err.contains("text, id"), "{err}");
        let f = manifest(b"prompt\n");
        let err = validate(f.path(), &Rules::sizes_only(Size::Class(Resolution::K1))).unwrap_err().to_string();
        assert!(err.contains("no data rows"), "{err}");
    }

    #[test]
    fn the_model_check_refuses_rows_with_their_line_and_id() {
        let f = manifest(b"prompt,size,model\na,1K,flash\nb,2K,flash\nc,4K,pro\nd,,flash\n");
        let check = |m: &str, s: Size, _: Option<AspectRatio>| {
            if m == "flash" && s.resolution() != Resolution::K1 {
                Err(format!("flash renders 1K only, not {s}"))
            } else {
                Ok(())
            }
        };
        let rules = Rules {
            default_size: Size::Class(Resolution::K2),
            default_model: "flash",
            reserved_params: &[],
            check: &check,
            refs: None,
        };
        let ManifestError::Rows { problems, .. } = validate(f.path(), &rules).unwrap_err() else { panic!() };
        assert_eq!(problems.iter().map(|p| p.line).collect::<Vec<_>>(), vec![3, 5]);
        assert_eq!(problems[0].reason, "row row-2: flash renders 1K only, not 2K");
    }

    #[test]
    fn param_columns_nest_and_may_not_overwrite_fields_bulkgen_sets() {
        let rows = rows(b"prompt,param.quality,param.generationConfig.seed\na,high,7\nb,,\n");
        assert_eq!(
            serde_json::Value::Object(rows[0].params.clone()),
            serde_json::json!({"quality": "high", "generationConfig": {"seed": 7}})
        );
        assert!(rows[1].params.is_empty());
        let f = manifest(b"prompt,param.size\na,1K\n");
        let rules = Rules { reserved_params: &["size"], ..Rules::sizes_only(Size::Class(Resolution::K1)) };
        let err = validate(f.path(), &rules).unwrap_err().to_string();
        assert!(err.contains("`param.size` would overwrite `size`"), "{err}");
    }

    #[test]
    fn images_split_on_semicolons_and_mask_is_one_reference() {
        let rows = rows(b"prompt,IMAGES,Mask,team\na, cat.png ; ;https://x.test/a.png;,m.png,red\nb,,,blue\n");
        assert_eq!(rows[0].images, vec!["cat.png", "https://x.test/a.png"]);
        assert_eq!(rows[0].mask.as_deref(), Some("m.png"));
        assert_eq!(rows[0].extra, vec!["red"], "images and mask are not carried through as extra columns");
        assert!(rows[1].images.is_empty() && rows[1].mask.is_none());
    }

    #[test]
    fn the_reference_check_reports_every_reason_with_line_and_id() {
        let f = manifest(b"prompt,id,images,mask\na,one,x.png,\nb,two,,\nc,three,y.png;z.png,m.png\n");
        let refs = |_: &str, images: &[String], mask: Option<&str>| {
            images.iter().chain(mask.map(str::to_owned).as_ref()).map(|s| format!("{s} is missing")).collect()
        };
        let rules = Rules { refs: Some(&refs), ..Rules::sizes_only(Size::Class(Resolution::K1)) };
        let ManifestError::Rows { problems, total, .. } = validate(f.path(), &rules).unwrap_err() else { panic!() };
        assert_eq!(total, 4);
        let got: Vec<(u64, &str)> = problems.iter().map(|p| (p.line, p.reason.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (2, "row one: x.png is missing"),
                (4, "row three: y.png is missing"),
                (4, "row three: z.png is missing"),
                (4, "row three: m.png is missing")
            ]
        );
        assert!(problems.iter().all(|p| p.kind == ProblemKind::Reference));
    }

    #[test]
    fn stats_count_rows_per_class_with_the_default_size() {
        let f = manifest(b"prompt,size,model\na,,\nb,4K,m2\nc,2048x2048,\nd,1024x1024,\ne,512,\n");
        let rules = Rules { default_model: "m1", ..Rules::sizes_only(Size::Class(Resolution::K4)) };
        let stats = validate(f.path(), &rules).unwrap();
        assert_eq!(stats.rows, 5);
        assert_eq!(stats.per_class, [1, 1, 1, 2]);
        assert_eq!(stats.models.iter().map(String::as_str).collect::<Vec<_>>(), vec!["m1", "m2"]);
    }

    fn read_with(text: &[u8], delimiter: Option<Delimiter>) -> Result<(Delimiter, Vec<ManifestRow>), String> {
        let f = manifest(text);
        let settings = ReadSettings { delimiter, ..ReadSettings::default() };
        let reader = ManifestReader::open_with(f.path(), &settings).map_err(|e| e.to_string())?;
        let (d, _) = reader.delimiter();
        Ok((d, reader.map(|r| r.ok().unwrap()).collect()))
    }

    #[test]
    fn a_row_of_count_c_is_read_as_c_images_in_order() {
        let f = manifest(b"id,prompt,count\na,x,3\nb,y,\nc,z,1\n");
        let settings = ReadSettings { default_count: 2, ..ReadSettings::default() };
        let images: Vec<(String, String, u32, u64, u64)> = ManifestReader::open_with(f.path(), &settings)
            .unwrap()
            .map(|r| r.ok().unwrap())
            .map(|r| (r.id, r.row_id, r.k, r.seq, r.index))
            .collect();
        let want = [("a_1", "a", 1, 1, 1), ("a_2", "a", 2, 2, 1), ("a_3", "a", 3, 3, 1)].into_iter().chain([
            ("b_1", "b", 1, 4, 2),
            ("b_2", "b", 2, 5, 2),
            ("c", "c", 1, 6, 3),
        ]);
        let want: Vec<_> = want.map(|(i, r, k, s, n)| (i.to_owned(), r.to_owned(), k, s, n)).collect();
        assert_eq!(images, want);
        let stats = validate_with(f.path(), &Rules::sizes_only(Size::Class(Resolution::K1)), &settings).unwrap();
        assert_eq!((stats.rows, stats.manifest_rows), (6, 3));
    }

    #[test]
    fn counts_out_of_range_and_image_ids_that_clash_are_problems_with_both_lines() {
        let f = manifest(b"id,prompt,count\na,x,0\nb,x,1.5\nc,x,101\nd_2,x,\nd,y,2\n");
        let Err(ManifestError::Rows { problems, .. }) =
            validate(f.path(), &Rules::sizes_only(Size::Class(Resolution::K1)))
        else {
            panic!("refused")
        };
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(text[0].starts_with("line 2: bad count \"0\""), "{text:?}");
        assert!(text[1].starts_with("line 3: bad count \"1.5\""), "{text:?}");
        assert!(text[2].starts_with("line 4: bad count \"101\""), "{text:?}");
        assert!(text[3].contains("line 6: duplicate id \"d_2\": image 2 of row \"d\" (count 2) and the row on line 5"));
        assert_eq!(problems.len(), 4, "{text:?}");
    }

    #[test]
    fn the_delimiter_is_found_from_the_header() {
        let (d, rows) = read_with(b"id;prompt;size\na;a cat, sitting;2K\n", None).unwrap();
        assert_eq!((d, rows[0].prompt.as_str(), rows[0].id.as_str()), (Delimiter::Semicolon, "a cat, sitting", "a"));
        let (d, rows) = read_with(b"\xEF\xBB\xBFprompt\tid\na; b, c\tx\n", None).unwrap();
        assert_eq!((d, rows[0].prompt.as_str()), (Delimiter::Tab, "a; b, c"));
        // Quoted names, with the other delimiters inside the quotes.
        let (d, rows) = read_with(b"\"Prompt\";\"notes, misc\";\"id\"\n\"x; y\";n;q\n", None).unwrap();
        assert_eq!(
            (d, rows[0].prompt.as_str(), rows[0].extra.clone()),
            (Delimiter::Semicolon, "x; y", vec!["n".into()])
        );
        let (d, _) = read_with(b"\"a;b\",prompt\n\"x;y\",z\n", None).unwrap();
        assert_eq!(d, Delimiter::Comma, "a quoted `;` does not split the header");
        // The most known columns win; a tie (one column) stays a comma.
        let (d, _) = read_with(b"prompt,notes;id\nx,y\n", None).unwrap();
        assert_eq!(d, Delimiter::Comma);
        let (d, _) = read_with(b"prompt\nx\n", None).unwrap();
        assert_eq!(d, Delimiter::Comma);
    }

    #[test]
    fn a_given_delimiter_is_used_and_a_header_it_does_not_fit_is_explained() {
        // One column whose prompts hold commas: only --delimiter tab reads them whole.
        let (d, rows) = read_with(b"prompt\na cat, a dog; a bird\n", Some(Delimiter::Tab)).unwrap();
        assert_eq!((d, rows[0].prompt.as_str()), (Delimiter::Tab, "a cat, a dog; a bird"));
        let err = read_with(b"id;prompt\na;b\n", Some(Delimiter::Comma)).unwrap_err();
        assert!(
            err.contains("has no `prompt` column when split at each comma (--delimiter ,; columns found: id;prompt)"),
            "{err}"
        );
        assert!(err.contains("split at each semicolon it has one: give --delimiter ; or leave the flag out"), "{err}");
        let err = read_with(b"id;text;size\na;b;1K\n", None).unwrap_err();
        assert!(
            err.contains("has no `prompt` column (columns found, split at each semicolon: id, text, size)"),
            "{err}"
        );
        assert!(err.contains("--delimiter ,|;|tab"), "{err}");
    }

    #[test]
    fn text_that_is_not_utf8_names_its_column_line_and_row() {
        let f = manifest(b"id,prompt,team\nok,fine,x\nlatin,caf\xe9 au lait,y\n\xe9t\xe9,summer,z\n");
        let ManifestError::Rows { problems, .. } =
            validate(f.path(), &Rules::sizes_only(Size::Class(Resolution::K1))).unwrap_err()
        else {
            panic!()
        };
        let got: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            got[0],
            "line 3: undecodable text in column `prompt` (column 2), row latin: not UTF-8; re-save the file as \"CSV UTF-8\" (Excel: File > Save As > CSV UTF-8)"
        );
        assert!(got[1].starts_with("line 4: undecodable text in column `id` (column 1): not UTF-8;"), "{got:?}");
        let f = manifest(b"prompt,l\xe9gende\nx,y\n");
        let err = validate(f.path(), &Rules::sizes_only(Size::Class(Resolution::K1))).unwrap_err().to_string();
        assert!(
            err.contains("header column 2 (\"l\u{fffd}gende\") is not UTF-8 text: re-save the file as \"CSV UTF-8\""),
            "{err}"
        );
    }

    #[test]
    fn prompts_over_their_models_limit_are_refused_counting_characters() {
        // 10 characters of 2 bytes each: within a limit of 10 characters.
        let fits = "é".repeat(10);
        let text = format!("prompt,id,model\n{fits},a,small\n{fits}x,b,small\n{fits}x,c,big\n");
        let f = manifest(text.as_bytes());
        let limit = |m: &str| (m == "small").then(|| (10, format!("model {m}")));
        let settings = ReadSettings { prompt_limit: Some(Arc::new(limit)), ..ReadSettings::default() };
        let err = validate_with(f.path(), &Rules::sizes_only(Size::Class(Resolution::K1)), &settings).unwrap_err();
        let ManifestError::Rows { problems, total, .. } = err else { panic!() };
        assert_eq!(total, 1);
        assert_eq!(problems[0].line, 3);
        assert_eq!(problems[0].kind, ProblemKind::PromptTooLong);
        assert_eq!(
            problems[0].reason,
            "row b: the prompt is 11 characters long, over the 10 that model small takes; shorten it"
        );
    }
}
