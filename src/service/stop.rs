//! Stops a run: a queued one is cancelled with its reply in one write; for a running one a
//! cancel is requested in the store, which its worker, wherever it runs, sees and acts on.

use super::{Context, Error};
use crate::domain::{RunRow, RunStatus};
use crate::store::now_ms;

/// What [`stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It was queued: cancelled, its reply queued.
    BeforeStart,
    /// It was running: its worker is stopping its steps.
    Stopping,
    /// Nothing to stop.
    AlreadyFinished(RunStatus),
}

/// Stops a run for `reason` (`cancelled by alice`, `superseded by run #7`), which its result
/// and reply will give.
///
/// # Errors
///
/// The database failed.
pub async fn stop(ctx: &Context, run: &RunRow, reason: &str) -> Result<Stopped, Error> {
    if run.status == RunStatus::Queued {
        let reply = ctx.chat.result_address(run);
        if ctx
            .store
            .cancel_queued(run.run_id, reason, now_ms(), reply.as_ref())
            .await?
        {
            return Ok(Stopped::BeforeStart);
        }
        // It started meanwhile: stop it where it runs.
    } else if run.status != RunStatus::Running {
        return Ok(Stopped::AlreadyFinished(run.status));
    }
    if ctx.store.request_cancel(run.run_id, reason).await? {
        return Ok(Stopped::Stopping);
    }
    // It ended meanwhile.
    let status = ctx
        .store
        .get_run(run.run_id)
        .await?
        .map_or(run.status, |now| now.status);
    Ok(Stopped::AlreadyFinished(status))
}
