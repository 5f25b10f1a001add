//! The store suite: what every store backend must do, run on each: the embedded SQLite, and
//! Postgres on a throwaway cluster the tests start (`support/postgres.rs`); a new backend adds
//! itself to [`suite!`] and must pass every test unchanged. Black box: only
//! `chatrun::store::Store`'s public methods, on a real database made for each test.

#![allow(clippy::unwrap_used)] // a failed unwrap fails the test, by design

use std::collections::HashMap;

use chatrun::domain::{
    Address, Delivery, Platform, ReplyIntent, RunId, RunRow, RunStatus, StepRow, StepStatus,
};
use chatrun::store::samples::{ack, build_steps, claim, new_run, result};
use chatrun::store::{
    Ack, AckFacts, Claim, Error, Inserted, JobSteps, LogChunk, NewRun, Renewal, RunFilter,
    StepResult, Store,
};

#[path = "support/postgres.rs"]
mod postgres;

/// A fresh SQLite file in a temporary folder (kept while the test runs).
async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    (dir, Store::connect(&url).await.unwrap())
}

/// One `#[tokio::test]` per suite test and backend: `sqlite::claims_oldest_first_…`.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, store) = super::sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(url) = super::postgres::database() else {
                        return;
                    };
                    let store = chatrun::store::Store::connect(&url).await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
    };
}

suite!(
    claims_oldest_first_and_a_lost_lease_cannot_finish,
    an_expired_run_is_interrupted_once_with_its_reply_and_its_steps_settled,
    a_result_and_the_next_claim_go_in_one_write,
    finishing_records_steps_and_skips_the_ones_not_run,
    a_period_is_paged_newest_first_without_gaps,
    a_due_delivery_is_claimed_once_retried_later_and_marked_sent,
    a_delivery_waits_while_an_earlier_one_to_its_thread_is_pending,
    an_attempt_whose_outcome_was_never_recorded_counts_as_unsure,
    concurrent_triggers_get_one_numbered_run_each_within_the_queue_limit,
    a_dead_senders_claim_is_released_at_once_and_counted_unsure,
    a_stuck_reply_holds_back_its_own_runs_next_and_another_runs_for_a_minute_at_most,
    a_cancel_request_reaches_the_runs_worker_through_its_renewal,
    a_queued_run_or_delivery_wakes_the_loops_waiting_on_the_store,
    a_session_lives_until_it_expires_or_ends,
    a_users_requests_are_counted_in_a_sliding_minute,
    a_runs_log_is_kept_in_chunks_read_by_offset_and_counted_in_lines,
    a_claim_leaves_the_runs_of_jobs_its_agent_may_not_run,
    failed_tests_are_classed_against_the_runs_with_the_same_arguments,
);

/// Two handles on one database, as two chatrun instances have: one test per backend.
macro_rules! two_instances {
    ($($name:ident),* $(,)?) => {
        mod two_sqlite_handles {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}/t.db", dir.path().display());
                    let a = chatrun::store::Store::connect(&url).await.unwrap();
                    let b = chatrun::store::Store::connect(&url).await.unwrap();
                    super::$name(a, b).await;
                }
            )*
        }
        mod two_postgres_instances {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(url) = super::postgres::database() else {
                        return;
                    };
                    let a = chatrun::store::Store::connect(&url).await.unwrap();
                    let b = chatrun::store::Store::connect(&url).await.unwrap();
                    super::$name(a, b).await;
                }
            )*
        }
    };
}

two_instances!(
    a_session_and_a_key_made_on_one_instance_hold_on_the_other,
    a_trigger_delivered_to_both_instances_makes_one_run,
    a_jobs_concurrency_holds_across_instances,
    each_delivery_is_claimed_by_one_instance,
);

/// Postgres only: a write on one instance reaches the loops waiting on another. (Two SQLite
/// handles in one process do not signal each other; two processes on one file never share
/// work, so the embedded backend has nothing to carry.)
mod notifications_on_postgres {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_delivery_or_cancel_on_one_instance_wakes_the_other() {
        let Some(url) = super::postgres::database() else {
            return;
        };
        let a = Store::connect(&url).await.unwrap();
        let b = Store::connect(&url).await.unwrap();

        let work = b.wait_for_work();
        tokio::pin!(work);
        work.as_mut().enable();
        a.insert_run(&new_run("p1"), 1, ack).await.unwrap();
        within_10s(work, "wake-up of the other instance's workers").await;

        let delivery = b.wait_for_delivery();
        tokio::pin!(delivery);
        delivery.as_mut().enable();
        a.enqueue_delivery(&post("t", "{}"), 2).await.unwrap();
        within_10s(delivery, "wake-up of the other instance's outbox").await;

        // B runs the run; a stop asked on A reaches B's worker.
        let mut cancels = b.watch_cancels();
        let run = b
            .try_claim(claim("b:1#0", 10, i64::MAX, &build_steps()))
            .await
            .unwrap()
            .unwrap();
        assert!(
            a.request_cancel(run.run_id, "cancelled by bob")
                .await
                .unwrap()
        );
        within_10s(cancels.requested(), "cancel on the other instance").await;
        assert_eq!(
            b.renew(run.run_id, run.attempt, i64::MAX).await.unwrap(),
            Renewal::CancelRequested("cancelled by bob".into())
        );

        // A run finishing on A frees its job's slot for B's workers.
        let work = b.wait_for_work();
        tokio::pin!(work);
        work.as_mut().enable();
        let (stored, _) = a
            .finish_run(
                run.run_id,
                run.attempt,
                &result(RunStatus::Cancelled),
                None,
                None,
                None,
            )
            .await
            .unwrap();
        assert!(stored);
        within_10s(work, "wake-up after a slot freed on the other instance").await;

        // Output stored on A wakes a page on B that follows that run's log, not another's.
        let mut watch = b.watch_logs();
        let chunk = LogChunk {
            pos: 0,
            lines: 0,
            data: b"hello\n".to_vec(),
        };
        a.write_log(RunId(7), (0, 0), std::slice::from_ref(&chunk))
            .await
            .unwrap();
        a.write_log(run.run_id, (0, 0), &[chunk]).await.unwrap();
        within_10s(
            watch.grown(run.run_id),
            "the log's wake-up on the other instance",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rate_limit_counts_a_users_requests_to_every_instance() {
        let Some(url) = super::postgres::database() else {
            return;
        };
        let a = Store::connect(&url).await.unwrap();
        let b = Store::connect(&url).await.unwrap();
        // Ten at once, five to each: three allowed in all.
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { store.count_request("mm:u1", 1000, 3).await.unwrap() })
            })
            .collect();
        let mut allowed = 0;
        for task in tasks {
            allowed += usize::from(task.await.unwrap().is_none());
        }
        assert_eq!(allowed, 3);
    }
}

async fn a_runs_log_is_kept_in_chunks_read_by_offset_and_counted_in_lines(store: Store) {
    let run = RunId(3);
    let chunk = |pos: i64, lines: i64, text: &str| LogChunk {
        pos,
        lines,
        data: text.as_bytes().to_vec(),
    };
    assert_eq!(store.log_size(run).await.unwrap(), None);
    assert_eq!(store.log_lines_at(run, 5).await.unwrap(), None);
    // A head of two chunks, then (as a capped log while it goes) output from offset 100.
    store
        .write_log(
            run,
            (0, 0),
            &[chunk(0, 0, "ab\ncd"), chunk(5, 1, "ef\ng\n")],
        )
        .await
        .unwrap();
    store
        .write_log(run, (10, 100), &[chunk(100, 9, "x\nyz")])
        .await
        .unwrap();
    store
        .write_log(RunId(4), (0, 0), &[chunk(0, 0, "other run")])
        .await
        .unwrap();
    assert_eq!(store.log_size(run).await.unwrap(), Some(104));

    // Whole chunks, from the one holding the offset until they hold the length.
    let range = |from, length| {
        let store = store.clone();
        async move { store.log_range(run, from, length).await.unwrap() }
    };
    let texts = |chunks: Vec<(i64, Vec<u8>)>| -> Vec<(i64, String)> {
        chunks
            .into_iter()
            .map(|(pos, data)| (pos, String::from_utf8(data).unwrap()))
            .collect()
    };
    assert_eq!(texts(range(0, 3).await), [(0, "ab\ncd".to_string())]);
    assert_eq!(
        texts(range(4, 3).await),
        [(0, "ab\ncd".to_string()), (5, "ef\ng\n".to_string())]
    );
    // In the gap: the next chunk kept, however far.
    assert_eq!(texts(range(20, 2).await), [(100, "x\nyz".to_string())]);
    assert_eq!(texts(range(104, 10).await), []);

    // Lines: the chunk's newlines before it, and its bytes before the offset.
    assert_eq!(
        store.log_lines_at(run, 8).await.unwrap(),
        Some((1, b"ef\n".to_vec()))
    );
    assert_eq!(
        store.log_lines_at(run, 103).await.unwrap(),
        Some((9, b"x\ny".to_vec()))
    );

    // A later write removes what lies within its range only: the head stays.
    store
        .write_log(run, (10, i64::MAX), &[chunk(10, 3, "[end]")])
        .await
        .unwrap();
    assert_eq!(store.log_size(run).await.unwrap(), Some(15));
    assert_eq!(
        texts(range(0, 100).await),
        [
            (0, "ab\ncd".to_string()),
            (5, "ef\ng\n".to_string()),
            (10, "[end]".to_string())
        ]
    );
    // All of it (a new attempt starts over); the other run's stays.
    store.write_log(run, (0, i64::MAX), &[]).await.unwrap();
    assert_eq!(store.log_size(run).await.unwrap(), None);
    assert_eq!(store.log_size(RunId(4)).await.unwrap(), Some(9));
}

async fn a_claim_leaves_the_runs_of_jobs_its_agent_may_not_run(store: Store) {
    let mac = NewRun {
        job: "mac".into(),
        ..new_run("m1")
    };
    store.insert_run(&mac, 1, ack).await.unwrap();
    store.insert_run(&new_run("b1"), 2, ack).await.unwrap();
    let gone = NewRun {
        job: "gone".into(),
        ..new_run("g1")
    };
    store.insert_run(&gone, 3, ack).await.unwrap();
    // The local agent: `mac` is for agents with its labels; `gone` is in no catalog.
    let local = JobSteps::for_agent([("build", vec!["a"], true), ("mac", vec!["m"], false)]);
    let first = store
        .try_claim(claim("w", 10, 100, &local))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.job, "build");
    let second = store
        .try_claim(claim("w", 11, 100, &local))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.job, "gone", "settled by whoever claims it");
    assert!(
        store
            .try_claim(claim("w", 12, 100, &local))
            .await
            .unwrap()
            .is_none()
    );
    // An agent that has the labels takes it, its step written.
    let agent = JobSteps::for_agent([("build", vec!["a"], false), ("mac", vec!["m"], true)]);
    let third = store
        .try_claim(claim("a", 13, 100, &agent))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.job, "mac");
    let steps = store.steps(third.run_id).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].name, "m");
}

async fn a_session_lives_until_it_expires_or_ends(store: Store) {
    store
        .create_session("h1", "alice", 100, 1000)
        .await
        .unwrap();
    store.create_session("h2", "bob", 100, 2000).await.unwrap();
    assert_eq!(
        store.session_user("h1", 999).await.unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(
        store.session_user("h1", 1000).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.session_user("nope", 100).await.unwrap(), None);
    store.end_session("h2").await.unwrap();
    assert_eq!(
        store.session_user("h2", 100).await.unwrap(),
        None,
        "signed out"
    );
}

async fn a_users_requests_are_counted_in_a_sliding_minute(store: Store) {
    assert_eq!(store.count_request("mm:u1", 0, 2).await.unwrap(), None);
    assert_eq!(store.count_request("mm:u1", 10_000, 2).await.unwrap(), None);
    assert_eq!(
        store.count_request("mm:u2", 10_000, 2).await.unwrap(),
        None,
        "per user"
    );
    assert_eq!(
        store.count_request("mm:u1", 20_000, 2).await.unwrap(),
        Some(40_000),
        "the third waits until the first is a minute old"
    );
    assert_eq!(store.count_request("mm:u1", 60_000, 2).await.unwrap(), None);
    assert_eq!(
        store.count_request("mm:u1", 60_000, 0).await.unwrap(),
        None,
        "0: no limit"
    );
}

async fn a_session_and_a_key_made_on_one_instance_hold_on_the_other(a: Store, b: Store) {
    a.create_session("h1", "alice", 100, 1000).await.unwrap();
    assert_eq!(
        b.session_user("h1", 200).await.unwrap().as_deref(),
        Some("alice")
    );
    b.end_session("h1").await.unwrap();
    assert_eq!(a.session_user("h1", 200).await.unwrap(), None);
    // The first instance to ask makes the key; the other gets the same one.
    let key = a.secret("form_key", &[1; 32]).await.unwrap();
    assert_eq!(key, [1; 32]);
    assert_eq!(b.secret("form_key", &[2; 32]).await.unwrap(), key);
}

async fn a_trigger_delivered_to_both_instances_makes_one_run(a: Store, b: Store) {
    // The chat server's retry lands on the other instance while the first is storing it.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.insert_run(&new_run("same"), 1, ack).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|o| o.created).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o.run_id == outcomes[0].run_id && o.ack_text == outcomes[0].ack_text)
    );
    assert_eq!(a.counts().await.unwrap(), (1, 0));
}

async fn a_jobs_concurrency_holds_across_instances(a: Store, b: Store) {
    let two_at_a_time = |id: &str| NewRun {
        concurrency: 2,
        ..new_run(id)
    };
    for i in 0..6 {
        a.insert_run(&two_at_a_time(&format!("p{i}")), i, ack)
            .await
            .unwrap();
    }
    let steps = std::sync::Arc::new(build_steps());
    // Sixteen workers, half on each instance, all asking at once.
    let claims = |round: i64| {
        (0..16)
            .map(|w| {
                let store = if w % 2 == 0 { a.clone() } else { b.clone() };
                let steps = steps.clone();
                tokio::spawn(async move {
                    let owner = format!("w{w}");
                    store
                        .try_claim(claim(&owner, 100 * round, i64::MAX, &steps))
                        .await
                        .unwrap()
                })
            })
            .collect::<Vec<_>>()
    };
    let mut running = Vec::new();
    for task in claims(1) {
        running.extend(task.await.unwrap());
    }
    let ids: Vec<i64> = running.iter().map(|r| r.run_id.0).collect();
    assert_eq!(ids.len(), 2, "concurrency 2, claimed: {ids:?}");

    // One finishes: one more slot, one more claim, oldest first.
    let done = &running[0];
    let (stored, _) = b
        .finish_run(
            done.run_id,
            done.attempt,
            &result(RunStatus::Succeeded),
            None,
            None,
            None,
        )
        .await
        .unwrap();
    assert!(stored);
    let mut more = Vec::new();
    for task in claims(2) {
        more.extend(task.await.unwrap());
    }
    assert_eq!(more.len(), 1, "one slot freed: {more:?}");
    assert_eq!(more[0].run_id, RunId(3), "the oldest waiting run");
    assert_eq!(a.counts().await.unwrap(), (3, 2));
}

async fn each_delivery_is_claimed_by_one_instance(a: Store, b: Store) {
    for i in 0..30 {
        // No thread: nothing orders them, so every one is claimable at once.
        a.enqueue_delivery(&post("", &format!("{{\"n\":{i}}}")), 1)
            .await
            .unwrap();
    }
    let senders: Vec<_> = (0..8)
        .map(|s| {
            let store = if s % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let owner = format!("sender{s}");
                let mut mine = Vec::new();
                while let Some(row) = store
                    .try_claim_delivery(10, i64::MAX, &owner)
                    .await
                    .unwrap()
                {
                    mine.push(row.outbox_id);
                }
                mine
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for sender in senders {
        claimed.extend(sender.await.unwrap());
    }
    claimed.sort_unstable();
    let before = claimed.len();
    claimed.dedup();
    assert_eq!((before, claimed.len()), (30, 30), "each of 30 claimed once");
}

/// Waits for `what`, failing the test after ten seconds.
async fn within_10s<T>(what: impl std::future::Future<Output = T>, waiting_for: &str) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(10), what)
        .await
        .unwrap_or_else(|_| panic!("no {waiting_for} within 10 s"))
}

async fn a_cancel_request_reaches_the_runs_worker_through_its_renewal(store: Store) {
    store.insert_run(&new_run("p1"), 1, ack).await.unwrap();
    store.insert_run(&new_run("p2"), 2, ack).await.unwrap();
    // The worker watches before it claims, so no request for its run can come before.
    let mut watch = store.watch_cancels();
    let run = store
        .try_claim(claim("w1", 10, 100, &build_steps()))
        .await
        .unwrap()
        .unwrap();
    // Only a running run can be asked to stop this way (a queued one is cancelled outright).
    assert!(
        !store
            .request_cancel(RunId(2), "cancelled by bob")
            .await
            .unwrap()
    );
    assert!(
        store
            .request_cancel(run.run_id, "cancelled by bob")
            .await
            .unwrap()
    );
    within_10s(watch.requested(), "wake-up of the watching worker").await;
    // A second request keeps the first one's reason.
    assert!(
        store
            .request_cancel(run.run_id, "superseded by run #3")
            .await
            .unwrap()
    );
    assert_eq!(
        store.renew(run.run_id, 1, 110).await.unwrap(),
        Renewal::CancelRequested("cancelled by bob".into())
    );
    assert!(
        store
            .finish_run(
                run.run_id,
                1,
                &result(RunStatus::Cancelled),
                None,
                None,
                None
            )
            .await
            .unwrap()
            .0
    );
    assert!(
        !store
            .request_cancel(run.run_id, "cancelled by bob")
            .await
            .unwrap()
    );
}

async fn a_queued_run_or_delivery_wakes_the_loops_waiting_on_the_store(store: Store) {
    let work = store.wait_for_work();
    tokio::pin!(work);
    work.as_mut().enable();
    store.insert_run(&new_run("p1"), 1, ack).await.unwrap();
    within_10s(work, "wake-up of the workers").await;

    // A delivery queued while nothing waits is kept for the outbox's next wait.
    store.enqueue_delivery(&post("t", "{}"), 2).await.unwrap();
    within_10s(store.wait_for_delivery(), "wake-up of the outbox").await;
}

fn post(thread: &str, body: &str) -> Delivery {
    Delivery {
        target: "mattermost.post".into(),
        body: body.into(),
        thread: thread.into(),
    }
}

async fn claims_oldest_first_and_a_lost_lease_cannot_finish(store: Store) {
    store.insert_run(&new_run("p1"), 1, ack).await.unwrap();
    store
        .insert_run(
            &NewRun {
                job: "lint".into(),
                ..new_run("p2")
            },
            2,
            ack,
        )
        .await
        .unwrap();

    let run = store
        .try_claim(claim("w1", 10, 20, &build_steps()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (run.run_id, run.attempt, run.status),
        (RunId(1), 1, RunStatus::Running)
    );
    assert_eq!(store.renew(run.run_id, 1, 30).await.unwrap(), Renewal::Held);

    // The lease ran out (the worker died): it is not claimed as it is, but it is expired,
    // and once requeued the next claim takes run 1 again.
    let expired: Vec<RunId> = store
        .expired_runs(31)
        .await
        .unwrap()
        .iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(expired, vec![RunId(1)]);
    assert!(!store.requeue_expired(run.run_id, 1, 30).await.unwrap());
    assert!(store.requeue_expired(run.run_id, 1, 31).await.unwrap());
    let second = store
        .try_claim(claim("w2", 31, 60, &build_steps()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.run_id, second.attempt), (RunId(1), 2));
    assert_eq!(store.renew(run.run_id, 1, 70).await.unwrap(), Renewal::Lost);
    assert!(
        !store
            .finish_run(run.run_id, 1, &result(RunStatus::Failed), None, None, None)
            .await
            .unwrap()
            .0
    );
    assert!(
        store
            .finish_run(
                run.run_id,
                2,
                &result(RunStatus::Succeeded),
                None,
                None,
                None
            )
            .await
            .unwrap()
            .0
    );

    let third = store
        .try_claim(claim("w1", 40, 70, &build_steps()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.run_id, RunId(2));
    assert!(
        store
            .try_claim(claim("w1", 41, 71, &build_steps()))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.running_leases().await.unwrap(),
        vec![(third.run_id, Some("w1".to_string()))]
    );
    assert!(!store.expire_lease(third.run_id, "w2").await.unwrap());
    assert!(store.expire_lease(third.run_id, "w1").await.unwrap());
    assert!(store.requeue(third.run_id, third.attempt).await.unwrap());
    let active: Vec<RunId> = store
        .active_runs()
        .await
        .unwrap()
        .iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(active, vec![RunId(2)]);
    assert!(
        store
            .cancel_queued(RunId(2), "cancelled by bob", 80, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .cancel_queued(RunId(2), "again", 81, None)
            .await
            .unwrap()
    );
    assert!(store.active_runs().await.unwrap().is_empty());
    assert_eq!(store.counts().await.unwrap(), (0, 0));
}

async fn an_expired_run_is_interrupted_once_with_its_reply_and_its_steps_settled(store: Store) {
    store.insert_run(&new_run("p1"), 1, ack).await.unwrap();
    let run = store
        .try_claim(claim("w1", 10, 100, &build_steps()))
        .await
        .unwrap()
        .unwrap();
    let reply = Address {
        target: "mattermost.post".into(),
        thread: "mattermost:c1".into(),
    };

    // Still leased: not interrupted.
    assert!(
        !store
            .interrupt_run(run.run_id, 1, 100, "stopped", Some(&reply))
            .await
            .unwrap()
    );
    assert!(
        store
            .interrupt_run(run.run_id, 1, 101, "stopped", Some(&reply))
            .await
            .unwrap()
    );
    // A second reaper (another chatrun on the same database) finds nothing to do.
    assert!(
        !store
            .interrupt_run(run.run_id, 1, 102, "stopped", Some(&reply))
            .await
            .unwrap()
    );
    let row = store.get_run(run.run_id).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.error.as_deref(), row.finished_at),
        (RunStatus::Interrupted, Some("stopped"), Some(101))
    );
    let steps = store.steps(run.run_id).await.unwrap();
    assert_eq!(
        (steps[0].status, steps[1].status),
        (StepStatus::Interrupted, StepStatus::Skipped)
    );
    assert_eq!(store.deliveries(run.run_id).await.unwrap().len(), 1);
    // The reply is the run's result, worded when it is sent from what was stored.
    let queued = store
        .try_claim_delivery(101, 200, "h:1#outbox")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (queued.run_id, queued.intent()),
        (Some(run.run_id), ReplyIntent::Result(reply))
    );
    // The old worker, if it still runs somewhere, cannot write over it.
    assert_eq!(
        store.renew(run.run_id, 1, 200).await.unwrap(),
        Renewal::Lost
    );
}

async fn a_result_and_the_next_claim_go_in_one_write(store: Store) {
    for message in ["p1", "p2"] {
        store.insert_run(&new_run(message), 1, ack).await.unwrap();
    }
    let steps = build_steps();
    let first = store
        .try_claim(claim("w1", 10, 1000, &steps))
        .await
        .unwrap()
        .unwrap();
    let next = Claim {
        owner: "w1",
        now: 20,
        lease_until: 2000,
        steps: &steps,
    };
    // The job runs one at a time: the first run's result frees the slot the claim takes.
    let (stored, claimed) = store
        .finish_run(
            first.run_id,
            1,
            &result(RunStatus::Succeeded),
            None,
            None,
            Some(next),
        )
        .await
        .unwrap();
    assert!(stored);
    let claimed = claimed.expect("the second run is claimed");
    assert_eq!(
        (
            claimed.run_id,
            claimed.status,
            claimed.attempt,
            claimed.started_at
        ),
        (RunId(2), RunStatus::Running, 1, Some(20))
    );
    let first_now = store.get_run(first.run_id).await.unwrap().unwrap();
    assert_eq!(first_now.status, RunStatus::Succeeded);
    let names = |steps: Vec<StepRow>| -> Vec<(String, StepStatus, Option<i64>)> {
        steps
            .into_iter()
            .map(|s| (s.name, s.status, s.started_at))
            .collect()
    };
    assert_eq!(
        names(store.steps(claimed.run_id).await.unwrap()),
        [
            ("a".to_string(), StepStatus::Running, Some(20)),
            ("b".to_string(), StepStatus::Pending, None)
        ],
        "the claimed run's steps are written with the claim"
    );
    assert_eq!(
        names(store.steps(first.run_id).await.unwrap())[0],
        ("a".to_string(), StepStatus::Running, Some(10)),
        "the first run keeps its own"
    );

    // Nothing left to claim: the result is stored all the same.
    let (stored, none) = store
        .finish_run(
            claimed.run_id,
            1,
            &result(RunStatus::Failed),
            None,
            None,
            Some(Claim { now: 30, ..next }),
        )
        .await
        .unwrap();
    assert!(stored && none.is_none());
    assert_eq!(store.counts().await.unwrap(), (0, 0));
}

async fn finishing_records_steps_and_skips_the_ones_not_run(store: Store) {
    store.insert_run(&new_run("p1"), 1, ack).await.unwrap();
    let run = store
        .try_claim(claim("w1", 10, 1000, &build_steps()))
        .await
        .unwrap()
        .unwrap();
    // The claim wrote its job's steps, the first running since the claim.
    let claimed = store.steps(run.run_id).await.unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|s| (s.name.as_str(), s.status, s.started_at))
            .collect::<Vec<_>>(),
        [
            ("a", StepStatus::Running, Some(10)),
            ("b", StepStatus::Pending, None)
        ]
    );
    let failed = StepResult {
        status: StepStatus::Failed,
        exit_code: Some(2),
        detail: None,
        finished_at: 15,
        tests: Some(chatrun::report::TestSummary {
            tests: 3,
            failed: 1,
            skipped: 0,
            duration_ms: 2,
            failures: vec![chatrun::report::FailedTest {
                suite: "s".into(),
                name: "t".into(),
                message: "boom".into(),
                detail: "boom\nat line 3".into(),
            }],
            // Failed once, then passed on a retry.
            flaky: vec![chatrun::report::FailedTest {
                suite: "s".into(),
                name: "wobbly".into(),
                message: "timed out".into(),
                detail: "timed out".into(),
            }],
        }),
        report_error: None,
        output_tail: Some("last line".into()),
    };
    // Not the last step yet: the next stays pending.
    store.finish_step(run.run_id, 0, &failed).await.unwrap();
    let going = store.steps(run.run_id).await.unwrap();
    assert_eq!(going[1].status, StepStatus::Pending);
    // The last: written with the run's result.
    assert!(
        store
            .finish_run(
                run.run_id,
                1,
                &result(RunStatus::Failed),
                None,
                Some((0, &failed)),
                None
            )
            .await
            .unwrap()
            .0
    );

    let steps = store.steps(run.run_id).await.unwrap();
    assert_eq!(steps[0].status, StepStatus::Failed);
    assert_eq!(steps[0].exit_code, Some(2));
    assert_eq!(steps[0].duration_ms(99), Some(5));
    assert_eq!(
        (steps[0].tests_run, steps[0].tests_failed),
        (Some(3), Some(1))
    );
    assert_eq!(steps[0].output_tail.as_deref(), Some("last line"));
    let failures = store.test_failures(run.run_id).await.unwrap();
    assert_eq!(failures.len(), 2);
    assert_eq!(
        (failures[0].position, failures[0].detail.as_str()),
        (0, "boom\nat line 3")
    );
    assert!(!failures[0].passed_on_retry);
    // The test that passed on a retry is kept, marked, and classed flaky.
    assert_eq!(failures[1].name, "wobbly");
    assert!(failures[1].passed_on_retry);
    let stored = store.get_run(run.run_id).await.unwrap().unwrap();
    let classed = store.classified_failures(&stored, 10).await.unwrap();
    assert_eq!(classed[1].class, Some(chatrun::domain::FailureClass::Flaky));
    assert_eq!(steps[1].tests_run, None);
    assert_eq!(steps[1].status, StepStatus::Skipped);
    let stored = store.get_run(run.run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Failed);
    assert_eq!(stored.log_head, "out");

    let filter = RunFilter {
        job: Some("build".into()),
        status: Some(RunStatus::Failed),
        user: Some("alice".into()),
        platform: Some(Platform::Mattermost),
        since: Some(0),
        until: Some(2),
        ..RunFilter::default()
    };
    assert_eq!(store.search_runs(&filter, None, 10).await.unwrap().len(), 1);
    let other = RunFilter {
        channel: Some("elsewhere".into()),
        ..filter
    };
    assert!(
        store
            .search_runs(&other, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let page = store.list_runs(None, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert!(
        store
            .list_runs(Some(RunId(1)), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Runs `build` with `args` to its end: its one step fails the tests `failed` (suite `s`), or
/// succeeds when there are none. Its number.
async fn run_with_failures(store: &Store, message: &str, args: &str, failed: &[&str]) -> RunId {
    run_with_retries(store, message, args, failed, &[]).await
}

/// As [`run_with_failures`], and the tests `retried` failed, then passed on a retry.
async fn run_with_retries(
    store: &Store,
    message: &str,
    args: &str,
    failed: &[&str],
    retried: &[&str],
) -> RunId {
    store
        .insert_run(
            &NewRun {
                args: args.into(),
                ..new_run(message)
            },
            1,
            ack,
        )
        .await
        .unwrap();
    let run = store
        .try_claim(claim("w1", 10, i64::MAX, &build_steps()))
        .await
        .unwrap()
        .unwrap();
    let status = if failed.is_empty() {
        StepStatus::Succeeded
    } else {
        StepStatus::Failed
    };
    let step = StepResult {
        status,
        exit_code: Some(i32::from(!failed.is_empty())),
        detail: None,
        finished_at: 15,
        tests: Some(chatrun::report::TestSummary {
            tests: 10,
            failed: u64::try_from(failed.len()).unwrap(),
            skipped: 0,
            duration_ms: 2,
            failures: failed
                .iter()
                .map(|name| chatrun::report::FailedTest {
                    suite: "s".into(),
                    name: (*name).into(),
                    message: "boom".into(),
                    detail: "boom".into(),
                })
                .collect(),
            flaky: retried
                .iter()
                .map(|name| chatrun::report::FailedTest {
                    suite: "s".into(),
                    name: (*name).into(),
                    message: "flaked".into(),
                    detail: "flaked".into(),
                })
                .collect(),
        }),
        report_error: None,
        output_tail: None,
    };
    store.finish_step(run.run_id, 0, &step).await.unwrap();
    let status = if failed.is_empty() {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    store
        .finish_run(run.run_id, 1, &result(status), None, Some((1, &step)), None)
        .await
        .unwrap();
    run.run_id
}

async fn failed_tests_are_classed_against_the_runs_with_the_same_arguments(store: Store) {
    use chatrun::domain::FailureClass::{Flaky, New, StillFailing};
    let classes = |run: RunId, window: usize| {
        let store = store.clone();
        async move {
            let run = store.get_run(run).await.unwrap().unwrap();
            let mut classes: Vec<(String, Option<chatrun::domain::FailureClass>)> = store
                .classified_failures(&run, window)
                .await
                .unwrap()
                .into_iter()
                .filter(|f| f.position == 0)
                .map(|f| (f.name, f.class))
                .collect();
            classes.sort_by(|a, b| a.0.cmp(&b.0));
            classes
        }
    };
    let of = |list: &[(&str, chatrun::domain::FailureClass)]| {
        list.iter()
            .map(|(name, class)| ((*name).to_string(), Some(*class)))
            .collect::<Vec<_>>()
    };
    let x = "branch=feature/x";
    let r1 = run_with_failures(&store, "m1", x, &["a"]).await;
    assert_eq!(classes(r1, 10).await, of(&[("a", New)]));
    let r2 = run_with_failures(&store, "m2", x, &["a", "b"]).await;
    assert_eq!(
        classes(r2, 10).await,
        of(&[("a", StillFailing { since: r1 }), ("b", New)])
    );
    // The same tests failing on main change nothing for feature/x.
    run_with_failures(&store, "main1", "branch=main", &["c"]).await;
    run_with_failures(&store, "m3", x, &[]).await;
    // a: failed, passed, failed again; b was removed; c fails here for the first time.
    let r4 = run_with_failures(&store, "m4", x, &["a", "c"]).await;
    assert_eq!(classes(r4, 10).await, of(&[("a", Flaky), ("c", New)]));
    // c renamed c2: new under its new name.
    let r5 = run_with_failures(&store, "m5", x, &["c2"]).await;
    assert_eq!(classes(r5, 10).await, of(&[("c2", New)]));
    // d fails from r6 to r12, seven runs in a row: still failing since r6 all along.
    let r6 = run_with_failures(&store, "m6", x, &["d"]).await;
    let mut last = r6;
    for i in 7..=12 {
        last = run_with_failures(&store, &format!("m{i}"), x, &["d"]).await;
    }
    assert_eq!(
        classes(last, 10).await,
        of(&[("d", StillFailing { since: r6 })])
    );
    // a again: it failed in r4, within the last 10 runs of feature/x, and passed since.
    let r13 = run_with_failures(&store, "m13", x, &["a"]).await;
    assert_eq!(classes(r13, 10).await, of(&[("a", Flaky)]));
    // With a window of 3 runs, r4 is out of sight: new.
    assert_eq!(classes(r13, 3).await, of(&[("a", New)]));
    // On main, c failing again is still failing since main's first run.
    let main2 = run_with_failures(&store, "main2", "branch=main", &["c"]).await;
    let main1 = store
        .get_run(RunId(3))
        .await
        .unwrap()
        .map(|r| r.run_id)
        .unwrap();
    assert_eq!(
        classes(main2, 10).await,
        of(&[("c", StillFailing { since: main1 })])
    );

    // feature/x passes after ten failed runs (r4 to r13): back to green since r4; once.
    let green = |run: RunId| {
        let store = store.clone();
        async move {
            let mut run = store.get_run(run).await.unwrap().unwrap();
            store.result_history(&mut run, 10).await.unwrap();
            run.back_to_green
        }
    };
    let r14 = run_with_failures(&store, "m14", x, &[]).await;
    assert_eq!(
        green(r14).await,
        Some(chatrun::domain::BackToGreen {
            failed_runs: 10,
            since: r4,
            at_least: false
        })
    );
    let r15 = run_with_failures(&store, "m15", x, &[]).await;
    assert_eq!(green(r15).await, None);

    // g fails, then passes on a retry: flaky in that run. Failing for good in the next, it
    // begins a streak there (a pass on a retry is no failure to continue), and is flaky: it
    // failed once before in the window.
    let r16 = run_with_retries(&store, "m16", x, &[], &["g"]).await;
    assert_eq!(classes(r16, 10).await, of(&[("g", Flaky)]));
    let r17 = run_with_failures(&store, "m17", x, &["g"]).await;
    assert_eq!(classes(r17, 10).await, of(&[("g", Flaky)]));
    let since = |run: RunId| {
        let store = store.clone();
        async move { store.test_failures(run).await.unwrap()[0].since }
    };
    assert_eq!(since(r17).await, Some(r17));
    assert_eq!(
        classes(r17, 2).await,
        of(&[("g", Flaky)]),
        "r16 is in a window of 2"
    );
}

async fn a_period_is_paged_newest_first_without_gaps(store: Store) {
    // Runs 1 to 120, made at times 1 to 120; the period [11, 101) holds runs 11 to 100.
    for n in 1..=120 {
        store
            .insert_run(&new_run(&format!("post{n}")), n, ack)
            .await
            .unwrap();
    }
    let period = RunFilter {
        since: Some(11),
        until: Some(101),
        ..RunFilter::default()
    };
    let ids = |page: &[RunRow]| page.iter().map(|run| run.run_id.0).collect::<Vec<_>>();
    let first = store.search_runs(&period, None, 50).await.unwrap();
    assert_eq!(ids(&first), (51..=100).rev().collect::<Vec<_>>());
    let next = store
        .search_runs(&period, Some(first[49].run_id), 50)
        .await
        .unwrap();
    assert_eq!(ids(&next), (11..=50).rev().collect::<Vec<_>>());
    assert_eq!(next[0].created_at, 50, "whole rows, not only their numbers");
    let since = RunFilter {
        since: Some(111),
        ..RunFilter::default()
    };
    let last = store.search_runs(&since, None, 50).await.unwrap();
    assert_eq!(ids(&last), (111..=120).rev().collect::<Vec<_>>());
}

async fn a_due_delivery_is_claimed_once_retried_later_and_marked_sent(store: Store) {
    let new = NewRun {
        origin: chatrun::domain::Origin {
            platform: chatrun::domain::Platform::Mattermost,
            ..chatrun::domain::Origin::default()
        },
        message_id: "p1".into(),
        job: "build".into(),
        ..NewRun::default()
    };
    let inserted = store
        .insert_run(&new, 100, |_: &AckFacts| Ack {
            text: "queued".into(),
            delivery: Some(Delivery {
                target: "mattermost.post".into(),
                body: "{}".into(),
                thread: "mattermost:c1/p1".into(),
            }),
        })
        .await
        .unwrap();

    assert_eq!(store.next_delivery_at().await.unwrap(), Some(100));
    let row = store
        .try_claim_delivery(100, 200, "h:1#outbox")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.run_id, row.attempts), (Some(inserted.run_id), 1));
    assert!(
        store
            .try_claim_delivery(150, 250, "h:1#outbox")
            .await
            .unwrap()
            .is_none()
    );

    store
        .mark_retry(row.outbox_id, 300, "503", false, false)
        .await
        .unwrap();
    assert!(
        store
            .try_claim_delivery(299, 400, "h:1#outbox")
            .await
            .unwrap()
            .is_none()
    );
    let again = store
        .try_claim_delivery(300, 400, "h:1#outbox")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.attempts, 2);
    store.mark_sent(again.outbox_id, 301).await.unwrap();
    assert_eq!(store.next_delivery_at().await.unwrap(), None);
    let list = store.deliveries(inserted.run_id).await.unwrap();
    assert_eq!(list[0].status, "sent");

    store.mark_dead(again.outbox_id, "gone").await.unwrap();
    assert_eq!(
        store.deliveries(inserted.run_id).await.unwrap()[0].status,
        "dead"
    );
}

async fn a_delivery_waits_while_an_earlier_one_to_its_thread_is_pending(store: Store) {
    for (thread, body) in [
        ("a", "a1"),
        ("a", "a2"),
        ("b", "b1"),
        ("", "x1"),
        ("", "x2"),
    ] {
        store
            .enqueue_delivery(&post(thread, body), 100)
            .await
            .unwrap();
    }
    let claim = |now| {
        let store = store.clone();
        async move {
            store
                .try_claim_delivery(now, now + 1000, "h:1#outbox")
                .await
                .unwrap()
        }
    };

    let a1 = claim(100).await.unwrap();
    assert_eq!(a1.body, "a1");
    store
        .mark_retry(a1.outbox_id, 500, "503", false, false)
        .await
        .unwrap();
    // a2 is due but waits behind a1; the others go.
    let mut claimed = Vec::new();
    while let Some(row) = claim(200).await {
        claimed.push(row.body.clone());
        store.mark_sent(row.outbox_id, 200).await.unwrap();
    }
    assert_eq!(claimed, ["b1", "x1", "x2"]);
    assert_eq!(
        store.next_delivery_at().await.unwrap(),
        Some(500),
        "the sender sleeps until a1 is due, not a2"
    );

    let a1 = claim(500).await.unwrap();
    assert_eq!(a1.body, "a1");
    assert!(claim(500).await.is_none(), "a1 is held, still pending");
    store.mark_sent(a1.outbox_id, 501).await.unwrap();
    assert_eq!(claim(501).await.unwrap().body, "a2");

    // A given-up delivery does not hold its thread up.
    store.enqueue_delivery(&post("c", "c1"), 600).await.unwrap();
    store.enqueue_delivery(&post("c", "c2"), 600).await.unwrap();
    let c1 = claim(600).await.unwrap();
    store.mark_dead(c1.outbox_id, "404").await.unwrap();
    let c2 = claim(600).await.unwrap();
    assert_eq!((c2.body.as_str(), c2.thread.as_deref()), ("c2", Some("c")));
}

async fn an_attempt_whose_outcome_was_never_recorded_counts_as_unsure(store: Store) {
    store.enqueue_delivery(&post("a", "a1"), 100).await.unwrap();

    let first = store
        .try_claim_delivery(100, 200, "h:1#outbox")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.unsure, 0);
    // The sender died before recording anything: after the hold, the row is claimed again
    // and the lost attempt is counted.
    let second = store
        .try_claim_delivery(200, 300, "h:1#outbox")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.attempts, second.unsure), (2, 1));
    // From when the first unsure attempt began: Mattermost's pending_post_id window.
    assert_eq!(second.unsure_at, Some(100));
    // A timeout is recorded as unsure too; a definite failure is not.
    store
        .mark_retry(second.outbox_id, 300, "timed out", true, false)
        .await
        .unwrap();
    let third = store
        .try_claim_delivery(300, 400, "h:1#outbox")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.unsure, 2);
    assert_eq!(third.unsure_at, Some(100), "the first stays the first");
    assert_eq!(third.last_error.as_deref(), Some("timed out"));
    store
        .mark_retry(third.outbox_id, 400, "503", false, false)
        .await
        .unwrap();
    let fourth = store
        .try_claim_delivery(400, 500, "h:1#outbox")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        fourth.unsure, 2,
        "a recorded outcome leaves nothing in flight"
    );
    store.mark_sent(fourth.outbox_id, 450).await.unwrap();
}

async fn a_dead_senders_claim_is_released_at_once_and_counted_unsure(store: Store) {
    store.enqueue_delivery(&post("a", "a1"), 100).await.unwrap();
    let first = store
        .try_claim_delivery(100, 30_100, "h:1#outbox")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.claimed_deliveries().await.unwrap(),
        [(first.outbox_id, Some("h:1#outbox".to_string()))]
    );
    // Held until 30 100, unless its sender is known dead: released by its owner's name only.
    assert!(
        store
            .try_claim_delivery(150, 30_150, "h:2#outbox")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store
            .release_delivery(first.outbox_id, "h:9#outbox", 150)
            .await
            .unwrap()
    );
    assert!(
        store
            .release_delivery(first.outbox_id, "h:1#outbox", 150)
            .await
            .unwrap()
    );
    let again = store
        .try_claim_delivery(150, 30_150, "h:2#outbox")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.unsure, again.unsure_at), (1, Some(100)));
    // Sent without knowing: recorded before, kept with the error on the sent row.
    store.mark_blind(again.outbox_id).await.unwrap();
    store.mark_sent(again.outbox_id, 200).await.unwrap();
    assert!(store.claimed_deliveries().await.unwrap().is_empty());
}

async fn a_stuck_reply_holds_back_its_own_runs_next_and_another_runs_for_a_minute_at_most(
    store: Store,
) {
    let owner = "h:1#outbox";
    // Run 1's acknowledgement went to thread t with the run; it fails until much later.
    let in_thread = |thread: &'static str| {
        move |_: &AckFacts| Ack {
            text: "queued".into(),
            delivery: Some(post(thread, "ack")),
        }
    };
    store
        .insert_run(&new_run("p1"), 1000, in_thread("t"))
        .await
        .unwrap();
    let ack1 = store
        .try_claim_delivery(1000, 2000, owner)
        .await
        .unwrap()
        .unwrap();
    store
        .mark_retry(ack1.outbox_id, 10_000_000, "500", false, false)
        .await
        .unwrap();
    // Its result waits for it however long it takes: an acknowledgement before its result.
    let run = store
        .try_claim(claim("w1", 1000, 100_000, &build_steps()))
        .await
        .unwrap()
        .unwrap();
    let to_t = Address {
        target: "mattermost.post".into(),
        thread: "t".into(),
    };
    store
        .finish_run(
            run.run_id,
            1,
            &result(RunStatus::Succeeded),
            Some(&to_t),
            None,
            None,
        )
        .await
        .unwrap();
    // Run 2's acknowledgement, in the same thread, waits for run 1's for a minute only.
    store
        .insert_run(&new_run("p2"), 2000, in_thread("t"))
        .await
        .unwrap();
    assert!(
        store
            .try_claim_delivery(60_999, 70_000, owner)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.next_delivery_at().await.unwrap(),
        Some(61_000),
        "the sender wakes when the hold ends"
    );
    let ack2 = store
        .try_claim_delivery(61_001, 70_000, owner)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack2.run_id, Some(RunId(2)));
    store.mark_sent(ack2.outbox_id, 61_001).await.unwrap();
    assert!(
        store
            .try_claim_delivery(5_000_000, 5_100_000, owner)
            .await
            .unwrap()
            .is_none(),
        "run 1's result still waits for its acknowledgement"
    );
}

async fn concurrent_triggers_get_one_numbered_run_each_within_the_queue_limit(store: Store) {
    // 150 messages, the first 50 of them delivered twice, for a job that queues 100.
    let messages: Vec<String> = (0..150)
        .map(|i| format!("post{i}"))
        .chain((0..50).map(|i| format!("post{i}")))
        .collect();
    let tasks: Vec<_> = messages
        .iter()
        .map(|message| {
            let store = store.clone();
            let new = NewRun {
                origin: chatrun::domain::Origin {
                    platform: chatrun::domain::Platform::Mattermost,
                    ..chatrun::domain::Origin::default()
                },
                message_id: message.clone(),
                job: "build".into(),
                message: "#build".into(),
                queue_limit: 100,
                ..NewRun::default()
            };
            tokio::spawn(
                async move { (new.message_id.clone(), store.insert_run(&new, 1, ack).await) },
            )
        })
        .collect();
    let mut by_message: HashMap<String, Vec<Result<Inserted, Error>>> = HashMap::new();
    for task in tasks {
        let (message, outcome) = task.await.unwrap();
        by_message.entry(message).or_default().push(outcome);
    }

    let mut created = Vec::new();
    let mut full = 0;
    for outcomes in by_message.values() {
        match &outcomes[0] {
            Ok(first) => {
                for other in outcomes {
                    let Ok(other) = other else {
                        panic!("one delivery stored, the other refused: {outcomes:?}");
                    };
                    assert_eq!(
                        (other.run_id, &other.ack_text),
                        (first.run_id, &first.ack_text)
                    );
                }
                let made: Vec<_> = outcomes
                    .iter()
                    .filter(|o| matches!(o, Ok(i) if i.created))
                    .collect();
                assert_eq!(made.len(), 1, "{outcomes:?}");
                created.push(first.clone());
            }
            Err(Error::QueueFull(waiting)) => {
                assert_eq!(*waiting, 100);
                full += 1;
            }
            Err(err) => panic!("{err}"),
        }
    }
    assert_eq!((created.len(), full), (100, 50));
    created.sort_by_key(|i| i.run_id);
    for (n, inserted) in (1..).zip(&created) {
        assert_eq!(inserted.run_id, RunId(n), "numbered without gaps");
        assert_eq!(
            inserted.ack_text,
            format!("#{n} at {n}"),
            "each place given once, in order"
        );
        let row = store.get_run(inserted.run_id).await.unwrap().unwrap();
        assert_eq!(row.ack_text, inserted.ack_text);
    }
    assert_eq!(store.counts().await.unwrap(), (100, 0));
}
