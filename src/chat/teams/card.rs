//! The result as an Adaptive Card, posted to a Workflows URL: typed values serialized by
//! serde, fitted under Teams' message size.

use super::*;

// --- Adaptive Card 1.4, as typed values -------------------------------------------------------

/// `{"type":"message","attachments":[…]}`: what a Workflows webhook takes.
#[derive(Debug, Serialize)]
pub struct Message {
    #[serde(rename = "type")]
    kind: &'static str,
    attachments: Vec<Attachment>,
}

impl Message {
    /// The card's one-line summary (its fallback text), as a notification shows it.
    pub fn summary(&self) -> &str {
        self.attachments
            .first()
            .map_or("", |a| a.content.fallback_text.as_str())
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Attachment {
    content_type: &'static str,
    content_url: Option<String>,
    content: Card,
}

/// An Adaptive Card.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    #[serde(rename = "$schema")]
    schema: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
    fallback_text: String,
    body: Vec<Element>,
    actions: Vec<Action>,
}

/// A card body element.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub(super) enum Element {
    TextBlock(TextBlock),
    FactSet { facts: Vec<Fact> },
    ColumnSet(ColumnSet),
    Container(Container),
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TextBlock {
    text: String,
    wrap: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    color: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_subtle: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    horizontal_alignment: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spacing: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    separator: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    font_type: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub(super) struct Fact {
    title: String,
    value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ColumnSet {
    columns: Vec<Column>,
    #[serde(skip_serializing_if = "Option::is_none")]
    separator: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spacing: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub(super) struct Column {
    #[serde(rename = "type")]
    kind: &'static str,
    width: u32,
    items: Vec<Element>,
}

#[derive(Debug, Serialize)]
pub(super) struct Container {
    style: &'static str,
    bleed: bool,
    items: Vec<Element>,
}

#[derive(Debug, Serialize)]
pub(super) struct Action {
    #[serde(rename = "type")]
    kind: &'static str,
    title: String,
    url: String,
}

pub(super) fn text(text: impl Into<String>) -> TextBlock {
    TextBlock {
        text: text.into(),
        wrap: true,
        ..TextBlock::default()
    }
}

/// Card colour and container style for a run's status.
pub(super) fn run_colour(status: RunStatus) -> (&'static str, &'static str) {
    match status {
        RunStatus::Succeeded => ("Good", "good"),
        RunStatus::Failed => ("Attention", "attention"),
        RunStatus::TimedOut | RunStatus::Cancelled | RunStatus::Denied | RunStatus::Interrupted => {
            ("Warning", "warning")
        }
        RunStatus::Queued | RunStatus::Running => ("Default", "emphasis"),
    }
}

pub(super) fn step_colour(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Succeeded => "Good",
        StepStatus::Failed | StepStatus::Error => "Attention",
        StepStatus::TimedOut | StepStatus::Cancelled | StepStatus::Interrupted => "Warning",
        StepStatus::Pending | StepStatus::Running | StepStatus::Skipped => "Default",
    }
}

/// A cell value: one line, at most `max` characters.
pub(super) fn cell(value: &str, max: usize) -> String {
    let one_line = value.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::domain::text::truncate_runes(&one_line, max)
}

/// A user value for card text, which is Markdown of a small kind (bold, italic, links,
/// lists): only what it would read as markup is escaped (`*`, `[`, `]`, a `_` at a word's edge,
/// a leading list marker). Escapes it does not need (`\\#`, `\\_` inside a word) show as
/// backslashes on Teams mobile (microsoft/AdaptiveCards#5590).
pub(super) fn md(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len() + 4);
    // A value that would start a list (`- x`, `1. x`) stays text: a zero-width space first.
    let digits = chars.iter().take_while(|c| c.is_ascii_digit()).count();
    let list = matches!(chars.as_slice(), ['-' | '+', ' ', ..])
        || (digits > 0 && chars.get(digits) == Some(&'.') && chars.get(digits + 1) == Some(&' '));
    if list {
        out.push('\u{200B}');
    }
    for (i, &c) in chars.iter().enumerate() {
        let word = |at: Option<usize>| {
            at.and_then(|j| chars.get(j))
                .is_some_and(|c| c.is_alphanumeric())
        };
        let escape = match c {
            '*' | '[' | ']' => true,
            // Inside a word (`web_client`) `_` marks nothing.
            '_' => !(word(i.checked_sub(1)) && word(Some(i + 1))),
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(super) fn column(width: u32, block: TextBlock) -> Column {
    Column {
        kind: "Column",
        width,
        items: vec![Element::TextBlock(block)],
    }
}

/// One table row: step, (tests run, tests failed,) result or count, duration.
pub(super) fn step_row(row: &ResultRow, with_tests: bool, link: &str) -> Element {
    let name = column(3, text(md(&cell(&row.name, 120))));
    let result = TextBlock {
        color: Some(step_colour(row.status)),
        is_subtle: (row.status == StepStatus::Skipped).then_some(true),
        ..text(cell(&row.result, 120))
    };
    let duration = column(
        1,
        TextBlock {
            horizontal_alignment: Some("Right"),
            ..text(row.duration.clone())
        },
    );
    let columns = if with_tests {
        let run = TextBlock {
            horizontal_alignment: Some("Right"),
            ..text(row.tests_run.map_or_else(|| "—".into(), |n| n.to_string()))
        };
        let failed = match (row.tests_failed, &row.report_problem) {
            (_, Some(problem)) => TextBlock {
                color: Some("Warning"),
                ..text(format!("{}, ⚠ {problem}", row.result))
            },
            (Some(0), None) if row.status == StepStatus::Succeeded => TextBlock {
                color: Some("Good"),
                ..text("0")
            },
            (Some(0), None) => TextBlock {
                color: Some(step_colour(row.status)),
                ..text(format!("0, {}", row.result))
            },
            (Some(failed), None) => TextBlock {
                color: Some("Attention"),
                ..text(match row.new_failures {
                    Some(_) => format!("[{}]({link}#step-{})", row.failed_count(), row.position),
                    None => format!("[{failed} failed]({link}#step-{})", row.position),
                })
            },
            (None, None) => result,
        };
        vec![name, column(1, run), column(2, failed), duration]
    } else {
        vec![name, column(2, result), duration]
    };
    Element::ColumnSet(ColumnSet {
        columns,
        separator: None,
        spacing: Some("Small"),
    })
}

/// The result card of a finished run, as the Workflows message: the same information as the
/// Mattermost reply, fitted under [`MAX_MESSAGE_BYTES`] by leaving out detail (see [`render::Detail`]).
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
        |message| {
            serde_json::to_vec(message).map_or(usize::MAX, |v| v.len()) <= MAX_MESSAGE_BYTES - 1024
        },
    )
}

pub(super) fn result_message(run: &RunRow, view: &ResultView, link: &str, now: i64) -> Message {
    let (colour, style) = run_colour(run.status);
    let duration = render::run_duration(run, now).map_or_else(|| "—".into(), render::duration);
    let title = format!(
        "{} run #{} {}",
        cell(&run.job, 64),
        run.run_id,
        run.status.as_str()
    );
    let user = cell(&run.origin.user_name, 100);

    // What the title and the line under it do not say already.
    let mut facts = Vec::new();
    if let Some(green) = run.back_to_green {
        facts.push(Fact {
            title: "History".into(),
            value: format!("🎉 {}", green.words()),
        });
    }
    if !run.args.is_empty() {
        facts.push(Fact {
            title: "Arguments".into(),
            value: md(&cell(&run.args, 300)),
        });
    }
    if let Some(error) = &run.error {
        facts.push(Fact {
            title: "Error".into(),
            value: md(&cell(error, 500)),
        });
    }

    let header = |label: &str, align: Option<&'static str>| TextBlock {
        weight: Some("Bolder"),
        horizontal_alignment: align,
        ..text(label)
    };
    let headers = if view.with_tests {
        vec![
            column(3, header("Component", None)),
            column(1, header("Tests", Some("Right"))),
            column(2, header("Failed", None)),
            column(1, header("Duration", Some("Right"))),
        ]
    } else {
        vec![
            column(3, header("Step", None)),
            column(2, header("Result", None)),
            column(1, header("Duration", Some("Right"))),
        ]
    };
    let mut body = vec![
        Element::Container(Container {
            style,
            bleed: true,
            items: vec![
                Element::TextBlock(TextBlock {
                    size: Some("Large"),
                    weight: Some("Bolder"),
                    color: Some(colour),
                    ..text(md(&title))
                }),
                Element::TextBlock(TextBlock {
                    is_subtle: Some(true),
                    spacing: Some("None"),
                    ..text(format!("asked by {} · {duration}", md(&user)))
                }),
            ],
        }),
        Element::ColumnSet(ColumnSet {
            columns: headers,
            separator: Some(true),
            spacing: Some("Medium"),
        }),
    ];
    if !facts.is_empty() {
        body.insert(1, Element::FactSet { facts });
    }
    body.extend(view.rows.iter().map(|r| step_row(r, view.with_tests, link)));
    if view.omitted_rows > 0 {
        body.push(Element::TextBlock(TextBlock {
            is_subtle: Some(true),
            ..text(format!(
                "… and {} more steps on the run page",
                view.omitted_rows
            ))
        }));
    }
    for group in &view.groups {
        let heading = match &group.problem {
            Some(problem) => TextBlock {
                color: Some("Warning"),
                separator: Some(true),
                ..text(format!(
                    "⚠ **{}**: {}",
                    md(&group.step),
                    md(&cell(problem, 300))
                ))
            },
            None => TextBlock {
                separator: Some(true),
                ..text(format!("**{}**: {}", md(&group.step), group.counts()))
            },
        };
        body.push(Element::TextBlock(heading));
        let mut lines: Vec<String> = group
            .tests
            .iter()
            .map(|test| {
                let mut line = format!(
                    "- {} › **{}**{}",
                    md(&cell(&test.suite, 120)),
                    md(&cell(&test.name, 200)),
                    md(&test.tag())
                );
                if !test.message.is_empty() {
                    line.push_str(&format!(": {}", md(&cell(&test.message, 200))));
                }
                line
            })
            .collect();
        if group.more > 0 {
            lines.push(format!("- … and {} more", group.more));
        }
        if !lines.is_empty() {
            body.push(Element::TextBlock(TextBlock {
                spacing: Some("Small"),
                ..text(lines.join("\n"))
            }));
        }
    }
    for tail in &view.tails {
        body.push(Element::TextBlock(TextBlock {
            separator: Some(true),
            ..text(format!("**{}**: {}", md(&tail.step), tail.heading()))
        }));
        body.push(Element::TextBlock(TextBlock {
            font_type: Some("Monospace"),
            size: Some("Small"),
            spacing: Some("Small"),
            ..text(
                tail.text
                    .lines()
                    .map(|line| md(&cell(line, 300)))
                    .collect::<Vec<_>>()
                    .join("\n\n"),
            )
        }));
    }
    if !view.left_out.is_empty() {
        body.push(Element::TextBlock(TextBlock {
            is_subtle: Some(true),
            ..text(format!(
                "Left out to fit in one message: {}.",
                view.left_out.join(", ")
            ))
        }));
    }

    // Workflows cards open URLs only: Run again and Cancel are the run page's buttons (for a
    // signed-in user).
    card_message(
        format!("{title} in {duration}, asked by {user}: {link}"),
        body,
        vec![
            open_url(format!("Open run #{}", run.run_id), link.to_string()),
            open_url("Run again…".into(), format!("{link}#actions")),
        ],
    )
}

/// A card holding one line of Markdown, `text` (a job's status change), with a button to the
/// run's page `link`.
pub fn render_notice(text: &str, link: &str) -> Message {
    card_message(
        text.to_string(),
        vec![Element::TextBlock(super::card::text(text))],
        vec![open_url("Open run".into(), link.to_string())],
    )
}

/// A Workflows message of one card: its fallback text, body and buttons.
fn card_message(fallback_text: String, body: Vec<Element>, actions: Vec<Action>) -> Message {
    Message {
        kind: "message",
        attachments: vec![Attachment {
            content_type: "application/vnd.microsoft.card.adaptive",
            content_url: None,
            content: Card {
                schema: "http://adaptivecards.io/schemas/adaptive-card.json",
                kind: "AdaptiveCard",
                version: CARD_VERSION,
                fallback_text,
                body,
                actions,
            },
        }],
    }
}

/// A button that opens `url` (the only kind Workflows cards take).
fn open_url(title: String, url: String) -> Action {
    Action {
        kind: "Action.OpenUrl",
        title,
        url,
    }
}

/// The delivery of a run's result card to webhook `hook`'s Workflows URL, ordered with the
/// other replies to the trigger's conversation (its channel and thread root, as Teams writes
/// `conversation.id`) through that webhook.
pub fn render_follow_up(
    hook: &str,
    run: &RunRow,
    steps: &[StepRow],
    failures: &[TestFailureRow],
    link: &str,
    now: i64,
) -> Delivery {
    let Address { target, thread } = follow_up_address(hook, run);
    Delivery {
        target,
        body: serde_json::to_string(&render_result(run, steps, failures, link, now))
            .expect("a card of strings and numbers serializes"),
        thread,
    }
}

/// Where run `run`'s result card goes: through webhook `hook`, ordered within the trigger's
/// conversation.
pub fn follow_up_address(hook: &str, run: &RunRow) -> Address {
    let target = format!("{TARGET_PREFIX}{hook}");
    // A card at the top of the channel is ordered with nothing, as a top-level post.
    let thread = run
        .thread_root_id
        .as_ref()
        .map_or_else(String::new, |root| {
            format!("{target}|{};messageid={root}", run.origin.channel_id)
        });
    Address { target, thread }
}
