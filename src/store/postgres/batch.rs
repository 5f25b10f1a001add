//! Triggers stored in batches on Postgres: the triggers an instance receives at the same moment
//! are stored by one transaction, and share its commit (one sync of the log), as on SQLite
//! (`sqlite/batch.rs`). Storing one trigger per transaction held each job's queue lock across a
//! sync of the log, so one job's triggers went at one sync each (docs/performance.md).
//!
//! One task per instance ([`run`]) takes every trigger waiting (up to [`MAX_BATCH`]) and, in one
//! transaction: takes the queue lock of each of their jobs (in name order, so two instances
//! cannot deadlock), looks up which messages are stored already and each job's queue, draws
//! numbers from `run_number` for the runs that may be new, words each acknowledgement with the
//! caller's function ([`decide`]), inserts the runs and their thread replies, and commits.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::mpsc;

use super::outbox;
use crate::domain::{Ack, NewRun, ReplyIntent, RunId, RunStatus};
use crate::store::batch::{
    Dones, Fate, Key, MAX_BATCH, Queue, Request, at_most_new, decide, outcomes, split,
};
use crate::store::model::{Inserted, typical_ms};
use crate::store::{Error, Result};

/// Stores the requests of `requests` in batches until every sender is gone.
pub async fn run(pool: PgPool, mut requests: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (news, words, dones) = split(batch.drain(..));
        match store(&pool, &news, words, &dones).await {
            Ok(fates) => {
                for (outcome, done) in outcomes(&fates).into_iter().zip(dones) {
                    let _ = done.send(outcome);
                }
            }
            Err(err) => {
                let err = Arc::new(err);
                for done in dones {
                    let _ = done.send(Err(Error::Batch(err.clone())));
                }
            }
        }
    }
}

/// Stores one batch in one transaction: each request's fate, once committed.
async fn store(
    pool: &PgPool,
    news: &[(NewRun, i64)],
    words: Vec<crate::domain::AckWords>,
    dones: &Dones,
) -> Result<Vec<Fate>> {
    let mut tx = pool.begin().await?;
    let mut jobs: Vec<&str> = news.iter().map(|(new, _)| new.job.as_str()).collect();
    jobs.sort_unstable();
    jobs.dedup();
    for job in &jobs {
        sqlx::query(super::runs::QUEUE_LOCK)
            .bind(job)
            .execute(&mut *tx)
            .await?;
    }

    // The runs stored before for these messages (a message always names the same job, so
    // the locks taken cover them).
    let platforms: Vec<&str> = news
        .iter()
        .map(|(new, _)| new.origin.platform.as_str())
        .collect();
    let messages: Vec<&str> = news
        .iter()
        .map(|(new, _)| new.message_id.as_str())
        .collect();
    let found: Vec<(String, String, RunId, String)> = sqlx::query_as(
        "select r.platform, r.message_id, r.run_id, r.ack_text
         from run r join unnest($1::text[], $2::text[]) m (platform, message_id)
             on r.platform = m.platform and r.message_id = m.message_id",
    )
    .bind(&platforms)
    .bind(&messages)
    .fetch_all(&mut *tx)
    .await?;
    let mut stored: HashMap<Key<'_>, Inserted> = HashMap::new();
    for (platform, message_id, run_id, ack_text) in found {
        if let Some((new, _)) = news.iter().find(|(new, _)| {
            new.origin.platform.as_str() == platform && new.message_id == message_id
        }) {
            stored.insert(
                crate::store::batch::key(new),
                Inserted {
                    run_id,
                    ack_text,
                    created: false,
                    reply_queued: false,
                },
            );
        }
    }

    // Each job's queue: waiting, running, and its last finished runs' durations.
    let rows: Vec<(String, i64, i64, Vec<i64>)> = sqlx::query_as(
        "select j.job,
             (select count(*) from run where status = 'queued' and job = j.job),
             (select count(*) from run where status = 'running' and job = j.job),
             array(select finished_at - started_at from run
                   where job = j.job and status in ('succeeded', 'failed')
                       and started_at is not null and finished_at is not null
                   order by run_id desc limit 20)
         from unnest($1::text[]) j (job)",
    )
    .bind(&jobs)
    .fetch_all(&mut *tx)
    .await?;
    let mut queues: HashMap<&str, Queue> = HashMap::new();
    for (job, waiting, running, durations) in rows {
        if let Some(job) = jobs.iter().find(|j| **j == job) {
            queues.insert(
                job,
                Queue {
                    waiting,
                    running,
                    typical_ms: typical_ms(durations),
                },
            );
        }
    }

    // Numbers for the runs that may be new, in order; one is skipped for each that turns out
    // refused (a full queue) or abandoned.
    let wanted = i64::try_from(at_most_new(news, &stored)).unwrap_or(i64::MAX);
    let mut numbers: Vec<(RunId,)> =
        sqlx::query_as("select nextval('run_number') from generate_series(1, $1)")
            .bind(wanted)
            .fetch_all(&mut *tx)
            .await?;
    numbers.sort_unstable();
    let fates = decide(
        news,
        words,
        dones,
        &stored,
        &mut queues,
        numbers.into_iter().map(|(n,)| n),
    );

    let mut rows = Vec::new();
    let mut replies = Vec::new();
    for ((new, now), fate) in news.iter().zip(&fates) {
        if let Fate::Worded { run_id, ack } = fate {
            rows.push(row(*run_id, new, *now, ack));
            if let Some(delivery) = &ack.delivery {
                replies.push((*run_id, ReplyIntent::Worded(delivery.clone()), *now));
            }
        }
    }
    if !rows.is_empty() {
        sqlx::query(
            "insert into run (run_id, platform, team_id, team_name, channel_id, channel_name,
                 user_id, user_name, message_id, thread_root_id, message, job, args, hook,
                 ack_text, created_at, status, error, finished_at, concurrency, thread_unsettled)
             select run_id, platform, team_id, team_name, channel_id, channel_name, user_id,
                 user_name, message_id, thread_root_id, message, job, args, hook, ack_text,
                 created_at, status, error, finished_at, concurrency, thread_unsettled
             from jsonb_to_recordset($1::jsonb) as r (run_id bigint, platform text,
                 team_id text, team_name text, channel_id text, channel_name text,
                 user_id text, user_name text, message_id text, thread_root_id text,
                 message text, job text, args text, hook text, ack_text text,
                 created_at bigint, status text, error text, finished_at bigint,
                 concurrency bigint, thread_unsettled boolean)
             order by run_id",
        )
        .bind(serde_json::Value::from(rows))
        .execute(&mut *tx)
        .await?;
    }
    for (run_id, intent, now) in &replies {
        outbox::insert(&mut tx, Some(*run_id), intent, *now).await?;
    }
    tx.commit().await?;
    Ok(fates)
}

/// A new run as a JSON object for `jsonb_to_recordset`.
fn row(run_id: RunId, new: &NewRun, now: i64, ack: &Ack) -> serde_json::Value {
    let status = if new.denied.is_some() {
        RunStatus::Denied
    } else {
        RunStatus::Queued
    };
    serde_json::json!({
        "run_id": run_id.0,
        "platform": new.origin.platform,
        "team_id": new.origin.team_id,
        "team_name": new.origin.team_name,
        "channel_id": new.origin.channel_id,
        "channel_name": new.origin.channel_name,
        "user_id": new.origin.user_id,
        "user_name": new.origin.user_name,
        "message_id": new.message_id,
        "thread_root_id": new.thread_root_id,
        "message": new.message,
        "job": new.job,
        "args": new.args,
        "hook": new.hook,
        "ack_text": ack.text,
        "created_at": now,
        "status": status.token(),
        "error": new.denied,
        "finished_at": new.denied.as_ref().map(|_| now),
        "concurrency": new.concurrency.max(1),
        "thread_unsettled": new.thread_unsettled,
    })
}
