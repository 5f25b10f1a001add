//! The `run` and `step` tables: inserting a trigger's run, the queue operations
//! (claim, renew, finish, requeue) and the reads of the history pages.
//!
//! Every write a worker makes after its claim has `where run_id = ? and attempt = ?`: when
//! another worker has claimed the run since (our lease expired), the write touches 0 rows and
//! the caller learns it lost the run, as in underway's `mark_succeeded`.

use sqlx::{Connection, FromRow, Row};

use super::{Result, Store, outbox};
use crate::domain::{Address, Platform, ReplyIntent, RunId, RunRow, StepRow, TestFailureRow};
use crate::store::Renewal;
use crate::store::model::{
    Ack, AckFacts, Claim, Inserted, NewRun, RunFilter, RunResult, StepResult,
};

const RUN_COLUMNS: &str = "run_id, platform, team_id, team_name, channel_id, channel_name, \
    user_id, user_name, message_id, thread_root_id, thread_unsettled, message, job, args, hook, \
    status, attempt, \
    ack_text, error, log_head, log_tail, log_bytes, log_lines, log_path, created_at, started_at, \
    finished_at, agent";

/// A run's steps (`?1`), in order.
const STEPS_OF_RUN: &str = "select run_id, position, name, status, exit_code, \
    detail, started_at, finished_at, tests_run, tests_failed, tests_skipped, tests_duration_ms, \
    report_error, output_tail from step where run_id = ?1 order by position";

/// Records a step's result: run `?1`, the step and its result as [`step_json`] writes them in
/// `?2` (nothing when `?2` is null). Its failed tests replace those of an earlier attempt, each
/// with the first run of its streak (`since`: that of the same test's failure in the previous
/// finished run of the job with the same arguments, else this run); when
/// it is the last to run, the steps that never got to run are marked skipped. Statements for a
/// script, between its `begin` and `commit`.
const FINISH_STEP: &str = "
    update step set status = ?2 ->> 'status', exit_code = ?2 ->> 'exit_code',
        detail = ?2 ->> 'detail', finished_at = ?2 ->> 'finished_at',
        tests_run = ?2 ->> 'tests_run', tests_failed = ?2 ->> 'tests_failed',
        tests_skipped = ?2 ->> 'tests_skipped', tests_duration_ms = ?2 ->> 'tests_duration_ms',
        report_error = ?2 ->> 'report_error', output_tail = ?2 ->> 'output_tail'
    where run_id = ?1 and position = ?2 ->> 'position';
    delete from test_failure where run_id = ?1 and position = ?2 ->> 'position';
    insert into test_failure
        (run_id, position, ordinal, suite, name, message, detail, since, passed_on_retry)
    select ?1, ?2 ->> 'position', f.key, f.value ->> 0, f.value ->> 1, f.value ->> 2,
        f.value ->> 3,
        case when f.value ->> 4 then ?1 else
        coalesce((select coalesce(p.since, p.run_id) from test_failure p
                  where p.run_id = (select q.run_id from run q, run r
                                    where r.run_id = ?1 and q.job = r.job and q.args = r.args
                                      and q.run_id < ?1 and q.status in ('succeeded', 'failed')
                                    order by q.run_id desc limit 1)
                    and p.suite = f.value ->> 0 and p.name = f.value ->> 1
                    and not p.passed_on_retry
                  limit 1), ?1) end,
        f.value ->> 4
    from json_each(?2, '$.failures') f order by f.key;
    update step set status = 'skipped'
    where run_id = ?1 and status = 'pending' and ?2 ->> 'last';";

/// A step's result as one parameter of [`FINISH_STEP`] (one JSON text, so that a script with
/// other parameters numbers them without gaps: see `Store::write_script`).
fn step_json(position: usize, result: &StepResult, last: bool) -> String {
    let tests = result.tests.as_ref();
    let failures = crate::store::model::failure_rows(tests);
    serde_json::json!({
        "position": position,
        "status": result.status,
        "exit_code": result.exit_code,
        "detail": result.detail,
        "finished_at": result.finished_at,
        "tests_run": tests.map(|t| t.tests),
        "tests_failed": tests.map(|t| t.failed),
        "tests_skipped": tests.map(|t| t.skipped),
        "tests_duration_ms": tests.map(|t| t.duration_ms),
        "report_error": result.report_error,
        "output_tail": result.output_tail,
        "failures": failures,
        "last": last,
    })
    .to_string()
}

/// A run's failed tests (`?1`), by step, in report order.
const FAILURES_OF_RUN: &str = "select position, suite, name, message, detail, since, \
    passed_on_retry from test_failure where run_id = ?1 order by position, ordinal";

/// The failures of the `?3` latest finished runs of job `?1` with arguments `?2` before run
/// `?4`: `(run, suite, name)`.
const HISTORY_FAILURES: &str = "select f.run_id, f.suite, f.name from test_failure f
    where f.run_id in (select run_id from run where job = ?1 and args = ?2 and run_id < ?4
                         and status in ('succeeded', 'failed')
                       order by run_id desc limit ?3)";

/// A claim's script with its values.
trait ClaimQuery {
    fn query(
        &self,
        script: &'static str,
    ) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;
}

impl ClaimQuery for Claim<'_> {
    /// `script` ([`claim_script`]) with this claim's values.
    fn query(
        &self,
        script: &'static str,
    ) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        sqlx::query(sqlx::AssertSqlSafe(script))
            .bind(self.now)
            .bind(&self.steps.0)
            .bind(self.owner)
            .bind(self.lease_until)
    }
}

/// Where a claim's statements run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimIn {
    /// From `begin immediate` to `commit`.
    ItsOwnTransaction,
    /// In a transaction already begun, which it commits.
    OneBegun,
}

/// The claim's statements: the update that claims (returning the run), its steps' rows, and
/// `commit`. Parameters `?1` now, `?2` the steps, `?3` the owner, `?4` the lease's end.
fn claim_script(within: ClaimIn) -> &'static str {
    // The run to claim, of a job the claimant may run (`?2`'s third field). (One index skipped
    // in all, `?2` in the delete: see `Store::write_script`.)
    const NEXT: &str = "(with recursive queued_job (job) as (
             select (select min(job) from run where status = 'queued')
             union all
             select (select min(job) from run where status = 'queued' and job > q.job)
             from queued_job q where q.job is not null
         )
         select r.run_id from queued_job q
         join run r on r.run_id =
             (select min(run_id) from run where status = 'queued' and job = q.job)
         where not exists (select 1 from json_each(?2) j
                           where j.value ->> 0 = q.job and j.value ->> 2 = 0)
             and (select count(*) from run x
                where x.status = 'running' and x.job = q.job
                    and x.lease_expires_at >= ?1) < r.concurrency
         order by r.run_id limit 1)";
    // The run just claimed, found by the next statements without looking for `NEXT` again
    // (a tenth of a claim each time): a worker has one run at a time, and no other of its
    // runs started in the same millisecond with the same lease.
    const CLAIMED: &str = "(select run_id from run where status = 'running'
             and lease_owner = ?3 and started_at = ?1 and lease_expires_at = ?4)";
    static SCRIPTS: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
        let body = format!(
            "update run set status = 'running', attempt = attempt + 1, lease_owner = ?3,
                 lease_expires_at = ?4, started_at = ?1, agent = null
             where run_id = {NEXT}
             returning {RUN_COLUMNS};
             delete from step where run_id = {CLAIMED};
             insert into step (run_id, position, name, status, started_at)
             select r.run_id, s.key, s.value, iif(s.key = 0, 'running', 'pending'),
                    iif(s.key = 0, ?1, null)
             from run r join json_each(?2) j on j.value ->> 0 = r.job,
                  json_each(j.value -> 1) s
             where r.run_id = {CLAIMED} order by s.key;
             commit"
        );
        [format!("begin immediate; {body}"), body]
    });
    match within {
        ClaimIn::ItsOwnTransaction => &SCRIPTS[0],
        ClaimIn::OneBegun => &SCRIPTS[1],
    }
}

impl Store {
    /// Stores a trigger's run, queued (or denied, see [`NewRun::denied`]), unless the same
    /// trigger (platform and message id) was stored before; `ack` makes the acknowledgement
    /// from the new run's number and queue position, and is kept with the run so a duplicate
    /// trigger gets the same text. Returns once the run is on disk; triggers arriving together
    /// share one transaction and one sync (see `batch`).
    ///
    /// # Errors
    ///
    /// The database failed; nothing was stored.
    pub async fn insert_run(
        &self,
        new: &NewRun,
        now: i64,
        ack: impl FnOnce(&AckFacts) -> Ack + Send + 'static,
    ) -> Result<Inserted> {
        // Stored with the other triggers waiting meanwhile, in one transaction (see `batch`).
        let (done, outcome) = tokio::sync::oneshot::channel();
        let request = super::batch::Request {
            new: new.clone(),
            now,
            words: Box::new(ack),
            done,
        };
        self.batch.send(request).await.map_err(|_| closed())?;
        outcome.await.map_err(|_| closed())?
    }

    /// Takes the oldest queued run whose job has a free slot, for `claim.owner`: `attempt`
    /// goes up by one and the lease runs until `claim.lease_until`. (Runs whose lease expired are settled by
    /// [`Store::interrupt_run`] or [`Store::requeue_expired`] first.) In the same transaction,
    /// writes the run's steps from `claim.steps` (replacing those of an earlier attempt): the
    /// first running since `claim.now`, the others pending; later ones are started by
    /// [`Store::start_step`].
    ///
    /// Only the head of each job's queue is looked at: the jobs with queued runs are found by
    /// skipping through `run_status_job_id` one job at a time, so a claim costs a few index
    /// seeks per job, not a read of every queued run.
    ///
    /// Returns once the claim and the steps are on disk: a power cut cannot bring back as
    /// queued a run whose steps were started.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn try_claim(&self, claim: Claim<'_>) -> Result<Option<RunRow>> {
        let rows = self
            .fetch_script(claim.query(claim_script(ClaimIn::ItsOwnTransaction)))
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let run = RunRow::from_row(row)?;
        self.durable().await?;
        Ok(Some(run))
    }

    /// Extends a lease: [`Renewal::Lost`] when the run is no longer ours (settled, or another
    /// attempt claimed it), [`Renewal::CancelRequested`] when a cancel was asked for.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn renew(&self, run_id: RunId, attempt: i64, lease_until: i64) -> Result<Renewal> {
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "update run set lease_expires_at = ?
             where run_id = ? and attempt = ? and status = 'running'
             returning cancel_reason",
        )
        .bind(lease_until)
        .bind(run_id)
        .bind(attempt)
        .fetch_optional(&mut *self.writer.lock().await?)
        .await?;
        Ok(match row {
            None => Renewal::Lost,
            Some((None,)) => Renewal::Held,
            Some((Some(reason),)) => Renewal::CancelRequested(reason),
        })
    }

    /// Records where run `run_id`'s replies go (`root`: the root of the trigger's thread; none:
    /// the top of its channel), once its thread is known.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn settle_thread(&self, run_id: RunId, root: Option<&str>) -> Result<()> {
        sqlx::query("update run set thread_root_id = ?, thread_unsettled = 0 where run_id = ?")
            .bind(root)
            .bind(run_id)
            .execute(&mut *self.writer.lock().await?)
            .await?;
        Ok(())
    }

    /// Asks for running run `run_id` to be stopped, for `reason` (the first request's reason
    /// stands). False when it is not running.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn request_cancel(&self, run_id: RunId, reason: &str) -> Result<bool> {
        let done = sqlx::query(
            "update run set cancel_reason = coalesce(cancel_reason, ?)
             where run_id = ? and status = 'running'",
        )
        .bind(reason)
        .bind(run_id)
        .execute(&mut *self.writer.lock().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a step running.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn start_step(&self, run_id: RunId, position: usize, now: i64) -> Result<()> {
        sqlx::query(
            "update step set status = 'running', started_at = ? where run_id = ? and position = ?",
        )
        .bind(now)
        .bind(run_id)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .execute(&mut *self.writer.lock().await?)
        .await?;
        Ok(())
    }

    /// Records the result of a step that is not the run's last (the last one's is written with
    /// the run's, by [`Store::finish_run`]).
    ///
    /// # Errors
    ///
    /// The database failed; nothing was written.
    pub async fn finish_step(
        &self,
        run_id: RunId,
        position: usize,
        result: &StepResult,
    ) -> Result<()> {
        self.write_script(
            sqlx::query(sqlx::AssertSqlSafe(format!("begin; {FINISH_STEP} commit")))
                .bind(run_id)
                .bind(step_json(position, result, false)),
        )
        .await?;
        Ok(())
    }

    /// The failed tests of a run, by step, in report order.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn test_failures(&self, run_id: RunId) -> Result<Vec<TestFailureRow>> {
        Ok(sqlx::query_as::<_, TestFailureRow>(FAILURES_OF_RUN)
            .bind(run_id)
            .fetch_all(&self.reader)
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
        Ok(sqlx::query_as(HISTORY_FAILURES)
            .bind(job)
            .bind(args)
            .bind(i64::try_from(runs).unwrap_or(i64::MAX))
            .bind(before)
            .fetch_all(&self.reader)
            .await?)
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
             where job = ?1 and args = ?2 and run_id < ?3 and status in ('succeeded', 'failed')
             order by run_id desc limit ?4",
        )
        .bind(job)
        .bind(args)
        .bind(before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Records a run's result, its `last_step`'s (position and result; the steps after it
    /// are marked skipped), and queues its reply; then, in the same transaction, claims the
    /// worker's next run as [`Store::try_claim`] does, when `next` is given: one turn on the
    /// writer and one sync where there were two of each. Whether the result was stored (not
    /// when the run is no longer this attempt's: nothing is written of it or its reply), and
    /// the run claimed.
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
        // The reply is queued only when the run was still this attempt's (`changes()`: the
        // rows the run's update changed, which a select leaves as they are). (Two indexes
        // skipped in all, `?2` in the run's update and the reply's insert: see
        // `Store::write_script`.) Committed here, or by the claim's statements, a second
        // message (their parameters are numbered on their own).
        static SCRIPTS: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
            let body = format!(
                "begin;
                 {FINISH_STEP}
                 update run set status = ?7, error = ?8, log_head = ?9, log_tail = ?10,
                     log_bytes = ?11, log_lines = ?12, log_path = ?13, finished_at = ?3,
                     lease_owner = null, lease_expires_at = null
                 where run_id = ?1 and attempt = ?14 and status = 'running';
                 select changes();
                 {}
                 select ?1, ?4, ?5, ?6, ?3, ?3, 'result' where ?4 is not null and changes() = 1;",
                outbox::INSERT
            );
            [format!("{body} commit"), body]
        });
        let finish = sqlx::query(sqlx::AssertSqlSafe(match next {
            None => SCRIPTS[0].as_str(),
            Some(_) => SCRIPTS[1].as_str(),
        }))
        .bind(run_id)
        .bind(last_step.map(|(position, step)| step_json(position, step, true)))
        .bind(result.finished_at)
        .bind(reply.map(|r| &r.target))
        // A result is worded when it is sent: its body is empty.
        .bind(reply.map(|_| ""))
        .bind(reply.and_then(|r| outbox::thread(&r.thread)))
        .bind(result.status)
        .bind(&result.error)
        .bind(&result.log_head)
        .bind(&result.log_tail)
        .bind(result.log_bytes)
        .bind(result.log_lines)
        .bind(&result.log_path)
        .bind(attempt);
        let mut conn = self.writer.lock().await?;
        let written = async {
            let changed: i64 = match finish.fetch_all(&mut *conn).await?.first() {
                Some(row) => row.try_get(0)?,
                None => 0,
            };
            let claimed = match &next {
                None => None,
                Some(claim) => claim
                    .query(claim_script(ClaimIn::OneBegun))
                    .fetch_all(&mut *conn)
                    .await?
                    .first()
                    .map(RunRow::from_row)
                    .transpose()?,
            };
            Ok::<_, sqlx::Error>((changed > 0, claimed))
        }
        .await;
        let (stored, claimed) = super::rolled_back_on_error(&mut conn, written).await?;
        drop(conn);
        if claimed.is_some() {
            self.durable().await?;
        }
        Ok((stored, claimed))
    }

    /// Runs whose lease ran out before `now`: their worker (or chatrun) stopped under them.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn expired_runs(&self, now: i64) -> Result<Vec<RunRow>> {
        let sql = format!(
            "select {RUN_COLUMNS} from run
             where status = 'running' and lease_expires_at < ? order by run_id"
        );
        Ok(sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .fetch_all(&self.reader)
            .await?)
    }

    /// Ends a run whose lease expired before `now` as `interrupted`, with `error` and its
    /// reply, in one transaction: its running step becomes `interrupted`, the steps after it
    /// `skipped`. False (nothing written) when the run was settled or renewed meanwhile.
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
        let mut conn = self.writer.lock().await?;
        let mut tx = conn.begin_with("begin immediate").await?;
        let done = sqlx::query(
            "update run set status = 'interrupted', error = ?, finished_at = ?,
                 lease_owner = null, lease_expires_at = null
             where run_id = ? and attempt = ? and status = 'running' and lease_expires_at < ?",
        )
        .bind(error)
        .bind(now)
        .bind(run_id)
        .bind(attempt)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "update step set status = case status when 'running' then 'interrupted' else 'skipped' end,
                 finished_at = case status when 'running' then ? else finished_at end
             where run_id = ? and status in ('running', 'pending')",
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

    /// Puts a run whose lease expired before `now` back in the queue, to be run again from
    /// its first step. False when the run was settled or renewed meanwhile.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn requeue_expired(&self, run_id: RunId, attempt: i64, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "update run set status = 'queued', lease_owner = null, lease_expires_at = null
             where run_id = ? and attempt = ? and status = 'running' and lease_expires_at < ?",
        )
        .bind(run_id)
        .bind(attempt)
        .bind(now)
        .execute(&mut *self.writer.lock().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The running runs and who holds them: `(run_id, lease_owner)`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn running_leases(&self) -> Result<Vec<(RunId, Option<String>)>> {
        Ok(
            sqlx::query_as("select run_id, lease_owner from run where status = 'running'")
                .fetch_all(&self.reader)
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
                .fetch_one(&self.reader)
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
             where run_id = ? and lease_owner = ? and status = 'running'",
        )
        .bind(run_id)
        .bind(owner)
        .execute(&mut *self.writer.lock().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Cancels a run that has not started, with its reply, in one transaction, on disk before
    /// it returns (the user is told at once). False when it is no longer queued.
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
        let mut conn = self.writer.lock().await?;
        let mut tx = conn.begin().await?;
        let done = sqlx::query(
            "update run set status = 'cancelled', error = ?, finished_at = ?
             where run_id = ? and status = 'queued'",
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
        // The next write need not wait for this one's sync.
        drop(conn);
        self.durable().await?;
        Ok(true)
    }

    /// The runs waiting and running, oldest first: what `queue` shows.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn active_runs(&self) -> Result<Vec<RunRow>> {
        let sql = format!(
            "select {RUN_COLUMNS} from run where status in ('queued', 'running') order by run_id"
        );
        Ok(sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await?)
    }

    /// Gives a run back to the queue (this process is shutting down mid-run); the next start
    /// runs it again from the first step.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn requeue(&self, run_id: RunId, attempt: i64) -> Result<bool> {
        let done = sqlx::query(
            "update run set status = 'queued', lease_owner = null, lease_expires_at = null
             where run_id = ? and attempt = ? and status = 'running'",
        )
        .bind(run_id)
        .bind(attempt)
        .execute(&mut *self.writer.lock().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One run.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn get_run(&self, run_id: RunId) -> Result<Option<RunRow>> {
        let sql = format!("select {RUN_COLUMNS} from run where run_id = ?");
        Ok(sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(sql))
            .bind(run_id)
            .fetch_optional(&self.reader)
            .await?)
    }

    /// A run's steps, in order.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn steps(&self, run_id: RunId) -> Result<Vec<StepRow>> {
        Ok(sqlx::query_as::<_, StepRow>(STEPS_OF_RUN)
            .bind(run_id)
            .fetch_all(&self.reader)
            .await?)
    }

    /// Up to `limit` runs older than `before` (all when `None`), newest first.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn list_runs(&self, before: Option<RunId>, limit: i64) -> Result<Vec<RunRow>> {
        self.search_runs(&RunFilter::default(), before, limit).await
    }

    /// Up to `limit` runs matching `filter` and older than `before`, newest first: keyset
    /// paging (`run_id < before`, never OFFSET), so a deep page costs what the first does.
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
        // Only the conditions that are set, so SQLite can use its indexes for them.
        let mut conditions = vec!["run_id < ?"];
        let mut texts: Vec<&str> = Vec::new();
        for (value, condition) in [
            (filter.job.as_deref(), "job = ?"),
            (filter.user.as_deref(), "user_name = ?"),
            (filter.channel.as_deref(), "channel_name = ?"),
            (filter.platform.map(Platform::as_str), "platform = ?"),
        ] {
            if let Some(value) = value {
                conditions.push(condition);
                texts.push(value);
            }
        }
        if filter.status.is_some() {
            conditions.push("status = ?");
        }
        if filter.since.is_some() {
            conditions.push("created_at >= ?");
        }
        if filter.until.is_some() {
            conditions.push("created_at < ?");
        }
        // The limit is a number written into the SQL, not bound: SQLite reads a bound LIMIT
        // while planning and compiles the statement again every time it is bound.
        let page = format!(
            "from run where {} order by run_id desc limit {limit}",
            conditions.join(" and ")
        );
        // With a time filter, the page's run numbers are picked first, from `run_created`
        // alone, and only its rows are read: otherwise SQLite reads every run of the period
        // to sort them (docs/performance.md has the figures).
        // Without one, the page is read in order and this would only add a step.
        let sql = if filter.since.is_some() || filter.until.is_some() {
            format!(
                "select {RUN_COLUMNS} from run where run_id in (select run_id {page})
                 order by run_id desc"
            )
        } else {
            format!("select {RUN_COLUMNS} {page}")
        };
        let mut query = sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(sql))
            .bind(before.map_or(i64::MAX, |id| id.0));
        for text in texts {
            query = query.bind(text);
        }
        if let Some(status) = filter.status {
            query = query.bind(status);
        }
        if let Some(since) = filter.since {
            query = query.bind(since);
        }
        if let Some(until) = filter.until {
            query = query.bind(until);
        }
        Ok(query.fetch_all(&self.reader).await?)
    }

    /// How many runs wait in the queue and how many are running.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn counts(&self) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "select (select coalesce(sum(queued), 0) from job_queue),
                    (select count(*) from run where status = 'running')",
        )
        .fetch_one(&self.reader)
        .await?)
    }
}

/// The batch task is gone: the store was closed (shutting down).
fn closed() -> super::Error {
    super::Error::Closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunStatus;
    use crate::store::Inserted;
    use crate::store::samples::{ack, build_steps, claim, new_run};

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        (dir, Store::connect(&url).await.unwrap())
    }

    #[tokio::test]
    async fn the_same_message_makes_one_run_with_the_same_acknowledgement() {
        let (_dir, store) = store().await;
        let first = store.insert_run(&new_run("p1"), 1, ack).await.unwrap();
        let second = store.insert_run(&new_run("p2"), 2, ack).await.unwrap();
        let again = store.insert_run(&new_run("p1"), 3, ack).await.unwrap();
        assert!(first.created && second.created && !again.created);
        assert_eq!(first.ack_text, "#1 at 1");
        assert_eq!(second.ack_text, "#2 at 2");
        assert_eq!(
            again,
            Inserted {
                created: false,
                ..first
            }
        );
        assert_eq!(store.counts().await.unwrap(), (2, 0));

        let denied = NewRun {
            denied: Some("bob is not in the job's allow.users".into()),
            ..new_run("p3")
        };
        let third = store.insert_run(&denied, 4, ack).await.unwrap();
        let row = store.get_run(third.run_id).await.unwrap().unwrap();
        assert_eq!(row.status, RunStatus::Denied);
        assert_eq!(row.finished_at, Some(4));
        assert_eq!(
            store.counts().await.unwrap(),
            (2, 0),
            "a denied run is not queued"
        );
    }

    /// `job_queue` against a count of the runs themselves.
    async fn assert_queue_counts(store: &Store) {
        let kept: Vec<(String, i64)> =
            sqlx::query_as("select job, queued from job_queue where queued > 0 order by job")
                .fetch_all(&store.reader)
                .await
                .unwrap();
        let counted: Vec<(String, i64)> = sqlx::query_as(
            "select job, count(*) from run where status = 'queued' group by job order by job",
        )
        .fetch_all(&store.reader)
        .await
        .unwrap();
        assert_eq!(kept, counted);
    }

    #[tokio::test]
    async fn positions_and_claims_follow_each_jobs_queue_and_concurrency() {
        let (_dir, store) = store().await;
        let run = |id: &str, job: &str, concurrency: i64| NewRun {
            job: job.into(),
            concurrency,
            queue_limit: 3,
            ..new_run(id)
        };
        let mut places = Vec::new();
        for (id, job, concurrency) in [
            ("b1", "build", 1),
            ("b2", "build", 1),
            ("l1", "lint", 2),
            ("b3", "build", 1),
            ("l2", "lint", 2),
            ("l3", "lint", 2),
        ] {
            let inserted = store
                .insert_run(&run(id, job, concurrency), 1, ack)
                .await
                .unwrap();
            places.push(inserted.ack_text);
        }
        assert_eq!(
            places,
            [
                "#1 at 1", "#2 at 2", "#3 at 1", "#4 at 3", "#5 at 2", "#6 at 3"
            ]
        );
        assert!(matches!(
            store.insert_run(&run("b4", "build", 1), 1, ack).await,
            Err(crate::store::Error::QueueFull(3))
        ));
        assert_queue_counts(&store).await;

        // Oldest first while a job has a free slot: build takes one, lint two, then nothing.
        let mut claimed = Vec::new();
        while let Some(row) = store
            .try_claim(claim("w", 10, 100, &build_steps()))
            .await
            .unwrap()
        {
            claimed.push(row.run_id.0);
        }
        assert_eq!(claimed, [1, 3, 5]);
        assert_queue_counts(&store).await;

        // Leaving the queue (cancelled) and coming back to it (requeued) are counted.
        assert!(store.cancel_queued(RunId(2), "no", 11, None).await.unwrap());
        assert!(store.requeue(RunId(1), 1).await.unwrap());
        assert_queue_counts(&store).await;
        let next = store
            .insert_run(&run("b5", "build", 1), 12, ack)
            .await
            .unwrap();
        assert_eq!(next.ack_text, "#7 at 3", "runs 1 and 4 wait before it");
        assert_eq!(
            store
                .try_claim(claim("w", 13, 100, &build_steps()))
                .await
                .unwrap()
                .map(|r| r.run_id.0),
            Some(1),
            "the requeued run goes first"
        );
        assert_queue_counts(&store).await;
    }
}
