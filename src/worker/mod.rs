//! Workers: claim a queued run, run its steps, record the result and queue the reply; and the
//! reaper, which settles runs whose worker stopped under them.
//!
//! - A worker sleeps until the store says a run may be claimable (no polling delay).
//! - The claim is committed before anything runs; no transaction is held while a job runs.
//! - A heartbeat renews the lease. When a renew finds the run is no longer ours, the steps are
//!   stopped and the result is discarded: the run was settled elsewhere. When it finds a
//!   cancel was requested (`cancel`, from any page or chat), the steps are stopped and the run
//!   ends cancelled; the store wakes the heartbeat at once on a request, so it need not wait
//!   for its next beat.
//! - The result and its reply are written in one transaction ([`Store::finish_run`]), so there
//!   is never a reply without a stored result, nor a result whose reply is lost.
//! - On shutdown, running steps get `shutdown_grace` to finish; then their process groups are
//!   killed and the run ends [`RunStatus::Interrupted`] (or goes back to the queue once, see
//!   [`after_interrupt`]).
//! - The [`Reaper`] looks at start-up and every [`REAP_EVERY`] for runs whose lease expired
//!   (chatrun was killed, or lost the database): it kills what a dead chatrun of this host left
//!   running and settles each run the same way, with a reply. No run stays `running`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::domain::{RunId, RunRow, RunStatus, StepStatus};
use crate::logs::LogStore;
use crate::runner;
use crate::store::{self, CancelWatch, Renewal, Store, ms, now_ms};
use crate::store::{RunResult, StepResult};

mod execute;
pub mod remote;

pub use execute::{Agent, OUTPUT_TAIL_LINES, Plan, Steps, execute};

/// Failures of an agent: what it reports could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed (the local agent).
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The server could not be reached, or refused the report (a remote agent).
    #[error("the server: {0}")]
    Server(String),
}

/// The local agent's reports of run `.0`'s steps: straight to the store.
struct LocalSteps<'a>(&'a Store, RunId);

impl Steps for LocalSteps<'_> {
    async fn start_step(&self, position: usize, now: i64) -> Result<(), Error> {
        Ok(self.0.start_step(self.1, position, now).await?)
    }

    async fn finish_step(&self, position: usize, result: &StepResult) -> Result<(), Error> {
        Ok(self.0.finish_step(self.1, position, result).await?)
    }
}

/// How often the reaper looks for runs whose lease expired.
pub const REAP_EVERY: Duration = Duration::from_secs(5);

/// What becomes of a run chatrun stopped under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterInterrupt {
    /// Queued again, to run from its first step.
    Requeue,
    /// Ends `interrupted`, with a reply saying so.
    Interrupted,
}

/// A run is run again after an interruption only when its job says it is safe to repeat
/// (`retry_interrupted = true`), and only once: `attempt` is the attempt that was stopped.
pub fn after_interrupt(retry_interrupted: bool, attempt: i64) -> AfterInterrupt {
    if retry_interrupted && attempt < 2 {
        AfterInterrupt::Requeue
    } else {
        AfterInterrupt::Interrupted
    }
}

/// The error shown for a run that ends interrupted, in replies and on its page.
pub fn interrupted_error(cause: &str, retried: bool) -> String {
    let again = if retried {
        "it was already run again once and is not run a third time"
    } else {
        "it is not run again (the job does not set `retry_interrupted`)"
    };
    format!("{cause}; {again}. Start it again with `retry`.")
}

/// The lease owner name of worker `n` of this process: `host:pid#n`, so that a restarted
/// chatrun can tell its dead predecessor's runs from a live neighbour's.
pub fn owner_name(n: usize) -> String {
    runner::orphans::owner(n)
}

/// The steps of every job of `catalog`, each marked with whether an agent may run it: the
/// local agent (`labels` `None`) runs the jobs without `runs_on`; a remote agent the jobs whose
/// `runs_on` labels it has all of, and, when the server has no `local_agent`, those without.
pub fn job_steps_for(
    catalog: &Catalog,
    labels: Option<&[String]>,
    local_agent: bool,
) -> store::JobSteps {
    store::JobSteps::for_agent(catalog.jobs().map(|job| {
        let may = match labels {
            None => job.runs_on.is_empty(),
            Some(_) if job.runs_on.is_empty() => !local_agent,
            Some(labels) => crate::domain::fits(&job.runs_on, labels),
        };
        (job.name.as_str(), job.step_names(), may)
    }))
}

/// What [`Worker::try_run_one`] did.
#[derive(Debug, Clone)]
pub enum Turn {
    /// It ran (or settled) this run; and claimed the next in the same write as it stored the
    /// result, when one was waiting.
    Ran(RunId, Option<Box<Claimed>>),
    /// The queue was empty.
    Idle,
}

/// A run a worker claimed, with the watch on cancel requests it made before the claim (so a
/// request for the run cannot come before the watch).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub run: RunRow,
    pub cancels: CancelWatch,
}

/// Everything a worker needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct Worker {
    pub store: Store,
    pub catalog: Arc<Catalog>,
    pub config: Arc<Config>,
    /// Written into the lease, for people reading the database.
    pub owner: String,
    /// The platforms result replies go to.
    pub chat: crate::chat::Registry,
    /// Where the runs' output goes.
    pub logs: LogStore,
    /// The steps of `catalog`'s jobs, as the claim writes them ([`Worker::job_steps_of`]).
    pub job_steps: Arc<store::JobSteps>,
}

impl Worker {
    /// The steps of every job of `catalog`, for the local agent's [`Worker::job_steps`]: made
    /// once, not at every claim.
    pub fn job_steps_of(catalog: &Catalog) -> Arc<store::JobSteps> {
        Arc::new(job_steps_for(catalog, None, true))
    }

    /// Runs queued runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut next = None;
        loop {
            let woken = self.store.wait_for_work();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.try_run_one(&shutdown, next.take()).await {
                Ok(Turn::Ran(_, claimed)) => {
                    next = claimed;
                    continue;
                }
                Ok(Turn::Idle) => {}
                Err(err) => tracing::error!(error = ?err, "worker cannot reach the database"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = woken => {}
                // Runs the reaper put back, or whose job's slot freed up elsewhere.
                () = tokio::time::sleep(REAP_EVERY) => {}
            }
        }
    }

    /// Runs `claimed` (a run this worker claimed as it finished its last), or claims one and
    /// runs it, if one is waiting. Once shutdown began it starts none, and gives `claimed`
    /// back to the queue.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn try_run_one(
        &self,
        shutdown: &CancellationToken,
        claimed: Option<Box<Claimed>>,
    ) -> Result<Turn, Error> {
        if shutdown.is_cancelled() {
            if let Some(claimed) = claimed {
                let run = &claimed.run;
                self.store.requeue(run.run_id, run.attempt).await?;
            }
            return Ok(Turn::Idle);
        }
        let Claimed { run, cancels } = match claimed {
            Some(claimed) => *claimed,
            None => {
                let cancels = self.store.watch_cancels();
                match self.store.try_claim(self.claim()).await? {
                    Some(run) => Claimed { run, cancels },
                    None => return Ok(Turn::Idle),
                }
            }
        };
        let run_id = run.run_id;
        tracing::info!(run = %run_id, job = %run.job, attempt = run.attempt, "run started");

        let Some(job) = self.catalog.get(&run.job).cloned() else {
            let error = format!("the job `{}` no longer exists on this server", run.job);
            self.finish_without_steps(run, &[], error).await?;
            return Ok(Turn::Ran(run_id, None));
        };
        // Checked when queued; checked again, since the job's definition may have changed.
        let values = match crate::catalog::args::bind(&job.name, &job.params, &run.args) {
            Ok(values) => values,
            Err(err) => {
                let error = format!("its arguments no longer fit the job: {err}");
                self.finish_without_steps(run, &job.step_names(), error)
                    .await?;
                return Ok(Turn::Ran(run_id, None));
            }
        };

        // On shutdown the steps get `shutdown_grace` before they are stopped.
        let stop = CancellationToken::new();
        let interrupted = Arc::new(AtomicBool::new(false));
        let _grace = AbortOnDropHandle::new(tokio::spawn(stop_after_grace(
            shutdown.clone(),
            self.config.shutdown_grace,
            run_id,
            stop.clone(),
            interrupted.clone(),
        )));
        let lease = Arc::new(Lease::default());
        let _heartbeat = AbortOnDropHandle::new(tokio::spawn(heartbeat(
            self.store.clone(),
            (run_id, run.attempt),
            self.config.lease,
            cancels,
            stop.clone(),
            lease.clone(),
        )));

        let plan = Plan::new(&run, &job, &values, self.config.kill_grace);
        // What an earlier attempt logged is removed first.
        let log = self.logs.capture(run_id, run.attempt > 1).await;
        let agent = Agent {
            owner: self.owner.clone(),
            nice: self.config.job_nice,
        };
        let steps = LocalSteps(&self.store, run_id);
        let (result, last_step) = execute(&plan, &steps, log, &agent, &stop, &interrupted).await?;
        let cancelled_because = lease.cancelled_because.get().cloned();
        let last_step = last_step.as_ref().map(|(position, step)| (*position, step));
        if lease.lost.load(Ordering::SeqCst) {
            tracing::warn!(run = %run_id, attempt = run.attempt, "lease lost; result discarded");
            return Ok(Turn::Ran(run_id, None));
        }
        // The next run is claimed with this one's result, unless shutdown began meanwhile.
        let next = (!shutdown.is_cancelled()).then(|| self.claim());
        let cancels = self.store.watch_cancels();
        let grace = humantime::format_duration(self.config.shutdown_grace);
        let shut_down = || {
            format!(
                "chatrun was shut down while this run was going, and its steps were stopped \
                 after the {grace} grace period"
            )
        };
        let claimed = self
            .settle(run, result, last_step, cancelled_because, shut_down, next)
            .await?;
        Ok(Turn::Ran(
            run_id,
            claimed.map(|run| Box::new(Claimed { run, cancels })),
        ))
    }

    /// Stores what became of `run`, which an agent executed: its `result` (a cancelled run's
    /// error is `cancelled_because`), with its last step's and its reply; or, when the agent
    /// was shut down under it (status `interrupted`, for the reason `shut_down` words), the
    /// run queued again or ended interrupted, as its job says. In the same write as a result,
    /// claims `next` (when given): the run it claimed.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn settle(
        &self,
        run: RunRow,
        mut result: RunResult,
        last_step: Option<(usize, &StepResult)>,
        cancelled_because: Option<String>,
        shut_down: impl FnOnce() -> String,
        next: Option<store::Claim<'_>>,
    ) -> store::Result<Option<RunRow>> {
        if let Some(reason) = cancelled_because
            && result.status == RunStatus::Cancelled
        {
            result.error = Some(reason);
        }
        if result.status != RunStatus::Interrupted {
            return self.finish(run, result, last_step, next).await;
        }
        let retry = self
            .catalog
            .get(&run.job)
            .is_some_and(|job| job.retry_interrupted);
        match after_interrupt(retry, run.attempt) {
            AfterInterrupt::Requeue => {
                self.store.requeue(run.run_id, run.attempt).await?;
                tracing::info!(run = %run.run_id, "shut down under the run: it goes back to the queue");
            }
            AfterInterrupt::Interrupted => {
                result.error = Some(interrupted_error(&shut_down(), run.attempt > 1));
                self.finish(run, result, last_step, None).await?;
            }
        }
        Ok(None)
    }

    /// A claim of the next run by this worker, from now.
    fn claim(&self) -> store::Claim<'_> {
        let now = now_ms();
        store::Claim {
            owner: &self.owner,
            now,
            lease_until: now + ms(self.config.lease),
            steps: &self.job_steps,
        }
    }

    /// Ends a run before its steps: those of job steps `names` that the claim wrote are marked
    /// skipped.
    pub async fn finish_without_steps(
        &self,
        run: RunRow,
        names: &[&str],
        error: String,
    ) -> store::Result<()> {
        tracing::warn!(run = %run.run_id, %error, "run failed before its steps");
        let result = RunResult {
            status: RunStatus::Failed,
            error: Some(error),
            log_head: String::new(),
            log_tail: String::new(),
            log_bytes: 0,
            log_lines: 0,
            log_path: None,
            finished_at: now_ms(),
        };
        // None of the steps the claim wrote ran.
        let skipped = StepResult {
            status: StepStatus::Skipped,
            exit_code: None,
            detail: None,
            finished_at: result.finished_at,
            output_tail: None,
            tests: None,
            report_error: None,
        };
        let first = (!names.is_empty()).then_some((0, &skipped));
        self.finish(run, result, first, None).await?;
        Ok(())
    }

    /// Stores the result, with its last step's, and its reply (worded from the stored run when
    /// it is sent); in the same write, claims `next` (when given): the run it claimed.
    async fn finish(
        &self,
        run: RunRow,
        result: RunResult,
        last_step: Option<(usize, &StepResult)>,
        next: Option<store::Claim<'_>>,
    ) -> store::Result<Option<RunRow>> {
        let reply = self.chat.result_address(&run);
        let (stored, claimed) = self
            .store
            .finish_run(
                run.run_id,
                run.attempt,
                &result,
                reply.as_ref(),
                last_step,
                next,
            )
            .await?;
        if stored {
            tracing::info!(run = %run.run_id, status = result.status.as_str(), "run finished");
            let finished = RunRow {
                status: result.status,
                finished_at: Some(result.finished_at),
                ..run
            };
            if let Err(err) = self.notify(&finished).await {
                tracing::warn!(run = %finished.run_id, error = ?err,
                    "cannot queue the notice of the job's status change");
            }
        }
        Ok(claimed)
    }

    /// Tells the job's `notify` channels when `run` (just finished) changed its job's outcome
    /// for its arguments: failed after a success, or succeeded after failures. Queued after the
    /// run's result, not with it: a crash in between loses the notice, never the result.
    async fn notify(&self, run: &RunRow) -> store::Result<()> {
        let Some(job) = self.catalog.get(&run.job) else {
            return Ok(());
        };
        if job.notify.channels().next().is_none()
            || !matches!(run.status, RunStatus::Succeeded | RunStatus::Failed)
        {
            return Ok(());
        }
        let previous = self
            .store
            .previous_outcomes(
                &run.job,
                &run.args,
                run.run_id,
                store::BACK_TO_GREEN_LOOK_BACK,
            )
            .await?;
        let Some(change) = crate::domain::StatusChange::of(
            run.status == RunStatus::Succeeded,
            &previous,
            store::BACK_TO_GREEN_LOOK_BACK,
        ) else {
            return Ok(());
        };
        let link = run.run_id.page(&self.config.public_url);
        for (platform, channel) in job.notify.channels() {
            let notice = self
                .chat
                .get(platform)
                .and_then(|chat| chat.notice(channel, run, change, &link));
            match notice {
                Some(delivery) => {
                    self.store.enqueue_delivery(&delivery, now_ms()).await?;
                }
                None => tracing::warn!(run = %run.run_id, %platform, channel,
                    "the job's notify names a channel chatrun cannot post to (is the platform configured?)"),
            }
        }
        Ok(())
    }
}

/// What the heartbeat learnt of a run's lease.
#[derive(Debug, Default)]
struct Lease {
    /// The run is no longer this attempt's.
    lost: AtomicBool,
    /// Why a cancel was asked for, once it was.
    cancelled_because: OnceLock<String>,
}

/// Acts on a renewal of run `run_id`'s lease: a cancel request or a lost lease stops the steps
/// (`stop`) and is noted in `lease`. False once the lease is lost: no more renewals.
fn heard(run_id: RunId, renewal: Renewal, lease: &Lease, stop: &CancellationToken) -> bool {
    match renewal {
        Renewal::Held => true,
        Renewal::CancelRequested(reason) => {
            if lease.cancelled_because.set(reason).is_ok() {
                tracing::info!(run = %run_id, "cancel requested: stopping the steps");
                stop.cancel();
            }
            true
        }
        Renewal::Lost => {
            lease.lost.store(true, Ordering::SeqCst);
            stop.cancel();
            false
        }
    }
}

/// Renews the lease every third of its length, and at once when a cancel was requested; on
/// losing the lease or on a cancel request for the run, stops it.
async fn heartbeat(
    store: Store,
    (run_id, attempt): (RunId, i64),
    length: Duration,
    mut cancels: CancelWatch,
    stop: CancellationToken,
    lease: Arc<Lease>,
) {
    let mut every = tokio::time::interval(length / 3);
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = cancels.requested() => {}
        }
        match store.renew(run_id, attempt, now_ms() + ms(length)).await {
            Ok(renewal) => {
                if !heard(run_id, renewal, &lease, &stop) {
                    return;
                }
            }
            // The next tick tries again; the lease outlives a few failed renewals.
            Err(err) => tracing::warn!(error = ?err, run = %run_id, "cannot renew the lease"),
        }
    }
}

/// On shutdown, lets run `run_id` go on for `grace`, then stops it as interrupted.
async fn stop_after_grace(
    shutdown: CancellationToken,
    grace: Duration,
    run_id: RunId,
    stop: CancellationToken,
    interrupted: Arc<AtomicBool>,
) {
    shutdown.cancelled().await;
    tracing::info!(run = %run_id, grace = %humantime::format_duration(grace),
        "shutting down: waiting for the running steps");
    tokio::time::sleep(grace).await;
    tracing::warn!(run = %run_id, "shutting down: grace period over, stopping the steps");
    interrupted.store(true, Ordering::SeqCst);
    stop.cancel();
}

/// Settles runs whose lease expired: their worker, or the whole chatrun, stopped under them.
#[derive(Debug, Clone)]
pub struct Reaper {
    pub worker: Worker,
}

impl Reaper {
    /// Reaps now, then when the first lease of a running run ends (so a run whose worker
    /// died, on any instance, is settled as soon as its lease runs out), and at least every
    /// [`REAP_EVERY`], until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.reap().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "settled runs whose chatrun stopped under them"),
                Err(err) => tracing::error!(error = ?err, "reaper cannot reach the database"),
            }
            let wait = match self.worker.store.next_lease_expiry().await {
                // Just after it ends (leases are compared with `<`); never a busy loop.
                Ok(Some(at)) => {
                    Duration::from_millis(u64::try_from(at + 1 - now_ms()).unwrap_or(0))
                        .clamp(Duration::from_millis(50), REAP_EVERY)
                }
                _ => REAP_EVERY,
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass: ends the leases of dead chatruns of this host (killing the process groups
    /// their steps left behind), then requeues or interrupts every run whose lease expired.
    /// Returns how many runs it settled.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn reap(&self) -> store::Result<usize> {
        let store = &self.worker.store;
        for (run_id, owner) in store.running_leases().await? {
            let Some(owner) = owner.filter(|owner| runner::orphans::owner_is_dead_here(owner))
            else {
                continue;
            };
            let (id, who) = (run_id.0, owner.clone());
            let killed = tokio::task::spawn_blocking(move || runner::orphans::kill_run(id, &who))
                .await
                .unwrap_or(0);
            if killed > 0 {
                tracing::warn!(run = %run_id, processes = killed,
                    "killed the processes a stopped chatrun left running");
            }
            store.expire_lease(run_id, &owner).await?;
        }

        let now = now_ms();
        let mut settled = 0;
        for run in store.expired_runs(now).await? {
            let retry = self
                .worker
                .catalog
                .get(&run.job)
                .is_some_and(|job| job.retry_interrupted);
            let done = match after_interrupt(retry, run.attempt) {
                AfterInterrupt::Requeue => {
                    let requeued = store.requeue_expired(run.run_id, run.attempt, now).await?;
                    if requeued {
                        tracing::warn!(run = %run.run_id, "chatrun stopped under this run: running it once more");
                    }
                    requeued
                }
                AfterInterrupt::Interrupted => self.interrupt(run, now).await?,
            };
            settled += usize::from(done);
        }
        Ok(settled)
    }

    async fn interrupt(&self, run: RunRow, now: i64) -> store::Result<bool> {
        let store = &self.worker.store;
        let error = interrupted_error(
            "chatrun stopped while this run was going (it was killed, or lost its database)",
            run.attempt > 1,
        );
        let reply = self.worker.chat.result_address(&run);
        let done = store
            .interrupt_run(run.run_id, run.attempt, now, &error, reply.as_ref())
            .await?;
        if done {
            tracing::warn!(run = %run.run_id, "chatrun stopped under this run: it ends interrupted");
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_run_is_run_again_once_and_only_when_its_job_allows() {
        assert_eq!(after_interrupt(false, 1), AfterInterrupt::Interrupted);
        assert_eq!(after_interrupt(true, 1), AfterInterrupt::Requeue);
        assert_eq!(after_interrupt(true, 2), AfterInterrupt::Interrupted);
        assert_eq!(after_interrupt(true, 7), AfterInterrupt::Interrupted);
    }

    #[tokio::test]
    async fn a_run_claimed_as_shutdown_begins_goes_back_to_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        let new = store::NewRun {
            origin: crate::domain::Origin {
                platform: crate::domain::Platform::Mattermost,
                ..crate::domain::Origin::default()
            },
            message_id: "p1".into(),
            job: "build".into(),
            message: "#build".into(),
            ..store::NewRun::default()
        };
        let ack = |_: &store::AckFacts| store::Ack {
            text: "queued".into(),
            delivery: None,
        };
        store.insert_run(&new, 1, ack).await.unwrap();
        let worker = Worker {
            store: store.clone(),
            catalog: Arc::new(crate::catalog::Catalog::default()),
            config: Arc::new(Config::parse("test", "", Vec::new()).unwrap()),
            owner: owner_name(0),
            chat: crate::chat::Registry::default(),
            logs: LogStore::files(dir.path().join("logs"), crate::logs::DEFAULT_MAX_LOG_BYTES),
            job_steps: Arc::new(store::JobSteps::new([("build", vec!["a"])])),
        };
        // As the worker's last run finished, it claimed this one; then shutdown began.
        let cancels = store.watch_cancels();
        let run = store.try_claim(worker.claim()).await.unwrap().unwrap();
        let claimed = Box::new(Claimed { run, cancels });
        let shutdown = CancellationToken::new();
        shutdown.cancel();

        let step = worker.try_run_one(&shutdown, Some(claimed)).await;
        assert!(matches!(step, Ok(Turn::Idle)), "{step:?}");
        let run = store
            .get_run(crate::domain::RunId(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(run.status, RunStatus::Queued, "started by the next start");
    }
}
