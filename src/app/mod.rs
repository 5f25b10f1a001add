//! Building and running chatrun: [`App::build`] checks everything that can fail at start-up
//! (configuration, jobs, database, port) before [`App::run`] starts the loops: the HTTP server,
//! the workers and the outbox sender, all stopped by one cancellation token.

pub mod shutdown;
pub mod telemetry;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, default_public_url};
use crate::domain::random_id;
use crate::http::AppState;
use crate::outbox::Sender;
use crate::store::Store;
use crate::worker::{Reaper, Worker};
use crate::{catalog, chat, http};

/// A built, not yet running, chatrun.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    /// Learns the bot's user id in the background, when it is not configured.
    mattermost: chat::mattermost::Client,
}

impl App {
    /// Loads the jobs, opens and migrates the database, prepares the local token and binds the
    /// port.
    ///
    /// # Errors
    ///
    /// Anything that would stop chatrun from serving, with what it was doing.
    pub async fn build(mut config: Config) -> anyhow::Result<Self> {
        // reqwest is built without a default TLS provider; ring builds in seconds, aws-lc in
        // minutes. A second install (tests build several apps) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let catalog = catalog::load(&config.jobs_dir).map_err(|problems| {
            let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
            anyhow!(
                "the jobs have errors (run `chatrun check` for the list):\n{}",
                list.join("\n")
            )
        })?;
        if catalog.is_empty() {
            tracing::warn!(dir = %config.jobs_dir.display(), "no jobs defined: add NAME.toml files");
        }
        for path in catalog::ignored_files(&config.jobs_dir) {
            tracing::warn!(file = %path.display(), "not a .toml file, so not a job: ignored");
        }
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data folder {}",
                config.data_dir.display()
            )
        })?;
        let store = Store::connect_with(&config.database_url, config.busy_timeout)
            .await
            .with_context(|| {
                let url = crate::store::shown_url(&config.database_url);
                format!("cannot open the database {url}")
            })?;

        let tokens = if config.mattermost.tokens.is_empty() {
            vec![ensure_local_token(&config.local_token_path())?]
        } else {
            config.mattermost.tokens.clone()
        };
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!(
                "cannot listen on {} (is another chatrun running? set `listen` to another port)",
                config.listen
            )
        })?;
        let addr = listener
            .local_addr()
            .context("cannot read the bound address")?;
        // Port 0 (tests, several instances) picks a free port: links must name the real one.
        if config.listen.port() == 0 && config.public_url == default_public_url(config.listen) {
            config.public_url = default_public_url(addr);
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("chatrun/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        // The platforms: one client each, in one registry for the outbox and the workers.
        let mattermost = chat::mattermost::Client::new(client.clone(), config.mattermost.clone())
            .accepting(tokens)
            .with_buttons(&config.public_url);
        let teams = chat::teams::Client::new(client.clone(), config.teams.clone());
        let mut adapters: Vec<Arc<dyn chat::Adapter>> =
            vec![Arc::new(mattermost.clone()), Arc::new(teams)];
        if config.slack.enabled() {
            adapters.push(Arc::new(chat::slack::Client::new(
                client,
                config.slack.clone(),
            )));
        }
        let chat = chat::Registry::new(adapters);

        let sessions = crate::http::auth::Sessions::load(store.clone())
            .await
            .context("cannot read the web sessions' key from the database")?;
        // Logs go where every instance can read them: the shared database, or files.
        let logs = if store.shared() {
            crate::logs::LogStore::database(store.clone(), config.max_log_bytes)
        } else {
            crate::logs::LogStore::files(config.logs_dir(), config.max_log_bytes)
                .with_agents_in(store.clone())
        };
        let state = AppState::new(crate::http::Shared {
            service: crate::service::Context {
                logs,
                store,
                catalog: Arc::new(catalog),
                config: Arc::new(config),
                chat,
            },
            sessions: Arc::new(sessions),
            draining: CancellationToken::new(),
        });
        Ok(Self {
            listener,
            addr,
            state,
            mattermost,
        })
    }

    /// The address the server is bound to (the real port when `listen` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (store, catalog, configuration).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves and works until `shutdown` is cancelled, then shuts down in order: webhooks are
    /// refused (503) at once, running steps get `shutdown_grace` to finish and are then stopped
    /// (their runs end interrupted), the replies that are due are sent, and the server stops.
    ///
    /// # Errors
    ///
    /// The server failed.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let state = self.state;
        let config = state.config.clone();
        let workers = TaskTracker::new();
        let job_steps = Worker::job_steps_of(&state.catalog);
        let worker = |n: usize| Worker {
            store: state.store.clone(),
            catalog: state.catalog.clone(),
            config: config.clone(),
            owner: crate::worker::owner_name(n),
            chat: state.chat.clone(),
            logs: state.logs.clone(),
            job_steps: job_steps.clone(),
        };

        // Before any worker claims: settle what a stopped chatrun left running.
        let reaper = Reaper { worker: worker(0) };
        if let Err(err) = reaper.reap().await {
            tracing::warn!(error = ?err, "cannot look for runs left running");
        }
        // Without the local agent, remote agents run every run.
        let local = if config.local_agent {
            config.workers
        } else {
            0
        };
        for n in 0..local {
            workers.spawn(worker(n).run(shutdown.clone()));
        }
        workers.spawn(reaper.run(shutdown.clone()));

        let sender = Sender {
            store: state.store.clone(),
            config: config.clone(),
            chat: state.chat.clone(),
            owner: crate::runner::orphans::owner("outbox"),
        };
        let stop_sending = CancellationToken::new();
        let sending = tokio::spawn(sender.clone().run(stop_sending.clone()));
        let background = TaskTracker::new();
        if config.mattermost.bot_user_id.is_none() && config.mattermost.rest().is_some() {
            background.spawn(resolve_bot_user(self.mattermost, shutdown.clone()));
        }

        let store = state.store.clone();
        let draining = state.draining.clone();
        let stop_serving = CancellationToken::new();
        let mut server = tokio::spawn(http::serve(self.listener, state, stop_serving.clone()));
        let failed = tokio::select! {
            () = shutdown.cancelled() => None,
            served = &mut server => Some(served),
        };
        // From here on webhooks get 503; the pages still answer.
        draining.cancel();
        shutdown.cancel();

        workers.close();
        let wait = config.shutdown_grace + config.kill_grace + Duration::from_secs(10);
        if tokio::time::timeout(wait, workers.wait()).await.is_err() {
            tracing::warn!("some runs did not stop in time");
        }
        stop_sending.cancel();
        let _ = sending.await;
        let until = tokio::time::Instant::now() + FLUSH_TIME;
        match sender.drain(until).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(replies = n, "sent the replies that were due"),
            Err(err) => tracing::warn!(error = ?err, "cannot send the replies that were due"),
        }
        background.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), background.wait()).await;

        stop_serving.cancel();
        let served = match failed {
            Some(served) => served,
            None => server.await,
        };
        store.close().await;
        let flushed = store.flush_counts();
        tracing::info!(
            durable_writes = flushed.waits,
            syncs = flushed.syncs,
            sync_ms = flushed.sync_time.as_millis(),
            "stopped"
        );
        served
            .context("the HTTP server panicked")?
            .context("the HTTP server failed")
    }
}

/// How long shutdown may spend sending the replies that are due.
pub const FLUSH_TIME: Duration = Duration::from_secs(10);

/// Reads the local token, creating it (26 random letters and digits, readable only by this
/// user) on first start.
///
/// # Errors
///
/// The file can be neither read nor created.
pub fn ensure_local_token(path: &Path) -> anyhow::Result<String> {
    if let Ok(token) = std::fs::read_to_string(path) {
        let token = token.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let token = random_id()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write the local token {}", path.display()))?;
    writeln!(file, "{token}").with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "created the local trigger token");
    Ok(token)
}

/// Learns the bot's user id from `GET /api/v4/users/me`, retrying every minute until it works.
async fn resolve_bot_user(mattermost: chat::mattermost::Client, shutdown: CancellationToken) {
    loop {
        match mattermost.learn_bot_user_id().await {
            Ok(id) => {
                tracing::info!(bot_user_id = %id, "bot account found; its posts are ignored");
                return;
            }
            Err(err) => tracing::warn!(error = %err,
                "cannot look up the bot account (set mattermost.bot_user_id to skip this); retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}
