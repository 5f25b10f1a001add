//! The history pages: `GET /` (runs, newest first, keyset paging), `GET /runs/{id}` (one run:
//! trigger, steps, output) and `GET /runs/{id}/log` (the whole log, streamed).
//!
//! Every value is HTML-escaped by askama; ANSI escape codes are stripped from output. The page
//! of an unfinished run follows its log through Server-Sent Events (a few lines of plain
//! JavaScript) and reloads when the run ends.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::api::FilterQuery;
use super::{AppState, Error};
use crate::domain::{RunId, RunRow, RunStatus, TestFailureRow};
use crate::logs::{TAIL_BYTES, marker};
use crate::render;
use crate::store::now_ms;

/// Runs per page.
pub const PAGE_SIZE: i64 = 50;

/// The history routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/log", get(run_log))
        .route("/runs/{id}/log/stream", get(log_stream))
        .route("/jobs", get(jobs_page))
        .route("/jobs/{name}", get(job_page))
        .route("/jobs/{name}/tests", get(test_page))
        .route("/runs/{id}/cancel", axum::routing::post(cancel_run))
        .route("/runs/{id}/rerun", axum::routing::post(rerun_run))
}

struct RunItem {
    id: i64,
    job: String,
    /// What followed the job's name (`feature/x`), so runs of one job tell apart.
    args: String,
    /// Where it was asked for: Mattermost, Teams or web.
    platform: &'static str,
    status: &'static str,
    status_class: String,
    user: String,
    channel: String,
    /// When it was asked for, relative (`4 min ago`), and exactly (for the hover).
    when: String,
    when_exact: String,
    duration: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "web/runs.html")]
struct RunsPage {
    runs: Vec<RunItem>,
    queued: i64,
    running: i64,
    first_page: bool,
    /// The query string of the next (older) page, filters kept.
    next_page: Option<String>,
    /// The query string of the first page with the same filters.
    first_page_query: String,
    /// The filter form's values.
    form: FilterQuery,
    statuses: [&'static str; RunStatus::ALL.len()],
    /// What runs now and what waits, in queue order (position, run).
    active_running: Vec<RunItem>,
    active_queued: Vec<(usize, RunItem)>,
}

async fn runs_page(
    State(state): State<AppState>,
    Query(query): Query<FilterQuery>,
) -> Result<RunsPage, Error> {
    let (filter, _, cursor) = query.parse()?;
    let rows = state
        .store
        .search_runs(&filter, cursor, PAGE_SIZE + 1)
        .await?;
    let (queued, running) = state.store.counts().await?;
    let active = state.store.active_runs().await?;
    let now_active = now_ms();
    let active_running: Vec<RunItem> = active
        .iter()
        .filter(|r| r.status == crate::domain::RunStatus::Running)
        .map(|r| run_item(r, now_active))
        .collect();
    let active_queued: Vec<(usize, RunItem)> = active
        .iter()
        .filter(|r| r.status == crate::domain::RunStatus::Queued)
        .enumerate()
        .map(|(i, r)| (i + 1, run_item(r, now_active)))
        .collect();
    let more = rows.len() > usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX);
    let now = now_ms();
    let runs: Vec<RunItem> = rows
        .iter()
        .take(usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX))
        .map(|run| run_item(run, now))
        .collect();
    let with_cursor = |cursor: Option<i64>| {
        let pairs: Vec<(&str, String)> = [
            ("job", &query.job),
            ("status", &query.status),
            ("user", &query.user),
            ("channel", &query.channel),
            ("platform", &query.platform),
            ("since", &query.since),
            ("until", &query.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().filter(|v| !v.is_empty()).map(|v| (k, v)))
        .chain(cursor.map(|c| ("cursor", c.to_string())))
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    };
    Ok(RunsPage {
        next_page: if more {
            runs.last().map(|r| with_cursor(Some(r.id)))
        } else {
            None
        },
        first_page_query: with_cursor(None),
        runs,
        queued,
        running,
        first_page: cursor.is_none(),
        form: query,
        active_running,
        active_queued,
        statuses: RunStatus::ALL.map(RunStatus::token),
    })
}

struct StepItem {
    position: i64,
    name: String,
    result: String,
    status_class: String,
    duration: String,
    detail: String,
    /// `948 run · 2 failed · 3 skipped`, when the step has a report.
    tests: String,
    report_error: String,
    failures: Vec<TestFailureRow>,
    output_tail: String,
}

struct ReplyItem {
    target: String,
    /// `delivered`, `pending` or `not delivered`.
    status: String,
    status_class: &'static str,
    attempts: i64,
    /// In words: when it was delivered, or why not (yet) and what happens next.
    detail: String,
    /// What it says, as HTML (rendered from the chat's Markdown).
    text_html: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "web/run.html")]
struct RunPage {
    run: RunRow,
    status_class: String,
    finished: bool,
    created: String,
    started: String,
    finished_at: String,
    duration: String,
    steps: Vec<StepItem>,
    omitted: i64,
    /// Where the live stream starts: the end of the output shown.
    log_bytes: i64,
    /// How much the run printed (`1.0 GiB`), and how much of it its log file keeps.
    printed: String,
    kept: String,
    /// Whether the log file kept less than the run printed.
    capped: bool,
    /// For a run that has printed more than the log keeps: what the log will keep.
    live_note: String,
    /// A finished run's output, numbered: `(line number, text)`; the tail's numbers count
    /// from the end of the whole log, so `#L1234` names the same line whatever is shown.
    head_lines: Vec<(i64, String)>,
    tail_lines: Vec<(i64, String)>,
    /// An unfinished run's tail, numbered, which the live stream continues.
    live_lines: Vec<(i64, String)>,
    /// Where the part between head and tail starts, for "load it".
    gap_offset: usize,
    has_log_file: bool,
    replies: Vec<ReplyItem>,
    /// The result reply as HTML, as its platform shows it, when there is one.
    result_html: String,
    /// A queued run whose job runs on build agents, none of which that could take it is
    /// connected: the labels it waits for (empty: any agent).
    waiting_for_agent: Option<String>,
    /// The signed-in user, who may cancel and rerun.
    user: Option<String>,
    /// The cross-site token of the forms.
    form_token: String,
    /// Whether signing in is possible (to offer it).
    can_sign_in: bool,
    /// Whether a step has a detail to show (else the column goes).
    any_detail: bool,
    /// The trigger's post in its chat, where the platform gives a link.
    chat_link: Option<String>,
}

/// A delivery as the run page shows it: plainly "not delivered" with the reason when it was
/// given up, and the next attempt with the last error while it is retried.
fn reply_item(delivery: crate::store::DeliveryState, result_html: &str, now: i64) -> ReplyItem {
    let text_html = if delivery.kind == "result" {
        result_html.to_string()
    } else {
        // A Mattermost post's message, or a Teams card's summary line.
        let body: serde_json::Value = serde_json::from_str(&delivery.body).unwrap_or_default();
        body["message"]
            .as_str()
            .or_else(|| body["attachments"][0]["content"]["fallbackText"].as_str())
            .map(render::markdown_html)
            .unwrap_or_default()
    };
    let target = match delivery
        .target
        .strip_prefix(crate::chat::teams::TARGET_PREFIX)
    {
        Some(hook) => format!("Teams webhook {hook}"),
        None if delivery.target == crate::chat::mattermost::TARGET_POST => "Mattermost".into(),
        None => delivery.target.clone(),
    };
    let error = delivery.last_error.unwrap_or_default();
    let (status, status_class, detail) = match delivery.status.as_str() {
        "sent" => {
            let at = delivery
                .sent_at
                .map_or_else(String::new, |at| format!("at {}", render::timestamp(at)));
            let detail = if delivery.blind {
                format!(
                    "{at}; it may show twice: an earlier attempt's answer was lost and could not \
                     be checked ({error})"
                )
            } else {
                at
            };
            ("delivered", "s-delivered", detail)
        }
        "dead" => (
            "not delivered",
            "s-failed",
            format!("not delivered: {error}"),
        ),
        _ => {
            let next = if delivery.next_attempt_at <= now {
                "now".to_string()
            } else {
                format!(
                    "in {} ({})",
                    render::duration(delivery.next_attempt_at - now),
                    render::timestamp(delivery.next_attempt_at)
                )
            };
            let detail = if error.is_empty() {
                format!("not delivered yet; next attempt {next}")
            } else {
                format!("not delivered yet: {error}; next attempt {next}")
            };
            ("pending", "s-pending", detail)
        }
    };
    ReplyItem {
        target,
        status: status.into(),
        status_class,
        attempts: delivery.attempts,
        detail,
        text_html,
    }
}

async fn run_page(
    State(state): State<AppState>,
    super::RunNumber(id): super::RunNumber,
    headers: axum::http::HeaderMap,
) -> Result<RunPage, Error> {
    let user = super::auth::signed_in(&state, &headers).await;
    let mut run = state
        .store
        .get_run(RunId(id))
        .await?
        .ok_or(Error::NotFound)?;
    let steps = state.store.steps(run.run_id).await?;
    let failed_tests = state
        .store
        .result_history(&mut run, state.config.flaky_window)
        .await?;
    // The result reply as its platform shows it, whether or not it could be posted.
    let result_reply = super::result_text(&state, &run, &steps, &failed_tests);
    let result_html = result_reply
        .as_deref()
        .map(render::markdown_html)
        .unwrap_or_default();
    let mut failures: std::collections::HashMap<i64, Vec<TestFailureRow>> =
        std::collections::HashMap::new();
    for failure in failed_tests {
        failures.entry(failure.position).or_default().push(failure);
    }
    let replies = state
        .store
        .deliveries(run.run_id)
        .await?
        .into_iter()
        .map(|delivery| reply_item(delivery, &result_html, now_ms()))
        .collect();
    let now = now_ms();
    let finished = run.status.is_finished();
    let log = state.logs.open(&run).await;

    let stored = log.stored().await;
    let stored_file = stored.is_some();
    let cap = state.logs.cap();

    // While a run goes, its output is only in the log: show the end of it, numbered, which the
    // live stream continues.
    let (live_lines, live_size) = if finished {
        (Vec::new(), 0)
    } else {
        let (tail, start, size) = log.read(None, TAIL_BYTES as u64).await;
        let text = String::from_utf8_lossy(&tail);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let first = log.count_lines(start).await + 1;
        (numbered(&lines, i64::try_from(first).unwrap_or(1)), size)
    };
    let printed = if finished {
        u64::try_from(run.log_bytes).unwrap_or(0)
    } else {
        live_size
    };
    // A finished run's log file; the gap's offsets are in it.
    let stored = stored.filter(|_| finished).unwrap_or(printed);
    // At most HEAD_LINES + TAIL_LINES lines on the page; the middle loads on demand.
    let head_kept: Vec<&str> = run
        .log_head
        .split_inclusive('\n')
        .take(HEAD_LINES)
        .collect();
    let tail_all: Vec<&str> = run.log_tail.split_inclusive('\n').collect();
    let tail_kept = &tail_all[tail_all.len().saturating_sub(TAIL_LINES)..];
    let head_bytes: usize = head_kept.iter().map(|l| l.len()).sum();
    let tail_bytes: usize = tail_kept.iter().map(|l| l.len()).sum();
    let head_lines = numbered(&head_kept, 1);
    let tail_count = i64::try_from(tail_kept.len()).unwrap_or(0);
    let tail_lines = numbered(tail_kept, (run.log_lines - tail_count + 1).max(1));
    let gap_end = usize::try_from(stored)
        .unwrap_or(0)
        .saturating_sub(tail_bytes);
    let page = RunPage {
        live_lines,
        head_lines,
        tail_lines,
        gap_offset: head_bytes,
        status_class: class(run.status.as_str()),
        finished,
        created: render::timestamp(run.created_at),
        started: run
            .started_at
            .map_or_else(|| "not yet".into(), render::timestamp),
        finished_at: run
            .finished_at
            .map_or_else(|| "not yet".into(), render::timestamp),
        duration: render::run_duration(&run, now).map_or_else(|| "—".into(), render::duration),
        steps: steps
            .iter()
            .map(|step| StepItem {
                name: step.name.clone(),
                result: render::step_result(step),
                status_class: class(step.status.as_str()),
                duration: step
                    .duration_ms(now)
                    .map_or_else(|| "—".into(), render::duration),
                detail: step.detail.clone().unwrap_or_default(),
                tests: match (step.tests_run, step.tests_failed, step.tests_skipped) {
                    (Some(run), failed, skipped) => format!(
                        "{run} run · {} failed · {} skipped",
                        failed.unwrap_or(0),
                        skipped.unwrap_or(0)
                    ),
                    _ => String::new(),
                },
                report_error: step.report_error.clone().unwrap_or_default(),
                failures: failures.remove(&step.position).unwrap_or_default(),
                output_tail: step.output_tail.clone().unwrap_or_default(),
                position: step.position,
            })
            .collect(),
        omitted: i64::try_from(gap_end.saturating_sub(head_bytes)).unwrap_or(0),
        log_bytes: i64::try_from(printed).unwrap_or(i64::MAX),
        printed: render::bytes(printed),
        kept: render::bytes(stored),
        capped: finished && stored < printed,
        live_note: if !finished && printed > cap.max {
            format!(
                "The output has passed {}: the log will keep its first {} and its last {}.",
                render::bytes(cap.max),
                render::bytes(cap.head),
                render::bytes(cap.tail)
            )
        } else {
            String::new()
        },
        has_log_file: stored_file,
        replies,
        result_html,
        waiting_for_agent: match state.catalog.get(&run.job) {
            Some(job) if run.status == RunStatus::Queued => {
                crate::service::waiting_for_agent(&state, job).await
            }
            _ => None,
        },
        form_token: user
            .as_deref()
            .map(|u| state.sessions.form_token(u))
            .unwrap_or_default(),
        user,
        can_sign_in: state.config.web.password.is_some() || !state.config.web.users.is_empty(),
        any_detail: steps
            .iter()
            .any(|step| step.detail.as_deref().is_some_and(|d| !d.is_empty())),
        chat_link: chat_link(&state, &run),
        run,
    };
    Ok(page)
}

async fn run_log(
    State(state): State<AppState>,
    super::RunNumber(id): super::RunNumber,
) -> Result<Response, Error> {
    let run = state
        .store
        .get_run(RunId(id))
        .await?
        .ok_or(Error::NotFound)?;
    let log = std::sync::Arc::new(state.logs.open(&run).await);
    if log.stored().await.is_none() {
        return Err(Error::NotFound);
    }
    // Through read_log, so a running run's log comes whole: its head, then its segments (with
    // a marker where a part is no longer kept).
    let chunks = futures_util::stream::unfold(Some((0u64, b'\n')), move |at| {
        let log = log.clone();
        async move {
            let (offset, last) = at?;
            let (bytes, start, _) = log.read(Some(offset), 256 * 1024).await;
            let (&end_byte, _) = bytes.split_last()?;
            let mut chunk = Vec::with_capacity(bytes.len() + 64);
            if start > offset {
                if last != b'\n' {
                    chunk.push(b'\n');
                }
                chunk.extend_from_slice(marker(start - offset).as_bytes());
                chunk.push(b'\n');
            }
            let next = start + bytes.len() as u64;
            chunk.extend_from_slice(&bytes);
            Some((
                Ok::<_, std::convert::Infallible>(chunk),
                Some((next, end_byte)),
            ))
        }
    });
    let body = Body::from_stream(chunks);
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}

/// Lines of a finished run's output shown from its start and from its end.
const HEAD_LINES: usize = 200;
const TAIL_LINES: usize = 1000;

/// `lines`, numbered from `first`, as HTML with their colours (`render::ansi_html`).
fn numbered(lines: &[&str], first: i64) -> Vec<(i64, String)> {
    lines
        .iter()
        .zip(first..)
        .map(|(line, n)| (n, render::ansi_html(line.trim_end_matches(['\n', '\r']))))
        .collect()
}

/// A CSS class from a status word: `timed out` → `timed-out`.
fn class(status: &str) -> String {
    status.replace(' ', "-")
}

#[derive(serde::Deserialize)]
struct StreamQuery {
    /// Start at this byte offset (the end of what the page already shows).
    from: Option<u64>,
}

/// The most bytes a followed log is read at once.
const FOLLOW_CHUNK: u64 = 256 * 1024;

/// `GET /runs/{id}/log/stream`: the log as Server-Sent Events, one event per line, each with
/// its end offset as the event id, so a client that reconnects (sending `Last-Event-ID`)
/// resumes after the last line it got, losing and repeating nothing. Ends with an `end`
/// event once the run has finished and every line was sent.
async fn log_stream(
    State(state): State<AppState>,
    super::RunNumber(id): super::RunNumber,
    Query(query): Query<StreamQuery>,
    headers: axum::http::HeaderMap,
) -> Result<
    axum::response::sse::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    Error,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};

    let run = state
        .store
        .get_run(RunId(id))
        .await?
        .ok_or(Error::NotFound)?;
    // A reconnecting client says where it stopped; a page says where its text ends.
    let start = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(':').next())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(query.from)
        .unwrap_or(0);
    // Made before the first read: output stored after it wakes the stream.
    let waiting = state.logs.follow();
    let line = state.logs.open(&run).await.count_lines(start).await;
    struct Follow {
        state: AppState,
        run_id: RunId,
        offset: u64,
        /// Lines before `offset`.
        line: u64,
        /// Whether the run was going when the stream started (offsets count printed output).
        live: bool,
        pending: std::collections::VecDeque<Event>,
        done: bool,
        waiting: crate::logs::Follow,
    }
    let follow = Follow {
        state,
        run_id: run.run_id,
        offset: start,
        line,
        live: !run.status.is_finished(),
        pending: std::collections::VecDeque::new(),
        done: false,
        waiting,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(event) = f.pending.pop_front() {
                return Some((Ok(event), f));
            }
            if f.done {
                return None;
            }
            // Read what is new, up to the last complete line.
            let run = f.state.store.get_run(f.run_id).await.ok().flatten();
            let finished = run.as_ref().is_none_or(|r| r.status.is_finished());
            let log = match &run {
                Some(run) => f.state.logs.open(run).await,
                None => f.state.logs.stored(f.run_id),
            };
            let (chunk, start, size) = log.read(Some(f.offset), FOLLOW_CHUNK).await;
            // A capped log was put together at the run's end: its tail moved, and the page
            // that followed it reloads to show it.
            if finished
                && f.live
                && run.is_some_and(|r| u64::try_from(r.log_bytes).unwrap_or(0) > size)
            {
                f.done = true;
                return Some((Ok(Event::default().event("end").data("finished")), f));
            }
            if start > f.offset {
                // Output the log no longer keeps (the stream fell behind a capped log).
                let line = log.count_lines(start).await;
                f.pending.push_back(
                    Event::default()
                        .event("gap")
                        .id(format!("{start}:{line}"))
                        .data(marker(start - f.offset)),
                );
                f.offset = start;
                f.line = line;
            }
            let complete = match chunk.iter().rposition(|b| *b == b'\n') {
                Some(last) => &chunk[..=last],
                // At the end of a finished run, a last line without a newline is still a line;
                // so is one cut short by output the log no longer keeps.
                None if finished => &chunk[..],
                None if (chunk.len() as u64) < FOLLOW_CHUNK
                    && start + (chunk.len() as u64) < size =>
                {
                    &chunk[..]
                }
                None => &[][..],
            };
            for line in complete.split_inclusive(|b| *b == b'\n') {
                f.offset += line.len() as u64;
                let text = String::from_utf8_lossy(line);
                // HTML with its colours, inserted as it is by the page (`render::ansi_html`
                // writes only its own spans).
                let text = render::ansi_html(text.trim_end_matches(['\n', '\r']));
                f.line += 1;
                // `offset:line`: where to resume, and the line's number for its anchor.
                f.pending.push_back(
                    Event::default()
                        .id(format!("{}:{}", f.offset, f.line))
                        .data(text),
                );
            }
            if f.pending.is_empty() {
                if finished && complete.len() == chunk.len() {
                    f.done = true;
                    return Some((Ok(Event::default().event("end").data("finished")), f));
                }
                f.waiting.wait(f.run_id).await;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(serde::Deserialize)]
struct ActionForm {
    #[serde(default)]
    token: String,
}

/// The signed-in user of a form posted about run `id`, after the cross-site checks, and that
/// run.
async fn form_user_and_run(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    token: &str,
    id: i64,
) -> Result<(String, RunRow), Error> {
    let user = super::auth::signed_in(state, headers)
        .await
        .ok_or(Error::Forbidden("sign in to cancel or rerun runs"))?;
    if !super::auth::same_origin(headers, &state.config.public_url)
        || !state.sessions.check_form_token(&user, token)
    {
        return Err(Error::Forbidden(
            "this form was not sent from chatrun's own page; reload the page and try again",
        ));
    }
    let run = state
        .store
        .get_run(RunId(id))
        .await?
        .ok_or(Error::NotFound)?;
    Ok((user, run))
}

/// `POST /runs/{id}/cancel`: a signed-in user stops a run.
async fn cancel_run(
    State(state): State<AppState>,
    super::RunNumber(id): super::RunNumber,
    headers: axum::http::HeaderMap,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, Error> {
    let (user, run) = form_user_and_run(&state, &headers, &form.token, id).await?;
    crate::service::stop(&state, &run, &format!("cancelled by {user} (web)")).await?;
    tracing::info!(run = id, %user, "cancelled from the web");
    Ok(axum::response::Redirect::to(&format!("/runs/{id}")).into_response())
}

/// `POST /runs/{id}/rerun`: a signed-in user queues the same job with the same arguments.
async fn rerun_run(
    State(state): State<AppState>,
    super::RunNumber(id): super::RunNumber,
    headers: axum::http::HeaderMap,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, Error> {
    let (user, run) = form_user_and_run(&state, &headers, &form.token, id).await?;
    let job = state
        .catalog
        .get(&run.job)
        .ok_or_else(|| Error::BadRequest(format!("the job {} no longer exists", run.job)))?;
    let base = crate::store::NewRun {
        origin: crate::domain::Origin {
            platform: crate::domain::Platform::Web,
            channel_name: "web".into(),
            user_id: format!("web:{user}"),
            user_name: user.clone(),
            ..crate::domain::Origin::default()
        },
        message_id: crate::domain::random_id()
            .map_err(|_| Error::BadRequest("no randomness".into()))?,
        message: format!("rerun of #{id} from the web"),
        ..crate::store::NewRun::default()
    };
    let stored = crate::service::enqueue(&state, job, base, &run.args, |facts| crate::store::Ack {
        text: format!("queued run #{} from the web", facts.run_id),
        delivery: None,
    })
    .await;
    match stored {
        Ok(inserted) => {
            tracing::info!(run = %inserted.run_id, rerun_of = id, %user, "queued from the web");
            Ok(axum::response::Redirect::to(&format!("/runs/{}", inserted.run_id)).into_response())
        }
        Err(crate::service::Error::Refused(crate::service::Refusal::Arguments(reason))) => Err(
            Error::BadRequest(format!("its arguments no longer fit the job: {reason}")),
        ),
        Err(crate::service::Error::Refused(crate::service::Refusal::QueueFull(waiting))) => Ok((
            axum::http::StatusCode::CONFLICT,
            format!(
                "{waiting} runs of {} are already waiting, its limit; try again later\n",
                job.name
            ),
        )
            .into_response()),
        Err(err) => Err(err.into()),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "web/job.html")]
struct JobPage {
    job: crate::catalog::JobDef,
    timeout: String,
    runs: Vec<RunItem>,
    finished: usize,
    succeeded: usize,
    median: String,
    on_new: &'static str,
    /// An inline SVG of the recent durations, oldest left; bars coloured by result.
    chart: String,
    /// Tests that failed, passed and failed again in the recent runs of one argument set.
    flaky: Vec<FlakyItem>,
    /// The finished runs of each argument set the flaky tests were looked for in.
    flaky_runs: usize,
}

/// A row of the job page's flaky tests.
struct FlakyItem {
    suite: String,
    name: String,
    args: String,
    failed: usize,
    runs: usize,
    last_failed: i64,
    /// The test's history page, query included.
    history: String,
}

/// How many finished runs of each argument set the job page looks for flaky tests in.
const FLAKY_PAGE_RUNS: usize = 20;

/// Argument sets of a job whose flaky tests the job page lists: those of its recent runs.
const FLAKY_PAGE_ARGS: usize = 5;

/// The runs a test's history page lists.
const TEST_HISTORY_RUNS: usize = 50;

/// Whether a run counts in a job's success rate and median duration: it ran to an end of its
/// own, succeeded, failed or timed out. Cancelled, denied and interrupted runs say nothing of
/// the build, so they are left out, on every job alike.
fn counts_for_the_rate(run: &RunRow) -> bool {
    use crate::domain::RunStatus;
    run.started_at.is_some()
        && matches!(
            run.status,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::TimedOut
        )
}

#[derive(Template, WebTemplate)]
#[template(path = "web/jobs.html")]
struct JobsPage {
    jobs: Vec<JobItem>,
}

struct JobItem {
    name: String,
    description: String,
    /// Its newest run, if any.
    last: Option<RunItem>,
}

/// `GET /jobs`: every job, with its description and its newest run.
async fn jobs_page(State(state): State<AppState>) -> Result<JobsPage, Error> {
    let now = now_ms();
    let mut jobs = Vec::new();
    for job in state.catalog.jobs() {
        let filter = crate::store::RunFilter {
            job: Some(job.name.clone()),
            ..crate::store::RunFilter::default()
        };
        let last = state.store.search_runs(&filter, None, 1).await?;
        jobs.push(JobItem {
            name: job.name.clone(),
            description: job.description.clone(),
            last: last.first().map(|run| run_item(run, now)),
        });
    }
    Ok(JobsPage { jobs })
}

/// `GET /jobs/{name}`: the job's definition, its recent runs, success rate and durations.
async fn job_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<JobPage, Error> {
    let job = state.catalog.get(&name).cloned().ok_or(Error::NotFound)?;
    let filter = crate::store::RunFilter {
        job: Some(job.name.clone()),
        ..crate::store::RunFilter::default()
    };
    let rows = state.store.search_runs(&filter, None, 50).await?;
    let now = now_ms();
    let done: Vec<&RunRow> = rows.iter().filter(|r| counts_for_the_rate(r)).collect();
    let succeeded = done
        .iter()
        .filter(|r| r.status == crate::domain::RunStatus::Succeeded)
        .count();
    let mut durations: Vec<i64> = done
        .iter()
        .filter_map(|r| render::run_duration(r, now))
        .collect();
    let chart = duration_chart(&done, now);
    durations.sort_unstable();
    let median = durations
        .get(durations.len() / 2)
        .map_or_else(|| "—".into(), |d| render::duration(*d));
    // The flaky tests of the argument sets of the recent runs, newest first.
    let mut arg_sets: Vec<&str> = Vec::new();
    for run in &rows {
        if !arg_sets.contains(&run.args.as_str()) && arg_sets.len() < FLAKY_PAGE_ARGS {
            arg_sets.push(&run.args);
        }
    }
    let flaky_runs = FLAKY_PAGE_RUNS.max(state.config.flaky_window);
    let mut flaky = Vec::new();
    for args in arg_sets {
        let last = RunId(i64::MAX);
        let outcomes = state
            .store
            .previous_outcomes(&job.name, args, last, flaky_runs)
            .await?;
        let failures = state
            .store
            .history_failures(&job.name, args, last, flaky_runs)
            .await?;
        for test in crate::domain::flaky_tests(&outcomes, &failures) {
            let history = serde_urlencoded::to_string([
                ("args", args),
                ("suite", test.suite.as_str()),
                ("test", test.name.as_str()),
            ])
            .unwrap_or_default();
            flaky.push(FlakyItem {
                history: format!("/jobs/{}/tests?{history}", job.name),
                suite: test.suite,
                name: test.name,
                args: args.to_string(),
                failed: test.failed,
                runs: test.runs,
                last_failed: test.last_failed.0,
            });
        }
    }
    Ok(JobPage {
        flaky,
        flaky_runs,
        timeout: humantime::format_duration(job.timeout).to_string(),
        runs: rows.iter().take(20).map(|run| run_item(run, now)).collect(),
        finished: done.len(),
        succeeded,
        median,
        chart,
        on_new: match job.on_new {
            crate::catalog::OnNew::Queue => "wait in the queue",
            crate::catalog::OnNew::Replace => "replace a queued run with the same arguments",
            crate::catalog::OnNew::CancelRunning => "cancel the running ones",
        },
        job,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "web/test.html")]
struct TestPage {
    job: String,
    args: String,
    suite: String,
    test: String,
    /// A line per recent finished run, newest first.
    lines: Vec<TestLine>,
    failed: usize,
}

/// One run in a test's history.
struct TestLine {
    run: i64,
    /// The run's outcome: succeeded or failed.
    run_failed: bool,
    /// Whether this test failed in it.
    test_failed: bool,
}

#[derive(serde::Deserialize)]
struct TestQuery {
    #[serde(default)]
    args: String,
    suite: String,
    test: String,
}

/// `GET /jobs/{name}/tests?args=…&suite=…&test=…`: how one test did in the job's recent
/// finished runs with those arguments, a line per run.
async fn test_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<TestQuery>,
) -> Result<TestPage, Error> {
    let job = state.catalog.get(&name).ok_or(Error::NotFound)?;
    let last = RunId(i64::MAX);
    let outcomes = state
        .store
        .previous_outcomes(&job.name, &query.args, last, TEST_HISTORY_RUNS)
        .await?;
    let failed_in: std::collections::HashSet<RunId> = state
        .store
        .history_failures(&job.name, &query.args, last, TEST_HISTORY_RUNS)
        .await?
        .into_iter()
        .filter(|(_, suite, test)| *suite == query.suite && *test == query.test)
        .map(|(run, _, _)| run)
        .collect();
    let lines: Vec<TestLine> = outcomes
        .iter()
        .map(|(run, run_failed)| TestLine {
            run: run.0,
            run_failed: *run_failed,
            test_failed: failed_in.contains(run),
        })
        .collect();
    Ok(TestPage {
        failed: lines.iter().filter(|l| l.test_failed).count(),
        job: job.name.clone(),
        args: query.args,
        suite: query.suite,
        test: query.test,
        lines,
    })
}

/// Bars of the finished runs' durations, oldest left, green for success and red otherwise.
/// Numbers only: nothing a user typed goes into the SVG.
fn duration_chart(runs: &[&RunRow], now: i64) -> String {
    let bars: Vec<(i64, bool, i64)> = runs
        .iter()
        .rev()
        .filter_map(|r| {
            Some((
                render::run_duration(r, now)?,
                r.status == crate::domain::RunStatus::Succeeded,
                r.run_id.0,
            ))
        })
        .collect();
    if bars.is_empty() {
        return String::new();
    }
    let (width, height, gap) = (600_i64, 80_i64, 2_i64);
    let longest = bars.iter().map(|b| b.0).max().unwrap_or(1).max(1);
    let bar = (width / i64::try_from(bars.len()).unwrap_or(1)).clamp(3, 40);
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="durations of recent runs">"#
    );
    for (i, (duration, ok, id)) in bars.iter().enumerate() {
        let h = (duration * (height - 4) / longest).max(2);
        let x = i64::try_from(i).unwrap_or(0) * bar;
        let colour = if *ok { "#16a34a" } else { "#dc2626" };
        svg.push_str(&format!(
            r#"<a href="/runs/{id}"><rect x="{x}" y="{}" width="{}" height="{h}" fill="{colour}"><title>#{id}: {}</title></rect></a>"#,
            height - h,
            (bar - gap).max(1),
            render::duration(*duration)
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn run_item(run: &RunRow, now: i64) -> RunItem {
    RunItem {
        id: run.run_id.0,
        job: run.job.clone(),
        args: run.args.clone(),
        platform: match run.origin.platform {
            crate::domain::Platform::Mattermost => "Mattermost",
            crate::domain::Platform::Teams => "Teams",
            crate::domain::Platform::Slack => "Slack",
            crate::domain::Platform::Web => "web",
        },
        status: run.status.as_str(),
        status_class: class(run.status.as_str()),
        user: run.origin.user_name.clone(),
        channel: run.origin.channel_name.clone(),
        when: render::ago(run.created_at, now),
        when_exact: render::timestamp(run.created_at),
        duration: render::run_duration(run, now).map_or_else(String::new, render::duration),
    }
}

/// A Mattermost permalink to the trigger post (`{url}/{team}/pl/{post}`); Teams gives no link
/// an outgoing webhook could build.
fn chat_link(state: &AppState, run: &RunRow) -> Option<String> {
    let url = state.config.mattermost.url.as_deref()?;
    let usable = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    (run.origin.platform == crate::domain::Platform::Mattermost
        && usable(&run.origin.team_name)
        && usable(&run.message_id))
    .then(|| format!("{url}/{}/pl/{}", run.origin.team_name, run.message_id))
}

#[cfg(test)]
mod tests {
    use crate::domain::RunStatus;

    #[test]
    fn the_success_rate_counts_runs_that_ran_to_an_end_of_their_own() {
        let run = |status| crate::domain::RunRow {
            started_at: Some(1),
            ..crate::render::samples::run(status)
        };
        let counted: Vec<RunStatus> = RunStatus::ALL
            .into_iter()
            .filter(|status| super::counts_for_the_rate(&run(*status)))
            .collect();
        assert_eq!(
            counted,
            [RunStatus::Succeeded, RunStatus::Failed, RunStatus::TimedOut]
        );
        // A run cancelled before it started is no run of the build either.
        let never = crate::domain::RunRow {
            started_at: None,
            ..crate::render::samples::run(RunStatus::Failed)
        };
        assert!(!super::counts_for_the_rate(&never));
    }
}
