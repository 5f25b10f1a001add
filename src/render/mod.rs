//! Rendering: askama templates for chat replies (`templates/chat/*.md`) and the history pages
//! (`templates/web/*.html`), and the small formatting helpers they share. Pure: values in,
//! text out.
//!
//! HTML is escaped by askama. Markdown has no escaper in askama, so [`Markdown`] (wired in
//! `askama.toml`) backslash-escapes Markdown syntax and defuses `@mentions` in every value a
//! chat template prints; a value that must stay live (the requester's mention) is built by
//! [`mention`] and printed with `|safe`.

use std::fmt::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use askama::Template;
use askama::filters::Escaper;

use crate::store::{RunRow, RunStatus, StepRow, StepStatus};

/// The escaper of `.md` templates: Markdown punctuation is backslash-escaped, `@` gets a
/// zero-width space after it (no `@channel` from a branch name), line breaks become spaces (a
/// table cell is one line).
#[derive(Debug, Clone, Copy)]
pub struct Markdown;

impl Escaper for Markdown {
    fn write_escaped_str<W: Write>(&self, mut dest: W, string: &str) -> fmt::Result {
        for c in string.chars() {
            match c {
                '\\' | '`' | '*' | '_' | '~' | '[' | ']' | '(' | ')' | '<' | '>' | '|' | '#'
                | '!' | ':' => {
                    dest.write_char('\\')?;
                    dest.write_char(c)?;
                }
                '@' => dest.write_str("@\u{200B}")?,
                '\r' | '\n' => dest.write_char(' ')?,
                c if c.is_control() => {}
                c => dest.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// `@name` when `name` is a valid Mattermost user name (so the requester is notified), else the
/// name escaped.
pub fn mention(name: &str) -> String {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if valid {
        format!("@{name}")
    } else {
        let mut out = String::new();
        let _ = Markdown.write_escaped_str(&mut out, name);
        out
    }
}

/// A duration as people read it: `0.4s`, `12s`, `3m 05s`, `1h 02m`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 10_000 {
        format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
    } else if ms < 60_000 {
        format!("{}s", ms / 1000)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// A timestamp in UTC: `2026-11-23 16:04:05 UTC`.
pub fn timestamp(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let text = humantime::format_rfc3339_seconds(at).to_string();
    format!("{} UTC", text.trim_end_matches('Z').replace('T', " "))
}

/// Removes ANSI escape sequences (colours, cursor moves) so logs never show `\x1b[31m`.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            // CSI: ESC [ parameters... final byte in @..~
            Some('[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: ESC ] ... BEL or ESC \
            Some(']') => {
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            Some(_) => {
                chars.next();
            }
            None => {}
        }
    }
    out
}

/// Emoji shortcode for a run's status.
pub fn run_emoji(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Queued => ":hourglass_flowing_sand:",
        RunStatus::Running => ":gear:",
        RunStatus::Succeeded => ":white_check_mark:",
        RunStatus::Failed => ":x:",
        RunStatus::TimedOut => ":alarm_clock:",
        RunStatus::Cancelled => ":black_square_for_stop:",
    }
}

/// Emoji shortcode for a step's status.
pub fn step_emoji(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => ":double_vertical_bar:",
        StepStatus::Running => ":hourglass_flowing_sand:",
        StepStatus::Succeeded => ":white_check_mark:",
        StepStatus::Failed => ":x:",
        StepStatus::TimedOut => ":alarm_clock:",
        StepStatus::Cancelled => ":black_square_for_stop:",
        StepStatus::Skipped => ":fast_forward:",
        StepStatus::Error => ":warning:",
    }
}

/// The words after a step's emoji: `passed`, `failed (exit 2)`, `could not start`.
pub fn step_result(step: &StepRow) -> String {
    match (step.status, step.exit_code) {
        (StepStatus::Failed, Some(code)) => format!("failed (exit {code})"),
        (StepStatus::Failed, None) => match &step.detail {
            Some(detail) => format!("failed ({detail})"),
            None => "failed".into(),
        },
        (status, _) => status.as_str().into(),
    }
}

/// How long a run took (or has taken so far).
pub fn run_duration(run: &RunRow, now: i64) -> Option<i64> {
    Some(run.finished_at.unwrap_or(now) - run.started_at?)
}

/// One row of a chat result table.
#[derive(Debug, Clone)]
pub struct StepLine {
    pub emoji: &'static str,
    pub name: String,
    pub result: String,
    pub duration: String,
}

impl StepLine {
    /// The row for a stored step.
    pub fn new(step: &StepRow, now: i64) -> Self {
        Self {
            emoji: step_emoji(step.status),
            name: step.name.clone(),
            result: step_result(step),
            duration: step.duration_ms(now).map_or_else(|| "—".into(), duration),
        }
    }
}

/// The acknowledgement of a queued run.
#[derive(Template)]
#[template(path = "chat/ack.md")]
pub struct AckMessage<'a> {
    pub run_id: i64,
    pub job: &'a str,
    pub mention: &'a str,
    pub position: i64,
    pub args: &'a str,
    pub link: &'a str,
}

/// The reply to `help` and to an unknown job: the jobs there are.
#[derive(Template)]
#[template(path = "chat/jobs.md")]
pub struct JobsMessage<'a> {
    /// The word that named no job, if that is why we list them.
    pub unknown: Option<&'a str>,
    /// `(name, description)`.
    pub jobs: Vec<(&'a str, &'a str)>,
    pub trigger: &'a str,
}

/// The result of a finished run, posted in the trigger's thread.
#[derive(Template)]
#[template(path = "chat/result.md")]
pub struct ResultMessage<'a> {
    pub emoji: &'static str,
    pub job: &'a str,
    pub run_id: i64,
    pub status: &'static str,
    pub duration: String,
    pub mention: &'a str,
    pub rows: &'a [StepLine],
    /// Rows left out to fit the platform's size limit.
    pub omitted: usize,
    pub error: Option<&'a str>,
    pub link: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escaper_defuses_syntax_and_mentions() {
        let mut out = String::new();
        Markdown
            .write_escaped_str(&mut out, "a|b `x` *y* @channel [l](u)\nnext")
            .unwrap();
        assert_eq!(
            out,
            "a\\|b \\`x\\` \\*y\\* @\u{200B}channel \\[l\\]\\(u\\) next"
        );
    }

    #[test]
    fn mentions_only_valid_user_names() {
        assert_eq!(mention("bob.smith"), "@bob.smith");
        assert_eq!(mention("x|y"), "x\\|y");
        assert_eq!(mention(""), "");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(400), "0.4s");
        assert_eq!(duration(12_345), "12s");
        assert_eq!(duration(185_000), "3m 05s");
        assert_eq!(duration(3_720_000), "1h 02m");
    }

    #[test]
    fn strips_colour_and_title_sequences() {
        assert_eq!(
            strip_ansi("\x1b[1;31merror\x1b[0m: \x1b]0;title\x07done"),
            "error: done"
        );
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(timestamp(1_718_294_400_123), "2024-06-13 16:00:00 UTC");
    }
}
