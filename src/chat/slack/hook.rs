//! Slack's three request URLs: `/hooks/slack/commands` (slash commands), `/hooks/slack/events`
//! (the Events API: the URL's verification, `app_mention`) and `/hooks/slack/actions` (clicks
//! on chatrun's buttons). Each is verified by its signature before anything in it is read, then
//! read into a command, and this request's wording of its replies.

use super::*;
use crate::chat::adapter::header_text;
use crate::chat::{HookContext, Inbound, Rejection, Replies, Request};
use crate::domain::text::truncate_runes;
use crate::domain::{Ack, AckWords, Command, Delivery, NewRun, Origin, Platform};
use crate::domain::{parse_after_trigger, parse_command};
use crate::render::command::Flavor;

/// How the id of a run asked for by a slash command starts (the rest is its `trigger_id`).
const COMMAND_PREFIX: &str = "command:";

/// Whether a run's trigger (`message_id`) was a slash command: its acknowledgement is an
/// anchor message.
pub(super) fn is_command(message_id: &str) -> bool {
    message_id.starts_with(COMMAND_PREFIX)
}

/// The longest text chatrun reads of a command or a mention, in characters (Slack's own limit
/// for a message is 40,000; a command is far shorter).
pub const MAX_TEXT_CHARS: usize = 4000;

impl Client {
    /// See [`crate::chat::Adapter::accept`].
    pub(super) fn accept_hook(
        &self,
        request: Request<'_>,
        context: HookContext<'_>,
    ) -> Result<Inbound, Rejection> {
        let endpoint = match request.name {
            Some("commands") => Endpoint::Commands,
            Some("events") => Endpoint::Events,
            Some("actions") => Endpoint::Actions,
            _ => return Err(Rejection::NotFound),
        };
        let secret = self
            .settings
            .signing_secret
            .as_deref()
            .ok_or(Rejection::Unauthorized(
                "slack.signing_secret is not configured",
            ))?;
        let header = |name| request.header(name).and_then(header_text);
        auth::verify(
            secret.as_bytes(),
            header("x-slack-request-timestamp"),
            header("x-slack-signature"),
            request.body,
            context.now_ms,
            context.replay_window,
        )
        .map_err(|err| {
            tracing::warn!(error = %err, "refused a Slack request");
            match err {
                auth::AuthError::Replay(replay) => Rejection::refused(replay),
                _ => Rejection::Unauthorized(
                    "the X-Slack-Signature does not match slack.signing_secret",
                ),
            }
        })?;
        // From here the request is Slack's.
        match endpoint {
            Endpoint::Commands => self.command(request.body, context),
            Endpoint::Events => self.event(request, context),
            Endpoint::Actions => self.click(request.body),
        }
    }

    /// Refuses a request of another app than `slack.app_id`, when it is set.
    fn check_app(&self, api_app_id: &str) -> Result<(), Rejection> {
        match &self.settings.app_id {
            Some(app) if app != api_app_id => Err(Rejection::refused(format!(
                "the request is for app {api_app_id}, not slack.app_id ({app})"
            ))),
            _ => Ok(()),
        }
    }

    /// `/build feature/x`, `/ci status 42`: a command whose name is a job runs it; another
    /// (`/ci`) is read as chatrun's other triggers are. Answered by an anchor message in the
    /// channel, which the result threads under.
    fn command(&self, body: &[u8], context: HookContext<'_>) -> Result<Inbound, Rejection> {
        let slash = parse_slash_command(body).map_err(Rejection::bad)?;
        self.check_app(&slash.api_app_id)?;
        let text = unescape(&slash.text);
        check_length(&text)?;
        let command = parse_command(&format!("{} {text}", slash.command), context.jobs);
        let name = slash.command.trim_start_matches('/');
        let base = NewRun {
            origin: Origin {
                platform: Platform::Slack,
                team_id: slash.team_id,
                team_name: slash.team_domain,
                channel_id: slash.channel_id.clone(),
                channel_name: slash.channel_name,
                user_id: slash.user_id.clone(),
                user_name: slash.user_name,
            },
            // The command's own id; a command has no message to thread under until its anchor
            // is posted.
            message_id: format!("{COMMAND_PREFIX}{}", slash.trigger_id),
            message: format!("{} {text}", slash.command).trim().to_string(),
            ..NewRun::default()
        };
        let replies = SlackReplies {
            channel: slash.channel_id,
            thread_ts: None,
            order: base.message_id.clone(),
            trigger: Trigger::Command(name.to_string()),
            slash: true,
        };
        Ok(trigger(base, command, replies))
    }

    /// The Events API: the URL's verification is answered with its challenge; a mention of the
    /// app (`@chatrun build`) is read as a command after the mention, answered in its thread.
    fn event(&self, request: Request<'_>, context: HookContext<'_>) -> Result<Inbound, Rejection> {
        let mention = match parse_event(request.body).map_err(Rejection::bad)? {
            inbound::Delivery::UrlVerification { challenge } => {
                return Ok(Inbound::Ignore(
                    serde_json::json!({ "challenge": challenge }).to_string(),
                ));
            }
            inbound::Delivery::Other { kind } => {
                tracing::debug!(kind, "ignoring a Slack event chatrun does not use");
                return Ok(Inbound::Ignore(String::new()));
            }
            inbound::Delivery::Mention(mention) => mention,
        };
        self.check_app(&mention.api_app_id)?;
        if mention.bot_id.is_some() {
            tracing::debug!(event = mention.event_id, "ignoring a bot's mention");
            return Ok(Inbound::Ignore(String::new()));
        }
        let text = unescape(&mention.text);
        check_length(&text)?;
        let (bot, rest) = after_mention(&text);
        let command = parse_after_trigger(rest, context.jobs);
        // Slack sends an event again when it had no answer within 3 s. A run is stored once
        // per event id whatever happens, so a retry that asks for one always goes on (its
        // first delivery may have failed: it finds the run, or stores it). A retry of another
        // command this process took is dropped, so that `status` or `help` are not answered
        // twice.
        let retry = request.header("x-slack-retry-num").is_some();
        let makes_a_run = matches!(command, Command::Run { .. } | Command::Retry { .. });
        if self.seen_before(&mention.event_id) && retry && !makes_a_run {
            tracing::info!(
                event = mention.event_id,
                "ignoring Slack's retry of an event already answered"
            );
            return Ok(Inbound::Ignore(String::new()));
        }
        let root = mention.thread_ts.clone().unwrap_or(mention.ts.clone());
        let base = NewRun {
            origin: Origin {
                platform: Platform::Slack,
                team_id: mention.team_id,
                channel_id: mention.channel.clone(),
                user_id: mention.user.clone(),
                // Events carry no names; Slack shows `<@U…>` as the person's name.
                user_name: mention.user,
                ..Origin::default()
            },
            message_id: format!("event:{}", mention.event_id),
            thread_root_id: Some(root.clone()),
            message: text.clone(),
            ..NewRun::default()
        };
        let replies = SlackReplies {
            channel: mention.channel,
            thread_ts: Some(root.clone()),
            order: root,
            trigger: Trigger::Mention(bot.to_string()),
            slash: false,
        };
        Ok(trigger(base, command, replies))
    }

    /// A click on Rerun or Cancel: the same as `rerun <run>` or `cancel <run>` typed by the
    /// person who clicked (their permissions are checked again), answered in the message's
    /// thread. The button carries only the run's number.
    fn click(&self, body: &[u8]) -> Result<Inbound, Rejection> {
        let Some(click) = parse_click(body).map_err(Rejection::bad)? else {
            return Ok(Inbound::Ignore(String::new()));
        };
        self.check_app(&click.api_app_id)?;
        let run = click.value.trim().to_string();
        let command = match click.action_id.as_str() {
            blocks::ACTION_RERUN => Command::Retry { run },
            blocks::ACTION_CANCEL => Command::Cancel { run },
            other => {
                tracing::debug!(action = other, "ignoring a click on another app's button");
                return Ok(Inbound::Ignore(String::new()));
            }
        };
        let root = click.thread_ts.clone().unwrap_or(click.message_ts.clone());
        let base = NewRun {
            origin: Origin {
                platform: Platform::Slack,
                team_id: click.team_id,
                team_name: click.team_domain,
                channel_id: click.channel_id.clone(),
                channel_name: click.channel_name,
                user_id: click.user_id.clone(),
                user_name: click.user_name,
            },
            message_id: format!(
                "click:{}/{}/{}/{}",
                click.channel_id, click.message_ts, click.user_id, click.action_ts
            ),
            thread_root_id: Some(root.clone()),
            message: format!("{} {}", click.action_id, click.value),
            ..NewRun::default()
        };
        let replies = SlackReplies {
            channel: click.channel_id,
            thread_ts: Some(root.clone()),
            order: root,
            trigger: Trigger::Command("ci".into()),
            slash: false,
        };
        Ok(trigger(base, command, replies))
    }
}

#[derive(Clone, Copy)]
enum Endpoint {
    Commands,
    Events,
    Actions,
}

fn trigger(base: NewRun, command: Command, replies: SlackReplies) -> Inbound {
    Inbound::Trigger {
        base: Box::new(base),
        command,
        replies: Box::new(replies),
    }
}

fn check_length(text: &str) -> Result<(), Rejection> {
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Rejection::refused(format!(
            "the text is too long: at most {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(())
}

/// Slack's text with its three entities (`&amp;`, `&lt;`, `&gt;`) read back.
pub fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The app's mention at the start of a mention's text (`<@U0LAN0Z89>`), and what follows it.
/// Text before the mention (`hey <@U0LAN0Z89> build`) is skipped with it.
pub fn after_mention(text: &str) -> (&str, &str) {
    let Some(start) = text.find("<@") else {
        return ("", text);
    };
    let Some(len) = text[start..].find('>') else {
        return ("", text);
    };
    let mention = &text[start..=start + len];
    (mention, &text[start + len + 1..])
}

/// How the person started what chatrun answers: for the usage examples.
#[derive(Debug, Clone)]
enum Trigger {
    /// A slash command, without its `/`.
    Command(String),
    /// The app's mention, as Slack writes it (`<@U0LAN0Z89>`).
    Mention(String),
}

/// Slack's wording, for one request.
#[derive(Debug, Clone)]
struct SlackReplies {
    channel: String,
    /// The thread replies go to; `None`: a new message at the top of the channel (a slash
    /// command's anchor, and its other answers).
    thread_ts: Option<String>,
    /// The outbox orders this request's replies with the others of this thread or trigger.
    order: String,
    trigger: Trigger,
    /// A slash command's: its acknowledgement is the anchor its result threads under.
    slash: bool,
}

impl SlackReplies {
    fn post(&self, message: &blocks::Message, anchor: bool) -> Delivery {
        post::delivery(
            post::address(&self.channel, &self.order),
            &self.channel,
            self.thread_ts.as_deref(),
            message,
            anchor,
        )
    }
}

impl Replies for SlackReplies {
    fn flavor(&self) -> Flavor {
        Flavor::Slack
    }

    fn usage(&self, job: &str) -> String {
        match &self.trigger {
            Trigger::Command(name) if name == job => format!("/{job}"),
            Trigger::Command(name) => format!("/{name} {job}"),
            Trigger::Mention(bot) if !bot.is_empty() => format!("{bot} {job}"),
            Trigger::Mention(_) => format!("@chatrun {job}"),
        }
    }

    fn ack(&self, public_url: &str) -> AckWords {
        let (me, public_url) = (self.clone(), public_url.to_string());
        Box::new(move |facts| {
            let message = blocks::render_ack(facts, &facts.run_id.page(&public_url));
            // A slash command's acknowledgement is the anchor its result threads under.
            let delivery = me.post(&message, me.slash);
            Ack {
                text: message.text,
                delivery: Some(delivery),
            }
        })
    }

    fn jobs(
        &self,
        unknown: Option<&str>,
        suggestion: Option<&str>,
        jobs: Vec<(&str, &str)>,
    ) -> String {
        let f = Flavor::Slack;
        let mut lines = Vec::new();
        if let Some(word) = unknown {
            let mut line = format!(
                ":question: There is no job or command {}.",
                f.bold(&f.escape(word))
            );
            if let Some(suggestion) = suggestion {
                line.push_str(&format!(" Did you mean {}?", f.bold(&f.escape(suggestion))));
            }
            lines.push(line);
        }
        if jobs.is_empty() {
            lines.push("There is no job you may run here.".into());
        } else {
            lines.push("Jobs you can run:".into());
            for (name, description) in &jobs {
                let mut line = format!("• {}", f.bold(&f.escape(name)));
                if !description.is_empty() {
                    line.push_str(&format!(": {}", f.escape(description)));
                }
                lines.push(line);
            }
            lines.push(format!(
                "e.g. `{}`; also `status <run>`, `queue`, `cancel <run>`, `rerun <run>`, `help <job>`",
                self.usage(jobs[0].0)
            ));
        }
        truncate_runes(&f.lines(&lines), 3000)
    }

    fn refusal(&self, job: &str, reason: &str) -> String {
        let f = Flavor::Slack;
        format!(
            ":no_entry_sign: Not running {}: {}. Nothing was started.",
            f.bold(&f.escape(job)),
            f.escape(reason)
        )
    }

    /// Nothing in the HTTP answer (an empty 200 is Slack's plain acknowledgement); the reply
    /// is posted by the outbox, in the thread, or for a slash command at the top of the
    /// channel.
    fn respond(&self, text: &str) -> (String, Option<Delivery>) {
        (
            String::new(),
            Some(self.post(&blocks::text_message(text), false)),
        )
    }
}
