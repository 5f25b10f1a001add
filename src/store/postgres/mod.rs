//! The shared backend: one Postgres that several chatrun instances use at once, migrated on
//! connect (`migrations/postgres/`). Chosen by a `postgres://` `database_url`.
//!
//! What SQLite gets from being one file with one writer, this backend gets from Postgres:
//! - run numbers from a sequence (`run_number`), so two instances never give the same `#N`;
//! - claims with `for update skip locked`, and a job's `concurrency` held across instances by a
//!   transaction-scoped advisory lock per job (see [`runs`]);
//! - wake-ups through `LISTEN`/`NOTIFY`: triggers on `run`, `outbox` and `log_chunk` notify on
//!   commit, and [`listen`] turns each notification into the store's in-process signal, so a
//!   run queued on one instance wakes the workers of every other, and a run's new output the
//!   pages that follow it (the loops' slow polls stay as the net);
//! - run logs as chunks in `log_chunk` ([`logs`]), so any instance shows any run's log.
//!
//! Every write commits before it returns (Postgres syncs its log on commit), so an
//! acknowledged run is on disk, as with SQLite's flush.

mod agents;
mod batch;
mod logs;
mod outbox;
mod runs;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Executor, PgPool};
use tokio_util::sync::CancellationToken;

use super::{Result, Signals};
use crate::domain::RunId;

/// Connections per instance: the workers, the outbox, the pages and the webhooks share them.
const CONNECTIONS: u32 = 16;

/// The channels [`listen`] follows, as the triggers of `migrations/postgres/` name them.
const CHANNELS: [&str; 4] = [
    "chatrun_work",
    "chatrun_delivery",
    "chatrun_cancel",
    "chatrun_log",
];

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    /// Where [`Store::insert_run`] queues its trigger for the next batch ([`batch`]).
    batch: tokio::sync::mpsc::Sender<crate::store::batch::Request>,
    /// Stops [`listen`] when the store is closed.
    closed: CancellationToken,
}

impl Store {
    /// Connects and migrates, and starts following the other instances' notifications into
    /// `signals`. A statement waits up to `busy_timeout` for a lock before it fails.
    ///
    /// # Errors
    ///
    /// The database cannot be reached, or a migration failed.
    pub(super) async fn connect_with(
        url: &str,
        busy_timeout: Duration,
        signals: Arc<Signals>,
    ) -> Result<Self> {
        let lock_timeout = format!("set lock_timeout = {}", busy_timeout.as_millis().max(1));
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .after_connect(move |conn, _| {
                let set = lock_timeout.clone();
                Box::pin(async move {
                    conn.execute(sqlx::AssertSqlSafe(set)).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        // Two instances starting at once: the migrator takes an advisory lock, so one applies
        // and the other finds them applied.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen_all(CHANNELS).await?;
        let closed = CancellationToken::new();
        tokio::spawn(listen(listener, Arc::downgrade(&signals), closed.clone()));
        let (batch, requests) = tokio::sync::mpsc::channel(crate::store::batch::MAX_BATCH * 4);
        tokio::spawn(batch::run(pool.clone(), requests));
        Ok(Self {
            pool,
            batch,
            closed,
        })
    }

    /// Answers when the database does.
    ///
    /// # Errors
    ///
    /// The database is unreachable.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection (on shutdown).
    pub async fn close(&self) {
        self.closed.cancel();
        self.pool.close().await;
    }
}

/// Turns notifications into signals until the store is closed or dropped. When the connection
/// drops, sqlx reconnects and listens again; what was notified meanwhile is lost, so every loop
/// is woken to look for itself.
async fn listen(
    mut listener: PgListener,
    signals: std::sync::Weak<Signals>,
    closed: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            () = closed.cancelled() => return,
            received = listener.try_recv() => received,
        };
        let Some(signals) = signals.upgrade() else {
            return;
        };
        match received {
            Ok(Some(notification)) => match notification.channel() {
                "chatrun_work" => signals.work.notify_waiters(),
                "chatrun_delivery" => signals.deliveries.notify_one(),
                "chatrun_log" => {
                    let run = notification.payload().parse().ok().map(RunId);
                    let _ = signals.logs.send(run);
                }
                _ => signals.cancels.send_modify(|n| *n = n.wrapping_add(1)),
            },
            Ok(None) => wake_everyone(&signals),
            Err(err) => {
                tracing::warn!(error = %err, "lost the database's notifications; listening again");
                wake_everyone(&signals);
                drop(signals);
                // Not a busy loop while the database is down.
                tokio::select! {
                    () = closed.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Every loop waiting on the store looks again.
fn wake_everyone(signals: &Signals) {
    signals.work.notify_waiters();
    signals.deliveries.notify_one();
    signals.cancels.send_modify(|n| *n = n.wrapping_add(1));
    let _ = signals.logs.send(None);
}
