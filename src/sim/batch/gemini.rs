//! Gemini's Batch API as google-genai 3.4.0 speaks it (tests/sdk/fixtures.json, `batch`):
//! `POST {v}/models/{model}:batchGenerateContent` with `{"batch": {"displayName",
//! "inputConfig": {"fileName": "files/ID"}}}` (snake_case read too), `GET {v}/batches/ID`,
//! `GET {v}/batches?pageSize=N&pageToken=T` (`operations`, `nextPageToken`),
//! `POST {v}/batches/ID:cancel`, and the results file at
//! `GET {v}/files/ID:download?alt=media` (where the SDK asks) or
//! `GET /download/{v}/files/ID:download?alt=media` (the REST reference's path), for
//! `v` = `v1beta` and the SDK's default `v1`.
//!
//! A batch is a long-running operation: `{"name", "metadata": GenerateContentBatch,
//! "done", "error" | "response"}`. To exercise clients, the answers vary by the job's
//! creation order within the dialect (deterministically): even jobs spell states
//! `BATCH_STATE_*` (the REST API), odd ones `JOB_STATE_*` (the SDK and docs); the results
//! file is named in `metadata.output.responsesFile` (order mod 3 = 0), in
//! `response.responsesFile` (1), or in a top-level `dest.fileName` with the state in a
//! top-level `state` instead of `metadata.state` (2).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::super::files::{self, rfc3339};
use super::super::refs::{self, GeminiRef};
use super::super::rules::{Dialect, FIXTURES, Refusal};
use super::super::wire::{self, Wire};
use super::super::{Shared, prompt_tag};
use super::{Job, LinePlan, NewJob, Outcome, Phase, Plan, RawLine, Results, ok};

/// One line of an uploaded JSONL file, as kept: the request without its inline image
/// payloads (their hashes instead), or why the line is unusable.
#[derive(Debug, Clone)]
pub enum InputLine {
    Request { key: String, kept: Value, refs: Vec<GeminiRef>, bytes: u64 },
    Bad { line: u64, why: String },
}

/// `{"key": "...", "request": {GenerateContentRequest}}`, as the Batch API documents a
/// file's lines (wire-formats.md).
pub fn parse_line((line, raw): RawLine<'_>) -> InputLine {
    let Some(raw) = raw else {
        return InputLine::Bad { line, why: "the line is longer than any request may be".into() };
    };
    let v: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => return InputLine::Bad { line, why: format!("not valid JSON ({e})") },
    };
    let Some(key) = v.get("key").and_then(Value::as_str) else {
        return InputLine::Bad { line, why: "no \"key\" string".into() };
    };
    let Some(request) = v.get("request").filter(|r| r.is_object()) else {
        return InputLine::Bad { line, why: "no \"request\" object".into() };
    };
    let (refs, kept) = refs::gemini_parts(request);
    InputLine::Request { key: key.to_owned(), kept, refs, bytes: raw.len() as u64 }
}

/// A phase as a state name without its prefix.
pub fn state_of(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "PENDING",
        Phase::Running(_) | Phase::Finalizing | Phase::Cancelling(_) => "RUNNING",
        Phase::Succeeded => "SUCCEEDED",
        Phase::Failed => "FAILED",
        Phase::Cancelled(_) => "CANCELLED",
        Phase::Expired(_) => "EXPIRED",
    }
}

fn key_refused(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let key = wire::gemini_key(headers);
    if s.key_ok(&key) {
        return None;
    }
    s.stats.lock().expect("stats lock").auth_failures += 1;
    Some(Wire::Gemini.bad_key(&key))
}

fn either<'a>(v: &'a Value, a: &str, b: &str) -> Option<&'a Value> {
    v.get(a).or_else(|| v.get(b)).filter(|x| !x.is_null())
}

/// The fate of each line, by the same rules as an online request to `model`; or the
/// job's error when the file is unusable (not JSONL, empty, a line without key or
/// request, or not JSON at all).
fn plan_lines(s: &Shared, model: &str, file: &str, lines: Option<&[InputLine]>) -> Result<Vec<LinePlan>, Value> {
    let bad = |line: u64, why: &str| {
        FIXTURES.batch.job_error("gemini_job_bad_input", &[("file", file), ("line", &line.to_string()), ("why", why)])
    };
    let Some(lines) = lines else { return Err(bad(1, "not a JSONL file")) };
    if lines.is_empty() {
        return Err(bad(1, "the file holds no requests"));
    }
    if let Some(InputLine::Bad { line, why }) = lines.iter().find(|l| matches!(l, InputLine::Bad { .. })) {
        return Err(bad(*line, why));
    }
    let known = FIXTURES.model(model);
    let model_arc: Arc<str> = Arc::from(model);
    let path = format!("{model}:generateContent");
    let mut plans = Vec::with_capacity(lines.len());
    for line in lines {
        let InputLine::Request { key, kept, refs, bytes } = line else { continue };
        let req = Wire::Gemini.parse(Some(&path), &HeaderMap::new(), kept).expect("a :generateContent path parses");
        let mut plan = LinePlan {
            key: key.clone(),
            tag: prompt_tag(&req.prompt),
            model: model_arc.clone(),
            size: req.size.clone(),
            refs: Vec::new(),
            mask: None,
            outcome: Outcome::Image,
        };
        let checked: Result<Vec<String>, Refusal> = (|| {
            FIXTURES.check_gemini(known, kept)?;
            if let Some(max) = known.and_then(|m| m.max_request_bytes).filter(|max| bytes > max) {
                return Err(FIXTURES.gemini_request_too_large(max));
            }
            s.gemini_references(known, refs)
        })();
        match checked {
            Ok(hashes) => {
                plan.refs = hashes;
                if let Some((fault, alternate)) = s.line_fault(&req.prompt, model) {
                    plan.outcome = Outcome::Fault { fault, alternate };
                }
            }
            Err(refusal) => plan.outcome = Outcome::Refused(refusal),
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// `POST {v}/models/{model}:batchGenerateContent`.
pub(in crate::sim) async fn create(
    s: &Arc<Shared>,
    path: &str,
    model_action: &str,
    headers: &HeaderMap,
    body: Result<Bytes, Refusal>,
) -> Response {
    if let Some(r) = key_refused(s, headers) {
        return r;
    }
    let body = match body {
        Ok(b) => b,
        Err(r) => return Wire::refusal(&r),
    };
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Wire::Gemini.bad_request(&format!("could not parse the JSON body: {e}")),
    };
    let version = path.trim_start_matches('/').split('/').next().unwrap_or("v1beta");
    let model = model_action.strip_suffix(":batchGenerateContent").unwrap_or(model_action);
    let wrong_dialect = FIXTURES.model(model).is_some_and(|m| m.dialect == Dialect::Openai);
    if !s.serves(model) || wrong_dialect {
        return Wire::Gemini.unknown_model(model, version);
    }
    let batch = &v["batch"];
    if !batch.is_object() {
        return Wire::Gemini.bad_request("* BatchGenerateContentRequest.batch: batch is required");
    }
    let Some(display_name) = either(batch, "displayName", "display_name").and_then(Value::as_str) else {
        return Wire::Gemini.bad_request("* BatchGenerateContentRequest.batch.display_name: display_name is required");
    };
    let input = either(batch, "inputConfig", "input_config").unwrap_or(&Value::Null);
    let Some(file_name) = either(input, "fileName", "file_name").and_then(Value::as_str) else {
        let why = if input.get("requests").is_some() {
            "the simulator takes a batch's requests from a file only (inputConfig.fileName), not inline"
        } else {
            "* BatchGenerateContentRequest.batch.input_config: input_config.file_name is required"
        };
        return Wire::Gemini.bad_request(why);
    };
    let file_id = file_name.strip_prefix("files/").unwrap_or(file_name);
    let content = match s.file_store.lock().expect("files lock").resolve(file_id) {
        Ok(f) => f.content.clone(),
        Err(files::Gone) => {
            s.stats.lock().expect("stats lock").files_gone += 1;
            return Wire::refusal(&FIXTURES.gemini_file_gone(file_id));
        }
    };
    s.advance_batches();
    let planned = plan_lines(s, model, &format!("files/{file_id}"), content.as_deref().map(Vec::as_slice));
    let index = {
        let mut jobs = s.batches.lock().expect("batches lock");
        let now = Instant::now();
        if jobs.in_flight(Wire::Gemini, now) >= s.cfg.max_batch_jobs {
            return Wire::refusal(&FIXTURES.batch.error("gemini_batch_quota", &[]));
        }
        let (order, ordinal) = (jobs.next_order(), jobs.next_ordinal(Wire::Gemini));
        let knob = s.knob_plan(order, || FIXTURES.batch.job_error("gemini_job_failed", &[]));
        let (plan, lines) = match (knob, planned) {
            (Some(plan), Ok(lines)) => (plan, lines),
            (Some(plan), Err(_)) => (plan, Vec::new()),
            (None, Ok(lines)) => (Plan::Run, lines),
            (None, Err(error)) => (Plan::Fail(error), Vec::new()),
        };
        let expiry = Duration::from_secs(FIXTURES.batch.gemini_expiry_hours * 3600);
        let job = NewJob {
            wire: Wire::Gemini,
            id: format!("sim-batch-{}", order + 1),
            order,
            ordinal,
            display_name: Some(display_name.to_owned()),
            metadata: None,
            model: model.to_owned(),
            endpoint: None,
            completion_window: None,
            input_file: format!("files/{file_id}"),
            expiry,
            plan,
            lines,
        };
        s.make_job(&mut jobs, job, now)
    };
    s.created_answer(index, job_json).await
}

/// A batch as an operation, shaped by the job's creation order (see the module doc).
pub fn job_json(job: &Job, now: Instant) -> Value {
    let phase = job.phase(now);
    let state = FIXTURES.batch.gemini_state(state_of(phase), job.ordinal.is_multiple_of(2));
    let variant = job.ordinal % 3;
    let name = format!("batches/{}", job.id);
    let n = job.lines.len();
    let done = phase.done(n);
    let (succeeded, failed) = job.counts(done);
    let pending = if phase.is_final() { 0 } else { n - done };
    // batchStats counts are int64 as strings, zeros omitted.
    let mut stats = Map::new();
    for (k, v) in [
        ("requestCount", n),
        ("successfulRequestCount", succeeded),
        ("failedRequestCount", failed),
        ("pendingRequestCount", pending),
    ] {
        if v > 0 {
            stats.insert(k.into(), Value::String(v.to_string()));
        }
    }
    let since = now.saturating_duration_since(job.created);
    let updated = match phase {
        Phase::Pending => Duration::ZERO,
        Phase::Running(_) => job.timeline.pending.min(since),
        _ => job.ended_after(phase).unwrap_or(since).min(since),
    };
    let mut meta = json!({
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
        "name": name,
        "model": format!("models/{}", job.model),
        "displayName": job.display_name,
        "inputConfig": {"fileName": job.input_file},
        "createTime": rfc3339(job.created_wall),
        "updateTime": rfc3339(job.wall(updated)),
        "batchStats": stats,
    });
    if variant != 2 {
        meta["state"] = Value::from(state);
    }
    if phase.is_final() {
        meta["endTime"] = Value::from(rfc3339(job.wall(updated)));
    }
    let mut op = json!({"name": name});
    if phase.is_final() {
        op["done"] = Value::Bool(true);
    }
    match (phase, &job.plan) {
        (Phase::Failed, Plan::Fail(error)) => op["error"] = error.clone(),
        (Phase::Cancelled(_), _) => op["error"] = FIXTURES.batch.job_error("gemini_job_cancelled", &[]),
        _ => {}
    }
    if let Some(file) = &job.files.gemini {
        let file = format!("files/{file}");
        match variant {
            // An operation holds an error or a response: a cancelled job's partial
            // results are named in its metadata.
            1 if op.get("error").is_none() => {
                op["response"] = json!({
                    "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput",
                    "responsesFile": file,
                });
            }
            2 => op["dest"] = json!({"fileName": file}),
            _ => meta["output"] = json!({"responsesFile": file}),
        }
    }
    if variant == 2 {
        op["state"] = Value::from(state);
    }
    op["metadata"] = meta;
    op
}

/// One line of a responses file: the online answer (success, refusal, no image) as
/// `response`, or the online error's `error` object.
pub fn result_line(results: &Results, line: &LinePlan, n: u64) -> String {
    let key = Value::from(line.key.as_str()).to_string();
    match results.ok_body(line, n) {
        Some(body) => format!("{{\"key\":{key},\"response\":{body}}}\n"),
        None => {
            let (_, body) = results.error_body(line);
            let error = body.get("error").cloned().unwrap_or(body);
            format!("{{\"key\":{key},\"error\":{error}}}\n")
        }
    }
}

fn find(s: &Shared, id: &str) -> Result<usize, Refusal> {
    s.batches
        .lock()
        .expect("batches lock")
        .find(Wire::Gemini, id)
        .ok_or_else(|| FIXTURES.batch.error("gemini_no_such_batch", &[("id", id)]))
}

/// `GET {v}/batches/{id}`.
pub(in crate::sim) async fn get(State(s): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
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

/// `POST {v}/batches/{id}:cancel` (the only POST on a batch).
pub(in crate::sim) async fn cancel(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = id.strip_suffix(":cancel") else {
        return Wire::refusal(&FIXTURES.batch.error("gemini_no_such_batch", &[("id", &id)]));
    };
    s.stats.lock().expect("stats lock").batch_cancels += 1;
    if let Some(r) = key_refused(&s, &headers) {
        return r;
    }
    s.advance_batches();
    let index = match find(&s, id) {
        Ok(i) => i,
        Err(r) => return Wire::refusal(&r),
    };
    {
        let mut jobs = s.batches.lock().expect("batches lock");
        let job = &mut jobs.jobs[index];
        let now = Instant::now();
        // Cancelling a job that has ended changes nothing (the SDK: "Only available for
        // batch jobs that are running or pending").
        if !job.phase(now).is_final() {
            job.cancelled = Some(now.saturating_duration_since(job.created));
        }
    }
    s.advance_batches();
    ok(&json!({}))
}

/// `GET {v}/batches?pageSize=N&pageToken=T`: every job ever made, newest first; the token
/// names the last job of the page, so jobs made between pages do not shift it.
pub(in crate::sim) async fn list(
    State(s): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    s.stats.lock().expect("stats lock").batch_lists += 1;
    if let Some(r) = key_refused(&s, &headers) {
        return r;
    }
    let (default, max) = FIXTURES.batch.gemini_list_page;
    let max = s.cfg.batch_page_max.unwrap_or(max).max(1);
    let size = match query.get("pageSize").map(|p| p.parse::<usize>()) {
        None | Some(Ok(0)) => default.min(max),
        Some(Ok(n)) => n.min(max),
        Some(Err(_)) => return Wire::Gemini.bad_request("Invalid value at 'page_size' (TYPE_INT32)"),
    };
    s.advance_batches();
    let jobs = s.batches.lock().expect("batches lock");
    let newest_first: Vec<&Job> = jobs.jobs.iter().rev().filter(|j| j.wire == Wire::Gemini).collect();
    let start = match query.get("pageToken").map(String::as_str) {
        None | Some("") => 0,
        Some(token) => match newest_first.iter().position(|j| j.id == token) {
            Some(p) => p + 1,
            None => return Wire::Gemini.bad_request("Invalid page token."),
        },
    };
    let now = Instant::now();
    let page: Vec<&Job> = newest_first.iter().skip(start).take(size).copied().collect();
    let mut body = json!({"operations": page.iter().map(|j| job_json(j, now)).collect::<Vec<_>>()});
    if start + page.len() < newest_first.len()
        && let Some(last) = page.last()
    {
        body["nextPageToken"] = Value::from(last.id.as_str());
    }
    ok(&body)
}

/// The results file `id` (its `files/` prefix and `:download` suffix gone), streamed.
pub(in crate::sim) async fn download_file(s: &Arc<Shared>, id: &str, headers: &HeaderMap) -> Response {
    if let Some(r) = key_refused(s, headers) {
        return r;
    }
    s.advance_batches();
    let results = {
        let jobs = s.batches.lock().expect("batches lock");
        jobs.files.get(id).and_then(|(i, which)| jobs.jobs[*i].results.clone().map(|r| (r, *which)))
    };
    match results {
        Some((results, which)) => s.stream_results(results, which),
        None if s.file_store.lock().expect("files lock").resolve(id).is_ok() => {
            Wire::refusal(&FIXTURES.batch.error("gemini_download_uploaded", &[("id", id)]))
        }
        None => {
            s.stats.lock().expect("stats lock").files_gone += 1;
            Wire::refusal(&FIXTURES.gemini_file_gone(id))
        }
    }
}

/// `GET /download/{v}/files/{id}:download?alt=media` (the REST reference's path).
pub(in crate::sim) async fn download(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match id.strip_suffix(":download") {
        Some(id) => download_file(&s, id, &headers).await,
        None => Wire::Gemini.bad_request("expected files/{id}:download"),
    }
}
