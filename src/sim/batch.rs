//! Both providers' Batch APIs, in compressed time: Gemini's `batchGenerateContent` jobs
//! ([`gemini`]) and OpenAI's `/v1/batches` ([`openai`], with its Files API in
//! [`super::openai_files`]). This file holds what they share: a job's timeline, the fate of
//! each input line (fixed when the job is created: the online rules, `line_faults`, the
//! seeded fault draws), the bookkeeping once a job ends, and result files streamed line by
//! line (never built whole: a result file may be gigabytes).
//!
//! A job's state is a pure function of the time since it was created (scaled by
//! `time_scale`): PENDING for `batch_pending`, then RUNNING for `batch_running` with its
//! lines finishing evenly in a seeded random order, then done; unless it is stuck
//! (`stuck_jobs`), fails (`fail_jobs`, or a bad input file), is cancelled, or expires first.
//! Every handler, and [`super::SimServer::stats`], brings the jobs up to now before it
//! reads them, so no task runs in the background.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::Value;

use super::rules::{FIXTURES, Refusal};
use super::wire::{self, Image, Wire};
use super::{Fault, Shared, SimStats, png};

pub(super) mod gemini;
pub(super) mod openai;

/// A batch job as tests see it in [`SimStats::batch_jobs`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SimBatchJob {
    /// `batches/ID` (Gemini) or `batch_...` (OpenAI).
    pub name: String,
    /// `gemini` or `openai`.
    pub dialect: String,
    /// The bulkgen token: a Gemini displayName without its `bulkgen-` prefix (the whole
    /// displayName when it has none), or OpenAI's `metadata.bulkgen_token` ("" if none).
    pub token: String,
    /// The Gemini display name as sent.
    pub display_name: Option<String>,
    /// Gemini: the model of the path; OpenAI: the model of the input lines.
    pub model: String,
    /// OpenAI's endpoint.
    pub endpoint: Option<String>,
    pub input_file: String,
    /// Input lines.
    pub lines: u64,
    /// The state now: `BATCH_STATE_*` (Gemini, whatever spelling the job answers with) or
    /// the OpenAI status.
    pub state: String,
    /// Creation order over both dialects, from 0.
    pub order: u64,
}

/// The faults that make sense for one line of a batch (the rest are about a connection).
const LINE_FAULTS: [Fault; 6] =
    [Fault::Refuse, Fault::Server, Fault::Overloaded, Fault::RateLimited, Fault::NoImage, Fault::BadBase64];

/// What one input line comes to, fixed when its job is created.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// An image.
    Image,
    /// An injected fault (random or `line_faults`); `alternate` picks Gemini's refusal form.
    Fault { fault: Fault, alternate: bool },
    /// Refused by the online rules (size, model, references...): the real status and body.
    Refused(Refusal),
}

/// One input line as the job will answer it.
#[derive(Debug, Clone)]
pub struct LinePlan {
    /// Gemini `key` / OpenAI `custom_id`.
    pub key: String,
    pub tag: String,
    pub model: Arc<str>,
    pub size: String,
    /// sha256 (hex) of each reference, in order.
    pub refs: Vec<String>,
    pub mask: Option<String>,
    pub outcome: Outcome,
}

impl LinePlan {
    /// The HTTP status the line would have had online.
    fn status(&self, wire: Wire) -> u16 {
        match &self.outcome {
            Outcome::Image => 200,
            Outcome::Refused(r) => r.status,
            Outcome::Fault { fault, alternate } => match fault {
                Fault::Refuse => wire.refused_body(*alternate).0,
                Fault::Server => 500,
                Fault::Overloaded => 503,
                Fault::RateLimited => 429,
                _ => 200,
            },
        }
    }
}

/// What happens to a job, fixed when it is created.
#[derive(Debug, Clone)]
pub enum Plan {
    Run,
    /// PENDING (`validating`) until it expires (`stuck_jobs`).
    Stuck,
    /// Fails when PENDING ends, with this error: Gemini's `{code, message}`, or OpenAI's
    /// `errors.data` list.
    Fail(Value),
}

/// Where a job is at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    /// Lines done so far.
    Running(usize),
    /// OpenAI: every line done, results being written.
    Finalizing,
    Succeeded,
    Failed,
    /// OpenAI: cancelled, with the lines done when it was.
    Cancelling(usize),
    Cancelled(usize),
    /// Expired, with the lines done by then.
    Expired(usize),
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Cancelled(_) | Phase::Expired(_))
    }

    /// Lines done by this phase (`all` when it ran to the end).
    pub fn done(self, all: usize) -> usize {
        match self {
            Phase::Pending | Phase::Failed => 0,
            Phase::Running(d) | Phase::Cancelling(d) | Phase::Cancelled(d) | Phase::Expired(d) => d,
            Phase::Finalizing | Phase::Succeeded => all,
        }
    }
}

/// A job's timeline in real time (simulated durations times `time_scale`).
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub pending: Duration,
    pub running: Duration,
    /// OpenAI only: a tenth of the running time.
    pub finalizing: Duration,
    pub expiry: Duration,
    pub cancelling: Duration,
}

/// Result files a job has, by id (`files/ID` without the prefix for Gemini).
#[derive(Debug, Clone, Default)]
pub struct ResultFiles {
    pub gemini: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
}

/// Which lines a result file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Gemini's responses file: every line done.
    Responses,
    /// OpenAI's output file: lines answered 200.
    Output,
    /// OpenAI's error file: lines answered otherwise, and lines that never ran.
    Errors,
}

pub struct Job {
    pub wire: Wire,
    /// `sim-batch-N` (Gemini, named `batches/sim-batch-N`) or `batch_...` (OpenAI).
    pub id: String,
    /// Creation order over both dialects.
    pub order: u64,
    /// Creation order within the dialect (Gemini jobs vary their answers by it).
    pub ordinal: u64,
    pub display_name: Option<String>,
    pub metadata: Option<Value>,
    pub model: String,
    pub endpoint: Option<String>,
    pub completion_window: Option<String>,
    pub input_file: String,
    pub created: Instant,
    pub created_wall: SystemTime,
    pub timeline: Timeline,
    pub plan: Plan,
    pub lines: Arc<Vec<LinePlan>>,
    /// The order lines finish in (and are written in): a seeded permutation.
    pub finish_order: Arc<Vec<u32>>,
    /// `ok_before[i]`: lines among the first `i` to finish that answered 200.
    ok_before: Vec<u32>,
    /// The image number of line 0 (each line's is this plus its index).
    pub image_base: u64,
    /// When it was cancelled, after its creation.
    pub cancelled: Option<Duration>,
    settled: bool,
    pub results: Option<Arc<Results>>,
    pub files: ResultFiles,
}

/// What one dialect's create says of a new job; the rest every job starts with.
pub(super) struct NewJob {
    pub wire: Wire,
    pub id: String,
    pub order: u64,
    pub ordinal: u64,
    pub display_name: Option<String>,
    pub metadata: Option<Value>,
    pub model: String,
    pub endpoint: Option<String>,
    pub completion_window: Option<String>,
    pub input_file: String,
    /// The dialect's own expiry (`batch_expiry` overrides it), in simulated time.
    pub expiry: Duration,
    pub plan: Plan,
    pub lines: Vec<LinePlan>,
}

impl Job {
    /// Lines done `since` its creation while running.
    fn done_at(&self, since: Duration) -> usize {
        let n = self.lines.len();
        let t = &self.timeline;
        if since <= t.pending {
            return 0;
        }
        let into = since - t.pending;
        if into >= t.running || t.running.is_zero() {
            return n;
        }
        ((n as f64) * into.as_secs_f64() / t.running.as_secs_f64()).floor() as usize
    }

    /// Where the job is at `now`, ignoring a cancel.
    fn phase_uncancelled(&self, since: Duration) -> Phase {
        let t = &self.timeline;
        match &self.plan {
            Plan::Stuck => return if since >= t.expiry { Phase::Expired(0) } else { Phase::Pending },
            Plan::Fail(_) => return if since >= t.pending { Phase::Failed } else { Phase::Pending },
            Plan::Run => {}
        }
        let run_end = t.pending + t.running;
        let end = run_end + if self.wire == Wire::OpenAi { t.finalizing } else { Duration::ZERO };
        if end > t.expiry && since >= t.expiry {
            return Phase::Expired(self.done_at(t.expiry));
        }
        if since < t.pending {
            Phase::Pending
        } else if since < run_end {
            Phase::Running(self.done_at(since))
        } else if since < end {
            Phase::Finalizing
        } else {
            Phase::Succeeded
        }
    }

    pub fn phase(&self, now: Instant) -> Phase {
        let since = now.saturating_duration_since(self.created);
        match self.cancelled {
            Some(c) => {
                let done = self.phase_uncancelled(c).done(self.lines.len());
                if self.wire == Wire::OpenAi && since < c + self.timeline.cancelling {
                    Phase::Cancelling(done)
                } else {
                    Phase::Cancelled(done)
                }
            }
            None => self.phase_uncancelled(since),
        }
    }

    /// Whether the job still counts against `max_batch_jobs`.
    pub fn in_flight(&self, now: Instant) -> bool {
        !self.phase(now).is_final()
    }

    /// Of the first `done` lines to finish: (answered 200, answered otherwise).
    pub fn counts(&self, done: usize) -> (usize, usize) {
        let ok = self.ok_before[done.min(self.lines.len())] as usize;
        (ok, done - ok)
    }

    /// Wall-clock time `offset` after creation.
    pub fn wall(&self, offset: Duration) -> SystemTime {
        self.created_wall + offset
    }

    /// When the job reached its current phase's end, after creation: the moment it
    /// succeeded, failed, was cancelled or expired.
    pub fn ended_after(&self, phase: Phase) -> Option<Duration> {
        let t = &self.timeline;
        match phase {
            Phase::Succeeded => {
                Some(t.pending + t.running + if self.wire == Wire::OpenAi { t.finalizing } else { Duration::ZERO })
            }
            Phase::Failed => Some(t.pending),
            Phase::Expired(_) => Some(t.expiry),
            Phase::Cancelled(_) => {
                self.cancelled.map(|c| c + if self.wire == Wire::OpenAi { t.cancelling } else { Duration::ZERO })
            }
            _ => None,
        }
    }

    /// The bulkgen token the job carries (see [`SimBatchJob::token`]).
    fn token(&self) -> String {
        match (&self.display_name, &self.metadata) {
            (Some(d), _) => d.strip_prefix("bulkgen-").unwrap_or(d).to_owned(),
            (None, Some(m)) => m["bulkgen_token"].as_str().unwrap_or("").to_owned(),
            _ => String::new(),
        }
    }

    fn state_name(&self, phase: Phase) -> String {
        match self.wire {
            Wire::Gemini => FIXTURES.batch.gemini_state(gemini::state_of(phase), true).to_owned(),
            Wire::OpenAi => openai::status_of(phase).to_owned(),
        }
    }

    fn stats_entry(&self, now: Instant) -> SimBatchJob {
        SimBatchJob {
            name: match self.wire {
                Wire::Gemini => format!("batches/{}", self.id),
                Wire::OpenAi => self.id.clone(),
            },
            dialect: match self.wire {
                Wire::Gemini => "gemini".into(),
                Wire::OpenAi => "openai".into(),
            },
            token: self.token(),
            display_name: self.display_name.clone(),
            model: self.model.clone(),
            endpoint: self.endpoint.clone(),
            input_file: self.input_file.clone(),
            lines: self.lines.len() as u64,
            state: self.state_name(self.phase(now)),
            order: self.order,
        }
    }
}

/// A finished job's results, shared with the downloads streaming them.
pub struct Results {
    pub wire: Wire,
    pub job_id: String,
    pub lines: Arc<Vec<LinePlan>>,
    pub finish_order: Arc<Vec<u32>>,
    /// Lines that ran: the first `done` of `finish_order`.
    pub done: usize,
    /// OpenAI: the error of each line that never ran (`batch_expired`, `batch_cancelled`).
    pub unexecuted: Option<Value>,
    pub image_base: u64,
    pub image_bytes: usize,
}

impl Results {
    /// The positions (in finish order) a file holds.
    fn positions(&self, which: Which) -> impl Iterator<Item = usize> + '_ {
        let n = self.lines.len();
        let ran = 0..self.done;
        let never = self.done..if self.unexecuted.is_some() { n } else { self.done };
        let keep = move |pos: &usize| {
            let ok = self.lines[self.finish_order[*pos] as usize].status(self.wire) == 200;
            match which {
                Which::Responses => true,
                Which::Output => ok,
                Which::Errors => !ok,
            }
        };
        let never = if which == Which::Errors { never } else { 0..0 };
        ran.filter(keep).chain(never)
    }

    /// Line `pos` (in finish order) of the file, with its newline.
    fn render(&self, pos: usize) -> String {
        let index = self.finish_order[pos] as usize;
        let line = &self.lines[index];
        let n = self.image_base + index as u64;
        match self.wire {
            Wire::Gemini => gemini::result_line(self, line, n),
            Wire::OpenAi if pos >= self.done => openai::unexecuted_line(self, line, index),
            Wire::OpenAi => openai::result_line(self, line, index, n),
        }
    }

    /// The image a line makes: tagged with its prompt, model, size, number, references,
    /// job and key, so tests can tell it was made for its row.
    pub fn image(&self, line: &LinePlan, n: u64) -> Vec<u8> {
        let mut text = format!("prompt={};model={};size={};n={n}", line.tag, line.model, line.size);
        if !line.refs.is_empty() {
            text.push_str(&format!(";refs={}", line.refs.join(",")));
        }
        if let Some(mask) = &line.mask {
            text.push_str(&format!(";mask={mask}"));
        }
        text.push_str(&format!(";batch={};key={}", self.job_id, sanitize(&line.key)));
        let seed = u64::from_str_radix(&line.tag, 16).unwrap_or(n);
        png::make(self.image_bytes, seed, &text)
    }

    /// The 200 body of a line as it would have come online (success, refusal, no image,
    /// broken base64), or `None` for an error answer.
    pub fn ok_body(&self, line: &LinePlan, n: u64) -> Option<String> {
        match &line.outcome {
            Outcome::Image => {
                let image = self.image(line, n);
                let draft = if self.wire == Wire::Gemini { png::make(64, n, "prompt=draft") } else { Vec::new() };
                Some(self.wire.success(Image::Png(&image), &draft, &line.model, n))
            }
            Outcome::Fault { fault: Fault::NoImage, .. } => Some(self.wire.no_image_body().to_string()),
            Outcome::Fault { fault: Fault::BadBase64, .. } => Some(self.wire.bad_base64()),
            Outcome::Fault { fault: Fault::Refuse, alternate } => match self.wire.refused_body(*alternate) {
                (200, body) => Some(body.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    /// The status and error body of a line that failed as it would have online.
    pub fn error_body(&self, line: &LinePlan) -> (u16, Value) {
        match &line.outcome {
            Outcome::Refused(r) => (r.status, r.body.clone()),
            Outcome::Fault { fault, alternate } => match fault {
                Fault::Refuse => self.wire.refused_body(*alternate),
                Fault::Overloaded => (503, self.wire.overloaded_body()),
                Fault::RateLimited => (429, self.wire.rate_limited_body(Duration::from_secs(20))),
                _ => (500, self.wire.server_error_body()),
            },
            Outcome::Image => (500, self.wire.server_error_body()),
        }
    }
}

/// A key as it may appear in a PNG tag (`;` and `=` separate the tag's fields).
fn sanitize(key: &str) -> String {
    key.chars().map(|c| if c == ';' || c == '=' { '_' } else { c }).collect()
}

/// The jobs of both dialects, in creation order, and their result files.
#[derive(Default)]
pub struct Jobs {
    pub jobs: Vec<Job>,
    /// Result file id -> (job index, which lines).
    pub files: HashMap<String, (usize, Which)>,
    next_file: u64,
}

impl Jobs {
    pub fn find(&self, wire: Wire, id: &str) -> Option<usize> {
        self.jobs.iter().position(|j| j.wire == wire && j.id == id)
    }

    /// Jobs of `wire` not yet ended.
    pub fn in_flight(&self, wire: Wire, now: Instant) -> u64 {
        self.jobs.iter().filter(|j| j.wire == wire && j.in_flight(now)).count() as u64
    }

    /// The number the next job (of either dialect) gets.
    pub fn next_order(&self) -> u64 {
        self.jobs.len() as u64
    }

    pub fn next_ordinal(&self, wire: Wire) -> u64 {
        self.jobs.iter().filter(|j| j.wire == wire).count() as u64
    }

    /// A fresh id for a result file.
    fn file_id(&mut self, wire: Wire, seed: u64) -> String {
        self.next_file += 1;
        match wire {
            Wire::Gemini => format!("sim-results-{}", self.next_file),
            Wire::OpenAi => format!("file-{}", openai::hex_id(seed ^ 0x5eed_f11e, self.next_file)),
        }
    }
}

impl Shared {
    fn scaled(&self, d: Duration) -> Duration {
        Duration::try_from_secs_f64(d.as_secs_f64() * self.cfg.time_scale.max(0.0)).unwrap_or(Duration::MAX)
    }

    /// A job's timeline in real time; `expiry` is the dialect's (simulated).
    pub(super) fn timeline(&self, expiry: Duration) -> Timeline {
        let running = self.scaled(self.cfg.batch_running);
        Timeline {
            pending: self.scaled(self.cfg.batch_pending),
            running,
            finalizing: running / 10,
            expiry: self.scaled(self.cfg.batch_expiry.unwrap_or(expiry)),
            cancelling: self.scaled(self.cfg.batch_cancelling),
        }
    }

    /// The plan of the next job, by its creation order: the first `stuck_jobs` are stuck,
    /// the next `fail_jobs` fail; the rest run (unless their input is bad).
    pub(super) fn knob_plan(&self, order: u64, fail_error: impl FnOnce() -> Value) -> Option<Plan> {
        if order < self.cfg.stuck_jobs {
            Some(Plan::Stuck)
        } else if order < self.cfg.stuck_jobs.saturating_add(self.cfg.fail_jobs) {
            Some(Plan::Fail(fail_error()))
        } else {
            None
        }
    }

    /// The fault a line gets: `line_faults` first (its prompt contains the string), then
    /// the seeded draws of the faults that make sense for a line.
    pub(super) fn line_fault(&self, prompt: &str, model: &str) -> Option<(Fault, bool)> {
        let mut rng = self.rng.lock().expect("rng lock");
        let alternate = rng.random::<bool>();
        if let Some((_, f)) = self.cfg.line_faults.iter().find(|(needle, _)| prompt.contains(needle.as_str())) {
            return Some((*f, alternate));
        }
        let mut u: f64 = rng.random();
        for f in self.cfg.faults.iter().filter(|f| LINE_FAULTS.contains(&f.fault) && f.applies_to(model)) {
            if u < f.rate {
                return Some((f.fault, alternate));
            }
            u -= f.rate;
        }
        None
    }

    /// Adds a job: its stats entry, the count, and a seeded finish order.
    /// Makes a job `created` now from what its create said; it is listed at once.
    pub(super) fn make_job(&self, jobs: &mut Jobs, new: NewJob, created: Instant) -> usize {
        let job = Job {
            wire: new.wire,
            id: new.id,
            order: new.order,
            ordinal: new.ordinal,
            display_name: new.display_name,
            metadata: new.metadata,
            model: new.model,
            endpoint: new.endpoint,
            completion_window: new.completion_window,
            input_file: new.input_file,
            created,
            created_wall: SystemTime::now(),
            timeline: self.timeline(new.expiry),
            plan: new.plan,
            image_base: self.next_image.fetch_add(new.lines.len() as u64, std::sync::atomic::Ordering::SeqCst),
            lines: Arc::new(new.lines),
            finish_order: Arc::new(Vec::new()),
            ok_before: Vec::new(),
            cancelled: None,
            settled: false,
            results: None,
            files: Default::default(),
        };
        self.add_job(jobs, job)
    }

    /// A create's answer: the job at `index` as `json` shows it, after `create_latency`
    /// (the job exists and is listed meanwhile: a client killed now never hears of it).
    pub(super) async fn created_answer(&self, index: usize, json: fn(&Job, Instant) -> Value) -> Response {
        if !self.cfg.create_latency.is_zero() {
            tokio::time::sleep(self.cfg.create_latency).await;
        }
        self.advance_batches();
        self.job_answer(index, json)
    }

    /// The job at `index` as `json` shows it now (a create's or a get's answer).
    pub(super) fn job_answer(&self, index: usize, json: fn(&Job, Instant) -> Value) -> Response {
        let jobs = self.batches.lock().expect("batches lock");
        ok(&json(&jobs.jobs[index], Instant::now()))
    }

    fn add_job(&self, jobs: &mut Jobs, mut job: Job) -> usize {
        let n = job.lines.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.cfg.seed ^ job.order.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        order.shuffle(&mut rng);
        let mut ok_before = Vec::with_capacity(n + 1);
        ok_before.push(0u32);
        for i in &order {
            let ok = u32::from(job.lines[*i as usize].status(job.wire) == 200);
            ok_before.push(ok_before.last().copied().unwrap_or(0) + ok);
        }
        job.finish_order = Arc::new(order);
        job.ok_before = ok_before;
        let now = Instant::now();
        {
            let mut st = self.stats.lock().expect("stats lock");
            st.batch_creates += 1;
            st.batch_jobs.push(job.stats_entry(now));
        }
        jobs.jobs.push(job);
        jobs.jobs.len() - 1
    }

    /// Brings every job up to now: a job that has just ended gets its result files and
    /// books its lines in the stats (once); every job's state in the stats is refreshed.
    pub(super) fn advance_batches(&self) {
        let mut jobs = self.batches.lock().expect("batches lock");
        let now = Instant::now();
        let mut st = self.stats.lock().expect("stats lock");
        for i in 0..jobs.jobs.len() {
            let phase = jobs.jobs[i].phase(now);
            let state = jobs.jobs[i].state_name(phase);
            // Entries are pushed in creation order: a job's is at its order.
            if let Some(entry) = st.batch_jobs.get_mut(i).filter(|e| e.order == jobs.jobs[i].order) {
                entry.state = state;
            }
            if !phase.is_final() || jobs.jobs[i].settled {
                continue;
            }
            self.settle(&mut jobs, i, phase, &mut st);
        }
    }

    /// A job's end: its results, their files, and the lines that ran in the stats.
    fn settle(&self, jobs: &mut Jobs, i: usize, phase: Phase, st: &mut SimStats) {
        let (wire, n) = (jobs.jobs[i].wire, jobs.jobs[i].lines.len());
        let done = phase.done(n);
        // Gemini keeps nothing of an expired job ("EXPIRED ... has no results").
        let delivered = !(wire == Wire::Gemini && matches!(phase, Phase::Expired(_)));
        let unexecuted = match (wire, phase) {
            (Wire::OpenAi, Phase::Expired(_)) => Some(FIXTURES.batch.openai_expired_line_error.clone()),
            (Wire::OpenAi, Phase::Cancelled(_)) => Some(FIXTURES.batch.openai_cancelled_line_error.clone()),
            _ => None,
        };
        let job = &jobs.jobs[i];
        for &index in &job.finish_order[..done] {
            let line = &job.lines[index as usize];
            let count = st.per_prompt.entry(line.tag.clone()).or_default();
            count.requests += 1;
            match &line.outcome {
                Outcome::Image if delivered => {
                    count.successes += 1;
                    st.successes += 1;
                    *st.per_model.entry(line.model.to_string()).or_default() += 1;
                }
                Outcome::Fault { fault, .. } => *st.faults.entry(fault.name().to_owned()).or_default() += 1,
                _ => {}
            }
        }
        let results = Arc::new(Results {
            wire,
            job_id: job.id.clone(),
            lines: job.lines.clone(),
            finish_order: job.finish_order.clone(),
            done,
            unexecuted: unexecuted.clone(),
            image_base: job.image_base,
            image_bytes: self.cfg.image_bytes,
        });
        let (ok, failed) = job.counts(done);
        let never = if unexecuted.is_some() { n - done } else { 0 };
        let mut files = ResultFiles::default();
        let has_results = !matches!(phase, Phase::Failed) && delivered;
        match wire {
            Wire::Gemini if has_results && (done > 0 || phase == Phase::Succeeded) => {
                let id = jobs.file_id(wire, self.cfg.seed);
                jobs.files.insert(id.clone(), (i, Which::Responses));
                files.gemini = Some(id);
            }
            Wire::OpenAi if has_results => {
                if ok > 0 {
                    let id = jobs.file_id(wire, self.cfg.seed);
                    jobs.files.insert(id.clone(), (i, Which::Output));
                    files.output = Some(id);
                }
                if failed + never > 0 {
                    let id = jobs.file_id(wire, self.cfg.seed);
                    jobs.files.insert(id.clone(), (i, Which::Errors));
                    files.error = Some(id);
                }
            }
            _ => {}
        }
        let job = &mut jobs.jobs[i];
        job.results = Some(results);
        job.files = files;
        job.settled = true;
    }

    /// A result file's lines, streamed: each rendered when the client is ready for it,
    /// `result_latency` apart. Counts the download and the bytes served.
    pub(super) fn stream_results(self: &Arc<Self>, results: Arc<Results>, which: Which) -> Response {
        self.stats.lock().expect("stats lock").result_downloads += 1;
        let positions: Vec<u32> = results.positions(which).map(|p| p as u32).collect();
        let s = self.clone();
        let latency = self.cfg.result_latency;
        let stream = futures::stream::unfold(0usize, move |k| {
            let (s, results) = (s.clone(), results.clone());
            let pos = positions.get(k).copied();
            async move {
                let pos = pos? as usize;
                if !latency.is_zero() {
                    tokio::time::sleep(latency).await;
                }
                let line = results.render(pos);
                s.stats.lock().expect("stats lock").result_bytes += line.len() as u64;
                Some((Ok::<_, Infallible>(Bytes::from(line)), k + 1))
            }
        });
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from_stream(stream))
            .expect("valid response")
    }

    /// The bytes a result file holds, by rendering it once (for OpenAI's FileObject).
    pub(super) fn result_file_len(results: &Results, which: Which) -> u64 {
        results.positions(which).map(|p| results.render(p).len() as u64).sum()
    }
}

/// Unix seconds.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Splits an upload into lines as it streams in, never holding more than one line (and
/// never more than `max_line` bytes of it: a longer line is reported as too long).
pub struct LineReader {
    buf: Vec<u8>,
    max_line: usize,
    too_long: bool,
    line: u64,
}

/// One line of an upload: its 1-based number and bytes (`None`: longer than the bound).
pub type RawLine<'a> = (u64, Option<&'a [u8]>);

impl LineReader {
    pub fn new(max_line: usize) -> LineReader {
        LineReader { buf: Vec::new(), max_line, too_long: false, line: 0 }
    }

    pub fn push(&mut self, mut bytes: &[u8], mut each: impl FnMut(RawLine<'_>)) {
        while let Some(nl) = bytes.iter().position(|b| *b == b'\n') {
            self.take(&bytes[..nl]);
            self.line += 1;
            self.emit(&mut each);
            bytes = &bytes[nl + 1..];
        }
        self.take(bytes);
    }

    /// The last line, if the upload did not end with a newline.
    pub fn finish(&mut self, mut each: impl FnMut(RawLine<'_>)) {
        if !self.buf.is_empty() || self.too_long {
            self.line += 1;
            self.emit(&mut each);
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.too_long {
            return;
        }
        if self.buf.len() + bytes.len() > self.max_line {
            self.too_long = true;
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    fn emit(&mut self, each: &mut impl FnMut(RawLine<'_>)) {
        if self.too_long {
            each((self.line, None));
        } else {
            let line = self.buf.strip_suffix(b"\r").unwrap_or(&self.buf);
            // Blank lines (a trailing newline, say) are not requests.
            if !line.iter().all(u8::is_ascii_whitespace) {
                each((self.line, Some(line)));
            }
        }
        self.buf.clear();
        self.too_long = false;
    }
}

/// Whether a MIME type names JSON Lines (`application/jsonl` and its aliases).
pub fn is_jsonl_mime(mime: &str) -> bool {
    let m = mime.to_ascii_lowercase();
    ["jsonl", "ndjson", "json-lines", "jsonlines"].iter().any(|k| m.contains(k))
}

/// google-genai sends `x-goog-api-key`; the OpenAI SDK `Authorization: Bearer`.
fn is_gemini(headers: &HeaderMap) -> bool {
    headers.contains_key("x-goog-api-key") && !headers.contains_key(header::AUTHORIZATION)
}

/// `GET /v1/batches`: OpenAI's list, or Gemini's under the SDK's default API version.
pub(super) async fn list_v1(
    state: State<Arc<Shared>>,
    query: Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if is_gemini(&headers) {
        gemini::list(state, query, headers).await
    } else {
        openai::list(state, query, headers).await
    }
}

/// `GET /v1/batches/{id}`: OpenAI's retrieve, or Gemini's get under v1.
pub(super) async fn get_v1(state: State<Arc<Shared>>, id: Path<String>, headers: HeaderMap) -> Response {
    if is_gemini(&headers) { gemini::get(state, id, headers).await } else { openai::retrieve(state, id, headers).await }
}

/// A JSON answer.
pub(super) fn ok(v: &Value) -> Response {
    wire::json_response(StatusCode::OK, v.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::prompt_tag;
    use super::*;

    fn lines(input: &[&[u8]], max: usize) -> Vec<(u64, Option<Vec<u8>>)> {
        let mut r = LineReader::new(max);
        let mut out = Vec::new();
        for chunk in input {
            r.push(chunk, |(n, l)| out.push((n, l.map(<[u8]>::to_vec))));
        }
        r.finish(|(n, l)| out.push((n, l.map(<[u8]>::to_vec))));
        out
    }

    #[test]
    fn lines_split_across_chunks_skip_blanks_and_bound_their_length() {
        let got = lines(&[b"{\"a\"", b":1}\r\n\n  \n{\"b\":2}\nxxxxxxxxxxxx", b"xx\n{}"], 10);
        assert_eq!(
            got,
            vec![
                (1, Some(b"{\"a\":1}".to_vec())),
                (4, Some(b"{\"b\":2}".to_vec())),
                (5, None),
                (6, Some(b"{}".to_vec())),
            ]
        );
        assert_eq!(lines(&[b"{}\n"], 10), vec![(1, Some(b"{}".to_vec()))]);
    }

    fn job(wire: Wire, plan: Plan, lines: usize) -> Job {
        let s = |secs: u64| Duration::from_secs(secs);
        let plan_line = LinePlan {
            key: "k".into(),
            tag: prompt_tag("p"),
            model: Arc::from("m"),
            size: "1K".into(),
            refs: Vec::new(),
            mask: None,
            outcome: Outcome::Image,
        };
        Job {
            wire,
            id: "j".into(),
            order: 0,
            ordinal: 0,
            display_name: None,
            metadata: None,
            model: "m".into(),
            endpoint: None,
            completion_window: None,
            input_file: "f".into(),
            created: Instant::now(),
            created_wall: SystemTime::now(),
            timeline: Timeline {
                pending: s(10),
                running: s(100),
                finalizing: s(10),
                expiry: s(1000),
                cancelling: s(5),
            },
            plan,
            lines: Arc::new(vec![plan_line; lines]),
            finish_order: Arc::new((0..lines as u32).collect()),
            ok_before: (0..=lines as u32).collect(),
            image_base: 0,
            cancelled: None,
            settled: false,
            results: None,
            files: ResultFiles::default(),
        }
    }

    #[test]
    fn a_job_runs_its_timeline() {
        let j = job(Wire::OpenAi, Plan::Run, 10);
        let at = |secs: u64| j.phase(j.created + Duration::from_secs(secs));
        assert_eq!(at(0), Phase::Pending);
        assert_eq!(at(10), Phase::Running(0));
        assert_eq!(at(65), Phase::Running(5), "lines finish evenly");
        assert_eq!(at(110), Phase::Finalizing);
        assert_eq!(at(120), Phase::Succeeded);
        assert_eq!(job(Wire::Gemini, Plan::Run, 10).phase_uncancelled(Duration::from_secs(110)), Phase::Succeeded);
    }

    #[test]
    fn jobs_stuck_failed_cancelled_or_too_slow_end_otherwise() {
        let stuck = job(Wire::Gemini, Plan::Stuck, 3);
        assert_eq!(stuck.phase_uncancelled(Duration::from_secs(999)), Phase::Pending);
        assert_eq!(stuck.phase_uncancelled(Duration::from_secs(1000)), Phase::Expired(0));
        let failed = job(Wire::Gemini, Plan::Fail(Value::Null), 3);
        assert_eq!(failed.phase_uncancelled(Duration::from_secs(10)), Phase::Failed);
        let mut slow = job(Wire::OpenAi, Plan::Run, 10);
        slow.timeline.expiry = Duration::from_secs(60);
        assert_eq!(slow.phase_uncancelled(Duration::from_secs(60)), Phase::Expired(5));
        let mut cancelled = job(Wire::OpenAi, Plan::Run, 10);
        cancelled.cancelled = Some(Duration::from_secs(30));
        let at = |secs: u64| cancelled.phase(cancelled.created + Duration::from_secs(secs));
        assert_eq!(at(32), Phase::Cancelling(2));
        assert_eq!(at(35), Phase::Cancelled(2));
        cancelled.wire = Wire::Gemini;
        assert_eq!(
            cancelled.phase(cancelled.created + Duration::from_secs(31)),
            Phase::Cancelled(2),
            "Gemini: at once"
        );
    }

    #[test]
    fn jsonl_mime_types() {
        assert!(is_jsonl_mime("application/jsonl"));
        assert!(is_jsonl_mime("application/x-ndjson"));
        assert!(!is_jsonl_mime("image/png"));
    }
}
