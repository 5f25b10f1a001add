//! Workers: claim a queued run, run its steps, record the result and queue the reply.
//!
//! - A worker sleeps until woken by an enqueue (no polling delay); it also looks every
//!   [`IDLE_CHECK`] for runs whose worker died (their lease expired).
//! - The claim is committed before anything runs; no transaction is held while a job runs.
//! - A heartbeat renews the lease. When a renew finds the run is no longer ours, the steps are
//!   stopped and the result is discarded: the other attempt owns it now.
//! - The result and its reply are written in one transaction ([`Store::finish_run`]), so there
//!   is never a reply without a stored result, nor a result whose reply is lost.
//! - On shutdown a running step is stopped and the run goes back to the queue.
//! - A run claimed more than [`MAX_ATTEMPTS`] times (chatrun died under it each time) is failed
//!   with a reply instead of being tried forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::catalog::{Catalog, JobDef, StepDef};
use crate::chat::{mattermost, teams};
use crate::config::Config;
use crate::runner::{self, LogSink, StepOutcome};
use crate::store::runs::{RunResult, StepResult};
use crate::store::{self, RunId, RunRow, RunStatus, StepStatus, Store, ms, now_ms};

/// Claims of one run before it is failed rather than tried again.
pub const MAX_ATTEMPTS: i64 = 3;

/// How often an idle worker looks for runs whose lease expired.
pub const IDLE_CHECK: Duration = Duration::from_secs(5);

/// The lease owner name of worker `n` of this process: `host:pid#n`, so that a restarted
/// chatrun can tell its dead predecessor's runs from a live neighbour's.
pub fn owner_name(n: usize) -> String {
    format!("{}:{}#{n}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "chatrun".into())
}

/// Ends at once the leases held by chatrun processes of this host that no longer exist, so a
/// restart picks up what a crash left running without waiting for the leases to run out.
/// Leases of other hosts, or of live processes, are left to expire on their own.
///
/// # Errors
///
/// The database failed.
pub async fn release_dead_owners(store: &Store) -> store::Result<usize> {
    let host = hostname();
    let mut released = 0;
    for (run_id, owner) in store.running_leases().await? {
        let Some(owner) = owner else { continue };
        let Some((owner_host, rest)) = owner.split_once(':') else {
            continue;
        };
        let pid = rest.split('#').next().and_then(|p| p.parse::<i32>().ok());
        let Some(pid) = pid else { continue };
        if owner_host != host || pid == i32::try_from(std::process::id()).unwrap_or(0) {
            continue;
        }
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone && store.expire_lease(run_id, &owner).await? {
            tracing::info!(run = %run_id, %owner, "the chatrun that ran this is gone: running it again");
            released += 1;
        }
    }
    Ok(released)
}

/// The runs executing in this process, so that `cancel` can stop them.
#[derive(Debug, Default)]
pub struct Cancels {
    running: std::sync::Mutex<std::collections::HashMap<RunId, (CancellationToken, String)>>,
}

impl Cancels {
    fn register(&self, run_id: RunId, stop: CancellationToken) {
        self.lock().insert(run_id, (stop, String::new()));
    }

    fn unregister(&self, run_id: RunId) -> Option<String> {
        self.lock()
            .remove(&run_id)
            .map(|(_, by)| by)
            .filter(|by| !by.is_empty())
    }

    /// Stops run `run_id` (its steps' process groups are killed); `reason` (`cancelled by
    /// alice`) becomes the run's error. False when it is not running here.
    pub fn cancel(&self, run_id: RunId, reason: &str) -> bool {
        let mut running = self.lock();
        match running.get_mut(&run_id) {
            Some((stop, why)) => {
                *why = reason.to_string();
                stop.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<RunId, (CancellationToken, String)>>
    {
        // A panic while holding this lock leaves a plain map behind: keep using it.
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What [`Worker::try_run_one`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// It ran (or settled) this run.
    Ran(RunId),
    /// The queue was empty.
    Idle,
}

/// Everything a worker needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct Worker {
    pub store: Store,
    pub catalog: Arc<Catalog>,
    pub config: Arc<Config>,
    /// Notified on every enqueue.
    pub wake: Arc<Notify>,
    /// Notified when a reply was queued.
    pub outbox_wake: Arc<Notify>,
    /// Written into the lease, for people reading the database.
    pub owner: String,
    /// Where running runs can be cancelled from.
    pub cancels: Arc<Cancels>,
}

impl Worker {
    /// Runs queued runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.try_run_one(&shutdown).await {
                Ok(Step::Ran(_)) => continue,
                Ok(Step::Idle) => {}
                Err(err) => tracing::error!(error = ?err, "worker cannot reach the database"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = woken => {}
                () = tokio::time::sleep(IDLE_CHECK) => {}
            }
        }
    }

    /// Claims and runs one run, if one is waiting.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn try_run_one(&self, shutdown: &CancellationToken) -> store::Result<Step> {
        if shutdown.is_cancelled() {
            return Ok(Step::Idle);
        }
        let now = now_ms();
        let Some(run) = self
            .store
            .try_claim(&self.owner, now, now + ms(self.config.lease))
            .await?
        else {
            return Ok(Step::Idle);
        };
        let run_id = run.run_id;
        tracing::info!(run = %run_id, job = %run.job, attempt = run.attempt, "run started");

        if run.attempt > MAX_ATTEMPTS {
            let error = format!(
                "chatrun stopped {} times while this run was going; it is not tried again",
                run.attempt - 1
            );
            self.finish_without_steps(run, error).await?;
            return Ok(Step::Ran(run_id));
        }
        let Some(job) = self.catalog.get(&run.job).cloned() else {
            let error = format!("the job `{}` no longer exists on this server", run.job);
            self.finish_without_steps(run, error).await?;
            return Ok(Step::Ran(run_id));
        };
        // Checked when queued; checked again, since the job's definition may have changed.
        let values = match crate::catalog::args::bind(&job.name, &job.params, &run.args) {
            Ok(values) => values,
            Err(err) => {
                let error = format!("its arguments no longer fit the job: {err}");
                self.finish_without_steps(run, error).await?;
                return Ok(Step::Ran(run_id));
            }
        };

        let stop = shutdown.child_token();
        let lost = Arc::new(AtomicBool::new(false));
        let _heartbeat = AbortOnDropHandle::new(tokio::spawn(heartbeat(
            self.store.clone(),
            run_id,
            run.attempt,
            self.config.lease,
            stop.clone(),
            lost.clone(),
        )));

        self.cancels.register(run_id, stop.clone());
        let result = self.execute(&run, &job, &values, &stop).await;
        let cancelled_because = self.cancels.unregister(run_id);
        let mut result = result?;
        if let Some(reason) = cancelled_because
            && result.status == RunStatus::Cancelled
        {
            result.error = Some(reason);
        }
        if lost.load(Ordering::SeqCst) {
            tracing::warn!(run = %run_id, attempt = run.attempt, "lease lost; result discarded");
        } else if shutdown.is_cancelled()
            && result.error.is_none()
            && result.status == RunStatus::Cancelled
        {
            self.store.requeue(run_id, run.attempt).await?;
            tracing::info!(run = %run_id, "shutting down: run goes back to the queue");
        } else {
            self.finish(run, result).await?;
        }
        Ok(Step::Ran(run_id))
    }

    /// Runs the steps in order; a failed step stops the run unless the job keeps going.
    async fn execute(
        &self,
        run: &RunRow,
        job: &JobDef,
        values: &std::collections::BTreeMap<String, String>,
        stop: &CancellationToken,
    ) -> store::Result<RunResult> {
        let run_id = run.run_id;
        let names: Vec<&str> = job.steps.iter().map(|s| s.name.as_str()).collect();
        self.store.reset_steps(run_id, &names).await?;

        let logs = self.config.logs_dir();
        if let Err(err) = tokio::fs::create_dir_all(&logs).await {
            tracing::warn!(error = %err, dir = %logs.display(), "cannot create the logs folder");
        }
        let mut log = LogSink::create(
            &logs.join(format!("{run_id}.log")),
            self.config.max_log_bytes,
        )
        .await;
        // Values of the job's secret variables, wherever the steps get them from.
        log.set_secrets(job.secret_env.iter().flat_map(|name| {
            job.steps
                .iter()
                .filter_map(|step| step.env.get(name).cloned())
                .chain(std::env::var(name).ok())
                .collect::<Vec<_>>()
        }));
        let mut env = vec![
            ("CHATRUN_RUN_ID".to_string(), run_id.to_string()),
            ("CHATRUN_JOB".to_string(), run.job.clone()),
            ("CHATRUN_USER".to_string(), run.user_name.clone()),
            ("CHATRUN_CHANNEL".to_string(), run.channel_name.clone()),
        ];
        env.extend(
            job.params
                .iter()
                .filter_map(|param| Some((param.env_name(), values.get(&param.name)?.clone()))),
        );
        let limits = runner::Limits {
            deadline: tokio::time::Instant::now() + job.timeout,
            kill_grace: self.config.kill_grace,
        };

        let mut status = RunStatus::Succeeded;
        for (position, step) in job.steps.iter().enumerate() {
            if status != RunStatus::Succeeded && !job.keep_going {
                break;
            }
            self.store.start_step(run_id, position, now_ms()).await?;
            let started = std::time::SystemTime::now();
            log.note(&format!(
                "step {}/{}: {} ({})",
                position + 1,
                job.steps.len(),
                step.name,
                step.run.join(" ")
            ))
            .await;
            // Each `{name}` becomes the value inside its one argv element: no shell, no splitting.
            let resolved = StepDef {
                run: step
                    .run
                    .iter()
                    .map(|arg| crate::catalog::args::substitute(arg, values))
                    .collect(),
                ..step.clone()
            };
            let outcome = runner::run_step(&resolved, &env, limits, &mut log, stop).await;
            let (step_status, exit_code, detail) = match &outcome {
                StepOutcome::Succeeded => (StepStatus::Succeeded, Some(0), None),
                StepOutcome::Failed { code, signal } => (
                    StepStatus::Failed,
                    *code,
                    signal.map(|s| format!("killed by signal {s}")),
                ),
                StepOutcome::TimedOut => (
                    StepStatus::TimedOut,
                    None,
                    Some(format!(
                        "the job's timeout of {} passed",
                        humantime::format_duration(job.timeout)
                    )),
                ),
                StepOutcome::Cancelled => (StepStatus::Cancelled, None, None),
                StepOutcome::SpawnFailed { reason } => {
                    (StepStatus::Error, None, Some(reason.clone()))
                }
            };
            log.note(&format!("{}: {}", step.name, step_status.as_str()))
                .await;
            if let Some(detail) = &detail {
                log.note(detail).await;
            }
            let (tests, report_error) = match (&step.junit, &outcome) {
                (Some(pattern), outcome) if !matches!(outcome, StepOutcome::SpawnFailed { .. }) => {
                    let pattern = pattern.replace("{run_id}", &run_id.to_string());
                    match read_reports(step.workdir.clone(), pattern.clone(), started).await {
                        Ok(mut summary) => {
                            for failure in &mut summary.failures {
                                for text in [
                                    &mut failure.suite,
                                    &mut failure.name,
                                    &mut failure.message,
                                    &mut failure.detail,
                                ] {
                                    *text = log.mask(text);
                                }
                            }
                            log.note(&format!(
                                "{}: {} tests, {} failed, {} skipped ({pattern})",
                                step.name, summary.tests, summary.failed, summary.skipped
                            ))
                            .await;
                            (Some(summary), None)
                        }
                        Err(why) => {
                            log.note(&format!("{}: {why}", step.name)).await;
                            (None, Some(why))
                        }
                    }
                }
                _ => (None, None),
            };
            let result = StepResult {
                status: step_status,
                exit_code,
                detail,
                finished_at: now_ms(),
                output_tail: (step_status != StepStatus::Succeeded)
                    .then(|| log.step_tail(OUTPUT_TAIL_LINES))
                    .filter(|tail| !tail.is_empty()),
                tests,
                report_error,
            };
            self.store.finish_step(run_id, position, &result).await?;
            status = match outcome {
                StepOutcome::Succeeded => status,
                StepOutcome::TimedOut => RunStatus::TimedOut,
                StepOutcome::Cancelled => RunStatus::Cancelled,
                _ if status == RunStatus::Succeeded => RunStatus::Failed,
                _ => status,
            };
            if matches!(status, RunStatus::TimedOut | RunStatus::Cancelled) {
                break;
            }
        }

        self.store.skip_pending_steps(run_id).await?;
        let path = log.path().display().to_string();
        let (summary, file_error) = log.finish().await;
        Ok(RunResult {
            status,
            error: file_error,
            log_head: summary.head,
            log_tail: summary.tail,
            // What the steps printed; the file (summary.stored) may hold less.
            log_bytes: i64::try_from(summary.printed).unwrap_or(i64::MAX),
            log_lines: i64::try_from(summary.lines).unwrap_or(i64::MAX),
            log_path: Some(path),
            finished_at: now_ms(),
        })
    }

    async fn finish_without_steps(&self, run: RunRow, error: String) -> store::Result<()> {
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
        self.finish(run, result).await
    }

    /// Stores the result with its reply.
    async fn finish(&self, mut run: RunRow, result: RunResult) -> store::Result<()> {
        run.status = result.status;
        run.finished_at = Some(result.finished_at);
        run.error.clone_from(&result.error);
        let steps = self.store.steps(run.run_id).await?;
        let failures = self.store.test_failures(run.run_id).await?;
        let reply = result_reply(&self.config, &run, &steps, &failures);
        let stored = self
            .store
            .finish_run(run.run_id, run.attempt, &result, reply.as_ref())
            .await?;
        if stored {
            tracing::info!(run = %run.run_id, status = run.status.as_str(), "run finished");
            if reply.is_some() {
                self.outbox_wake.notify_one();
            }
        }
        Ok(())
    }
}

/// The result reply of a finished run, when its trigger came from a chat we can post to.
pub fn result_reply(
    config: &Config,
    run: &RunRow,
    steps: &[store::StepRow],
    failures: &[store::TestFailureRow],
) -> Option<crate::chat::Delivery> {
    let link = format!("{}/runs/{}", config.public_url, run.run_id);
    let now = now_ms();
    match run.platform.as_str() {
        "mattermost" => {
            if run.channel_id.is_empty() {
                return None;
            }
            config.mattermost.rest()?;
            let message = mattermost::render_result(run, steps, failures, &link, now);
            // Unknown root (the look-up failed, or a `chatrun trigger` post that Mattermost
            // does not know): a top-level post is always accepted, a guessed root_id may be
            // refused.
            Some(mattermost::render_post(
                &run.channel_id,
                run.thread_root_id.as_deref(),
                &message,
            ))
        }
        "teams" => {
            let hook = config.teams.iter().find(|h| h.name == run.hook)?;
            hook.follow_up_url.as_ref()?;
            Some(teams::render_follow_up(
                &hook.name, run, steps, failures, &link, now,
            ))
        }
        _ => None,
    }
}

/// Lines of a failed step's output kept for its reply.
pub const OUTPUT_TAIL_LINES: usize = 20;

/// Reads a step's test reports off the async threads (they can be large).
async fn read_reports(
    workdir: std::path::PathBuf,
    pattern: String,
    since: std::time::SystemTime,
) -> Result<crate::report::TestSummary, String> {
    tokio::task::spawn_blocking(move || crate::report::collect(&workdir, &pattern, since))
        .await
        .unwrap_or_else(|err| Err(format!("report unreadable: {err}")))
}

/// Renews the lease every third of its length; on losing it, stops the run.
async fn heartbeat(
    store: Store,
    run_id: RunId,
    attempt: i64,
    lease: Duration,
    stop: CancellationToken,
    lost: Arc<AtomicBool>,
) {
    let mut every = tokio::time::interval(lease / 3);
    every.tick().await;
    loop {
        every.tick().await;
        let now = now_ms();
        match store.renew(run_id, attempt, now + ms(lease)).await {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::SeqCst);
                stop.cancel();
                return;
            }
            // The next tick tries again; the lease outlives a few failed renewals.
            Err(err) => tracing::warn!(error = ?err, run = %run_id, "cannot renew the lease"),
        }
    }
}
