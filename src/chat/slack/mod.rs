//! Slack (issue #23, in progress): everything of the platform will live here, as for
//! `mattermost/` and `teams/`. So far [`auth`], the request signature every Slack request
//! carries, checked on the raw bytes before anything is parsed, and [`inbound`], what a
//! verified request says (a slash command, an Events API delivery).

pub mod auth;
pub mod inbound;
