//! The `run` and `step` tables: inserting a trigger's run, the queue operations
//! (claim, renew, finish, requeue) and the reads of the history pages.
//!
//! Every write a worker makes after its claim has `where run_id = ? and attempt = ?`: when
//! another worker has claimed the run since (our lease expired), the write touches 0 rows and
//! the caller learns it lost the run, as in underway's `mark_succeeded`.

use sqlx::{Connection, FromRow, Row};

use super::{Result, Store, outbox};
use crate::domain::{
    Delivery, Platform, RunId, RunRow, RunStatus, StepRow, StepStatus, TestFailureRow,
};

/// A trigger that became a run, before it is stored.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    /// `mattermost` or `teams`.
    pub platform: Platform,
    /// Team id on the chat server.
    pub team_id: String,
    /// Team name, for display.
    pub team_name: String,
    /// Channel id on the chat server.
    pub channel_id: String,
    /// Channel name, for display.
    pub channel_name: String,
    /// User id on the chat server.
    pub user_id: String,
    /// User name, for display and mentions.
    pub user_name: String,
    /// The trigger post's id; one run per (platform, message_id).
    pub message_id: String,
    /// The thread the result goes to, when known.
    pub thread_root_id: Option<String>,
    /// The whole trigger text.
    pub message: String,
    /// The job to run.
    pub job: String,
    /// What followed the job name.
    pub args: String,
    /// The configured webhook that delivered the trigger (Teams), or empty.
    pub hook: String,
    /// Set when permissions refused the request: it is recorded as `denied`, with this reason,
    /// and never runs.
    pub denied: Option<String>,
    /// Runs of the job that may execute at once (at least 1).
    pub concurrency: i64,
    /// Runs of the job that may wait; 0 for no limit.
    pub queue_limit: i64,
}

/// Where a new run stands, for its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1 for the next run of its job to start.
    pub place: i64,
    /// Runs of its job running now.
    pub running: i64,
    /// The median duration of its job's last 20 finished runs (ms), once it has some.
    pub typical_ms: Option<i64>,
}

/// The acknowledgement of a newly stored run, made once its number and position are known.
#[derive(Debug, Clone)]
pub struct Ack {
    /// What the chat reply says.
    pub text: String,
    /// A reply to send through the outbox as well (a trigger typed inside a thread).
    pub delivery: Option<Delivery>,
}

/// The outcome of [`Store::insert_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// The run's number.
    pub run_id: RunId,
    /// The acknowledgement (the stored one, for a duplicate).
    pub ack_text: String,
    /// False when the trigger had been seen before (or the queue was full).
    pub created: bool,
    /// The acknowledgement was queued in the outbox with the run (its delivery), to be sent.
    pub reply_queued: bool,
}

/// What [`Store::insert_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// Stored (or found again, for a trigger delivered twice).
    Stored(Inserted),
    /// Not stored: this many runs of the job already wait, the job's limit.
    QueueFull(i64),
}

/// Which runs a history page or `/api/runs` shows; unset fields match every run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub job: Option<String>,
    pub status: Option<RunStatus>,
    pub user: Option<String>,
    pub channel: Option<String>,
    pub platform: Option<Platform>,
    /// Created at or after (ms).
    pub since: Option<i64>,
    /// Created before (ms).
    pub until: Option<i64>,
}

/// Every job's steps, by name, as [`Store::try_claim`] writes them for the run it claims
/// (built from the catalog).
#[derive(Debug, Clone)]
pub struct JobSteps(String);

impl JobSteps {
    /// `(job, its steps' names in order)` for each job.
    pub fn new<'a>(jobs: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Self {
        let jobs: Vec<serde_json::Value> = jobs
            .into_iter()
            .map(|(job, steps)| serde_json::json!([job, steps]))
            .collect();
        JobSteps(serde_json::Value::from(jobs).to_string())
    }
}

/// A run's steps and failed tests, as its worker writes them: the worker keeps this copy as it
/// goes (each change beside its write), and words the result's reply from it, so the last
/// write needs to read nothing back.
#[derive(Debug, Clone, Default)]
pub struct RunSteps {
    pub steps: Vec<StepRow>,
    pub failures: Vec<TestFailureRow>,
}

impl RunSteps {
    /// The steps [`Store::try_claim`] writes for run `run_id` of a job with steps `names`,
    /// claimed at `now`.
    pub fn claimed(run_id: RunId, names: &[&str], now: i64) -> Self {
        let steps = names
            .iter()
            .enumerate()
            .map(|(position, name)| {
                let pending =
                    StepRow::pending(run_id, i64::try_from(position).unwrap_or(i64::MAX), name);
                if position == 0 {
                    StepRow {
                        status: StepStatus::Running,
                        started_at: Some(now),
                        ..pending
                    }
                } else {
                    pending
                }
            })
            .collect();
        Self {
            steps,
            failures: Vec::new(),
        }
    }

    /// As [`Store::start_step`].
    pub fn start(&mut self, position: usize, now: i64) {
        if let Some(step) = self.steps.get_mut(position) {
            step.status = StepStatus::Running;
            step.started_at = Some(now);
        }
    }

    /// As [`FINISH_STEP`] (through [`Store::finish_step`] or [`Store::finish_run`]).
    pub fn finish(&mut self, position: usize, result: &StepResult, last: bool) {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let tests = result.tests.as_ref();
        if let Some(step) = self.steps.get_mut(position) {
            step.status = result.status;
            step.exit_code = result.exit_code.map(i64::from);
            step.detail.clone_from(&result.detail);
            step.finished_at = Some(result.finished_at);
            step.tests_run = tests.map(|t| count(t.tests));
            step.tests_failed = tests.map(|t| count(t.failed));
            step.tests_skipped = tests.map(|t| count(t.skipped));
            step.tests_duration_ms = tests.map(|t| t.duration_ms);
            step.report_error.clone_from(&result.report_error);
            step.output_tail.clone_from(&result.output_tail);
            let at = i64::try_from(position).unwrap_or(i64::MAX);
            self.failures.retain(|f| f.position != at);
            self.failures.extend(
                tests
                    .iter()
                    .flat_map(|t| &t.failures)
                    .map(|f| TestFailureRow {
                        position: at,
                        suite: f.suite.clone(),
                        name: f.name.clone(),
                        message: f.message.clone(),
                        detail: f.detail.clone(),
                    }),
            );
            self.failures.sort_by_key(|f| f.position);
        }
        if last {
            for step in &mut self.steps {
                if step.status == StepStatus::Pending {
                    step.status = StepStatus::Skipped;
                }
            }
        }
    }
}

/// What a finished step reports.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub status: StepStatus,
    pub exit_code: Option<i32>,
    pub detail: Option<String>,
    pub finished_at: i64,
    /// What its test reports say, when it names some and they could be read.
    pub tests: Option<crate::report::TestSummary>,
    /// Why its named reports could not be used.
    pub report_error: Option<String>,
    /// Its last output lines, kept for failed steps.
    pub output_tail: Option<String>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub status: RunStatus,
    pub error: Option<String>,
    pub log_head: String,
    pub log_tail: String,
    pub log_bytes: i64,
    pub log_lines: i64,
    pub log_path: Option<String>,
    pub finished_at: i64,
}

const RUN_COLUMNS: &str = "run_id, platform, team_id, team_name, channel_id, channel_name, \
    user_id, user_name, message_id, thread_root_id, message, job, args, hook, status, attempt, \
    ack_text, error, log_head, log_tail, log_bytes, log_lines, log_path, created_at, started_at, \
    finished_at";

/// A run's steps (`?1`), in order.
const STEPS_OF_RUN: &str = "select run_id, position, name, status, exit_code, \
    detail, started_at, finished_at, tests_run, tests_failed, tests_skipped, tests_duration_ms, \
    report_error, output_tail from step where run_id = ?1 order by position";

/// Records a step's result: run `?1`, the step and its result as [`step_json`] writes them in
/// `?2` (nothing when `?2` is null). Its failed tests replace those of an earlier attempt; when
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
    insert into test_failure (run_id, position, ordinal, suite, name, message, detail)
    select ?1, ?2 ->> 'position', key, value ->> 0, value ->> 1, value ->> 2, value ->> 3
    from json_each(?2, '$.failures') order by key;
    update step set status = 'skipped'
    where run_id = ?1 and status = 'pending' and ?2 ->> 'last';";

/// A step's result as one parameter of [`FINISH_STEP`] (one JSON text, so that a script with
/// other parameters numbers them without gaps: see `Store::write_script`).
fn step_json(position: usize, result: &StepResult, last: bool) -> String {
    let tests = result.tests.as_ref();
    let failures: Vec<serde_json::Value> = tests
        .iter()
        .flat_map(|t| t.failures.iter())
        .map(|f| serde_json::json!([f.suite, f.name, f.message, f.detail]))
        .collect();
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
const FAILURES_OF_RUN: &str = "select position, suite, name, message, detail \
    from test_failure where run_id = ?1 order by position, ordinal";

/// Who claims the next run ([`Store::try_claim`], [`Store::finish_run`]).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The worker (host:pid#n), whose lease it is.
    pub owner: &'a str,
    pub now: i64,
    pub lease_until: i64,
    /// What the claimed run's steps are.
    pub steps: &'a JobSteps,
}

impl Claim<'_> {
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
    // The run to claim. (Two indexes skipped in all, `?2` in the update and the delete: see
    // `Store::write_script`.)
    const NEXT: &str = "(with recursive queued_job (job) as (
             select (select min(job) from run where status = 'queued')
             union all
             select (select min(job) from run where status = 'queued' and job > q.job)
             from queued_job q where q.job is not null
         )
         select r.run_id from queued_job q
         join run r on r.run_id =
             (select min(run_id) from run where status = 'queued' and job = q.job)
         where (select count(*) from run x
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
                 lease_expires_at = ?4, started_at = ?1
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
        ack: impl FnOnce(RunId, Position, &NewRun) -> Ack + Send + 'static,
    ) -> Result<Insert> {
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

    /// Extends a lease. False when the run is no longer ours (another attempt claimed it).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn renew(&self, run_id: RunId, attempt: i64, lease_until: i64) -> Result<bool> {
        let done = sqlx::query(
            "update run set lease_expires_at = ?
             where run_id = ? and attempt = ? and status = 'running'",
        )
        .bind(lease_until)
        .bind(run_id)
        .bind(attempt)
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
        reply: Option<&Delivery>,
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
                 select ?1, ?4, ?5, ?6, ?3, ?3 where ?4 is not null and changes() = 1;",
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
        .bind(reply.map(|r| &r.body))
        .bind(reply.and_then(outbox::thread))
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
        reply: Option<&Delivery>,
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
            outbox::insert(&mut tx, Some(run_id), reply, now).await?;
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
        reply: Option<&Delivery>,
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
            outbox::insert(&mut tx, Some(run_id), reply, now).await?;
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
        // to sort them (a run a second over one hour of a million runs: 9.1 ms, against 2.6).
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
    super::Error::Sqlx(sqlx::Error::PoolClosed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        (dir, Store::connect(&url).await.unwrap())
    }

    /// A claim by `owner` at `now`, its lease until `lease_until`.
    fn claim<'a>(owner: &'a str, now: i64, lease_until: i64, steps: &'a JobSteps) -> Claim<'a> {
        Claim {
            owner,
            now,
            lease_until,
            steps,
        }
    }

    /// The steps of the job `build` of [`new_run`].
    fn build_steps() -> JobSteps {
        JobSteps::new([("other", vec!["x"]), ("build", vec!["a", "b"])])
    }

    fn new_run(message_id: &str) -> NewRun {
        NewRun {
            platform: crate::domain::Platform::Mattermost,
            message_id: message_id.into(),
            job: "build".into(),
            message: "#build".into(),
            user_name: "alice".into(),
            ..NewRun::default()
        }
    }

    fn ack(run_id: RunId, position: Position, _: &NewRun) -> Ack {
        Ack {
            text: format!("#{run_id} at {}", position.place),
            delivery: None,
        }
    }

    fn stored(insert: Insert) -> Inserted {
        match insert {
            Insert::Stored(inserted) => inserted,
            Insert::QueueFull(n) => panic!("queue full at {n}"),
        }
    }

    fn result(status: RunStatus) -> RunResult {
        RunResult {
            status,
            error: None,
            log_head: "out".into(),
            log_tail: String::new(),
            log_bytes: 3,
            log_lines: 1,
            log_path: None,
            finished_at: 50,
        }
    }

    #[tokio::test]
    async fn the_same_message_makes_one_run_with_the_same_acknowledgement() {
        let (_dir, store) = store().await;
        let first = stored(store.insert_run(&new_run("p1"), 1, ack).await.unwrap());
        let second = stored(store.insert_run(&new_run("p2"), 2, ack).await.unwrap());
        let again = stored(store.insert_run(&new_run("p1"), 3, ack).await.unwrap());
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
        let third = stored(store.insert_run(&denied, 4, ack).await.unwrap());
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
            let inserted = stored(
                store
                    .insert_run(&run(id, job, concurrency), 1, ack)
                    .await
                    .unwrap(),
            );
            places.push(inserted.ack_text);
        }
        assert_eq!(
            places,
            [
                "#1 at 1", "#2 at 2", "#3 at 1", "#4 at 3", "#5 at 2", "#6 at 3"
            ]
        );
        assert!(matches!(
            store
                .insert_run(&run("b4", "build", 1), 1, ack)
                .await
                .unwrap(),
            Insert::QueueFull(3)
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
        let next = stored(
            store
                .insert_run(&run("b5", "build", 1), 12, ack)
                .await
                .unwrap(),
        );
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

    #[tokio::test]
    async fn claims_oldest_first_and_a_lost_lease_cannot_finish() {
        let (_dir, store) = store().await;
        store.insert_run(&new_run("p1"), 1, ack).await.unwrap();
        store
            .insert_run(
                &NewRun {
                    job: "lint".into(),
                    ..new_run("p2")
                },
                2,
                ack,
            )
            .await
            .unwrap();

        let run = store
            .try_claim(claim("w1", 10, 20, &build_steps()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (run.run_id, run.attempt, run.status),
            (RunId(1), 1, RunStatus::Running)
        );
        assert!(store.renew(run.run_id, 1, 30).await.unwrap());

        // The lease ran out (the worker died): it is not claimed as it is, but it is expired,
        // and once requeued the next claim takes run 1 again.
        let expired: Vec<RunId> = store
            .expired_runs(31)
            .await
            .unwrap()
            .iter()
            .map(|r| r.run_id)
            .collect();
        assert_eq!(expired, vec![RunId(1)]);
        assert!(!store.requeue_expired(run.run_id, 1, 30).await.unwrap());
        assert!(store.requeue_expired(run.run_id, 1, 31).await.unwrap());
        let second = store
            .try_claim(claim("w2", 31, 60, &build_steps()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((second.run_id, second.attempt), (RunId(1), 2));
        assert!(!store.renew(run.run_id, 1, 70).await.unwrap());
        assert!(
            !store
                .finish_run(run.run_id, 1, &result(RunStatus::Failed), None, None, None)
                .await
                .unwrap()
                .0
        );
        assert!(
            store
                .finish_run(
                    run.run_id,
                    2,
                    &result(RunStatus::Succeeded),
                    None,
                    None,
                    None
                )
                .await
                .unwrap()
                .0
        );

        let third = store
            .try_claim(claim("w1", 40, 70, &build_steps()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(third.run_id, RunId(2));
        assert!(
            store
                .try_claim(claim("w1", 41, 71, &build_steps()))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            store.running_leases().await.unwrap(),
            vec![(third.run_id, Some("w1".to_string()))]
        );
        assert!(!store.expire_lease(third.run_id, "w2").await.unwrap());
        assert!(store.expire_lease(third.run_id, "w1").await.unwrap());
        assert!(store.requeue(third.run_id, third.attempt).await.unwrap());
        let active: Vec<RunId> = store
            .active_runs()
            .await
            .unwrap()
            .iter()
            .map(|r| r.run_id)
            .collect();
        assert_eq!(active, vec![RunId(2)]);
        assert!(
            store
                .cancel_queued(RunId(2), "cancelled by bob", 80, None)
                .await
                .unwrap()
        );
        assert!(
            !store
                .cancel_queued(RunId(2), "again", 81, None)
                .await
                .unwrap()
        );
        assert!(store.active_runs().await.unwrap().is_empty());
        assert_eq!(store.counts().await.unwrap(), (0, 0));
    }

    #[tokio::test]
    async fn an_expired_run_is_interrupted_once_with_its_reply_and_its_steps_settled() {
        let (_dir, store) = store().await;
        store.insert_run(&new_run("p1"), 1, ack).await.unwrap();
        let run = store
            .try_claim(claim("w1", 10, 100, &build_steps()))
            .await
            .unwrap()
            .unwrap();
        let reply = Delivery {
            target: "mattermost.post".into(),
            body: "{}".into(),
            thread: String::new(),
        };

        // Still leased: not interrupted.
        assert!(
            !store
                .interrupt_run(run.run_id, 1, 100, "stopped", Some(&reply))
                .await
                .unwrap()
        );
        assert!(
            store
                .interrupt_run(run.run_id, 1, 101, "stopped", Some(&reply))
                .await
                .unwrap()
        );
        // A second reaper (another chatrun on the same database) finds nothing to do.
        assert!(
            !store
                .interrupt_run(run.run_id, 1, 102, "stopped", Some(&reply))
                .await
                .unwrap()
        );
        let row = store.get_run(run.run_id).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.error.as_deref(), row.finished_at),
            (RunStatus::Interrupted, Some("stopped"), Some(101))
        );
        let steps = store.steps(run.run_id).await.unwrap();
        assert_eq!(
            (steps[0].status, steps[1].status),
            (StepStatus::Interrupted, StepStatus::Skipped)
        );
        assert_eq!(store.deliveries(run.run_id).await.unwrap().len(), 1);
        // The old worker, if it still runs somewhere, cannot write over it.
        assert!(!store.renew(run.run_id, 1, 200).await.unwrap());
    }

    #[tokio::test]
    async fn a_result_and_the_next_claim_go_in_one_write() {
        let (_dir, store) = store().await;
        for message in ["p1", "p2"] {
            store.insert_run(&new_run(message), 1, ack).await.unwrap();
        }
        let steps = build_steps();
        let first = store
            .try_claim(claim("w1", 10, 1000, &steps))
            .await
            .unwrap()
            .unwrap();
        let next = Claim {
            owner: "w1",
            now: 20,
            lease_until: 2000,
            steps: &steps,
        };
        // The job runs one at a time: the first run's result frees the slot the claim takes.
        let (stored, claimed) = store
            .finish_run(
                first.run_id,
                1,
                &result(RunStatus::Succeeded),
                None,
                None,
                Some(next),
            )
            .await
            .unwrap();
        assert!(stored);
        let claimed = claimed.expect("the second run is claimed");
        assert_eq!(
            (
                claimed.run_id,
                claimed.status,
                claimed.attempt,
                claimed.started_at
            ),
            (RunId(2), RunStatus::Running, 1, Some(20))
        );
        let first_now = store.get_run(first.run_id).await.unwrap().unwrap();
        assert_eq!(first_now.status, RunStatus::Succeeded);
        let names = |steps: Vec<StepRow>| -> Vec<(String, StepStatus, Option<i64>)> {
            steps
                .into_iter()
                .map(|s| (s.name, s.status, s.started_at))
                .collect()
        };
        assert_eq!(
            names(store.steps(claimed.run_id).await.unwrap()),
            [
                ("a".to_string(), StepStatus::Running, Some(20)),
                ("b".to_string(), StepStatus::Pending, None)
            ],
            "the claimed run's steps are written with the claim"
        );
        assert_eq!(
            names(store.steps(first.run_id).await.unwrap())[0],
            ("a".to_string(), StepStatus::Running, Some(10)),
            "the first run keeps its own"
        );

        // Nothing left to claim: the result is stored all the same.
        let (stored, none) = store
            .finish_run(
                claimed.run_id,
                1,
                &result(RunStatus::Failed),
                None,
                None,
                Some(Claim { now: 30, ..next }),
            )
            .await
            .unwrap();
        assert!(stored && none.is_none());
        assert_eq!(store.counts().await.unwrap(), (0, 0));
    }

    #[tokio::test]
    async fn finishing_records_steps_and_skips_the_ones_not_run() {
        let (_dir, store) = store().await;
        store.insert_run(&new_run("p1"), 1, ack).await.unwrap();
        let run = store
            .try_claim(claim("w1", 10, 1000, &build_steps()))
            .await
            .unwrap()
            .unwrap();
        // The claim wrote its job's steps, the first running since the claim.
        let claimed = store.steps(run.run_id).await.unwrap();
        assert_eq!(
            claimed
                .iter()
                .map(|s| (s.name.as_str(), s.status, s.started_at))
                .collect::<Vec<_>>(),
            [
                ("a", StepStatus::Running, Some(10)),
                ("b", StepStatus::Pending, None)
            ]
        );
        let failed = StepResult {
            status: StepStatus::Failed,
            exit_code: Some(2),
            detail: None,
            finished_at: 15,
            tests: Some(crate::report::TestSummary {
                tests: 3,
                failed: 1,
                skipped: 0,
                duration_ms: 2,
                failures: vec![crate::report::FailedTest {
                    suite: "s".into(),
                    name: "t".into(),
                    message: "boom".into(),
                    detail: "boom\nat line 3".into(),
                }],
            }),
            report_error: None,
            output_tail: Some("last line".into()),
        };
        // The worker's copy, changed beside each write.
        use serde_json::json;
        let mut held = RunSteps::claimed(run.run_id, &["a", "b"], 10);
        assert_eq!(json!(held.steps), json!(claimed));
        // Not the last step yet: the next stays pending.
        store.finish_step(run.run_id, 0, &failed).await.unwrap();
        held.finish(0, &failed, false);
        let going = store.steps(run.run_id).await.unwrap();
        assert_eq!(going[1].status, StepStatus::Pending);
        assert_eq!(json!(held.steps), json!(going));
        // The last: written with the run's result.
        held.finish(0, &failed, true);
        assert!(
            store
                .finish_run(
                    run.run_id,
                    1,
                    &result(RunStatus::Failed),
                    None,
                    Some((0, &failed)),
                    None
                )
                .await
                .unwrap()
                .0
        );

        let steps = store.steps(run.run_id).await.unwrap();
        assert_eq!(steps[0].status, StepStatus::Failed);
        assert_eq!(steps[0].exit_code, Some(2));
        assert_eq!(steps[0].duration_ms(99), Some(5));
        assert_eq!(
            (steps[0].tests_run, steps[0].tests_failed),
            (Some(3), Some(1))
        );
        assert_eq!(steps[0].output_tail.as_deref(), Some("last line"));
        let failures = store.test_failures(run.run_id).await.unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(
            (failures[0].position, failures[0].detail.as_str()),
            (0, "boom\nat line 3")
        );
        assert_eq!(steps[1].tests_run, None);
        assert_eq!(steps[1].status, StepStatus::Skipped);
        // What the worker holds, and words the reply from, is what is stored.
        assert_eq!(json!(held.steps), json!(steps));
        assert_eq!(json!(held.failures), json!(failures));
        let stored = store.get_run(run.run_id).await.unwrap().unwrap();
        assert_eq!(stored.status, RunStatus::Failed);
        assert_eq!(stored.log_head, "out");

        let filter = RunFilter {
            job: Some("build".into()),
            status: Some(RunStatus::Failed),
            user: Some("alice".into()),
            platform: Some(Platform::Mattermost),
            since: Some(0),
            until: Some(2),
            ..RunFilter::default()
        };
        assert_eq!(store.search_runs(&filter, None, 10).await.unwrap().len(), 1);
        let other = RunFilter {
            channel: Some("elsewhere".into()),
            ..filter
        };
        assert!(
            store
                .search_runs(&other, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let page = store.list_runs(None, 10).await.unwrap();
        assert_eq!(page.len(), 1);
        assert!(
            store
                .list_runs(Some(RunId(1)), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_period_is_paged_newest_first_without_gaps() {
        let (_dir, store) = store().await;
        // Runs 1 to 120, made at times 1 to 120; the period [11, 101) holds runs 11 to 100.
        for n in 1..=120 {
            stored(
                store
                    .insert_run(&new_run(&format!("post{n}")), n, ack)
                    .await
                    .unwrap(),
            );
        }
        let period = RunFilter {
            since: Some(11),
            until: Some(101),
            ..RunFilter::default()
        };
        let ids = |page: &[RunRow]| page.iter().map(|run| run.run_id.0).collect::<Vec<_>>();
        let first = store.search_runs(&period, None, 50).await.unwrap();
        assert_eq!(ids(&first), (51..=100).rev().collect::<Vec<_>>());
        let next = store
            .search_runs(&period, Some(first[49].run_id), 50)
            .await
            .unwrap();
        assert_eq!(ids(&next), (11..=50).rev().collect::<Vec<_>>());
        assert_eq!(next[0].created_at, 50, "whole rows, not only their numbers");
        let since = RunFilter {
            since: Some(111),
            ..RunFilter::default()
        };
        let last = store.search_runs(&since, None, 50).await.unwrap();
        assert_eq!(ids(&last), (111..=120).rev().collect::<Vec<_>>());
    }
}
