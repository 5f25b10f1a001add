//! The outgoing webhook: a trigger verified by its token, read into a command, and this
//! request's wording of its replies.

use super::*;
use crate::chat::adapter::header_text;
use crate::chat::{HookContext, Inbound, Rejection, Replies, Request, check_replay_window};
use crate::domain::{Ack, AckWords, Command, NewRun, Origin, Platform, parse_command};
use crate::render::command::Flavor;

impl Client {
    /// See [`crate::chat::Adapter::accept`].
    pub(super) async fn accept_hook(
        &self,
        request: Request<'_>,
        context: HookContext<'_>,
    ) -> Result<Inbound, Rejection> {
        let content_type = request.header("content-type").and_then(header_text);
        // N.B. The token is in the body, so the body is decoded first; nothing in it is acted on
        // before the token matched.
        let payload = parse_payload(content_type, request.body).map_err(Rejection::bad)?;
        if !token_matches(&payload.token, &self.tokens) {
            return Err(Rejection::Unauthorized(
                "the token matches no configured outgoing webhook",
            ));
        }
        // From here the request is Mattermost's: what is wrong with it is said in the reply.
        payload.check().map_err(Rejection::refused)?;
        let sent = payload.timestamp_ms().map_err(Rejection::refused)?;
        check_replay_window(sent, context.now_ms, context.replay_window).map_err(|err| {
            tracing::warn!(post = %payload.post_id, error = %err, "refused a Mattermost message");
            Rejection::refused(err)
        })?;

        let bot = self
            .settings
            .bot_user_id
            .as_deref()
            .or(self.bot_user_id.get().map(String::as_str));
        if bot.is_some_and(|bot| bot == payload.user_id) {
            tracing::debug!(post = %payload.post_id, "ignoring a post of our own bot");
            return Ok(Inbound::Ignore("{}".into()));
        }

        let command = parse_command(&payload.text, context.jobs);
        // A channel-bound webhook without trigger words sees every message of its channel:
        // answer only a job's name or `help` ("queue is long today" is not a command).
        if payload.trigger_word.is_empty()
            && !matches!(command, Command::Run { .. })
            && !asks_for_help(&payload.text)
        {
            return Ok(Inbound::Ignore("{}".into()));
        }
        let thread = self.lookup_thread(&payload.post_id).await;
        let base = Box::new(NewRun {
            origin: Origin {
                platform: Platform::Mattermost,
                team_id: payload.team_id.clone(),
                team_name: payload.team_domain.clone(),
                channel_id: payload.channel_id.clone(),
                channel_name: payload.channel_name.clone(),
                user_id: payload.user_id.clone(),
                user_name: payload.user_name.clone(),
            },
            message_id: payload.post_id.clone(),
            thread_root_id: thread.root_for(&payload.post_id),
            thread_unsettled: thread == Thread::Unsettled,
            message: payload.text.clone(),
            ..NewRun::default()
        });
        let replies = MattermostReplies {
            thread,
            trigger_word: payload.trigger_word,
            channel_id: payload.channel_id,
        };
        Ok(Inbound::Trigger {
            base,
            command,
            replies: Box::new(replies),
        })
    }
}

/// `help`, `#help`, `!help`…: the first word asks for the list of jobs.
fn asks_for_help(text: &str) -> bool {
    text.split_whitespace()
        .next()
        .is_some_and(|word| word.trim_start_matches(['#', '!', '/', '@']) == "help")
}

/// Mattermost's wording, for one trigger.
struct MattermostReplies {
    thread: Thread,
    trigger_word: String,
    channel_id: String,
}

impl Replies for MattermostReplies {
    fn flavor(&self) -> Flavor {
        Flavor::Markdown
    }

    fn usage(&self, job: &str) -> String {
        usage(&self.trigger_word, job)
    }

    fn ack(&self, public_url: &str) -> AckWords {
        let (thread, channel_id) = (self.thread.clone(), self.channel_id.clone());
        let public_url = public_url.to_string();
        Box::new(move |facts| {
            let text = render_ack(facts, &facts.run_id.page(&public_url));
            let (_, delivery) = render_response(&text, &thread, &channel_id);
            Ack { text, delivery }
        })
    }

    fn jobs(
        &self,
        unknown: Option<&str>,
        suggestion: Option<&str>,
        jobs: Vec<(&str, &str)>,
    ) -> String {
        render_jobs(unknown, suggestion, jobs.into_iter(), &self.trigger_word)
    }

    fn refusal(&self, job: &str, reason: &str) -> String {
        render_refusal(job, reason)
    }

    fn respond(&self, text: &str) -> (String, Option<Delivery>) {
        render_response(text, &self.thread, &self.channel_id)
    }
}
