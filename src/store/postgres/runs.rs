//! The `run` and `step` tables on Postgres: inserting a trigger's run, the queue operations
//! (claim, renew, finish, requeue) and the reads of the history pages. The same meanings as
//! SQLite's (`sqlite/runs.rs`); what differs is how several instances share them.
//!
//! - A trigger's run (stored in batches, `batch.rs`): its job's queue is counted under a
//!   transaction-scoped advisory lock on the job ([`QUEUE_LOCK`]), so the queue limit and the
//!   places hold when triggers of one job arrive at several instances at once; the number
//!   comes from the `run_number` sequence.
//! - A claim: the head of each job's queue with a free slot is taken `for update skip locked`,
//!   under a second advisory lock per job ([`CLAIM_LOCK`]) taken with `try`: two instances
//!   never claim for the same job at once (so a job's `concurrency` holds across instances),
//!   and neither waits for the other; one that finds a job's lock taken tries the next job.
//!   A counted claim (a row per job with its running count) would do the same with a row lock,
//!   at the price of one more table to keep in step with `run`.
//!
//! Every write a worker makes after its claim has `where run_id = $ and attempt = $`, as on
//! SQLite: a worker whose lease was taken over writes nothing.

use sqlx::{PgConnection, Row};

use super::{Result, Store, outbox};
use crate::domain::TestFailureRow;
use crate::domain::{Address, Platform, ReplyIntent, RunId, RunRow, RunStatus, StepRow};
use crate::store::batch::Request;
use crate::store::model::{
    Ack, AckFacts, Claim, Inserted, NewRun, RunFilter, RunResult, StepResult,
};
use crate::store::{Error, Renewal};

const RUN_COLUMNS: &str = "run_id, platform, team_id, team_name, channel_id, channel_name, \
    user_id, user_name, message_id, thread_root_id, thread_unsettled, message, job, args, hook, \
    status, attempt, ack_text, error, log_head, log_tail, log_bytes, log_lines, log_path, \
    created_at, started_at, finished_at, agent";

/// The advisory lock held while a run of job `$1` is added to its queue.
pub(super) const QUEUE_LOCK: &str =
    "select pg_advisory_xact_lock(hashtextextended('chatrun.queue:' || $1, 0))";

/// The advisory lock tried before a run of job `$1` is claimed.
const CLAIM_LOCK: &str =
    "select pg_try_advisory_xact_lock(hashtextextended('chatrun.claim:' || $1, 0))";

/// A run's live leases count against its job's `concurrency` (`$1`: now): an expired one is
/// its reaper's to settle.
const FREE_SLOT: &str = "(select count(*) from run x
     where x.status = 'running' and x.job = r.job and x.lease_expires_at >= $1) < r.concurrency";

fn position(position: usize) -> i64 {
    i64::try_from(position).unwrap_or(i64::MAX)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Records a step's result in the caller's transaction; when it is the `last` to run, the
/// steps that never got to run are marked skipped. Its failed tests replace those of an
/// earlier attempt.
async fn finish_step_in(
    conn: &mut PgConnection,
    run_id: RunId,
    at: usize,
    result: &StepResult,
    last: bool,
) -> Result<()> {
    let tests = result.tests.as_ref();
    sqlx::query(
        "update step set status = $3, exit_code = $4, detail = $5, finished_at = $6,
             tests_run = $7, tests_failed = $8, tests_skipped = $9, tests_duration_ms = $10,
             report_error = $11, output_tail = $12
         where run_id = $1 and position = $2",
    )
    .bind(run_id)
    .bind(position(at))
    .bind(result.status)
    .bind(result.exit_code.map(i64::from))
    .bind(&result.detail)
    .bind(result.finished_at)
    .bind(tests.map(|t| count(t.tests)))
    .bind(tests.map(|t| count(t.failed)))
    .bind(tests.map(|t| count(t.skipped)))
    .bind(tests.map(|t| t.duration_ms))
    .bind(&result.report_error)
    .bind(&result.output_tail)
    .execute(&mut *conn)
    .await?;
    sqlx::query("delete from test_failure where run_id = $1 and position = $2")
        .bind(run_id)
        .bind(position(at))
        .execute(&mut *conn)
        .await?;
    let failures = crate::store::model::failure_rows(tests);
    if !failures.is_empty() {
        // Each with the first run of its streak (see the SQLite store's `FINISH_STEP`).
        sqlx::query(
            "insert into test_failure
                 (run_id, position, ordinal, suite, name, message, detail, since, passed_on_retry)
             select $1, $2, t.n - 1, t.f ->> 0, t.f ->> 1, t.f ->> 2, t.f ->> 3,
                 case when (t.f ->> 4)::boolean then $1 else
                 coalesce((select coalesce(p.since, p.run_id) from test_failure p
                           where p.run_id = (select q.run_id from run q, run r
                                             where r.run_id = $1 and q.job = r.job
                                               and q.args = r.args and q.run_id < $1
                                               and q.status in ('succeeded', 'failed')
                                             order by q.run_id desc limit 1)
                             and p.suite = t.f ->> 0 and p.name = t.f ->> 1
                             and not p.passed_on_retry
                           limit 1), $1) end,
                 (t.f ->> 4)::boolean
             from jsonb_array_elements($3::jsonb) with ordinality t(f, n)",
        )
        .bind(run_id)
        .bind(position(at))
        .bind(serde_json::Value::from(failures))
        .execute(&mut *conn)
        .await?;
    }
    if last {
        sqlx::query("update step set status = 'skipped' where run_id = $1 and status = 'pending'")
            .bind(run_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Claims, in the caller's transaction, the oldest queued run whose job has a free slot (see
/// the module's notes), and writes its steps.
async fn claim_in(conn: &mut PgConnection, claim: &Claim<'_>) -> Result<Option<RunRow>> {
    // The head of each job's queue that has a free slot, oldest first: the jobs with queued
    // runs found by skipping through `run_status_job_id` one job at a time, each one's head by
    // one index seek (not a read of every queued run).
    let heads: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with recursive queued_job (job) as (
             select min(job) from run where status = 'queued'
             union all
             select (select min(job) from run where status = 'queued' and job > q.job)
             from queued_job q where q.job is not null
         )
         select r.job from queued_job q
         cross join lateral (
             select run_id, job, concurrency from run
             where status = 'queued' and job = q.job order by run_id limit 1) r
         where {FREE_SLOT}
             and not exists (select 1 from jsonb_array_elements($2::jsonb) j
                             where j ->> 0 = r.job and j -> 2 = 'false'::jsonb)
         order by r.run_id"
    )))
    .bind(claim.now)
    .bind(&claim.steps.0)
    .fetch_all(&mut *conn)
    .await?;
    for (job,) in heads {
        let (locked,): (bool,) = sqlx::query_as(CLAIM_LOCK)
            .bind(&job)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            // Another instance is claiming a run of this job right now.
            continue;
        }
        // Under the lock the count is exact; the head may have been claimed meanwhile.
        let row = sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(format!(
            "update run set status = 'running', attempt = attempt + 1, lease_owner = $2,
                 lease_expires_at = $3, started_at = $1, agent = null
             where run_id = (
                 select r.run_id from run r
                 where r.status = 'queued' and r.job = $4 and {FREE_SLOT}
                 order by r.run_id limit 1
                 for update skip locked)
             returning {RUN_COLUMNS}"
        )))
        .bind(claim.now)
        .bind(claim.owner)
        .bind(claim.lease_until)
        .bind(&job)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(run) = row else { continue };
        sqlx::query("delete from step where run_id = $1")
            .bind(run.run_id)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "insert into step (run_id, position, name, status, started_at)
             select $1, s.n - 1, s.name,
                    case when s.n = 1 then 'running' else 'pending' end,
                    case when s.n = 1 then $2::bigint end
             from jsonb_array_elements($3::jsonb) j,
                  jsonb_array_elements_text(j -> 1) with ordinality s(name, n)
             where j ->> 0 = $4
             order by s.n",
        )
        .bind(run.run_id)
        .bind(claim.now)
        .bind(&claim.steps.0)
        .bind(&run.job)
        .execute(&mut *conn)
        .await?;
        return Ok(Some(run));
    }
    Ok(None)
}

impl Store {
    /// Stores a trigger's run, queued (or denied, see [`NewRun::denied`]), unless the same
    /// trigger (platform and message id) was stored before; `ack` words the acknowledgement
    /// from the run's number and place, and it is kept with the run so a duplicate trigger
    /// gets the same text. Stored with the other triggers waiting meanwhile, in one
    /// transaction (see `batch`); committed before it returns.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when the job's queue is full; otherwise the database failed.
    /// Nothing was stored.
    pub async fn insert_run(
        &self,
        new: &NewRun,
        now: i64,
        ack: impl FnOnce(&AckFacts) -> Ack + Send + 'static,
    ) -> Result<Inserted> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let request = Request {
            new: new.clone(),
            now,
            words: Box::new(ack),
            done,
        };
        self.batch.send(request).await.map_err(|_| Error::Closed)?;
        outcome.await.map_err(|_| Error::Closed)?
    }

    /// Takes the oldest queued run whose job has a free slot, for `claim.owner`, and writes
    /// its steps (see [`claim_in`]).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn try_claim(&self, claim: Claim<'_>) -> Result<Option<RunRow>> {
        let mut tx = self.pool.begin().await?;
        let run = claim_in(&mut tx, &claim).await?;
        if run.is_some() {
            tx.commit().await?;
        }
        Ok(run)
    }

    /// Extends a lease: [`Renewal::Lost`] when the run is no longer ours,
    /// [`Renewal::CancelRequested`] when a cancel was asked for.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn renew(&self, run_id: RunId, attempt: i64, lease_until: i64) -> Result<Renewal> {
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "update run set lease_expires_at = $1
             where run_id = $2 and attempt = $3 and status = 'running'
             returning cancel_reason",
        )
        .bind(lease_until)
        .bind(run_id)
        .bind(attempt)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => Renewal::Lost,
            Some((None,)) => Renewal::Held,
            Some((Some(reason),)) => Renewal::CancelRequested(reason),
        })
    }

    /// Records where run `run_id`'s replies go, once its thread is known.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn settle_thread(&self, run_id: RunId, root: Option<&str>) -> Result<()> {
        sqlx::query(
            "update run set thread_root_id = $1, thread_unsettled = false where run_id = $2",
        )
        .bind(root)
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Asks for running run `run_id` to be stopped, for `reason` (the first request's reason
    /// stands); the instance running it hears of it through `chatrun_cancel`. False when it
    /// is not running.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn request_cancel(&self, run_id: RunId, reason: &str) -> Result<bool> {
        let done = sqlx::query(
            "update run set cancel_reason = coalesce(cancel_reason, $1)
             where run_id = $2 and status = 'running'",
        )
        .bind(reason)
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a step running.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn start_step(&self, run_id: RunId, at: usize, now: i64) -> Result<()> {
        sqlx::query(
            "update step set status = 'running', started_at = $1
             where run_id = $2 and position = $3",
        )
        .bind(now)
        .bind(run_id)
        .bind(position(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the result of a step that is not the run's last.
    ///
    /// # Errors
    ///
    /// The database failed; nothing was written.
    pub async fn finish_step(&self, run_id: RunId, at: usize, result: &StepResult) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        finish_step_in(&mut tx, run_id, at, result, false).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The finished runs (succeeded or failed) of `job` with `args` before run `before`,
    /// newest first, at most `limit`: `(run, whether it failed)`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn previous_outcomes(
        &self,
        job: &str,
        args: &str,
        before: RunId,
        limit: usize,
    ) -> Result<Vec<(RunId, bool)>> {
        Ok(sqlx::query_as(
            "select run_id, status = 'failed' from run
             where job = $1 and args = $2 and run_id < $3 and status in ('succeeded', 'failed')
             order by run_id desc limit $4",
        )
        .bind(job)
        .bind(args)
        .bind(before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The failed tests of the `runs` latest finished runs of `job` with `args` before run
    /// `before`: `(run, suite, name)`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn history_failures(
        &self,
        job: &str,
        args: &str,
        before: RunId,
        runs: usize,
    ) -> Result<Vec<crate::domain::history::EarlierFailure>> {
        Ok(sqlx::query_as(
            "select f.run_id, f.suite, f.name from test_failure f
             where f.run_id in (select run_id from run where job = $1 and args = $2
                                  and run_id < $4 and status in ('succeeded', 'failed')
                                order by run_id desc limit $3)",
        )
        .bind(job)
        .bind(args)
        .bind(i64::try_from(runs).unwrap_or(i64::MAX))
        .bind(before)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The failed tests of a run, by step, in report order.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn test_failures(&self, run_id: RunId) -> Result<Vec<TestFailureRow>> {
        Ok(sqlx::query_as::<_, TestFailureRow>(
            "select position, suite, name, message, detail, since, passed_on_retry
             from test_failure where run_id = $1 order by position, ordinal",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a run's result, its `last_step`'s, and queues its reply; then, in the same
    /// transaction, claims the worker's next run when `next` is given. Whether the result was
    /// stored (not when the run is no longer this attempt's), and the run claimed.
    ///
    /// # Errors
    ///
    /// The database failed; nothing was written.
    pub async fn finish_run(
        &self,
        run_id: RunId,
        attempt: i64,
        result: &RunResult,
        reply: Option<&Address>,
        last_step: Option<(usize, &StepResult)>,
        next: Option<Claim<'_>>,
    ) -> Result<(bool, Option<RunRow>)> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "update run set status = $1, error = $2, log_head = $3, log_tail = $4,
                 log_bytes = $5, log_lines = $6, log_path = $7, finished_at = $8,
                 lease_owner = null, lease_expires_at = null
             where run_id = $9 and attempt = $10 and status = 'running'",
        )
        .bind(result.status)
        .bind(&result.error)
        .bind(&result.log_head)
        .bind(&result.log_tail)
        .bind(result.log_bytes)
        .bind(result.log_lines)
        .bind(&result.log_path)
        .bind(result.finished_at)
        .bind(run_id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?;
        let stored = done.rows_affected() == 1;
        if stored {
            if let Some((at, step)) = last_step {
                finish_step_in(&mut tx, run_id, at, step, true).await?;
            }
            if let Some(reply) = reply {
                let intent = ReplyIntent::Result(reply.clone());
                outbox::insert(&mut tx, Some(run_id), &intent, result.finished_at).await?;
            }
        }
        let claimed = match &next {
            Some(claim) => claim_in(&mut tx, claim).await?,
            None => None,
        };
        tx.commit().await?;
        Ok((stored, claimed))
    }

    /// Runs whose lease ran out before `now`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn expired_runs(&self, now: i64) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(format!(
            "select {RUN_COLUMNS} from run
             where status = 'running' and lease_expires_at < $1 order by run_id"
        )))
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ends a run whose lease expired before `now` as `interrupted`, with `error` and its
    /// reply, in one transaction. False when it was settled or renewed meanwhile.
    ///
    /// # Errors
    ///
    /// The database failed; nothing was written.
    pub async fn interrupt_run(
        &self,
        run_id: RunId,
        attempt: i64,
        now: i64,
        error: &str,
        reply: Option<&Address>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "update run set status = 'interrupted', error = $1, finished_at = $2,
                 lease_owner = null, lease_expires_at = null
             where run_id = $3 and attempt = $4 and status = 'running' and lease_expires_at < $2",
        )
        .bind(error)
        .bind(now)
        .bind(run_id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "update step set
                 status = case status when 'running' then 'interrupted' else 'skipped' end,
                 finished_at = case status when 'running' then $1 else finished_at end
             where run_id = $2 and status in ('running', 'pending')",
        )
        .bind(now)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        if let Some(reply) = reply {
            let intent = ReplyIntent::Result(reply.clone());
            outbox::insert(&mut tx, Some(run_id), &intent, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Puts a run whose lease expired before `now` back in the queue. False when it was
    /// settled or renewed meanwhile.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn requeue_expired(&self, run_id: RunId, attempt: i64, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "update run set status = 'queued', lease_owner = null, lease_expires_at = null
             where run_id = $1 and attempt = $2 and status = 'running' and lease_expires_at < $3",
        )
        .bind(run_id)
        .bind(attempt)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The running runs and who holds them.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn running_leases(&self) -> Result<Vec<(RunId, Option<String>)>> {
        Ok(
            sqlx::query_as("select run_id, lease_owner from run where status = 'running'")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// When the first lease of a running run ends (for the reaper to look then).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn next_lease_expiry(&self) -> Result<Option<i64>> {
        let (at,): (Option<i64>,) =
            sqlx::query_as("select min(lease_expires_at) from run where status = 'running'")
                .fetch_one(&self.pool)
                .await?;
        Ok(at)
    }

    /// Ends `owner`'s lease on a run now, so the next claim takes it.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn expire_lease(&self, run_id: RunId, owner: &str) -> Result<bool> {
        let done = sqlx::query(
            "update run set lease_expires_at = 0
             where run_id = $1 and lease_owner = $2 and status = 'running'",
        )
        .bind(run_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Cancels a run that has not started, with its reply, in one transaction. False when it
    /// is no longer queued.
    ///
    /// # Errors
    ///
    /// The database failed; nothing was written.
    pub async fn cancel_queued(
        &self,
        run_id: RunId,
        reason: &str,
        now: i64,
        reply: Option<&Address>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "update run set status = 'cancelled', error = $1, finished_at = $2
             where run_id = $3 and status = 'queued'",
        )
        .bind(reason)
        .bind(now)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(reply) = reply {
            let intent = ReplyIntent::Result(reply.clone());
            outbox::insert(&mut tx, Some(run_id), &intent, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The runs waiting and running, oldest first.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn active_runs(&self) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(format!(
            "select {RUN_COLUMNS} from run where status in ('queued', 'running') order by run_id"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Gives a claimed run back to the queue.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn requeue(&self, run_id: RunId, attempt: i64) -> Result<bool> {
        let done = sqlx::query(
            "update run set status = 'queued', lease_owner = null, lease_expires_at = null
             where run_id = $1 and attempt = $2 and status = 'running'",
        )
        .bind(run_id)
        .bind(attempt)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One run.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn get_run(&self, run_id: RunId) -> Result<Option<RunRow>> {
        Ok(sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(format!(
            "select {RUN_COLUMNS} from run where run_id = $1"
        )))
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A run's steps, in order.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn steps(&self, run_id: RunId) -> Result<Vec<StepRow>> {
        Ok(sqlx::query_as::<_, StepRow>(
            "select run_id, position, name, status, exit_code, detail, started_at, finished_at,
                 tests_run, tests_failed, tests_skipped, tests_duration_ms, report_error,
                 output_tail
             from step where run_id = $1 order by position",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Up to `limit` runs older than `before`, newest first.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn list_runs(&self, before: Option<RunId>, limit: i64) -> Result<Vec<RunRow>> {
        self.search_runs(&RunFilter::default(), before, limit).await
    }

    /// Up to `limit` runs matching `filter` and older than `before`, newest first (keyset
    /// paging).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn search_runs(
        &self,
        filter: &RunFilter,
        before: Option<RunId>,
        limit: i64,
    ) -> Result<Vec<RunRow>> {
        let mut conditions = vec!["run_id < $1".to_string()];
        let mut texts: Vec<&str> = Vec::new();
        for (value, column) in [
            (filter.job.as_deref(), "job"),
            (filter.user.as_deref(), "user_name"),
            (filter.channel.as_deref(), "channel_name"),
            (filter.platform.map(Platform::as_str), "platform"),
            (filter.status.map(RunStatus::token), "status"),
        ] {
            if let Some(value) = value {
                texts.push(value);
                conditions.push(format!("{column} = ${}", texts.len() + 1));
            }
        }
        let mut times = Vec::new();
        for (value, condition) in [
            (filter.since, "created_at >="),
            (filter.until, "created_at <"),
        ] {
            if let Some(value) = value {
                times.push(value);
                conditions.push(format!("{condition} ${}", texts.len() + times.len() + 1));
            }
        }
        let sql = format!(
            "select {RUN_COLUMNS} from run where {} order by run_id desc limit {limit}",
            conditions.join(" and ")
        );
        let mut query = sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(sql))
            .bind(before.map_or(i64::MAX, |id| id.0));
        for text in texts {
            query = query.bind(text);
        }
        for time in times {
            query = query.bind(time);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// How many runs wait in the queue and how many are running.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn counts(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "select (select count(*) from run where status = 'queued'),
                    (select count(*) from run where status = 'running')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}
