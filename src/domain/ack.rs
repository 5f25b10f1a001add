//! A queued run's acknowledgement: what it tells (filled by the store, once the run has its
//! number and its place in its job's queue) and what a platform makes of it.

use super::{Delivery, Origin, RunId};

/// A trigger that became a run, before it is stored.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    /// Who asked, and where.
    pub origin: Origin,
    /// The trigger post's id; one run per (platform, message_id).
    pub message_id: String,
    /// The thread the result goes to, when known.
    pub thread_root_id: Option<String>,
    /// The thread could not be looked up (the chat server did not answer in time): the
    /// result's delivery looks again.
    pub thread_unsettled: bool,
    /// The whole trigger text.
    pub message: String,
    /// The job to run.
    pub job: String,
    /// What followed the job name.
    pub args: String,
    /// The configured webhook that delivered the trigger (Teams), or empty.
    pub hook: String,
    /// Set when permissions refused the request: it is recorded as `denied`, with this reason,
    /// and never runs.
    pub denied: Option<String>,
    /// Runs of the job that may execute at once (at least 1).
    pub concurrency: i64,
    /// Runs of the job that may wait; 0 for no limit.
    pub queue_limit: i64,
    /// The job runs on build agents only, and none that could take it is connected: the labels
    /// it waits for (comma-separated; empty: any agent).
    pub waits_for_agent: Option<String>,
}

/// What a queued run's acknowledgement tells, on every platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckFacts<'a> {
    pub run_id: RunId,
    pub job: &'a str,
    /// Who asked: their user name.
    pub user: &'a str,
    /// What followed the job's name.
    pub args: &'a str,
    /// The run's place in its job's queue (1: next).
    pub place: i64,
    /// Whether it is next and its job has a free slot (fewer runs running than its
    /// `concurrency`): it starts as soon as a worker takes it, so it is not "in the queue".
    pub starts_now: bool,
    /// The expected wait (ms), when the job has history.
    pub wait: Option<i64>,
    /// No connected agent can run it: the labels it waits for (empty: any agent).
    pub no_agent: Option<&'a str>,
}

impl<'a> AckFacts<'a> {
    /// The facts of `run`, numbered `run_id`, at `place` in its job's queue while `running` of
    /// its runs run, when the job's runs typically take `typical_ms`: it waits for the runs
    /// ahead of it and the running ones to free a slot, `concurrency` at a time.
    pub fn new(
        run_id: RunId,
        run: &'a NewRun,
        place: i64,
        running: i64,
        typical_ms: Option<i64>,
    ) -> Self {
        let slots = run.concurrency.max(1);
        let wait = typical_ms.map(|ms| ms * ((place - 1 + running) / slots));
        AckFacts {
            run_id,
            job: &run.job,
            user: &run.origin.user_name,
            args: &run.args,
            place,
            starts_now: place == 1 && running < slots && run.waits_for_agent.is_none(),
            wait: wait.filter(|w| *w > 0),
            no_agent: run.waits_for_agent.as_deref(),
        }
    }
}

/// A platform's acknowledgement of a queued run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// What the chat reply says.
    pub text: String,
    /// A reply to send through the outbox as well (a trigger typed inside a thread).
    pub delivery: Option<Delivery>,
}

/// Words an acknowledgement from its facts (no I/O): the store calls it once the run has its
/// number and place, and stores the words with the run.
pub type AckWords = Box<dyn FnOnce(&AckFacts) -> Ack + Send>;

#[cfg(test)]
mod tests {
    use super::*;

    fn run(concurrency: i64) -> NewRun {
        NewRun {
            job: "build".into(),
            concurrency,
            ..NewRun::default()
        }
    }

    #[test]
    fn a_run_starts_now_only_when_it_is_next_and_a_slot_is_free() {
        let new = run(2);
        assert!(AckFacts::new(RunId(1), &new, 1, 1, None).starts_now);
        assert!(!AckFacts::new(RunId(1), &new, 1, 2, None).starts_now);
        assert!(!AckFacts::new(RunId(1), &new, 2, 0, None).starts_now);
    }

    #[test]
    fn the_wait_counts_the_runs_ahead_and_running_per_slot() {
        let new = run(2);
        // Next, one slot free: no wait worth telling.
        assert_eq!(AckFacts::new(RunId(1), &new, 1, 1, Some(60_000)).wait, None);
        // Two ahead of it and two running, two at a time: two typical runs.
        assert_eq!(
            AckFacts::new(RunId(1), &new, 3, 2, Some(60_000)).wait,
            Some(120_000)
        );
        // No history, no estimate.
        assert_eq!(AckFacts::new(RunId(1), &new, 3, 2, None).wait, None);
    }
}
