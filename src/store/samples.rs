//! Sample runs and claims for the store's tests: the SQLite backend's own and the suite every
//! backend passes (`tests/store_suite.rs`).

use super::{Ack, AckFacts, Claim, JobSteps, NewRun, RunResult};
use crate::domain::RunStatus;

/// A claim by `owner` at `now`, its lease until `lease_until`.
pub fn claim<'a>(owner: &'a str, now: i64, lease_until: i64, steps: &'a JobSteps) -> Claim<'a> {
    Claim {
        owner,
        now,
        lease_until,
        steps,
    }
}

/// The steps of the job `build` of [`new_run`].
pub fn build_steps() -> JobSteps {
    JobSteps::new([("other", vec!["x"]), ("build", vec!["a", "b"])])
}

pub fn new_run(message_id: &str) -> NewRun {
    NewRun {
        origin: crate::domain::Origin {
            platform: crate::domain::Platform::Mattermost,
            user_name: "alice".into(),
            ..crate::domain::Origin::default()
        },
        message_id: message_id.into(),
        job: "build".into(),
        message: "#build".into(),
        ..NewRun::default()
    }
}

pub fn ack(facts: &AckFacts) -> Ack {
    Ack {
        text: format!("#{} at {}", facts.run_id, facts.place),
        delivery: None,
    }
}

pub fn result(status: RunStatus) -> RunResult {
    RunResult {
        status,
        error: None,
        log_head: "out".into(),
        log_tail: String::new(),
        log_bytes: 3,
        log_lines: 1,
        log_path: None,
        finished_at: 50,
    }
}
