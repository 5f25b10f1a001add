//! The wording of replies: the acknowledgement, refusals, the list of jobs and the result
//! table.

use super::*;

/// The acknowledgement text of a queued run, whose page is `link`.
pub fn render_ack(facts: &AckFacts, link: &str) -> String {
    let mention = render::mention(facts.user);
    AckMessage {
        facts,
        link,
        mention: &mention,
        wait: facts.wait.map(render::duration),
    }
    .render()
    .expect("the ack template renders")
    .trim()
    .to_string()
}

/// Why a request runs nothing (bad arguments, a denial).
#[derive(Template)]
#[template(path = "chat/refused.md")]
pub(super) struct Refusal<'a> {
    job: &'a str,
    reason: &'a str,
}

/// The reply to a request that runs nothing, saying why.
pub fn render_refusal(job: &str, reason: &str) -> String {
    let reason = &render::markdown_keeping_code(reason);
    Refusal { job, reason }
        .render()
        .expect("the refusal template renders")
        .trim()
        .to_string()
}

/// The list of jobs, for `help` or after an unknown job name (and the closest name).
pub fn render_jobs<'a>(
    unknown: Option<&str>,
    suggestion: Option<&str>,
    jobs: impl Iterator<Item = (&'a str, &'a str)>,
    trigger_word: &str,
) -> String {
    let jobs: Vec<_> = jobs.collect();
    let example = jobs
        .first()
        .map(|(name, _)| usage(trigger_word, name))
        .unwrap_or_default();
    let text = JobsMessage {
        unknown,
        suggestion,
        jobs,
        trigger: &example,
    }
    .render()
    .expect("the jobs template renders");
    truncate_runes(text.trim(), MAX_RUNES)
}

/// How a user starts `job` with the webhook whose trigger word is `trigger_word`: `#build` when
/// the word is the job's own, `#ci build` after a generic word, the job alone in a channel
/// webhook without one. A word that is itself a command (`#help`) is no generic word: the
/// example is the job's own word (`#build`), never `#help build`.
pub fn usage(trigger_word: &str, job: &str) -> String {
    let word = trigger_word.trim();
    let bare = word.trim_start_matches(['#', '!', '/', '@']);
    if word.is_empty() {
        job.to_string()
    } else if bare == job {
        word.to_string()
    } else if crate::domain::BUILT_INS.contains(&bare) {
        format!("{}{job}", &word[..word.len() - bare.len()])
    } else {
        format!("{word} {job}")
    }
}

/// The result message of a finished run: the table (with test counts when steps name test
/// reports), the failed tests, the output of failed steps without reports, the link. Fitted
/// under [`MAX_RUNES`] by leaving out detail (see [`render::Detail`]) and saying so; never a cut table.
pub fn render_result(
    run: &RunRow,
    steps: &[StepRow],
    failures: &[TestFailureRow],
    link: &str,
    now: i64,
) -> String {
    let mention = render::mention(&run.origin.user_name);
    let error = run.error.as_deref().map(|e| truncate_runes(e, 500));
    let text = ResultView::fitted(
        steps,
        failures,
        now,
        |view| {
            ResultMessage {
                emoji: render::run_emoji(run.status),
                job: &run.job,
                run_id: run.run_id.0,
                status: run.status.as_str(),
                duration: render::run_duration(run, now)
                    .map_or_else(|| "0.0s".into(), render::duration),
                mention: &mention,
                failed_cells: view.rows.iter().map(|row| failed_cell(row, link)).collect(),
                view,
                error: error.as_deref(),
                link,
                back_to_green: run.back_to_green.map(|green| green.words()),
            }
            .render()
            .expect("the result template renders")
            .trim()
            .to_string()
        },
        |text| text.chars().count() <= MAX_RUNES,
    );
    truncate_runes(&text, MAX_RUNES)
}

/// The "Tests Failed" cell: counts with a link to the step, or the step's result when it has
/// no test report. Only numbers, emoji and our own words: no user text.
pub(super) fn failed_cell(row: &ResultRow, link: &str) -> String {
    match (row.tests_failed, &row.report_problem) {
        (_, Some(problem)) => format!("{} {}, :warning: {problem}", row.emoji, row.result),
        (Some(0), None) if row.status == StepStatus::Succeeded => ":white_check_mark: 0".into(),
        (Some(0), None) => format!("{} 0, {}", row.emoji, row.result),
        (Some(_), None) => format!(
            ":warning: [{}]({link}#step-{})",
            row.failed_count(),
            row.position
        ),
        (None, None) => format!("{} {}", row.emoji, row.result),
    }
}
