//! The JSON API, for scripts: `/api/runs` (the history's filters, keyset paging with an opaque
//! cursor), `/api/runs/{id}` (one run with its steps, failed tests and replies) and
//! `/api/runs/{id}/log` (the log, a chunk at a time).

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{AppState, Error};
use crate::domain::{Platform, RunId, RunRow, RunStatus};
use crate::store::RunFilter;

/// Runs per page when `limit` is not given, and the most a page may have.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
/// The largest log chunk one request returns.
const MAX_LOG_CHUNK: u64 = 256 * 1024;

/// The API routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/runs", get(list))
        .route("/api/runs/{id}", get(one))
        .route("/api/runs/{id}/log", get(log))
}

/// The history filters, as query parameters; empty values mean "any" (HTML forms send them).
#[derive(Debug, Default, Deserialize)]
pub struct FilterQuery {
    pub job: Option<String>,
    pub status: Option<String>,
    pub user: Option<String>,
    pub channel: Option<String>,
    pub platform: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    /// RFC 3339.
    pub until: Option<String>,
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl FilterQuery {
    /// The filter, the page size and where the page starts.
    ///
    /// # Errors
    ///
    /// A value that cannot be understood, named.
    pub fn parse(&self) -> Result<(RunFilter, i64, Option<RunId>), Error> {
        let text = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
        };
        let time = |name: &str, value: &Option<String>| -> Result<Option<i64>, Error> {
            text(value)
                .map(|v| {
                    // A bare date is its midnight, UTC.
                    let full = if v.len() == 10 && v.as_bytes().get(4) == Some(&b'-') {
                        format!("{v}T00:00:00Z")
                    } else {
                        v.clone()
                    };
                    humantime::parse_rfc3339_weak(&full)
                        .map_err(|_| {
                            Error::BadRequest(format!(
                                "{name}: `{v}` is not a date (YYYY-MM-DD) or an RFC 3339 time (YYYY-MM-DDThh:mm:ssZ)"
                            ))
                        })
                        .map(|t| {
                            t.duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                        })
                })
                .transpose()
        };
        let status = text(&self.status)
            .map(|s| {
                RunStatus::parse(&s).ok_or_else(|| {
                    let tokens: Vec<_> = RunStatus::ALL.iter().map(|s| s.token()).collect();
                    Error::BadRequest(format!("status: `{s}` is not one of {}", tokens.join(", ")))
                })
            })
            .transpose()?;
        let platform = text(&self.platform)
            .map(|p| {
                p.parse::<Platform>()
                    .map_err(|err| Error::BadRequest(format!("platform: {err}")))
            })
            .transpose()?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::BadRequest(format!(
                "limit: {limit} is out of range: 1 to {MAX_LIMIT}"
            )));
        }
        let cursor = text(&self.cursor)
            .map(|c| {
                c.parse::<i64>()
                    .map(RunId)
                    .map_err(|_| Error::BadRequest("cursor: not a cursor this API gave".into()))
            })
            .transpose()?;
        let filter = RunFilter {
            job: text(&self.job),
            status,
            user: text(&self.user),
            channel: text(&self.channel),
            platform,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
        };
        Ok((filter, limit, cursor))
    }
}

/// A run as the API shows it.
#[derive(Serialize)]
struct RunJson {
    id: i64,
    job: String,
    args: String,
    status: RunStatus,
    user: String,
    user_id: String,
    channel: String,
    team: String,
    platform: Platform,
    message: String,
    error: Option<String>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    /// The remote agent that ran it; null: the server itself.
    agent: Option<String>,
    url: String,
}

fn rfc3339(ms: i64) -> String {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

fn run_json(state: &AppState, run: &RunRow) -> RunJson {
    RunJson {
        id: run.run_id.0,
        job: run.job.clone(),
        args: run.args.clone(),
        status: run.status,
        user: run.origin.user_name.clone(),
        user_id: run.origin.user_id.clone(),
        channel: run.origin.channel_name.clone(),
        team: run.origin.team_name.clone(),
        platform: run.origin.platform,
        message: run.message.clone(),
        error: run.error.clone(),
        created_at: rfc3339(run.created_at),
        started_at: run.started_at.map(rfc3339),
        finished_at: run.finished_at.map(rfc3339),
        agent: run.agent.clone(),
        url: run.run_id.page(&state.config.public_url),
    }
}

async fn list(
    State(state): State<AppState>,
    Query(query): Query<FilterQuery>,
) -> Result<Json<Value>, Error> {
    let (filter, limit, cursor) = query.parse()?;
    let mut runs = state.store.search_runs(&filter, cursor, limit + 1).await?;
    let more = runs.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    runs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = more
        .then(|| runs.last().map(|r| r.run_id.0.to_string()))
        .flatten();
    let runs: Vec<RunJson> = runs.iter().map(|r| run_json(&state, r)).collect();
    Ok(Json(json!({ "runs": runs, "next_cursor": next })))
}

async fn one(
    State(state): State<AppState>,
    super::RunNumber(id): super::RunNumber,
) -> Result<Json<Value>, Error> {
    let mut run = state
        .store
        .get_run(RunId(id))
        .await?
        .ok_or(Error::NotFound)?;
    let steps = state.store.steps(run.run_id).await?;
    let failures = state
        .store
        .result_history(&mut run, state.config.flaky_window)
        .await?;
    let replies: Vec<Value> = state
        .store
        .deliveries(run.run_id)
        .await?
        .into_iter()
        .map(|d| {
            json!({
                "target": d.target, "status": d.status, "attempts": d.attempts,
                "last_error": d.last_error,
                "next_attempt_at": (d.status == "pending").then(|| rfc3339(d.next_attempt_at)),
                "created_at": rfc3339(d.created_at),
                "sent_at": d.sent_at.map(rfc3339),
                "maybe_duplicate": d.blind,
            })
        })
        .collect();
    let result_reply = super::result_text(&state, &run, &steps, &failures);
    // Times as RFC 3339, as everywhere in the API.
    let steps: Vec<Value> = steps
        .iter()
        .map(|step| {
            let mut value = serde_json::to_value(step).unwrap_or_default();
            value["started_at"] = json!(step.started_at.map(rfc3339));
            value["finished_at"] = json!(step.finished_at.map(rfc3339));
            value
        })
        .collect();
    Ok(Json(json!({
        "run": run_json(&state, &run),
        "steps": steps,
        "failed_tests": failures,
        "replies": replies,
        "result_reply": result_reply,
    })))
}

#[derive(Deserialize)]
struct LogQuery {
    offset: Option<u64>,
    length: Option<u64>,
}

/// A chunk of the log: `{"size", "offset", "text", "next_offset"}`; `next_offset` is null at
/// the end (for a run still going, ask again later from there).
async fn log(
    State(state): State<AppState>,
    super::RunNumber(id): super::RunNumber,
    Query(query): Query<LogQuery>,
) -> Result<Json<Value>, Error> {
    let run = state
        .store
        .get_run(RunId(id))
        .await?
        .ok_or(Error::NotFound)?;
    let length = query.length.unwrap_or(64 * 1024).min(MAX_LOG_CHUNK);
    let (bytes, offset, size) = state
        .logs
        .open(&run)
        .await
        .read(Some(query.offset.unwrap_or(0)), length)
        .await;
    let end = offset + bytes.len() as u64;
    Ok(Json(json!({
        "size": size,
        "offset": offset,
        "text": String::from_utf8_lossy(&bytes),
        "next_offset": (end < size).then_some(end),
    })))
}
