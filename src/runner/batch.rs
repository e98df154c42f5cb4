//! The batch engine: pending rows go to the provider's Batch API in jobs, at half price,
//! and their images come back in result files.
//!
//! A job's life, each step committed before the next is taken (`checkpoint/jobs.rs`):
//! rows assigned (token chosen) -> input built and uploaded -> "creating" recorded -> the
//! create request -> the job's name recorded -> polled every `--poll-interval` -> its result
//! file streamed line by line, each image written and its row marked done exactly as
//! online -> closed, rows it did not finish back in the queue.
//!
//! Never submitted twice: a job left "creating" by a crash (the create may or may not
//! have reached the provider) is looked for in the provider's job list by its token
//! before anything else is done; it is created only if no job carries the token.
//!
//! Stragglers: a row still not done `--batch-deadline` after its first submission has its
//! job cancelled (the lines already done are still taken) and goes online, or fails with
//! `--batch-fallback none`. The clock is the row's first submission, not its latest.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicBool;

use rand::Rng;

use super::rows::{Maker, fail_row, finish};
use super::*;
use crate::catalog::Dialect;
use crate::checkpoint::{JobCounts, JobRecord, JobStep, NewJob, Pending};
use crate::flags::BatchFallback;
use crate::provider::RefPart;
use crate::provider::batch::{BatchWire, JobState, JobStatus};

/// The most a job's result file is expected to weigh: result files over about 1 GB have
/// been reported to fail to download (wire-formats.md, "Gemini Batch API"), so jobs are cut
/// to stay under 900 MB by the catalogue's bytes per image (`[[batch]] result_bytes`).
pub const MAX_RESULT_BYTES: u64 = 900_000_000;

/// Deadline of one Batch API or Files API request (not of a result file, which is read
/// as long as it keeps coming).
const API_DEADLINE: Duration = Duration::from_secs(120);

/// Attempts of one Batch API request within a poll round, for transient errors.
const API_ATTEMPTS: u32 = 4;

struct BatchEngine {
    ctx: Arc<Ctx>,
    wire: BatchWire,
    /// OpenAI reference images uploaded for batch edits: content hash -> file id.
    openai_files: tokio::sync::Mutex<HashMap<String, String>>,
    /// The job states last announced, so progress notes only changes.
    announced: Mutex<HashMap<i64, String>>,
    /// `--max-cost` left no room for another row: nothing more is submitted, but the jobs
    /// already open (paid for) are still polled and their images taken; the run then ends
    /// as stopped by the budget.
    budget_reached: AtomicBool,
}

/// Runs the batch engine until every row is done or failed, the run stops, or no job is
/// left open and nothing is left to submit.
pub(super) async fn run(ctx: Arc<Ctx>) {
    let wire = BatchWire::new(ctx.cfg.dialect, &ctx.cfg.base_url);
    let e = BatchEngine {
        ctx: ctx.clone(),
        wire,
        openai_files: tokio::sync::Mutex::new(HashMap::new()),
        announced: Mutex::new(HashMap::new()),
        budget_reached: AtomicBool::new(false),
    };
    if let Err(why) = e.run().await {
        ctx.stop_run(why);
    }
}

impl BatchEngine {
    async fn run(&self) -> Result<(), StopReason> {
        let ctx = &self.ctx;
        let local = |e: CheckpointError| StopReason::Local(e.to_string());
        // Jobs open from earlier runs hold their price against --max-cost as this run's do.
        let open = ctx.ckpt.open_jobs().await.map_err(local)?;
        if let Some((_, committed)) = &ctx.budget {
            committed.fetch_add(open.iter().map(|j| j.price_micro).sum(), Ordering::SeqCst);
        }
        if !open.is_empty() {
            ctx.progress.note(&format!(
                "{} batch job(s) open from an earlier run: picking them up ({} row(s))",
                open.len(),
                open.iter().map(|j| j.lines).sum::<u64>()
            ));
        }
        let mut online: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            if ctx.stop.is_cancelled() {
                break;
            }
            let cutoff = now_unix() - ctx.cfg.batch_deadline.as_secs_f64();
            self.plan_jobs(cutoff).await?;
            let mut open = ctx.ckpt.open_jobs().await.map_err(local)?;
            for job in &mut open {
                if ctx.stop.is_cancelled() {
                    break;
                }
                self.advance(job, cutoff).await?;
            }
            self.stragglers(cutoff, &mut online).await?;
            let open = ctx.ckpt.open_jobs().await.map_err(local)?;
            let submittable = !self.budget_reached.load(Ordering::SeqCst)
                && !ctx.ckpt.pending_page_where(0, 1, Pending::BatchSince { cutoff }).await.map_err(local)?.is_empty();
            let online_busy = online.as_ref().is_some_and(|t| !t.is_finished());
            let late =
                !ctx.ckpt.pending_page_where(0, 1, Pending::BatchBefore { cutoff }).await.map_err(local)?.is_empty();
            let work_left = !open.is_empty() || submittable || online_busy || (late && self.fallback_online());
            if !work_left {
                break;
            }
            if ctx.stop.is_cancelled() {
                break;
            }
            // Poll again after --poll-interval, or at once when there is work that waits on
            // nothing (rows to submit right after a job closed).
            let wait = if open.iter().all(|j| j.step != JobStep::Open) && submittable {
                Duration::ZERO
            } else {
                ctx.cfg.poll_interval
            };
            tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if let Some(task) = online {
            let _ = task.await;
        }
        if self.budget_reached.load(Ordering::SeqCst) {
            ctx.stop_run(StopReason::Budget(ctx.cfg.max_cost.unwrap_or_default()));
        }
        Ok(())
    }

    fn fallback_online(&self) -> bool {
        self.ctx.cfg.batch_fallback == BatchFallback::Online
    }

    /// Rows past `--batch-deadline` and pending: sent online (one task at a time works
    /// through them), or failed.
    async fn stragglers(
        &self,
        cutoff: f64,
        online: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> Result<(), StopReason> {
        let ctx = &self.ctx;
        if online.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        let late = ctx
            .ckpt
            .pending_page_where(0, PAGE, Pending::BatchBefore { cutoff })
            .await
            .map_err(|e| StopReason::Local(e.to_string()))?;
        if late.is_empty() {
            return Ok(());
        }
        match ctx.cfg.batch_fallback {
            BatchFallback::Online => {
                ctx.progress.note(&format!(
                    "rows not done by batch within --batch-deadline {}: sending them online (at the online price)",
                    progress::human(ctx.cfg.batch_deadline.as_secs_f64())
                ));
                *online = Some(tokio::spawn(online::dispatch(ctx.clone(), Pending::BatchBefore { cutoff })));
            }
            BatchFallback::None => {
                let mut after = 0;
                let mut page = late;
                while !page.is_empty() {
                    for row in &page {
                        after = row.seq;
                        let why = format!(
                            "not done by the Batch API within --batch-deadline {} of its first submission \
                             (--batch-fallback none); run again with --batch-fallback online to make it online",
                            progress::human(ctx.cfg.batch_deadline.as_secs_f64())
                        );
                        fail_row(ctx, row, &CallError::new(ErrorClass::Timeout, why));
                    }
                    ctx.ckpt.flush().await.map_err(|e| StopReason::Local(e.to_string()))?;
                    page = ctx
                        .ckpt
                        .pending_page_where(after, PAGE, Pending::BatchBefore { cutoff })
                        .await
                        .map_err(|e| StopReason::Local(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    /// Groups the pending rows that may still go to batch into new jobs (one model and
    /// endpoint each, within the catalogue's limits), holding each job's batch price
    /// against `--max-cost`. Only assigns: submitting is `advance`'s.
    async fn plan_jobs(&self, cutoff: f64) -> Result<(), StopReason> {
        let ctx = &self.ctx;
        if self.budget_reached.load(Ordering::SeqCst) {
            return Ok(());
        }
        let local = |e: CheckpointError| StopReason::Local(e.to_string());
        let limits = ctx.cfg.catalog.batch_limits(ctx.cfg.dialect).cloned().ok_or_else(|| {
            StopReason::Local(format!("the catalogue has no Batch API limits for {}", ctx.cfg.dialect.as_str()))
        })?;
        let open = ctx.ckpt.open_jobs().await.map_err(local)?.len() as u64;
        let mut room = limits.max_open_jobs.map_or(u64::MAX, |m| m.saturating_sub(open));
        struct Group {
            model: String,
            endpoint: String,
            rids: Vec<i64>,
            result_bytes: u64,
            input_bytes: u64,
            price: u64,
        }
        let mut groups: HashMap<(String, String), Group> = HashMap::new();
        let mut after = 0;
        let mut over_budget = false;
        'pages: while room > 0 {
            let page = ctx.ckpt.pending_page_where(after, PAGE, Pending::BatchSince { cutoff }).await.map_err(local)?;
            if page.is_empty() {
                break;
            }
            for row in page {
                after = row.seq;
                if row.result_url.is_some() || row.stashed {
                    // Already paid for: the online engine finishes it without a call.
                    continue;
                }
                let edit = !row.refs.is_empty();
                let endpoint = self.wire.endpoint(&row.model, edit);
                let res = row.size.resolution();
                let result = limits.result_bytes(res);
                // The line as sent: the prompt, the request's fields, references inline
                // (Gemini sends a small single-use one inline: at most 1 MiB as base64).
                let input = row.prompt.len() as u64 * 2 + 2_048 + row.refs.images.len() as u64 * 1_500_000;
                let key = (row.model.clone(), endpoint.clone());
                let full = groups.get(&key).is_some_and(|g| {
                    limits.max_lines.is_some_and(|m| g.rids.len() as u64 >= m)
                        || g.result_bytes + result > MAX_RESULT_BYTES
                        || g.input_bytes + input > limits.max_input_bytes
                });
                if full {
                    let g = groups.remove(&key).expect("present");
                    self.assign(g.model, g.endpoint, g.rids, g.price).await?;
                    room -= 1;
                    if room == 0 {
                        break 'pages;
                    }
                }
                let price = ctx.cfg.prices.price(crate::catalog::Engine::Batch, &row.model, res).map_or(0, micro_usd);
                if !ctx.reserve_micro(price) {
                    over_budget = true;
                    break 'pages;
                }
                let g = groups.entry(key).or_insert_with(|| Group {
                    model: row.model.clone(),
                    endpoint,
                    rids: Vec::new(),
                    result_bytes: 0,
                    input_bytes: 0,
                    price: 0,
                });
                g.rids.push(row.rid);
                g.result_bytes += result;
                g.input_bytes += input;
                g.price += price;
            }
        }
        let mut rest: Vec<Group> = groups.into_values().collect();
        rest.sort_by_key(|g| g.rids[0]);
        for g in rest {
            if room == 0 {
                ctx.release(g.price);
                continue;
            }
            self.assign(g.model, g.endpoint, g.rids, g.price).await?;
            room -= 1;
        }
        if over_budget {
            ctx.progress.note(&format!(
                "--max-cost ${:.2} leaves no room for more rows at the batch price: the jobs already submitted \
                 are still collected, nothing more is submitted",
                ctx.cfg.max_cost.unwrap_or_default()
            ));
            self.budget_reached.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    async fn assign(&self, model: String, endpoint: String, rids: Vec<i64>, price: u64) -> Result<(), StopReason> {
        let token = format!("{:016x}", rand::rng().random::<u64>());
        let job = NewJob {
            token,
            dialect: self.ctx.cfg.dialect.as_str().to_owned(),
            model,
            endpoint,
            rids,
            price_micro: price,
        };
        let (_, n) = self.ctx.ckpt.assign_job(job).await.map_err(|e| StopReason::Local(e.to_string()))?;
        Progress::add(&self.ctx.progress.counters.in_batch, n);
        Ok(())
    }

    /// Takes one job as far as it goes now: submit it, find it, poll it, take its results.
    async fn advance(&self, job: &mut JobRecord, cutoff: f64) -> Result<(), StopReason> {
        let local = |e: CheckpointError| StopReason::Local(e.to_string());
        if job.step == JobStep::Creating {
            // The create may have reached the provider before the crash: adopt the job
            // that carries the token, if there is one.
            match self.find(&job.token).await {
                Ok(Some(found)) => {
                    self.ctx.progress.note(&format!(
                        "batch job {found} found at the provider by its token after an interrupted create: adopted, \
                         not created again"
                    ));
                    self.ctx.ckpt.job_step(job.jid, JobStep::Open, None, Some(found.clone())).await.map_err(local)?;
                    job.step = JobStep::Open;
                    job.name = Some(found);
                }
                Ok(None) => {}
                Err(e) => return self.api_failed(e, "listing batch jobs"),
            }
        }
        if matches!(job.step, JobStep::Assigned | JobStep::Uploaded | JobStep::Creating) {
            return self.submit(job).await;
        }
        let Some(name) = job.name.clone() else { return Ok(()) };
        let status = match self.with_retries("polling a batch job", |w, c, k| w.get(c, k, &name)).await {
            Ok(body) => match self.wire.parse_job(&body) {
                Ok(s) => s,
                Err(e) => return self.api_failed(e, "polling a batch job"),
            },
            Err(e) => return self.api_failed(e, "polling a batch job"),
        };
        self.ctx.ckpt.job_polled(
            job.jid,
            JobCounts {
                state: status.raw_state.clone(),
                result_file: status.result_file.clone(),
                error_file: status.error_file.clone(),
                succeeded: status.succeeded,
                failed: status.failed,
            },
        );
        self.announce(job, &status);
        if status.state.is_final() {
            return self.ingest(job, &status).await;
        }
        // Past the deadline: cancel, then take what it finished when it ends.
        if job.oldest_row.is_some_and(|t| t < cutoff) && job.cancel_sent_at.is_none() {
            self.ctx.progress.note(&format!(
                "batch job {name} has rows not done --batch-deadline after their first submission: cancelling it \
                 (lines it finished are still taken)"
            ));
            match self.with_retries("cancelling a batch job", |w, c, k| w.cancel(c, k, &name)).await {
                Ok(_) => self.ctx.ckpt.job_cancel_sent(job.jid).await.map_err(local)?,
                Err(e) => return self.api_failed(e, "cancelling a batch job"),
            }
        }
        Ok(())
    }

    fn announce(&self, job: &JobRecord, s: &JobStatus) {
        let mut seen = self.announced.lock().expect("announced lock");
        let text = s.state.as_str().to_owned();
        if seen.get(&job.jid) == Some(&text) {
            return;
        }
        seen.insert(job.jid, text);
        let age = now_unix() - job.created_at.unwrap_or(job.assigned_at);
        self.ctx.progress.note(&format!(
            "batch job {} ({} rows, {}): {}, {} done, {} failed, age {}",
            s.name,
            job.lines,
            job.model,
            s.raw_state,
            s.succeeded,
            s.failed,
            progress::human(age.max(0.0))
        ));
    }

    /// Builds the input file, uploads it, records "creating", creates the job, records
    /// its name.
    async fn submit(&self, job: &mut JobRecord) -> Result<(), StopReason> {
        let ctx = &self.ctx;
        let local = |e: CheckpointError| StopReason::Local(e.to_string());
        if job.step == JobStep::Assigned || job.input_file.is_none() {
            let rows = ctx.ckpt.job_rows(job.jid).await.map_err(local)?;
            if rows.is_empty() {
                ctx.ckpt.close_job(job.jid, Some("no rows left to submit".into())).await.map_err(local)?;
                return Ok(());
            }
            let input = match self.input(job, &rows).await {
                Ok(input) => input,
                Err(e) => return self.api_failed(e, "preparing a batch job's references"),
            };
            let display = format!("{}{}", crate::provider::batch::TOKEN_PREFIX, job.token);
            let base = ctx.cfg.base_url.clone();
            let uploaded = ctx
                .caller
                .upload_batch_input(&self.wire, &base, &display, bytes::Bytes::from(input), API_DEADLINE)
                .await;
            let file = match uploaded {
                Ok(file) => file,
                Err(e) => return self.api_failed(e, "uploading a batch input file"),
            };
            ctx.ckpt.job_step(job.jid, JobStep::Uploaded, Some(file.clone()), None).await.map_err(local)?;
            job.input_file = Some(file);
            job.step = JobStep::Uploaded;
        }
        let input_file = job.input_file.clone().expect("uploaded");
        // Recorded before the request leaves: from here on, a crash means "look for it".
        ctx.ckpt.job_step(job.jid, JobStep::Creating, None, None).await.map_err(local)?;
        job.step = JobStep::Creating;
        let (endpoint, token) = (job.endpoint.clone(), job.token.clone());
        let created = ctx
            .caller
            .batch_call(
                &self.wire,
                |c, k| self.wire.create(c, k, &endpoint, &input_file, &token),
                API_DEADLINE,
                "the answer",
            )
            .await
            .and_then(|body| self.wire.parse_job(&body));
        match created {
            Ok(status) => {
                ctx.ckpt.job_step(job.jid, JobStep::Open, None, Some(status.name.clone())).await.map_err(local)?;
                job.step = JobStep::Open;
                job.name = Some(status.name.clone());
                job.created_at = Some(now_unix());
                self.announce(job, &status);
                Ok(())
            }
            // Refused as written (a 400): no job was made. Its rows fail with the reason.
            Err(e) if e.disposition() == Disposition::FailRow => {
                let why = format!("the Batch API refused the job: {e}");
                self.fail_job_rows(job, ErrorClass::InvalidRequest, &why).await?;
                ctx.ckpt.close_job(job.jid, Some(why)).await.map_err(local)?;
                Ok(())
            }
            // Anything else may or may not have created it: the next round looks for it.
            Err(e) => self.api_failed(e, "creating a batch job"),
        }
    }

    /// The JSONL input of a job's rows.
    async fn input(&self, job: &JobRecord, rows: &[PendingRow]) -> Result<Vec<u8>, CallError> {
        let ctx = &self.ctx;
        let mut input = Vec::new();
        for row in rows {
            let size = match ctx.cfg.catalog.resolve(
                ctx.cfg.dialect,
                &row.model,
                row.size,
                row.aspect_ratio,
                ctx.cfg.size_policy,
            ) {
                Ok(size) => size,
                Err(why) => return Err(CallError::new(ErrorClass::InvalidRequest, format!("row {}: {why}", row.id))),
            };
            let (images, mask) = self.references(row).await?;
            let job_of = Job {
                prompt: &row.prompt,
                model: &row.model,
                size: &size,
                response_format: online::response_format(ctx, &row.model),
                params: &row.params,
                refs: &images,
                mask: mask.as_ref(),
                // A line per image: each has its own key, result and price.
                n: 1,
            };
            input.extend_from_slice(&self.wire.line(&row.id, &job.endpoint, &job_of));
        }
        Ok(input)
    }

    /// A row's references as its line names them: Gemini, as online (uploaded files, or
    /// small ones inline); OpenAI, files uploaded to `/v1/files` by content hash.
    async fn references(&self, row: &PendingRow) -> Result<(Vec<RefPart>, Option<RefPart>), CallError> {
        let ctx = &self.ctx;
        if row.refs.is_empty() {
            return Ok((Vec::new(), None));
        }
        match ctx.cfg.dialect {
            Dialect::Gemini => {
                let deadline = ctx.cfg.batch_deadline.max(Duration::from_secs(3600));
                match ctx.attach.prepare(&ctx.caller, &row.refs, deadline).await {
                    Ok(p) => Ok((p.images.clone(), p.mask.clone())),
                    Err(NotReady::Call(e)) => Err(e),
                    Err(NotReady::Local(why)) => Err(CallError::new(ErrorClass::InvalidRequest, why)),
                }
            }
            Dialect::Openai => {
                let mut images = Vec::new();
                for hash in &row.refs.images {
                    images.push(self.openai_file(hash).await?);
                }
                let mask = match &row.refs.mask {
                    Some(hash) => Some(self.openai_file(hash).await?),
                    None => None,
                };
                Ok((images, mask))
            }
        }
    }

    /// The OpenAI file id of a reference, uploaded once per content hash and recorded
    /// (OpenAI keeps such files until they are deleted).
    async fn openai_file(&self, hash: &str) -> Result<RefPart, CallError> {
        let ctx = &self.ctx;
        let endpoint = format!("openai-files {}", ctx.cfg.base_url);
        let mut cache = self.openai_files.lock().await;
        if cache.is_empty() {
            let known = ctx.ckpt.uploads(endpoint.clone(), now_unix()).await.unwrap_or_default();
            cache.extend(known.into_iter().map(|u| (u.hash, u.name)));
        }
        let file = ctx.attach.references().get(hash).cloned().ok_or_else(|| {
            CallError::new(ErrorClass::InvalidRequest, format!("reference {hash} was not read by the manifest check"))
        })?;
        if let Some(id) = cache.get(hash) {
            return Ok(RefPart::File { mime: file.mime, uri: id.clone() });
        }
        let path = file.path.clone();
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            CallError::new(ErrorClass::InvalidRequest, format!("cannot read reference {}: {e}", path.display()))
        })?;
        if format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes)) != hash {
            return Err(CallError::new(
                ErrorClass::InvalidRequest,
                format!("reference {} changed during the run: run again to take the new contents", path.display()),
            ));
        }
        let ext = file.mime.rsplit('/').next().unwrap_or("png");
        let id = ctx
            .caller
            .upload_openai_image(
                &self.wire,
                &format!("{hash}.{ext}"),
                file.mime,
                bytes::Bytes::from(bytes),
                API_DEADLINE,
            )
            .await?;
        let now = now_unix();
        let upload = crate::checkpoint::Upload {
            hash: hash.to_owned(),
            name: id.clone(),
            uri: id.clone(),
            mime: file.mime.to_owned(),
            expires_at: f64::MAX,
            uploaded_at: now,
        };
        ctx.ckpt
            .save_upload(endpoint, upload)
            .await
            .map_err(|e| CallError::new(ErrorClass::InvalidRequest, e.to_string()))?;
        cache.insert(hash.to_owned(), id.clone());
        Ok(RefPart::File { mime: file.mime, uri: id })
    }

    /// The job carrying `token` among the provider's jobs, if any (every page read).
    async fn find(&self, token: &str) -> Result<Option<String>, CallError> {
        find_by_token(&self.ctx.caller, &self.wire, token).await
    }

    /// A Batch API request, tried again after transient errors with backoff (honouring
    /// the server's advice).
    async fn with_retries(
        &self,
        what: &str,
        build: impl Fn(&BatchWire, &reqwest::Client, Option<&crate::secret::ApiKey>) -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, CallError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.ctx.caller.batch_call(&self.wire, |c, k| build(&self.wire, c, k), API_DEADLINE, what).await {
                Ok(body) => return Ok(body),
                Err(e) if e.disposition() == Disposition::Retry && attempt < API_ATTEMPTS => {
                    let Some(wait) = self.ctx.retry_wait(attempt, &e) else { return Err(e) };
                    if e.class == ErrorClass::RateLimited {
                        self.ctx.hold(wait, &format!("the Batch API is rate limiting ({e})"));
                    }
                    if !online::wait_or_stop(&self.ctx, wait).await {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A Batch API request that failed after its retries: transient errors leave the job
    /// as it is for the next round; errors that stop a run stop it.
    fn api_failed(&self, e: CallError, what: &str) -> Result<(), StopReason> {
        match e.disposition() {
            Disposition::StopRun => Err(StopReason::Api(e)),
            _ => {
                self.ctx.progress.note(&format!("bulkgen: {what} failed ({e}); trying again at the next poll"));
                Ok(())
            }
        }
    }

    async fn fail_job_rows(&self, job: &JobRecord, class: ErrorClass, why: &str) -> Result<(), StopReason> {
        let rows = self.ctx.ckpt.job_rows(job.jid).await.map_err(|e| StopReason::Local(e.to_string()))?;
        for row in rows {
            self.ctx.ckpt.job_row_failed(row.rid, class, why.to_owned(), true);
            Progress::add(&self.ctx.progress.counters.failed, 1);
            Progress::sub(&self.ctx.progress.counters.in_batch, 1);
            self.ctx.note_failure(&row, &CallError::new(class, why.to_owned()));
        }
        Ok(())
    }

    /// A finished job: every result line streamed, matched to its row by key, its image
    /// written and the row marked done exactly as online; per-line errors classified as
    /// online ones (final ones fail the row, transient ones send it back to the queue).
    /// Then the job is closed, rows it did not finish back in the queue. A crash midway
    /// reads the file again and writes nothing twice (a row already done is not in the
    /// job any more).
    async fn ingest(&self, job: &JobRecord, status: &JobStatus) -> Result<(), StopReason> {
        let ctx = &self.ctx;
        let local = |e: CheckpointError| StopReason::Local(e.to_string());
        let rows = ctx.ckpt.job_rows(job.jid).await.map_err(local)?;
        let by_id: HashMap<String, PendingRow> = rows.into_iter().map(|r| (r.id.clone(), r)).collect();
        let by_id = Arc::new(Mutex::new(by_id));
        let made_at = job.created_at.unwrap_or(job.assigned_at);
        let files: Vec<&String> = status.result_file.iter().chain(&status.error_file).collect();
        // Lines are parsed, checked and written LINES_IN_FLIGHT at a time, while the next
        // ones are read: one at a time, reading waited on every write.
        let slots = Arc::new(tokio::sync::Semaphore::new(LINES_IN_FLIGHT));
        let mut taking = tokio::task::JoinSet::new();
        // Why reading stopped early: the result to return once the lines read are taken.
        let mut stopped: Option<Result<(), StopReason>> = None;
        'files: for file in files {
            let idle = ctx.cfg.download_timeout.max(Duration::from_secs(1));
            let mut lines = match ctx.caller.open_result_file(&self.wire, file, idle).await {
                Ok(lines) => lines,
                Err(e) => {
                    stopped = Some(self.api_failed(e, &format!("downloading the result file {file}")));
                    break 'files;
                }
            };
            loop {
                if ctx.abort.is_cancelled() {
                    stopped = Some(Ok(()));
                    break 'files;
                }
                let bytes = match lines.next_line().await {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(e) => {
                        stopped = Some(self.api_failed(e, &format!("reading the result file {file}")));
                        break 'files;
                    }
                };
                let slot = slots.clone().acquire_owned().await.expect("never closed");
                let taker = LineTaker {
                    ctx: ctx.clone(),
                    wire: self.wire.clone(),
                    by_id: by_id.clone(),
                    jid: job.jid,
                    made_at,
                };
                let file = file.clone();
                taking.spawn(async move {
                    taker.take(&file, bytes).await;
                    drop(slot);
                });
                // A finished task is kept until joined: reap them, or a 50,000-line file
                // grows the set by every line (bench/batch.py saw RSS climb 70 -> 130 MB).
                while taking.try_join_next().is_some() {}
            }
        }
        // Every line read is taken before the job is closed or the run goes on.
        while taking.join_next().await.is_some() {}
        if let Some(stopped) = stopped {
            return stopped;
        }
        let by_id = std::mem::take(&mut *by_id.lock().expect("rows lock"));
        let note = match status.state {
            JobState::Succeeded => None,
            _ => Some(match &status.error {
                Some(err) => format!("{}: {err}", status.raw_state),
                None => status.raw_state.clone(),
            }),
        };
        if let Some(note) = &note
            && !by_id.is_empty()
        {
            ctx.progress.note(&format!(
                "batch job {} ended {note}: its {} unfinished row(s) go back to the queue",
                status.name,
                by_id.len()
            ));
        }
        ctx.ckpt.flush().await.map_err(local)?;
        let back = ctx.ckpt.close_job(job.jid, note).await.map_err(local)?;
        Progress::sub(&ctx.progress.counters.in_batch, back.len() as u64);
        // Their price is no longer held: they were not made.
        let held: u64 = back
            .iter()
            .filter_map(|(m, r)| {
                Resolution::parse(r).and_then(|r| ctx.cfg.prices.price(crate::catalog::Engine::Batch, m, r))
            })
            .map(micro_usd)
            .sum();
        ctx.release(held);
        Ok(())
    }
}

/// Result lines parsed, checked and written at once, while the next are read (each holds
/// at most one line and its decoded image, so memory stays bounded).
const LINES_IN_FLIGHT: usize = 8;

/// Takes one result line of a job: matched by key to a row still in the job, recorded as
/// the row's batch attempt, and its image written exactly as online (or its error
/// classified as online).
struct LineTaker {
    ctx: Arc<Ctx>,
    wire: BatchWire,
    /// The job's rows not yet taken, by id: a key is taken once.
    by_id: Arc<Mutex<HashMap<String, PendingRow>>>,
    jid: i64,
    made_at: f64,
}

impl LineTaker {
    async fn take(self, file: &str, line: Vec<u8>) {
        let ctx = &self.ctx;
        let (key, result) = match self.wire.parse_line(&line) {
            Ok(parsed) => parsed,
            Err(why) => {
                ctx.progress.note(&format!("bulkgen: a line of the result file {file} is skipped: {why}"));
                return;
            }
        };
        drop(line);
        let Some(row) = self.by_id.lock().expect("rows lock").remove(&key) else { return };
        let took = now_unix() - self.made_at;
        let record = AttemptRecord {
            rid: row.rid,
            run_id: ctx.run_id,
            kind: AttemptKind::Batch,
            model: row.model.clone(),
            resolution: row.size.resolution().as_str(),
            started_at: self.made_at,
            duration_s: took.max(0.0),
            wait_s: 0.0,
            http_status: result.as_ref().err().and_then(|e| e.status),
            error: result.as_ref().err().map(|e| (e.class, e.message.clone())),
        };
        ctx.ckpt.record_attempt(record);
        Progress::sub(&ctx.progress.counters.in_batch, 1);
        match result {
            Ok(Generated::Image(bytes, said)) => {
                let size_sent = ctx
                    .cfg
                    .catalog
                    .resolve(ctx.cfg.dialect, &row.model, row.size, row.aspect_ratio, ctx.cfg.size_policy)
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                let made = MadeBy { model: row.model.clone(), size_sent };
                finish(ctx, &row, bytes, said, Maker::Batch { jid: self.jid, made }).await;
            }
            Ok(Generated::Url(..)) => {
                let e = CallError::new(ErrorClass::BadResponse, "a batch result line gave a URL, not the image");
                line_failed(ctx, &row, &e);
            }
            Err(e) => line_failed(ctx, &row, &e),
        }
    }
}

/// A per-line error: final classes fail the row; the rest send it back to the queue
/// (submitted again, its deadline clock kept).
fn line_failed(ctx: &Ctx, row: &PendingRow, e: &CallError) {
    ctx.progress.error(e.class);
    let price =
        ctx.cfg.prices.price(crate::catalog::Engine::Batch, &row.model, row.size.resolution()).map_or(0, micro_usd);
    ctx.release(price);
    if e.disposition() == Disposition::FailRow {
        ctx.ckpt.job_row_failed(row.rid, e.class, e.detail(), true);
        Progress::add(&ctx.progress.counters.failed, 1);
        ctx.note_failure(row, e);
    } else {
        ctx.ckpt.job_row_failed(row.rid, e.class, e.detail(), false);
    }
}

/// `bulkgen cancel`: cancels the folder's open batch jobs at the provider and says what
/// was already paid for. Jobs keep their rows: the next `--engine batch` run takes the
/// lines they finished before the cancel and sends the rest again (or online). A job never
/// created (no create sent) is closed at once; one whose create was interrupted is looked
/// for by its token first.
pub async fn cancel(cfg: RunConfig) -> Result<String, RunError> {
    let out = OutDir::create(&cfg.out).map_err(|source| RunError::Output { path: cfg.out.clone(), source })?;
    let _lock = output::lock(&out.root).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => RunError::Settings(e.to_string()),
        _ => RunError::Output { path: out.root.clone(), source: e },
    })?;
    let ckpt = Arc::new(Checkpoint::open(&out.root)?);
    let policy = HttpPolicy { connect_timeout: cfg.connect_timeout, http2: cfg.http2, concurrency: 4 };
    let limits =
        http::CallLimits { download_timeout: cfg.download_timeout, max_response_bytes: cfg.max_response_bytes };
    let caller = Caller::new(
        http::client(policy)?,
        http::download_client(policy)?,
        provider::for_dialect(cfg.dialect, &cfg.base_url),
        cfg.api_key.clone(),
        limits,
    );
    let wire = BatchWire::new(cfg.dialect, &cfg.base_url);
    let mut text = String::new();
    let open = ckpt.open_jobs().await?;
    let (mut cancelled, mut closed, mut made) = (0u64, 0u64, 0u64);
    for job in &open {
        let mut name = job.name.clone();
        if name.is_none() && job.step == JobStep::Creating {
            name = find_by_token(&caller, &wire, &job.token).await.map_err(|e| RunError::Settings(e.to_string()))?;
            if let Some(n) = &name {
                ckpt.job_step(job.jid, JobStep::Open, None, Some(n.clone())).await?;
            }
        }
        let Some(name) = name else {
            ckpt.close_job(job.jid, Some("cancelled before it was created".into())).await?;
            closed += 1;
            let _ = writeln!(text, "job of {} row(s) never created: closed, its rows back in the queue", job.lines);
            continue;
        };
        let answer = caller
            .batch_call(&wire, |c, k| wire.cancel(c, k, &name), API_DEADLINE, "the answer")
            .await
            .map_err(|e| RunError::Settings(format!("cancelling batch job {name}: {e}")))?;
        drop(answer);
        ckpt.job_cancel_sent(job.jid).await?;
        let status = caller
            .batch_call(&wire, |c, k| wire.get(c, k, &name), API_DEADLINE, "the answer")
            .await
            .and_then(|b| wire.parse_job(&b));
        let (state, done) = match &status {
            Ok(s) => (s.raw_state.clone(), s.succeeded),
            Err(_) => (job.state.clone().unwrap_or_else(|| "?".into()), job.succeeded),
        };
        made += done;
        cancelled += 1;
        let _ = writeln!(
            text,
            "job {name} ({} row(s), {}): cancel sent, now {state}; {done} image(s) already made by the provider",
            job.lines, job.model
        );
    }
    ckpt.flush().await?;
    ckpt.close().await?;
    if open.is_empty() {
        let _ = writeln!(text, "no open batch jobs in {}", out.root.display());
    } else {
        let _ = writeln!(
            text,
            "{cancelled} job(s) cancelled, {closed} closed before creation. The provider bills the {made} image(s) \
             its jobs made before the cancel: run the same `bulkgen run ... --engine batch` command again to collect \
             them (nothing is paid twice); the rows they did not make go back to the queue."
        );
    }
    Ok(text)
}

async fn find_by_token(caller: &Caller, wire: &BatchWire, token: &str) -> Result<Option<String>, CallError> {
    let mut page: Option<String> = None;
    loop {
        let body =
            caller.batch_call(wire, |c, k| wire.list(c, k, page.as_deref()), API_DEADLINE, "the job list").await?;
        let (jobs, next) = wire.parse_list(&body)?;
        if let Some(found) = jobs.into_iter().find(|j| j.token.as_deref() == Some(token)) {
            return Ok(Some(found.name));
        }
        match next {
            Some(n) if Some(&n) != page.as_ref() => page = Some(n),
            _ => return Ok(None),
        }
    }
}
