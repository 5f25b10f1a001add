//! The server's half of the remote agents' protocol (`worker::remote` has the agent's and the
//! bodies): `/api/agent/claim` hands out a run whose job the agent may take (a long poll),
//! the others take its reports. Every request carries the agent's token, looked up by its
//! SHA-256 (401 when unknown or revoked), and its name; a report about a run the agent does
//! not hold with that attempt is answered 409, and nothing of it is stored.
//!
//! And `GET /api/agents`, for people: every agent, its labels and what it is doing.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::{AppState, Error};
use crate::domain::{AgentRow, AgentState, RunId, check_label};
use crate::store::{Claim, now_ms};
use crate::worker::remote::{
    AGENT_HEADER, AGENT_POLL, Assignment, Beat, Finish, Heard, Hello, LogWrite, StepEnd, StepStart,
};
use crate::worker::{Plan, Worker, job_steps_for};

/// The agents' routes (outside the web login: they carry their own token).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/agent/claim", post(claim))
        .route("/api/agent/runs/{id}/heartbeat", post(heartbeat))
        .route("/api/agent/runs/{id}/log", post(log))
        .route(
            "/api/agent/runs/{id}/steps/{position}/start",
            post(start_step),
        )
        .route(
            "/api/agent/runs/{id}/steps/{position}/finish",
            post(finish_step),
        )
        .route("/api/agent/runs/{id}/finish", post(finish))
}

/// The agents page and its data, behind the web login.
pub fn people_router() -> Router<AppState> {
    Router::new()
        .route("/agents", get(page))
        .route("/api/agents", get(list))
}

/// The agent a request comes from: its token's name and its own.
#[derive(Debug)]
pub struct Caller {
    token: String,
    name: String,
}

impl Caller {
    /// The lease owner of the runs it holds: tied to the token, so no other token's agent can
    /// report on them.
    fn owner(&self) -> String {
        format!("agent:{}/{}", self.token, self.name)
    }
}

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Error> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(Error::Unauthorized(
                "an agent's request carries its token (Authorization: Bearer …)",
            ))?;
        let Some(token) = state
            .store
            .agent_token_name(&crate::domain::sha256_hex(token.trim()))
            .await?
        else {
            return Err(Error::Unauthorized(
                "the agent token is unknown or was revoked (chatrun agent-token list)",
            ));
        };
        let name = parts
            .headers
            .get(AGENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        check_label(&name).map_err(|why| {
            Error::BadRequest(format!("the agent's name ({AGENT_HEADER} header): {why}"))
        })?;
        Ok(Self { token, name })
    }
}

/// The run and attempt a report is about, if `caller` holds them; else 409.
async fn held(state: &AppState, caller: &Caller, run_id: RunId, attempt: i64) -> Result<(), Error> {
    match state.store.run_lease(run_id).await? {
        Some((owner, held)) if owner == caller.owner() && held == attempt => Ok(()),
        _ => Err(Error::Conflict(
            "the run is not this agent's (its lease was lost, or another attempt runs it)",
        )),
    }
}

/// A worker acting for a remote agent: the same settling of runs as the local agent's.
fn worker(state: &AppState, owner: String, steps: crate::store::JobSteps) -> Worker {
    Worker {
        store: state.store.clone(),
        catalog: state.catalog.clone(),
        config: state.config.clone(),
        owner,
        chat: state.chat.clone(),
        logs: state.logs.clone(),
        job_steps: std::sync::Arc::new(steps),
    }
}

/// `POST /api/agent/claim`: a run the agent may take, once one is queued (within
/// [`AGENT_POLL`]; 204 when none came).
async fn claim(
    State(state): State<AppState>,
    caller: Caller,
    Json(hello): Json<Hello>,
) -> Result<Response, Error> {
    for label in &hello.labels {
        check_label(label).map_err(|why| Error::BadRequest(format!("labels: {why}")))?;
    }
    let labels = hello.labels.join(",");
    let steps = job_steps_for(
        &state.catalog,
        Some(&hello.labels),
        state.config.local_agent,
    );
    let worker = worker(&state, caller.owner(), steps);
    let deadline = tokio::time::Instant::now() + AGENT_POLL;
    let seen = |run_id| AgentRow {
        name: caller.name.clone(),
        labels: labels.clone(),
        version: crate::domain::text::truncate_runes(&hello.version, 40),
        last_seen_at: now_ms(),
        run_id,
    };
    // Once per request (every 25 s at most), not at every wake-up.
    state.store.agent_seen(&seen(None), &caller.token).await?;
    loop {
        let woken = state.store.wait_for_work();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = now_ms();
        let lease = state.config.lease;
        let claimed = state
            .store
            .try_claim(Claim {
                owner: &worker.owner,
                now,
                lease_until: now + crate::store::ms(lease),
                steps: &worker.job_steps,
            })
            .await?;
        if let Some(run) = claimed {
            let Some(job) = state.catalog.get(&run.job).cloned() else {
                let error = format!("the job `{}` no longer exists on this server", run.job);
                worker.finish_without_steps(run, &[], error).await?;
                continue;
            };
            let values = match crate::catalog::args::bind(&job.name, &job.params, &run.args) {
                Ok(values) => values,
                Err(err) => {
                    let error = format!("its arguments no longer fit the job: {err}");
                    worker
                        .finish_without_steps(run, &job.step_names(), error)
                        .await?;
                    continue;
                }
            };
            state
                .store
                .agent_seen(&seen(Some(run.run_id)), &caller.token)
                .await?;
            state
                .store
                .set_run_agent(run.run_id, run.attempt, &caller.name)
                .await?;
            tracing::info!(run = %run.run_id, agent = %caller.name, "run handed to an agent");
            let plan = Plan::new(&run, &job, &values, state.config.kill_grace).for_remote_agent();
            return Ok(Json(Assignment {
                plan,
                lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
                max_log_bytes: state.logs.cap().max,
            })
            .into_response());
        }
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep_until(deadline) => return Ok(StatusCode::NO_CONTENT.into_response()),
            () = state.draining.cancelled() => return Ok(StatusCode::NO_CONTENT.into_response()),
            // Runs whose job's slot freed up on another instance, or the reaper put back.
            () = tokio::time::sleep(crate::worker::REAP_EVERY) => {}
        }
    }
}

/// `POST /api/agent/runs/{id}/heartbeat`: renews the lease; answered at once when a cancel is
/// asked for, else after a third of the lease (the agent asks again at once).
async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    super::RunNumber(id): super::RunNumber,
    Json(beat): Json<Beat>,
) -> Result<Json<Heard>, Error> {
    let run_id = RunId(id);
    if held(&state, &caller, run_id, beat.attempt).await.is_err() {
        return Ok(Json(Heard::Lost));
    }
    let lease = state.config.lease;
    let renew = || async {
        let until = now_ms() + crate::store::ms(lease);
        state.store.renew(run_id, beat.attempt, until).await
    };
    let mut cancels = state.store.watch_cancels();
    let renewal = renew().await?;
    if renewal != crate::store::Renewal::Held {
        return Ok(Json(renewal.into()));
    }
    let wait = (lease / 3).min(AGENT_POLL);
    tokio::select! {
        () = cancels.requested() => Ok(Json(renew().await?.into())),
        () = tokio::time::sleep(wait) => Ok(Json(Heard::Held)),
        () = state.draining.cancelled() => Ok(Json(Heard::Held)),
    }
}

/// `POST /api/agent/runs/{id}/log`: output for the run's log.
async fn log(
    State(state): State<AppState>,
    caller: Caller,
    super::RunNumber(id): super::RunNumber,
    Json(write): Json<LogWrite>,
) -> Result<StatusCode, Error> {
    let run_id = RunId(id);
    held(&state, &caller, run_id, write.attempt).await?;
    let chunks = write
        .chunks()
        .map_err(|err| Error::BadRequest(format!("a log chunk is not base64: {err}")))?;
    state.store.write_log(run_id, write.forget, &chunks).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/agent/runs/{id}/steps/{position}/start`.
async fn start_step(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, position)): Path<(i64, usize)>,
    Json(start): Json<StepStart>,
) -> Result<StatusCode, Error> {
    let run_id = RunId(id);
    held(&state, &caller, run_id, start.attempt).await?;
    state.store.start_step(run_id, position, start.at).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/agent/runs/{id}/steps/{position}/finish`: a step's end that is not the run's.
async fn finish_step(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, position)): Path<(i64, usize)>,
    Json(end): Json<StepEnd>,
) -> Result<StatusCode, Error> {
    let run_id = RunId(id);
    held(&state, &caller, run_id, end.attempt).await?;
    state
        .store
        .finish_step(run_id, position, &end.result)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/agent/runs/{id}/finish`: the run's result, stored with its reply, as the local
/// agent stores its own.
async fn finish(
    State(state): State<AppState>,
    caller: Caller,
    super::RunNumber(id): super::RunNumber,
    Json(finish): Json<Finish>,
) -> Result<StatusCode, Error> {
    let run_id = RunId(id);
    held(&state, &caller, run_id, finish.attempt).await?;
    let Some(run) = state.store.get_run(run_id).await? else {
        return Err(Error::NotFound);
    };
    let agent = caller.name.clone();
    let shut_down = move || {
        format!(
            "the agent `{agent}` was shut down while this run was going, and its steps were \
             stopped"
        )
    };
    let worker = worker(&state, caller.owner(), crate::store::JobSteps::new([]));
    let last_step = finish.last_step.as_ref().map(|(p, step)| (*p, step));
    worker
        .settle(
            run,
            finish.result,
            last_step,
            finish.cancelled_because,
            shut_down,
            None,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /agents`: every agent heard from, its labels and what it is doing.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "web/agents.html")]
struct AgentsPage {
    agents: Vec<AgentItem>,
}

struct AgentItem {
    name: String,
    labels: Vec<String>,
    version: String,
    running: Option<RunId>,
    state: &'static str,
    state_class: &'static str,
    seen: String,
    seen_exact: String,
}

async fn page(State(state): State<AppState>) -> Result<AgentsPage, Error> {
    let now = now_ms();
    let agents = state
        .store
        .agents()
        .await?
        .into_iter()
        .map(|agent| {
            let (state, state_class, running) = match agent.state(now) {
                AgentState::Idle => ("idle", "queued", None),
                AgentState::Running(run) => ("running", "running", Some(run)),
                AgentState::Lost => ("lost", "failed", None),
            };
            AgentItem {
                labels: agent.label_list(),
                name: agent.name,
                version: agent.version,
                running,
                state,
                state_class,
                seen: crate::render::ago(agent.last_seen_at, now),
                seen_exact: crate::render::timestamp(agent.last_seen_at),
            }
        })
        .collect();
    Ok(AgentsPage { agents })
}

/// `GET /api/agents`: every agent heard from, with its state.
async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, Error> {
    let now = now_ms();
    let agents: Vec<serde_json::Value> = state
        .store
        .agents()
        .await?
        .into_iter()
        .map(|agent| {
            json!({
                "name": agent.name,
                "labels": agent.label_list(),
                "version": agent.version,
                "state": agent.state(now),
                "last_seen_at": agent.last_seen_at,
            })
        })
        .collect();
    Ok(Json(json!({ "agents": agents })))
}
