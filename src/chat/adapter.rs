//! The seam every platform plugs into: an [`Adapter`] words a finished run's result reply for its
//! platform and sends stored deliveries to it; the [`Registry`] holds one per platform and finds
//! the one a run or a delivery belongs to. Nothing outside `chat/` names a platform's client.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::transport::DeliveryError;
use crate::domain::{Delivery, Platform, RunRow, StepRow, TestFailureRow};

/// One chat platform's outgoing side.
pub trait Adapter: Send + Sync + fmt::Debug {
    /// The platform whose runs and deliveries this adapter serves.
    fn platform(&self) -> Platform;

    /// Whether a stored delivery's `target` is this platform's.
    fn owns_target(&self, target: &str) -> bool;

    /// The result reply of a finished run, addressed to where it was asked for; `None` when the
    /// platform cannot post there (no REST API configured, no Workflows URL, no channel).
    fn result_reply(
        &self,
        run: &RunRow,
        steps: &[StepRow],
        failures: &[TestFailureRow],
        link: &str,
        now: i64,
    ) -> Option<Delivery>;

    /// Sends a delivery once. `key` is unique to the delivery: a platform that can be searched
    /// marks the post with it, for [`Adapter::find_sent`].
    fn send<'a>(
        &'a self,
        delivery: &'a Delivery,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), DeliveryError>>;

    /// Whether an attempt whose outcome was lost can be looked for ([`Adapter::find_sent`]).
    fn searchable(&self) -> bool {
        false
    }

    /// Whether the delivery marked `key` was posted since `since_ms` (ms since the epoch), by an
    /// attempt whose answer was lost. Only asked of a [`Adapter::searchable`] platform.
    fn find_sent<'a>(
        &'a self,
        _delivery: &'a Delivery,
        _since_ms: i64,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<bool, DeliveryError>> {
        Box::pin(async { Ok(false) })
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

    /// The adapter a delivery to `target` goes through.
    pub fn for_target(&self, target: &str) -> Option<&dyn Adapter> {
        self.0
            .iter()
            .find(|a| a.owns_target(target))
            .map(AsRef::as_ref)
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
        let link = format!("{public_url}/runs/{}", run.run_id);
        self.get(run.platform)?
            .result_reply(run, steps, failures, &link, now)
    }
}
