//! Agents: where a run's steps execute. The server's own (the local agent, the workers of
//! `chatrun serve`) and remote `chatrun agent`s, which ask the server for runs over HTTP. A job
//! says which agents may run it by labels (`runs_on`); an agent says which labels it has.

use serde::Serialize;
use sqlx::FromRow;

use super::RunId;

/// Whether `label` may be one: 1 to 64 of `a-z A-Z 0-9 . _ -`.
///
/// # Errors
///
/// Why it may not, for people.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > 64 {
        return Err(format!("`{label}` is not a label: 1 to 64 characters"));
    }
    if !label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "`{label}` is not a label: letters, digits, `.`, `_` and `-` only"
        ));
    }
    Ok(())
}

/// Whether an agent with `labels` may run a job that `runs_on` these (all of them).
pub fn fits(runs_on: &[String], labels: &[String]) -> bool {
    runs_on.iter().all(|wanted| labels.contains(wanted))
}

/// How long after its last request an agent still counts as connected: its long poll asks at
/// least this often.
pub const AGENT_SEEN_WITHIN_MS: i64 = 60_000;

/// A remote agent as the server last saw it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, Serialize)]
pub struct AgentRow {
    pub name: String,
    /// Its labels, comma-separated, as it last sent them.
    pub labels: String,
    /// The chatrun version it runs.
    pub version: String,
    pub last_seen_at: i64,
    /// The run it holds, if any.
    pub run_id: Option<RunId>,
}

/// What an agent is doing, for the agents page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Idle,
    Running(RunId),
    /// Not heard from within [`AGENT_SEEN_WITHIN_MS`].
    Lost,
}

impl AgentRow {
    /// Its labels, as a list.
    pub fn label_list(&self) -> Vec<String> {
        self.labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// What it is doing at `now`.
    pub fn state(&self, now: i64) -> AgentState {
        if now - self.last_seen_at > AGENT_SEEN_WITHIN_MS {
            AgentState::Lost
        } else {
            self.run_id.map_or(AgentState::Idle, AgentState::Running)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short_plain_words_and_a_job_needs_all_of_its() {
        assert!(check_label("macos").is_ok());
        assert!(check_label("x86_64").is_ok());
        assert!(check_label("").is_err());
        assert!(check_label("mac os").is_err());
        assert!(check_label("a,b").is_err());
        let labels = vec!["linux".to_string(), "x86_64".to_string()];
        assert!(fits(&[], &labels));
        assert!(fits(&["linux".to_string()], &labels));
        assert!(!fits(&["linux".to_string(), "gpu".to_string()], &labels));
    }

    #[test]
    fn an_agent_not_heard_from_for_a_minute_is_lost() {
        let agent = AgentRow {
            name: "mac".into(),
            labels: "macos,arm64".into(),
            version: "0.1.0".into(),
            last_seen_at: 1_000,
            run_id: Some(RunId(4)),
        };
        assert_eq!(agent.label_list(), ["macos", "arm64"]);
        assert_eq!(agent.state(2_000), AgentState::Running(RunId(4)));
        assert_eq!(
            agent.state(1_000 + AGENT_SEEN_WITHIN_MS + 1),
            AgentState::Lost
        );
    }
}
