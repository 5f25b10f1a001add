//! One run path for every agent. [`Plan`] is what a run executes (its steps with the run's
//! arguments in place, its limits), made by the server from the job; [`execute`] runs it, step
//! by step, on whichever agent holds the run: the local agent (the workers of `chatrun serve`)
//! or a remote `chatrun agent`. Both report the steps through [`Steps`] and write the output to
//! a [`LogSink`]; only where those go differs (the store, or the server over HTTP).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::catalog::{JobDef, StepDef};
use crate::domain::{RunId, RunRow, RunStatus, StepStatus};
use crate::logs::LogSink;
use crate::runner::{self, StepOutcome};
use crate::store::{RunResult, StepResult, now_ms};

use super::Error;

/// Lines of a failed step's output kept for its reply.
pub const OUTPUT_TAIL_LINES: usize = 20;

/// What a run executes, on any agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub run_id: RunId,
    /// The attempt that holds the run: what every report about it names.
    pub attempt: i64,
    pub job: String,
    /// The job's steps, `{name}` replaced by the run's arguments in each argv element.
    pub steps: Vec<StepDef>,
    /// `CHATRUN_*` variables, and the job's parameters, for every step.
    pub env: Vec<(String, String)>,
    /// The whole run is stopped after this long, in milliseconds.
    pub timeout_ms: u64,
    /// Every step runs even after one failed.
    pub keep_going: bool,
    /// Environment variables whose values are masked in the log and the replies.
    pub secret_env: Vec<String>,
    /// Between SIGTERM and SIGKILL when a step is stopped, in milliseconds.
    pub kill_grace_ms: u64,
}

impl Plan {
    /// The plan of `run`, of job `job`, whose arguments are `values`; its steps' working
    /// folders are the server's. `kill_grace` as configured.
    pub fn new(
        run: &RunRow,
        job: &JobDef,
        values: &BTreeMap<String, String>,
        kill_grace: Duration,
    ) -> Self {
        let mut env = vec![
            ("CHATRUN_RUN_ID".to_string(), run.run_id.to_string()),
            ("CHATRUN_JOB".to_string(), run.job.clone()),
            ("CHATRUN_USER".to_string(), run.origin.user_name.clone()),
            (
                "CHATRUN_CHANNEL".to_string(),
                run.origin.channel_name.clone(),
            ),
        ];
        env.extend(
            job.params
                .iter()
                .filter_map(|param| Some((param.env_name(), values.get(&param.name)?.clone()))),
        );
        Self {
            run_id: run.run_id,
            attempt: run.attempt,
            job: run.job.clone(),
            // Each `{name}` becomes the value inside its one argv element: no shell, no
            // splitting.
            steps: job
                .steps
                .iter()
                .map(|step| StepDef {
                    run: step
                        .run
                        .iter()
                        .map(|arg| crate::catalog::args::substitute(arg, values))
                        .collect(),
                    ..step.clone()
                })
                .collect(),
            env,
            timeout_ms: u64::try_from(job.timeout.as_millis()).unwrap_or(u64::MAX),
            keep_going: job.keep_going,
            secret_env: job.secret_env.clone(),
            kill_grace_ms: u64::try_from(kill_grace.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The plan as a remote agent gets it: each step's working folder as the job file wrote
    /// it, which the agent finds under its own folder ([`Plan::working_in`]).
    #[must_use]
    pub fn for_remote_agent(mut self) -> Self {
        for step in &mut self.steps {
            step.workdir = step.workdir_in_job.take().unwrap_or_default();
        }
        self
    }

    /// The plan with each relative working folder found under `base` (a remote agent's
    /// `--workdir`).
    #[must_use]
    pub fn working_in(mut self, base: &Path) -> Self {
        for step in &mut self.steps {
            step.workdir = base.join(&step.workdir);
        }
        self
    }

    /// The values of its secret variables, wherever the steps get them from: a step's `env`,
    /// or the agent's own environment.
    fn secrets(&self) -> Vec<String> {
        self.secret_env
            .iter()
            .flat_map(|name| {
                self.steps
                    .iter()
                    .filter_map(|step| step.env.get(name).cloned())
                    .chain(std::env::var(name).ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Where an agent reports a run's steps as they start and end (the run's own result is the
/// caller's, with [`execute`]'s answer).
pub trait Steps: Sync {
    /// Step `position` started at `now` (the first one's start is written by the claim).
    fn start_step(
        &self,
        position: usize,
        now: i64,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Step `position` ended, and it is not the run's last.
    fn finish_step(
        &self,
        position: usize,
        result: &StepResult,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// The agent a run executes on.
#[derive(Debug, Clone)]
pub struct Agent {
    /// `CHATRUN_OWNER` of the steps: with `CHATRUN_RUN_ID`, how a restarted agent on this host
    /// finds what a killed one left running.
    pub owner: String,
    /// Added to the agent's nice value for every step (0 to 19).
    pub nice: u8,
}

/// Runs `plan`'s steps in order on `agent`, writing their output to `log`; a failed step stops
/// the run unless the job keeps going. `stop` stops the steps (cancelled, or `interrupted`
/// when the agent is shutting down). Returns the run's result and its last step's result,
/// which the caller stores with it.
///
/// # Errors
///
/// A step's start or end could not be reported.
pub async fn execute(
    plan: &Plan,
    steps: &impl Steps,
    mut log: LogSink,
    agent: &Agent,
    stop: &CancellationToken,
    interrupted: &AtomicBool,
) -> Result<(RunResult, Option<(usize, StepResult)>), Error> {
    let run_id = plan.run_id;
    log.set_secrets(plan.secrets());
    let mut env = plan.env.clone();
    env.push(("CHATRUN_OWNER".to_string(), agent.owner.clone()));
    let timeout = Duration::from_millis(plan.timeout_ms);
    let limits = runner::Limits {
        deadline: tokio::time::Instant::now() + timeout,
        kill_grace: Duration::from_millis(plan.kill_grace_ms),
        nice: agent.nice,
    };

    let mut status = RunStatus::Succeeded;
    // The last step's result, written with the run's.
    let mut last_step = None;
    for (position, step) in plan.steps.iter().enumerate() {
        // The first was started by the claim.
        if position > 0 {
            steps.start_step(position, now_ms()).await?;
        }
        let started = std::time::SystemTime::now();
        log.note(&format!(
            "step {}/{}: {} ({})",
            position + 1,
            plan.steps.len(),
            step.name,
            step.run.join(" ")
        ))
        .await;
        let outcome = runner::run_step(step, &env, limits, &mut log, stop).await;
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
                    humantime::format_duration(timeout)
                )),
            ),
            StepOutcome::Cancelled if interrupted.load(Ordering::SeqCst) => (
                StepStatus::Interrupted,
                None,
                Some("chatrun was shut down".to_string()),
            ),
            StepOutcome::Cancelled => (StepStatus::Cancelled, None, None),
            StepOutcome::SpawnFailed { reason } => (StepStatus::Error, None, Some(reason.clone())),
        };
        log.note(&format!("{}: {}", step.name, step_status.as_str()))
            .await;
        if let Some(detail) = &detail {
            log.note(detail).await;
        }
        let (tests, report_error) = match (&step.junit, &outcome) {
            // A step stopped before its end (cancelled, shut down) or never started wrote no
            // report to miss.
            (Some(pattern), outcome)
                if !matches!(
                    outcome,
                    StepOutcome::SpawnFailed { .. } | StepOutcome::Cancelled
                ) =>
            {
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
        status = match step_status {
            StepStatus::Succeeded => status,
            StepStatus::TimedOut => RunStatus::TimedOut,
            StepStatus::Cancelled => RunStatus::Cancelled,
            StepStatus::Interrupted => RunStatus::Interrupted,
            _ if status == RunStatus::Succeeded => RunStatus::Failed,
            _ => status,
        };
        let last = position + 1 == plan.steps.len()
            || matches!(
                status,
                RunStatus::TimedOut | RunStatus::Cancelled | RunStatus::Interrupted
            )
            || (status != RunStatus::Succeeded && !plan.keep_going);
        if last {
            last_step = Some((position, result));
            break;
        }
        steps.finish_step(position, &result).await?;
    }

    let place = log.place();
    let (summary, file_error) = log.finish().await;
    let result = RunResult {
        status,
        error: file_error,
        log_head: summary.head,
        log_tail: summary.tail,
        // What the steps printed; the log kept (summary.stored) may hold less.
        log_bytes: i64::try_from(summary.printed).unwrap_or(i64::MAX),
        log_lines: i64::try_from(summary.lines).unwrap_or(i64::MAX),
        // None: the database's head is the whole log.
        log_path: summary.file.then_some(place),
        finished_at: now_ms(),
    };
    Ok((result, last_step))
}

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
