//! The online engine: a call per image, or per group of images of one manifest row where
//! the model takes `n`. Pages of pending rows become one task per call; each passes the
//! gate (slot, rate, hold), calls the provider, and hands each image to the row lifecycle
//! (`rows.rs`).

use super::rows::{Maker, fail_row, finish};
use super::*;
use crate::provider::Said;

/// Hands every pending row to a task — alone, or with the other images of its manifest
/// row that one call can ask for — never more tasks at once than can be in flight or
/// waiting to retry (so a million-row manifest is never all in memory).
pub(super) async fn dispatch(ctx: Arc<Ctx>, which: checkpoint::Pending) {
    let active = Arc::new(Semaphore::new(ctx.cfg.concurrency * 4 + 16));
    let mut tasks = JoinSet::new();
    let mut after = 0i64;
    let mut group: Vec<PendingRow> = Vec::new();
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
            if joins(&ctx, &group, &row) {
                group.push(row);
                continue;
            }
            let ready = std::mem::replace(&mut group, vec![row]);
            if ready.is_empty() {
                continue;
            }
            let slot = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break 'pages,
                slot = active.clone().acquire_owned() => slot.expect("never closed"),
            };
            let ctx = ctx.clone();
            tasks.spawn(async move {
                drive(&ctx, ready).await;
                drop(slot);
            });
            while let Some(done) = tasks.try_join_next() {
                reap(done);
            }
        }
    }
    // The last group (pages read to the end); a stopped run leaves it pending.
    if !group.is_empty() && !ctx.stop.is_cancelled() {
        drive(&ctx, group).await;
    }
    while let Some(done) = tasks.join_next().await {
        reap(done);
    }
}

/// Whether `row` goes into the same call as `group`: another image of the same manifest
/// row (so the same prompt, size, model, params and references), needing a generation,
/// within what one call of the model may ask for (and of the fallback, which may take the
/// call over).
fn joins(ctx: &Ctx, group: &[PendingRow], row: &PendingRow) -> bool {
    let Some(lead) = group.first() else { return false };
    let needs_call = |r: &PendingRow| !r.stashed && r.result_url.is_none();
    // The cheap tests first: most rows are another manifest row's.
    row.row_id == lead.row_id
        && needs_call(row)
        && needs_call(lead)
        && row.prompt == lead.prompt
        && row.size == lead.size
        && row.aspect_ratio == lead.aspect_ratio
        && row.model == lead.model
        && row.params == lead.params
        && row.refs == lead.refs
        && (group.len() as u32) < images_per_call(ctx, lead)
}

/// How many images of `row`'s manifest row one call may ask for: the model's `n`
/// (`RunConfig::images_per_call`), the fallback's too (it may take the call over), and no
/// more than one answer within `--max-response-bytes` can hold at the size sent. Each
/// image is counted at its size as uncompressed RGBA in base64, which no PNG, JPEG or
/// WebP of it passes by more than the margin: an answer cut at the cap would throw away
/// images already paid for (gpt-image-2 at 3840x2160 under the 128 MiB default: 3).
fn images_per_call(ctx: &Ctx, row: &PendingRow) -> u32 {
    let cfg = &ctx.cfg;
    let mut most = u32::MAX;
    for model in std::iter::once(row.model.as_str()).chain(cfg.fallback_model.as_deref()) {
        most = most.min(cfg.images_per_call(model));
        if most <= 1 {
            return 1;
        }
        let sent = cfg.catalog.resolve(cfg.dialect, model, row.size, row.aspect_ratio, cfg.size_policy);
        if let Ok(WireSize::Pixels { width, height }) = sent {
            let per_image = u64::from(width) * u64::from(height) * 4 * 4 / 3 + 64 * 1024;
            most = most.min(u32::try_from(cfg.max_response_bytes / per_image).unwrap_or(u32::MAX));
        }
    }
    most.max(1)
}

/// What a successful generation produced.
struct Made {
    /// One per image the answer held, for the call's rows in order (the first
    /// `images.len()` of them).
    images: Vec<Generated>,
    /// How many of the call's rows were sent (asked for): the rest were left for a later
    /// call (`--max-cost` held the price of fewer).
    asked: usize,
    latency_s: f64,
    /// The model that made it (the fallback, if the row switched) and the size it was sent.
    made: MadeBy,
    /// The concurrency slot, kept until the images are on disk: a crash can then lose at
    /// most `--concurrency` paid-for calls' images, as many as there are calls in flight.
    slot: OwnedSemaphorePermit,
}

/// The rows of one call from pending to done, failed, or back to pending if the run
/// stops. Images an answer did not hold are asked for again in a further call.
async fn drive(ctx: &Ctx, mut rows: Vec<PendingRow>) {
    if let [row] = rows.as_slice() {
        if row.stashed {
            // Received in an earlier run, not yet written: no call needed.
            match ctx.ckpt.stashed(row.rid).await {
                Ok(Some(bytes)) if output::is_complete_image(&bytes) => {
                    let maker = Maker::Online { latency: None, made: None };
                    return finish(ctx, row, bytes, Said::default(), maker).await;
                }
                // Damaged in the checkpoint: made again (the new image replaces the stash).
                Ok(_) => {}
                Err(e) => return ctx.stop_run(StopReason::Local(e.to_string())),
            }
        }
        if let Some(url) = row.result_url.clone() {
            // The model and size were recorded with the URL.
            return download(ctx, row, url, row.model.clone()).await;
        }
    }
    while !rows.is_empty() {
        let Some(Made { images, asked, latency_s, made, slot }) = generate(ctx, &rows).await else { return };
        let got = images.len().min(asked);
        let rest = rows.split_off(got);
        let short = asked - got;
        if short > 0 {
            // Sent and not answered (the attempt recorded so): not made, so asked for again.
            for row in &rest[..short] {
                ctx.ckpt.mark_pending(row.rid);
            }
            ctx.said_short.call_once(|| {
                ctx.progress.note(&format!(
                    "bulkgen: an answer held {got} of the {asked} images asked for in one call (row {}); the rest \
                     are asked for again. If the endpoint ignores `n`, run with --images-per-call 1",
                    rows[0].row_id
                ))
            });
        }
        let mut urls = Vec::new();
        for (row, image) in rows.iter().zip(images) {
            match image {
                Generated::Image(bytes, said) => {
                    let maker = Maker::Online { latency: Some(latency_s), made: Some(made.clone()) };
                    finish(ctx, row, bytes, said, maker).await;
                }
                Generated::Url(url, _) => urls.push((row, url)),
            }
        }
        drop(slot);
        // The images exist at the provider: only the downloads are retried from here on.
        let downloads = urls.into_iter().map(|(row, url)| download(ctx, row, url, made.model.clone()));
        futures::future::join_all(downloads).await;
        // The rest go round again (a stopped run puts them back as pending there).
        rows = rest;
    }
}

/// Fetches a row's image from its committed result URL, retried as a download.
async fn download(ctx: &Ctx, row: &PendingRow, url: String, model: String) {
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
        record(ctx, row, &model, AttemptKind::Download, resolution, started_at, t.elapsed(), Duration::ZERO, &result);
        if let Err(e) = &result {
            ctx.progress.error(e.class);
        }
        match result {
            // The model and size were recorded with the URL.
            Ok(bytes) => {
                return finish(ctx, row, bytes, Said::default(), Maker::Online { latency: None, made: None }).await;
            }
            Err(e) if tries < ctx.cfg.max_attempts && e.disposition() == Disposition::Retry => {
                let Some(wait) = ctx.retry_wait(tries, &e) else { return ctx.ckpt.mark_pending(row.rid) };
                if !wait_or_stop(ctx, wait).await {
                    return ctx.ckpt.mark_pending(row.rid);
                }
            }
            Err(e) => return fail_row(ctx, row, &expired(row, &e, tries)),
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

/// Every row of a call back in the queue.
fn pending(ctx: &Ctx, rows: &[PendingRow]) {
    for row in rows {
        ctx.ckpt.mark_pending(row.rid);
    }
}

/// Attempts the generation of a call's rows (all alike but for their ids) until it
/// succeeds, fails for good, or the run stops. Returns None when the rows' fate is
/// already recorded.
async fn generate(ctx: &Ctx, rows: &[PendingRow]) -> Option<Made> {
    let lead = &rows[0];
    let deadline = ctx.cfg.timeouts.get(lead.size.resolution());
    let mut model = lead.model.as_str();
    let mut size = resolve(ctx, rows, model)?;
    let mut overloaded = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut admission = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => {
                pending(ctx, rows);
                return None;
            }
            a = ctx.gate.admit() => a,
        };
        if ctx.stop.is_cancelled() {
            pending(ctx, rows);
            return None;
        }
        // The rows' references (uploads included) before the call is counted: an upload
        // that fails is retried like a call, but nothing was sent that could be paid
        // for. Done holding the slot, so the bytes loaded are bounded by the calls in
        // flight.
        let prepared = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => {
                pending(ctx, rows);
                return None;
            }
            p = ctx.attach.prepare(&ctx.caller, &lead.refs, deadline) => p,
        };
        let (prepared, e) = match prepared {
            Ok(prepared) => match call(ctx, rows, &mut admission, &prepared, model, &size, deadline).await? {
                Ok((images, asked, latency_s, made)) => {
                    ctx.attach.succeeded(&prepared);
                    return Some(Made { images, asked, latency_s, made, slot: admission.permit });
                }
                Err(e) => (prepared, e),
            },
            Err(NotReady::Call(e)) => (Prepared::default(), e),
            Err(NotReady::Local(why)) => {
                pending(ctx, rows);
                ctx.stop_run(StopReason::Local(why));
                return None;
            }
        };
        if e.class == ErrorClass::Unreachable {
            // The call reached nobody: not paid, and not one of the rows' attempts. Every
            // call pauses while the endpoint is away; past --max-wait the run stops.
            attempt -= 1;
            let wait = ctx.unreachable(&e);
            drop(admission.permit);
            if wait.is_none() || !wait_or_stop(ctx, wait.unwrap_or_default()).await {
                pending(ctx, rows);
                return None;
            }
            continue;
        }
        if e.class == ErrorClass::FileGone {
            // Not paid for, and no fault of the rows': the reference is uploaded again
            // (once, however many rows saw it gone) and the call tried again at once.
            match ctx.attach.gone(&prepared, &e).await {
                Gone::UploadAgain => {
                    attempt -= 1;
                    drop(admission.permit);
                    continue;
                }
                Gone::Stop(why) => {
                    pending(ctx, rows);
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
            // The fallback takes over only rows it can render as asked, references included.
            if let Some(fallback) = ctx.cfg.fallback_model.as_deref().filter(|f| *f != model)
                && overloaded >= ctx.cfg.fallback_after
                && (lead.refs.is_empty()
                    || ctx
                        .attach
                        .references()
                        .fit(&ctx.cfg.catalog.reference_rules(ctx.cfg.dialect, fallback), &lead.refs))
                && let Ok(fallback_size) = ctx.cfg.catalog.resolve(
                    ctx.cfg.dialect,
                    fallback,
                    lead.size,
                    lead.aspect_ratio,
                    ctx.cfg.size_policy,
                )
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
                    pending(ctx, rows);
                    return None;
                };
                if e.class == ErrorClass::RateLimited {
                    // The limit is the account's, not this call's: hold every worker.
                    ctx.hold(wait, &format!("the provider is rate limiting ({e})"));
                }
                Some(wait)
            }
            Disposition::StopRun => {
                pending(ctx, rows);
                ctx.stop_run(StopReason::Api(e));
                return None;
            }
            Disposition::Retry | Disposition::FailRow => None,
        };
        drop(admission.permit);
        match retry_in {
            Some(wait) => {
                if !wait_or_stop(ctx, wait).await {
                    pending(ctx, rows);
                    return None;
                }
            }
            None => {
                for row in rows {
                    fail_row(ctx, row, &e);
                }
                return None;
            }
        }
    }
}

/// What one call gave: its images (for the first rows, in order), how many rows it asked
/// for, its latency and what made them.
type Answer = (Vec<Generated>, usize, f64, MadeBy);

/// One call of admitted rows: the budget held (for as many of them as the cap allows, at
/// least one), the rows marked running (committed), the rate token, the request (`n` =
/// the rows sent), its record per row. None when the rows' fate is settled already (the
/// run stopped, or the call was abandoned); the caller handles an error.
async fn call(
    ctx: &Ctx,
    rows: &[PendingRow],
    admission: &mut limits::Admission,
    prepared: &Prepared,
    model: &str,
    size: &WireSize,
    deadline: Duration,
) -> Option<Result<Answer, CallError>> {
    let lead = &rows[0];
    let resolution = lead.size.resolution();
    let counters = &ctx.progress.counters;
    let mut reserved = 0;
    let mut sent = 0;
    for _ in rows {
        match ctx.reserve(model, resolution) {
            Some(price) => {
                reserved += price;
                sent += 1;
            }
            None => {
                // The cap is reached: the images whose price is held go (the run lets a
                // call held within the cap go), the rest stay pending.
                ctx.stop_run(StopReason::Budget(ctx.cfg.max_cost.unwrap_or_default()));
                break;
            }
        }
    }
    if sent == 0 {
        pending(ctx, rows);
        return None;
    }
    let (rows, unsent) = rows.split_at(sent);
    pending(ctx, unsent);
    if let Err(e) = ctx.ckpt.start_attempt(rows.iter().map(|r| r.rid).collect(), now_unix()).await {
        ctx.stop_run(StopReason::Local(e.to_string()));
        return None;
    }
    // The rate token last, just before the request is written: see limits.rs.
    if !pace_or_stop(ctx, admission).await {
        ctx.release(reserved);
        for row in rows {
            ctx.ckpt.mark_pending_unsent(row.rid);
        }
        return None;
    }
    let started_at = now_unix();
    // Calls in flight, as `-c` bounds them (a call of n images is one).
    Progress::add(&counters.in_flight, 1);
    let t = Instant::now();
    let job = Job {
        prompt: &lead.prompt,
        model,
        size,
        response_format: response_format(ctx, model),
        params: &lead.params,
        refs: &prepared.images,
        mask: prepared.mask.as_ref(),
        n: sent as u32,
    };
    let result = tokio::select! {
        biased;
        _ = ctx.abort.cancelled() => None,
        r = ctx.caller.generate(&job, deadline) => Some(r),
    };
    let took = t.elapsed();
    Progress::sub(&counters.in_flight, 1);
    let Some(mut result) = result else {
        ctx.release(reserved);
        // Abandoned by a second Ctrl-C: the rows go back to the queue, and the call,
        // which may have been billed, is counted with its outcome unknown.
        for row in rows {
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
        }
        pending(ctx, rows);
        return None;
    };
    if let Ok(images) = &mut result {
        // More images than asked for are not this call's to keep: no row is waiting
        // for them.
        images.truncate(rows.len());
    }
    // Each row's attempt: the call's outcome, or for rows past the images the answer
    // held, that it held too few (they are asked for again).
    let got = result.as_ref().map_or(0, Vec::len);
    let short = CallError::new(
        ErrorClass::BadResponse,
        format!("the answer held {got} of the {sent} images asked for (n={sent}); the rest are asked for again"),
    );
    for (i, row) in rows.iter().enumerate() {
        let outcome = match &result {
            Ok(_) if i >= got => Err(short.clone()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.clone()),
        };
        record(
            ctx,
            row,
            model,
            AttemptKind::Generate,
            resolution.as_str(),
            started_at,
            took,
            admission.waited,
            &outcome,
        );
    }
    // The progress line counts errors by call, as the report does: a call of n images
    // that failed is one error, and one that came back short is one too.
    match &result {
        Err(e) => ctx.progress.error(e.class),
        Ok(_) if got < sent => ctx.progress.error(short.class),
        Ok(_) => {}
    }
    if !matches!(&result, Err(e) if e.class == ErrorClass::Unreachable) {
        ctx.reachable();
    }
    let price = |n: usize| reserved / sent as u64 * n as u64;
    let images = match result {
        Ok(images) => {
            // Images asked for and not given were not made: their price is given back.
            ctx.release(price(sent - got));
            images
        }
        Err(e) => {
            ctx.release(reserved);
            return Some(Err(e));
        }
    };
    let latency_s = took.as_secs_f64();
    let made = MadeBy { model: model.to_owned(), size_sent: size.to_string() };
    for (row, image) in rows.iter().zip(&images) {
        if let Generated::Url(url, said) = image {
            // Committed before the download starts: from now on this row is only ever
            // downloaded, never generated again. What the provider said is kept with it.
            if let Err(e) = ctx.ckpt.save_url(row.rid, url.clone(), latency_s, made.clone(), said.clone()).await {
                ctx.stop_run(StopReason::Local(e.to_string()));
                return None;
            }
        }
    }
    ctx.progress.record_latency(resolution, latency_s);
    Some(Ok((images, sent, latency_s, made)))
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

/// What the rows' model is sent for their size. The manifest check refused rows that
/// cannot be resolved, so a failure here means the catalogue changed under a stored row:
/// the rows fail with the reason.
fn resolve(ctx: &Ctx, rows: &[PendingRow], model: &str) -> Option<WireSize> {
    let lead = &rows[0];
    match ctx.cfg.catalog.resolve(ctx.cfg.dialect, model, lead.size, lead.aspect_ratio, ctx.cfg.size_policy) {
        Ok(size) => Some(size),
        Err(why) => {
            let e = CallError::new(ErrorClass::InvalidRequest, why);
            for row in rows {
                fail_row(ctx, row, &e);
            }
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
        Err(e) => (e.status, Some((e.class, e.message.clone()))),
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
