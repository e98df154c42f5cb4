//! The model catalogue: what bulkgen knows of each model — dialect, status and shutdown
//! date, the sizes and ratios it renders and how a size class becomes what is sent, the
//! parameters it takes, prices — as data (`catalog.toml`, compiled in; `--models-file`
//! adds or overrides entries). This module holds the rules for *using* that data; no model
//! name appears in code. A model the catalogue does not know is sent what the row gives.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::size::{AspectRatio, Resolution, Size};

const BUILT_IN: &str = include_str!("catalog.toml");

/// The API dialect a model is spoken to in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// OpenAI-compatible `POST /v1/images/generations` (OpenAI and most aggregators).
    Openai,
    /// Gemini native `POST /v1beta/models/{model}:generateContent`.
    Gemini,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Openai => "openai",
            Dialect::Gemini => "gemini",
        }
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Dialect::Openai => "https://api.openai.com",
            Dialect::Gemini => "https://generativelanguage.googleapis.com",
        }
    }
}

/// How a run gets its images: one call per image, or the provider's Batch API (a file of
/// requests, answered within 24 h at half price).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Online,
    Batch,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Online => "online",
            Engine::Batch => "batch",
        }
    }

    pub fn parse(s: &str) -> Option<Engine> {
        match s {
            "online" => Some(Engine::Online),
            "batch" => Some(Engine::Batch),
            _ => None,
        }
    }
}

/// How an OpenAI-dialect image comes back; only sent to models that take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum ResponseFormat {
    /// The image comes back as base64 inside the JSON.
    #[value(name = "b64_json")]
    #[serde(rename = "b64_json")]
    B64Json,
    /// The JSON holds a URL; the image is downloaded with a separate, short GET.
    #[value(name = "url")]
    #[serde(rename = "url")]
    Url,
}

impl ResponseFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFormat::B64Json => "b64_json",
            ResponseFormat::Url => "url",
        }
    }
}

/// What to do with a size a model cannot render exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SizePolicy {
    /// Refuse the row at the manifest check (exit 2).
    #[default]
    Exact,
    /// Send the nearest size the model renders (results.csv records both).
    Nearest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Active,
    Deprecated,
    Shutdown,
}

/// How a model takes sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SizeRule {
    /// `imageSize` (a class) and `aspectRatio`.
    Gemini {
        classes: Vec<String>,
        ratios: Vec<String>,
        /// Published 1K pixel size per ratio (512 halves, 2K doubles, 4K quadruples).
        #[serde(default)]
        pixels_1k: BTreeMap<String, String>,
    },
    /// Only these `WxH` sizes.
    List { sizes: Vec<String> },
    /// Any `WxH` within limits.
    Free {
        multiple_of: u32,
        max_ratio: f64,
        max_edge: u32,
        min_pixels: u64,
        max_pixels: u64,
        /// Pixels a class is sent as.
        class_pixels: BTreeMap<String, u64>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[serde(default)]
    pub online: BTreeMap<String, f64>,
    #[serde(default)]
    pub batch: BTreeMap<String, f64>,
}

/// One model, as the catalogue describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub dialect: Dialect,
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub status: Status,
    /// When it shut down, or will (YYYY-MM-DD).
    pub date: Option<String>,
    pub replacement: Option<String>,
    pub sizes: Option<SizeRule>,
    #[serde(default)]
    pub response_format: bool,
    /// How many reference images one request may carry (None: not known, not checked).
    pub max_reference_images: Option<u32>,
    /// The formats a reference may be in, among `png`, `jpeg`, `webp` (judged by the
    /// bytes, never the extension); empty: not known, any of them is sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_formats: Vec<String>,
    /// The most bytes one reference image may have (None: not known, not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reference_bytes: Option<u64>,
    /// Takes an edit mask (the openai dialect's `/v1/images/edits` `mask`).
    #[serde(default)]
    pub mask: bool,
    #[serde(default)]
    pub params: Vec<String>,
    /// Offered through its dialect's Batch API (`--engine batch`).
    #[serde(default)]
    pub batch: bool,
    /// The most characters (Unicode scalar values) a prompt may have (None: not known, not
    /// checked): longer prompts are refused at the manifest check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_chars: Option<u64>,
    /// The most images one call may ask for (the openai dialect's `n`): images of one
    /// manifest row (`--count`) share a call up to this many. 1 (the default): a call per
    /// image, which is all Gemini's `generateContent` makes.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub images_per_call: u32,
    pub price: Option<Price>,
    pub source: String,
    pub as_of: String,
}

/// What one dialect's Batch API takes, and what bulkgen expects it to give back: the
/// limits a job is cut to (`--engine batch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchLimits {
    pub dialect: Dialect,
    /// Most request lines in one input file (None: no published limit).
    pub max_lines: Option<u64>,
    /// Most bytes of one input file.
    pub max_input_bytes: u64,
    /// Most jobs open at once (None: no published limit).
    pub max_open_jobs: Option<u64>,
    /// Bytes one image takes in the result file (base64 inside its JSON line), by class:
    /// jobs are cut so that their expected result file stays under
    /// `batch::MAX_RESULT_BYTES`.
    pub result_bytes: BTreeMap<String, u64>,
    pub source: String,
    pub as_of: String,
}

impl BatchLimits {
    /// The expected bytes of one `class` image in a result file (the largest class known
    /// when this one is not).
    pub fn result_bytes(&self, class: Resolution) -> u64 {
        self.result_bytes
            .get(class.as_str())
            .copied()
            .unwrap_or_else(|| self.result_bytes.values().copied().max().unwrap_or(0))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    model: Vec<ModelEntry>,
    #[serde(default)]
    batch: Vec<BatchLimits>,
}

/// The catalogue in force: the built-in entries with `--models-file` applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Catalog {
    pub models: Vec<ModelEntry>,
    /// Batch API limits, one entry per dialect.
    pub batch: Vec<BatchLimits>,
}

/// What a model is sent for a row's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireSize {
    /// An OpenAI-style `size` field.
    Pixels { width: u32, height: u32 },
    /// Gemini `imageSize` and `aspectRatio` (left out when None).
    Gemini { image_size: String, ratio: Option<AspectRatio> },
}

impl std::fmt::Display for WireSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireSize::Pixels { width, height } => write!(f, "{width}x{height}"),
            WireSize::Gemini { image_size, ratio: Some(r) } => write!(f, "{image_size} {r}"),
            WireSize::Gemini { image_size, ratio: None } => f.write_str(image_size),
        }
    }
}

impl Catalog {
    pub fn built_in() -> Catalog {
        Catalog::parse(BUILT_IN, "the built-in catalogue").expect("the built-in catalogue is valid (tested)")
    }

    /// The built-in catalogue with `models_file`'s entries added, or replacing the entry
    /// of the same name.
    pub fn load(models_file: Option<&Path>) -> Result<Catalog, String> {
        let mut catalog = Catalog::built_in();
        let Some(path) = models_file else { return Ok(catalog) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--models-file {}: cannot read it: {e}", path.display()))?;
        let extra = Catalog::parse(&text, &format!("--models-file {}", path.display()))?;
        for entry in extra.models {
            if entry.default {
                for m in catalog.models.iter_mut().filter(|m| m.dialect == entry.dialect) {
                    m.default = false;
                }
            }
            match catalog.models.iter_mut().find(|m| m.name == entry.name) {
                Some(old) => *old = entry,
                None => catalog.models.push(entry),
            }
        }
        for entry in extra.batch {
            match catalog.batch.iter_mut().find(|b| b.dialect == entry.dialect) {
                Some(old) => *old = entry,
                None => catalog.batch.push(entry),
            }
        }
        catalog.check().map_err(|e| format!("--models-file {}: {e}", path.display()))?;
        Ok(catalog)
    }

    fn parse(text: &str, what: &str) -> Result<Catalog, String> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| format!("{what}: {e}"))?;
        let catalog = Catalog { models: file.model, batch: file.batch };
        catalog.check().map_err(|e| format!("{what}: {e}"))?;
        Ok(catalog)
    }

    /// Every entry is usable: names unique, sizes present unless shut down and well
    /// formed, dates as YYYY-MM-DD, at most one default per dialect.
    fn check(&self) -> Result<(), String> {
        let mut names: BTreeMap<&str, &str> = BTreeMap::new();
        for m in &self.models {
            let at = |e: String| format!("model {:?}: {e}", m.name);
            if m.name.trim().is_empty() {
                return Err("a model has an empty name".into());
            }
            for n in std::iter::once(&m.name).chain(&m.aliases) {
                if let Some(other) = names.insert(n, &m.name) {
                    return Err(at(format!("the name {n:?} is also used by {other:?}")));
                }
            }
            if let Some(d) = &m.date
                && !is_date(d)
            {
                return Err(at(format!("date {d:?} is not YYYY-MM-DD")));
            }
            match (&m.sizes, m.status) {
                (None, Status::Shutdown) => {}
                (None, _) => return Err(at("needs `sizes` (only shut-down models may leave it out)".into())),
                (Some(rule), _) => check_rule(rule).map_err(at)?,
            }
            check_references(m).map_err(at)?;
            if m.max_prompt_chars == Some(0) {
                return Err(at("max_prompt_chars must be above 0 (leave it out when not known)".into()));
            }
            if m.images_per_call == 0 {
                return Err(at("images_per_call must be at least 1 (1: one call per image)".into()));
            }
            if m.images_per_call > 1 && m.dialect != Dialect::Openai {
                return Err(at(format!(
                    "images_per_call = {}: only the openai dialect asks for several images in one call (`n`); a \
                     {} model makes one image per call, so leave it out",
                    m.images_per_call,
                    m.dialect.as_str()
                )));
            }
            if let Some(p) = &m.price {
                for (class, usd) in p.online.iter().chain(&p.batch) {
                    if Resolution::parse(class).is_none() || !(usd.is_finite() && *usd >= 0.0) {
                        return Err(at(format!("price {class:?} = {usd}: classes are 512, 1K, 2K, 4K; USD >= 0")));
                    }
                }
            }
        }
        for b in &self.batch {
            let at = |e: String| format!("batch limits of {}: {e}", b.dialect.as_str());
            if self.batch.iter().filter(|o| o.dialect == b.dialect).count() > 1 {
                return Err(at("given twice".into()));
            }
            if b.max_input_bytes == 0 || b.max_lines == Some(0) || b.max_open_jobs == Some(0) {
                return Err(at("max_lines, max_input_bytes and max_open_jobs must be above 0".into()));
            }
            if b.result_bytes.is_empty() {
                return Err(at("result_bytes needs at least one class".into()));
            }
            for (class, bytes) in &b.result_bytes {
                if Resolution::parse(class).is_none() || *bytes == 0 {
                    return Err(at(format!(
                        "result_bytes {class:?} = {bytes}: classes are 512, 1K, 2K, 4K; bytes > 0"
                    )));
                }
            }
        }
        for dialect in [Dialect::Openai, Dialect::Gemini] {
            let defaults: Vec<&str> =
                self.models.iter().filter(|m| m.dialect == dialect && m.default).map(|m| m.name.as_str()).collect();
            if defaults.len() > 1 {
                return Err(format!("more than one default model for {}: {}", dialect.as_str(), defaults.join(", ")));
            }
        }
        Ok(())
    }

    /// How many images one call of `model` may ask for in `dialect`: its entry's
    /// `images_per_call` in the openai dialect (the only one with `n`), else 1. A model the
    /// catalogue does not know gets 1: `n` is sent only where it is known to be taken.
    pub fn images_per_call(&self, dialect: Dialect, model: &str) -> u32 {
        match (dialect, self.lookup(model)) {
            (Dialect::Openai, Some(m)) => m.images_per_call.max(1),
            _ => 1,
        }
    }

    /// The entry of `model`, by name or alias; an aggregator's `vendor/name` also finds
    /// `name`.
    pub fn lookup(&self, model: &str) -> Option<&ModelEntry> {
        let model = model.trim().trim_start_matches("models/");
        let find = |n: &str| self.models.iter().find(|m| m.name == n || m.aliases.iter().any(|a| a == n));
        find(model).or_else(|| model.rsplit_once('/').and_then(|(_, last)| find(last)))
    }

    /// The Batch API limits of `dialect`, if the catalogue has them.
    pub fn batch_limits(&self, dialect: Dialect) -> Option<&BatchLimits> {
        self.batch.iter().find(|b| b.dialect == dialect)
    }

    /// The model a run of `dialect` uses when none is named.
    pub fn default_model(&self, dialect: Dialect) -> Option<&str> {
        self.models.iter().find(|m| m.dialect == dialect && m.default).map(|m| m.name.as_str())
    }

    /// Names close to `model` (for "did you mean").
    pub fn close_names<'a>(model: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut scored: Vec<(usize, &str)> = names
            .into_iter()
            .map(|n| (edit_distance(&model.to_ascii_lowercase(), &n.to_ascii_lowercase()), n))
            .filter(|(d, n)| *d <= (model.len().max(n.len()) / 3).max(2) || n.contains(model) || model.contains(n))
            .collect();
        scored.sort();
        scored.dedup_by(|a, b| a.1 == b.1);
        scored.into_iter().take(5).map(|(_, n)| n.to_owned()).collect()
    }

    /// What `model` is sent for a row asking `size` (and `ratio`), or why it cannot be.
    pub fn resolve(
        &self,
        dialect: Dialect,
        model: &str,
        size: Size,
        ratio: Option<AspectRatio>,
        policy: SizePolicy,
    ) -> Result<WireSize, String> {
        if let (Size::Pixels { width, height }, Some(r)) = (size, ratio)
            && !r.matches(width, height)
        {
            return Err(format!("size {width}x{height} and aspect_ratio {r} disagree: give one of them"));
        }
        // An entry of the other dialect says nothing of how this endpoint takes sizes (an
        // aggregator may serve a Gemini model in the openai dialect): send what is given.
        let entry = self.lookup(model).filter(|m| m.dialect == dialect);
        match entry.and_then(|m| m.sizes.as_ref().map(|s| (m, s))) {
            Some((m, rule)) => resolve_rule(&m.name, rule, size, ratio, policy),
            None => resolve_unknown(dialect, model, size, ratio),
        }
    }

    /// The catalogue as text, one model a paragraph.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for m in &self.models {
            let _ = write!(out, "{}", m.name);
            if !m.aliases.is_empty() {
                let _ = write!(out, " (also {})", m.aliases.join(", "));
            }
            let _ = write!(out, "  [{}]", m.dialect.as_str());
            if m.default {
                out.push_str(" default");
            }
            let _ = writeln!(out, "  {}", status_text(m));
            if let Some(rule) = &m.sizes {
                let _ = writeln!(out, "    sizes: {}", rule_text(rule));
            }
            let mut facts = vec![format!("response_format: {}", if m.response_format { "yes" } else { "no" })];
            if let Some(refs) = references_text(m) {
                facts.push(refs);
            }
            if let Some(max) = m.max_prompt_chars {
                facts.push(format!("prompt: at most {max} characters"));
            }
            if m.images_per_call > 1 {
                facts.push(format!("up to {} images per call (n)", m.images_per_call));
            }
            if let Some(p) = &m.price {
                let list = |t: &BTreeMap<String, f64>| {
                    t.iter().map(|(c, u)| format!("{c} ${u}")).collect::<Vec<_>>().join(" ")
                };
                if !p.online.is_empty() {
                    facts.push(format!("online {}", list(&p.online)));
                }
                if !p.batch.is_empty() {
                    facts.push(format!("batch {}", list(&p.batch)));
                }
            } else {
                facts.push("price: not known (give --price)".into());
            }
            let _ = writeln!(out, "    {}", facts.join("; "));
            if !m.params.is_empty() {
                let _ = writeln!(out, "    params: {}", m.params.join(", "));
            }
            let _ = writeln!(out, "    source: {} (as of {})", m.source, m.as_of);
        }
        out
    }
}

/// "active", "deprecated: shuts down 2026-12-01, use X", "shut down 2026-10-23, use X".
pub fn status_text(m: &ModelEntry) -> String {
    let date = m.date.as_deref().unwrap_or("?");
    let instead = m.replacement.as_deref().map(|r| format!("; use {r}")).unwrap_or_default();
    match m.status {
        Status::Active => "active".into(),
        Status::Deprecated => format!("deprecated: shuts down {date}{instead}"),
        Status::Shutdown => format!("shut down {date}{instead}"),
    }
}

impl ModelEntry {
    /// Shut down as of `today` (YYYY-MM-DD): marked so, or deprecated with a date passed.
    pub fn is_shut_down(&self, today: &str) -> bool {
        match self.status {
            Status::Shutdown => true,
            Status::Deprecated => self.date.as_deref().is_some_and(|d| d <= today),
            Status::Active => false,
        }
    }

    /// The published price of one image of `class`, online.
    pub fn online_price(&self, class: Resolution) -> Option<f64> {
        self.price.as_ref()?.online.get(class.as_str()).copied()
    }

    /// The published price of one image of `class` made through the Batch API.
    pub fn batch_price(&self, class: Resolution) -> Option<f64> {
        self.price.as_ref()?.batch.get(class.as_str()).copied()
    }
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// The formats a reference may be in, as the catalogue spells them.
pub const REFERENCE_FORMATS: [&str; 3] = ["png", "jpeg", "webp"];

/// What a model takes as reference images, as far as the catalogue knows: each limit is
/// None (or empty) when it is not known, and then not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceRules {
    /// The catalogue's name of the model, or the name the row gave when it is unknown.
    pub model: String,
    /// Whether the catalogue knows the model (messages then name the catalogue's facts).
    pub known: bool,
    pub max_images: Option<u32>,
    /// Among [`REFERENCE_FORMATS`]; empty: any of them.
    pub formats: Vec<String>,
    pub max_bytes: Option<u64>,
    /// Takes an edit mask: the openai dialect only, and a known model only when its
    /// entry says so.
    pub mask: bool,
}

impl ReferenceRules {
    /// Whether the format of an image (`png`, `jpeg` or `webp`) is taken.
    pub fn takes_format(&self, format: &str) -> bool {
        self.formats.is_empty() || self.formats.iter().any(|f| f == format)
    }
}

impl Catalog {
    /// What `model` takes as reference images when spoken to in `dialect`. A model the
    /// catalogue does not know is sent what the row gives (no limit checked), as with
    /// sizes; a mask goes only to the openai dialect's edits endpoint (Gemini has none).
    pub fn reference_rules(&self, dialect: Dialect, model: &str) -> ReferenceRules {
        match self.lookup(model) {
            Some(m) => ReferenceRules {
                model: m.name.clone(),
                known: true,
                max_images: m.max_reference_images,
                formats: m.reference_formats.clone(),
                max_bytes: m.max_reference_bytes,
                mask: m.mask && m.dialect == Dialect::Openai && dialect == Dialect::Openai,
            },
            None => ReferenceRules {
                model: model.to_owned(),
                known: false,
                max_images: None,
                formats: Vec::new(),
                max_bytes: None,
                mask: dialect == Dialect::Openai,
            },
        }
    }
}

/// The reference fields of an entry are usable: known formats, a byte limit of at least
/// one byte, and a mask only in the openai dialect (Gemini has no edit mask).
fn check_references(m: &ModelEntry) -> Result<(), String> {
    for f in &m.reference_formats {
        if !REFERENCE_FORMATS.contains(&f.as_str()) {
            return Err(format!(
                "reference_formats has {f:?}: write some of {} (the formats bulkgen can check)",
                REFERENCE_FORMATS.map(|f| format!("{f:?}")).join(", ")
            ));
        }
    }
    if m.max_reference_bytes == Some(0) {
        return Err("max_reference_bytes = 0: give the most bytes one reference may have (at least 1), or leave \
                    it out when it is not known"
            .into());
    }
    if m.mask && m.dialect == Dialect::Gemini {
        return Err("mask = true, but the gemini dialect has no edit mask: leave it out".into());
    }
    Ok(())
}

/// "reference images: up to 14 (png jpeg webp, each up to 100 MB); edit mask", or None
/// when the catalogue knows nothing of them.
fn references_text(m: &ModelEntry) -> Option<String> {
    let mut text = match m.max_reference_images {
        Some(0) => "reference images: none".to_owned(),
        Some(n) => format!("reference images: up to {n}"),
        None if m.reference_formats.is_empty() && m.max_reference_bytes.is_none() && !m.mask => return None,
        None => "reference images: count not known".to_owned(),
    };
    let mut detail = Vec::new();
    if !m.reference_formats.is_empty() {
        detail.push(m.reference_formats.join(" "));
    }
    if let Some(n) = m.max_reference_bytes {
        detail.push(format!("each up to {}", decimal_bytes(n)));
    }
    if !detail.is_empty() && m.max_reference_images != Some(0) {
        text.push_str(&format!(" ({})", detail.join(", ")));
    }
    if m.mask {
        text.push_str("; edit mask");
    }
    Some(text)
}

/// Bytes as providers write their limits: `50 MB`, `2 GB`, else the plain count.
fn decimal_bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 && n.is_multiple_of(1_000_000_000) => format!("{} GB", n / 1_000_000_000),
        n if n >= 1_000_000 && n.is_multiple_of(1_000_000) => format!("{} MB", n / 1_000_000),
        n => format!("{n} bytes"),
    }
}

fn rule_text(rule: &SizeRule) -> String {
    match rule {
        SizeRule::Gemini { classes, ratios, .. } => {
            format!("imageSize {}; aspectRatio {}", classes.join(" "), ratios.join(" "))
        }
        SizeRule::List { sizes } => sizes.join(" "),
        SizeRule::Free { multiple_of, max_ratio, max_edge, min_pixels, max_pixels, class_pixels } => format!(
            "WxH, sides divisible by {multiple_of}, ratio within 1:{max_ratio}..{max_ratio}:1, edge <= {max_edge}, \
             {min_pixels}..{max_pixels} pixels; classes {}",
            class_pixels.keys().cloned().collect::<Vec<_>>().join(" ")
        ),
    }
}

fn check_rule(rule: &SizeRule) -> Result<(), String> {
    let class = |c: &String| Resolution::parse(c).ok_or(format!("size class {c:?}: use 512, 1K, 2K or 4K"));
    let ratio = |r: &String| AspectRatio::parse(r).ok_or(format!("aspect ratio {r:?}: write W:H"));
    let pixels = |p: &String| parse_pixels(p).ok_or(format!("size {p:?}: write WIDTHxHEIGHT"));
    match rule {
        SizeRule::Gemini { classes, ratios, pixels_1k } => {
            classes.iter().try_for_each(|c| class(c).map(drop))?;
            ratios.iter().try_for_each(|r| ratio(r).map(drop))?;
            for (r, p) in pixels_1k {
                ratio(r)?;
                pixels(p)?;
            }
            if classes.is_empty() || ratios.is_empty() {
                return Err("a gemini size rule needs classes and ratios".into());
            }
        }
        SizeRule::List { sizes } => {
            sizes.iter().try_for_each(|s| pixels(s).map(drop))?;
            if sizes.is_empty() {
                return Err("a list size rule needs sizes".into());
            }
        }
        SizeRule::Free { multiple_of, max_ratio, class_pixels, min_pixels, max_pixels, .. } => {
            class_pixels.keys().try_for_each(|c| class(c).map(drop))?;
            if *multiple_of == 0 || max_ratio.is_nan() || *max_ratio < 1.0 || min_pixels > max_pixels {
                return Err("a free size rule needs multiple_of >= 1, max_ratio >= 1, min_pixels <= max_pixels".into());
            }
        }
    }
    Ok(())
}

fn parse_pixels(s: &str) -> Option<(u32, u32)> {
    match s.parse::<Size>().ok()? {
        Size::Pixels { width, height } => Some((width, height)),
        Size::Class(_) => None,
    }
}

fn is_date(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Today as YYYY-MM-DD (UTC).
pub fn today() -> String {
    let days = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400);
    civil_date(days as i64)
}

/// Days since 1970-01-01 to a civil date, `YYYY-MM-DD` (Howard Hinnant's algorithm).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The nominal pixel count of a class, to compare sizes with.
fn nominal_pixels(class: Resolution) -> f64 {
    match class {
        Resolution::Px512 => 512.0 * 512.0,
        Resolution::K1 => 1024.0 * 1024.0,
        Resolution::K2 => 2048.0 * 2048.0,
        Resolution::K4 => 4096.0 * 4096.0,
    }
}

/// How far a size is from what was asked: ratio distance plus half the pixel distance,
/// both on a log scale.
fn size_distance(w: u32, h: u32, want_ratio: f64, want_pixels: f64) -> f64 {
    let (w, h) = (f64::from(w), f64::from(h));
    AspectRatio::distance(w / h, want_ratio) + 0.5 * AspectRatio::distance(w * h, want_pixels)
}

fn resolve_rule(
    name: &str,
    rule: &SizeRule,
    size: Size,
    ratio: Option<AspectRatio>,
    policy: SizePolicy,
) -> Result<WireSize, String> {
    let nearest = policy == SizePolicy::Nearest;
    let hint = "or pass --size-policy nearest to send the nearest size it renders";
    let (want_ratio, want_pixels) = match size {
        Size::Class(c) => (ratio.unwrap_or(AspectRatio::SQUARE).value(), nominal_pixels(c)),
        Size::Pixels { width, height } => (f64::from(width) / f64::from(height), f64::from(width) * f64::from(height)),
    };
    match rule {
        SizeRule::Gemini { classes, ratios, pixels_1k } => {
            let classes: Vec<Resolution> = classes.iter().filter_map(|c| Resolution::parse(c)).collect();
            let ratios: Vec<AspectRatio> = ratios.iter().filter_map(|r| AspectRatio::parse(r)).collect();
            let names = |v: &[AspectRatio]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
            let class_names = classes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(" ");
            let pixels_of = |r: AspectRatio, c: Resolution| -> Option<(u32, u32)> {
                let (w, h) = parse_pixels(pixels_1k.get(&r.to_string())?)?;
                Some(match c {
                    Resolution::Px512 => (w / 2, h / 2),
                    Resolution::K1 => (w, h),
                    Resolution::K2 => (w * 2, h * 2),
                    Resolution::K4 => (w * 4, h * 4),
                })
            };
            let nearest_ratio = |want: f64| {
                *ratios
                    .iter()
                    .min_by(|a, b| {
                        AspectRatio::distance(a.value(), want).total_cmp(&AspectRatio::distance(b.value(), want))
                    })
                    .expect("checked: a gemini rule has ratios")
            };
            let nearest_class = |pixels: f64| {
                *classes
                    .iter()
                    .min_by(|a, b| {
                        AspectRatio::distance(nominal_pixels(**a), pixels)
                            .total_cmp(&AspectRatio::distance(nominal_pixels(**b), pixels))
                    })
                    .expect("checked: a gemini rule has classes")
            };
            let (class, r) = match size {
                Size::Class(c) => {
                    let r = ratio.unwrap_or(AspectRatio::SQUARE);
                    let class = if classes.contains(&c) {
                        c
                    } else if nearest {
                        nearest_class(nominal_pixels(c))
                    } else {
                        return Err(format!(
                            "{name} renders imageSize {class_names}, not {c}: change the size, {hint}"
                        ));
                    };
                    let r = if ratios.contains(&r) {
                        r
                    } else if nearest {
                        nearest_ratio(r.value())
                    } else {
                        return Err(format!(
                            "{name} takes aspect ratios {}, not {r}: change aspect_ratio, {hint}",
                            names(&ratios)
                        ));
                    };
                    (class, r)
                }
                Size::Pixels { width, height } => {
                    let exact = ratios
                        .iter()
                        .flat_map(|r| classes.iter().map(move |c| (*c, *r)))
                        .find(|(c, r)| pixels_of(*r, *c) == Some((width, height)));
                    match exact {
                        Some(found) => found,
                        None => {
                            let (c, r) = (nearest_class(want_pixels), nearest_ratio(want_ratio));
                            if !nearest {
                                let px = pixels_of(r, c).map(|(w, h)| format!(" ({w}x{h})")).unwrap_or_default();
                                return Err(format!(
                                    "{name} takes a size class and an aspect ratio, and {width}x{height} is none of \
                                     its sizes; the nearest is size {c} with aspect_ratio {r}{px}: write those, {hint}"
                                ));
                            }
                            (c, r)
                        }
                    }
                }
            };
            Ok(WireSize::Gemini { image_size: class.as_str().to_owned(), ratio: Some(r) })
        }
        SizeRule::List { sizes } => {
            let sizes: Vec<(u32, u32)> = sizes.iter().filter_map(|s| parse_pixels(s)).collect();
            let listed = sizes.iter().map(|(w, h)| format!("{w}x{h}")).collect::<Vec<_>>().join(" ");
            let exact = match size {
                Size::Class(c) => {
                    let r = ratio.unwrap_or(AspectRatio::SQUARE);
                    sizes.iter().find(|(w, h)| Resolution::from_pixels(*w, *h) == c && r.matches(*w, *h))
                }
                Size::Pixels { width, height } => sizes.iter().find(|s| **s == (width, height)),
            };
            let (width, height) = match exact {
                Some(s) => *s,
                None if nearest => *sizes
                    .iter()
                    .min_by(|a, b| {
                        size_distance(a.0, a.1, want_ratio, want_pixels).total_cmp(&size_distance(
                            b.0,
                            b.1,
                            want_ratio,
                            want_pixels,
                        ))
                    })
                    .expect("checked: a list rule has sizes"),
                None => {
                    let asked = match (size, ratio) {
                        (Size::Class(c), Some(r)) => format!("{c} at {r}"),
                        (Size::Class(c), None) => format!("{c} at 1:1"),
                        (s, _) => s.to_string(),
                    };
                    return Err(format!("{name} renders only {listed}, not {asked}: change the size, {hint}"));
                }
            };
            Ok(WireSize::Pixels { width, height })
        }
        SizeRule::Free { multiple_of, max_ratio, max_edge, min_pixels, max_pixels, class_pixels } => {
            let limits = FreeLimits {
                m: *multiple_of,
                max_ratio: *max_ratio,
                max_edge: *max_edge,
                min_pixels: *min_pixels,
                max_pixels: *max_pixels,
            };
            match size {
                Size::Class(c) => {
                    let pixels = match class_pixels.get(c.as_str()) {
                        Some(p) => *p as f64,
                        None if nearest => class_pixels
                            .values()
                            .map(|p| *p as f64)
                            .min_by(|a, b| {
                                AspectRatio::distance(*a, nominal_pixels(c))
                                    .total_cmp(&AspectRatio::distance(*b, nominal_pixels(c)))
                            })
                            .ok_or(format!("{name} names no size classes in the catalogue"))?,
                        None => {
                            let known = class_pixels.keys().cloned().collect::<Vec<_>>().join(" ");
                            return Err(format!("{name} renders classes {known}, not {c}: change the size, {hint}"));
                        }
                    };
                    let r = ratio.unwrap_or(AspectRatio::SQUARE).value();
                    if !limits.ratio_ok(r) && !nearest {
                        return Err(format!(
                            "{name} renders aspect ratios from 1:{max_ratio} to {max_ratio}:1, not {}: change \
                             aspect_ratio, {hint}",
                            ratio.unwrap_or(AspectRatio::SQUARE)
                        ));
                    }
                    let (width, height) = limits.fit(pixels, r);
                    Ok(WireSize::Pixels { width, height })
                }
                Size::Pixels { width, height } => match limits.violation(width, height) {
                    None => Ok(WireSize::Pixels { width, height }),
                    Some(why) => {
                        let p = (want_pixels).clamp(*min_pixels as f64, *max_pixels as f64);
                        let (w, h) = limits.fit(p, want_ratio);
                        if nearest {
                            Ok(WireSize::Pixels { width: w, height: h })
                        } else {
                            Err(format!(
                                "{name} cannot render {width}x{height}: {why}; the nearest it renders is {w}x{h}: \
                                 write that, {hint}"
                            ))
                        }
                    }
                },
            }
        }
    }
}

struct FreeLimits {
    m: u32,
    max_ratio: f64,
    max_edge: u32,
    min_pixels: u64,
    max_pixels: u64,
}

impl FreeLimits {
    fn ratio_ok(&self, r: f64) -> bool {
        r <= self.max_ratio + 1e-9 && 1.0 / r <= self.max_ratio + 1e-9
    }

    fn violation(&self, w: u32, h: u32) -> Option<String> {
        let pixels = u64::from(w) * u64::from(h);
        if !w.is_multiple_of(self.m) || !h.is_multiple_of(self.m) {
            Some(format!("both sides must be divisible by {}", self.m))
        } else if !self.ratio_ok(f64::from(w) / f64::from(h)) {
            Some(format!("the ratio must be between 1:{0} and {0}:1", self.max_ratio))
        } else if w.max(h) > self.max_edge {
            Some(format!("the longer side must be at most {}", self.max_edge))
        } else if pixels < self.min_pixels || pixels > self.max_pixels {
            Some(format!("it must have {} to {} pixels", self.min_pixels, self.max_pixels))
        } else {
            None
        }
    }

    /// A size of about `pixels` pixels at ratio `r` (clamped to the allowed ratios) that
    /// meets every limit.
    fn fit(&self, pixels: f64, r: f64) -> (u32, u32) {
        let r = r.clamp(1.0 / self.max_ratio, self.max_ratio);
        let m = f64::from(self.m);
        let round = |x: f64| ((x / m).round().max(1.0) * m) as u32;
        let (mut w, mut h) = (round((pixels * r).sqrt()), round((pixels / r).sqrt()));
        let edge = (self.max_edge / self.m) * self.m;
        if w > edge {
            w = edge;
            h = round(f64::from(w) / r);
        }
        if h > edge {
            h = edge;
            w = round(f64::from(h) * r);
        }
        let px = |w: u32, h: u32| u64::from(w) * u64::from(h);
        while px(w, h) > self.max_pixels {
            if w >= h { w -= self.m } else { h -= self.m }
        }
        while px(w, h) < self.min_pixels {
            if w <= h { w += self.m } else { h += self.m }
        }
        (w, h)
    }
}

/// A model the catalogue does not know is sent what the row gives: `WxH` as is; a class
/// as that many pixels (512, 1024, 2048 or 4096 square) in the row's ratio, sides rounded
/// to 16 (openai), or as `imageSize` and `aspectRatio` (gemini).
fn resolve_unknown(dialect: Dialect, model: &str, size: Size, ratio: Option<AspectRatio>) -> Result<WireSize, String> {
    match (dialect, size) {
        (Dialect::Openai, Size::Pixels { width, height }) => Ok(WireSize::Pixels { width, height }),
        (Dialect::Openai, Size::Class(c)) => {
            let r = ratio.unwrap_or(AspectRatio::SQUARE).value();
            let side = nominal_pixels(c).sqrt();
            let round = |x: f64| ((x / 16.0).round().max(1.0) * 16.0) as u32;
            Ok(WireSize::Pixels { width: round(side * r.sqrt()), height: round(side / r.sqrt()) })
        }
        (Dialect::Gemini, Size::Class(c)) => Ok(WireSize::Gemini { image_size: c.as_str().to_owned(), ratio }),
        (Dialect::Gemini, Size::Pixels { width, height }) => Err(format!(
            "the gemini dialect takes a size class and an aspect ratio, and the catalogue knows nothing of {model} \
             to turn {width}x{height} into them: write size (512, 1K, 2K or 4K) and aspect_ratio, or describe the \
             model in a --models-file"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> Catalog {
        Catalog::built_in()
    }

    fn sent(model: &str, size: &str, ratio: Option<&str>, policy: SizePolicy) -> Result<String, String> {
        let c = cat();
        let dialect = c.lookup(model).map_or(Dialect::Openai, |m| m.dialect);
        c.resolve(dialect, model, size.parse().unwrap(), ratio.and_then(AspectRatio::parse), policy)
            .map(|w| w.to_string())
    }

    #[test]
    fn the_built_in_catalogue_parses_and_names_one_default_per_dialect() {
        let c = cat();
        assert!(c.default_model(Dialect::Openai).is_some());
        assert!(c.default_model(Dialect::Gemini).is_some());
        for m in &c.models {
            assert!(!m.source.is_empty() && is_date(&m.as_of), "{} needs a source and an as_of date", m.name);
            if m.status != Status::Active {
                assert!(m.date.is_some(), "{} is {:?} without a date", m.name, m.status);
            }
        }
    }

    #[test]
    fn free_sizes_follow_the_limits() {
        let e = SizePolicy::Exact;
        let model = cat().default_model(Dialect::Openai).unwrap().to_owned();
        assert_eq!(sent(&model, "1K", None, e).unwrap(), "1024x1024");
        assert_eq!(sent(&model, "2K", None, e).unwrap(), "2048x2048");
        assert_eq!(sent(&model, "4K", None, e).unwrap(), "2880x2880");
        assert_eq!(sent(&model, "4K", Some("16:9"), e).unwrap(), "3840x2160");
        assert_eq!(sent(&model, "1K", Some("16:9"), e).unwrap(), "1360x768");
        assert_eq!(sent(&model, "4K", Some("21:9"), e).unwrap(), "3840x1648");
        assert_eq!(sent(&model, "1536x1024", None, e).unwrap(), "1536x1024");
        let over = sent(&model, "4096x4096", None, e).unwrap_err();
        assert!(over.contains("longer side must be at most 3840") && over.contains("--size-policy nearest"), "{over}");
        assert_eq!(sent(&model, "4096x4096", None, SizePolicy::Nearest).unwrap(), "2880x2880");
        assert!(sent(&model, "1000x1000", None, e).unwrap_err().contains("divisible by 16"));
        assert!(sent(&model, "1K", Some("1:4"), e).unwrap_err().contains("aspect ratios from 1:3"));
        assert!(sent(&model, "512", None, e).unwrap_err().contains("not 512"));
    }

    #[test]
    fn list_sizes_take_only_their_sizes() {
        let e = SizePolicy::Exact;
        assert_eq!(sent("gpt-image-1.5", "1K", Some("3:2"), e).unwrap(), "1536x1024");
        assert_eq!(sent("gpt-image-1.5", "1K", None, e).unwrap(), "1024x1024");
        let err = sent("gpt-image-1.5", "2K", None, e).unwrap_err();
        assert!(err.contains("renders only 1024x1024 1536x1024 1024x1536, not 2K at 1:1"), "{err}");
        assert_eq!(sent("gpt-image-1.5", "2048x2048", None, SizePolicy::Nearest).unwrap(), "1024x1024");
        assert_eq!(sent("gpt-image-1.5", "2K", Some("16:9"), SizePolicy::Nearest).unwrap(), "1536x1024");
        assert_eq!(sent("nano-banana-pro", "4K", None, e).unwrap(), "4096x4096");
        assert!(sent("nano-banana-pro", "2K", Some("16:9"), e).is_err());
    }

    #[test]
    fn gemini_sizes_are_a_class_and_a_ratio() {
        let e = SizePolicy::Exact;
        assert_eq!(sent("gemini-3-pro-image", "2K", Some("16:9"), e).unwrap(), "2K 16:9");
        assert_eq!(sent("gemini-3-pro-image", "1K", None, e).unwrap(), "1K 1:1");
        assert_eq!(sent("gemini-3-pro-image", "2752x1536", None, e).unwrap(), "2K 16:9");
        let err = sent("gemini-3-pro-image", "2000x1000", None, e).unwrap_err();
        assert!(
            err.contains("none of its sizes") && err.contains("size 1K with aspect_ratio 16:9 (1376x768)"),
            "{err}"
        );
        assert!(sent("gemini-3-pro-image", "512", None, e).unwrap_err().contains("imageSize 1K 2K 4K, not 512"));
        assert!(sent("gemini-3-pro-image", "1K", Some("1:8"), e).unwrap_err().contains("not 1:8"));
        assert_eq!(sent("gemini-3-pro-image", "1K", Some("1:8"), SizePolicy::Nearest).unwrap(), "1K 9:16");
        assert_eq!(sent("gemini-3.1-flash-image", "512", Some("1:8"), e).unwrap(), "512 1:8");
        assert_eq!(sent("gemini-3.1-flash-image", "4K", Some("4:1"), e).unwrap(), "4K 4:1");
        assert!(sent("gemini-3-pro-image", "1024x1024", Some("16:9"), e).unwrap_err().contains("disagree"));
    }

    #[test]
    fn unknown_models_are_sent_what_the_row_gives() {
        let c = cat();
        let r = |d, s: &str, a| c.resolve(d, "my-model", s.parse().unwrap(), a, SizePolicy::Exact);
        assert_eq!(r(Dialect::Openai, "1000x700", None).unwrap().to_string(), "1000x700");
        assert_eq!(r(Dialect::Openai, "2K", None).unwrap().to_string(), "2048x2048");
        assert_eq!(r(Dialect::Gemini, "2K", AspectRatio::parse("5:4")).unwrap().to_string(), "2K 5:4");
        assert!(r(Dialect::Gemini, "1000x700", None).unwrap_err().contains("--models-file"));
    }

    #[test]
    fn prompt_limits_are_data_gpt_image_models_32000_characters_and_gemini_none() {
        let c = Catalog::built_in();
        for m in c.models.iter().filter(|m| m.name.contains("image") && m.status != Status::Shutdown) {
            let want = (m.dialect == Dialect::Openai).then_some(32000);
            assert_eq!(m.max_prompt_chars, want, "{}", m.name);
            if want.is_some() {
                assert!(m.source.contains("32000 characters"), "{} names no source for its prompt limit", m.name);
            }
        }
        let toml = "[[model]]\nname = \"x\"\ndialect = \"openai\"\nsizes = { kind = \"list\", sizes = [\"1024x1024\"] }\n\
                    source = \"s\"\nas_of = \"2026-11-24\"\nmax_prompt_chars = ";
        assert_eq!(Catalog::parse(&format!("{toml}500\n"), "t").unwrap().models[0].max_prompt_chars, Some(500));
        let err = Catalog::parse(&format!("{toml}0\n"), "t").unwrap_err();
        assert!(err.contains("max_prompt_chars must be above 0"), "{err}");
    }

    #[test]
    fn models_files_add_and_override_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.toml");
        std::fs::write(
            &path,
            r#"
[[model]]
name = "my-relay-model"
dialect = "openai"
default = true
sizes = { kind = "list", sizes = ["1024x1024"] }
response_format = true
source = "our relay's docs"
as_of = "2026-11-20"

[[model]]
name = "gpt-image-1.5"
dialect = "openai"
status = "active"
sizes = { kind = "list", sizes = ["1024x1024", "2048x2048"] }
source = "a test"
as_of = "2026-11-24"
"#,
        )
        .unwrap();
        let c = Catalog::load(Some(&path)).unwrap();
        assert_eq!(c.default_model(Dialect::Openai), Some("my-relay-model"));
        assert!(c.lookup("my-relay-model").unwrap().response_format);
        assert_eq!(c.lookup("gpt-image-1.5").unwrap().status, Status::Active);
        assert_eq!(c.models.len(), cat().models.len() + 1);
        std::fs::write(
            &path,
            "[[model]]\nname = \"x\"\ndialect = \"openai\"\nsource = \"s\"\nas_of = \"2026-01-01\"\n",
        )
        .unwrap();
        let err = Catalog::load(Some(&path)).unwrap_err();
        assert!(err.contains("models.toml") && err.contains("needs `sizes`"), "{err}");
        std::fs::write(&path, "[[model]]\nname = \"x\"\ncolour = \"red\"\n").unwrap();
        assert!(Catalog::load(Some(&path)).unwrap_err().contains("colour"));
    }

    #[test]
    fn every_active_image_model_describes_its_references() {
        let c = cat();
        for m in c.models.iter().filter(|m| m.status != Status::Shutdown) {
            assert!(m.max_reference_images.is_some(), "{} needs max_reference_images", m.name);
            assert!(!m.reference_formats.is_empty(), "{} needs reference_formats", m.name);
            assert!(m.max_reference_bytes.is_some(), "{} needs max_reference_bytes", m.name);
        }
        let gpt = c.reference_rules(Dialect::Openai, "gpt-image-2");
        assert_eq!((gpt.max_images, gpt.max_bytes, gpt.mask), (Some(16), Some(50_000_000), true));
        assert!(gpt.takes_format("png") && gpt.takes_format("jpeg") && gpt.takes_format("webp"));
        let pro = c.reference_rules(Dialect::Gemini, "gemini-3-pro-image");
        assert_eq!((pro.max_images, pro.mask), (Some(14), false));
        // An aggregator serving a GPT image model in the gemini dialect: no mask.
        assert!(!c.reference_rules(Dialect::Gemini, "gpt-image-2").mask);
        let unknown = c.reference_rules(Dialect::Openai, "my-model");
        assert_eq!((unknown.known, unknown.max_images, unknown.max_bytes, unknown.mask), (false, None, None, true));
        assert!(unknown.takes_format("webp"));
        assert!(!c.reference_rules(Dialect::Gemini, "my-model").mask);
        let text = c.render_text();
        assert!(text.contains("reference images: up to 16 (png jpeg webp, each up to 50 MB); edit mask"), "{text}");
        assert!(text.contains("reference images: up to 14 (png jpeg webp, each up to 100 MB); online"), "{text}");
    }

    #[test]
    fn models_files_set_reference_fields_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.toml");
        let entry = |extra: &str| {
            format!(
                "[[model]]\nname = \"relay\"\ndialect = \"openai\"\nsizes = {{ kind = \"list\", sizes = \
                 [\"1024x1024\"] }}\nsource = \"s\"\nas_of = \"2026-11-24\"\n{extra}"
            )
        };
        std::fs::write(
            &path,
            entry("max_reference_images = 3\nreference_formats = [\"png\"]\nmax_reference_bytes = 1000\nmask = true\n"),
        )
        .unwrap();
        let c = Catalog::load(Some(&path)).unwrap();
        let r = c.reference_rules(Dialect::Openai, "relay");
        assert_eq!((r.max_images, r.max_bytes, r.mask), (Some(3), Some(1000), true));
        assert!(r.takes_format("png") && !r.takes_format("webp"));
        for (extra, want) in [
            ("reference_formats = [\"gif\"]\n", "reference_formats has \"gif\""),
            ("max_reference_bytes = 0\n", "max_reference_bytes = 0"),
            ("max_reference_bytes = -5\n", "max_reference_bytes"),
            ("max_reference_images = -1\n", "max_reference_images"),
            ("mask = \"yes\"\n", "mask"),
        ] {
            std::fs::write(&path, entry(extra)).unwrap();
            let err = Catalog::load(Some(&path)).unwrap_err();
            assert!(err.contains("models.toml") && err.contains(want), "{extra}: {err}");
        }
        std::fs::write(
            &path,
            "[[model]]\nname = \"g\"\ndialect = \"gemini\"\nmask = true\nsizes = { kind = \"gemini\", classes = \
             [\"1K\"], ratios = [\"1:1\"] }\nsource = \"s\"\nas_of = \"2026-11-24\"\n",
        )
        .unwrap();
        let err = Catalog::load(Some(&path)).unwrap_err();
        assert!(err.contains("the gemini dialect has no edit mask"), "{err}");
    }

    #[test]
    fn lookups_find_aliases_and_vendor_prefixes_and_close_names() {
        let c = cat();
        assert_eq!(c.lookup("gpt-image-2-2026-04-21").unwrap().name, "gpt-image-2");
        assert_eq!(c.lookup("google/gemini-3-pro-image").unwrap().name, "gemini-3-pro-image");
        assert_eq!(c.lookup("models/gemini-3-pro-image").unwrap().name, "gemini-3-pro-image");
        assert!(c.lookup("nonesuch").is_none());
        let close = Catalog::close_names("gemini-3-pro-imag", ["gemini-3-pro-image", "gpt-image-2", "whisper-1"]);
        assert_eq!(close, vec!["gemini-3-pro-image"]);
    }

    #[test]
    fn dates_and_shutdowns() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_781), "2026-11-24");
        let c = cat();
        let deprecated = c.lookup("gpt-image-1.5").unwrap();
        assert!(!deprecated.is_shut_down("2026-11-24"));
        assert!(deprecated.is_shut_down("2026-12-01"));
        assert!(c.lookup("gpt-image-1").unwrap().is_shut_down("2026-11-24"));
    }
}
