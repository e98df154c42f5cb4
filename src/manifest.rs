//! The manifest: a CSV of prompts, read as a stream.
//!
//! [`validate`] reads the whole file once and collects every bad row before anything is
//! sent; [`ManifestReader`] then yields the rows one by one for the checkpoint to take in.
//! Neither holds the file in memory (duplicate ids are found through 128-bit hashes).

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::params::{self, Params};
use crate::size::{AspectRatio, Size};

/// One data row, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    /// Line of the file where the record starts (1 = the header).
    pub line: u64,
    /// Data row number, from 1.
    pub index: u64,
    pub id: String,
    pub prompt: String,
    pub size: Option<Size>,
    pub aspect_ratio: Option<AspectRatio>,
    pub model: Option<String>,
    /// The row's `param.KEY` columns that are not empty, nested.
    pub params: Params,
    /// Values of the columns bulkgen does not know, in header order.
    pub extra: Vec<String>,
}

/// A bad row: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub reason: String,
    /// The row's id when it had a valid one: it still counts for duplicate checks.
    pub id: Option<String>,
}

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
    #[error("manifest {path} has {} bad row(s); nothing was sent:\n{}", problems.len(), list(problems))]
    Rows { path: PathBuf, problems: Vec<Problem> },
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

/// What a valid manifest holds, for the plan, the preflight and the progress display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestStats {
    pub rows: u64,
    /// Rows per resolution class, in `Resolution::ALL` order, with `default_size` applied.
    pub per_class: [u64; 4],
    /// The models rows use (the default included when a row names none), up to
    /// [`MAX_MODELS`] of them.
    pub models: std::collections::BTreeSet<String>,
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
}

impl Rules<'_> {
    /// Rules for tests and callers with no model restrictions.
    pub fn sizes_only(default_size: Size) -> Rules<'static> {
        Rules { default_size, default_model: "", reserved_params: &[], check: &|_, _, _| Ok(()) }
    }
}

/// Reads every row and reports all problems at once: empty prompts, unknown sizes, bad
/// aspect ratios, unsafe or duplicate ids, undecodable text, sizes the row's model cannot
/// render, params that would overwrite bulkgen's own fields.
pub fn validate(path: &Path, rules: &Rules<'_>) -> Result<ManifestStats, ManifestError> {
    let mut reader = ManifestReader::open(path)?;
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
    let mut stats = ManifestStats::default();
    let mut problems = Vec::new();
    let mut seen: HashMap<u128, u64> = HashMap::new();
    for row in &mut reader {
        match row {
            Err(ReadError::Io(source)) => {
                return Err(ManifestError::Io { path: path.to_owned(), source });
            }
            Err(ReadError::Row(p)) => {
                if let Some(id) = &p.id
                    && let Some(first) = seen.insert(id_hash(id), p.line)
                {
                    problems.push(duplicate(id, p.line, first));
                }
                problems.push(p);
            }
            Ok(row) => {
                if let Some(first) = seen.insert(id_hash(&row.id), row.line) {
                    problems.push(duplicate(&row.id, row.line, first));
                    continue;
                }
                let size = row.size.unwrap_or(rules.default_size);
                let model = row.model.as_deref().unwrap_or(rules.default_model);
                if let Err(why) = (rules.check)(model, size, row.aspect_ratio) {
                    problems.push(Problem { line: row.line, reason: format!("row {}: {why}", row.id), id: None });
                    continue;
                }
                if stats.models.len() < MAX_MODELS && !stats.models.contains(model) {
                    stats.models.insert(model.to_owned());
                }
                stats.rows += 1;
                stats.per_class[size.resolution().index()] += 1;
            }
        }
    }
    if !problems.is_empty() {
        return Err(ManifestError::Rows { path: path.to_owned(), problems });
    }
    if stats.rows == 0 {
        return Err(ManifestError::Header { path: path.to_owned(), reason: "has no data rows".into() });
    }
    Ok(stats)
}

fn duplicate(id: &str, line: u64, first: u64) -> Problem {
    Problem { line, reason: format!("duplicate id {id:?} (first used on line {first})"), id: None }
}

/// Two independent 64-bit hashes: a false "duplicate" would need a 128-bit collision.
fn id_hash(id: &str) -> u128 {
    let mut a = DefaultHasher::new();
    (0u8, id).hash(&mut a);
    let mut b = DefaultHasher::new();
    (1u8, id).hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
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
    /// `param.KEY` columns: where, and KEY.
    params: Vec<usize>,
    param_keys: Vec<String>,
    extra: Vec<usize>,
}

pub enum ReadError {
    Io(std::io::Error),
    Row(Problem),
}

/// Streams checked rows (ids are checked for form here, for uniqueness by [`validate`]).
pub struct ManifestReader {
    records: csv::ByteRecordsIntoIter<BufReader<File>>,
    layout: Layout,
    extra_columns: Vec<String>,
    index: u64,
}

impl ManifestReader {
    pub fn open(path: &Path) -> Result<ManifestReader, ManifestError> {
        let io = |source| ManifestError::Io { path: path.to_owned(), source };
        let header_err = |reason: String| ManifestError::Header { path: path.to_owned(), reason };
        let file = File::open(path).map_err(io)?;
        let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(BufReader::new(file));
        let header = rdr.byte_headers().map_err(|e| header_err(format!("unreadable header: {e}")))?.clone();
        if header.is_empty() {
            return Err(header_err("is empty: it needs a header row with at least a `prompt` column".into()));
        }
        let mut names = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            let raw = if i == 0 { raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw) } else { raw };
            let name = std::str::from_utf8(raw)
                .map_err(|_| header_err(format!("header column {} is not UTF-8 text", i + 1)))?;
            names.push(name.trim().to_owned());
        }
        let mut layout = Layout {
            width: names.len(),
            prompt: usize::MAX,
            id: None,
            size: None,
            aspect_ratio: None,
            model: None,
            params: Vec::new(),
            param_keys: Vec::new(),
            extra: Vec::new(),
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
        if layout.prompt == usize::MAX {
            return Err(header_err(format!("has no `prompt` column (columns found: {})", names.join(", "))));
        }
        Ok(ManifestReader { records: rdr.into_byte_records(), layout, extra_columns, index: 0 })
    }

    /// Names of the columns carried through to results.csv, in header order.
    pub fn extra_columns(&self) -> &[String] {
        &self.extra_columns
    }

    fn check(&self, record: &csv::ByteRecord, line: u64, index: u64) -> Result<ManifestRow, Problem> {
        let problem = |reason: String| Problem { line, reason, id: None };
        let text = |col: usize| -> Result<&str, Problem> {
            let raw = record.get(col).unwrap_or(b"");
            std::str::from_utf8(raw).map_err(|_| problem(format!("undecodable text in column {} (not UTF-8)", col + 1)))
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
                check_id(id).map_err(|why| problem(format!("unsafe id {id:?}: {why}")))?;
                id.to_owned()
            }
            None => format!("row-{index}"),
        };
        let with_id = |reason: String| Problem { line, reason, id: Some(id.clone()) };
        let rest = || -> Result<ManifestRow, Problem> {
            if record.len() > self.layout.width {
                return Err(problem(format!(
                    "has {} fields but the header has {} columns (an unquoted comma?)",
                    record.len(),
                    self.layout.width
                )));
            }
            let prompt = text(self.layout.prompt)?;
            if prompt.trim().is_empty() {
                return Err(problem("empty prompt".into()));
            }
            let size = optional(self.layout.size)?.map(str::parse::<Size>).transpose().map_err(problem)?;
            let aspect_ratio = match optional(self.layout.aspect_ratio)? {
                Some(a) => Some(AspectRatio::parse(a).ok_or_else(|| {
                    problem(format!("bad aspect ratio {a:?}: write W:H, such as 16:9 (see `bulkgen models`)"))
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
            let extra = self.layout.extra.iter().map(|&c| text(c).map(str::to_owned)).collect::<Result<_, _>>()?;
            Ok(ManifestRow {
                line,
                index,
                id: id.clone(),
                prompt: prompt.to_owned(),
                size,
                aspect_ratio,
                model,
                params: row_params,
                extra,
            })
        };
        rest().map_err(|p| with_id(p.reason))
    }
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
    Ok(())
}

impl Iterator for ManifestReader {
    type Item = Result<ManifestRow, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let record = match self.records.next()? {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                return Some(match e.into_kind() {
                    csv::ErrorKind::Io(io) => Err(ReadError::Io(io)),
                    other => {
                        Err(ReadError::Row(Problem { line, reason: format!("unreadable CSV: {other:?}"), id: None }))
                    }
                });
            }
        };
        self.index += 1;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        Some(self.check(&record, line, self.index).map_err(ReadError::Row))
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
        assert!(problems[7].reason.contains("undecodable"));
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
    fn stats_count_rows_per_class_with_the_default_size() {
        let f = manifest(b"prompt,size,model\na,,\nb,4K,m2\nc,2048x2048,\nd,1024x1024,\ne,512,\n");
        let rules = Rules { default_model: "m1", ..Rules::sizes_only(Size::Class(Resolution::K4)) };
        let stats = validate(f.path(), &rules).unwrap();
        assert_eq!(stats.rows, 5);
        assert_eq!(stats.per_class, [1, 1, 1, 2]);
        assert_eq!(stats.models.iter().map(String::as_str).collect::<Vec<_>>(), vec!["m1", "m2"]);
    }
}
