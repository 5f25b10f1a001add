//! The store: the one place with SQL, behind one seam. [`Store`] is what the rest of chatrun
//! calls; which backend answers is chosen by `database_url` when it connects, and nothing above
//! `store/` knows which (as Oban's engines, River's drivers).
//!
//! - `sqlite/`: the embedded default, a SQLite file in WAL mode.
//! - `postgres/`: a Postgres database that several chatrun instances share.
//! - [`model`]: what goes in and out, the same for every backend.
//!
//! The store also owns what other loops wait for: [`Store::wait_for_work`],
//! [`Store::wait_for_delivery`] and cancel requests ([`Store::request_cancel`], seen by the
//! run's worker through [`Store::renew`]), so that, on a shared backend, a write on one
//! instance reaches the loops of every other.
//!
//! Every `*_at` time is integer milliseconds passed in by the caller ([`now_ms`] in production),
//! so every statement is deterministic under test. `tests/store_suite.rs` runs one suite on every
//! backend.

mod batch;
pub mod model;
// Sample data for the store's tests (here and `tests/store_suite.rs`).
mod postgres;
#[doc(hidden)]
pub mod samples;
mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::futures::Notified;
use tokio::sync::{Notify, broadcast, watch};

pub use model::{
    Ack, AckFacts, AckWords, AgentToken, Claim, DeliveryRow, DeliveryState, Earlier, Inserted,
    JobSteps, LogChunk, NewRun, RunFilter, RunResult, StepResult,
};
pub use sqlite::flush::FlushCounts;

use crate::domain::{Address, AgentRow, Delivery, RunId, RunRow, StepRow, TestFailureRow};

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
    /// Nothing was stored: this many runs of the job already wait, its `queue_limit`.
    #[error("{0} runs of the job are already waiting, its limit (queue_limit)")]
    QueueFull(i64),
    /// `database_url` names no backend chatrun has.
    #[error("database_url: `{0}:` is not a database chatrun can use (sqlite: or postgres:)")]
    Url(String),
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

/// `url` with its password hidden, to be shown in errors and logs: `postgres://chatrun:***@db/x`.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}{path}")
        }
        _ => url.to_string(),
    }
}

/// Milliseconds in a duration, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How long a write waits for another writer's lock unless configured.
/// How many earlier runs a run back to green looks at to count the failed ones before it.
pub const BACK_TO_GREEN_LOOK_BACK: usize = 1000;

pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle on the database, whichever backend it is; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    signals: Arc<Signals>,
}

/// What the store tells the loops that wait on it, after the writes that concern them. For the
/// embedded backend these are in-process; a shared one feeds them from the database's
/// notifications as well, so a write on another instance wakes this one.
#[derive(Debug)]
struct Signals {
    /// A run may have become claimable (queued, or put back).
    work: Notify,
    /// A delivery was queued.
    deliveries: Notify,
    /// Counts the cancel requests, so a worker can tell one came since it looked.
    cancels: watch::Sender<u64>,
    /// The run whose log grew (`None`: any may have), for the pages that follow a log kept in
    /// the database.
    logs: broadcast::Sender<Option<RunId>>,
}

/// What [`Store::renew`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// The lease is extended; go on.
    Held,
    /// The run is no longer this attempt's (settled, or taken over): stop, and write nothing.
    Lost,
    /// The lease is extended, and someone asked for the run to be stopped, for this reason.
    CancelRequested(String),
}

/// Tells a worker that a cancel was requested since it subscribed ([`Store::watch_cancels`]),
/// for any run: it then renews its lease to see whether the request is for its own.
#[derive(Debug, Clone)]
pub struct CancelWatch(watch::Receiver<u64>);

impl CancelWatch {
    /// Resolves once a cancel was requested since the last call (or since the watch was made).
    pub async fn requested(&mut self) {
        if self.0.changed().await.is_err() {
            // The store is gone: nothing will ever be requested.
            std::future::pending::<()>().await;
        }
    }
}

/// Log writes a follower may fall behind by before it just looks again.
const LOG_WATCH_ROOM: usize = 256;

/// Tells a page that follows run logs kept in the database that one grew ([`Store::watch_logs`]).
#[derive(Debug)]
pub struct LogWatch(broadcast::Receiver<Option<RunId>>);

impl LogWatch {
    /// Resolves once run `run_id`'s log may have grown since the watch was made or last
    /// resolved.
    pub async fn grown(&mut self, run_id: RunId) {
        loop {
            match self.0.recv().await {
                Ok(Some(grown)) if grown != run_id => {}
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                // The store is gone: nothing will grow.
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

/// The backends. A second one is a variant here, a folder beside `sqlite/`, its migrations, and
/// an arm in [`Store::connect_with`]; the compiler then names every method it must implement.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Store),
    Postgres(postgres::Store),
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
        let signals = Arc::new(Signals {
            work: Notify::new(),
            deliveries: Notify::new(),
            cancels: watch::Sender::new(0),
            logs: broadcast::Sender::new(LOG_WATCH_ROOM),
        });
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(
                postgres::Store::connect_with(url, busy_timeout, signals.clone()).await?,
            )
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::Store::connect_with(url, busy_timeout).await?)
        } else {
            return Err(Error::Url(
                url.split(':').next().unwrap_or_default().to_string(),
            ));
        };
        Ok(Self { backend, signals })
    }

    /// Resolves once a run may have become claimable. Make it and `enable()` it before
    /// looking for work, so that a run queued between the look and the wait is not missed.
    pub fn wait_for_work(&self) -> Notified<'_> {
        self.signals.work.notified()
    }

    /// Resolves once a delivery was queued (at most one waiter is woken per delivery, and a
    /// wake-up with no waiter is kept for the next).
    pub fn wait_for_delivery(&self) -> Notified<'_> {
        self.signals.deliveries.notified()
    }

    /// A watch on cancel requests from now on; a worker makes it before it claims a run, so
    /// no request for that run is missed.
    pub fn watch_cancels(&self) -> CancelWatch {
        CancelWatch(self.signals.cancels.subscribe())
    }

    /// Whether several instances may share this database (Postgres): then what they must all
    /// see, such as run logs, belongs in it.
    pub fn shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// What a run's result tells besides the run: its failed tests classed (as
    /// [`Store::classified_failures`]), and, for a succeeded run after failed ones of its job
    /// with the same arguments, [`RunRow::back_to_green`] (looking back at most
    /// [`BACK_TO_GREEN_LOOK_BACK`] runs).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn result_history(
        &self,
        run: &mut RunRow,
        window: usize,
    ) -> Result<Vec<TestFailureRow>> {
        if run.status == crate::domain::RunStatus::Succeeded {
            let previous = self
                .previous_outcomes(&run.job, &run.args, run.run_id, BACK_TO_GREEN_LOOK_BACK)
                .await?;
            run.back_to_green =
                crate::domain::BackToGreen::after(&previous, BACK_TO_GREEN_LOOK_BACK);
        }
        self.classified_failures(run, window).await
    }

    /// Run `run`'s failed tests, each classed against the earlier runs of its job with the
    /// same arguments ([`crate::domain::history::classify`]): `window` is how many of the
    /// latest finished ones, this one included, may show a test flaky (`flaky_window`).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn classified_failures(
        &self,
        run: &RunRow,
        window: usize,
    ) -> Result<Vec<TestFailureRow>> {
        let mut failures = self.test_failures(run.run_id).await?;
        if failures.iter().any(|f| f.since.is_some()) {
            let earlier = self
                .history_failures(&run.job, &run.args, run.run_id, window.saturating_sub(1))
                .await?;
            crate::domain::history::classify(run.run_id, &mut failures, &earlier);
        }
        Ok(failures)
    }

    /// A watch on run logs kept in the database, from now on; a page that follows a log makes
    /// it before it reads, so no output written after the read is missed.
    pub fn watch_logs(&self) -> LogWatch {
        LogWatch(self.signals.logs.subscribe())
    }

    /// Writes that waited for a sync and the syncs done, since start-up.
    pub fn flush_counts(&self) -> FlushCounts {
        match &self.backend {
            Backend::Sqlite(store) => store.flush_counts(),
            // Postgres syncs its log on each commit, shared by the commits waiting for it.
            Backend::Postgres(_) => FlushCounts::default(),
        }
    }
}

/// The backend-independent methods: each is the backend's own, documented there.
/// `then` names what a write that succeeded tells the loops waiting on the store.
macro_rules! delegate {
    ($($(#[doc = $doc:expr])* fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty
        $(, then $signal:expr)?;)*) => {
        impl Store {
            $(
                $(#[doc = $doc])*
                #[allow(clippy::missing_errors_doc)]
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    let out = match &self.backend {
                        Backend::Sqlite(store) => store.$name($($arg),*).await,
                        Backend::Postgres(store) => store.$name($($arg),*).await,
                    };
                    $( if let Ok(out) = &out { ($signal)(&*self.signals, out) } )?
                    out
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
        ack: impl FnOnce(&AckFacts) -> Ack + Send + 'static,
    ) -> Result<Inserted>, then |signals: &Signals, inserted: &Inserted| {
        if inserted.created {
            signals.work.notify_waiters();
        }
        // Only then: each wake costs the outbox a claim on the writer, and a wake per trigger
        // kept it claiming nothing between the batches of triggers.
        if inserted.reply_queued {
            signals.deliveries.notify_one();
        }
    };
    /// Claims the next queued (or lease-expired) run, if one may run.
    fn try_claim(&self, claim: Claim<'_>) -> Result<Option<RunRow>>;
    /// Extends the lease of `attempt`, and says whether the run is still ours and whether its
    /// cancel was asked for.
    fn renew(&self, run_id: RunId, attempt: i64, lease_until: i64) -> Result<Renewal>;
    /// Asks for a running run to be stopped, for `reason`; its worker, wherever it runs, sees
    /// it when it next renews (at once, through [`Store::watch_cancels`]). False when the run
    /// is not running.
    fn request_cancel(&self, run_id: RunId, reason: &str) -> Result<bool>,
        then |signals: &Signals, asked: &bool| {
            if *asked {
                signals.cancels.send_modify(|n| *n = n.wrapping_add(1));
            }
        };
    /// Removes the chunks of run `run_id`'s log that lie within `forget` (from its start to its
    /// end) and adds `chunks`, in one transaction.
    fn write_log(&self, run_id: RunId, forget: (i64, i64), chunks: &[LogChunk]) -> Result<()>,
        then |signals: &Signals, (): &()| {
            // Nobody following is no error.
            let _ = signals.logs.send(Some(run_id));
        };
    /// The size of run `run_id`'s log in the database; `None` when it keeps none there.
    fn log_size(&self, run_id: RunId) -> Result<Option<i64>>;
    /// The chunks of run `run_id`'s log from the one that holds offset `from` (or the next)
    /// until they hold `length` bytes: `(start, bytes)`.
    fn log_range(&self, run_id: RunId, from: i64, length: i64) -> Result<Vec<(i64, Vec<u8>)>>;
    /// The newlines before the chunk of run `run_id`'s log that holds offset `at`, and its
    /// bytes before `at` (the first chunk's newlines and nothing when `at` is before it).
    fn log_lines_at(&self, run_id: RunId, at: i64) -> Result<Option<(i64, Vec<u8>)>>;
    /// Records agent token `name`, found by the SHA-256 `token_hash` of the token; false when
    /// one of that name is in use.
    fn create_agent_token(&self, name: &str, token_hash: &str, now: i64) -> Result<bool>;
    /// Every agent token (never the token itself).
    fn agent_tokens(&self) -> Result<Vec<AgentToken>>;
    /// Revokes agent token `name`; false when none of that name is in use.
    fn revoke_agent_token(&self, name: &str, now: i64) -> Result<bool>;
    /// The name of the agent token in use whose SHA-256 is `token_hash`.
    fn agent_token_name(&self, token_hash: &str) -> Result<Option<String>>;
    /// Records that an agent (using token `token_name`) was heard from.
    fn agent_seen(&self, agent: &AgentRow, token_name: &str) -> Result<()>;
    /// Every agent heard from.
    fn agents(&self) -> Result<Vec<AgentRow>>;
    /// Records that remote agent `agent` runs attempt `attempt` of run `run_id`.
    fn set_run_agent(&self, run_id: RunId, attempt: i64, agent: &str) -> Result<()>;
    /// The lease owner and attempt of run `run_id` while it runs.
    fn run_lease(&self, run_id: RunId) -> Result<Option<(String, i64)>>;
    /// Marks a step running.
    fn start_step(&self, run_id: RunId, position: usize, now: i64) -> Result<()>;
    /// Records a step's result.
    fn finish_step(&self, run_id: RunId, position: usize, result: &StepResult) -> Result<()>;
    /// A run's failed tests (unclassed: see [`Store::classified_failures`]).
    fn test_failures(&self, run_id: RunId) -> Result<Vec<TestFailureRow>>;
    /// The finished runs (succeeded or failed) of `job` with `args` before run `before`,
    /// newest first, at most `limit`: `(run, whether it failed)`.
    fn previous_outcomes(
        &self,
        job: &str,
        args: &str,
        before: RunId,
        limit: usize,
    ) -> Result<Vec<(RunId, bool)>>;
    /// The failed tests of the `runs` latest finished runs of `job` with `args` before run
    /// `before`.
    fn history_failures(
        &self,
        job: &str,
        args: &str,
        before: RunId,
        runs: usize,
    ) -> Result<Vec<crate::domain::history::EarlierFailure>>;
    /// Records a run's result and its reply in one write, and claims the next run with it.
    fn finish_run(
        &self,
        run_id: RunId,
        attempt: i64,
        result: &RunResult,
        reply: Option<&Address>,
        last_step: Option<(usize, &StepResult)>,
        next: Option<Claim<'_>>,
    ) -> Result<(bool, Option<RunRow>)>, then |signals: &Signals, (stored, _): &(bool, _)| {
        if *stored && reply.is_some() {
            signals.deliveries.notify_one();
        }
    };
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
    ) -> Result<bool>, then |signals: &Signals, done: &bool| {
        if *done && reply.is_some() {
            signals.deliveries.notify_one();
        }
    };
    /// Puts a run whose lease expired back in the queue.
    fn requeue_expired(&self, run_id: RunId, attempt: i64, now: i64) -> Result<bool>,
        then |signals: &Signals, done: &bool| {
            if *done {
                signals.work.notify_waiters();
            }
        };
    /// The running runs and their lease owners.
    fn running_leases(&self) -> Result<Vec<(RunId, Option<String>)>>;
    /// When the first lease of a running run ends.
    fn next_lease_expiry(&self) -> Result<Option<i64>>;
    /// Expires the lease of a run `owner` held.
    fn expire_lease(&self, run_id: RunId, owner: &str) -> Result<bool>;
    /// Cancels a run that has not started, with its reply.
    fn cancel_queued(
        &self,
        run_id: RunId,
        reason: &str,
        now: i64,
        reply: Option<&Address>,
    ) -> Result<bool>, then |signals: &Signals, done: &bool| {
        if *done && reply.is_some() {
            signals.deliveries.notify_one();
        }
    };
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
    fn enqueue_delivery(&self, delivery: &Delivery, now: i64) -> Result<()>,
        then |signals: &Signals, (): &()| signals.deliveries.notify_one();
    /// Claims the delivery due first for `owner`, holding it until `hold_until`.
    fn try_claim_delivery(
        &self,
        now: i64,
        hold_until: i64,
        owner: &str,
    ) -> Result<Option<DeliveryRow>>;
    /// The deliveries being sent, and by which process.
    fn claimed_deliveries(&self) -> Result<Vec<(i64, Option<String>)>>;
    /// Makes a delivery a dead process was sending due now.
    fn release_delivery(&self, outbox_id: i64, owner: &str, now: i64) -> Result<bool>;
    /// Records that a delivery is sent without knowing whether an earlier attempt arrived.
    fn mark_blind(&self, outbox_id: i64) -> Result<()>;
    /// Settles the thread of a run whose thread could not be looked up when it came, or
    /// whose anchor was posted (Slack).
    fn settle_thread(&self, run_id: RunId, root: Option<&str>) -> Result<()>;
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
        search_failed: bool,
    ) -> Result<()>;
    /// Gives a delivery up.
    fn mark_dead(&self, outbox_id: i64, error: &str) -> Result<()>;
    /// How a run's deliveries went.
    fn deliveries(&self, run_id: RunId) -> Result<Vec<DeliveryState>>;
    /// Records a web session.
    fn create_session(&self, token_hash: &str, user: &str, now: i64, expires_at: i64) -> Result<()>;
    /// The user of a live web session.
    fn session_user(&self, token_hash: &str, now: i64) -> Result<Option<String>>;
    /// Ends a web session.
    fn end_session(&self, token_hash: &str) -> Result<()>;
    /// A key made once and kept: `fresh` the first time.
    fn secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>>;
    /// Counts a request for the rate limit, or says how long (ms) until the next is allowed.
    fn count_request(&self, key: &str, now: i64, per_minute: i64) -> Result<Option<i64>>;
}

#[cfg(test)]
mod tests {
    use super::shown_url;

    #[test]
    fn a_urls_password_is_never_shown() {
        assert_eq!(
            shown_url("postgres://chatrun:s3cret@db:5432/chatrun?sslmode=require"),
            "postgres://chatrun:***@db:5432/chatrun?sslmode=require"
        );
        assert_eq!(
            shown_url("postgres://chatrun@db/chatrun"),
            "postgres://chatrun@db/chatrun"
        );
        assert_eq!(
            shown_url("sqlite://data/chatrun.db"),
            "sqlite://data/chatrun.db"
        );
        assert_eq!(shown_url("mysql://a:b@c"), "mysql://a:***@c");
    }
}
