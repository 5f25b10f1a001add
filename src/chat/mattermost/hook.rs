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
        match request.name {
            None => {}
            Some("actions") => return self.accept_click(request).await,
            Some(_) => return Err(Rejection::NotFound),
        }
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
            buttons: self.buttons.clone(),
        };
        Ok(Inbound::Trigger {
            base,
            command,
            replies: Box::new(replies),
        })
    }
}

impl Client {
    /// A click on a Rerun or Cancel button (`/hooks/mattermost/actions`): its context's HMAC
    /// is checked before anything else; then it is `rerun <run>` or `cancel <run>` typed by the
    /// person who clicked (their permissions checked again), answered in the post's thread.
    async fn accept_click(&self, request: Request<'_>) -> Result<Inbound, Rejection> {
        let Some(buttons) = &self.buttons else {
            return Err(Rejection::Unauthorized(
                "buttons are off: mattermost.bot_token is not configured",
            ));
        };
        let (click, action, run) =
            actions::read_click(&buttons.key, request.body).map_err(|err| match err {
                actions::ActionError::Forged => {
                    tracing::warn!(
                        "refused a Mattermost button click whose context chatrun did not sign"
                    );
                    Rejection::Unauthorized("the button's context is not one chatrun signed")
                }
                actions::ActionError::Body(_) => Rejection::bad(err),
            })?;
        let root = self
            .lookup_thread(&click.post_id)
            .await
            .root_for(&click.post_id)
            .unwrap_or_else(|| click.post_id.clone());
        let message = format!("{} {run}", action.as_str());
        let run = run.to_string();
        let command = match action {
            actions::ButtonAction::Rerun => Command::Retry { run },
            actions::ButtonAction::Cancel => Command::Cancel { run },
        };
        let base = Box::new(NewRun {
            origin: Origin {
                platform: Platform::Mattermost,
                team_id: click.team_id.clone(),
                team_name: click.team_domain.clone(),
                channel_id: click.channel_id.clone(),
                channel_name: click.channel_name.clone(),
                user_id: click.user_id.clone(),
                user_name: click.user_name.clone(),
            },
            // One run per click: Mattermost gives each its own trigger id.
            message_id: format!("click:{}:{}", click.post_id, click.trigger_id),
            thread_root_id: Some(root.clone()),
            message,
            ..NewRun::default()
        });
        let replies = MattermostReplies {
            thread: Thread::Reply(root),
            trigger_word: "#ci".into(),
            channel_id: click.channel_id,
            buttons: self.buttons.clone(),
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
    /// Puts a Cancel button on an acknowledgement posted through the REST API.
    buttons: Option<super::client::Buttons>,
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
        let (public_url, buttons) = (public_url.to_string(), self.buttons.clone());
        Box::new(move |facts| {
            let text = render_ack(facts, &facts.run_id.page(&public_url));
            let (_, delivery) = render_response(&text, &thread, &channel_id);
            // An acknowledgement posted through the REST API carries a Cancel button.
            let delivery = delivery.map(|post| {
                super::client::Buttons::add(
                    buttons.as_ref(),
                    post,
                    actions::ButtonAction::Cancel,
                    facts.run_id.0,
                )
            });
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

    /// With a Cancel button, when the acknowledgement is the webhook's response (in a REST
    /// post, [`Replies::ack`]'s delivery carries it).
    fn respond_ack(&self, text: &str, run: crate::domain::RunId) -> (String, Option<Delivery>) {
        let (body, delivery) = self.respond(text);
        let with_button = self.buttons.as_ref().and_then(|buttons| {
            let mut response: serde_json::Value = serde_json::from_str(&body).ok()?;
            response.get("text")?;
            response.as_object_mut()?.insert(
                "attachments".into(),
                actions::attachments(
                    &buttons.key,
                    &buttons.url,
                    actions::ButtonAction::Cancel,
                    run.0,
                ),
            );
            Some(response.to_string())
        });
        (with_button.unwrap_or(body), delivery)
    }
}
