//! A remote agent, `chatrun agent`: runs steps on another machine. It opens no port and holds
//! no database password: it asks the server for a run whose job it can take (a long poll,
//! [`AGENT_POLL`]), runs it through the same [`execute`] as the local agent, streams the
//! output to the server as the log's chunks, renews its lease (a heartbeat the server holds
//! until a cancel request or a third of the lease), and reports each step and the result.
//!
//! The protocol's bodies are the types here (JSON), under `/api/agent/` with the agent's
//! token (`Authorization: Bearer …`) and name (`Chatrun-Agent`) on every request;
//! `http::agents` is the server's half. A report about a run the agent no longer holds (its
//! lease lost, another attempt running) is answered 409, and the agent stops that run and
//! discards its result.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{Agent, Error, Lease, Plan, Steps, execute, heard};
use crate::domain::RunId;
use crate::logs::{ChunkTarget, LogSink};
use crate::store::{LogChunk, Renewal, RunResult, StepResult};

/// The longest a claim waits on the server for a run before it answers "none" (204).
pub const AGENT_POLL: Duration = Duration::from_secs(25);

/// The header that names the agent on each of its requests.
pub const AGENT_HEADER: &str = "chatrun-agent";

/// What an agent says of itself when it asks for a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub labels: Vec<String>,
    pub version: String,
}

/// A run for the agent: what to run, and the terms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    pub plan: Plan,
    /// The lease's length: renewed by every heartbeat.
    pub lease_ms: u64,
    /// The log's cap.
    pub max_log_bytes: u64,
}

/// A heartbeat, or a report, of the attempt that holds a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Beat {
    pub attempt: i64,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "renewal", rename_all = "snake_case")]
pub enum Heard {
    Held,
    Lost,
    Cancel { reason: String },
}

impl From<Renewal> for Heard {
    fn from(renewal: Renewal) -> Self {
        match renewal {
            Renewal::Held => Self::Held,
            Renewal::Lost => Self::Lost,
            Renewal::CancelRequested(reason) => Self::Cancel { reason },
        }
    }
}

impl From<Heard> for Renewal {
    fn from(heard: Heard) -> Self {
        match heard {
            Heard::Held => Self::Held,
            Heard::Lost => Self::Lost,
            Heard::Cancel { reason } => Self::CancelRequested(reason),
        }
    }
}

/// Output for the run's log ([`crate::store::Store::write_log`]), the bytes in base64.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogWrite {
    pub attempt: i64,
    pub forget: (i64, i64),
    pub chunks: Vec<(i64, i64, String)>,
}

impl LogWrite {
    /// The chunks as the store takes them.
    ///
    /// # Errors
    ///
    /// A chunk's data is not base64.
    pub fn chunks(&self) -> Result<Vec<LogChunk>, base64::DecodeError> {
        self.chunks
            .iter()
            .map(|(pos, lines, data)| {
                Ok(LogChunk {
                    pos: *pos,
                    lines: *lines,
                    data: base64::engine::general_purpose::STANDARD.decode(data)?,
                })
            })
            .collect()
    }
}

/// A step's start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepStart {
    pub attempt: i64,
    pub at: i64,
}

/// A step's end (not the run's last: that one comes with [`Finish`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepEnd {
    pub attempt: i64,
    pub result: StepResult,
}

/// A run's end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finish {
    pub attempt: i64,
    pub result: RunResult,
    pub last_step: Option<(usize, StepResult)>,
    /// Why a cancel was asked for, when it was.
    pub cancelled_because: Option<String>,
}

/// How `chatrun agent` was started.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server's address, `https://ci.example.com`.
    pub server: String,
    pub token: String,
    pub name: String,
    pub labels: Vec<String>,
    /// Where relative working folders of steps are found.
    pub workdir: PathBuf,
    /// Added to the agent's nice value for every step.
    pub nice: u8,
    /// On shutdown, how long running steps may go on before they are stopped.
    pub shutdown_grace: Duration,
}

/// The server, as an agent reaches it.
#[derive(Debug, Clone)]
struct Server {
    http: reqwest::Client,
    base: String,
    token: String,
    name: String,
}

/// Why a request to the server failed.
#[derive(Debug)]
enum Failed {
    /// The token is wrong or revoked: nothing will work.
    Unauthorized(String),
    /// The run is no longer this agent's.
    Gone,
    /// The network, or the server's own trouble: try again.
    Again(String),
}

impl Server {
    async fn post<T: Serialize>(
        &self,
        path: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<reqwest::Response, Failed> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header(AGENT_HEADER, &self.name)
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|err| Failed::Again(format!("{path}: {err}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let text = text.trim().to_string();
        Err(match status.as_u16() {
            401 => Failed::Unauthorized(text),
            409 => Failed::Gone,
            _ => Failed::Again(format!("{path}: {status}: {text}")),
        })
    }

    /// Posts a report about run `run_id`, trying again a few times on a failure that may pass.
    async fn report<T: Serialize>(&self, path: &str, body: &T) -> Result<(), Error> {
        let mut wait = Duration::from_millis(200);
        for _ in 0..5 {
            match self.post(path, body, Duration::from_secs(30)).await {
                Ok(_) => return Ok(()),
                Err(Failed::Again(why)) => {
                    tracing::warn!(%why, "cannot report to the server; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(Failed::Gone) => {
                    return Err(Error::Server("the run is no longer this agent's".into()));
                }
                Err(Failed::Unauthorized(why)) => return Err(Error::Server(why)),
            }
        }
        Err(Error::Server(format!("cannot reach the server for {path}")))
    }
}

/// The agent's reports of one run's steps.
struct RemoteSteps<'a> {
    server: &'a Server,
    run_id: RunId,
    attempt: i64,
}

impl Steps for RemoteSteps<'_> {
    async fn start_step(&self, position: usize, now: i64) -> Result<(), Error> {
        let path = format!("/api/agent/runs/{}/steps/{position}/start", self.run_id);
        let body = StepStart {
            attempt: self.attempt,
            at: now,
        };
        self.server.report(&path, &body).await
    }

    async fn finish_step(&self, position: usize, result: &StepResult) -> Result<(), Error> {
        let path = format!("/api/agent/runs/{}/steps/{position}/finish", self.run_id);
        let body = StepEnd {
            attempt: self.attempt,
            result: result.clone(),
        };
        self.server.report(&path, &body).await
    }
}

/// Where a remote run's log goes: to the server, which stores the chunks.
#[derive(Debug)]
struct RemoteLog {
    server: Server,
    attempt: i64,
}

impl ChunkTarget for RemoteLog {
    fn write_chunks<'a>(
        &'a self,
        run_id: RunId,
        forget: (i64, i64),
        chunks: &'a [LogChunk],
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let body = LogWrite {
                attempt: self.attempt,
                forget,
                chunks: chunks
                    .iter()
                    .map(|c| {
                        let data = base64::engine::general_purpose::STANDARD.encode(&c.data);
                        (c.pos, c.lines, data)
                    })
                    .collect(),
            };
            let path = format!("/api/agent/runs/{run_id}/log");
            self.server
                .report(&path, &body)
                .await
                .map_err(std::io::Error::other)
        })
    }

    fn place(&self) -> String {
        format!("the server {}", self.server.base)
    }
}

/// Runs `chatrun agent` until `shutdown`: asks for runs and runs them, one at a time.
///
/// # Errors
///
/// The server refused the token (wrong or revoked): the agent cannot work.
pub async fn run(options: Options, shutdown: CancellationToken) -> Result<(), Error> {
    // HTTPS to the server (ring's; an error means one is installed already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server {
        http: reqwest::Client::builder()
            .build()
            .map_err(|err| Error::Server(err.to_string()))?,
        base: options.server.trim_end_matches('/').to_string(),
        token: options.token.clone(),
        name: options.name.clone(),
    };
    let hello = Hello {
        labels: options.labels.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    // What a killed agent of this host left running goes first.
    let killed = tokio::task::spawn_blocking(|| crate::runner::orphans::kill_orphans_of("agent"))
        .await
        .unwrap_or(0);
    if killed > 0 {
        tracing::warn!(
            processes = killed,
            "killed the processes a stopped agent left running"
        );
    }
    let agent = Agent {
        owner: crate::runner::orphans::owner("agent"),
        nice: options.nice,
    };
    let mut backoff = Duration::from_millis(500);
    tracing::info!(server = %server.base, name = %options.name, labels = ?options.labels, "agent started");
    loop {
        let asked = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            asked = server.post("/api/agent/claim", &hello, AGENT_POLL + Duration::from_secs(30)) => asked,
        };
        let response = match asked {
            Ok(response) => response,
            Err(Failed::Unauthorized(why)) => {
                return Err(Error::Server(format!(
                    "the server refused this agent's token: {why}"
                )));
            }
            Err(Failed::Gone) => continue,
            Err(Failed::Again(why)) => {
                tracing::warn!(%why, "cannot reach the server; trying again");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            continue;
        }
        let assignment: Assignment = match response.json().await {
            Ok(assignment) => assignment,
            Err(err) => {
                tracing::warn!(error = %err, "the server's answer is not a run");
                continue;
            }
        };
        run_one(&server, &options, &agent, assignment, &shutdown).await;
    }
}

/// Runs one assigned run to its end, and reports it.
async fn run_one(
    server: &Server,
    options: &Options,
    agent: &Agent,
    assignment: Assignment,
    shutdown: &CancellationToken,
) {
    let plan = assignment.plan.working_in(&options.workdir);
    let (run_id, attempt) = (plan.run_id, plan.attempt);
    tracing::info!(run = %run_id, job = %plan.job, attempt, "run started");
    let stop = CancellationToken::new();
    let interrupted = Arc::new(AtomicBool::new(false));
    let _grace = AbortOnDropHandle::new(tokio::spawn(super::stop_after_grace(
        shutdown.clone(),
        options.shutdown_grace,
        run_id,
        stop.clone(),
        interrupted.clone(),
    )));
    let lease = Arc::new(Lease::default());
    let _heartbeat = AbortOnDropHandle::new(tokio::spawn(heartbeat(
        server.clone(),
        (run_id, attempt),
        stop.clone(),
        lease.clone(),
    )));
    let target = Arc::new(RemoteLog {
        server: server.clone(),
        attempt,
    });
    let log = LogSink::chunks(target, run_id, assignment.max_log_bytes, attempt > 1).await;
    let steps = RemoteSteps {
        server,
        run_id,
        attempt,
    };
    let executed = execute(&plan, &steps, log, agent, &stop, &interrupted).await;
    if lease.lost.load(Ordering::SeqCst) {
        tracing::warn!(run = %run_id, attempt, "lease lost; result discarded");
        return;
    }
    let (result, last_step) = match executed {
        Ok(executed) => executed,
        Err(err) => {
            tracing::warn!(run = %run_id, error = %err, "the run's steps could not be reported; it is left to the server's reaper");
            return;
        }
    };
    let finish = Finish {
        attempt,
        result,
        last_step,
        cancelled_because: lease.cancelled_because.get().cloned(),
    };
    let path = format!("/api/agent/runs/{run_id}/finish");
    match server.report(&path, &finish).await {
        Ok(()) => {
            tracing::info!(run = %run_id, status = finish.result.status.as_str(), "run finished")
        }
        Err(err) => tracing::warn!(run = %run_id, error = %err, "the result could not be reported"),
    }
}

/// Renews the lease of `(run_id, attempt)` for as long as the run goes: the server answers each
/// heartbeat at once on a cancel request, else within a third of the lease.
async fn heartbeat(
    server: Server,
    (run_id, attempt): (RunId, i64),
    stop: CancellationToken,
    lease: Arc<Lease>,
) {
    let path = format!("/api/agent/runs/{run_id}/heartbeat");
    loop {
        let renewal = match server
            .post(
                &path,
                &Beat { attempt },
                AGENT_POLL + Duration::from_secs(30),
            )
            .await
        {
            Ok(response) => match response.json::<Heard>().await {
                Ok(heard) => Renewal::from(heard),
                Err(err) => {
                    tracing::warn!(run = %run_id, error = %err, "cannot read the heartbeat's answer");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            Err(Failed::Gone | Failed::Unauthorized(_)) => Renewal::Lost,
            Err(Failed::Again(why)) => {
                // The lease outlives a few failed renewals.
                tracing::warn!(run = %run_id, %why, "cannot renew the lease");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let cancelled = matches!(renewal, Renewal::CancelRequested(_));
        if !heard(run_id, renewal, &lease, &stop) {
            return;
        }
        if cancelled {
            // Answered at once while the cancel stands: renew at a calmer pace meanwhile.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
