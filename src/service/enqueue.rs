//! Queues a run: checks its arguments, stores it under the job's queue policy, applies the
//! job's `on_new` to its other runs and wakes the workers.

use super::{Context, Error, stop};
use crate::catalog::{OnNew, args};
use crate::domain::{RunId, RunStatus};
use crate::store::{Ack, AckFacts, Inserted, NewRun, now_ms};

/// Why [`enqueue`] stored nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The arguments do not fit the job's parameters: the reason, naming the parameter.
    #[error("{0}")]
    Arguments(String),
    /// This many runs of the job already wait: its `queue_limit`.
    #[error("{0} runs of the job are already waiting, its limit (queue_limit)")]
    QueueFull(i64),
}

/// Queues a run of `def` for `base` (who, where, which message) with `args`: checks the
/// arguments, stores the run under the job's queue policy, applies its `on_new` and wakes the
/// workers. `ack` words the acknowledgement from its facts (the run's number, its place, the
/// expected wait). Chat requests and the web's "Run again" both come through here; permissions
/// are the caller's to check first.
///
/// # Errors
///
/// [`Error::Refused`] when the arguments do not fit or the job's queue is full; otherwise the
/// database failed.
pub async fn enqueue(
    ctx: &Context,
    def: &crate::catalog::JobDef,
    base: NewRun,
    args: &str,
    ack: impl FnOnce(&AckFacts) -> Ack + Send + 'static,
) -> Result<Inserted, Error> {
    let values = match args::bind(&def.name, &def.params, args) {
        Ok(values) => values,
        Err(err) => return Err(Refusal::Arguments(err.to_string()).into()),
    };
    let new = NewRun {
        job: def.name.clone(),
        args: args::canonical(&values),
        concurrency: i64::try_from(def.concurrency).unwrap_or(i64::MAX),
        queue_limit: i64::try_from(def.queue_limit).unwrap_or(i64::MAX),
        waits_for_agent: waiting_for_agent(ctx, def).await,
        ..base
    };
    let inserted = match ctx.store.insert_run(&new, now_ms(), ack).await {
        Ok(inserted) => inserted,
        Err(crate::store::Error::QueueFull(waiting)) => {
            return Err(Refusal::QueueFull(waiting).into());
        }
        Err(err) => return Err(err.into()),
    };
    if inserted.created {
        tracing::info!(run = %inserted.run_id, job = %new.job, user = %new.origin.user_name,
            channel = %new.origin.channel_name, platform = %new.origin.platform, "run queued");
        supersede(ctx, def.on_new, &new, inserted.run_id).await?;
    }
    Ok(inserted)
}

/// When job `def` runs on build agents only and none that could take it is connected: the
/// labels it waits for (comma-separated; empty: any agent). Said in the acknowledgement and on
/// the run page, so nobody waits for a run that cannot start.
pub async fn waiting_for_agent(ctx: &Context, def: &crate::catalog::JobDef) -> Option<String> {
    if def.runs_on.is_empty() && ctx.config.local_agent {
        return None;
    }
    let now = now_ms();
    // Unknown (the database did not answer): say nothing rather than something wrong.
    let agents = ctx.store.agents().await.ok()?;
    let able = agents.iter().any(|agent| {
        agent.state(now) != crate::domain::AgentState::Lost
            && crate::domain::fits(&def.runs_on, &agent.label_list())
    });
    (!able).then(|| def.runs_on.join(","))
}

/// Applies the job's `on_new` policy to its other runs, now that `new_run` is queued: replace a
/// still-queued run with the same arguments, or cancel the running ones. Their threads are told
/// why.
async fn supersede(
    ctx: &Context,
    policy: OnNew,
    new: &NewRun,
    new_run: RunId,
) -> Result<(), Error> {
    if policy == OnNew::Queue {
        return Ok(());
    }
    let reason = format!("superseded by run #{new_run}");
    for run in ctx.store.active_runs().await? {
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
            stop(ctx, &run, &reason).await?;
        }
    }
    Ok(())
}
