//! The seam every platform plugs into: an [`Adapter`] words a finished run's result reply for its
//! platform and sends stored deliveries to it; the [`Registry`] holds one per platform and finds
//! the one a run or a delivery belongs to. Nothing outside `chat/` names a platform's client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::Replies;
use super::transport::DeliveryError;
use crate::domain::{Address, Command, Delivery, Platform, RunRow, StepRow, TestFailureRow};
use crate::store::NewRun;

/// A webhook request as it arrived, before anything in it is trusted.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The `{name}` of `/hooks/<platform>/{name}`, when the URL has one.
    pub name: Option<&'a str>,
    /// Its headers.
    pub headers: &'a reqwest::header::HeaderMap,
    /// The body, within `max_body_bytes`.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The bytes of header `name` (the first, when it is repeated); see [`header_text`].
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .get(name)
            .map(reqwest::header::HeaderValue::as_bytes)
    }
}

/// A header's value as text: `None` unless it is all visible ASCII (what `HeaderValue::to_str`
/// accepts).
pub fn header_text(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

impl Rejection {
    /// A bad request, its reason from `err`.
    pub fn bad(err: impl fmt::Display) -> Self {
        Self::BadRequest(err.to_string())
    }

    /// A verified request refused, its reason from `err`.
    pub fn refused(err: impl fmt::Display) -> Self {
        Self::Refused(err.to_string())
    }
}

/// What a webhook needs to know beside the request.
#[derive(Debug, Clone, Copy)]
pub struct HookContext<'a> {
    /// The jobs' names, for the command grammar.
    pub jobs: &'a [&'a str],
    /// Now, in ms since the epoch, for the replay window.
    pub now_ms: i64,
    /// How far a message's own time may lie from now (`replay_window`).
    pub replay_window: Duration,
}

/// What a verified webhook request asks for.
pub enum Inbound {
    /// Nothing to do: answer with this body (a post of our own bot, chatter in a channel).
    Ignore(String),
    /// A command, from `base` (who, where, which message), worded by `replies`.
    Trigger {
        /// The run as far as the request tells (no job or arguments yet).
        base: Box<NewRun>,
        /// What the message asks for.
        command: Command,
        /// The platform's wording, for this request.
        replies: Box<dyn Replies>,
    },
}

/// Why a webhook request was refused before anything in it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No such webhook (`/hooks/slack/other`): 404.
    NotFound,
    /// Not from the chat server (token or signature): 401.
    Unauthorized(&'static str),
    /// Not a request chatrun understands: 400, the reason safe to show.
    BadRequest(String),
    /// From the chat server (its token or signature matched), but not taken: outside the replay
    /// window, or a field missing or too long. 400, and on a platform that shows a reply's body
    /// whatever its status (Mattermost), a reply saying why, so the user sees it.
    Refused(String),
}

/// What a delivery became once sent, as far as the outbox must know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Posted {
    /// The post is the root the run's later replies thread under (Slack's anchor for a slash
    /// command, which has no message of its own): its id, stored as the run's thread root.
    pub thread_root: Option<String>,
}

/// One chat platform's outgoing side.
pub trait Adapter: Send + Sync + fmt::Debug {
    /// The platform whose runs and deliveries this adapter serves.
    fn platform(&self) -> Platform;

    /// Whether `/hooks/<platform>/{name}` exists besides `/hooks/<platform>` (Teams names its
    /// webhooks).
    fn named_hooks(&self) -> bool {
        false
    }

    /// How long the command of a verified request may take before the webhook answers 503:
    /// well within the time the platform waits for an answer, whatever the database is doing.
    /// `None`: as long as the store's own limits allow (`busy_timeout_ms`).
    fn answer_within(&self) -> Option<Duration> {
        None
    }

    /// Verifies a webhook request (its token or signature, in constant time, before anything
    /// else in it is acted on) and reads what it asks for.
    fn accept<'a>(
        &'a self,
        request: Request<'a>,
        context: HookContext<'a>,
    ) -> BoxFuture<'a, Result<Inbound, Rejection>>;

    /// The HTTP response body that shows the user why a verified request was not taken
    /// (chatrun cannot store it, or is shutting down), for a platform that shows one; `None`
    /// answers with the status and a plain message.
    fn error_body(&self, message: &str) -> Option<String> {
        let _ = message;
        None
    }

    /// Whether a stored delivery's `target` is this platform's.
    fn owns_target(&self, target: &str) -> bool;

    /// Where the result reply of `run` goes (where it was asked for); `None` when the platform
    /// cannot post there (no REST API configured, no Workflows URL, no channel).
    fn result_address(&self, run: &RunRow) -> Option<Address>;

    /// The result reply of a finished run, worded from what is stored of it and addressed as
    /// [`Adapter::result_address`] says; `None` when the platform cannot post there.
    fn result_reply(
        &self,
        run: &RunRow,
        steps: &[StepRow],
        failures: &[TestFailureRow],
        link: &str,
        now: i64,
    ) -> Option<Delivery>;

    /// The result reply of a finished run as text, as its platform shows it (Markdown for
    /// Mattermost, the card's summary line for Teams), whether or not it can be posted: for
    /// the run page and `chatrun trigger --wait`.
    fn result_text(
        &self,
        run: &RunRow,
        steps: &[StepRow],
        failures: &[TestFailureRow],
        link: &str,
        now: i64,
    ) -> String;

    /// The notice of `run`'s status change to `channel`, a channel of this platform a job's
    /// `notify` names (a channel id; a Teams webhook's name); `None` when this platform cannot
    /// post there (no REST API or bot token configured, no such webhook).
    fn notice(
        &self,
        channel: &str,
        run: &RunRow,
        change: crate::domain::StatusChange,
        link: &str,
    ) -> Option<Delivery> {
        let _ = (channel, run, change, link);
        None
    }

    /// Sends a delivery once. `key` is unique to the delivery: a platform that can be searched
    /// marks the post with it, for [`Adapter::find_sent`].
    fn send<'a>(
        &'a self,
        delivery: &'a Delivery,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Posted, DeliveryError>>;

    /// Where `run`'s result goes in its conversation: the root of its thread, for a run whose
    /// thread could not be looked up when it came (`thread_unsettled`); asked once more
    /// before its result is posted.
    fn settle_thread<'a>(
        &'a self,
        run: &'a RunRow,
    ) -> BoxFuture<'a, Result<Option<String>, DeliveryError>> {
        Box::pin(std::future::ready(Ok(run.thread_root_id.clone())))
    }

    /// How long after an attempt whose outcome was lost the same delivery may simply be sent
    /// again, because the chat server drops the copy (Mattermost's `pending_post_id`). Zero
    /// when it does not.
    fn dedup_window(&self) -> Duration {
        Duration::ZERO
    }

    /// Whether an attempt whose outcome was lost can be looked for ([`Adapter::find_sent`]).
    fn searchable(&self) -> bool {
        false
    }

    /// The post of the delivery marked `key`, when an attempt whose answer was lost made it
    /// since `since_ms` (ms since the epoch). Only asked of a [`Adapter::searchable`] platform.
    fn find_sent<'a>(
        &'a self,
        _delivery: &'a Delivery,
        _since_ms: i64,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Posted>, DeliveryError>> {
        Box::pin(async { Ok(None) })
    }
}

/// The platforms chatrun talks to, one adapter each (see `app::App::build`).
#[derive(Debug, Clone, Default)]
pub struct Registry(Vec<Arc<dyn Adapter>>);

impl Registry {
    /// A registry of `adapters`, at most one per platform.
    pub fn new(adapters: Vec<Arc<dyn Adapter>>) -> Self {
        Self(adapters)
    }

    /// The adapter of `platform`, if it is registered.
    pub fn get(&self, platform: Platform) -> Option<&dyn Adapter> {
        self.0
            .iter()
            .find(|a| a.platform() == platform)
            .map(AsRef::as_ref)
    }

    /// The adapter whose webhooks are at `/hooks/<segment>`.
    pub fn for_hook(&self, segment: &str) -> Option<&dyn Adapter> {
        self.get(segment.parse().ok()?)
    }

    /// The adapter a delivery to `target` goes through.
    pub fn for_target(&self, target: &str) -> Option<&dyn Adapter> {
        self.0
            .iter()
            .find(|a| a.owns_target(target))
            .map(AsRef::as_ref)
    }

    /// Where the result reply of `run` goes; `None` when its platform cannot be posted to (or is
    /// the web's).
    pub fn result_address(&self, run: &RunRow) -> Option<Address> {
        self.get(run.origin.platform)?.result_address(run)
    }

    /// The result reply of a finished run as text, as its platform shows it (a run started
    /// from the pages, as Mattermost would show it); `None` when no platform is registered.
    pub fn result_text(
        &self,
        public_url: &str,
        run: &RunRow,
        steps: &[StepRow],
        failures: &[TestFailureRow],
        now: i64,
    ) -> Option<String> {
        let link = run.run_id.page(public_url);
        let adapter = self
            .get(run.origin.platform)
            .or_else(|| self.get(Platform::Mattermost))?;
        Some(adapter.result_text(run, steps, failures, &link, now))
    }

    /// The result reply of a finished run, worded by its platform; `None` when its platform
    /// cannot be posted to (or is the web's).
    pub fn result_reply(
        &self,
        public_url: &str,
        run: &RunRow,
        steps: &[StepRow],
        failures: &[TestFailureRow],
        now: i64,
    ) -> Option<Delivery> {
        let link = run.run_id.page(public_url);
        self.get(run.origin.platform)?
            .result_reply(run, steps, failures, &link, now)
    }
}
