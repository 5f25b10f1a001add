//! The wording of Slack messages as Block Kit: the acknowledgement of a queued run (with a
//! Cancel button), a finished run's result (with a Run again button) and plain replies. Pure:
//! values in, a [`Message`] out; posting it (`chat.postMessage`, `chat.update`) is the client's.
//!
//! Blocks are typed values serialized by serde, as Teams' card, never a JSON template. A result
//! says what the Mattermost reply and the Teams card say, and is fitted under Slack's limits by
//! walking [`render::Detail::levels`]: output tails go first, then failed-test names, then table rows,
//! and the message says what it left out. Slack documents a limit per block (50 blocks, 3000
//! characters of section text, one `table` of at most 100 rows) but refuses messages well
//! below any documented total (`msg_blocks_too_long`, slackapi/bolt-js#2509), hence
//! [`MAX_BLOCKS_CHARS`].
//!
//! Every user value in mrkdwn passes through [`escape`], and every mrkdwn text object is
//! `verbatim`, so Slack does not turn a bare `@channel` or a channel name into a mention or a
//! link either. Table cells are `raw_text`, which Slack does not parse. Emphasis characters
//! (`*`, `_`, `~`) are not escaped: mrkdwn has no escape for them, and they can only change how
//! a value looks. The top-level `text` is mrkdwn as `chat.postMessage` reads it by default
//! (`parse=none`): the client must not ask for `parse=full` or `link_names`.

use serde::Serialize;

use crate::domain::text::{escape_text, in_code, truncate_runes};
use crate::domain::{AckFacts, RunRow, StepRow, StepStatus, TestFailureRow};
use crate::render::{self, ResultRow, ResultView};

/// The `action_id` of a result's Run again button; its `value` is the run's number.
pub const ACTION_RERUN: &str = "chatrun_rerun";

/// The `action_id` of an acknowledgement's Cancel button; its `value` is the run's number.
pub const ACTION_CANCEL: &str = "chatrun_cancel";

/// Block JSON budget (Slack refused ~13k chars with msg_blocks_too_long though no limit was
/// documented; bolt-js#2509).
pub const MAX_BLOCKS_CHARS: usize = 12_000;

/// Blocks in one message.
pub const MAX_BLOCKS: usize = 50;

/// Characters of a section's text, and of a message's notification `text` (a notification
/// shows far less anyway).
pub const MAX_SECTION_CHARS: usize = 3000;

/// Characters of a header's text.
pub const MAX_HEADER_CHARS: usize = 150;

/// Rows of a table, its header row included.
pub const MAX_TABLE_ROWS: usize = 100;

/// Characters of all the cells of a message's table together.
pub const MAX_TABLE_CHARS: usize = 10_000;

/// A message for chat.postMessage / chat.update: the notification text (mrkdwn, also what
/// `chatrun trigger --wait` and the run page show) and the blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// mrkdwn, at most [`MAX_SECTION_CHARS`] characters.
    pub text: String,
    pub blocks: Vec<Block>,
}

impl Message {
    /// Whether the message is within the limits this module knows: [`MAX_BLOCKS`],
    /// [`MAX_BLOCKS_CHARS`] of block JSON, one table, and each block's own.
    pub fn fits(&self) -> bool {
        self.text.chars().count() <= MAX_SECTION_CHARS
            && self.blocks.len() <= MAX_BLOCKS
            && blocks_chars(&self.blocks) <= MAX_BLOCKS_CHARS
            && self.blocks.iter().all(Block::fits)
            && self
                .blocks
                .iter()
                .filter(|b| matches!(b, Block::Table { .. }))
                .count()
                <= 1
    }
}

/// The length of `blocks` as the JSON Slack receives (bytes, so never fewer than characters).
fn blocks_chars(blocks: &[Block]) -> usize {
    serde_json::to_string(blocks).map_or(usize::MAX, |json| json.len())
}

/// A layout block.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// Large bold plain text, at most [`MAX_HEADER_CHARS`].
    Header { text: Text },
    /// Text, at most [`MAX_SECTION_CHARS`].
    Section { text: Text },
    /// Small grey text; at most 10 elements.
    Context { elements: Vec<Text> },
    /// One per message; its first row is the header row.
    Table {
        column_settings: Vec<ColumnSetting>,
        rows: Vec<Vec<Cell>>,
    },
    /// Buttons.
    Actions { elements: Vec<Element> },
}

impl Block {
    fn fits(&self) -> bool {
        match self {
            Block::Header { text } => text.chars() <= MAX_HEADER_CHARS,
            Block::Section { text } => text.chars() <= MAX_SECTION_CHARS,
            Block::Context { elements } => {
                elements.len() <= 10 && elements.iter().all(|t| t.chars() <= MAX_SECTION_CHARS)
            }
            Block::Table {
                column_settings,
                rows,
            } => {
                let chars: usize = rows.iter().flatten().map(Cell::chars).sum();
                rows.len() <= MAX_TABLE_ROWS
                    && rows.iter().all(|row| row.len() <= 20)
                    && column_settings.len() <= 20
                    && chars <= MAX_TABLE_CHARS
            }
            Block::Actions { elements } => {
                elements.len() <= 25
                    && elements.iter().all(|Element::Button { text, value, .. }| {
                        text.chars() <= 75 && value.chars().count() <= 2000
                    })
            }
        }
    }
}

/// A text object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Text {
    /// Shown as it is; with `emoji`, `:shortcodes:` become emoji.
    PlainText { text: String, emoji: bool },
    /// Slack's mrkdwn; `verbatim` keeps Slack from linking or mentioning anything the text
    /// does not spell out as `<…>`.
    Mrkdwn { text: String, verbatim: bool },
}

impl Text {
    fn plain(text: impl Into<String>) -> Self {
        Text::PlainText {
            text: text.into(),
            emoji: true,
        }
    }

    fn mrkdwn(text: impl Into<String>) -> Self {
        Text::Mrkdwn {
            text: text.into(),
            verbatim: true,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            Text::PlainText { text, .. } | Text::Mrkdwn { text, .. } => text,
        }
    }

    fn chars(&self) -> usize {
        self.as_str().chars().count()
    }
}

/// An interactive element of an actions block.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Element {
    Button {
        /// Plain text, at most 75 characters.
        text: Text,
        action_id: &'static str,
        /// Comes back in the `block_actions` payload; at most 2000 characters.
        value: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        style: Option<Style>,
    },
}

/// A button's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    Primary,
    Danger,
}

/// How a table column shows its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ColumnSetting {
    pub align: Align,
    pub is_wrapped: bool,
}

/// A column's alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    Left,
    Right,
}

/// A table cell: `raw_text` (never parsed, at least one character) or `rich_text`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Cell {
    RawText { text: String },
    RichText { elements: Vec<RichBlock> },
}

impl Cell {
    fn raw(text: impl Into<String>) -> Self {
        let text = text.into();
        Cell::RawText {
            // Slack refuses an empty cell.
            text: if text.trim().is_empty() {
                "—".into()
            } else {
                text
            },
        }
    }

    fn chars(&self) -> usize {
        match self {
            Cell::RawText { text } => text.chars().count(),
            Cell::RichText { elements } => elements
                .iter()
                .flat_map(|RichBlock::RichTextSection { elements }| elements)
                .map(|e| match e {
                    Rich::Text { text } | Rich::Link { text, .. } => text.chars().count(),
                })
                .sum(),
        }
    }
}

/// A paragraph of a `rich_text` cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RichBlock {
    RichTextSection { elements: Vec<Rich> },
}

/// A piece of a rich text paragraph.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Rich {
    Text { text: String },
    Link { url: String, text: String },
}

/// Slack mrkdwn escaping: & < > as &amp; &lt; &gt; (Slack's documented escaping); this also
/// keeps `<!channel>` and `<@U…>` from pinging.
pub fn escape(text: &str) -> String {
    escape_text(text)
}

/// A value on one line, at most `max` characters (before escaping).
fn cell(value: &str, max: usize) -> String {
    let one_line = value.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate_runes(&one_line, max)
}

/// mrkdwn `text` cut to at most `max` characters, never inside an entity (`&amp;`) or a
/// `<link|label>`, and with a code block it opened closed again.
fn cut(text: &str, max: usize) -> String {
    const FENCE: &str = "\n```";
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(1 + FENCE.len());
    let mut out: String = text.chars().take(keep).collect();
    if let Some(at) = out.rfind('&')
        && !out[at..].contains(';')
    {
        out.truncate(at);
    }
    if let Some(at) = out.rfind('<')
        && !out[at..].contains('>')
    {
        out.truncate(at);
    }
    out.push('…');
    if out.matches("```").count() % 2 == 1 {
        out.push_str(FENCE);
    }
    out
}

/// `<url|label>`: a link whose label is escaped and whose URL cannot end it early.
fn link_to(url: &str, label: &str) -> String {
    let url = url
        .replace('|', "%7C")
        .replace('<', "%3C")
        .replace('>', "%3E");
    format!("<{url}|{}>", escape(label))
}

/// Who asked: a live mention when the origin's user id is a Slack user id (`U…`, `W…`), so
/// they are notified; else their name, escaped.
fn requester(user_id: &str, user_name: &str) -> String {
    let slack_id = (3..=32).contains(&user_id.len())
        && user_id.starts_with(['U', 'W'])
        && user_id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if slack_id {
        format!("<@{user_id}>")
    } else {
        escape(&cell(user_name, 100))
    }
}

/// The character of a step's status: `raw_text` cells show no `:shortcodes:`. The same
/// emoji as [`render::step_emoji`].
fn step_symbol(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "⏸️",
        StepStatus::Running => "⏳",
        StepStatus::Succeeded => "✅",
        StepStatus::Failed => "❌",
        StepStatus::TimedOut => "⏰",
        StepStatus::Cancelled => "⏹️",
        StepStatus::Skipped => "⏩",
        StepStatus::Error => "⚠️",
        StepStatus::Interrupted => "⚡",
    }
}

fn button(text: String, action_id: &'static str, run_id: i64, style: Style) -> Block {
    Block::Actions {
        elements: vec![Element::Button {
            text: Text::plain(truncate_runes(&text, 75)),
            action_id,
            value: run_id.to_string(),
            style: Some(style),
        }],
    }
}

/// The acknowledgement: same facts and words as mattermost::render_ack (run number, job, args,
/// asked by, place in queue / starting now / expected wait / "waiting for a build agent with
/// the labels …: none is connected", link to the run page as <link|#42>), plus an actions block
/// with a Cancel button (action_id [`ACTION_CANCEL`], value = the run number as decimal text,
/// style danger).
pub fn render_ack(facts: &AckFacts, link: &str) -> Message {
    let run_id = facts.run_id.0;
    let mut text = format!(
        ":hourglass_flowing_sand: Queued run *#{run_id}* of *{}*",
        escape(&cell(facts.job, 100))
    );
    if !facts.args.is_empty() {
        text.push_str(&format!(" ({})", escape(&cell(facts.args, 1000))));
    }
    // A mention or a click names its user by id only: shown as the person's name.
    text.push_str(&format!(", asked by {}", requester(facts.user, facts.user)));
    if let Some(labels) = facts.no_agent {
        text.push_str(", waiting for a build agent");
        if !labels.is_empty() {
            text.push_str(&format!(" with the labels {}", escape(&cell(labels, 300))));
        }
        text.push_str(": none is connected");
    } else if facts.starts_now {
        text.push_str(", starting now");
    } else {
        text.push_str(&format!(", position {} in the queue", facts.place));
        if let Some(wait) = facts.wait {
            text.push_str(&format!(
                ", expected to start in about {}",
                render::duration(wait)
            ));
        }
    }
    text.push_str(&format!(
        ". Details: {}",
        link_to(link, &format!("#{run_id}"))
    ));
    line_with_button(
        &text,
        button(
            format!("Cancel run #{run_id}"),
            ACTION_CANCEL,
            run_id,
            Style::Danger,
        ),
    )
}

/// A message of one line of mrkdwn (cut to a section's size) and one button.
fn line_with_button(text: &str, button: Block) -> Message {
    let text = cut(text, MAX_SECTION_CHARS);
    Message {
        blocks: vec![
            Block::Section {
                text: Text::mrkdwn(text.clone()),
            },
            button,
        ],
        text,
    }
}

/// What a slash command's anchor says once its run has ended (it is updated in place with
/// `chat.update`): the run's outcome in one line, that the result is in the thread, and a Run
/// again button instead of Cancel.
pub fn render_anchor_done(run: &RunRow, link: &str, now: i64) -> Message {
    let run_id = run.run_id.0;
    let duration = render::run_duration(run, now)
        .map_or_else(String::new, |d| format!(" in {}", render::duration(d)));
    let mut text = format!(
        "{} Run *#{run_id}* of *{}*",
        render::run_emoji(run.status),
        escape(&cell(&run.job, 100))
    );
    if !run.args.is_empty() {
        text.push_str(&format!(" ({})", escape(&cell(&run.args, 1000))));
    }
    text.push_str(&format!(
        " {}{duration}, asked by {}. The result is in the thread; details: {}",
        run.status.as_str(),
        requester(&run.origin.user_id, &run.origin.user_name),
        link_to(link, &format!("#{run_id}"))
    ));
    line_with_button(
        &text,
        button("Run again".into(), ACTION_RERUN, run_id, Style::Primary),
    )
}

/// A plain text reply (answers to status/queue/help, refusals) as a message: one section (text
/// cut to 3000). `text` is mrkdwn whose values its author escaped.
pub fn text_message(text: &str) -> Message {
    let text = cut(text.trim(), MAX_SECTION_CHARS);
    let text = if text.is_empty() { "…".into() } else { text };
    Message {
        blocks: vec![Block::Section {
            text: Text::mrkdwn(text.clone()),
        }],
        text,
    }
}

/// A finished run's result: the header (status emoji, job, #N, status), who asked and how long
/// it took, args and error, the table (Component / Tests Run / Tests Failed / Duration when
/// some step names test reports, else Step / Result / Duration), the failed tests per step,
/// the output tails of failed steps without reports, the "left out to fit" note, a link to the
/// run page and a Run again button ([`ACTION_RERUN`], value the run number). Fitted by leaving
/// out detail (see [`render::Detail`]) until the message [`fits`](Message::fits).
pub fn render_result(
    run: &RunRow,
    steps: &[StepRow],
    failures: &[TestFailureRow],
    link: &str,
    now: i64,
) -> Message {
    ResultView::fitted(
        steps,
        failures,
        now,
        |view| result_message(run, view, link, now),
        Message::fits,
    )
}

fn result_message(run: &RunRow, view: &ResultView, link: &str, now: i64) -> Message {
    let run_id = run.run_id.0;
    let emoji = render::run_emoji(run.status);
    let status = run.status.as_str();
    let duration = render::run_duration(run, now).map_or_else(|| "0.0s".into(), render::duration);
    let job = cell(&run.job, 100);
    let who = requester(&run.origin.user_id, &run.origin.user_name);
    let details = link_to(link, &format!("Run #{run_id}: details and logs"));
    let error = run.error.as_deref().map(|e| escape(&cell(e, 500)));

    let mut blocks = vec![
        Block::Header {
            text: Text::plain(truncate_runes(
                &format!("{emoji} {job} run #{run_id} {status}"),
                MAX_HEADER_CHARS,
            )),
        },
        Block::Context {
            elements: vec![Text::mrkdwn(format!("asked by {who} · {duration}"))],
        },
    ];
    let mut facts = Vec::new();
    if let Some(green) = run.back_to_green {
        facts.push(format!(":tada: {}", green.words()));
    }
    if !run.args.is_empty() {
        facts.push(format!("*Arguments:* {}", escape(&cell(&run.args, 300))));
    }
    if let Some(error) = &error {
        facts.push(format!("*Error:* {error}"));
    }
    if !facts.is_empty() {
        blocks.push(Block::Section {
            text: Text::mrkdwn(facts.join("\n")),
        });
    }
    if !view.rows.is_empty() || view.omitted_rows > 0 {
        blocks.push(table(view, link));
    }
    for group in &view.groups {
        blocks.push(Block::Section {
            text: Text::mrkdwn(failure_group(group)),
        });
    }
    for tail in &view.tails {
        blocks.push(Block::Section {
            text: Text::mrkdwn(output_tail(tail)),
        });
    }
    if !view.left_out.is_empty() {
        blocks.push(Block::Context {
            elements: vec![Text::mrkdwn(format!(
                "_Left out to fit in one message: {}._",
                view.left_out.join(", ")
            ))],
        });
    }
    blocks.push(Block::Section {
        text: Text::mrkdwn(details.clone()),
    });
    blocks.push(button(
        "Run again".into(),
        ACTION_RERUN,
        run_id,
        Style::Primary,
    ));

    let mut text = format!(
        "{emoji} *{}* run #{run_id} {status} in {duration}, asked by {who}",
        escape(&job)
    );
    if let Some(error) = &error {
        text.push_str(&format!("\n> {error}"));
    }
    text.push_str(&format!("\n{details}"));
    Message {
        text: cut(&text, MAX_SECTION_CHARS),
        blocks,
    }
}

/// The steps' table: a header row, a row per shown step, and a row for those left out.
fn table(view: &ResultView, link: &str) -> Block {
    let column = |align, is_wrapped| ColumnSetting { align, is_wrapped };
    let (headers, column_settings): (&[&str], _) = if view.with_tests {
        (
            &["Component", "Tests Run", "Tests Failed", "Duration"],
            vec![
                column(Align::Left, true),
                column(Align::Right, false),
                column(Align::Left, true),
                column(Align::Right, false),
            ],
        )
    } else {
        (
            &["Step", "Result", "Duration"],
            vec![
                column(Align::Left, true),
                column(Align::Left, true),
                column(Align::Right, false),
            ],
        )
    };
    let mut rows = vec![headers.iter().map(|h| Cell::raw(*h)).collect::<Vec<_>>()];
    for row in &view.rows {
        let name = Cell::raw(cell(&row.name, 120));
        let duration = Cell::raw(row.duration.clone());
        rows.push(if view.with_tests {
            let run = Cell::raw(row.tests_run.map_or_else(|| "—".into(), |n| n.to_string()));
            vec![name, run, failed_cell(row, link), duration]
        } else {
            let result = Cell::raw(format!(
                "{} {}",
                step_symbol(row.status),
                cell(&row.result, 120)
            ));
            vec![name, result, duration]
        });
    }
    if view.omitted_rows > 0 {
        let mut more = vec![Cell::raw(format!(
            "… and {} more steps on the run page",
            view.omitted_rows
        ))];
        more.resize(headers.len(), Cell::raw("…"));
        rows.push(more);
    }
    Block::Table {
        column_settings,
        rows,
    }
}

/// The "Tests Failed" cell: the count linked to the step on the run page, or the step's result
/// when its report has no count.
fn failed_cell(row: &ResultRow, link: &str) -> Cell {
    let symbol = step_symbol(row.status);
    let result = cell(&row.result, 120);
    match (row.tests_failed, &row.report_problem) {
        (_, Some(problem)) => Cell::raw(format!("{symbol} {result}, ⚠️ {}", cell(problem, 120))),
        (Some(0), None) if row.status == StepStatus::Succeeded => Cell::raw("✅ 0"),
        (Some(0), None) => Cell::raw(format!("{symbol} 0, {result}")),
        (Some(_), None) => Cell::RichText {
            elements: vec![RichBlock::RichTextSection {
                elements: vec![
                    Rich::Text {
                        text: "⚠️ ".into()
                    },
                    Rich::Link {
                        url: format!("{link}#step-{}", row.position),
                        text: row.failed_count(),
                    },
                ],
            }],
        },
        (None, None) => Cell::raw(format!("{symbol} {result}")),
    }
}

/// A step's failed tests, one line each, as many whole lines as fit in a section; the rest
/// are counted.
fn failure_group(group: &render::FailureGroup) -> String {
    let step = escape(&cell(&group.step, 120));
    if let Some(problem) = &group.problem {
        return cut(
            &format!(":warning: *{step}*: {}", escape(&cell(problem, 500))),
            MAX_SECTION_CHARS,
        );
    }
    let mut text = format!("*{step}*: {}", group.counts());
    let more_line = |n: usize| format!("\n• … and {n} more");
    for (shown, test) in group.tests.iter().enumerate() {
        let mut line = format!(
            "\n• {} › *{}*{}",
            escape(&cell(&test.suite, 120)),
            escape(&cell(&test.name, 200)),
            test.tag()
        );
        let message = test.message.lines().next().unwrap_or_default();
        if !message.trim().is_empty() {
            line.push_str(&format!(": {}", escape(&cell(message, 200))));
        }
        // Room for this line and, after it, the count of the tests not named.
        let rest = group.more + group.tests.len() - shown - 1;
        let after = if rest > 0 { more_line(rest).len() } else { 0 };
        let untold = group.more + group.tests.len() - shown;
        if text.chars().count() + line.chars().count() + after > MAX_SECTION_CHARS {
            text.push_str(&more_line(untold));
            return text;
        }
        text.push_str(&line);
    }
    if group.more > 0 {
        text.push_str(&more_line(group.more));
    }
    text
}

/// A failed step's last output lines in a code block: as many of the last lines as fit.
fn output_tail(tail: &render::OutputTail) -> String {
    let heading = format!(
        "*{}*: {}\n```\n",
        escape(&cell(&tail.step, 120)),
        tail.heading()
    );
    let budget = MAX_SECTION_CHARS - heading.chars().count() - "\n```".len();
    let mut lines: Vec<String> = Vec::new();
    let mut used = 0;
    for line in tail.text.lines().rev() {
        // Backticks become `ˋ`: a line cannot close the block.
        let line = escape(&truncate_runes(&in_code(line), 300));
        let chars = line.chars().count() + 1;
        if used + chars > budget {
            break;
        }
        used += chars;
        lines.push(line);
    }
    lines.reverse();
    format!("{heading}{}\n```", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RunId, RunStatus};
    use crate::render::samples::{failures, run, scenarios, step, tested};

    const LINK: &str = "http://ci/runs/42";

    fn assert_matches_fixture(actual: &str, name: &str) {
        crate::render::samples::assert_matches_fixture(actual, "slack", name);
    }

    fn facts() -> AckFacts<'static> {
        AckFacts {
            run_id: RunId(42),
            job: "build",
            user: "alice",
            args: "",
            place: 1,
            starts_now: false,
            wait: None,
            no_agent: None,
        }
    }

    fn table_rows(message: &Message) -> usize {
        message
            .blocks
            .iter()
            .map(|b| match b {
                Block::Table { rows, .. } => rows.len(),
                _ => 0,
            })
            .sum()
    }

    fn sections(message: &Message) -> impl Iterator<Item = &str> {
        message.blocks.iter().flat_map(|b| match b {
            Block::Section { text } => vec![text.as_str()],
            Block::Context { elements } => elements.iter().map(Text::as_str).collect(),
            _ => Vec::new(),
        })
    }

    fn assert_within_limits(message: &Message) {
        let json = blocks_chars(&message.blocks);
        assert!(json <= MAX_BLOCKS_CHARS, "{json} characters of blocks");
        assert!(
            message.blocks.len() <= MAX_BLOCKS,
            "{} blocks",
            message.blocks.len()
        );
        assert!(message.text.chars().count() <= MAX_SECTION_CHARS);
        for text in sections(message) {
            assert!(text.chars().count() <= MAX_SECTION_CHARS, "{text}");
        }
        assert!(table_rows(message) <= MAX_TABLE_ROWS);
        assert!(message.fits());
    }

    #[test]
    fn the_acknowledgement_has_a_cancel_button_carrying_the_run_number() {
        let message = render_ack(&facts(), LINK);
        assert_eq!(
            message.text,
            ":hourglass_flowing_sand: Queued run *#42* of *build*, asked by alice, position 1 \
             in the queue. Details: <http://ci/runs/42|#42>"
        );
        let Some(Block::Actions { elements }) = message.blocks.last() else {
            panic!("no actions block: {message:?}");
        };
        let [
            Element::Button {
                text,
                action_id,
                value,
                style,
            },
        ] = elements.as_slice()
        else {
            panic!("not one button: {elements:?}");
        };
        assert_eq!(text.as_str(), "Cancel run #42");
        assert_eq!(*action_id, ACTION_CANCEL);
        assert_eq!(value, "42");
        assert_eq!(*style, Some(Style::Danger));
        let json = serde_json::to_value(&message.blocks).unwrap();
        assert_eq!(
            json[1]["elements"][0],
            serde_json::json!({
                "type": "button",
                "text": {"type": "plain_text", "text": "Cancel run #42", "emoji": true},
                "action_id": "chatrun_cancel",
                "value": "42",
                "style": "danger"
            })
        );
        assert_within_limits(&message);
    }

    #[test]
    fn the_acknowledgement_words_the_wait_as_mattermost_does() {
        let text = render_ack(
            &AckFacts {
                place: 3,
                wait: Some(95_000),
                ..facts()
            },
            LINK,
        )
        .text;
        assert!(
            text.contains(", position 3 in the queue, expected to start in about 1m 35s."),
            "{text}"
        );
        let text = render_ack(
            &AckFacts {
                starts_now: true,
                ..facts()
            },
            LINK,
        )
        .text;
        assert!(text.contains("asked by alice, starting now."), "{text}");
        let text = render_ack(
            &AckFacts {
                no_agent: Some("linux, gpu"),
                ..facts()
            },
            LINK,
        )
        .text;
        assert!(
            text.contains(
                ", waiting for a build agent with the labels linux, gpu: none is connected."
            ),
            "{text}"
        );
        let text = render_ack(
            &AckFacts {
                no_agent: Some(""),
                ..facts()
            },
            LINK,
        )
        .text;
        assert!(
            text.contains(", waiting for a build agent: none is connected."),
            "{text}"
        );
    }

    #[test]
    fn user_values_cannot_ping_the_channel_or_break_the_markup() {
        assert_eq!(
            escape("<!channel> & <@U123|bob>"),
            "&lt;!channel&gt; &amp; &lt;@U123|bob&gt;"
        );
        let message = render_ack(
            &AckFacts {
                args: "note=<!channel> & <!here>",
                user: "<@U999>",
                ..facts()
            },
            LINK,
        );
        assert!(
            message.text.contains(
                "*build* (note=&lt;!channel&gt; &amp; &lt;!here&gt;), asked by &lt;@U999&gt;"
            ),
            "{}",
            message.text
        );
        let mut result_run = run(RunStatus::Failed);
        result_run.args = "x=<!channel>".into();
        result_run.error = Some("a & b <!everyone>".into());
        let result = render_result(&result_run, &[], &[], LINK, 0);
        for json in [
            serde_json::to_string(&message).unwrap(),
            serde_json::to_string(&result).unwrap(),
        ] {
            for ping in ["<!channel>", "<!here>", "<!everyone>", "<@U999>"] {
                assert!(!json.contains(ping), "{ping} in {json}");
            }
        }
        assert!(
            result.text.contains("> a &amp; b &lt;!everyone&gt;"),
            "{}",
            result.text
        );
        // Every mrkdwn text is verbatim: a bare @channel stays text.
        let json = serde_json::to_value(&result.blocks).unwrap();
        assert_eq!(json[1]["elements"][0]["verbatim"], true);
    }

    #[test]
    fn the_requester_is_mentioned_only_by_a_slack_user_id() {
        assert_eq!(requester("U024BE7LH", "bob"), "<@U024BE7LH>");
        assert_eq!(requester("W012A3CDE", "bob"), "<@W012A3CDE>");
        assert_eq!(requester("u1", "alice"), "alice");
        assert_eq!(requester("U1>", "a<b"), "a&lt;b");
        assert_eq!(requester("29:1abc", "Ann"), "Ann");
    }

    #[test]
    fn a_cut_never_ends_inside_an_entity_a_link_or_a_code_block() {
        let text = format!("{}&amp; tail", "a".repeat(10));
        assert_eq!(cut(&text, 17), "aaaaaaaaaa…");
        let text = format!("{}<http://ci/runs/42|run> tail", "a".repeat(10));
        assert_eq!(cut(&text, 25), "aaaaaaaaaa…");
        let cut_block = cut(&format!("head\n```\n{}\n```", "x".repeat(100)), 50);
        assert!(cut_block.ends_with("…\n```"), "{cut_block}");
        assert_eq!(cut_block.chars().count(), 50);
        assert_eq!(cut("short", 50), "short");
    }

    #[test]
    fn a_long_plain_reply_is_cut_to_one_section() {
        let message = text_message(&"word ".repeat(1000));
        assert_eq!(message.blocks.len(), 1);
        assert!(message.text.chars().count() <= MAX_SECTION_CHARS);
        assert!(message.text.ends_with('…'));
        assert_within_limits(&message);
    }

    #[test]
    fn every_sample_result_stays_within_slacks_limits() {
        for (name, run, steps, failures) in scenarios() {
            let message = render_result(&run, &steps, &failures, LINK, 9_999);
            assert_within_limits(&message);
            assert_eq!(table_rows(&message), steps.len() + 1, "{name}: every step");
            assert!(
                !sections(&message).any(|t| t.contains("Left out")),
                "{name} leaves nothing out"
            );
            let Some(Block::Actions { elements }) = message.blocks.last() else {
                panic!("{name}: no actions block");
            };
            assert!(matches!(
                &elements[0],
                Element::Button { action_id: ACTION_RERUN, value, .. } if value == "42"
            ));
        }
    }

    #[test]
    fn five_hundred_failed_tests_with_output_leave_out_detail_and_say_so() {
        let mut steps = Vec::new();
        let mut failed = Vec::new();
        for i in 0..5 {
            steps.push(tested(i, &format!("Component {i}"), 1000, 100));
            failed.extend(
                failures(i, &"suite.".repeat(30), 100)
                    .into_iter()
                    .map(|mut f| {
                        f.name = f.name.repeat(12);
                        f.message = f.message.repeat(6);
                        f
                    }),
            );
        }
        for i in 5..10 {
            let mut s = step(i, &format!("Packaging {i}"), StepStatus::Failed, Some(2));
            s.output_tail = Some(format!("{}\n", "output line ".repeat(20)).repeat(20));
            steps.push(s);
        }
        let message = render_result(&run(RunStatus::Failed), &steps, &failed, LINK, 0);
        let chars = blocks_chars(&message.blocks);
        eprintln!(
            "500 failed tests: {chars} characters of blocks in {} blocks",
            message.blocks.len()
        );
        assert_within_limits(&message);
        assert_eq!(table_rows(&message), 11, "every step is still in the table");
        assert!(
            sections(&message).any(|t| t.starts_with("_Left out to fit in one message: ")
                && t.contains("output of failed steps")),
            "{message:#?}"
        );
        let json = serde_json::to_string(&message).unwrap();
        assert!(
            json.contains("100 (see details)"),
            "counts stay in the table"
        );
    }

    #[test]
    fn a_step_with_long_test_names_names_what_fits_and_counts_the_rest() {
        let group = render::FailureGroup {
            position: 0,
            step: "Server".into(),
            count: 40,
            tests: (0..10)
                .map(|i| render::FailedTest {
                    suite: "suite".repeat(30),
                    name: format!("test_{i}_").repeat(40),
                    message: "&".repeat(300),
                    class: None,
                    retried: false,
                })
                .collect(),
            more: 30,
            retried: 0,
            problem: None,
        };
        let text = failure_group(&group);
        assert!(text.chars().count() <= MAX_SECTION_CHARS, "{text}");
        let named = text.matches("\n• suite").count();
        assert!(named > 0 && named < 10, "{named} named");
        assert!(
            text.ends_with(&format!("\n• … and {} more", 40 - named)),
            "{text}"
        );
    }

    #[test]
    fn a_run_of_three_thousand_steps_shows_at_most_a_hundred_rows_and_counts_the_rest() {
        let steps: Vec<StepRow> = (0..3000)
            .map(|i| step(i, &format!("Step {i}"), StepStatus::Succeeded, Some(0)))
            .collect();
        let message = render_result(&run(RunStatus::Succeeded), &steps, &[], LINK, 0);
        assert_within_limits(&message);
        let rows = table_rows(&message);
        eprintln!(
            "3000 steps: {rows} table rows, {} characters of blocks",
            blocks_chars(&message.blocks)
        );
        // A header row, the steps shown, and the row counting the others.
        let shown = rows - 2;
        assert!(shown > 0 && rows <= MAX_TABLE_ROWS, "{rows} rows");
        let left_out = 3000 - shown;
        let notes: Vec<&str> = sections(&message).collect();
        assert!(
            notes.contains(
                &format!("_Left out to fit in one message: {left_out} of 3000 steps._").as_str()
            ),
            "{notes:?}"
        );
        let json = serde_json::to_string(&message).unwrap();
        assert!(
            json.contains(&format!("… and {left_out} more steps on the run page")),
            "{json}"
        );
    }

    #[test]
    fn renders_a_failed_result_as_checked_in() {
        let mut failed_run = run(RunStatus::Failed);
        failed_run.origin.user_id = "U024BE7LH".into();
        failed_run.args = "branch=feature/x & co".into();
        let mut packaging = step(2, "Packaging", StepStatus::Failed, Some(2));
        packaging.output_tail = Some(
            "==> packaging build #42\nerror: signing key <release> not found\nsee ```docs```"
                .into(),
        );
        let steps = [
            tested(0, "Server", 948, 0),
            tested(1, "Web Client", 123, 2),
            packaging,
        ];
        let message = render_result(&failed_run, &steps, &failures(1, "web.api", 2), LINK, 9_999);
        assert_within_limits(&message);
        assert_matches_fixture(
            &serde_json::to_string_pretty(&message).unwrap(),
            "result-failed.json",
        );
    }
}
