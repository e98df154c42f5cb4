//! OpenAI's Batch API as openai-python 3.54.0 speaks it (tests/sdk/fixtures.json,
//! `batch`): `POST /v1/batches` `{"input_file_id", "endpoint", "completion_window",
//! "metadata"}` answering a Batch (`validating`), `GET /v1/batches/{id}`,
//! `GET /v1/batches?limit=N&after=ID` (a cursor page: `data`, `first_id`, `last_id`,
//! `has_more`), `POST /v1/batches/{id}/cancel`. Result files are served by the Files API
//! ([`super::super::openai_files`]).
//!
//! The create request is checked against the SDK's literals and the metadata docstring (a
//! 400 otherwise); the input file is checked when `validating` ends, as OpenAI does: bad
//! lines fail the batch with `errors.data[]` naming each line. Each line's body is checked
//! by the online rules; a refused body is that line's error (its status and body in the
//! error file), not a failed batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::super::openai_files::Content;
use super::super::refs;
use super::super::rules::{Dialect, FIXTURES, Model, Refusal};
use super::super::wire::{self, Wire};
use super::super::{Shared, prompt_tag};
use super::{Job, LinePlan, NewJob, Outcome, Phase, Plan, RawLine, Results, ok, unix};

const GENERATIONS: &str = "/v1/images/generations";
const EDITS: &str = "/v1/images/edits";
/// What a `data:` image URL is replaced by when its line is kept: its hash, length and
/// kind, never its bytes.
const DATA_MARK: &str = "sim-data:";

/// One line of an uploaded batch file, as kept (`data:` URLs replaced by their hashes).
#[derive(Debug, Clone)]
pub enum InputLine {
    NotJson { line: u64 },
    Request { line: u64, custom_id: Option<String>, method: Option<String>, url: Option<String>, body: Option<Value> },
}

/// `{"custom_id", "method": "POST", "url", "body"}`.
pub fn parse_line((line, raw): RawLine<'_>) -> InputLine {
    let Some(v) = raw.and_then(|r| serde_json::from_slice::<Value>(r).ok()).filter(Value::is_object) else {
        return InputLine::NotJson { line };
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut body = v.get("body").filter(|b| b.is_object()).cloned();
    if let Some(b) = body.as_mut() {
        if let Some(images) = b.get_mut("images").and_then(Value::as_array_mut) {
            images.iter_mut().for_each(mark_data_url);
        }
        if let Some(mask) = b.get_mut("mask") {
            mark_data_url(mask);
        }
    }
    InputLine::Request { line, custom_id: text("custom_id"), method: text("method"), url: text("url"), body }
}

fn mark_data_url(image: &mut Value) {
    let Some(url) = image.get("image_url").and_then(Value::as_str) else { return };
    let Some((_, data)) = url.strip_prefix("data:").and_then(|u| u.split_once(";base64,")) else { return };
    let mark = match refs::decode_base64(data) {
        Some(bytes) => {
            format!("{DATA_MARK}{}:{}:{}", refs::sha256_hex(&bytes), bytes.len(), refs::sniff(&bytes).unwrap_or(""))
        }
        None => format!("{DATA_MARK}bad"),
    };
    image["image_url"] = Value::String(mark);
}

pub fn status_of(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "validating",
        Phase::Running(_) => "in_progress",
        Phase::Finalizing => "finalizing",
        Phase::Succeeded => "completed",
        Phase::Failed => "failed",
        Phase::Cancelling(_) => "cancelling",
        Phase::Cancelled(_) => "cancelled",
        Phase::Expired(_) => "expired",
    }
}

/// 24 lower-case hex digits from a seed and a counter (splitmix64), for ids.
pub fn hex_id(seed: u64, n: u64) -> String {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix(seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    format!("{a:016x}{:08x}", mix(a) as u32)
}

fn key_refused(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let key = wire::openai_key(headers);
    if s.key_ok(&key) {
        return None;
    }
    s.stats.lock().expect("stats lock").auth_failures += 1;
    Some(Wire::OpenAi.bad_key(&key))
}

/// One entry of a failed batch's `errors.data`.
fn batch_error(code: &str, line: Option<u64>, param: Option<&str>, vars: &[(&str, &str)]) -> Value {
    json!({"code": code, "message": FIXTURES.batch.validation_message(code, vars), "param": param, "line": line})
}

/// What OpenAI's validation finds wrong with an input file for `endpoint`: every bad
/// line, in order (empty when the file is good).
fn validate(lines: &[InputLine], endpoint: &str, max_lines: u64) -> Vec<Value> {
    if lines.is_empty() {
        return vec![batch_error("empty_file", None, None, &[])];
    }
    if lines.len() as u64 > max_lines {
        let got = lines.len().to_string();
        return vec![batch_error("too_many_tasks", None, None, &[("got", &got), ("max", &max_lines.to_string())])];
    }
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut first_model: Option<String> = None;
    for l in lines {
        match l {
            InputLine::NotJson { line } => errors.push(batch_error("invalid_json_line", Some(*line), None, &[])),
            InputLine::Request { line, custom_id, method, url, body } => {
                let line = Some(*line);
                let missing = |param: &str| batch_error("missing_field", line, Some(param), &[("param", param)]);
                let Some(custom_id) = custom_id else {
                    errors.push(missing("custom_id"));
                    continue;
                };
                match method.as_deref() {
                    None => errors.push(missing("method")),
                    Some("POST") => {}
                    Some(m) => errors.push(batch_error("invalid_method", line, Some("method"), &[("method", m)])),
                }
                match url.as_deref() {
                    None => errors.push(missing("url")),
                    Some(u) if u != endpoint => {
                        errors.push(batch_error(
                            "url_mismatch",
                            line,
                            Some("url"),
                            &[("url", u), ("endpoint", endpoint)],
                        ));
                    }
                    Some(_) => {}
                }
                let Some(body) = body else {
                    errors.push(missing("body"));
                    continue;
                };
                if !seen.insert(custom_id.clone()) {
                    errors.push(batch_error("duplicate_custom_id", line, Some("custom_id"), &[]));
                }
                let model = body["model"].as_str().unwrap_or("").to_owned();
                match &first_model {
                    None => first_model = Some(model),
                    Some(first) if *first != model => errors.push(batch_error(
                        "model_mismatch",
                        line,
                        Some("body.model"),
                        &[("model", &model), ("first", first)],
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    errors
}

/// A reference an edit line names.
struct Ref {
    sha256: String,
    len: Option<u64>,
    kind: Option<&'static str>,
    /// False for a URL the simulator cannot fetch: it counts as its own text, and its
    /// kind and size are not checked.
    seen: bool,
}

impl Ref {
    fn kind_in(&self, formats: &[String]) -> bool {
        !self.seen || self.kind.is_some_and(|k| formats.iter().any(|f| f == k))
    }
}

/// The image kinds [`refs::sniff`] tells, by name.
fn known_kind(name: &str) -> Option<&'static str> {
    ["image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"].into_iter().find(|k| *k == name)
}

/// The reference a `file_id` or `image_url` names.
fn reference(s: &Shared, image: &Value, param: &str) -> Result<Ref, Refusal> {
    if let Some(id) = image.get("file_id").and_then(Value::as_str) {
        let store = s.openai_files.lock().expect("openai files lock");
        return match store.files.get(id).map(|f| &f.content) {
            Some(Content::Image { sha256, len, kind }) => {
                Ok(Ref { sha256: sha256.clone(), len: Some(*len), kind: *kind, seen: true })
            }
            // A batch file named as an image: not an image.
            Some(_) => Ok(Ref { sha256: String::new(), len: None, kind: None, seen: true }),
            None => {
                Err(FIXTURES.batch.error("openai_no_such_file", &[("id", id), ("param", &format!("{param}.file_id"))]))
            }
        };
    }
    match image.get("image_url").and_then(Value::as_str) {
        Some(mark) if mark.starts_with(DATA_MARK) => {
            let mut parts = mark[DATA_MARK.len()..].split(':');
            let (sha, len, kind) = (parts.next(), parts.next(), parts.next());
            Ok(Ref {
                sha256: sha.unwrap_or("").to_owned(),
                len: len.and_then(|l| l.parse().ok()),
                kind: known_kind(kind.unwrap_or("")),
                seen: true,
            })
        }
        Some(url) => Ok(Ref { sha256: refs::sha256_hex(url.as_bytes()), len: None, kind: None, seen: false }),
        None => Err(FIXTURES.openai_missing_parameter(&format!("{param}.file_id"))),
    }
}

/// An edit's JSON form checked like the multipart one: its images (count, kinds, sizes)
/// and mask. Returns the hashes of the images and of the mask.
fn edit_refs(s: &Shared, m: Option<&Model>, body: &Value) -> Result<(Vec<String>, Option<String>), Refusal> {
    if body.get("prompt").is_none() {
        return Err(FIXTURES.openai_missing_parameter("prompt"));
    }
    let images = match body.get("images").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a,
        _ => return Err(FIXTURES.openai_missing_parameter("images")),
    };
    let m = m.filter(|m| m.dialect == Dialect::Openai);
    if let Some(m) = m {
        if !m.edits {
            return Err(FIXTURES.openai_edits_unsupported(&m.id));
        }
        if images.len() > m.max_reference_images {
            return Err(FIXTURES.openai_too_many_images(m.max_reference_images, images.len()));
        }
    }
    let mut hashes = Vec::with_capacity(images.len());
    for (i, image) in images.iter().enumerate() {
        let param = format!("images[{i}]");
        let r = reference(s, image, &param)?;
        if let Some(m) = m {
            let max = s.cfg.max_reference_bytes.or(m.max_reference_bytes);
            if let (Some(len), Some(max)) = (r.len, max)
                && len > max
            {
                return Err(FIXTURES.openai_file_too_large(&param, len, max));
            }
            if !r.kind_in(&m.reference_formats) {
                return Err(FIXTURES.openai_invalid_image_file(i + 1));
            }
        }
        hashes.push(r.sha256);
    }
    let mask = match body.get("mask").filter(|v| !v.is_null()) {
        None => None,
        Some(mask) => {
            let r = reference(s, mask, "mask")?;
            if let Some(m) = m {
                let Some(rule) = &m.mask else { return Err(FIXTURES.openai_unknown_parameter("mask")) };
                let max = s.cfg.max_reference_bytes.map_or(rule.max_bytes, |o| o.min(rule.max_bytes));
                if let Some(len) = r.len.filter(|l| *l > max) {
                    return Err(FIXTURES.openai_file_too_large("mask", len, max));
                }
                if !r.kind_in(&rule.formats) {
                    return Err(FIXTURES.openai_invalid_mask());
                }
            }
            Some(r.sha256)
        }
    };
    Ok((hashes, mask))
}

/// The fate of each line of a valid file, by the online rules of its endpoint.
fn plan_lines(s: &Shared, lines: &[InputLine], endpoint: &str) -> Vec<LinePlan> {
    let mut models: HashMap<String, Arc<str>> = HashMap::new();
    let mut plans = Vec::with_capacity(lines.len());
    for l in lines {
        let InputLine::Request { custom_id: Some(custom_id), body: Some(body), .. } = l else { continue };
        let req = Wire::OpenAi.parse(None, &HeaderMap::new(), body).expect("the OpenAI dialect always parses");
        let model = models.entry(req.model.clone()).or_insert_with(|| Arc::from(req.model.as_str())).clone();
        let mut plan = LinePlan {
            key: custom_id.clone(),
            tag: prompt_tag(&req.prompt),
            model,
            size: req.size.clone(),
            refs: Vec::new(),
            mask: None,
            outcome: Outcome::Image,
        };
        let known = FIXTURES.model(&req.model);
        let checked = (|| {
            if !s.serves(&req.model) {
                return Err(FIXTURES.openai_not_found(&req.model));
            }
            let refs = if endpoint == EDITS { edit_refs(s, known, body)? } else { (Vec::new(), None) };
            FIXTURES.check_openai(known, body)?;
            Ok(refs)
        })();
        match checked {
            Ok((refs, mask)) => {
                plan.refs = refs;
                plan.mask = mask;
                if let Some((fault, alternate)) = s.line_fault(&req.prompt, &req.model) {
                    plan.outcome = Outcome::Fault { fault, alternate };
                }
            }
            Err(refusal) => plan.outcome = Outcome::Refused(refusal),
        }
        plans.push(plan);
    }
    plans
}

/// The request's refusal, if its fields break the SDK's literals or the metadata limits.
fn check_create(v: &Value) -> Result<(), Refusal> {
    let rules = &FIXTURES.batch;
    for field in ["input_file_id", "endpoint", "completion_window"] {
        if v.get(field).is_none_or(Value::is_null) {
            return Err(FIXTURES.openai_missing_parameter(field));
        }
    }
    let text = |k: &str| v[k].as_str().map(str::to_owned).unwrap_or_else(|| v[k].to_string());
    let endpoint = text("endpoint");
    if !rules.openai_endpoints.contains(&endpoint) {
        return Err(FIXTURES.openai_invalid_choice("endpoint", &endpoint, &rules.openai_endpoints));
    }
    if endpoint != GENERATIONS && endpoint != EDITS {
        let why = format!("The simulator serves only '{GENERATIONS}' and '{EDITS}'.");
        return Err(FIXTURES.openai_invalid("endpoint", &endpoint, &why));
    }
    let window = text("completion_window");
    if !rules.openai_windows.contains(&window) {
        return Err(FIXTURES.openai_invalid_choice("completion_window", &window, &rules.openai_windows));
    }
    match v.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(meta)) => {
            if meta.len() > rules.metadata_max_pairs {
                let (max, got) = (rules.metadata_max_pairs.to_string(), meta.len().to_string());
                return Err(FIXTURES.batch.error("openai_metadata_too_many", &[("max", &max), ("got", &got)]));
            }
            for (key, value) in meta {
                let too_long = |path: &str, got: usize, max: usize| {
                    let (got, max) = (got.to_string(), max.to_string());
                    FIXTURES.batch.error("openai_metadata_too_long", &[("path", path), ("got", &got), ("max", &max)])
                };
                let chars = key.chars().count();
                if chars > rules.metadata_max_key_chars {
                    return Err(too_long("", chars, rules.metadata_max_key_chars));
                }
                let Some(value) = value.as_str() else {
                    return Err(FIXTURES.openai_invalid(
                        &format!("metadata.{key}"),
                        &value.to_string(),
                        "Expected a string.",
                    ));
                };
                let chars = value.chars().count();
                if chars > rules.metadata_max_value_chars {
                    return Err(too_long(&format!(".{key}"), chars, rules.metadata_max_value_chars));
                }
            }
        }
        Some(other) => return Err(FIXTURES.openai_invalid("metadata", &other.to_string(), "Expected an object.")),
    }
    Ok(())
}

/// `24h` as a duration (the only window the SDK knows).
fn window(w: &str) -> Duration {
    let hours = w.strip_suffix('h').and_then(|h| h.parse::<u64>().ok()).unwrap_or(24);
    Duration::from_secs(hours * 3600)
}

/// `POST /v1/batches`.
pub(in crate::sim) async fn create(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = key_refused(&s, &headers) {
        return r;
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Wire::OpenAi.bad_request(&format!("We could not parse the JSON body of your request. ({e})")),
    };
    if let Err(r) = check_create(&v) {
        return Wire::refusal(&r);
    }
    let (input, endpoint, window_text) = (
        v["input_file_id"].as_str().unwrap_or(""),
        v["endpoint"].as_str().unwrap_or(""),
        v["completion_window"].as_str().unwrap_or(""),
    );
    let lines = {
        let store = s.openai_files.lock().expect("openai files lock");
        match store.files.get(input) {
            None => {
                return Wire::refusal(
                    &FIXTURES.batch.error("openai_no_such_file", &[("id", input), ("param", "input_file_id")]),
                );
            }
            Some(f) => match &f.content {
                Content::Batch(lines) if f.purpose == "batch" => lines.clone(),
                _ => {
                    return Wire::refusal(
                        &FIXTURES.batch.error("openai_batch_wrong_purpose", &[("id", input), ("purpose", &f.purpose)]),
                    );
                }
            },
        }
    };
    let max_lines = s.cfg.batch_max_lines.unwrap_or(FIXTURES.batch.openai_max_requests);
    let errors = validate(&lines, endpoint, max_lines);
    let plans = if errors.is_empty() { plan_lines(&s, &lines, endpoint) } else { Vec::new() };
    let model = plans.first().map(|p| p.model.to_string()).unwrap_or_default();
    s.advance_batches();
    let index = {
        let mut jobs = s.batches.lock().expect("batches lock");
        let now = Instant::now();
        let (order, ordinal) = (jobs.next_order(), jobs.next_ordinal(Wire::OpenAi));
        let list = |data: Vec<Value>| json!(data);
        let failed = || {
            list(vec![
                json!({"code": "batch_failed", "message": FIXTURES.batch.job_error("openai_job_failed", &[])["message"], "param": null, "line": null}),
            ])
        };
        let plan = match s.knob_plan(order, failed) {
            Some(plan) => plan,
            None if !errors.is_empty() => Plan::Fail(list(errors)),
            // OpenAI limits the work queued per model; the simulator counts batches.
            None if jobs.in_flight(Wire::OpenAi, now) >= s.cfg.max_batch_jobs => {
                let full = FIXTURES
                    .batch
                    .job_error("openai_queue_full", &[("model", &model), ("max", &s.cfg.max_batch_jobs.to_string())]);
                Plan::Fail(list(vec![
                    json!({"code": "token_limit_exceeded", "message": full["message"], "param": null, "line": null}),
                ]))
            }
            None => Plan::Run,
        };
        let job = NewJob {
            wire: Wire::OpenAi,
            id: format!("batch_{}", hex_id(s.cfg.seed, order)),
            order,
            ordinal,
            display_name: None,
            metadata: v.get("metadata").filter(|m| m.is_object()).cloned(),
            model,
            endpoint: Some(endpoint.to_owned()),
            completion_window: Some(window_text.to_owned()),
            input_file: input.to_owned(),
            expiry: window(window_text),
            plan,
            lines: plans,
        };
        s.make_job(&mut jobs, job, now)
    };
    s.created_answer(index, job_json).await
}

/// A Batch object (openai/types/batch.py).
pub fn job_json(job: &Job, now: Instant) -> Value {
    let phase = job.phase(now);
    let t = &job.timeline;
    let n = job.lines.len();
    let since = now.saturating_duration_since(job.created);
    // How far it got before a cancel or its expiry stopped it.
    let reached = since.min(job.cancelled.unwrap_or(Duration::MAX)).min(t.expiry);
    let runs = matches!(job.plan, Plan::Run);
    let at = |offset: Duration| Value::from(unix(job.wall(offset)));
    let when = |cond: bool, offset: Duration| if cond { at(offset) } else { Value::Null };
    let done = phase.done(n);
    let (completed, failed) = job.counts(done);
    let total = if matches!(phase, Phase::Pending | Phase::Failed) { 0 } else { n };
    let errors = match (&job.plan, phase) {
        (Plan::Fail(data), Phase::Failed) => json!({"object": "list", "data": data}),
        _ => Value::Null,
    };
    let run_end = t.pending + t.running;
    json!({
        "id": job.id,
        "object": "batch",
        "endpoint": job.endpoint,
        "model": job.model,
        "errors": errors,
        "input_file_id": job.input_file,
        "completion_window": job.completion_window,
        "status": status_of(phase),
        "output_file_id": job.files.output,
        "error_file_id": job.files.error,
        "created_at": at(Duration::ZERO),
        "in_progress_at": when(runs && reached >= t.pending, t.pending),
        "expires_at": at(t.expiry),
        "finalizing_at": when(runs && reached >= run_end, run_end),
        "completed_at": when(phase == Phase::Succeeded, run_end + t.finalizing),
        "failed_at": when(phase == Phase::Failed, t.pending),
        "expired_at": when(matches!(phase, Phase::Expired(_)), t.expiry),
        "cancelling_at": job.cancelled.map_or(Value::Null, at),
        "cancelled_at": when(matches!(phase, Phase::Cancelled(_)), job.cancelled.unwrap_or_default() + t.cancelling),
        "request_counts": {"total": total, "completed": completed, "failed": failed},
        "metadata": job.metadata,
    })
}

fn line_ids(results: &Results, index: usize) -> (String, String) {
    let tag = prompt_tag(&format!("{}#{index}", results.job_id));
    (format!("batch_req_{tag}"), format!("req_{}", prompt_tag(&format!("{tag}#request"))))
}

/// A line of the output or error file for a request that ran: its status and the body
/// it would have had online.
pub fn result_line(results: &Results, line: &LinePlan, index: usize, n: u64) -> String {
    let (id, request_id) = line_ids(results, index);
    let custom_id = Value::from(line.key.as_str()).to_string();
    let (status, body) = match results.ok_body(line, n) {
        Some(body) => (200, body),
        None => {
            let (status, body) = results.error_body(line);
            (status, body.to_string())
        }
    };
    format!(
        "{{\"id\":\"{id}\",\"custom_id\":{custom_id},\"response\":{{\"status_code\":{status},\"request_id\":\"{request_id}\",\"body\":{body}}},\"error\":null}}\n"
    )
}

/// A line of the error file for a request that never ran (expired, cancelled).
pub fn unexecuted_line(results: &Results, line: &LinePlan, index: usize) -> String {
    let (id, _) = line_ids(results, index);
    let error = results.unexecuted.clone().unwrap_or(Value::Null);
    json!({"id": id, "custom_id": line.key, "response": null, "error": error}).to_string() + "\n"
}

fn find(s: &Shared, id: &str) -> Result<usize, Refusal> {
    s.batches
        .lock()
        .expect("batches lock")
        .find(Wire::OpenAi, id)
        .ok_or_else(|| FIXTURES.batch.error("openai_no_such_batch", &[("id", id)]))
}

/// `GET /v1/batches/{id}`.
pub(in crate::sim) async fn retrieve(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.stats.lock().expect("stats lock").batch_gets += 1;
    if let Some(r) = key_refused(&s, &headers) {
        return r;
    }
    s.advance_batches();
    match find(&s, &id) {
        Ok(index) => s.job_answer(index, job_json),
        Err(r) => Wire::refusal(&r),
    }
}

/// `POST /v1/batches/{id}/cancel`: `cancelling`, then `cancelled` with the lines done by
/// then in the output file and the rest as `batch_cancelled` in the error file.
pub(in crate::sim) async fn cancel(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.stats.lock().expect("stats lock").batch_cancels += 1;
    if let Some(r) = key_refused(&s, &headers) {
        return r;
    }
    s.advance_batches();
    let index = match find(&s, &id) {
        Ok(i) => i,
        Err(r) => return Wire::refusal(&r),
    };
    {
        let mut jobs = s.batches.lock().expect("batches lock");
        let job = &mut jobs.jobs[index];
        let now = Instant::now();
        match job.phase(now) {
            Phase::Cancelling(_) | Phase::Cancelled(_) => {}
            phase if phase.is_final() => {
                return Wire::refusal(&FIXTURES.batch.error("openai_cannot_cancel", &[("status", status_of(phase))]));
            }
            _ => job.cancelled = Some(now.saturating_duration_since(job.created)),
        }
    }
    s.advance_batches();
    let jobs = s.batches.lock().expect("batches lock");
    ok(&job_json(&jobs.jobs[index], Instant::now()))
}

/// `GET /v1/batches?limit=N&after=ID`: every batch ever made, newest first.
pub(in crate::sim) async fn list(
    State(s): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    s.stats.lock().expect("stats lock").batch_lists += 1;
    if let Some(r) = key_refused(&s, &headers) {
        return r;
    }
    let (least, most, default) = FIXTURES.batch.openai_list_limit;
    let limit = match query.get("limit") {
        None => default,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (least..=most).contains(&n) => n,
            _ => {
                let why = format!("Limit can range between {least} and {most}.");
                return Wire::refusal(&FIXTURES.openai_invalid("limit", l, &why));
            }
        },
    };
    let limit = limit.min(s.cfg.batch_page_max.unwrap_or(most).max(1));
    s.advance_batches();
    let jobs = s.batches.lock().expect("batches lock");
    let newest_first: Vec<&Job> = jobs.jobs.iter().rev().filter(|j| j.wire == Wire::OpenAi).collect();
    let start = match query.get("after") {
        None => 0,
        Some(after) => newest_first.iter().position(|j| j.id == *after).map_or(newest_first.len(), |p| p + 1),
    };
    let now = Instant::now();
    let page: Vec<&Job> = newest_first.iter().skip(start).take(limit).copied().collect();
    ok(&json!({
        "object": "list",
        "data": page.iter().map(|j| job_json(j, now)).collect::<Vec<_>>(),
        "first_id": page.first().map(|j| j.id.clone()),
        "last_id": page.last().map(|j| j.id.clone()),
        "has_more": start + page.len() < newest_first.len(),
    }))
}
