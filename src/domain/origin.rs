//! Where a run was asked for, and by whom: one struct for the new run, the stored run and the
//! permission check.

use serde::Serialize;
use sqlx::FromRow;

use super::Platform;

/// Who asked, and where. Ids are the chat server's; names are for display (and, where the
/// platform's names are unique, for permissions).
#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow, Serialize)]
pub struct Origin {
    /// The platform: Teams display names are not unique, so there only ids count.
    pub platform: Platform,
    /// Team id on the chat server.
    pub team_id: String,
    /// Team name, for display.
    pub team_name: String,
    /// Channel id on the chat server.
    pub channel_id: String,
    /// Channel name, for display.
    pub channel_name: String,
    /// User id on the chat server.
    pub user_id: String,
    /// User name, for display and mentions.
    pub user_name: String,
}
