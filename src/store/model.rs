//! What goes in and out of the store, whichever backend holds it: a new run, its place, the
//! queue operations' arguments and answers, a delivery's row. No SQL here.

use sqlx::FromRow;

pub use crate::domain::{Ack, AckFacts, AckWords, NewRun};
use crate::domain::{Address, Delivery, Platform, ReplyIntent, RunId, RunStatus, StepStatus};

/// What [`super::Store::insert_run`] stored: the run, or the one found again for a trigger
/// delivered twice. (A full queue is [`super::Error::QueueFull`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// The run's number.
    pub run_id: RunId,
    /// The acknowledgement (the stored one, for a duplicate).
    pub ack_text: String,
    /// False when the trigger had been seen before.
    pub created: bool,
    /// The acknowledgement was queued in the outbox with the run (its delivery), to be sent.
    pub reply_queued: bool,
}

/// Which runs a history page or `/api/runs` shows; unset fields match every run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub job: Option<String>,
    pub status: Option<RunStatus>,
    pub user: Option<String>,
    pub channel: Option<String>,
    pub platform: Option<Platform>,
    /// Created at or after (ms).
    pub since: Option<i64>,
    /// Created before (ms).
    pub until: Option<i64>,
}

/// A piece of a run's log as the database keeps it (see `migrations/postgres/`'s `log_chunk`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// Where its first byte is in the log.
    pub pos: i64,
    /// Newlines in the log before it.
    pub lines: i64,
    pub data: Vec<u8>,
}

/// Every job's steps, by name, as [`super::Store::try_claim`] writes them for the run it claims
/// (built from the catalog), and which jobs' runs the claimant may take: a claim leaves the
/// runs of a job marked as not its own to other agents.
#[derive(Debug, Clone)]
pub struct JobSteps(pub(crate) String);

impl JobSteps {
    /// `(job, its steps' names in order)` for each job; every job's runs may be claimed.
    pub fn new<'a>(jobs: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Self {
        Self::for_agent(jobs.into_iter().map(|(job, steps)| (job, steps, true)))
    }

    /// `(job, its steps' names in order, whether the claimant may run it)` for each job. The
    /// runs of a job not listed may be claimed (and are then settled: the job is gone).
    pub fn for_agent<'a>(jobs: impl IntoIterator<Item = (&'a str, Vec<&'a str>, bool)>) -> Self {
        let jobs: Vec<serde_json::Value> = jobs
            .into_iter()
            .map(|(job, steps, may)| serde_json::json!([job, steps, may]))
            .collect();
        JobSteps(serde_json::Value::from(jobs).to_string())
    }
}

/// A remote agents' token, as `chatrun agent-token list` shows it (never the token).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct AgentToken {
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// What a finished step reports.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StepResult {
    pub status: StepStatus,
    pub exit_code: Option<i32>,
    pub detail: Option<String>,
    pub finished_at: i64,
    /// What its test reports say, when it names some and they could be read.
    pub tests: Option<crate::report::TestSummary>,
    /// Why its named reports could not be used.
    pub report_error: Option<String>,
    /// Its last output lines, kept for failed steps.
    pub output_tail: Option<String>,
}

/// What a finished run reports.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunResult {
    pub status: RunStatus,
    pub error: Option<String>,
    pub log_head: String,
    pub log_tail: String,
    pub log_bytes: i64,
    pub log_lines: i64,
    pub log_path: Option<String>,
    pub finished_at: i64,
}

/// Who claims the next run ([`super::Store::try_claim`], [`super::Store::finish_run`]).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The worker (host:pid#n), whose lease it is.
    pub owner: &'a str,
    pub now: i64,
    pub lease_until: i64,
    /// What the claimed run's steps are.
    pub steps: &'a JobSteps,
}

/// An `outbox` row.
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub outbox_id: i64,
    pub run_id: Option<RunId>,
    pub target: String,
    pub body: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
    /// When it was queued: the give-up time counts from here.
    pub created_at: i64,
    pub thread: Option<String>,
    /// Earlier attempts that may have been delivered although no success was recorded.
    pub unsure: i64,
    /// Why the previous attempt failed.
    pub last_error: Option<String>,
    /// `worded` (`body` is what to send) or `result` (its run's result, worded when sent).
    pub kind: String,
    /// When the last attempt whose outcome was never learnt began.
    pub unsure_at: Option<i64>,
    /// Searches for an earlier attempt's post that could not answer.
    pub search_failures: i64,
    /// It was sent once although an earlier attempt may have been delivered.
    pub blind: bool,
}

/// How a delivery of a run went, for the run page and the API.
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryState {
    pub outbox_id: i64,
    pub target: String,
    /// `pending`, `sent` or `dead`.
    pub status: String,
    pub attempts: i64,
    /// Why the last attempt failed; for a dead delivery, why it was given up.
    pub last_error: Option<String>,
    /// When a pending delivery is tried next.
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// Sent once although an earlier attempt may have been delivered: it may show twice.
    pub blind: bool,
    /// The JSON it posts (`worded`), or nothing for a run's result (`result`), worded when sent.
    pub body: String,
    pub kind: String,
}

/// What a delivery's earlier attempts leave the next one to weigh (`outbox::plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Earlier {
    /// Attempts whose outcome was never learnt.
    pub unsure: i64,
    /// When the first of them began.
    pub unsure_at: Option<i64>,
    /// Searches for an earlier attempt's post that could not answer.
    pub search_failures: i64,
    /// It was already sent once without knowing.
    pub blind: bool,
}

impl DeliveryRow {
    /// What its earlier attempts left.
    pub fn earlier(&self) -> Earlier {
        Earlier {
            unsure: self.unsure,
            unsure_at: self.unsure_at,
            search_failures: self.search_failures,
            blind: self.blind,
        }
    }

    /// What the row holds: a worded reply, or where its run's result goes.
    pub fn intent(&self) -> ReplyIntent {
        let thread = self.thread.clone().unwrap_or_default();
        if self.kind == "result" {
            ReplyIntent::Result(Address {
                target: self.target.clone(),
                thread,
            })
        } else {
            ReplyIntent::Worded(Delivery {
                target: self.target.clone(),
                body: self.body.clone(),
                thread,
            })
        }
    }
}

/// How long a pending delivery holds back the later ones of its thread that report other runs
/// (those of its own run wait for it whatever its age): a stuck reply delays another run's
/// no longer than this.
pub const ORDER_HOLD_MS: i64 = 60_000;

/// The rate limit's window: a user may start this many runs in any minute.
pub const RATE_WINDOW_MS: i64 = 60_000;

/// Counts a request at `now` among `recent` (the times of the same user's earlier requests,
/// oldest first, pruned here to the window) when fewer than `per_minute` fall in the window;
/// otherwise, how long (ms) until the oldest leaves it. 0 means no limit.
pub(crate) fn count_in_window(
    recent: &mut std::collections::VecDeque<i64>,
    now: i64,
    per_minute: i64,
) -> Option<i64> {
    if per_minute <= 0 {
        return None;
    }
    while recent.front().is_some_and(|at| now - at >= RATE_WINDOW_MS) {
        recent.pop_front();
    }
    if i64::try_from(recent.len()).unwrap_or(i64::MAX) >= per_minute {
        let oldest = recent.front().copied().unwrap_or(now);
        return Some(RATE_WINDOW_MS - (now - oldest));
    }
    recent.push_back(now);
    None
}

/// A job's typical duration, from its last finished runs' (ms): the median, once it has any.
pub(crate) fn typical_ms(mut durations: Vec<i64>) -> Option<i64> {
    durations.sort_unstable();
    durations.get(durations.len() / 2).copied()
}

/// A step's failed tests, then those that passed on a retry, as rows for `test_failure`:
/// `[suite, name, message, detail, passed on a retry]` (both stores write these).
pub(crate) fn failure_rows(tests: Option<&crate::report::TestSummary>) -> Vec<serde_json::Value> {
    tests
        .iter()
        .flat_map(|t| {
            let failed = t.failures.iter().map(|f| (f, false));
            failed.chain(t.flaky.iter().map(|f| (f, true)))
        })
        .map(|(f, retried)| serde_json::json!([f.suite, f.name, f.message, f.detail, retried]))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_user_gets_per_minute_requests_in_any_minute() {
        let mut recent = std::collections::VecDeque::new();
        assert_eq!(super::count_in_window(&mut recent, 0, 2), None);
        assert_eq!(super::count_in_window(&mut recent, 10_000, 2), None);
        // The third within the minute waits until the first is a minute old.
        assert_eq!(super::count_in_window(&mut recent, 20_000, 2), Some(40_000));
        assert_eq!(super::count_in_window(&mut recent, 60_000, 2), None);
        assert_eq!(recent, [10_000, 60_000], "refused requests are not counted");
        assert_eq!(
            super::count_in_window(&mut recent, 60_001, 0),
            None,
            "0: no limit"
        );
    }

    #[test]
    fn the_typical_duration_is_the_median() {
        assert_eq!(super::typical_ms(vec![]), None);
        assert_eq!(super::typical_ms(vec![300, 100, 200]), Some(200));
        assert_eq!(super::typical_ms(vec![4, 1, 3, 2]), Some(3));
    }
}
