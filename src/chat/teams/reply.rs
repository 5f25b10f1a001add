//! Text replies in the webhook's HTTP response: the acknowledgement, refusals, the list of
//! jobs.

use super::*;

#[derive(Serialize)]
pub(super) struct TextReply<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// The HTTP response body: a text message, threaded by Teams under the trigger.
pub fn render_response(text: &str) -> String {
    serde_json::to_string(&TextReply {
        kind: "message",
        text,
    })
    .expect("a struct of strings serializes")
}

/// The acknowledgement of a queued run.
#[derive(Template)]
#[template(path = "chat/teams/ack.html")]
pub(super) struct AckText<'a> {
    facts: &'a AckFacts<'a>,
    /// The run's page.
    link: &'a str,
    /// The expected wait, worded.
    wait: Option<String>,
}

/// The acknowledgement text of a queued run, whose page is `link`.
pub fn render_ack(facts: &AckFacts, link: &str) -> String {
    AckText {
        facts,
        link,
        wait: facts.wait.map(render::duration),
    }
    .render()
    .expect("the ack template renders")
    .trim()
    .to_string()
}

/// Why a request runs nothing (bad arguments, a denial).
#[derive(Template)]
#[template(path = "chat/teams/refused.html")]
pub(super) struct Refusal<'a> {
    job: &'a str,
    reason: &'a str,
}

/// The reply to a request that runs nothing, saying why.
pub fn render_refusal(job: &str, reason: &str) -> String {
    Refusal { job, reason }
        .render()
        .expect("the refusal template renders")
        .trim()
        .to_string()
}

/// The list of jobs, for `help` or after an unknown job name.
#[derive(Template)]
#[template(path = "chat/teams/jobs.html")]
pub(super) struct JobsText<'a> {
    unknown: Option<&'a str>,
    suggestion: Option<&'a str>,
    jobs: Vec<(&'a str, &'a str)>,
    mention: &'a str,
}

/// The list of jobs, for `help` or after an unknown job name; `mention` is how the user
/// addressed the webhook.
pub fn render_jobs<'a>(
    unknown: Option<&str>,
    suggestion: Option<&str>,
    jobs: impl Iterator<Item = (&'a str, &'a str)>,
    mention: &str,
) -> String {
    JobsText {
        unknown,
        suggestion,
        jobs: jobs.collect(),
        mention,
    }
    .render()
    .expect("the jobs template renders")
    .trim()
    .to_string()
}
