//! The row lifecycle both engines share: an image put in place and the row marked done,
//! or the row failed, with the counters and spend the progress shows.

use super::*;
use crate::checkpoint::ImageFacts;
use crate::provider::Said;

pub(super) fn fail_row(ctx: &Ctx, row: &PendingRow, e: &CallError) {
    ctx.ckpt.mark_failed(row.rid, e.class, e.detail());
    Progress::add(&ctx.progress.counters.failed, 1);
    ctx.note_failure(row, e);
}

/// Which engine made an image, and what it recorded.
pub(super) enum Maker {
    /// `latency` is the generation's, when it was not saved with a result URL already;
    /// `made` is None when the maker was recorded with the URL or the stash.
    Online { latency: Option<f64>, made: Option<MadeBy> },
    /// A line of batch job `jid`'s result file.
    Batch { jid: i64, made: MadeBy },
}

/// Puts the image in place, then marks the row done — in that order. If the output folder
/// fails, the bytes are kept in the checkpoint so the rerun does not pay for them again.
/// `said` is what the provider said beside the image, kept in metadata.jsonl (nothing
/// for a stashed image or a downloaded URL: what was said of those was recorded on the
/// row with the stash or the URL, and the done mark keeps it).
pub(super) async fn finish(ctx: &Ctx, row: &PendingRow, bytes: Vec<u8>, said: Said, maker: Maker) {
    // Answers, downloads and the stash were checked already; this is the last gate
    // before a file is named done.
    let ext = match output::check_image(&bytes) {
        Ok(ext) => ext,
        Err(why) => return fail_row(ctx, row, &CallError::new(ErrorClass::BadResponse, format!("the image {why}"))),
    };
    let (images, shard) = (ctx.out.images.clone(), ctx.cfg.shard_dirs);
    let id = row.id.clone();
    let bytes = Arc::new(bytes);
    let to_write = bytes.clone();
    // Kept with the stash if the folder refuses the image.
    let said_again = said.clone();
    let writer = ctx.writers.acquire().await.expect("never closed");
    // The image's hash and pixel size (for metadata.jsonl) are read on the same blocking
    // thread as it is written, off the async workers.
    let written = tokio::task::spawn_blocking(move || {
        output::write_image(&images, &id, ext, &to_write, shard).map(|file| {
            let facts = ImageFacts::of(&to_write);
            (file, ImageFacts { revised_prompt: said.revised_prompt, finish_reason: said.finish_reason, ..facts })
        })
    })
    .await
    .expect("writing a file does not panic");
    drop(writer);
    match written {
        Ok((file, facts)) => {
            if let Some(old) = row.old_file.as_ref().filter(|old| **old != file) {
                let _ = std::fs::remove_file(ctx.out.images.join(old));
            }
            let res = row.size.resolution();
            let price = match maker {
                Maker::Online { latency, made } => {
                    let model = made.as_ref().map_or(row.model.as_str(), |m| m.model.as_str());
                    let price = ctx.cfg.prices.get(model, res).map_or(0, micro_usd);
                    ctx.ckpt.mark_done(row.rid, file, latency, made, facts);
                    price
                }
                Maker::Batch { jid, made } => {
                    let price = ctx.cfg.prices.price(Engine::Batch, &made.model, res).map_or(0, micro_usd);
                    ctx.ckpt.mark_done_batch(row.rid, jid, file, made, facts);
                    price
                }
            };
            Progress::add(&ctx.progress.counters.done, 1);
            Progress::add(&ctx.progress.counters.spend_micro_usd, price);
        }
        Err(e) => {
            ctx.ckpt.mark_pending(row.rid);
            let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|b| (*b).clone());
            let kept = match ctx.ckpt.stash(row.rid, bytes, said_again).await {
                Ok(()) => "the image is kept in the checkpoint and will be written by the next run without a new call"
                    .to_owned(),
                Err(db) => format!("the checkpoint could not keep the image either ({db}): it will be generated again"),
            };
            ctx.stop_run(StopReason::Local(format!(
                "cannot write the image of row {} into {}: {e}; {kept}. Free space or fix permissions, then run the \
                 same command again",
                row.id,
                ctx.out.images.display()
            )));
        }
    }
}
