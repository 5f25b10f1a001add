//! Where a run was asked for: a chat platform chatrun serves, or its own pages. Stored and
//! passed as the enum, never as a free string; the name is the same in the database, the API
//! and the pages' filters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a run was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
// Stored as text on every backend (Postgres would otherwise look for a type of this name).
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Platform {
    /// Mattermost outgoing webhooks, replies through the REST API; also `chatrun trigger`,
    /// which speaks Mattermost's webhook (hence the default).
    #[default]
    Mattermost,
    /// Microsoft Teams outgoing webhooks, results through a Workflows URL.
    Teams,
    /// Slack slash commands, `app_mention` events and button clicks; replies through its Web API.
    Slack,
    /// The history pages' "Run again": no chat to reply in.
    Web,
}

impl Platform {
    /// Every value, in the order the pages list them.
    pub const ALL: [Self; 4] = [Self::Mattermost, Self::Teams, Self::Slack, Self::Web];

    /// The name stored with runs and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mattermost => "mattermost",
            Self::Teams => "teams",
            Self::Slack => "slack",
            Self::Web => "web",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = UnknownPlatform;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPlatform(s.to_string()))
    }
}

impl PartialEq<&str> for Platform {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A name that is no [`Platform`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a platform: mattermost, teams, slack or web")]
pub struct UnknownPlatform(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_reads_back_from_its_name() {
        for platform in Platform::ALL {
            assert_eq!(platform.as_str().parse(), Ok(platform));
            assert_eq!(
                serde_json::to_string(&platform).unwrap(),
                format!("\"{platform}\"")
            );
        }
        assert!("irc".parse::<Platform>().is_err());
    }
}
