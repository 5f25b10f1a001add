//! Slack: slash commands, `app_mention` events and clicks on chatrun's buttons, each signed
//! ([`auth`]) and read ([`inbound`]) before anything is done; replies as Block Kit messages
//! ([`blocks`]) posted through the Web API ([`Client`], bodies in [`post`]): a slash command's
//! acknowledgement is an anchor message its result threads under, a mention is answered in its
//! thread. See `shared/protocols/slack.md` and `docs/slack.md`.

pub mod auth;
pub mod blocks;
mod client;
mod config;
mod hook;
pub mod inbound;
pub mod post;

pub use client::Client;
pub use config::*;
pub use hook::{after_mention, unescape};
pub use inbound::*;

/// Delivery target: `chat.postMessage` with the bot's token.
pub const TARGET_POST: &str = "slack.post";
