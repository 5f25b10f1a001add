//! What chat platforms have in common: the command grammar and the [`Delivery`] a reply
//! becomes. Each platform's file verifies, parses and renders for its wire format; all of it is
//! pure (bytes in, values out). Only [`crate::outbox`] sends a delivery.

pub mod mattermost;
pub mod teams;

use std::time::Duration;

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

/// A reply waiting to be sent: where (a target name, resolved to a URL and credentials from the
/// configuration when it is sent, so no secret is stored), the JSON body, and the thread it
/// goes to, in which replies are delivered in the order they were queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// e.g. [`mattermost::TARGET_POST`].
    pub target: String,
    /// The JSON to POST.
    pub body: String,
    /// Names the thread (or channel) the reply appears in: a reply is not sent while an earlier
    /// one to the same thread waits. Empty: ordered with nothing.
    pub thread: String,
}

/// What a chat message asks for, after the trigger word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run `job`; `args` is the rest of the message, as typed.
    Run {
        /// The job's name.
        job: String,
        /// What followed the job name, trimmed.
        args: String,
    },
    /// `help`: list the jobs; `help <job>`: detail one.
    Help {
        /// The job to detail.
        job: Option<String>,
    },
    /// `status <run>`.
    Status {
        /// As typed: `42` or `#42`.
        run: String,
    },
    /// `queue`: what runs and waits here.
    Queue,
    /// `cancel <run>`.
    Cancel {
        /// As typed.
        run: String,
    },
    /// `retry <run>` / `rerun <run>`: the same job with the same arguments again.
    Retry {
        /// As typed.
        run: String,
    },
    /// `word` names no job and no command.
    Unknown {
        /// What the user typed where a job name was expected.
        word: String,
        /// The closest job or command name, when one is close.
        suggestion: Option<String>,
    },
}

/// Parses a Mattermost message: the first word is the trigger word; with one leading `#`, `!`,
/// `/` or `@` removed, if it names a job, that job runs (`#build` → `build`); otherwise the rest
/// is read by [`parse_after_trigger`] (`#ci build`). `jobs` are the job names.
pub fn parse_command(text: &str, jobs: &[&str]) -> Command {
    let mut rest = text.trim_start();
    let bare = strip_sigil(next_word(&mut rest));
    if jobs.contains(&bare) {
        return Command::Run {
            job: bare.to_string(),
            args: rest.trim().to_string(),
        };
    }
    if crate::catalog::BUILT_INS.contains(&bare) {
        return parse_after_trigger(&format!("{bare} {rest}"), jobs);
    }
    // `#biuld` alone: a mistyped job as the trigger word, not a generic one like `#ci`.
    if rest.trim().is_empty()
        && let Some(suggestion) = closest(
            bare,
            jobs.iter()
                .copied()
                .chain(crate::catalog::BUILT_INS.iter().copied()),
        )
    {
        return Command::Unknown {
            word: bare.to_string(),
            suggestion: Some(suggestion),
        };
    }
    parse_after_trigger(rest, jobs)
}

/// Parses what follows the trigger (Mattermost's trigger word, Teams' mention): a command
/// (`help [job]`, `status <run>`, `queue`, `cancel <run>`, `retry <run>`), which wins over a job
/// of the same name, or a job's name and its arguments. Nothing at all is `help`.
pub fn parse_after_trigger(text: &str, jobs: &[&str]) -> Command {
    let mut rest = text.trim_start();
    let word = strip_sigil(next_word(&mut rest));
    let argument = |rest: &str| rest.split_whitespace().next().unwrap_or("").to_string();
    match word {
        "" | "help" => Command::Help {
            job: Some(argument(rest)).filter(|j| !j.is_empty()),
        },
        "status" => Command::Status {
            run: argument(rest),
        },
        "queue" => Command::Queue,
        "cancel" => Command::Cancel {
            run: argument(rest),
        },
        "retry" | "rerun" => Command::Retry {
            run: argument(rest),
        },
        job if jobs.contains(&job) => Command::Run {
            job: job.to_string(),
            args: rest.trim().to_string(),
        },
        word => Command::Unknown {
            word: word.to_string(),
            suggestion: closest(
                word,
                jobs.iter()
                    .copied()
                    .chain(crate::catalog::BUILT_INS.iter().copied()),
            ),
        },
    }
}

/// The name closest to `word` (edit distance at most 2, and less than half its length), for
/// "did you mean".
pub fn closest<'a>(word: &str, names: impl Iterator<Item = &'a str>) -> Option<String> {
    let word = word.to_lowercase();
    names
        .map(|name| (edit_distance(&word, &name.to_lowercase()), name))
        .filter(|(d, name)| *d <= 2 && *d * 2 < name.chars().count().max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name.to_string())
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(current)
            };
            previous = current;
        }
    }
    row[b.len()]
}

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

/// A run number as typed: `42` or `#42`.
pub fn parse_run_id(text: &str) -> Option<i64> {
    text.trim()
        .trim_start_matches('#')
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
}

/// `#build`, `!build`, `/build`, `@build` → `build`.
fn strip_sigil(word: &str) -> &str {
    word.strip_prefix(['#', '!', '/', '@']).unwrap_or(word)
}

/// Splits off the first whitespace-separated word of `rest`.
fn next_word<'a>(rest: &mut &'a str) -> &'a str {
    let text = rest.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    let (word, tail) = text.split_at(end);
    *rest = tail;
    word
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

    const JOBS: &[&str] = &["build", "deploy"];

    fn parse(text: &str) -> Command {
        parse_command(text, JOBS)
    }

    fn run(job: &str, args: &str) -> Command {
        Command::Run {
            job: job.into(),
            args: args.into(),
        }
    }

    #[test]
    fn a_trigger_word_that_names_a_job_runs_it() {
        assert_eq!(parse("#build"), run("build", ""));
        assert_eq!(
            parse("!build api-server  branch=main"),
            run("build", "api-server  branch=main")
        );
        assert_eq!(parse("/deploy\nsecond line"), run("deploy", "second line"));
        assert_eq!(parse("@build"), run("build", ""));
        assert_eq!(parse("build web"), run("build", "web"));
    }

    #[test]
    fn otherwise_the_second_word_names_the_job_or_command() {
        assert_eq!(parse("#ci build fast"), run("build", "fast"));
        assert_eq!(parse("#ci\tdeploy"), run("deploy", ""));
        assert_eq!(
            parse("#ci status #42"),
            Command::Status { run: "#42".into() }
        );
        assert_eq!(parse("#ci queue"), Command::Queue);
        assert_eq!(parse("#ci cancel 7"), Command::Cancel { run: "7".into() });
        assert_eq!(parse("#ci rerun 7"), Command::Retry { run: "7".into() });
        assert_eq!(
            parse("#ci help deploy"),
            Command::Help {
                job: Some("deploy".into())
            }
        );
        assert_eq!(parse("#status 4"), Command::Status { run: "4".into() });
        assert_eq!(parse("#ci"), Command::Help { job: None });
        assert_eq!(
            parse("#biuld"),
            Command::Unknown {
                word: "biuld".into(),
                suggestion: Some("build".into())
            }
        );
        assert_eq!(parse(""), Command::Help { job: None });
    }

    #[test]
    fn mistyped_names_get_a_suggestion() {
        assert_eq!(
            parse("#ci biuld"),
            Command::Unknown {
                word: "biuld".into(),
                suggestion: Some("build".into())
            }
        );
        assert_eq!(
            parse("#ci stauts 4"),
            Command::Unknown {
                word: "stauts".into(),
                suggestion: Some("status".into())
            }
        );
        assert_eq!(
            parse("#ci Build"),
            Command::Unknown {
                word: "Build".into(),
                suggestion: Some("build".into())
            }
        );
        assert_eq!(
            parse("#ci xyz"),
            Command::Unknown {
                word: "xyz".into(),
                suggestion: None
            }
        );
    }

    #[test]
    fn after_the_trigger_the_first_word_is_the_job() {
        let after = |text| parse_after_trigger(text, &["build"]);
        assert_eq!(after("build web"), run("build", "web"));
        assert_eq!(after(" #build"), run("build", ""));
        assert!(matches!(after("test web-ui"), Command::Unknown { word, .. } if word == "test"));
        assert_eq!(after(""), Command::Help { job: None });
    }

    #[test]
    fn run_numbers_are_read_with_or_without_hash() {
        assert_eq!(parse_run_id("#42"), Some(42));
        assert_eq!(parse_run_id("42"), Some(42));
        assert_eq!(parse_run_id("x"), None);
        assert_eq!(parse_run_id("0"), None);
    }
}
