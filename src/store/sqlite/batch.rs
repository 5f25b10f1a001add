//! Triggers stored in batches: the runs of every trigger waiting at the same moment are
//! inserted by one transaction of a few statements, whatever their number.
//!
//! [`Store::insert_run`](super::Store::insert_run) hands its trigger to one task, [`run`], on a
//! thread of its own ([`start`]), which takes every trigger queued meanwhile (up to
//! [`MAX_BATCH`]) and, in one `BEGIN IMMEDIATE` transaction: looks up which messages are stored
//! already and each job's queue (one statement each, over a JSON list), numbers the new runs
//! and gives each caller its run number and queue position, words each acknowledgement with
//! the caller's function, inserts all the runs with their acknowledgements (one statement),
//! queues their thread replies, and commits. Each caller gets its answer once the commit is on
//! disk ([`super::flush`]).
//!
//! N.B. The acknowledgements are worded here, not by the callers: asking each caller's task
//! and waiting for its answer held the write lock while those tasks waited their turn behind
//! the other requests being served.
//!
//! The statements go to the writer's connection thread in two messages (begin and look up;
//! insert and commit), since each message costs two thread wake-ups, which on a busy machine
//! cost more than the statements.
//!
//! The run numbers are chosen here, as SQLite's AUTOINCREMENT would choose them: nothing else
//! can write between the look-up and the insert, since the transaction holds the write lock.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{Row, SqliteConnection};
use tokio::sync::mpsc;

use super::flush::Flusher;
use super::{Error, Result, Writer, outbox};
use crate::domain::{Ack, AckWords, NewRun};
use crate::domain::{Delivery, ReplyIntent};
use crate::domain::{RunId, RunStatus};
use crate::store::batch::{Dones, Fate, Queue, decide, outcomes, split};
use crate::store::model::{Inserted, typical_ms};

pub use crate::store::batch::{MAX_BATCH, Request};

/// Starts [`run`] on a thread of its own, with a runtime of its own.
///
/// N.B. Not on the server's threads: there the batch waited its turn behind the requests being
/// served twice per batch, each time the writer's thread answered (a task woken from outside
/// the runtime's threads waits in its shared queue, which each thread looks at only between
/// dozens of its own tasks). The batch is the one path every trigger goes through in turn, so
/// its waits count for every trigger (docs/performance.md).
///
/// # Errors
///
/// The runtime or the thread could not be made.
pub fn start(
    writer: Writer,
    requests: mpsc::Receiver<Request>,
    flusher: Arc<Flusher>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("chatrun-batch".into())
        .spawn(move || runtime.block_on(run(writer, requests, flusher)))?;
    Ok(())
}

/// Stores the requests of `requests` in batches until every sender is gone. Callers hear of a
/// batch once `flusher` has synced its commit (and of every batch before this returns).
async fn run(writer: Writer, mut requests: mpsc::Receiver<Request>, flusher: Arc<Flusher>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut syncing = tokio::task::JoinSet::new();
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let requests = std::mem::take(&mut batch);
        let (outcomes, dones) = match store(&writer, requests).await {
            Ok(stored) => stored,
            Err((err, dones)) => {
                let err = Arc::new(err);
                for done in dones {
                    let _ = done.send(Err(Error::Batch(err.clone())));
                }
                continue;
            }
        };
        // (The syncs that answered already are let go.)
        while syncing.try_join_next().is_some() {}
        // The next batch goes on while this one's commit is synced (and shares the sync).
        let flusher = flusher.clone();
        syncing.spawn(async move {
            let synced = flusher
                .flush()
                .await
                .map_err(|err| Arc::new(Error::Flush(err)));
            for (outcome, done) in outcomes.into_iter().zip(dones) {
                let _ = done.send(match &synced {
                    Ok(()) => outcome,
                    Err(err) => Err(Error::Batch(err.clone())),
                });
            }
        });
    }
    while syncing.join_next().await.is_some() {}
}

/// Stores one batch and commits: each request's outcome, in order, with where to send it.
async fn store(
    writer: &Writer,
    requests: Vec<Request>,
) -> std::result::Result<(Vec<Result<Inserted>>, Dones), (Error, Dones)> {
    let (news, words, dones) = split(requests.into_iter());
    let stored = match writer.lock_first().await {
        Ok(mut conn) => {
            let stored = store_on(&mut conn, &news, words, &dones).await;
            super::rolled_back_on_error(&mut conn, stored).await
        }
        Err(err) => Err(err),
    };
    match stored {
        Ok(outcomes) => Ok((outcomes, dones)),
        Err(err) => Err((err, dones)),
    }
}

/// [`store`] on the writer's connection: two round trips to it (begin and look up;
/// insert and commit) whatever the batch's size, and more only for thread replies.
async fn store_on(
    conn: &mut SqliteConnection,
    news: &[(NewRun, i64)],
    words: Vec<AckWords>,
    dones: &Dones,
) -> Result<Vec<Result<Inserted>>> {
    let (stored, mut queues, newest) = look_up(conn, news).await?;
    // Numbered in arrival order, as SQLite's AUTOINCREMENT would number them.
    let numbers = (newest + 1..).map(RunId);
    let fates = decide(news, words, dones, &stored, &mut queues, numbers);

    let rows: Vec<serde_json::Value> = news
        .iter()
        .zip(&fates)
        .filter_map(|((new, now), fate)| match fate {
            Fate::Worded { run_id, ack } => Some(row(*run_id, new, *now, &ack.text)),
            _ => None,
        })
        .collect();
    let replies: Vec<(RunId, &Delivery, i64)> = news
        .iter()
        .zip(&fates)
        .filter_map(|((_, now), fate)| match fate {
            Fate::Worded {
                run_id,
                ack:
                    Ack {
                        delivery: Some(delivery),
                        ..
                    },
            } => Some((*run_id, delivery, *now)),
            _ => None,
        })
        .collect();
    let rows = serde_json::Value::from(rows).to_string();
    if replies.is_empty() {
        sqlx::query(sqlx::AssertSqlSafe(format!("{INSERT_RUNS}; commit")))
            .bind(rows)
            .execute(&mut *conn)
            .await?;
    } else {
        sqlx::query(INSERT_RUNS)
            .bind(rows)
            .execute(&mut *conn)
            .await?;
        for (run_id, delivery, now) in replies {
            let intent = ReplyIntent::Worded(delivery.clone());
            outbox::insert(conn, Some(run_id), &intent, now).await?;
        }
        sqlx::query("commit").execute(&mut *conn).await?;
    }

    Ok(outcomes(&fates))
}

/// Begins the batch's transaction and reads, in the same round trip: the runs already stored
/// for its messages, by (platform, message id); each job's queue (`job_queue` is kept by
/// triggers on `run`); and the newest run number ever given.
async fn look_up<'a>(
    conn: &mut SqliteConnection,
    news: &'a [(NewRun, i64)],
) -> Result<(
    HashMap<(&'a str, &'a str), Inserted>,
    HashMap<&'a str, Queue>,
    i64,
)> {
    let keys: Vec<serde_json::Value> = news
        .iter()
        .map(|(new, _)| serde_json::json!([new.origin.platform, new.message_id]))
        .collect();
    let mut jobs: Vec<&str> = news.iter().map(|(new, _)| new.job.as_str()).collect();
    jobs.sort_unstable();
    jobs.dedup();
    // (One index skipped in all, `?1` in the last statement: see `Store::write_script`.)
    // IMMEDIATE: the transaction reads, then writes; it takes the write lock first, so no
    // other writer (another chatrun process) slips in between. The durations: one index range
    // per status, newest first (`run_status_job_id`), not a walk back through queued runs; the
    // last 20 finished runs give the job's typical duration. That 20 is written into the SQL, not
    // bound: SQLite reads a bound LIMIT while planning, and then compiles the statement again
    // every time it is bound (a tenth of the CPU of an acknowledgement, by `perf`).
    let rows = sqlx::query(
        "begin immediate;
         select 'stored', r.platform, r.message_id, r.run_id, r.ack_text
         from json_each(?1) m
         join run r on r.platform = m.value ->> 0 and r.message_id = m.value ->> 1;
         select 'queue', j.value,
                coalesce((select queued from job_queue where job = j.value), 0),
                (select count(*) from run where status = 'running' and job = j.value),
                (select json_group_array(duration) from (
                    select run_id, duration from (
                        select run_id, finished_at - started_at as duration from run
                        where status = 'succeeded' and job = j.value
                            and started_at is not null and finished_at is not null
                        order by run_id desc limit 20)
                    union all
                    select run_id, duration from (
                        select run_id, finished_at - started_at as duration from run
                        where status = 'failed' and job = j.value
                            and started_at is not null and finished_at is not null
                        order by run_id desc limit 20)
                    order by run_id desc limit 20)),
                max(coalesce((select seq from sqlite_sequence where name = 'run'), 0),
                    coalesce((select max(run_id) from run), 0))
         from json_each(?2) j",
    )
    .bind(serde_json::Value::from(keys).to_string())
    .bind(serde_json::Value::from(jobs.clone()).to_string())
    .fetch_all(&mut *conn)
    .await?;

    let mut stored = HashMap::new();
    let mut queues = HashMap::new();
    let mut newest = 0;
    for row in rows {
        if row.try_get::<&str, _>(0)? == "stored" {
            let (platform, message_id): (&str, &str) = (row.try_get(1)?, row.try_get(2)?);
            if let Some((new, _)) = news
                .iter()
                .find(|(new, _)| new.origin.platform == platform && new.message_id == message_id)
            {
                stored.insert(
                    (new.origin.platform.as_str(), new.message_id.as_str()),
                    Inserted {
                        run_id: row.try_get(3)?,
                        ack_text: row.try_get(4)?,
                        created: false,
                        reply_queued: false,
                    },
                );
            }
        } else {
            let job: &str = row.try_get(1)?;
            let durations: Vec<i64> = serde_json::from_str(row.try_get(4)?).unwrap_or_default();
            newest = row.try_get(5)?;
            if let Some(job) = jobs.iter().find(|j| **j == job) {
                queues.insert(
                    *job,
                    Queue {
                        waiting: row.try_get(2)?,
                        running: row.try_get(3)?,
                        typical_ms: typical_ms(durations),
                    },
                );
            }
        }
    }
    Ok((stored, queues, newest))
}

/// A new run as a JSON list for [`INSERT_RUNS`], its values in the order of the columns there.
///
/// N.B. A list, not an object: SQLite finds an item of a list by skipping the ones before it,
/// and a member of an object by comparing every name before it; serde_json builds an object
/// as a map.
fn row(run_id: RunId, new: &NewRun, now: i64, ack_text: &str) -> serde_json::Value {
    let status = if new.denied.is_some() {
        RunStatus::Denied
    } else {
        RunStatus::Queued
    };
    serde_json::json!([
        run_id.0,
        new.origin.platform,
        new.origin.team_id,
        new.origin.team_name,
        new.origin.channel_id,
        new.origin.channel_name,
        new.origin.user_id,
        new.origin.user_name,
        new.message_id,
        new.thread_root_id,
        new.message,
        new.job,
        new.args,
        new.hook,
        ack_text,
        now,
        status.as_str(),
        new.denied,
        new.denied.as_ref().map(|_| now),
        new.concurrency.max(1),
        new.thread_unsettled,
    ])
}

/// Inserts the runs of a JSON list of [`row`]s in one statement.
const INSERT_RUNS: &str = "insert into run (run_id, platform, team_id, team_name, channel_id,
        channel_name, user_id, user_name, message_id, thread_root_id, message, job, args, hook,
        ack_text, created_at, status, error, finished_at, concurrency, thread_unsettled)
    select r ->> 0, r ->> 1, r ->> 2, r ->> 3, r ->> 4, r ->> 5, r ->> 6, r ->> 7, r ->> 8,
        r ->> 9, r ->> 10, r ->> 11, r ->> 12, r ->> 13, r ->> 14, r ->> 15, r ->> 16, r ->> 17,
        r ->> 18, r ->> 19, r ->> 20
    from (select value as r from json_each(?1) order by key)";
