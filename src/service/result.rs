//! The result reply of a finished run: worded and addressed by its platform's adapter.

use crate::chat::Registry;
use crate::domain::{Delivery, RunRow, StepRow, TestFailureRow};
use crate::store::now_ms;

/// The result reply of a finished run, when its trigger came from a chat we can post to.
pub fn result_reply(
    chat: &Registry,
    public_url: &str,
    run: &RunRow,
    steps: &[StepRow],
    failures: &[TestFailureRow],
) -> Option<Delivery> {
    chat.result_reply(public_url, run, steps, failures, now_ms())
}
