//! Where runs' logs are kept: the one seam between capturing or reading a run's output and the
//! place it lies. Files under the data folder's `logs/` ([`LogStore::files`], the embedded
//! default), or chunks in a database that several instances share ([`LogStore::database`]), so
//! that any instance shows any run's log, live; neither the worker nor the pages know which.

use crate::domain::{RunId, RunRow};

use super::*;

/// Where runs' logs are kept, and their cap; cheap to clone.
#[derive(Debug, Clone)]
pub struct LogStore {
    backend: Backend,
    max_bytes: u64,
}

#[derive(Debug, Clone)]
enum Backend {
    /// `<dir>/<run>.log`, with `<run>.log.parts/` while a long run goes; and the chunks in
    /// this store of the runs that remote agents ran.
    Files(PathBuf, Option<crate::store::Store>),
    /// `log_chunk` rows ([`super::rows`]).
    Database(crate::store::Store),
}

/// How often a page that follows a log file looks for new output.
const FILE_FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// How long a page that follows a log in the database waits for its notification before it
/// looks anyway (a notification lost while the connection was down).
const DATABASE_FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Waits for a log's new output ([`LogStore::follow`]).
#[derive(Debug)]
pub struct Follow(Option<crate::store::LogWatch>, Duration);

impl Follow {
    /// Resolves when run `run_id`'s log may have grown since the last look: at its chunks'
    /// next notification, or after a while (a file, or a notification lost).
    pub async fn wait(&mut self, run_id: RunId) {
        match &mut self.0 {
            None => tokio::time::sleep(self.1).await,
            Some(watch) => {
                let _ = tokio::time::timeout(self.1, watch.grown(run_id)).await;
            }
        }
    }
}

impl LogStore {
    /// Logs as files in `dir`, each capped at `max_bytes` (`max_log_bytes`).
    pub fn files(dir: PathBuf, max_bytes: u64) -> Self {
        Self {
            backend: Backend::Files(dir, None),
            max_bytes,
        }
    }

    /// These logs, and those of runs remote agents ran, which are chunks in `store`.
    #[must_use]
    pub fn with_agents_in(self, store: crate::store::Store) -> Self {
        match self.backend {
            Backend::Files(dir, _) => Self {
                backend: Backend::Files(dir, Some(store)),
                ..self
            },
            Backend::Database(_) => self,
        }
    }

    /// Logs as chunks in `store`'s database, each capped at `max_bytes` (at most
    /// [`super::MAX_DATABASE_LOG_BYTES`]).
    pub fn database(store: crate::store::Store, max_bytes: u64) -> Self {
        Self {
            backend: Backend::Database(store),
            max_bytes: max_bytes.min(super::MAX_DATABASE_LOG_BYTES),
        }
    }

    /// The cap every log is held to.
    pub fn cap(&self) -> Cap {
        Cap::new(self.max_bytes)
    }

    /// A follower of a run's log: make it before reading, so no output after the read is
    /// missed.
    pub fn follow(&self) -> Follow {
        match &self.backend {
            Backend::Files(_, store) => Follow(
                store.as_ref().map(crate::store::Store::watch_logs),
                FILE_FOLLOW_EVERY,
            ),
            Backend::Database(store) => Follow(Some(store.watch_logs()), DATABASE_FOLLOW_EVERY),
        }
    }

    /// Starts capturing run `run_id`'s output; `again` when an earlier attempt of the run may
    /// have logged something, which is removed first (see [`LogSink::create`]).
    pub async fn capture(&self, run_id: RunId, again: bool) -> LogSink {
        match &self.backend {
            Backend::Files(dir, _) => {
                LogSink::create(&file(dir, run_id), self.max_bytes, again).await
            }
            Backend::Database(store) => {
                LogSink::database(store.clone(), run_id, self.max_bytes, again).await
            }
        }
    }

    /// `run`'s log as readers get it: what is stored of it, or the database's head for a
    /// finished run whose whole output fitted there (it has nothing stored besides).
    pub async fn open(&self, run: &RunRow) -> RunLog {
        let (finished, head) = (run.status.is_finished(), &run.log_head);
        let chunks = |store: &crate::store::Store| {
            RunLog::in_database(store.clone(), run.run_id, finished, head, run.log_bytes)
        };
        match &self.backend {
            Backend::Database(store) => chunks(store).await,
            // Beside files, a remote agent's run: this attempt's (a claim clears `agent`, so an
            // earlier attempt's chunks are never read for a run the server ran itself).
            Backend::Files(_, Some(store)) if run.agent.is_some() => chunks(store).await,
            Backend::Files(dir, _) => {
                RunLog::of(file(dir, run.run_id), finished, head, run.log_bytes).await
            }
        }
    }

    /// What is stored of the log of run `run_id`, which the database no longer has.
    pub fn stored(&self, run_id: RunId) -> RunLog {
        match &self.backend {
            Backend::Files(dir, _) => RunLog::File(file(dir, run_id)),
            Backend::Database(store) => RunLog::Rows(store.clone(), run_id),
        }
    }
}

/// `<dir>/<run>.log`.
fn file(dir: &Path, run_id: RunId) -> PathBuf {
    dir.join(format!("{run_id}.log"))
}
