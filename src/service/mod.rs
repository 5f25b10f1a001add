//! The use cases: carry out a chat command, queue a run, stop one, word a finished run's result
//! reply. Called by the webhooks and the pages alike, so a rule holds wherever a request comes
//! from; takes a [`Context`], returns its own [`Error`], and knows nothing of HTTP.

mod command;
mod enqueue;
mod stop;

use std::sync::Arc;

pub use command::{Answer, execute};
pub use enqueue::{Refusal, enqueue, waiting_for_agent};
pub use stop::{Stopped, stop};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::store::Store;

/// What the use cases reach: the store (which also wakes the workers and the outbox, carries
/// cancel requests to the runs' workers and counts the rate limit), the jobs, the configuration
/// and the platforms.
#[derive(Debug)]
pub struct Context {
    pub store: Store,
    pub catalog: Arc<Catalog>,
    pub config: Arc<Config>,
    /// The platforms replies go to.
    pub chat: crate::chat::Registry,
    /// Where the runs' logs are kept.
    pub logs: crate::logs::LogStore,
}

/// Why a use case did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is refused, and nothing was stored: the reason can be shown to the user.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}
