//! Carries out a chat command for either platform: run a job (after its permissions and
//! arguments are checked), `help [job]`, `status <run>`, `queue`, `cancel <run>`,
//! `retry <run>`. Each platform supplies its own wording through [`crate::chat::Replies`]; everything else
//! is shared, so the two platforms cannot drift apart.

use super::{Context, Error, Refusal, Stopped, enqueue, stop};
use crate::catalog::Caller;
use crate::chat::Replies;
use crate::domain::{Command, RunId, RunStatus, parse_run_id};
use crate::render::command::{self as words, Flavor};
use crate::store::{Ack, Inserted, NewRun, now_ms};

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
    ctx: &Context,
    base: NewRun,
    command: Command,
    replies: &dyn Replies,
) -> Result<Answer, Error> {
    let caller: Caller = base.origin.clone();
    let f = replies.flavor();
    let visible = || -> Vec<(&str, &str)> {
        ctx.catalog
            .jobs()
            .filter(|job| job.allow.denies(&caller).is_none())
            .map(|job| (job.name.as_str(), job.description.as_str()))
            .collect()
    };
    if matches!(command, Command::Run { .. } | Command::Retry { .. })
        && let Some(wait_ms) = ctx
            .store
            .count_request(
                &format!("{}:{}", base.origin.platform, base.origin.user_id),
                now_ms(),
                i64::try_from(ctx.config.rate_limit_per_minute).unwrap_or(i64::MAX),
            )
            .await?
    {
        return Ok(Answer::Text(words::notice(&format!(
            "slow down, please: {} runs a minute at most; try again in {}s",
            ctx.config.rate_limit_per_minute,
            (wait_ms / 1000).max(1)
        ))));
    }
    let text = match command {
        Command::Run { job, args } => {
            return run_job(ctx, base, &caller, &job, &args, replies).await;
        }
        Command::Help { job: None } => replies.jobs(None, None, visible()),
        Command::Help { job: Some(name) } => match ctx.catalog.get(&name) {
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
            let active = ctx.store.active_runs().await?;
            let here = |run: &&crate::domain::RunRow| {
                run.origin.platform == base.origin.platform
                    && run.origin.channel_id == base.origin.channel_id
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
            words::queue(f, &running, &queued, &ctx.config.public_url, now_ms())
        }
        Command::Status { run } => match find_run(ctx, f, "status", &run).await? {
            Lookup::Reply(text) => text,
            Lookup::Found(run) => {
                let steps = ctx.store.steps(run.run_id).await?;
                let position = if run.status == RunStatus::Queued {
                    let active = ctx.store.active_runs().await?;
                    active
                        .iter()
                        .filter(|r| r.status == RunStatus::Queued)
                        .position(|r| r.run_id == run.run_id)
                        .map(|p| p + 1)
                } else {
                    None
                };
                let link = run.run_id.page(&ctx.config.public_url);
                words::status(f, &run, &steps, position, &link, now_ms())
            }
        },
        Command::Cancel { run } => match find_run(ctx, f, "cancel", &run).await? {
            Lookup::Reply(text) => text,
            Lookup::Found(run) => cancel(ctx, &base, &caller, *run, f).await?,
        },
        Command::Retry { run } => match find_run(ctx, f, "retry", &run).await? {
            Lookup::Reply(text) => text,
            Lookup::Found(old) => {
                if ctx.catalog.get(&old.job).is_none() {
                    words::notice(&format!(
                        "run #{} was of the job {}, which no longer exists",
                        old.run_id,
                        f.escape(&old.job)
                    ))
                } else {
                    return run_job(ctx, base, &caller, &old.job, &old.args, replies).await;
                }
            }
        },
    };
    Ok(Answer::Text(text))
}

/// Checks permissions and arguments, then stores the run. A denial is stored too (as
/// `denied`), so the history shows who tried what, where.
async fn run_job(
    ctx: &Context,
    base: NewRun,
    caller: &Caller,
    job: &str,
    args: &str,
    replies: &dyn Replies,
) -> Result<Answer, Error> {
    let Some(def) = ctx.catalog.get(job) else {
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
        tracing::info!(job, user = %new.origin.user_name, channel = %new.origin.channel_name, %reason, "request denied");
        // (A denied run takes no place in its job's queue, so its queue is never full.)
        let stored = ctx
            .store
            .insert_run(&new, now_ms(), move |_: &crate::store::AckFacts| Ack {
                text,
                delivery: None,
            })
            .await?;
        return Ok(Answer::Text(stored.ack_text));
    }
    let ack = replies.ack(&ctx.config.public_url);
    Ok(match enqueue(ctx, def, base, args, ack).await {
        Ok(inserted) => Answer::Ack(inserted),
        Err(Error::Refused(Refusal::Arguments(reason))) => {
            Answer::Text(replies.refusal(job, &reason))
        }
        Err(Error::Refused(Refusal::QueueFull(waiting))) => Answer::Text(replies.refusal(
            job,
            &format!(
                "{waiting} runs of it are already waiting, its limit (queue_limit); try again when some have run"
            ),
        )),
        Err(err) => return Err(err),
    })
}

/// The run a command names, or the reply saying it cannot be found.
async fn find_run(ctx: &Context, f: Flavor, command: &str, typed: &str) -> Result<Lookup, Error> {
    let Some(id) = parse_run_id(typed) else {
        return Ok(Lookup::Reply(words::notice(&format!(
            "give a run number, e.g. {} (the number is in the acknowledgement)",
            f.bold(&format!("{command} 42"))
        ))));
    };
    Ok(match ctx.store.get_run(RunId(id)).await? {
        Some(run) => Lookup::Found(Box::new(run)),
        None => Lookup::Reply(words::notice(&format!("there is no run #{id}"))),
    })
}

/// What [`find_run`] found.
enum Lookup {
    Found(Box<crate::domain::RunRow>),
    /// The reply to give instead: no number, or no such run.
    Reply(String),
}

/// `cancel`: the requester and the job's admins may stop a queued or running run.
async fn cancel(
    ctx: &Context,
    base: &NewRun,
    caller: &Caller,
    run: crate::domain::RunRow,
    f: Flavor,
) -> Result<String, Error> {
    let requester =
        run.origin.platform == base.origin.platform && run.origin.user_id == caller.user_id;
    let admin = ctx
        .catalog
        .get(&run.job)
        .is_some_and(|job| job.allow.is_admin(caller));
    if !requester && !admin {
        return Ok(words::notice(&format!(
            "only {} (who asked for run #{}) and the admins of {} may cancel it",
            f.escape(&run.origin.user_name),
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
        match stop(ctx, &run, &format!("cancelled by {by}")).await? {
            Stopped::BeforeStart => words::cancelled(f, &run, false),
            Stopped::Stopping => words::cancelled(f, &run, true),
            Stopped::AlreadyFinished(status) => words::notice(&format!(
                "run #{} has already finished ({})",
                run.run_id,
                status.as_str()
            )),
        },
    )
}
