//! The online engine: one call per image. Pages of pending rows become one task per row;
//! each passes the gate (slot, rate, hold), calls the provider, and hands the image to
//! the row lifecycle (`rows.rs`).

use super::rows::{Maker, fail_row, finish};
use super::*;
use crate::provider::Said;

/// Hands every pending row to its own task, never more rows at once than can be in
/// flight or waiting to retry (so a million-row manifest is never all in memory).
pub(super) async fn dispatch(ctx: Arc<Ctx>, which: checkpoint::Pending) {
    let active = Arc::new(Semaphore::new(ctx.cfg.concurrency * 4 + 16));
    let mut tasks = JoinSet::new();
    let mut after = 0i64;
    'pages: loop {
        if ctx.stop.is_cancelled() {
            break;
        }
        let page = match ctx.ckpt.pending_page_where(after, PAGE, which).await {
            Ok(page) => page,
            Err(e) => {
                ctx.stop_run(StopReason::Local(e.to_string()));
                break;
            }
        };
        if page.is_empty() {
            break;
        }
        for row in page {
            after = row.seq;
            let slot = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break 'pages,
                slot = active.clone().acquire_owned() => slot.expect("never closed"),
            };
            let ctx = ctx.clone();
            tasks.spawn(async move {
                drive_row(&ctx, row).await;
                drop(slot);
            });
            while let Some(done) = tasks.try_join_next() {
                reap(done);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        reap(done);
    }
}

/// What a successful generation produced.
struct Made {
    generated: Generated,
    latency_s: f64,
    /// The model that made it (the fallback, if the row switched) and the size it was sent.
    made: MadeBy,
    /// The concurrency slot, kept until the image is on disk: a crash can then lose at
    /// most `--concurrency` paid-for images, as many as there are calls in flight.
    slot: OwnedSemaphorePermit,
}

/// One row from pending to done, failed, or back to pending if the run stops.
async fn drive_row(ctx: &Ctx, row: PendingRow) {
    if row.stashed {
        // Received in an earlier run, not yet written: no call needed.
        match ctx.ckpt.stashed(row.rid).await {
            Ok(Some(bytes)) if output::is_complete_image(&bytes) => {
                return finish(ctx, &row, bytes, Said::default(), Maker::Online { latency: None, made: None }).await;
            }
            // Damaged in the checkpoint: made again (the new image replaces the stash).
            Ok(_) => {}
            Err(e) => return ctx.stop_run(StopReason::Local(e.to_string())),
        }
    }
    let (url, model) = match row.result_url.clone() {
        Some(url) => (url, row.model.clone()),
        None => match generate(ctx, &row).await {
            Some(Made { generated: Generated::Image(bytes, said), latency_s, made, slot }) => {
                finish(ctx, &row, bytes, said, Maker::Online { latency: Some(latency_s), made: Some(made) }).await;
                drop(slot);
                return;
            }
            Some(Made { generated: Generated::Url(url), made, .. }) => (url, made.model),
            None => return,
        },
    };
    // The image exists at the provider: only the download is retried from here on.
    let resolution = row.size.resolution().as_str();
    let mut tries = 0;
    loop {
        tries += 1;
        let started_at = now_unix();
        let t = Instant::now();
        let result = tokio::select! {
            biased;
            _ = ctx.abort.cancelled() => return ctx.ckpt.mark_pending(row.rid),
            r = async {
                let _download = ctx.downloads.acquire().await.expect("never closed");
                ctx.caller.download(&url).await
            } => r,
        };
        record(ctx, &row, &model, AttemptKind::Download, resolution, started_at, t.elapsed(), Duration::ZERO, &result);
        match result {
            // The model and size were recorded with the URL.
            Ok(bytes) => {
                return finish(ctx, &row, bytes, Said::default(), Maker::Online { latency: None, made: None }).await;
            }
            Err(e) if tries < ctx.cfg.max_attempts && e.disposition() == Disposition::Retry => {
                let Some(wait) = ctx.retry_wait(tries, &e) else { return ctx.ckpt.mark_pending(row.rid) };
                if !wait_or_stop(ctx, wait).await {
                    return ctx.ckpt.mark_pending(row.rid);
                }
            }
            Err(e) => return fail_row(ctx, &row, &expired(&row, &e, tries)),
        }
    }
}

/// A result URL that failed every download attempt of this run: expired (storage then
/// answers 403, 404 or 410) or unreachable. The image was paid for; only the user may
/// decide to pay for a new one.
fn expired(row: &PendingRow, e: &CallError, tries: u32) -> CallError {
    let last = crate::secret::cut(&e.message, 200);
    let text = if e.should_retry == Some(false) {
        // Refused as written (not http(s), a metadata address): no rerun can fetch it.
        format!(
            "the result URL of row {} cannot be fetched ({last}); the image was paid for, but only a new one can be \
             had: run again with --regenerate-expired to pay for it",
            row.id
        )
    } else {
        format!(
            "the result URL of row {} has expired or is unreachable ({last}; {tries} download attempt(s)); the \
             image was paid for but cannot be fetched: run again to try the download again, or run again with \
             --regenerate-expired to pay for a new one",
            row.id
        )
    };
    let expired = CallError::new(ErrorClass::Download, text);
    match e.status {
        Some(status) => expired.with_status(status),
        None => expired,
    }
}

/// Sleeps `wait` (counted as a retry waiting); false when the run stopped meanwhile.
pub(super) async fn wait_or_stop(ctx: &Ctx, wait: Duration) -> bool {
    let counters = &ctx.progress.counters;
    Progress::add(&counters.retry_waiting, 1);
    let stopped = tokio::select! {
        biased;
        _ = ctx.stop.cancelled() => true,
        _ = tokio::time::sleep(wait) => false,
    };
    Progress::sub(&counters.retry_waiting, 1);
    !stopped
}

/// Attempts the generation until it succeeds, fails for good, or the run stops. Returns
/// None when the row's fate is already recorded.
async fn generate(ctx: &Ctx, row: &PendingRow) -> Option<Made> {
    let deadline = ctx.cfg.timeouts.get(row.size.resolution());
    let mut model = row.model.as_str();
    let mut size = resolve(ctx, row, model)?;
    let mut overloaded = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut admission = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => {
                ctx.ckpt.mark_pending(row.rid);
                return None;
            }
            a = ctx.gate.admit() => a,
        };
        if ctx.stop.is_cancelled() {
            ctx.ckpt.mark_pending(row.rid);
            return None;
        }
        // The row's references (uploads included) before the call is counted: an upload
        // that fails is retried like a call, but nothing was sent that could be paid
        // for. Done holding the slot, so the bytes loaded are bounded by the calls in
        // flight.
        let prepared = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => {
                ctx.ckpt.mark_pending(row.rid);
                return None;
            }
            p = ctx.attach.prepare(&ctx.caller, &row.refs, deadline) => p,
        };
        let (prepared, e) = match prepared {
            Ok(prepared) => match call(ctx, row, &mut admission, &prepared, model, &size, deadline).await? {
                Ok((generated, latency_s, made)) => {
                    ctx.attach.succeeded(&prepared);
                    return Some(Made { generated, latency_s, made, slot: admission.permit });
                }
                Err(e) => (prepared, e),
            },
            Err(NotReady::Call(e)) => (Prepared::default(), e),
            Err(NotReady::Local(why)) => {
                ctx.ckpt.mark_pending(row.rid);
                ctx.stop_run(StopReason::Local(why));
                return None;
            }
        };
        if e.class == ErrorClass::Unreachable {
            // The call reached nobody: not paid, and not one of the row's attempts. Every
            // call pauses while the endpoint is away; past --max-wait the run stops.
            attempt -= 1;
            let wait = ctx.unreachable(&e);
            drop(admission.permit);
            if wait.is_none() || !wait_or_stop(ctx, wait.unwrap_or_default()).await {
                ctx.ckpt.mark_pending(row.rid);
                return None;
            }
            continue;
        }
        if e.class == ErrorClass::FileGone {
            // Not paid for, and no fault of the row's: the reference is uploaded again
            // (once, however many rows saw it gone) and the row tried again at once.
            match ctx.attach.gone(&prepared, &e).await {
                Gone::UploadAgain => {
                    attempt -= 1;
                    drop(admission.permit);
                    continue;
                }
                Gone::Stop(why) => {
                    ctx.ckpt.mark_pending(row.rid);
                    ctx.stop_run(StopReason::Api(CallError { message: format!("{}; {why}", e.message), ..e }));
                    return None;
                }
            }
        }
        // No reference buffer is held through a wait: memory stays bounded by the calls
        // in flight.
        drop(prepared);
        if e.class == ErrorClass::Overloaded {
            overloaded += 1;
            // The fallback takes over only a row it can render as asked, references included.
            if let Some(fallback) = ctx.cfg.fallback_model.as_deref().filter(|f| *f != model)
                && overloaded >= ctx.cfg.fallback_after
                && (row.refs.is_empty()
                    || ctx
                        .attach
                        .references()
                        .fit(&ctx.cfg.catalog.reference_rules(ctx.cfg.dialect, fallback), &row.refs))
                && let Ok(fallback_size) =
                    ctx.cfg.catalog.resolve(ctx.cfg.dialect, fallback, row.size, row.aspect_ratio, ctx.cfg.size_policy)
            {
                model = fallback;
                size = fallback_size;
            }
        }
        // The slot is given up only after the hold or the stop is in force: the FIFO
        // queue hands it straight to the next call, which must see them.
        let disposition = e.disposition();
        let retry_in = match disposition {
            Disposition::Retry if attempt < ctx.cfg.max_attempts => {
                let Some(wait) = ctx.retry_wait(attempt, &e) else {
                    ctx.ckpt.mark_pending(row.rid);
                    return None;
                };
                if e.class == ErrorClass::RateLimited {
                    // The limit is the account's, not this row's: hold every worker.
                    ctx.hold(wait, &format!("the provider is rate limiting ({e})"));
                }
                Some(wait)
            }
            Disposition::StopRun => {
                ctx.ckpt.mark_pending(row.rid);
                ctx.stop_run(StopReason::Api(e));
                return None;
            }
            Disposition::Retry | Disposition::FailRow => None,
        };
        drop(admission.permit);
        match retry_in {
            Some(wait) => {
                if !wait_or_stop(ctx, wait).await {
                    ctx.ckpt.mark_pending(row.rid);
                    return None;
                }
            }
            None => {
                fail_row(ctx, row, &e);
                return None;
            }
        }
    }
}

/// One call of an admitted row: the budget held, the row marked running (committed), the
/// rate token, the request, its record. None when the row's fate is settled already
/// (the run stopped, or the call was abandoned); the caller handles an error.
async fn call(
    ctx: &Ctx,
    row: &PendingRow,
    admission: &mut limits::Admission,
    prepared: &Prepared,
    model: &str,
    size: &WireSize,
    deadline: Duration,
) -> Option<Result<(Generated, f64, MadeBy), CallError>> {
    let resolution = row.size.resolution();
    let counters = &ctx.progress.counters;
    let Some(reserved) = ctx.reserve(model, resolution) else {
        ctx.ckpt.mark_pending(row.rid);
        ctx.stop_run(StopReason::Budget(ctx.cfg.max_cost.unwrap_or_default()));
        return None;
    };
    if let Err(e) = ctx.ckpt.start_attempt(row.rid, now_unix()).await {
        ctx.stop_run(StopReason::Local(e.to_string()));
        return None;
    }
    // The rate token last, just before the request is written: see limits.rs.
    if !pace_or_stop(ctx, admission).await {
        ctx.release(reserved);
        ctx.ckpt.mark_pending_unsent(row.rid);
        return None;
    }
    let started_at = now_unix();
    Progress::add(&counters.in_flight, 1);
    let t = Instant::now();
    let job = Job {
        prompt: &row.prompt,
        model,
        size,
        response_format: response_format(ctx, model),
        params: &row.params,
        refs: &prepared.images,
        mask: prepared.mask.as_ref(),
    };
    let result = tokio::select! {
        biased;
        _ = ctx.abort.cancelled() => None,
        r = ctx.caller.generate(&job, deadline) => Some(r),
    };
    let took = t.elapsed();
    Progress::sub(&counters.in_flight, 1);
    if result.as_ref().is_none_or(|r| r.is_err()) {
        ctx.release(reserved);
    }
    let Some(result) = result else {
        // Abandoned by a second Ctrl-C: the row goes back to the queue, and the call,
        // which may have been billed, is counted with its outcome unknown.
        ctx.ckpt.record_abandoned(AttemptRecord {
            rid: row.rid,
            run_id: ctx.run_id,
            kind: AttemptKind::Generate,
            model: model.to_owned(),
            resolution: resolution.as_str(),
            started_at,
            duration_s: took.as_secs_f64(),
            wait_s: admission.waited.as_secs_f64(),
            http_status: None,
            error: None,
        });
        ctx.ckpt.mark_pending(row.rid);
        return None;
    };
    record(ctx, row, model, AttemptKind::Generate, resolution.as_str(), started_at, took, admission.waited, &result);

    if !matches!(&result, Err(e) if e.class == ErrorClass::Unreachable) {
        ctx.reachable();
    }
    let generated = match result {
        Ok(generated) => generated,
        Err(e) => return Some(Err(e)),
    };
    let latency_s = took.as_secs_f64();
    let made = MadeBy { model: model.to_owned(), size_sent: size.to_string() };
    if let Generated::Url(url) = &generated {
        // Committed before the download starts: from now on this row is only ever
        // downloaded, never generated again.
        if let Err(e) = ctx.ckpt.save_url(row.rid, url.clone(), latency_s, made.clone()).await {
            ctx.stop_run(StopReason::Local(e.to_string()));
            return None;
        }
    }
    ctx.progress.record_latency(resolution, latency_s);
    Some(Ok((generated, latency_s, made)))
}

/// Waits for the rate token; false when the run stopped first. A stop for `--max-cost`
/// lets the call go: its price is already held within the cap, so it was never the call
/// that would pass it.
async fn pace_or_stop(ctx: &Ctx, admission: &mut limits::Admission) -> bool {
    let pace = ctx.gate.pace(admission);
    tokio::pin!(pace);
    tokio::select! {
        biased;
        _ = ctx.abort.cancelled() => return false,
        _ = ctx.stop.cancelled() => {}
        _ = &mut pace => return true,
    }
    if !matches!(*ctx.stopped.lock().expect("stop lock"), Some(StopReason::Budget(_))) {
        return false;
    }
    tokio::select! {
        biased;
        _ = ctx.abort.cancelled() => false,
        _ = pace => true,
    }
}

/// What the row's model is sent for its size. The manifest check refused rows that
/// cannot be resolved, so a failure here means the catalogue changed under a stored row:
/// the row fails with the reason.
fn resolve(ctx: &Ctx, row: &PendingRow, model: &str) -> Option<WireSize> {
    match ctx.cfg.catalog.resolve(ctx.cfg.dialect, model, row.size, row.aspect_ratio, ctx.cfg.size_policy) {
        Ok(size) => Some(size),
        Err(why) => {
            fail_row(ctx, row, &CallError::new(ErrorClass::InvalidRequest, why));
            None
        }
    }
}

/// `response_format` goes only to a model the catalogue says takes it (the user's choice,
/// else base64); a model it does not know gets it only when the user asked for it.
pub(super) fn response_format(ctx: &Ctx, model: &str) -> Option<ResponseFormat> {
    match ctx.cfg.catalog.lookup(model) {
        Some(entry) if entry.response_format => Some(ctx.cfg.response_format.unwrap_or(ResponseFormat::B64Json)),
        Some(_) => None,
        None => ctx.cfg.response_format,
    }
}

#[allow(clippy::too_many_arguments)]
fn record<T>(
    ctx: &Ctx,
    row: &PendingRow,
    model: &str,
    kind: AttemptKind,
    resolution: &'static str,
    started_at: f64,
    took: Duration,
    waited: Duration,
    result: &Result<T, CallError>,
) {
    let (http_status, error) = match result {
        Ok(_) => (None, None),
        Err(e) => {
            ctx.progress.error(e.class);
            (e.status, Some((e.class, e.message.clone())))
        }
    };
    ctx.ckpt.record_attempt(AttemptRecord {
        rid: row.rid,
        run_id: ctx.run_id,
        kind,
        model: model.to_owned(),
        resolution,
        started_at,
        duration_s: took.as_secs_f64(),
        wait_s: waited.as_secs_f64(),
        http_status,
        error,
    });
}
