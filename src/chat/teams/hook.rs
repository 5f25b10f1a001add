//! The outgoing webhook: an activity verified by its HMAC, read into a command after the bot's
//! mention, and this request's wording of its replies.

use super::*;
use crate::chat::adapter::header_text;
use crate::chat::{HookContext, Inbound, Rejection, Replies, Request, check_replay_window};
use crate::domain::{Ack, AckWords, NewRun, Origin, Platform, parse_after_trigger};
use crate::render::command::Flavor;

impl Client {
    /// See [`crate::chat::Adapter::accept`]. With a `name` (`/hooks/teams/{name}`) only that
    /// webhook's secret may have signed the body; without, any configured one's.
    pub(super) fn accept_hook(
        &self,
        request: Request<'_>,
        context: HookContext<'_>,
    ) -> Result<Inbound, Rejection> {
        let name = request.name;
        let hooks: Vec<&Webhook> = self
            .hooks
            .iter()
            .filter(|hook| name.is_none_or(|name| hook.name == name))
            .collect();
        let keys: Vec<&[u8]> = hooks.iter().map(|hook| hook.key.as_slice()).collect();
        let authorization = request.header("authorization").and_then(header_text);
        let index = verify(authorization, request.body, &keys).map_err(|err| {
            tracing::warn!(error = %err, hook = ?name, "refused a Teams request");
            Rejection::Unauthorized("the HMAC signature matches no configured Teams webhook")
        })?;
        let hook = hooks[index];
        let content_type = request
            .header("content-type")
            .map(|v| header_text(v).unwrap_or("not text"));
        check_content_type(content_type).map_err(Rejection::bad)?;
        let activity = parse_activity(request.body).map_err(Rejection::bad)?;
        activity.check().map_err(Rejection::bad)?;
        // No timestamp: accepted (see `Activity::timestamp_ms`), the id still de-duplicates.
        if let Some(sent) = activity.timestamp_ms().map_err(Rejection::bad)? {
            check_replay_window(sent, context.now_ms, context.replay_window).map_err(|err| {
                tracing::warn!(message = activity.message_id(), error = %err, "refused a Teams message");
                Rejection::bad(err)
            })?;
        }

        let (text, mention) = command_text(
            activity.text.as_deref().unwrap_or_default(),
            activity.own_mention().as_deref(),
        );
        // The mention is the trigger: what follows it is the job (`@BuildBot build web`).
        let command = parse_after_trigger(&text, context.jobs);
        let (team_id, team_name) = activity.team();
        let (channel_id, channel_name) = activity.channel();
        let base = Box::new(NewRun {
            origin: Origin {
                platform: Platform::Teams,
                team_id,
                team_name,
                channel_id,
                channel_name,
                user_id: activity.user_id(),
                user_name: activity.user_name(),
            },
            message_id: activity.message_id().to_string(),
            thread_root_id: activity.thread_root(),
            message: format!("@{mention} {text}"),
            hook: hook.name.clone(),
            ..NewRun::default()
        });
        Ok(Inbound::Trigger {
            base,
            command,
            replies: Box::new(TeamsReplies { mention }),
        })
    }
}

/// Teams' wording, for one trigger.
struct TeamsReplies {
    /// How the user addressed the webhook.
    mention: String,
}

impl Replies for TeamsReplies {
    fn flavor(&self) -> Flavor {
        Flavor::Teams
    }

    fn usage(&self, job: &str) -> String {
        format!("@{} {job}", self.mention)
    }

    fn ack(&self, public_url: &str) -> AckWords {
        let public_url = public_url.to_string();
        Box::new(move |facts| Ack {
            text: render_ack(facts, &facts.run_id.page(&public_url)),
            delivery: None,
        })
    }

    fn jobs(
        &self,
        unknown: Option<&str>,
        suggestion: Option<&str>,
        jobs: Vec<(&str, &str)>,
    ) -> String {
        render_jobs(unknown, suggestion, jobs.into_iter(), &self.mention)
    }

    fn refusal(&self, job: &str, reason: &str) -> String {
        render_refusal(job, reason)
    }

    fn respond(&self, text: &str) -> (String, Option<Delivery>) {
        (render_response(text), None)
    }
}
