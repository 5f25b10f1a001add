//! The chat platforms: one folder each (`mattermost/`, `teams/`, `slack/`) holding everything of that
//! platform (verifying and reading its webhooks, wording its replies, its own API client), and
//! what they share: the [`Adapter`] seam and its [`Registry`], the [`Replies`] a command is
//! worded with, the HTTP plumbing of their clients ([`transport`]), and the checks every
//! webhook makes (the replay window, the JSON depth).

pub mod adapter;
pub mod mattermost;
mod replies;
pub mod slack;
pub mod teams;
pub mod transport;

pub use adapter::{Adapter, HookContext, Inbound, Posted, Registry, Rejection, Request};
pub use replies::Replies;
pub use transport::DeliveryError;

use std::time::Duration;

/// Why a message is refused by the replay window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Replay {
    /// Sent longer ago than the window: a captured request sent again, or one that waited.
    #[error(
        "the message is {age} old; chatrun takes messages at most {window} old (replay_window), so it looks like a replay: send it again"
    )]
    TooOld {
        /// How old, in words (`12 minutes`).
        age: String,
        /// The window, as configured (`5m`).
        window: String,
    },
    /// Dated further ahead than the window: a clock is wrong.
    #[error(
        "the message is dated {ahead} in the future, more than replay_window ({window}) allows: check the clocks of chatrun and the chat server"
    )]
    Ahead {
        /// How far ahead, in words.
        ahead: String,
        /// The window, as configured.
        window: String,
    },
}

/// Checks a message's own time (`sent_ms`, from its payload) against `now_ms`: it may be at
/// most `window` old, and at most `window` ahead (clocks differ). Pure; the handler passes
/// the time.
///
/// # Errors
///
/// The message is older, or further ahead, than the window.
pub fn check_replay_window(sent_ms: i64, now_ms: i64, window: Duration) -> Result<(), Replay> {
    let age = i128::from(now_ms) - i128::from(sent_ms);
    let window_ms = i128::try_from(window.as_millis()).unwrap_or(i128::MAX);
    let window = humantime::format_duration(window).to_string();
    if age > window_ms {
        Err(Replay::TooOld {
            age: spoken(age),
            window,
        })
    } else if -age > window_ms {
        Err(Replay::Ahead {
            ahead: spoken(-age),
            window,
        })
    } else {
        Ok(())
    }
}

/// A positive span of milliseconds in words, in the unit a person would use: `90 seconds`,
/// `12 minutes`, `30 hours`, `540 days`.
fn spoken(ms: i128) -> String {
    let seconds = ms / 1000;
    let (n, unit) = match seconds {
        ..120 => (seconds, "second"),
        120..7200 => (seconds / 60, "minute"),
        7200..172_800 => (seconds / 3600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// How deeply a webhook's JSON may nest. A Teams activity nests 4 levels, a Mattermost payload
/// 1; serde_json skips unknown fields at any depth, so deeper input is refused up front.
pub const MAX_JSON_DEPTH: usize = 32;

/// Why a webhook's JSON body is refused before it is parsed: not UTF-8 (serde_json checks UTF-8
/// only in the strings it keeps, not in skipped ones), or nested deeper than
/// [`MAX_JSON_DEPTH`]. `None` when it may be parsed.
pub fn json_body_problem(body: &[u8]) -> Option<String> {
    if std::str::from_utf8(body).is_err() {
        return Some("the body is not UTF-8".into());
    }
    if !json_depth_within(body, MAX_JSON_DEPTH) {
        return Some(format!("nested deeper than {MAX_JSON_DEPTH} levels"));
    }
    None
}

/// Whether the arrays and objects in `json` nest at most `max` levels deep. Strings are
/// skipped (brackets in them do not count); the text need not be valid JSON.
pub fn json_depth_within(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_window_allows_skew_both_ways_and_says_how_far_off() {
        let window = Duration::from_secs(300);
        let now = 1_800_000_000_000;
        assert_eq!(check_replay_window(now, now, window), Ok(()));
        assert_eq!(check_replay_window(now - 300_000, now, window), Ok(()));
        assert_eq!(check_replay_window(now + 300_000, now, window), Ok(()));
        assert_eq!(
            check_replay_window(now - 720_000, now, window)
                .unwrap_err()
                .to_string(),
            "the message is 12 minutes old; chatrun takes messages at most 5m old (replay_window), so it looks like a replay: send it again"
        );
        assert_eq!(
            check_replay_window(now + 300_001, now, window),
            Err(Replay::Ahead {
                ahead: "5 minutes".into(),
                window: "5m".into()
            })
        );
        let err = check_replay_window(now - 1000 * 86_400 * 540, now, window).unwrap_err();
        assert!(
            err.to_string().starts_with("the message is 540 days old"),
            "{err}"
        );
        let err = check_replay_window(now - 2_000, now, Duration::from_secs(1)).unwrap_err();
        assert!(
            err.to_string().starts_with("the message is 2 seconds old"),
            "{err}"
        );
        // Absurd times do not overflow.
        assert!(check_replay_window(i64::MIN, i64::MAX, window).is_err());
        assert!(check_replay_window(i64::MAX, i64::MIN, window).is_err());
    }

    #[test]
    fn json_depth_counts_brackets_outside_strings() {
        assert!(json_depth_within(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(!json_depth_within(br#"{"a":[1,{"b":2}]}"#, 2));
        assert!(json_depth_within(br#"{"a":"[[[[\"[[[["}"#, 1));
        assert!(json_depth_within(b"]]]}}}", 0));
        assert!(!json_depth_within(
            "[".repeat(33).as_bytes(),
            MAX_JSON_DEPTH
        ));
    }
}
