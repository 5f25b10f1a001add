//! Posting result cards to each webhook's Workflows URL (`follow_up_url`).

use futures_util::future::BoxFuture;

use super::*;
use crate::chat::adapter::Adapter;
use crate::chat::transport::{DeliveryError, post_json};
use crate::chat::{HookContext, Inbound, Posted, Rejection, Request};
use crate::domain::Platform;

/// How long a Teams trigger's command may take before the webhook answers 503.
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(3500);

/// The Teams side: the configured outgoing webhooks and a shared HTTP client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    pub(super) hooks: Vec<Webhook>,
}

impl Client {
    /// A client for `hooks`, sharing `http`'s connections.
    pub fn new(http: reqwest::Client, hooks: Vec<Webhook>) -> Self {
        Self { http, hooks }
    }
}

impl Adapter for Client {
    fn platform(&self) -> Platform {
        Platform::Teams
    }

    fn named_hooks(&self) -> bool {
        true
    }

    /// Teams gives an outgoing webhook 5 s, and shows an error after that; chatrun answers
    /// within 3.5 s, leaving the rest for the network.
    fn answer_within(&self) -> Option<std::time::Duration> {
        Some(ANSWER_WITHIN)
    }

    fn accept<'a>(
        &'a self,
        request: Request<'a>,
        context: HookContext<'a>,
    ) -> BoxFuture<'a, Result<Inbound, Rejection>> {
        Box::pin(std::future::ready(self.accept_hook(request, context)))
    }

    fn owns_target(&self, target: &str) -> bool {
        target.starts_with(TARGET_PREFIX)
    }

    fn result_address(&self, run: &RunRow) -> Option<Address> {
        let hook = self.hooks.iter().find(|h| h.name == run.hook)?;
        hook.follow_up_url.as_ref()?;
        Some(follow_up_address(&hook.name, run))
    }

    fn result_text(
        &self,
        run: &RunRow,
        steps: &[StepRow],
        failures: &[TestFailureRow],
        link: &str,
        now: i64,
    ) -> String {
        render_result(run, steps, failures, link, now)
            .summary()
            .to_string()
    }

    fn result_reply(
        &self,
        run: &RunRow,
        steps: &[StepRow],
        failures: &[TestFailureRow],
        link: &str,
        now: i64,
    ) -> Option<Delivery> {
        self.result_address(run)?;
        Some(render_follow_up(&run.hook, run, steps, failures, link, now))
    }

    /// A card through webhook `channel` (its name), which its flow posts in its channel.
    fn notice(
        &self,
        channel: &str,
        run: &RunRow,
        change: crate::domain::StatusChange,
        link: &str,
    ) -> Option<Delivery> {
        let hook = self.hooks.iter().find(|h| h.name == channel)?;
        hook.follow_up_url.as_ref()?;
        let text = crate::render::command::status_change(
            crate::render::command::Flavor::Teams,
            run,
            change,
            link,
        );
        Some(Delivery {
            target: format!("{TARGET_PREFIX}{}", hook.name),
            body: serde_json::to_string(&render_notice(&text, link))
                .expect("a card of strings serializes"),
            thread: String::new(),
        })
    }

    /// POSTs the card to the webhook's `follow_up_url`. A card cannot be searched for, so `key`
    /// is not used.
    fn send<'a>(
        &'a self,
        delivery: &'a Delivery,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<Posted, DeliveryError>> {
        Box::pin(async move {
            let name = delivery
                .target
                .strip_prefix(TARGET_PREFIX)
                .unwrap_or(&delivery.target);
            let url = self
                .hooks
                .iter()
                .find(|hook| hook.name == name)
                .and_then(|hook| hook.follow_up_url.as_deref())
                .ok_or_else(|| {
                    DeliveryError::permanent(format!(
                        "the Teams webhook `{name}` has no follow_up_url configured"
                    ))
                })?;
            post_json(self.http.post(url), delivery.body.clone())
                .await
                .map(|()| Posted::default())
        })
    }
}
