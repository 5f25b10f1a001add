//! The store: the one place with SQL, behind one seam. [`Store`] is what the rest of chatrun
//! calls; which backend answers is chosen by `database_url` when it connects, and nothing above
//! `store/` knows which (as Oban's engines, River's drivers).
//!
//! - `sqlite/`: the embedded default, a SQLite file in WAL mode.
//! - [`model`]: what goes in and out, the same for every backend.
//!
//! Every `*_at` time is integer milliseconds passed in by the caller ([`now_ms`] in production),
//! so every statement is deterministic under test. `tests/store_suite.rs` runs one suite on every
//! backend.

pub mod model;
// Sample data for the store's tests (here and `tests/store_suite.rs`).
#[doc(hidden)]
pub mod samples;
mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use model::{
    Ack, Claim, DeliveryRow, DeliveryState, Insert, Inserted, JobSteps, NewRun, Position,
    RunFilter, RunResult, StepResult,
};
pub use sqlite::flush::FlushCounts;

use crate::domain::{Address, Delivery, RunId, RunRow, StepRow, TestFailureRow};

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database said no.
    #[error("database error")]
    Sqlx(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("cannot migrate the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database file's folder could not be created.
    #[error("cannot create the database folder {0}")]
    Folder(String, #[source] std::io::Error),
    /// The thread that stores triggers could not be started.
    #[error("cannot start the thread that stores triggers")]
    Batcher(#[source] std::io::Error),
    /// A commit could not be synced to disk.
    #[error("cannot sync the database to disk")]
    Flush(#[source] std::io::Error),
    /// A write waited longer than `busy_timeout_ms` for its turn.
    #[error("the database is busy: a write waited longer than busy_timeout_ms")]
    Busy,
    /// The store was closed (chatrun is shutting down).
    #[error("the store is closed")]
    Closed,
    /// The request that asked for this write went away before it was stored (its twin from the
    /// chat server's retry is stored instead).
    #[error("the request went away before it was stored")]
    Abandoned,
    /// The batch of triggers this one was stored with failed.
    #[error(transparent)]
    Batch(Arc<Error>),
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Milliseconds since the Unix epoch, the unit of every `*_at` column.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds in a duration, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How long a write waits for another writer's lock unless configured.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle on the database, whichever backend it is; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// The backends. A second one is a variant here, a folder beside `sqlite/`, its migrations, and
/// an arm in [`Store::connect_with`]; the compiler then names every method it must implement.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Store),
}

impl Store {
    /// Opens (creating a SQLite file and its folder if needed) and migrates the database; a
    /// write waits up to [`DEFAULT_BUSY_TIMEOUT`] for another writer.
    ///
    /// # Errors
    ///
    /// The URL names no backend, the database cannot be opened, or a migration failed.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, DEFAULT_BUSY_TIMEOUT).await
    }

    /// [`Store::connect`], with a write waiting up to `busy_timeout` for another writer's lock
    /// before it fails (`busy_timeout_ms`).
    ///
    /// # Errors
    ///
    /// The URL names no backend, the database cannot be opened, or a migration failed.
    pub async fn connect_with(url: &str, busy_timeout: Duration) -> Result<Self> {
        let backend = Backend::Sqlite(sqlite::Store::connect_with(url, busy_timeout).await?);
        Ok(Self { backend })
    }

    /// Writes that waited for a sync and the syncs done, since start-up.
    pub fn flush_counts(&self) -> FlushCounts {
        match &self.backend {
            Backend::Sqlite(store) => store.flush_counts(),
        }
    }
}

/// The backend-independent methods: each is the backend's own, documented there.
macro_rules! delegate {
    ($($(#[doc = $doc:expr])* fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;)*) => {
        impl Store {
            $(
                $(#[doc = $doc])*
                #[allow(clippy::missing_errors_doc)]
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.backend {
                        Backend::Sqlite(store) => store.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate! {
    /// Answers when the database does.
    fn ping(&self) -> Result<()>;
    /// Closes every connection (on shutdown).
    fn close(&self) -> ();
    /// Stores a trigger's run (once per platform and message id) with its acknowledgement,
    /// worded by `ack` once its number and place are known.
    fn insert_run(
        &self,
        new: &NewRun,
        now: i64,
        ack: impl FnOnce(RunId, Position, &NewRun) -> Ack + Send + 'static,
    ) -> Result<Insert>;
    /// Claims the next queued (or lease-expired) run, if one may run.
    fn try_claim(&self, claim: Claim<'_>) -> Result<Option<RunRow>>;
    /// Extends the lease of `attempt`; false when the run is no longer ours.
    fn renew(&self, run_id: RunId, attempt: i64, lease_until: i64) -> Result<bool>;
    /// Marks a step running.
    fn start_step(&self, run_id: RunId, position: usize, now: i64) -> Result<()>;
    /// Records a step's result.
    fn finish_step(&self, run_id: RunId, position: usize, result: &StepResult) -> Result<()>;
    /// A run's failed tests.
    fn test_failures(&self, run_id: RunId) -> Result<Vec<TestFailureRow>>;
    /// Records a run's result and its reply in one write, and claims the next run with it.
    fn finish_run(
        &self,
        run_id: RunId,
        attempt: i64,
        result: &RunResult,
        reply: Option<&Address>,
        last_step: Option<(usize, &StepResult)>,
        next: Option<Claim<'_>>,
    ) -> Result<(bool, Option<RunRow>)>;
    /// Runs whose lease expired.
    fn expired_runs(&self, now: i64) -> Result<Vec<RunRow>>;
    /// Ends a run whose worker stopped under it as interrupted, with its reply.
    fn interrupt_run(
        &self,
        run_id: RunId,
        attempt: i64,
        now: i64,
        error: &str,
        reply: Option<&Address>,
    ) -> Result<bool>;
    /// Puts a run whose lease expired back in the queue.
    fn requeue_expired(&self, run_id: RunId, attempt: i64, now: i64) -> Result<bool>;
    /// The running runs and their lease owners.
    fn running_leases(&self) -> Result<Vec<(RunId, Option<String>)>>;
    /// Expires the lease of a run `owner` held.
    fn expire_lease(&self, run_id: RunId, owner: &str) -> Result<bool>;
    /// Cancels a run that has not started, with its reply.
    fn cancel_queued(
        &self,
        run_id: RunId,
        reason: &str,
        now: i64,
        reply: Option<&Address>,
    ) -> Result<bool>;
    /// The queued and running runs, in queue order.
    fn active_runs(&self) -> Result<Vec<RunRow>>;
    /// Puts a claimed run back in the queue (shutdown before it started).
    fn requeue(&self, run_id: RunId, attempt: i64) -> Result<bool>;
    /// One run.
    fn get_run(&self, run_id: RunId) -> Result<Option<RunRow>>;
    /// A run's steps, in order.
    fn steps(&self, run_id: RunId) -> Result<Vec<StepRow>>;
    /// The newest runs before `before`.
    fn list_runs(&self, before: Option<RunId>, limit: i64) -> Result<Vec<RunRow>>;
    /// The newest runs before `before` that `filter` matches.
    fn search_runs(
        &self,
        filter: &RunFilter,
        before: Option<RunId>,
        limit: i64,
    ) -> Result<Vec<RunRow>>;
    /// How many runs there are, and how many are active.
    fn counts(&self) -> Result<(i64, i64)>;
    /// Queues a delivery, due at once.
    fn enqueue_delivery(&self, delivery: &Delivery, now: i64) -> Result<()>;
    /// Claims the delivery due first, holding it until `hold_until`.
    fn try_claim_delivery(&self, now: i64, hold_until: i64) -> Result<Option<DeliveryRow>>;
    /// When the next delivery is due.
    fn next_delivery_at(&self) -> Result<Option<i64>>;
    /// Marks a delivery sent.
    fn mark_sent(&self, outbox_id: i64, now: i64) -> Result<()>;
    /// Schedules a delivery's next attempt.
    fn mark_retry(
        &self,
        outbox_id: i64,
        next_attempt_at: i64,
        error: &str,
        unsure: bool,
    ) -> Result<()>;
    /// Gives a delivery up.
    fn mark_dead(&self, outbox_id: i64, error: &str) -> Result<()>;
    /// How a run's deliveries went.
    fn deliveries(&self, run_id: RunId) -> Result<Vec<DeliveryState>>;
}
