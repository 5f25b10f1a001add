//! Carries out a chat command for either platform: run a job (after its permissions and
//! arguments are checked), `help [job]`, `status <run>`, `queue`, `cancel <run>`,
//! `retry <run>`. Each platform supplies its own wording through [`Replies`]; everything else
//! is shared, so the two platforms cannot drift apart.

use super::{AppState, Error};
use crate::catalog::{Caller, OnNew, args};
use crate::domain::Command;
use crate::domain::parse_run_id;
use crate::domain::{RunId, RunStatus};
use crate::render::AckFacts;
use crate::render::command::{self as words, Flavor};
use crate::store::runs::{Ack, Inserted};
use crate::store::{Insert, NewRun, now_ms};

/// Words a queued run's acknowledgement from what it tells and the run.
pub type AckWords = Box<dyn FnOnce(&AckFacts, &NewRun) -> Ack + Send>;

/// A platform's wording of the replies that have templates of their own.
pub trait Replies {
    /// How the platform writes text.
    fn flavor(&self) -> Flavor;
    /// How a user starts `job` here: `#build`, `@BuildBot build`.
    fn usage(&self, job: &str) -> String;
    /// How to word the acknowledgement of a queued run (with a delivery, when it must go
    /// through the outbox), called by the store once the run has its number and place.
    fn ack(&self) -> AckWords;
    /// The list of jobs, after an unknown word (and the closest name) or for `help`.
    fn jobs(
        &self,
        unknown: Option<&str>,
        suggestion: Option<&str>,
        jobs: Vec<(&str, &str)>,
    ) -> String;
    /// Why a request runs nothing.
    fn refusal(&self, job: &str, reason: &str) -> String;
}

/// What a command produced.
#[derive(Debug)]
pub enum Answer {
    /// A run was stored (or found again, for a duplicate delivery): its acknowledgement.
    Ack(Inserted),
    /// A reply and nothing queued.
    Text(String),
}

/// Carries out `command` for the trigger `base` (everything but `job` and `args` filled in).
///
/// # Errors
///
/// The database failed.
pub async fn execute(
    state: &AppState,
    base: NewRun,
    command: Command,
    replies: &impl Replies,
) -> Result<Answer, Error> {
    let caller = Caller {
        platform: base.platform.clone(),
        user_id: base.user_id.clone(),
        user_name: base.user_name.clone(),
        channel_id: base.channel_id.clone(),
        channel_name: base.channel_name.clone(),
        team_id: base.team_id.clone(),
        team_name: base.team_name.clone(),
    };
    let f = replies.flavor();
    let visible = || -> Vec<(&str, &str)> {
        state
            .catalog
            .jobs()
            .filter(|job| job.allow.denies(&caller).is_none())
            .map(|job| (job.name.as_str(), job.description.as_str()))
            .collect()
    };
    if matches!(command, Command::Run { .. } | Command::Retry { .. })
        && let Err(wait) = state.rate.check(
            &format!("{}:{}", base.platform, base.user_id),
            state.config.rate_limit_per_minute,
        )
    {
        return Ok(Answer::Text(words::notice(&format!(
            "slow down, please: {} runs a minute at most; try again in {}s",
            state.config.rate_limit_per_minute,
            wait.as_secs().max(1)
        ))));
    }
    let text = match command {
        Command::Run { job, args } => {
            return run_job(state, base, &caller, &job, &args, replies).await;
        }
        Command::Help { job: None } => replies.jobs(None, None, visible()),
        Command::Help { job: Some(name) } => match state.catalog.get(&name) {
            Some(job) if job.allow.denies(&caller).is_none() => {
                words::help_job(f, job, &replies.usage(&job.name))
            }
            _ => {
                let jobs = visible();
                let suggestion = crate::domain::closest(&name, jobs.iter().map(|j| j.0));
                replies.jobs(Some(&name), suggestion.as_deref(), jobs)
            }
        },
        Command::Unknown { word, .. } => {
            // Suggest only what this caller may run (or a command).
            let jobs = visible();
            let names = jobs
                .iter()
                .map(|j| j.0)
                .chain(crate::domain::BUILT_INS.iter().copied());
            let suggestion = crate::domain::closest(&word, names);
            replies.jobs(Some(&word), suggestion.as_deref(), jobs)
        }
        Command::Queue => {
            let active = state.store.active_runs().await?;
            let here = |run: &&crate::domain::RunRow| {
                run.platform == base.platform && run.channel_id == base.channel_id
            };
            let running: Vec<_> = active
                .iter()
                .filter(|r| r.status == RunStatus::Running)
                .filter(here)
                .collect();
            let queued: Vec<_> = active
                .iter()
                .filter(|r| r.status == RunStatus::Queued)
                .enumerate()
                .map(|(i, r)| (i + 1, r))
                .filter(|(_, r)| here(r))
                .collect();
            words::queue(f, &running, &queued, &state.config.public_url, now_ms())
        }
        Command::Status { run } => match find_run(state, &run).await? {
            Err(text) => text,
            Ok(run) => {
                let steps = state.store.steps(run.run_id).await?;
                let position = if run.status == RunStatus::Queued {
                    let active = state.store.active_runs().await?;
                    active
                        .iter()
                        .filter(|r| r.status == RunStatus::Queued)
                        .position(|r| r.run_id == run.run_id)
                        .map(|p| p + 1)
                } else {
                    None
                };
                let link = format!("{}/runs/{}", state.config.public_url, run.run_id);
                words::status(f, &run, &steps, position, &link, now_ms())
            }
        },
        Command::Cancel { run } => match find_run(state, &run).await? {
            Err(text) => text,
            Ok(run) => cancel(state, &base, &caller, run, f).await?,
        },
        Command::Retry { run } => match find_run(state, &run).await? {
            Err(text) => text,
            Ok(old) => {
                if state.catalog.get(&old.job).is_none() {
                    words::notice(&format!(
                        "run #{} was of the job {}, which no longer exists",
                        old.run_id,
                        f.escape(&old.job)
                    ))
                } else {
                    return run_job(state, base, &caller, &old.job, &old.args, replies).await;
                }
            }
        },
    };
    Ok(Answer::Text(text))
}

/// Checks permissions and arguments, then stores the run. A denial is stored too (as
/// `denied`), so the history shows who tried what, where.
async fn run_job(
    state: &AppState,
    base: NewRun,
    caller: &Caller,
    job: &str,
    args: &str,
    replies: &impl Replies,
) -> Result<Answer, Error> {
    let Some(def) = state.catalog.get(job) else {
        return Ok(Answer::Text(replies.jobs(Some(job), None, Vec::new())));
    };
    if let Some(reason) = def.allow.denies(caller) {
        let new = NewRun {
            job: job.to_string(),
            args: args.to_string(),
            denied: Some(reason.clone()),
            ..base
        };
        let text = replies.refusal(job, &reason);
        tracing::info!(job, user = %new.user_name, channel = %new.channel_name, %reason, "request denied");
        let stored = state
            .store
            .insert_run(&new, now_ms(), {
                let text = text.clone();
                move |_, _, _| Ack {
                    text,
                    delivery: None,
                }
            })
            .await?;
        return Ok(Answer::Text(match stored {
            Insert::Stored(inserted) => inserted.ack_text,
            Insert::QueueFull(_) => text,
        }));
    }
    let stored = enqueue(state, def, base, args, replies.ack()).await?;
    Ok(match stored {
        Ok(inserted) => Answer::Ack(inserted),
        Err(Refusal::Arguments(reason)) => Answer::Text(replies.refusal(job, &reason)),
        Err(Refusal::QueueFull(waiting)) => Answer::Text(replies.refusal(
            job,
            &format!(
                "{waiting} runs of it are already waiting, its limit (queue_limit); try again when some have run"
            ),
        )),
    })
}

/// Why [`enqueue`] stored nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The arguments do not fit the job's parameters: the reason, naming the parameter.
    Arguments(String),
    /// This many runs of the job already wait: its `queue_limit`.
    QueueFull(i64),
}

/// Queues a run of `def` for `base` (who, where, which message) with `args`: checks the
/// arguments, stores the run under the job's queue policy, applies its `on_new` and wakes the
/// workers. `ack` words the acknowledgement from the run's number, its position, the expected
/// wait (ms, once the job has history) and its link. Chat requests and the web's "Run again"
/// both come through here; permissions are the caller's to check first.
///
/// # Errors
///
/// The database failed.
pub async fn enqueue(
    state: &AppState,
    def: &crate::catalog::JobDef,
    base: NewRun,
    args: &str,
    ack: impl FnOnce(&AckFacts, &NewRun) -> Ack + Send + 'static,
) -> Result<Result<Inserted, Refusal>, Error> {
    let values = match args::bind(&def.name, &def.params, args) {
        Ok(values) => values,
        Err(err) => return Ok(Err(Refusal::Arguments(err.to_string()))),
    };
    let new = NewRun {
        job: def.name.clone(),
        args: args::canonical(&values),
        concurrency: i64::try_from(def.concurrency).unwrap_or(i64::MAX),
        queue_limit: i64::try_from(def.queue_limit).unwrap_or(i64::MAX),
        ..base
    };
    let config = state.config.clone();
    let stored = state
        .store
        .insert_run(&new, now_ms(), move |run_id, position, new| {
            let wait = position
                .typical_ms
                .map(|m| m * ((position.place - 1 + position.running) / new.concurrency.max(1)));
            let facts = AckFacts {
                run_id: run_id.0,
                job: &new.job,
                user: &new.user_name,
                place: position.place,
                wait: wait.filter(|w| *w > 0),
                args: &new.args,
                link: &format!("{}/runs/{run_id}", config.public_url),
            };
            ack(&facts, new)
        })
        .await?;
    let inserted = match stored {
        Insert::Stored(inserted) => inserted,
        Insert::QueueFull(waiting) => return Ok(Err(Refusal::QueueFull(waiting))),
    };
    if inserted.created {
        tracing::info!(run = %inserted.run_id, job = %new.job, user = %new.user_name,
            channel = %new.channel_name, platform = %new.platform, "run queued");
        supersede(state, def.on_new, &new, inserted.run_id).await?;
        state.wake_workers.notify_waiters();
        // N.B. Only then: each wake costs the sender a claim on the writer, and a wake per
        // trigger kept it claiming nothing between the batches of triggers.
        if inserted.reply_queued {
            state.wake_outbox.notify_one();
        }
    }
    Ok(Ok(inserted))
}

/// Applies the job's `on_new` policy to its other runs, now that `new_run` is queued: replace a
/// still-queued run with the same arguments, or cancel the running ones. Their threads are told
/// why.
async fn supersede(
    state: &AppState,
    policy: OnNew,
    new: &NewRun,
    new_run: RunId,
) -> Result<(), Error> {
    if policy == OnNew::Queue {
        return Ok(());
    }
    let reason = format!("superseded by run #{new_run}");
    for run in state.store.active_runs().await? {
        // Only older runs: two requests racing must not supersede each other.
        if run.job != new.job || run.run_id >= new_run {
            continue;
        }
        let stale = match (policy, run.status) {
            (OnNew::Replace, RunStatus::Queued) => run.args == new.args,
            (OnNew::CancelRunning, RunStatus::Running) => true,
            _ => false,
        };
        if stale {
            stop(state, &run, &reason).await?;
        }
    }
    Ok(())
}

/// The run a command names, or the reply saying it cannot be found.
async fn find_run(
    state: &AppState,
    typed: &str,
) -> Result<Result<crate::domain::RunRow, String>, Error> {
    let Some(id) = parse_run_id(typed) else {
        return Ok(Err(words::notice(
            "give a run number, e.g. **status 42** (the number is in the acknowledgement)",
        )));
    };
    Ok(state
        .store
        .get_run(RunId(id))
        .await?
        .ok_or_else(|| words::notice(&format!("there is no run #{id}"))))
}

/// `cancel`: the requester and the job's admins may stop a queued or running run.
async fn cancel(
    state: &AppState,
    base: &NewRun,
    caller: &Caller,
    run: crate::domain::RunRow,
    f: Flavor,
) -> Result<String, Error> {
    let requester = run.platform == base.platform && run.user_id == caller.user_id;
    let admin = state
        .catalog
        .get(&run.job)
        .is_some_and(|job| job.allow.is_admin(caller));
    if !requester && !admin {
        return Ok(words::notice(&format!(
            "only {} (who asked for run #{}) and the admins of {} may cancel it",
            f.escape(&run.user_name),
            run.run_id,
            f.escape(&run.job)
        )));
    }
    let by = if caller.user_name.is_empty() {
        caller.user_id.clone()
    } else {
        caller.user_name.clone()
    };
    Ok(
        match stop(state, &run, &format!("cancelled by {by}")).await? {
            Stopped::BeforeStart => words::cancelled(f, &run, false),
            Stopped::Stopping => words::cancelled(f, &run, true),
            Stopped::NotHere => words::notice(&format!(
                "run #{} is not running in this chatrun (another instance runs it)",
                run.run_id
            )),
            Stopped::AlreadyFinished(status) => words::notice(&format!(
                "run #{} has already finished ({})",
                run.run_id,
                status.as_str()
            )),
        },
    )
}

/// What [`stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It was queued: cancelled, its reply queued.
    BeforeStart,
    /// It was running: its process groups are being stopped.
    Stopping,
    /// It runs in another chatrun process.
    NotHere,
    /// Nothing to stop.
    AlreadyFinished(RunStatus),
}

/// Stops a run for `reason` (`cancelled by alice`, `superseded by run #7`), which its result
/// and reply will give.
///
/// # Errors
///
/// The database failed.
pub async fn stop(
    state: &AppState,
    run: &crate::domain::RunRow,
    reason: &str,
) -> Result<Stopped, Error> {
    if run.status == RunStatus::Queued {
        let now = now_ms();
        let mut cancelled = run.clone();
        cancelled.status = RunStatus::Cancelled;
        cancelled.error = Some(reason.to_string());
        cancelled.finished_at = Some(now);
        let reply = crate::worker::result_reply(&state.config, &cancelled, &[], &[]);
        if state
            .store
            .cancel_queued(run.run_id, reason, now, reply.as_ref())
            .await?
        {
            state.wake_outbox.notify_one();
            return Ok(Stopped::BeforeStart);
        }
        // It started meanwhile: stop it where it runs.
    } else if run.status != RunStatus::Running {
        return Ok(Stopped::AlreadyFinished(run.status));
    }
    Ok(if state.cancels.cancel(run.run_id, reason) {
        Stopped::Stopping
    } else {
        Stopped::NotHere
    })
}
