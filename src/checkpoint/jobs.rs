//! Batch API jobs in the checkpoint: every step of a job committed before the next one is
//! taken, so a crash at any point leaves enough to carry on without creating a job twice.
//!
//! assigned (rows set aside in state `batch`, the job's token chosen) -> uploaded (the
//! input file's id) -> creating (the create request may have been sent: before anything
//! else, the provider's jobs are listed and the one carrying the token adopted) -> open
//! (the job's name) -> closed (its results taken; rows it did not finish back in the
//! queue, their first-submission time kept for `--batch-deadline`).

use rusqlite::{Connection, OptionalExtension, params};

use super::{Checkpoint, CheckpointError, PENDING_COLUMNS, PendingRow, now_unix, pending_row};

/// How far bulkgen got with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStep {
    Assigned,
    Uploaded,
    Creating,
    Open,
    Closed,
}

impl JobStep {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStep::Assigned => "assigned",
            JobStep::Uploaded => "uploaded",
            JobStep::Creating => "creating",
            JobStep::Open => "open",
            JobStep::Closed => "closed",
        }
    }

    fn parse(s: &str) -> JobStep {
        match s {
            "assigned" => JobStep::Assigned,
            "uploaded" => JobStep::Uploaded,
            "creating" => JobStep::Creating,
            "open" => JobStep::Open,
            _ => JobStep::Closed,
        }
    }
}

/// A job about to be made of pending rows.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub token: String,
    pub dialect: String,
    pub model: String,
    /// OpenAI: the endpoint every line calls; Gemini: the model path.
    pub endpoint: String,
    pub rids: Vec<i64>,
    /// The job's price at batch prices, held against `--max-cost` while it is open.
    pub price_micro: u64,
}

/// A job as the checkpoint holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub jid: i64,
    pub token: String,
    pub dialect: String,
    pub model: String,
    pub endpoint: String,
    pub step: JobStep,
    pub input_file: Option<String>,
    /// The provider's name for it (`batches/...`, `batch_...`).
    pub name: Option<String>,
    /// The last state polled, as the provider spelled it.
    pub state: Option<String>,
    pub result_file: Option<String>,
    pub error_file: Option<String>,
    pub lines: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub price_micro: u64,
    pub assigned_at: f64,
    pub created_at: Option<f64>,
    pub polled_at: Option<f64>,
    pub cancel_sent_at: Option<f64>,
    pub closed_at: Option<f64>,
    pub note: Option<String>,
    /// The earliest first submission among its rows still in it (the deadline clock).
    pub oldest_row: Option<f64>,
}

/// What the provider last said of a job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobCounts {
    pub state: String,
    pub result_file: Option<String>,
    pub error_file: Option<String>,
    pub succeeded: u64,
    pub failed: u64,
}

const JOB_COLUMNS: &str = "jid, token, dialect, model, endpoint, step, input_file, name, state, result_file, \
     error_file, lines, succeeded, failed, price_micro, assigned_at, created_at, polled_at, cancel_sent_at, \
     closed_at, note, (SELECT MIN(batch_since) FROM rows WHERE rows.job = jobs.jid AND rows.state = 'batch')";

fn job_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        jid: r.get(0)?,
        token: r.get(1)?,
        dialect: r.get(2)?,
        model: r.get(3)?,
        endpoint: r.get(4)?,
        step: JobStep::parse(r.get_ref(5)?.as_str()?),
        input_file: r.get(6)?,
        name: r.get(7)?,
        state: r.get(8)?,
        result_file: r.get(9)?,
        error_file: r.get(10)?,
        lines: r.get::<_, i64>(11)? as u64,
        succeeded: r.get::<_, i64>(12)? as u64,
        failed: r.get::<_, i64>(13)? as u64,
        price_micro: r.get::<_, i64>(14)? as u64,
        assigned_at: r.get(15)?,
        created_at: r.get(16)?,
        polled_at: r.get(17)?,
        cancel_sent_at: r.get(18)?,
        closed_at: r.get(19)?,
        note: r.get(20)?,
        oldest_row: r.get(21)?,
    })
}

/// Every job of the folder, open ones first, then the most recent closed ones.
pub fn jobs(c: &Connection, closed_too: bool) -> rusqlite::Result<Vec<JobRecord>> {
    let filter = if closed_too { "1" } else { "step != 'closed'" };
    let mut st = c.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE {filter} ORDER BY step = 'closed', jid DESC LIMIT 1000"
    ))?;
    st.query_map([], job_record)?.collect()
}

impl Checkpoint {
    /// Sets `job.rids` aside for a new job (rows still pending only) and records the job,
    /// in one transaction. Returns the job's id and how many rows it holds.
    pub async fn assign_job(&self, job: NewJob) -> Result<(i64, u64), CheckpointError> {
        self.call(move |c| {
            let now = now_unix();
            c.execute(
                "INSERT INTO jobs(token, dialect, model, endpoint, step, lines, price_micro, assigned_at) \
                 VALUES (?1, ?2, ?3, ?4, 'assigned', 0, ?5, ?6)",
                params![job.token, job.dialect, job.model, job.endpoint, job.price_micro as i64, now],
            )?;
            let jid = c.last_insert_rowid();
            let mut set = c.prepare_cached(
                "UPDATE rows SET state='batch', job=?1, batch_since=COALESCE(batch_since, ?2) \
                 WHERE rid=?3 AND state='pending'",
            )?;
            let mut n = 0u64;
            for rid in &job.rids {
                n += set.execute(params![jid, now, rid])? as u64;
            }
            c.execute("UPDATE jobs SET lines=?1 WHERE jid=?2", params![n as i64, jid])?;
            Ok((jid, n))
        })
        .await
    }

    /// The rows a job holds, in manifest order.
    pub async fn job_rows(&self, jid: i64) -> Result<Vec<PendingRow>, CheckpointError> {
        self.call(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {PENDING_COLUMNS} FROM rows WHERE state='batch' AND job=?1 ORDER BY seq"
            ))?;
            Ok(st.query_map([jid], pending_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Moves a job to `step`, recording what that step learnt. Returns once committed.
    pub async fn job_step(
        &self,
        jid: i64,
        step: JobStep,
        input_file: Option<String>,
        name: Option<String>,
    ) -> Result<(), CheckpointError> {
        self.call(move |c| {
            let now = now_unix();
            // The create is the row's attempt (it may be billed): counted once per job, and
            // the row's end-to-end clock starts at its first one.
            if step == JobStep::Creating {
                c.execute(
                    "UPDATE rows SET attempts = attempts + 1, first_dispatch = COALESCE(first_dispatch, ?1) \
                     WHERE state='batch' AND job=?2 AND (SELECT step FROM jobs WHERE jid=?2) NOT IN ('creating', 'open')",
                    params![now, jid],
                )?;
            }
            c.execute(
                "UPDATE jobs SET step=?1, input_file=COALESCE(?2, input_file), name=COALESCE(?3, name), \
                 created_at=CASE WHEN ?3 IS NOT NULL THEN COALESCE(created_at, ?4) ELSE created_at END WHERE jid=?5",
                params![step.as_str(), input_file, name, now, jid],
            )?;
            Ok(())
        })
        .await
    }

    /// What a poll found.
    pub fn job_polled(&self, jid: i64, counts: JobCounts) {
        self.post(move |c| {
            c.prepare_cached(
                "UPDATE jobs SET state=?1, result_file=COALESCE(?2, result_file), \
                 error_file=COALESCE(?3, error_file), succeeded=?4, failed=?5, polled_at=?6 WHERE jid=?7",
            )?
            .execute(params![
                counts.state,
                counts.result_file,
                counts.error_file,
                counts.succeeded as i64,
                counts.failed as i64,
                now_unix(),
                jid
            ])?;
            Ok(())
        });
    }

    /// A cancel was sent for the job. Returns once committed.
    pub async fn job_cancel_sent(&self, jid: i64) -> Result<(), CheckpointError> {
        self.call(move |c| {
            c.execute(
                "UPDATE jobs SET cancel_sent_at=COALESCE(cancel_sent_at, ?1) WHERE jid=?2",
                params![now_unix(), jid],
            )?;
            Ok(())
        })
        .await
    }

    /// Closes a job: the rows it holds that are not done go back to the queue (their
    /// first-submission time kept). Returns the (model, resolution) of each row sent back,
    /// so their price held against `--max-cost` can be given back.
    pub async fn close_job(&self, jid: i64, note: Option<String>) -> Result<Vec<(String, String)>, CheckpointError> {
        self.call(move |c| {
            let back: Vec<(String, String)> = c
                .prepare("SELECT model, resolution FROM rows WHERE state='batch' AND job=?1")?
                .query_map([jid], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            c.execute("UPDATE rows SET state='pending', job=NULL WHERE state='batch' AND job=?1", [jid])?;
            c.execute(
                "UPDATE jobs SET step='closed', closed_at=?1, note=COALESCE(?2, note) WHERE jid=?3",
                params![now_unix(), note, jid],
            )?;
            Ok(back)
        })
        .await
    }

    /// A row of a job fails for good (a final per-line error), or goes back to the queue
    /// (a transient one) at once rather than when the job closes.
    pub fn job_row_failed(&self, rid: i64, class: crate::error::ErrorClass, message: String, final_: bool) {
        self.post(move |c| {
            if final_ {
                c.prepare_cached("UPDATE rows SET state='failed', job=NULL, error_class=?1, error=?2 WHERE rid=?3")?
                    .execute(params![class.as_str(), message, rid])?;
            } else {
                c.prepare_cached("UPDATE rows SET state='pending', job=NULL, error_class=?1, error=?2 WHERE rid=?3")?
                    .execute(params![class.as_str(), message, rid])?;
            }
            Ok(())
        });
    }

    /// The jobs not closed, oldest first.
    pub async fn open_jobs(&self) -> Result<Vec<JobRecord>, CheckpointError> {
        self.call(|c| {
            let mut all = jobs(c, false)?;
            all.sort_by_key(|j| j.jid);
            Ok(all)
        })
        .await
    }

    /// A job by its id.
    pub async fn job(&self, jid: i64) -> Result<Option<JobRecord>, CheckpointError> {
        self.call(move |c| {
            Ok(c.query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE jid=?1"), [jid], job_record).optional()?)
        })
        .await
    }
}

impl Checkpoint {
    /// A batch result is in place: the row is done, made by the batch engine (committed
    /// after the images are made durable, as online). Only a row still in its job is
    /// marked: a result is never taken twice.
    pub fn mark_done_batch(&self, rid: i64, jid: i64, file: String, made: super::Made, facts: super::ImageFacts) {
        self.mark_done_by(rid, Some(jid), file, None, Some(made), facts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    fn job(token: &str, rids: Vec<i64>) -> NewJob {
        NewJob {
            token: token.into(),
            dialect: "gemini".into(),
            model: "m".into(),
            endpoint: "m".into(),
            rids,
            price_micro: 0,
        }
    }

    #[tokio::test]
    async fn a_job_holds_its_rows_until_it_closes_and_each_result_is_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(crate::output::IMAGES_DIR)).unwrap();
        let ck = Checkpoint::open(dir.path()).unwrap();
        ck.call(|c| {
            for (i, id) in ["a", "b", "c"].iter().enumerate() {
                c.execute(
                    "INSERT INTO rows(seq, id, prompt, size, resolution, model) VALUES (?1, ?2, 'p', '1K', '1K', 'm')",
                    params![i as i64 + 1, id],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
        let (jid, n) = ck.assign_job(job("t1", vec![1, 2, 3])).await.unwrap();
        assert_eq!(n, 3);
        // Rows already in a job are never put in a second one.
        let (other, n) = ck.assign_job(job("t2", vec![1, 2, 3])).await.unwrap();
        assert_eq!(n, 0);
        assert_eq!(ck.counts().await.unwrap().batch, 3);
        assert!(ck.pending_page(0, 10).await.unwrap().is_empty(), "rows in a job are not pending");
        let made = || super::super::Made { model: "m".into(), size_sent: "1K".into() };
        ck.mark_done_batch(1, jid, "a.png".into(), made(), crate::checkpoint::ImageFacts::default());
        // The same line read again (a result file downloaded twice) changes nothing.
        ck.mark_done_batch(1, jid, "again.png".into(), made(), crate::checkpoint::ImageFacts::default());
        // A line for a row of another job is not taken.
        ck.mark_done_batch(2, other, "b.png".into(), made(), crate::checkpoint::ImageFacts::default());
        ck.job_row_failed(2, ErrorClass::Refused, "refused".into(), true);
        let back = ck.close_job(jid, Some("done".into())).await.unwrap();
        assert_eq!(back, vec![("m".to_owned(), "1K".to_owned())], "row c goes back to the queue");
        let counts = ck.counts().await.unwrap();
        assert_eq!((counts.done, counts.failed, counts.pending, counts.batch), (1, 1, 1, 0));
        let (file, engine): (String, String) = ck
            .call(|c| {
                Ok(c.query_row("SELECT file, engine FROM rows WHERE rid = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))?)
            })
            .await
            .unwrap();
        assert_eq!((file.as_str(), engine.as_str()), ("a.png", "batch"));
        // Its first submission is kept: the deadline clock does not restart.
        let back_in_queue = ck.pending_page_where(0, 10, crate::checkpoint::Pending::BatchBefore { cutoff: f64::MAX });
        assert_eq!(back_in_queue.await.unwrap().len(), 1);
        let open: Vec<String> = ck.open_jobs().await.unwrap().into_iter().map(|j| j.token).collect();
        assert_eq!(open, vec!["t2"]);
    }
}
