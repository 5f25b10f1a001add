//! How each platform words the replies of the commands (see `service::execute`), and how it
//! answers the webhook: a trait, implemented in each platform's folder.

use crate::domain::{AckWords, Delivery, RunId};
use crate::render::command::Flavor;

/// A platform's wording of the replies that have templates of their own.
pub trait Replies: Send + Sync {
    /// How the platform writes text.
    fn flavor(&self) -> Flavor;
    /// How a user starts `job` here: `#build`, `@BuildBot build`.
    fn usage(&self, job: &str) -> String;
    /// How to word the acknowledgement of a queued run (with a delivery, when it must go
    /// through the outbox), called by the store once the run has its number and place; its
    /// link is the run's page under `public_url`.
    fn ack(&self, public_url: &str) -> AckWords;
    /// The list of jobs, after an unknown word (and the closest name) or for `help`.
    fn jobs(
        &self,
        unknown: Option<&str>,
        suggestion: Option<&str>,
        jobs: Vec<(&str, &str)>,
    ) -> String;
    /// Why a request runs nothing.
    fn refusal(&self, job: &str, reason: &str) -> String;
    /// The webhook's HTTP response body for the reply `text`, and the delivery to queue when the
    /// reply must go through the outbox instead (a threaded Mattermost reply).
    fn respond(&self, text: &str) -> (String, Option<Delivery>);

    /// The webhook's HTTP response body for the acknowledgement `text` of run `run`, as
    /// [`Replies::respond`] words any reply, unless the platform adds to it (a Cancel button
    /// on Mattermost's).
    fn respond_ack(&self, text: &str, run: RunId) -> (String, Option<Delivery>) {
        let _ = run;
        self.respond(text)
    }
}
