//! Where runs' logs are kept: the one seam between capturing or reading a run's output and the
//! place it lies. Files under the data folder's `logs/` today ([`LogStore::files`]); a shared
//! backend (chunks in the database, so that any instance can show any run) is one more variant
//! here, and neither the worker nor the pages change.

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
    /// `<dir>/<run>.log`, with `<run>.log.parts/` while a long run goes.
    Files(PathBuf),
}

impl LogStore {
    /// Logs as files in `dir`, each capped at `max_bytes` (`max_log_bytes`).
    pub fn files(dir: PathBuf, max_bytes: u64) -> Self {
        Self {
            backend: Backend::Files(dir),
            max_bytes,
        }
    }

    /// The cap every log is held to.
    pub fn cap(&self) -> Cap {
        Cap::new(self.max_bytes)
    }

    /// Starts capturing run `run_id`'s output; `again` when an earlier attempt of the run may
    /// have logged something, which is removed first (see [`LogSink::create`]).
    pub async fn capture(&self, run_id: RunId, again: bool) -> LogSink {
        match &self.backend {
            Backend::Files(_) => LogSink::create(&self.file(run_id), self.max_bytes, again).await,
        }
    }

    /// `run`'s log as readers get it: what is stored of it, or the database's head for a
    /// finished run whose whole output fitted there (it has nothing stored besides).
    pub async fn open(&self, run: &RunRow) -> RunLog {
        match &self.backend {
            Backend::Files(_) => {
                let path = self.file(run.run_id);
                RunLog::of(path, run.status.is_finished(), &run.log_head, run.log_bytes).await
            }
        }
    }

    /// What is stored of the log of run `run_id`, which the database no longer has.
    pub fn stored(&self, run_id: RunId) -> RunLog {
        match &self.backend {
            Backend::Files(_) => RunLog::File(self.file(run_id)),
        }
    }

    fn file(&self, run_id: RunId) -> PathBuf {
        match &self.backend {
            Backend::Files(dir) => dir.join(format!("{run_id}.log")),
        }
    }
}
