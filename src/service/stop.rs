//! Stops a run: a queued one is cancelled with its reply in one write; a running one is
//! stopped where it runs.

use super::{Context, Error};
use crate::domain::RunStatus;
use crate::store::now_ms;

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
    ctx: &Context,
    run: &crate::domain::RunRow,
    reason: &str,
) -> Result<Stopped, Error> {
    if run.status == RunStatus::Queued {
        let now = now_ms();
        let reply = ctx.chat.result_address(run);
        if ctx
            .store
            .cancel_queued(run.run_id, reason, now, reply.as_ref())
            .await?
        {
            ctx.wake_outbox.notify_one();
            return Ok(Stopped::BeforeStart);
        }
        // It started meanwhile: stop it where it runs.
    } else if run.status != RunStatus::Running {
        return Ok(Stopped::AlreadyFinished(run.status));
    }
    Ok(if ctx.cancels.cancel(run.run_id, reason) {
        Stopped::Stopping
    } else {
        Stopped::NotHere
    })
}
