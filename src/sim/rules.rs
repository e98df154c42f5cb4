//! What the simulated providers accept, and how they refuse the rest: read from
//! `tests/sdk/fixtures.json`, which `tests/sdk/generate.py` extracts from the official SDKs
//! (plus a hand-written, sourced section for what the SDKs do not carry).
//!
//! These rules deliberately share nothing with bulkgen's own model catalogue or size
//! tables: if bulkgen's knowledge is wrong, the simulator refuses like the real API would
//! and a test fails, instead of both agreeing on the same mistake.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;

const FIXTURES_JSON: &str = include_str!("../../tests/sdk/fixtures.json");

/// The fixtures, parsed once.
pub static FIXTURES: LazyLock<Fixtures> =
    LazyLock::new(|| Fixtures::parse(FIXTURES_JSON).unwrap_or_else(|e| panic!("tests/sdk/fixtures.json: {e}")));

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Openai,
    Gemini,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Deprecated,
    Shutdown,
}

/// The sizes an OpenAI-dialect model renders.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SizeRule {
    /// Free `WIDTHxHEIGHT` within limits (gpt-image-2 and later).
    Free { multiple_of: u32, ratio_max: f64, max_edge: u32, max_pixels: u64, min_pixels: u64, auto: bool },
    /// A fixed list (gpt-image-1.x, aggregators).
    List { values: Vec<String>, auto: bool },
}

/// One model the fixtures know, with what it accepts.
#[derive(Debug, Clone, Deserialize)]
pub struct Model {
    pub id: String,
    pub dialect: Dialect,
    pub status: Status,
    /// Served by default (active, or deprecated but not yet shut down).
    pub served: bool,
    pub shutdown: Option<String>,
    #[serde(default)]
    pub aggregator: bool,
    #[serde(default)]
    pub owned_by: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub sizes: Option<SizeRule>,
    /// OpenAI dialect: the `response_format` values taken; `None`: the parameter is
    /// unknown to the model (GPT image models).
    #[serde(default)]
    pub response_format: Option<Vec<String>>,
    #[serde(default)]
    pub quality: Option<Vec<String>>,
    /// Gemini dialect: `imageConfig.imageSize` values taken.
    #[serde(default)]
    pub image_sizes: Option<Vec<String>>,
    /// Gemini dialect: `imageConfig.aspectRatio` values taken.
    #[serde(default)]
    pub aspect_ratios: Option<Vec<String>>,
    /// Takes `/v1/images/edits` (OpenAI dialect).
    #[serde(default)]
    pub edits: bool,
    /// Reference images a request may carry (edit images, or Gemini image parts).
    #[serde(default)]
    pub max_reference_images: usize,
    /// MIME types of the references taken.
    #[serde(default)]
    pub reference_formats: Vec<String>,
    /// Bytes per reference file (OpenAI edit image; Gemini Files API upload).
    #[serde(default)]
    pub max_reference_bytes: Option<u64>,
    /// Gemini: bytes of a whole request (inline references included).
    #[serde(default)]
    pub max_request_bytes: Option<u64>,
    /// The edit mask taken, if any.
    #[serde(default)]
    pub mask: Option<MaskRule>,
}

/// What an edit's mask must be.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MaskRule {
    pub formats: Vec<String>,
    pub max_bytes: u64,
}

/// The Files API's limits (`hand_written.references`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileLimits {
    pub max_bytes: u64,
    pub ttl_hours: u64,
    /// The largest inline request any Gemini model takes.
    pub max_request_bytes: u64,
}

/// A refusal: the HTTP status and the provider's JSON error body.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub body: Value,
}

/// The Batch APIs' rules and OpenAI's Files API limits (fixtures `batch`): extracted from
/// the SDKs, plus the sourced hand-written facts in `batch.hand_written`.
#[derive(Debug)]
pub struct BatchRules {
    /// `BatchCreateParams.endpoint` literals.
    pub openai_endpoints: Vec<String>,
    /// `BatchCreateParams.completion_window` literals (`24h`).
    pub openai_windows: Vec<String>,
    /// Metadata: pairs, key characters, value characters (the docstring).
    pub metadata_max_pairs: usize,
    pub metadata_max_key_chars: usize,
    pub metadata_max_value_chars: usize,
    /// Requests and bytes an input file may hold (50,000; 200 MB).
    pub openai_max_requests: u64,
    pub openai_max_input_bytes: u64,
    /// `Batch.status` literals.
    pub openai_statuses: Vec<String>,
    /// `batches.list` limit: least, most, default.
    pub openai_list_limit: (usize, usize, usize),
    /// How long `cancelling` lasts at most (the cancel docstring).
    pub openai_cancelling_max_minutes: u64,
    /// `FilePurpose` literals (what an upload may say).
    pub file_purposes: Vec<String>,
    /// The largest file `files.create` takes (512 MB).
    pub openai_file_max_bytes: u64,
    /// Batch input files expire after this many days.
    pub openai_batch_file_ttl_days: u64,
    /// `t_job_state`: the REST names (`BATCH_STATE_*`) and the SDK's (`JOB_STATE_*`).
    pub gemini_state_names: Vec<(String, String)>,
    pub gemini_expiry_hours: u64,
    pub gemini_max_concurrent_jobs: u64,
    pub gemini_input_max_bytes: u64,
    /// ListBatches page size when none is asked, and the most (invented, marked so).
    pub gemini_list_page: (usize, usize),
    /// The per-line errors of an expired or cancelled OpenAI batch (`{code, message}`).
    pub openai_expired_line_error: Value,
    pub openai_cancelled_line_error: Value,
    /// Input-file validation messages by code, with `{var}`s.
    openai_validation: Value,
    /// Error bodies and job errors (`batch.hand_written.errors`).
    errors: Value,
}

impl BatchRules {
    fn parse(v: &Value) -> Result<BatchRules, String> {
        let oa = &v["openai"];
        let gm = &v["gemini"];
        let hw = &v["hand_written"];
        let list = |x: &Value, what: &str| {
            x["values"]
                .as_array()
                .map(|a| strings(a))
                .filter(|l| !l.is_empty())
                .ok_or(format!("batch.{what} is missing"))
        };
        let num = |x: &Value, what: &str| x.as_u64().ok_or(format!("batch.{what} is missing"));
        let openai_endpoints = list(&oa["endpoints"], "openai.endpoints")?;
        for needed in ["/v1/images/generations", "/v1/images/edits"] {
            if !openai_endpoints.iter().any(|e| e == needed) {
                return Err(format!("batch.openai.endpoints lacks {needed}"));
            }
        }
        let states = gm["state_names"]["rest_to_sdk"]
            .as_array()
            .ok_or("batch.gemini.state_names is missing")?
            .iter()
            .filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].as_str()?.to_owned())))
            .collect::<Vec<_>>();
        let limit = &oa["list_limit"];
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let rules = BatchRules {
            openai_windows: list(&oa["completion_windows"], "openai.completion_windows")?,
            metadata_max_pairs: as_usize(num(&oa["metadata"]["max_pairs"], "openai.metadata.max_pairs")?),
            metadata_max_key_chars: as_usize(num(&oa["metadata"]["max_key_chars"], "openai.metadata.max_key_chars")?),
            metadata_max_value_chars: as_usize(num(
                &oa["metadata"]["max_value_chars"],
                "openai.metadata.max_value_chars",
            )?),
            openai_max_requests: num(&oa["input_file"]["max_requests"], "openai.input_file.max_requests")?,
            openai_max_input_bytes: num(&oa["input_file"]["max_bytes"], "openai.input_file.max_bytes")?,
            openai_statuses: list(&oa["statuses"], "openai.statuses")?,
            openai_list_limit: (
                as_usize(num(&limit["min"], "openai.list_limit.min")?),
                as_usize(num(&limit["max"], "openai.list_limit.max")?),
                as_usize(num(&limit["default"], "openai.list_limit.default")?),
            ),
            openai_cancelling_max_minutes: num(
                &oa["cancelling_max_minutes"]["value"],
                "openai.cancelling_max_minutes",
            )?,
            file_purposes: list(&oa["file_purposes"], "openai.file_purposes")?,
            openai_file_max_bytes: num(&oa["file_max_bytes"]["value"], "openai.file_max_bytes")?,
            openai_batch_file_ttl_days: num(&oa["batch_file_ttl_days"]["value"], "openai.batch_file_ttl_days")?,
            gemini_state_names: states,
            gemini_expiry_hours: num(&hw["gemini_expiry_hours"], "hand_written.gemini_expiry_hours")?,
            gemini_max_concurrent_jobs: num(
                &hw["gemini_max_concurrent_jobs"],
                "hand_written.gemini_max_concurrent_jobs",
            )?,
            gemini_input_max_bytes: num(&hw["gemini_input_max_bytes"], "hand_written.gemini_input_max_bytes")?,
            gemini_list_page: (
                as_usize(num(&hw["gemini_list_page_default"], "hand_written.gemini_list_page_default")?),
                as_usize(num(&hw["gemini_list_page_max"], "hand_written.gemini_list_page_max")?),
            ),
            openai_expired_line_error: hw["openai_expired_line_error"].clone(),
            openai_cancelled_line_error: hw["openai_cancelled_line_error"].clone(),
            openai_validation: hw["openai_validation_errors"].clone(),
            errors: hw["errors"].clone(),
            openai_endpoints,
        };
        for state in ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"] {
            rules.gemini_state(state, true);
        }
        for status in
            ["validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled"]
        {
            if !rules.openai_statuses.iter().any(|s| s == status) {
                return Err(format!("batch.openai.statuses lacks {status}"));
            }
        }
        for name in [
            "openai_file_too_large",
            "openai_batch_not_jsonl",
            "openai_metadata_too_many",
            "openai_metadata_too_long",
            "openai_no_such_file",
            "openai_no_such_batch",
            "openai_batch_wrong_purpose",
            "openai_cannot_cancel",
            "gemini_batch_quota",
            "gemini_download_uploaded",
            "gemini_no_such_batch",
        ] {
            if !rules.errors[name]["body"].is_object() {
                return Err(format!("batch.hand_written.errors.{name} is missing"));
            }
        }
        for name in [
            "openai_queue_full",
            "openai_job_failed",
            "gemini_job_bad_input",
            "gemini_job_failed",
            "gemini_job_cancelled",
        ] {
            if rules.errors[name]["message"].as_str().is_none() {
                return Err(format!("batch.hand_written.errors.{name} is missing"));
            }
        }
        Ok(rules)
    }

    /// A Gemini batch state (`PENDING`, `RUNNING`, ...) as the REST API spells it
    /// (`BATCH_STATE_PENDING`) or as the SDK and docs do (`JOB_STATE_PENDING`).
    pub fn gemini_state(&self, state: &str, rest: bool) -> &str {
        let (r, sdk) = self
            .gemini_state_names
            .iter()
            .find(|(r, _)| r.strip_prefix("BATCH_STATE_") == Some(state))
            .unwrap_or_else(|| panic!("tests/sdk/fixtures.json: t_job_state knows no BATCH_STATE_{state}"));
        if rest { r } else { sdk }
    }

    /// A refusal of the Batch or Files API by its name in `batch.hand_written.errors`.
    pub fn error(&self, name: &str, vars: &[(&str, &str)]) -> Refusal {
        let e = &self.errors[name];
        let status = e["status"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(400);
        Refusal { status, body: fill(&e["body"], vars) }
    }

    /// A job's own error (`{code, message}`) by its name in `batch.hand_written.errors`.
    pub fn job_error(&self, name: &str, vars: &[(&str, &str)]) -> Value {
        let e = &self.errors[name];
        let mut out = serde_json::Map::new();
        out.insert("code".into(), e["code"].clone());
        out.insert("message".into(), fill(&e["message"], vars));
        Value::Object(out)
    }

    /// An input-file validation message by its code, `{var}`s filled.
    pub fn validation_message(&self, code: &str, vars: &[(&str, &str)]) -> String {
        fill(&self.openai_validation[code], vars).as_str().unwrap_or(code).to_owned()
    }
}

#[derive(Debug)]
pub struct Fixtures {
    pub models: Vec<Model>,
    /// `(package, version)` of the SDKs the fixtures were made with.
    pub sdk_versions: Vec<(String, String)>,
    /// OpenAI parameters whose values the SDK gives as a Literal, checked for GPT image
    /// models: `(parameter, values)`.
    pub openai_enums: Vec<(String, Vec<String>)>,
    /// `n`, the images one OpenAI request may ask for: least and most (the SDK's
    /// docstring, "Must be between 1 and 10").
    pub openai_n: (u64, u64),
    /// The error-body templates (`hand_written.errors`).
    errors: Value,
    pub files: FileLimits,
    pub batch: BatchRules,
}

impl Fixtures {
    pub fn parse(json: &str) -> Result<Fixtures, String> {
        let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let models: Vec<Model> = serde_json::from_value(v["models"].clone()).map_err(|e| format!("models: {e}"))?;
        let sdk_versions = v["sdk"]
            .as_object()
            .ok_or("no sdk section")?
            .iter()
            .map(|(name, s)| (name.clone(), s["version"].as_str().unwrap_or_default().to_owned()))
            .collect();
        let openai_enums = v["openai"]["enums"]
            .as_object()
            .ok_or("no openai.enums section")?
            .iter()
            .map(|(name, e)| {
                let values = e["values"].as_array().map(|a| strings(a)).unwrap_or_default();
                (name.clone(), values)
            })
            .collect();
        let errors = v["hand_written"]["errors"].clone();
        for name in [
            "openai_unknown_parameter",
            "openai_invalid_value",
            "openai_model_not_found",
            "gemini_invalid_field",
            "gemini_not_found",
            "gemini_file_gone",
            "gemini_unsupported_mime",
            "gemini_invalid_image",
            "gemini_too_many_images",
            "gemini_request_too_large",
            "openai_unsupported_mimetype",
            "openai_invalid_image_file",
            "openai_too_many_images",
            "openai_file_too_large",
            "openai_invalid_mask",
            "openai_missing_parameter",
            "request_too_large",
        ] {
            if !errors[name]["body"].is_object() {
                return Err(format!("hand_written.errors.{name} is missing"));
            }
        }
        let refs = &v["hand_written"]["references"];
        let number = |name: &str| refs[name].as_u64().ok_or(format!("hand_written.references.{name} is missing"));
        let files = FileLimits {
            max_bytes: number("gemini_file_max_bytes")?,
            ttl_hours: number("gemini_file_ttl_hours")?,
            max_request_bytes: number("gemini_inline_request_max_bytes")?,
        };
        let batch = BatchRules::parse(&v["batch"])?;
        let n = &v["openai"]["n"];
        let openai_n = match (n["min"].as_u64(), n["max"].as_u64()) {
            (Some(min), Some(max)) if min <= max => (min, max),
            _ => return Err("openai.n needs min <= max".into()),
        };
        Ok(Fixtures { models, sdk_versions, openai_enums, openai_n, errors, files, batch })
    }

    pub fn model(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.id == id)
    }

    /// What a simulator serves when not told otherwise: every active or
    /// deprecated-but-not-yet-shut-down model, and the aggregator's names.
    pub fn default_served(&self) -> Vec<String> {
        self.models.iter().filter(|m| m.served).map(|m| m.id.clone()).collect()
    }

    fn error(&self, name: &str, vars: &[(&str, &str)]) -> Refusal {
        let e = &self.errors[name];
        let status = e["status"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(400);
        Refusal { status, body: fill(&e["body"], vars) }
    }

    pub fn openai_not_found(&self, model: &str) -> Refusal {
        self.error("openai_model_not_found", &[("model", model)])
    }

    pub fn gemini_not_found(&self, model: &str, version: &str) -> Refusal {
        self.error("gemini_not_found", &[("model", model), ("version", version)])
    }

    /// 403: a `fileData` part or `files.get` naming a file that is gone (or never was).
    pub fn gemini_file_gone(&self, id: &str) -> Refusal {
        self.error("gemini_file_gone", &[("id", id)])
    }

    pub fn gemini_unsupported_mime(&self, mime: &str) -> Refusal {
        self.error("gemini_unsupported_mime", &[("mime", mime)])
    }

    pub fn gemini_invalid_image(&self) -> Refusal {
        self.error("gemini_invalid_image", &[])
    }

    pub fn gemini_too_many_images(&self) -> Refusal {
        self.error("gemini_too_many_images", &[])
    }

    pub fn gemini_request_too_large(&self, limit: u64) -> Refusal {
        self.error("gemini_request_too_large", &[("limit", &limit.to_string())])
    }

    /// A file part whose declared type is not taken; `allowed` as MIME types.
    pub fn openai_unsupported_mimetype(&self, param: &str, mime: &str, allowed: &[String]) -> Refusal {
        let list = quoted_list(allowed.iter().map(String::as_str), "and");
        self.error("openai_unsupported_mimetype", &[("param", param), ("mime", mime), ("list", &list)])
    }

    /// Bytes that are not an image of a taken format; `index` counts from 1.
    pub fn openai_invalid_image_file(&self, index: usize) -> Refusal {
        self.error("openai_invalid_image_file", &[("index", &index.to_string())])
    }

    pub fn openai_too_many_images(&self, max: usize, got: usize) -> Refusal {
        self.error("openai_too_many_images", &[("max", &max.to_string()), ("got", &got.to_string())])
    }

    pub fn openai_file_too_large(&self, param: &str, got: u64, max: u64) -> Refusal {
        self.error("openai_file_too_large", &[("param", param), ("got", &got.to_string()), ("max", &max.to_string())])
    }

    pub fn openai_invalid_mask(&self) -> Refusal {
        self.error("openai_invalid_mask", &[])
    }

    pub fn openai_missing_parameter(&self, param: &str) -> Refusal {
        self.error("openai_missing_parameter", &[("param", param)])
    }

    pub fn openai_unknown_parameter(&self, param: &str) -> Refusal {
        self.error("openai_unknown_parameter", &[("param", param)])
    }

    /// An edit on a model that takes none (a Gemini model behind an OpenAI-shaped root):
    /// the invalid-value body naming the model (the reason's text is the simulator's).
    pub fn openai_edits_unsupported(&self, model: &str) -> Refusal {
        self.openai_invalid("model", model, "This model does not support image edits.")
    }

    /// The simulator's own bound on a request body (413).
    pub fn request_too_large(&self, limit: u64) -> Refusal {
        self.error("request_too_large", &[("limit", &limit.to_string())])
    }

    pub fn openai_invalid(&self, param: &str, value: &str, why: &str) -> Refusal {
        self.error("openai_invalid_value", &[("param", param), ("value", value), ("why", why)])
    }

    pub fn openai_invalid_choice(&self, param: &str, value: &str, allowed: &[String]) -> Refusal {
        let list = quoted_list(allowed.iter().map(String::as_str), "and");
        let why = self.errors["openai_invalid_value"]["why_fixed_list"]
            .as_str()
            .unwrap_or("Supported values are: {list}.")
            .replace("{list}", &list);
        self.openai_invalid(param, value, &why)
    }

    /// An OpenAI-dialect generation body checked against what `model` takes. Models the
    /// fixtures do not know (a test's `primary`/`backup`), and Gemini models behind
    /// Google's OpenAI-compatible root, are let through.
    pub fn check_openai(&self, model: Option<&Model>, body: &Value) -> Result<(), Refusal> {
        let field = |name: &str| body.get(name).filter(|v| !v.is_null());
        if let Some(n) = field("n") {
            // A number in JSON, text in an edit's multipart form.
            let value = n.as_u64().or_else(|| n.as_str().and_then(|t| t.parse().ok()));
            let (min, max) = self.openai_n;
            if !value.is_some_and(|v| (min..=max).contains(&v)) {
                return Err(self.openai_invalid("n", &text_of(n), &format!("Must be between {min} and {max}.")));
            }
        }
        let Some(m) = model.filter(|m| m.dialect == Dialect::Openai) else { return Ok(()) };
        if let Some(rf) = field("response_format") {
            match &m.response_format {
                None => return Err(self.error("openai_unknown_parameter", &[("param", "response_format")])),
                Some(allowed) => {
                    let value = text_of(rf);
                    if !allowed.contains(&value) {
                        return Err(self.openai_invalid_choice("response_format", &value, allowed));
                    }
                }
            }
        }
        if let (Some(size), Some(rule)) = (field("size"), &m.sizes) {
            let value = text_of(size);
            match rule {
                SizeRule::List { values, auto } => {
                    let ok = values.contains(&value) || (*auto && value == "auto");
                    if !ok {
                        let mut allowed = values.clone();
                        if *auto {
                            allowed.push("auto".into());
                        }
                        return Err(self.openai_invalid_choice("size", &value, &allowed));
                    }
                }
                SizeRule::Free { .. } => {
                    if let Err(why) = free_size(rule, &value) {
                        return Err(self.openai_invalid("size", &value, &why));
                    }
                }
            }
        }
        if let (Some(q), Some(allowed)) = (field("quality"), &m.quality) {
            let value = text_of(q);
            if !allowed.contains(&value) {
                return Err(self.openai_invalid_choice("quality", &value, allowed));
            }
        }
        if m.response_format.is_none() {
            // Documented enums of the GPT image models (the SDK's Literal values).
            for (name, allowed) in &self.openai_enums {
                if let Some(v) = field(name) {
                    let value = text_of(v);
                    if !allowed.contains(&value) {
                        return Err(self.openai_invalid_choice(name, &value, allowed));
                    }
                }
            }
        }
        Ok(())
    }

    /// A Gemini `generateContent` body checked against what `model` takes:
    /// `imageConfig.imageSize` and `imageConfig.aspectRatio`. The REST API reads both the
    /// camelCase and the snake_case spelling of a field.
    pub fn check_gemini(&self, model: Option<&Model>, body: &Value) -> Result<(), Refusal> {
        let Some(m) = model.filter(|m| m.dialect == Dialect::Gemini) else { return Ok(()) };
        let config = either(body, "generationConfig", "generation_config")
            .and_then(|g| either(g, "imageConfig", "image_config"));
        let Some(config) = config else { return Ok(()) };
        let checks = [("image_size", "imageSize", &m.image_sizes), ("aspect_ratio", "aspectRatio", &m.aspect_ratios)];
        for (snake, camel, allowed) in checks {
            let (Some(v), Some(allowed)) = (either(config, camel, snake), allowed) else { continue };
            let value = text_of(v);
            if !allowed.contains(&value) {
                let list = quoted_list(allowed.iter().map(String::as_str), "or");
                return Err(self.error("gemini_invalid_field", &[("field", snake), ("list", &list)]));
            }
        }
        Ok(())
    }
}

/// Why a free `WIDTHxHEIGHT` size is refused, if it is.
fn free_size(rule: &SizeRule, value: &str) -> Result<(), String> {
    let SizeRule::Free { multiple_of, ratio_max, max_edge, max_pixels, min_pixels, auto } = *rule else {
        return Ok(());
    };
    if value == "auto" {
        return if auto { Ok(()) } else { Err("This model does not support 'auto'.".into()) };
    }
    let Some((w, h)) = parse_wxh(value) else {
        return Err("Size must be 'auto' or a string of the form WIDTHxHEIGHT, for example '1536x864'.".into());
    };
    if w == 0 || h == 0 || w % multiple_of != 0 || h % multiple_of != 0 {
        return Err(format!("Width and height must both be divisible by {multiple_of}."));
    }
    let (long, short) = (w.max(h), w.min(h));
    if f64::from(long) / f64::from(short) > ratio_max + 1e-9 {
        return Err(format!("The aspect ratio must be between 1:{ratio_max} and {ratio_max}:1."));
    }
    if long > max_edge {
        return Err(format!("The longest edge must be at most {max_edge} pixels."));
    }
    let pixels = u64::from(w) * u64::from(h);
    if pixels < min_pixels || pixels > max_pixels {
        return Err(format!(
            "The total pixel count must be between {min_pixels} and {max_pixels}; {value} has {pixels}."
        ));
    }
    Ok(())
}

/// `WIDTHxHEIGHT` with decimal digits and a lower-case `x`, as the API documents it.
pub fn parse_wxh(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.split_once('x')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(w) || !digits(h) {
        return None;
    }
    Some((w.parse().ok()?, h.parse().ok()?))
}

fn either<'a>(v: &'a Value, a: &str, b: &str) -> Option<&'a Value> {
    v.get(a).or_else(|| v.get(b)).filter(|x| !x.is_null())
}

/// A value as the API quotes it back: strings bare, anything else as JSON.
fn text_of(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}

fn strings(a: &[Value]) -> Vec<String> {
    a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()
}

/// `'a', 'b', and 'c'` (OpenAI) or `'a', 'b', or 'c'` (Gemini).
fn quoted_list<'a>(items: impl Iterator<Item = &'a str>, last: &str) -> String {
    let quoted: Vec<String> = items.map(|s| format!("'{s}'")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} {last} {b}"),
        [init @ .., tail] => format!("{}, {last} {tail}", init.join(", ")),
    }
}

/// The template with every `{name}` in its strings replaced.
fn fill(template: &Value, vars: &[(&str, &str)]) -> Value {
    match template {
        Value::String(s) => {
            let mut out = s.clone();
            for (k, v) in vars {
                out = out.replace(&format!("{{{k}}}"), v);
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, vars)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), fill(x, vars))).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f() -> &'static Fixtures {
        &FIXTURES
    }

    #[test]
    fn the_fixtures_parse_and_know_the_models_of_the_brief() {
        for id in ["gpt-image-2", "gpt-image-1.5", "gemini-3-pro-image", "gemini-3.1-flash-image", "nano-banana-pro"] {
            assert!(f().default_served().contains(&id.to_owned()), "{id} served by default");
        }
        for id in ["gpt-image-1", "dall-e-3", "gemini-3-pro-image-preview", "gemini-2.5-flash-image"] {
            assert!(f().model(id).is_some(), "{id} known");
            assert!(!f().default_served().contains(&id.to_owned()), "{id} is shut down");
        }
    }

    #[test]
    fn free_sizes_follow_the_docstring_rules() {
        let rule = f().model("gpt-image-2").and_then(|m| m.sizes.clone()).expect("gpt-image-2 sizes");
        for ok in ["1536x1024", "3840x2160", "2160x3840", "1024x1024", "2048x2048", "auto", "1536x864"] {
            assert_eq!(free_size(&rule, ok), Ok(()), "{ok}");
        }
        for bad in ["4096x4096", "1000x1000", "3840x1008", "512x512", "1024X1024", "big", "0x0"] {
            assert!(free_size(&rule, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn n_is_taken_within_the_sdks_range_as_a_number_or_form_text() {
        assert_eq!(f().openai_n, (1, 10));
        let m = f().model("gpt-image-2");
        for ok in [json!({"n": 1}), json!({"n": 10}), json!({"n": "4"}), json!({})] {
            assert_eq!(f().check_openai(m, &ok), Ok(()), "{ok}");
        }
        for bad in [json!({"n": 0}), json!({"n": 11}), json!({"n": "two"}), json!({"n": 2.5})] {
            let r = f().check_openai(m, &bad).unwrap_err();
            assert_eq!((r.status, &r.body["error"]["param"]), (400, &json!("n")), "{bad}");
        }
        // Whatever the model: the range is the endpoint's.
        assert!(f().check_openai(None, &json!({"n": 12})).is_err());
    }

    #[test]
    fn refusals_are_the_real_bodies() {
        let m = f().model("gpt-image-2");
        let r = f().check_openai(m, &json!({"model": "gpt-image-2", "response_format": "url"})).unwrap_err();
        assert_eq!(r.status, 400);
        assert_eq!(
            r.body,
            json!({"error": {"message": "Unknown parameter: 'response_format'.", "type": "invalid_request_error", "param": "response_format", "code": "unknown_parameter"}})
        );
        let r = f().check_openai(f().model("gpt-image-1.5"), &json!({"size": "2048x2048"})).unwrap_err();
        assert_eq!(
            r.body["error"]["message"],
            "Invalid value: '2048x2048'. Supported values are: '1024x1024', '1536x1024', '1024x1536', and 'auto'."
        );
        let r = f().check_gemini(
            f().model("gemini-3-pro-image"),
            &json!({"generationConfig": {"imageConfig": {"imageSize": "512"}}}),
        );
        assert_eq!(
            r.unwrap_err().body["error"]["message"],
            "* GenerateContentRequest.generation_config.image_config.image_size: image_size must be one of '1K', '2K', or '4K'.\n"
        );
    }

    #[test]
    fn batch_rules_come_from_the_sdks() {
        let b = &f().batch;
        assert!(b.openai_endpoints.contains(&"/v1/images/edits".to_owned()));
        assert_eq!(b.openai_windows, ["24h"]);
        assert_eq!((b.metadata_max_pairs, b.metadata_max_key_chars, b.metadata_max_value_chars), (16, 64, 512));
        assert_eq!((b.openai_max_requests, b.openai_max_input_bytes), (50_000, 200 * 1024 * 1024));
        assert_eq!(b.openai_list_limit, (1, 100, 20));
        assert_eq!(b.gemini_state("SUCCEEDED", true), "BATCH_STATE_SUCCEEDED");
        assert_eq!(b.gemini_state("SUCCEEDED", false), "JOB_STATE_SUCCEEDED");
        assert_eq!((b.gemini_expiry_hours, b.gemini_max_concurrent_jobs), (48, 100));
        assert!(b.file_purposes.contains(&"vision".to_owned()));
        assert_eq!(b.validation_message("invalid_json_line", &[]), "This line is not parseable as valid JSON.");
        let r = b.error("openai_metadata_too_many", &[("max", "16"), ("got", "17")]);
        assert_eq!((r.status, &r.body["error"]["param"]), (400, &json!("metadata")));
        assert_eq!(b.job_error("gemini_job_cancelled", &[])["code"], 1);
    }

    #[test]
    fn unknown_models_are_let_through() {
        assert_eq!(f().check_openai(None, &json!({"size": "7x7", "response_format": "url"})), Ok(()));
        assert_eq!(f().check_gemini(None, &json!({"generationConfig": {"imageConfig": {"imageSize": "9K"}}})), Ok(()));
    }
}
