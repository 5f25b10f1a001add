//! The chat platforms chatrun serves, as one enum: stored and passed as the enum, never as a
//! free string.

use serde::{Deserialize, Serialize};

/// A chat platform chatrun serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// Mattermost outgoing webhooks, replies through the REST API.
    Mattermost,
    /// Microsoft Teams outgoing webhooks, results through a Workflows URL.
    Teams,
}

impl Platform {
    /// The name stored with runs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mattermost => "mattermost",
            Self::Teams => "teams",
        }
    }
}
