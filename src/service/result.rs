//! The result reply of a finished run: worded by the run's platform, addressed from the
//! configuration.

use crate::chat::{mattermost, teams};
use crate::config::Config;
use crate::domain::{Platform, RunRow};
use crate::store::now_ms;

/// The result reply of a finished run, when its trigger came from a chat we can post to.
pub fn result_reply(
    config: &Config,
    run: &RunRow,
    steps: &[crate::domain::StepRow],
    failures: &[crate::domain::TestFailureRow],
) -> Option<crate::domain::Delivery> {
    let link = format!("{}/runs/{}", config.public_url, run.run_id);
    let now = now_ms();
    match run.platform {
        Platform::Mattermost => {
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
        Platform::Teams => {
            let hook = config.teams.iter().find(|h| h.name == run.hook)?;
            hook.follow_up_url.as_ref()?;
            Some(teams::render_follow_up(
                &hook.name, run, steps, failures, &link, now,
            ))
        }
        Platform::Web => None,
    }
}
