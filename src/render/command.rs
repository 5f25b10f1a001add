//! Replies to the chat commands `status`, `queue`, `help <job>` and `cancel`, for both
//! platforms: the same words, escaped and broken into lines as each platform needs
//! ([`Flavor`]). Pure.

use askama::filters::Escaper;

use super::{Markdown, duration, run_duration, step_result};
use crate::catalog::JobDef;
use crate::domain::{RunRow, RunStatus, StepRow, StepStatus};

/// How a platform's message text is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Mattermost: Markdown, backslash escapes, `\n` lines.
    Markdown,
    /// Teams text messages: Markdown with HTML entities, `<br>` lines.
    Teams,
    /// Slack's mrkdwn: `*bold*`, `&`, `<` and `>` as entities, `\n` lines.
    Slack,
}

impl Flavor {
    /// `text` as literal text.
    pub fn escape(self, text: &str) -> String {
        match self {
            Self::Markdown => {
                let mut out = String::new();
                let _ = Markdown.write_escaped_str(&mut out, text);
                out
            }
            // Slack's mrkdwn reads `&`, `<` and `>` as markup (`<!channel>`, links): entities,
            // as for Teams.
            Self::Teams | Self::Slack => crate::domain::text::escape_text(text),
        }
    }

    /// `text`, already written for the platform, in bold.
    pub fn bold(self, text: &str) -> String {
        match self {
            Self::Markdown | Self::Teams => format!("**{text}**"),
            Self::Slack => format!("*{text}*"),
        }
    }

    /// A run status's emoji as the platform writes emoji: shortcodes on Mattermost, as in its
    /// other replies; the character on Teams.
    pub fn emoji(self, status: RunStatus) -> &'static str {
        match self {
            Self::Markdown | Self::Slack => super::run_emoji(status),
            Self::Teams => super::run_symbol(status),
        }
    }

    /// Joins lines.
    pub fn lines(self, lines: &[String]) -> String {
        match self {
            Self::Markdown | Self::Slack => lines.join("\n"),
            Self::Teams => lines.join("<br>\n"),
        }
    }
}

/// `**#42** of **build** (branch=main)`
fn run_name(f: Flavor, run: &RunRow) -> String {
    let mut name = format!(
        "{} of {}",
        f.bold(&format!("#{}", run.run_id)),
        f.bold(&f.escape(&run.job))
    );
    if !run.args.is_empty() {
        name.push_str(&format!(" ({})", f.escape(&run.args)));
    }
    name
}

/// `status <run>`: where the run is; `position` is its place in the queue when queued.
pub fn status(
    f: Flavor,
    run: &RunRow,
    steps: &[StepRow],
    position: Option<usize>,
    link: &str,
    now: i64,
) -> String {
    let emoji = f.emoji(run.status);
    let name = run_name(f, run);
    let who = f.escape(&run.origin.user_name);
    let state = match run.status {
        RunStatus::Queued => format!(
            "queued{}",
            position.map_or_else(String::new, |p| format!(", position {p}"))
        ),
        RunStatus::Running => {
            let current = steps.iter().find(|s| s.status == StepStatus::Running);
            let elapsed = run_duration(run, now).map_or_else(String::new, duration);
            match current {
                Some(step) => format!(
                    "running step {}/{} ({}), {elapsed} so far",
                    step.position + 1,
                    steps.len(),
                    f.escape(&step.name)
                ),
                None => format!("running, {elapsed} so far"),
            }
        }
        status => {
            let took =
                run_duration(run, now).map_or_else(String::new, |d| format!(" in {}", duration(d)));
            let failed: Vec<String> = steps
                .iter()
                .filter(|s| {
                    matches!(
                        s.status,
                        StepStatus::Failed
                            | StepStatus::TimedOut
                            | StepStatus::Error
                            | StepStatus::Interrupted
                    )
                })
                .map(|s| format!("{}: {}", f.escape(&s.name), step_result(s)))
                .collect();
            let mut text = format!("{}{took}", status.as_str());
            if !failed.is_empty() {
                text.push_str(&format!(" ({})", failed.join("; ")));
            }
            if let Some(error) = &run.error {
                text.push_str(&format!(": {}", f.escape(error)));
            }
            text
        }
    };
    format!("{emoji} Run {name}, asked by {who}: {state}. Details: {link}")
}

/// `queue`: what runs and waits in this channel, with queue positions.
pub fn queue(
    f: Flavor,
    running: &[&RunRow],
    queued: &[(usize, &RunRow)],
    base: &str,
    now: i64,
) -> String {
    if running.is_empty() && queued.is_empty() {
        return "Nothing is running or queued in this channel.".into();
    }
    let mut lines = Vec::new();
    if !running.is_empty() {
        lines.push(f.bold("Running here:"));
        for run in running {
            let elapsed =
                run_duration(run, now).map_or_else(String::new, |d| format!(", {}", duration(d)));
            lines.push(format!(
                "• {}, asked by {}{elapsed}: {base}/runs/{}",
                run_name(f, run),
                f.escape(&run.origin.user_name),
                run.run_id
            ));
        }
    }
    if !queued.is_empty() {
        lines.push(f.bold("Queued here:"));
        for (position, run) in queued {
            lines.push(format!(
                "• {position}. {}, asked by {}",
                run_name(f, run),
                f.escape(&run.origin.user_name)
            ));
        }
    }
    f.lines(&lines)
}

/// `help <job>`: what the job does and takes; `usage` is how to start it (`#build`,
/// `@BuildBot build`).
pub fn help_job(f: Flavor, job: &JobDef, usage: &str) -> String {
    let mut lines = vec![format!(
        "{}{}",
        f.bold(&f.escape(&job.name)),
        if job.description.is_empty() {
            String::new()
        } else {
            format!(": {}", f.escape(&job.description))
        }
    )];
    if job.params.is_empty() {
        lines.push("It takes no arguments.".into());
    } else {
        lines.push("Parameters:".into());
        let mut positional: Vec<_> = job
            .params
            .iter()
            .filter(|p| p.positional.is_some())
            .collect();
        positional.sort_by_key(|p| p.positional);
        for p in &job.params {
            let mut notes = Vec::new();
            if let Some(n) = p.positional {
                notes.push(format!("position {n}"));
            }
            notes.push(match &p.default {
                Some(d) if d.is_empty() => "default empty".to_string(),
                Some(d) => format!("default {}", f.escape(d)),
                None => "required".into(),
            });
            let mut line = format!("• {} ({})", f.bold(&f.escape(&p.name)), notes.join(", "));
            if !p.description.is_empty() {
                line.push_str(&format!(": {}", f.escape(&p.description)));
            }
            // A described parameter that takes any value of its pattern needs no regex shown;
            // the refusal of a bad value still shows it.
            if p.description.is_empty() || !p.choices.is_empty() {
                line.push_str(&format!("; {}", f.escape(&p.allowed)));
            }
            lines.push(line);
        }
        let example_positional: Vec<String> = positional
            .iter()
            .map(|p| {
                f.escape(
                    p.default
                        .as_deref()
                        .filter(|d| !d.is_empty())
                        .unwrap_or(&p.name),
                )
            })
            .collect();
        if let Some(first) = job.params.first() {
            let named = f.bold(&format!("{} {}=…", f.escape(usage), f.escape(&first.name)));
            lines.push(if example_positional.is_empty() {
                format!("Usage: {named}")
            } else {
                format!(
                    "Usage: {} or {named}",
                    f.bold(&format!(
                        "{} {}",
                        f.escape(usage),
                        example_positional.join(" ")
                    ))
                )
            });
        }
    }
    f.lines(&lines)
}

/// A job's status change, for its `notify` channels: `❌ build (branch=main) broke: run #42
/// failed after #41 succeeded. Details: …`, `✅ … is back to green: run #42 succeeded after 3
/// failed runs, since #38. …`.
pub fn status_change(
    f: Flavor,
    run: &RunRow,
    change: crate::domain::StatusChange,
    link: &str,
) -> String {
    let mut job = f.bold(&f.escape(&run.job));
    if !run.args.is_empty() {
        job.push_str(&format!(" ({})", f.escape(&run.args)));
    }
    let what = match change {
        crate::domain::StatusChange::Broke { after } => format!(
            "{job} broke: run #{} failed after #{after} succeeded",
            run.run_id
        ),
        crate::domain::StatusChange::Fixed(green) => format!(
            "{job} is back to green: run #{} succeeded after {}",
            run.run_id,
            green.failed_runs_words()
        ),
    };
    format!("{} {what}. Details: {link}", f.emoji(run.status))
}

/// What `cancel` did.
pub fn cancelled(f: Flavor, run: &RunRow, was_running: bool) -> String {
    if was_running {
        format!(
            "⏹️ Cancelling run {}: its processes are being stopped; the result will say who cancelled it.",
            run_name(f, run)
        )
    } else {
        format!("⏹️ Cancelled run {} before it started.", run_name(f, run))
    }
}

/// A command that could not be done: `text` is already written for the platform.
pub fn notice(text: &str) -> String {
    format!("⚠️ {text}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_gives_a_described_parameters_description_not_its_pattern() {
        let job = crate::catalog::parse_job(
            "build",
            "[params.branch]\ndescription = \"the branch to build\"\ndefault = \"main\"\n\
             pattern = \"[a-z/]{1,20}\"\npositional = 1\n[params.env]\nchoices = [\"dev\", \"prod\"]\n\
             default = \"dev\"\n[[steps]]\nname = \"x\"\nrun = [\"true\"]\n",
            std::path::Path::new("/tmp"),
        )
        .unwrap();
        let text = super::help_job(super::Flavor::Markdown, &job, "#build");
        assert!(
            text.contains("• **branch** (position 1, default main): the branch to build\n"),
            "{text}"
        );
        assert!(
            !text.contains("{1,20}"),
            "no regex for a described parameter: {text}"
        );
        assert!(
            text.contains("one of dev, prod"),
            "choices are still listed: {text}"
        );
    }

    use super::*;
    use crate::render::samples;

    #[test]
    fn status_says_where_a_run_is() {
        let mut run = samples::run(RunStatus::Running);
        run.finished_at = None;
        run.args = "branch=main".into();
        let steps = vec![
            samples::step(0, "Server", StepStatus::Succeeded, Some(0)),
            StepRow {
                finished_at: None,
                ..samples::step(1, "Web | Client", StepStatus::Running, None)
            },
        ];
        assert_eq!(
            status(
                Flavor::Markdown,
                &run,
                &steps,
                None,
                "http://ci/runs/42",
                66_000
            ),
            // Mattermost's replies write emoji as shortcodes, all of them.
            ":gear: Run **#42** of **build** (branch=main), asked by alice: running step 2/2 (Web \\| Client), 1m 05s so far. Details: http://ci/runs/42"
        );
        let failed = samples::run(RunStatus::Failed);
        let steps = vec![samples::step(0, "Server", StepStatus::Failed, Some(2))];
        assert_eq!(
            status(Flavor::Teams, &failed, &steps, None, "L", 0),
            "❌ Run **#42** of **build**, asked by alice: failed in 3.5s (Server: failed (exit 2)). Details: L"
        );
        let queued = samples::run(RunStatus::Queued);
        assert!(
            status(Flavor::Teams, &queued, &[], Some(3), "L", 0).contains("queued, position 3")
        );
    }

    #[test]
    fn queue_lists_running_and_queued_runs_with_positions() {
        let mut running = samples::run(RunStatus::Running);
        running.finished_at = None;
        let mut queued = samples::run(RunStatus::Queued);
        queued.origin.user_name = "<bob>".into();
        let text = queue(
            Flavor::Teams,
            &[&running],
            &[(2, &queued)],
            "http://ci",
            66_000,
        );
        assert_eq!(
            text,
            "**Running here:**<br>\n• **#42** of **build**, asked by alice, 1m 05s: http://ci/runs/42<br>\n**Queued here:**<br>\n• 2. **#42** of **build**, asked by &lt;bob&gt;"
        );
        assert_eq!(
            queue(Flavor::Markdown, &[], &[], "x", 0),
            "Nothing is running or queued in this channel."
        );
    }
}
