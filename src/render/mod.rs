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

pub mod command;
// Sample data for the rendering tests and the micro-benchmarks (`benches/micro.rs`).
#[doc(hidden)]
pub mod samples;

use crate::domain::{
    AckFacts, FailureClass, RunRow, RunStatus, StepRow, StepStatus, TestFailureRow,
};

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

/// `text` for Markdown with its code spans kept as spans and everything else escaped: for
/// messages (a refusal's reason) that quote values in backticks, which were made safe for a
/// span with [`crate::domain::text::in_code`]. With an odd number of backticks, all is escaped.
pub fn markdown_keeping_code(text: &str) -> String {
    let parts: Vec<&str> = text.split('`').collect();
    let mut out = String::new();
    if parts.len().is_multiple_of(2) {
        let _ = Markdown.write_escaped_str(&mut out, text);
        return out;
    }
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 {
            // Inside a span Markdown is not read; only a line break would end it.
            out.push('`');
            out.push_str(&part.replace(['\r', '\n'], " "));
            out.push('`');
        } else {
            let _ = Markdown.write_escaped_str(&mut out, part);
        }
    }
    out
}

/// Chat Markdown (a Mattermost reply) as HTML for the pages: tables and emphasis rendered,
/// raw HTML shown as text, links kept only to http(s) and within the page, the status
/// shortcodes shown as their emoji.
pub fn markdown_html(text: &str) -> String {
    use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};
    let mut text = text.to_string();
    for status in RunStatus::ALL {
        text = text.replace(run_emoji(status), run_symbol(status));
    }
    for (code, symbol) in [
        (":warning:", "⚠️"),
        (":fast_forward:", "⏩"),
        (":double_vertical_bar:", "⏸️"),
    ] {
        text = text.replace(code, symbol);
    }
    let safe = |url: &str| {
        url.starts_with("http://") || url.starts_with("https://") || url.starts_with('#')
    };
    let events = Parser::new_ext(
        &text,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
    )
    .map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe(&dest_url) => Event::Start(Tag::Link {
            link_type,
            dest_url: CowStr::Borrowed("#"),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    out
}

/// How long ago `at` was, at `now` (both ms), as a person says it: `just now`, `4 min ago`,
/// `3 h ago`, `yesterday`, `5 days ago`; then the date.
pub fn ago(at: i64, now: i64) -> String {
    let secs = (now - at).max(0) / 1000;
    match secs {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        86_400..172_800 => "yesterday".into(),
        172_800..604_800 => format!("{} days ago", secs / 86_400),
        _ => timestamp(at).chars().take(10).collect(),
    }
}

/// A line of a log as HTML: escaped, with its ANSI colours and bold (SGR codes 0, 1, 22,
/// 30-37, 39, 90-97) as `<span class="a-…">`, and every other escape sequence removed. Only
/// these fixed spans are written, so the output is safe to insert as it is.
pub fn ansi_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let (mut fg, mut bold, mut open) = (None::<u8>, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                c if c.is_control() && c != '\t' => {}
                c => out.push(c),
            }
            continue;
        }
        match chars.next() {
            Some('[') => {}
            // OSC (a terminal title): up to BEL or ESC \.
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
                continue;
            }
            _ => continue,
        }
        let mut params = String::new();
        let mut end = None;
        for c in chars.by_ref() {
            if ('@'..='~').contains(&c) {
                end = Some(c);
                break;
            }
            params.push(c);
        }
        if end != Some('m') {
            continue;
        }
        let mut codes = params.split(';').map(|p| p.parse::<u16>().unwrap_or(0));
        while let Some(code) = codes.next() {
            match code {
                0 => (fg, bold) = (None, false),
                1 => bold = true,
                22 => bold = false,
                39 => fg = None,
                30..=37 => fg = u8::try_from(code - 30).ok(),
                90..=97 => fg = u8::try_from(code - 90 + 8).ok(),
                // 256 colours and true colour: their arguments are skipped.
                38 | 48 => match codes.next() {
                    Some(5) => {
                        codes.next();
                    }
                    Some(2) => {
                        codes.nth(2);
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        if open {
            out.push_str("</span>");
            open = false;
        }
        if fg.is_some() || bold {
            out.push_str("<span class=\"");
            if let Some(n) = fg {
                out.push_str(&format!("a-{n}"));
            }
            if bold {
                out.push_str(if fg.is_some() { " a-b" } else { "a-b" });
            }
            out.push_str("\">");
            open = true;
        }
    }
    if open {
        out.push_str("</span>");
    }
    out
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

/// A size as people read it: `512 bytes`, `1.5 KiB`, `10 MiB`, `1.0 GiB` (one decimal below 10).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 9.95 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A timestamp in UTC: `2026-11-23 16:04:05 UTC`.
pub fn timestamp(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let text = humantime::format_rfc3339_seconds(at).to_string();
    format!("{} UTC", text.trim_end_matches('Z').replace('T', " "))
}

/// A run status's emoji, one for every platform: its Mattermost shortcode, and the character
/// itself (Teams shows no shortcodes).
fn run_emojis(status: RunStatus) -> (&'static str, &'static str) {
    match status {
        RunStatus::Queued => (":hourglass_flowing_sand:", "⏳"),
        RunStatus::Running => (":gear:", "⚙️"),
        RunStatus::Succeeded => (":white_check_mark:", "✅"),
        RunStatus::Failed => (":x:", "❌"),
        RunStatus::TimedOut => (":alarm_clock:", "⏰"),
        RunStatus::Cancelled => (":black_square_for_stop:", "⏹️"),
        RunStatus::Denied => (":no_entry_sign:", "🚫"),
        RunStatus::Interrupted => (":zap:", "⚡"),
    }
}

/// Emoji shortcode for a run's status.
pub fn run_emoji(status: RunStatus) -> &'static str {
    run_emojis(status).0
}

/// The emoji character for a run's status.
pub fn run_symbol(status: RunStatus) -> &'static str {
    run_emojis(status).1
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
        StepStatus::Interrupted => ":zap:",
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

/// Failed tests named per step in chat replies; the rest are counted.
pub const FAILURES_PER_STEP: usize = 10;

/// How much of a run's result a reply shows. Replies that do not fit their platform's limit
/// drop detail in this order: output tails, then failed-test lists, then table rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detail {
    /// Show the last output lines of failed steps without a test report.
    pub tails: bool,
    /// Name the failed tests.
    pub failures: bool,
    /// Table rows shown.
    pub rows: usize,
}

impl Detail {
    /// Every level from the fullest to the barest, for a run of `rows` steps.
    pub fn levels(rows: usize) -> impl Iterator<Item = Detail> {
        let full = [(true, true), (false, true), (false, false)]
            .into_iter()
            .map(move |(tails, failures)| Detail {
                tails,
                failures,
                rows,
            });
        let fewer = std::iter::successors(Some(rows / 2), |n| (*n > 0).then_some(n / 2))
            .filter(move |n| *n < rows)
            .map(|rows| Detail {
                tails: false,
                failures: false,
                rows,
            });
        full.chain(fewer)
    }
}

/// One row of a result table.
#[derive(Debug, Clone)]
pub struct ResultRow {
    /// The step's position, for links to it (`#step-N`).
    pub position: i64,
    pub name: String,
    pub status: StepStatus,
    pub emoji: &'static str,
    /// `passed`, `failed (exit 2)`.
    pub result: String,
    pub duration: String,
    /// From the step's test reports, when it names some that could be read.
    pub tests_run: Option<i64>,
    pub tests_failed: Option<i64>,
    /// Of its failed tests, how many are new, when their history is known.
    pub new_failures: Option<usize>,
    /// `report missing` / `report unreadable`, when it names reports that could not be used.
    pub report_problem: Option<String>,
}

/// The failed tests of one step (or why its report is unusable).
#[derive(Debug, Clone)]
pub struct FailureGroup {
    pub position: i64,
    pub step: String,
    /// Failed tests in all.
    pub count: i64,
    /// The first [`FAILURES_PER_STEP`], new ones first, then those still failing, then the
    /// flaky ones (see [`crate::domain::FailureClass`]).
    pub tests: Vec<FailedTest>,
    /// Failed tests not named.
    pub more: usize,
    /// Tests that failed, then passed on a retry (listed, as flaky, with the failed ones).
    pub retried: usize,
    /// The whole "report missing: …" sentence.
    pub problem: Option<String>,
}

/// A failed test as a reply names it.
#[derive(Debug, Clone)]
pub struct FailedTest {
    pub suite: String,
    pub name: String,
    /// The first line of its message.
    pub message: String,
    /// How it stands against the earlier runs, when known.
    pub class: Option<FailureClass>,
    /// It failed, then passed on a retry in this run.
    pub retried: bool,
}

impl FailedTest {
    /// ` (new)`, ` (failing since #38)`, ` (flaky)`, ` (flaky: passed on a retry)`; empty when
    /// its history is not known.
    pub fn tag(&self) -> String {
        if self.retried {
            return " (flaky: passed on a retry)".into();
        }
        self.class
            .map_or_else(String::new, |class| format!(" ({})", class.words()))
    }
}

impl FailureGroup {
    /// `2 failed`, `2 failed, 1 passed on a retry`.
    pub fn counts(&self) -> String {
        let mut counts = format!("{} failed", self.count);
        if self.retried > 0 {
            counts.push_str(&format!(", {} passed on a retry", self.retried));
        }
        counts
    }
}

impl ResultRow {
    /// The Tests Failed count as a reply shows it: `2 (1 new)`, `2 (none new)`, or
    /// `2 (see details)` when the failures' history is not known.
    pub fn failed_count(&self) -> String {
        let failed = self.tests_failed.unwrap_or(0);
        match self.new_failures {
            Some(0) => format!("{failed} (none new)"),
            Some(new) => format!("{failed} ({new} new)"),
            None => format!("{failed} (see details)"),
        }
    }
}

/// The last output lines of a failed step without a usable report.
#[derive(Debug, Clone)]
pub struct OutputTail {
    pub step: String,
    pub lines: usize,
    pub text: String,
}

impl OutputTail {
    /// `last 3 lines of output`, `last line of output`.
    pub fn heading(&self) -> String {
        match self.lines {
            1 => "last line of output".into(),
            n => format!("last {n} lines of output"),
        }
    }
}

/// A run's result, laid out for chat at some [`Detail`]: what Mattermost's Markdown and Teams'
/// card both show.
#[derive(Debug, Clone)]
pub struct ResultView {
    /// Some step names test reports: the table has test counts.
    pub with_tests: bool,
    pub rows: Vec<ResultRow>,
    pub omitted_rows: usize,
    pub groups: Vec<FailureGroup>,
    pub tails: Vec<OutputTail>,
    /// What this level leaves out, for people (`output tails, failed-test names`).
    pub left_out: Vec<String>,
}

impl ResultView {
    /// A platform's wording (`word`) of the fullest view of `steps` that `fits` its limits,
    /// leaving out detail level by level ([`Detail::levels`]); the barest level's when none
    /// fits.
    pub fn fitted<T>(
        steps: &[StepRow],
        failures: &[TestFailureRow],
        now: i64,
        mut word: impl FnMut(&ResultView) -> T,
        fits: impl Fn(&T) -> bool,
    ) -> T {
        let mut last = None;
        for detail in Detail::levels(steps.len()) {
            let worded = word(&Self::new(steps, failures, now, detail));
            if fits(&worded) {
                return worded;
            }
            last = Some(worded);
        }
        last.expect("Detail::levels yields at least one level")
    }

    /// Lays out `steps` (and their `failures`) at `detail`.
    pub fn new(steps: &[StepRow], failures: &[TestFailureRow], now: i64, detail: Detail) -> Self {
        let with_tests = steps
            .iter()
            .any(|s| s.tests_run.is_some() || s.report_error.is_some());
        let of_step = |position: i64| failures.iter().filter(move |f| f.position == position);
        let rows: Vec<ResultRow> = steps
            .iter()
            .take(detail.rows)
            .map(|step| ResultRow {
                new_failures: of_step(step.position)
                    .map(|f| f.class)
                    .collect::<Option<Vec<_>>>()
                    .filter(|classes| !classes.is_empty())
                    .map(|classes| classes.iter().filter(|c| **c == FailureClass::New).count()),
                position: step.position,
                name: step.name.clone(),
                status: step.status,
                emoji: step_emoji(step.status),
                result: step_result(step),
                duration: step.duration_ms(now).map_or_else(|| "—".into(), duration),
                tests_run: step.tests_run,
                tests_failed: step.tests_failed,
                report_problem: step
                    .report_error
                    .as_deref()
                    .map(|e| e.split(':').next().unwrap_or(e).trim().to_string()),
            })
            .collect();

        let groups: Vec<FailureGroup> = steps
            .iter()
            .filter(|s| {
                s.tests_failed.unwrap_or(0) > 0
                    || s.report_error.is_some()
                    || of_step(s.position).any(|f| f.passed_on_retry)
            })
            .map(|step| {
                let mut tests: Vec<&TestFailureRow> = of_step(step.position).collect();
                // New first, then still failing, then flaky (a stable sort: report order
                // within each), those without history last.
                tests.sort_by_key(|f| f.class.map_or(u8::MAX, FailureClass::rank));
                FailureGroup {
                    position: step.position,
                    step: step.name.clone(),
                    count: step.tests_failed.unwrap_or(0),
                    retried: tests.iter().filter(|f| f.passed_on_retry).count(),
                    tests: tests
                        .iter()
                        .take(FAILURES_PER_STEP)
                        .map(|f| FailedTest {
                            suite: f.suite.clone(),
                            name: f.name.clone(),
                            message: f.message.clone(),
                            class: f.class,
                            retried: f.passed_on_retry,
                        })
                        .collect(),
                    more: usize::try_from(step.tests_failed.unwrap_or(0))
                        .unwrap_or(0)
                        .max(tests.len())
                        .saturating_sub(FAILURES_PER_STEP),
                    problem: step.report_error.clone(),
                }
            })
            .collect();
        let tails: Vec<OutputTail> = steps
            .iter()
            .filter(|s| {
                !matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped)
                    && s.tests_run.is_none()
            })
            .filter_map(|s| {
                let text = s.output_tail.clone().filter(|t| !t.trim().is_empty())?;
                Some(OutputTail {
                    step: s.name.clone(),
                    lines: text.lines().count(),
                    text,
                })
            })
            .collect();

        let mut left_out = Vec::new();
        if !detail.tails && !tails.is_empty() {
            left_out.push("output of failed steps".to_string());
        }
        if !detail.failures && groups.iter().any(|g| !g.tests.is_empty()) {
            left_out.push("names of failed tests".to_string());
        }
        let omitted_rows = steps.len().saturating_sub(detail.rows);
        if omitted_rows > 0 {
            left_out.push(format!("{omitted_rows} of {} steps", steps.len()));
        }
        Self {
            with_tests,
            rows,
            omitted_rows,
            groups: if detail.failures { groups } else { Vec::new() },
            tails: if detail.tails { tails } else { Vec::new() },
            left_out,
        }
    }
}

/// A Markdown code block around `text` whose fence no line of `text` can close.
pub fn code_block(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{text}\n{fence}")
}

/// The acknowledgement of a queued run.
#[derive(Template)]
#[template(path = "chat/ack.md")]
pub struct AckMessage<'a> {
    pub facts: &'a AckFacts<'a>,
    /// The run's page.
    pub link: &'a str,
    /// The requester's mention, live (see [`mention`]).
    pub mention: &'a str,
    /// The expected wait, worded.
    pub wait: Option<String>,
}

/// The reply to `help` and to an unknown job: the jobs there are.
#[derive(Template)]
#[template(path = "chat/jobs.md")]
pub struct JobsMessage<'a> {
    /// The word that named no job, if that is why we list them.
    pub unknown: Option<&'a str>,
    /// The closest job or command name.
    pub suggestion: Option<&'a str>,
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
    pub view: &'a ResultView,
    /// The "Tests Failed" cell of each row, Markdown (links, emoji) built from numbers.
    pub failed_cells: Vec<String>,
    pub error: Option<&'a str>,
    pub link: &'a str,
    /// `back to green after 3 failed runs, since #38`, for a succeeded run after failed ones.
    pub back_to_green: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(1023), "1023 bytes");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10 * 1024 * 1024), "10 MiB");
        assert_eq!(bytes(1024 * 1024 * 1024), "1.0 GiB");
        assert_eq!(bytes(5 * 1024 * 1024 - 64), "5.0 MiB");
    }

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
    fn a_chat_reply_renders_as_html_without_raw_html_or_unsafe_links() {
        let html = markdown_html(
            ":x: **build** failed <img src=x onerror=alert(1)> [a](javascript:alert(1)) [b](http://ci/runs/1)\n\n| A | B |\n|---|---|\n| 1 | 2 |",
        );
        assert!(html.contains("❌ <strong>build</strong> failed"), "{html}");
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );
        assert!(html.contains(r##"<a href="#">a</a>"##), "{html}");
        assert!(
            html.contains(r#"<a href="http://ci/runs/1">b</a>"#),
            "{html}"
        );
        assert!(html.contains("<table>"), "{html}");
    }

    #[test]
    fn times_read_as_a_person_says_them() {
        let now = 10 * 86_400_000;
        assert_eq!(ago(now - 5_000, now), "just now");
        assert_eq!(ago(now - 4 * 60_000, now), "4 min ago");
        assert_eq!(ago(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(ago(now - 30 * 3_600_000, now), "yesterday");
        assert_eq!(ago(now - 5 * 86_400_000, now), "5 days ago");
        assert_eq!(ago(0, now), "1970-01-01");
        assert_eq!(ago(now + 1000, now), "just now", "a clock a little ahead");
    }

    #[test]
    fn a_log_line_keeps_its_colours_as_safe_html() {
        assert_eq!(
            ansi_html(
                "\x1b[1;31merror\x1b[0m: <b>&\x1b]0;title\x07 \x1b[32mok\x1b[39m done\x1b[2K"
            ),
            "<span class=\"a-1 a-b\">error</span>: &lt;b&gt;&amp; <span class=\"a-2\">ok</span> done"
        );
        assert_eq!(ansi_html("\x1b[38;5;196mred\x1b[m"), "red");
        assert_eq!(
            ansi_html("\x1b[91mbright"),
            "<span class=\"a-9\">bright</span>"
        );
        assert_eq!(ansi_html("plain \"quoted\""), "plain &quot;quoted&quot;");
    }

    #[test]
    fn strips_colour_and_title_sequences() {
        assert_eq!(
            crate::domain::text::strip_ansi("\x1b[1;31merror\x1b[0m: \x1b]0;title\x07done"),
            "error: done"
        );
    }

    #[test]
    fn a_code_block_cannot_be_closed_by_its_content() {
        assert_eq!(code_block("a"), "```text\na\n```");
        assert_eq!(code_block("x ``` y"), "````text\nx ``` y\n````");
    }

    #[test]
    fn detail_levels_drop_tails_then_lists_then_rows() {
        let levels: Vec<(bool, bool, usize)> = Detail::levels(5)
            .map(|d| (d.tails, d.failures, d.rows))
            .collect();
        assert_eq!(
            levels,
            vec![
                (true, true, 5),
                (false, true, 5),
                (false, false, 5),
                (false, false, 2),
                (false, false, 1),
                (false, false, 0)
            ]
        );
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(timestamp(1_718_294_400_123), "2024-06-13 16:00:00 UTC");
    }
}
