//! What chat platforms have in common: the command grammar and the [`Delivery`] a reply
//! becomes. Each platform's file verifies, parses and renders for its wire format; all of it is
//! pure (bytes in, values out). Only [`crate::outbox`] sends a delivery.

pub mod mattermost;
pub mod teams;

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
/// configuration when it is sent, so no secret is stored) and the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// e.g. [`mattermost::TARGET_POST`].
    pub target: String,
    /// The JSON to POST.
    pub body: String,
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
    /// List the jobs.
    Help,
    /// `word` names no job and no command.
    Unknown {
        /// What the user typed where a job name was expected.
        word: String,
    },
}

/// Parses a Mattermost message: the first word is the trigger word; with one leading `#`, `!`,
/// `/` or `@` removed, if it names a job, that job runs (`#build` → `build`); otherwise the rest
/// is read by [`parse_after_trigger`] (`#ci build`). `is_job` says whether a name is a job.
pub fn parse_command(text: &str, is_job: impl Fn(&str) -> bool) -> Command {
    let mut rest = text.trim_start();
    let bare = strip_sigil(next_word(&mut rest));
    if is_job(bare) {
        return Command::Run {
            job: bare.to_string(),
            args: rest.trim().to_string(),
        };
    }
    if bare == "help" {
        return Command::Help;
    }
    parse_after_trigger(rest, is_job)
}

/// Parses what follows the trigger (Mattermost's trigger word, Teams' mention): a job's name
/// and its arguments, `help`, or nothing (also help).
pub fn parse_after_trigger(text: &str, is_job: impl Fn(&str) -> bool) -> Command {
    let mut rest = text.trim_start();
    let word = strip_sigil(next_word(&mut rest));
    if word.is_empty() || word == "help" {
        return Command::Help;
    }
    if is_job(word) {
        return Command::Run {
            job: word.to_string(),
            args: rest.trim().to_string(),
        };
    }
    Command::Unknown {
        word: word.to_string(),
    }
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

    fn parse(text: &str) -> Command {
        parse_command(text, |name| ["build", "deploy"].contains(&name))
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
    fn otherwise_the_second_word_names_the_job() {
        assert_eq!(parse("#ci build fast"), run("build", "fast"));
        assert_eq!(parse("#ci\tdeploy"), run("deploy", ""));
    }

    #[test]
    fn after_the_trigger_the_first_word_is_the_job() {
        let after = |text| parse_after_trigger(text, |name| name == "build");
        assert_eq!(after("build web"), run("build", "web"));
        assert_eq!(after(" #build"), run("build", ""));
        assert_eq!(
            after("test web-ui"),
            Command::Unknown {
                word: "test".into()
            }
        );
        assert_eq!(after(""), Command::Help);
        assert_eq!(after("help build"), Command::Help);
    }

    #[test]
    fn names_are_case_sensitive_and_unknown_words_are_reported() {
        assert_eq!(
            parse("#ci Build"),
            Command::Unknown {
                word: "Build".into()
            }
        );
        assert_eq!(parse("#Build"), Command::Help);
        assert_eq!(parse("#ci"), Command::Help);
        assert_eq!(parse("#ci help"), Command::Help);
        assert_eq!(parse(""), Command::Help);
    }
}
