//! Runs, their steps and their failed tests, as stored and as shown: the values every layer
//! passes around. The sqlx derives let the store read them straight from rows; nothing here
//! does I/O.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::{Origin, RunId};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, Serialize, Deserialize)]
// Stored as text on every backend (Postgres would otherwise look for a type of this name).
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker holds it.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A step failed, or the run could not be started.
    Failed,
    /// The job's timeout stopped it.
    TimedOut,
    /// Stopped on request.
    Cancelled,
    /// Refused by the job's permissions; recorded, never run.
    Denied,
    /// chatrun stopped (crash, kill, shutdown) while it ran, and it is not run again.
    Interrupted,
}

impl RunStatus {
    /// Every value, in the order of a run's life.
    pub const ALL: [Self; 8] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Cancelled,
        Self::Denied,
        Self::Interrupted,
    ];

    /// The word used in replies and pages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed out",
            Self::Cancelled => "cancelled",
            Self::Denied => "denied",
            Self::Interrupted => "interrupted",
        }
    }

    /// The word the API, the stored rows and the pages' filters use: `timed_out`.
    pub fn token(self) -> &'static str {
        match self {
            Self::TimedOut => "timed_out",
            status => status.as_str(),
        }
    }

    /// The status named by `text`: its token or its word (`timed_out`, `timed out`).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.token() == text || status.as_str() == text)
    }

    /// True once the run will not change any more.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// Where a step is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, Serialize, Deserialize)]
// Stored as text on every backend (Postgres would otherwise look for a type of this name).
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started yet.
    Pending,
    /// Its process is running.
    Running,
    /// Exited with status 0.
    Succeeded,
    /// Exited otherwise, or was killed by a signal.
    Failed,
    /// Stopped by the job's timeout.
    TimedOut,
    /// Stopped on request.
    Cancelled,
    /// Not run because an earlier step failed.
    Skipped,
    /// Could not be started (no such program, bad working directory).
    Error,
    /// chatrun stopped while it ran; its processes were killed.
    Interrupted,
}

impl StepStatus {
    /// The word used in replies and pages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed out",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
            Self::Error => "could not start",
            Self::Interrupted => "interrupted",
        }
    }
}

/// A `run` row.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct RunRow {
    pub run_id: RunId,
    /// Who asked, and where (the row's own columns).
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub origin: Origin,
    pub message_id: String,
    pub thread_root_id: Option<String>,
    /// The trigger's thread could not be looked up when it came: its result's delivery looks
    /// again before it is posted.
    #[serde(skip)]
    pub thread_unsettled: bool,
    pub message: String,
    pub job: String,
    pub args: String,
    pub hook: String,
    pub status: RunStatus,
    pub attempt: i64,
    pub ack_text: String,
    pub error: Option<String>,
    /// The output's first bytes (lossy UTF-8).
    pub log_head: String,
    /// Its last bytes after the head, never reaching back past a capped log's marker.
    pub log_tail: String,
    /// Bytes the run printed (steps' output with secrets masked, and chatrun's notes). The log
    /// file holds as many, or, when they were more than `max_log_bytes`, the head, the marker
    /// line and the tail.
    pub log_bytes: i64,
    /// Lines the run printed: the page numbers lines (`#L123`) as they were printed.
    pub log_lines: i64,
    pub log_path: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The remote agent that ran it (or runs it); `None`: the server's own workers.
    pub agent: Option<String>,
    /// A succeeded run after failed ones of its job with the same arguments: how many, since
    /// which. Read with the run's history for its result (not a column).
    #[sqlx(skip)]
    #[serde(skip)]
    pub back_to_green: Option<super::history::BackToGreen>,
}

/// A `step` row.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct StepRow {
    pub run_id: RunId,
    pub position: i64,
    pub name: String,
    pub status: StepStatus,
    pub exit_code: Option<i64>,
    pub detail: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Test counts from the step's reports; `None` when it names none or they were unusable.
    pub tests_run: Option<i64>,
    pub tests_failed: Option<i64>,
    pub tests_skipped: Option<i64>,
    pub tests_duration_ms: Option<i64>,
    /// Why the step's named reports could not be used.
    pub report_error: Option<String>,
    /// The step's last output lines (failed steps only), ANSI codes stripped.
    pub output_tail: Option<String>,
}

/// A `test_failure` row: one failed test of a step.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct TestFailureRow {
    pub position: i64,
    pub suite: String,
    pub name: String,
    pub message: String,
    pub detail: String,
    /// The first run of the streak of runs (same job, same arguments) this test has failed in,
    /// this one included: kept when the failure is written. `None` for a failure written
    /// before chatrun kept streaks.
    pub since: Option<RunId>,
    /// It failed, then passed on a retry in the same run: flaky, not counted as failed.
    pub passed_on_retry: bool,
    /// How it stands against the earlier runs (see [`super::history::classify`]); `None` until
    /// classed, or when it cannot be.
    #[sqlx(skip)]
    pub class: Option<super::FailureClass>,
}

impl StepRow {
    /// Step `position` of run `run_id`, called `name`, before it runs: pending, nothing
    /// recorded.
    pub fn pending(run_id: RunId, position: i64, name: &str) -> Self {
        Self {
            run_id,
            position,
            name: name.to_string(),
            status: StepStatus::Pending,
            exit_code: None,
            detail: None,
            started_at: None,
            finished_at: None,
            tests_run: None,
            tests_failed: None,
            tests_skipped: None,
            tests_duration_ms: None,
            report_error: None,
            output_tail: None,
        }
    }

    /// How long the step ran, once it has started.
    pub fn duration_ms(&self, now: i64) -> Option<i64> {
        Some(self.finished_at.unwrap_or(now) - self.started_at?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_is_named_by_its_stored_token_and_its_word() {
        for status in RunStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.token()), "the API's word");
            assert_eq!(RunStatus::parse(status.token()), Some(status));
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RunStatus::parse("timed out"), Some(RunStatus::TimedOut));
        assert_eq!(RunStatus::parse("done"), None);
    }
}
