//! Queue policies: concurrency, queue limits, what a new request does to older runs, the
//! expected wait, and the per-user rate limit.

use chatrun::domain::RunId;

use crate::helpers::{TestApp, spawn_app_with, wait_for};

const SLOW: &str = "[[steps]]\nname = \"Wait\"\nrun = [\"sleep\", \"30\"]\n";

/// Sends `text` as `user` in Mattermost and returns the reply text.
async fn say(app: &TestApp, user: &str, text: &str, post_id: &str) -> String {
    app.say(user, text, post_id).await
}

async fn status_of(app: &TestApp, id: i64) -> String {
    app.store
        .get_run(RunId(id))
        .await
        .unwrap()
        .map(|r| r.status.as_str().to_string())
        .unwrap_or_default()
}

async fn wait_status(app: &TestApp, id: i64, status: &str) {
    wait_for(|| async { (status_of(app, id).await == status).then_some(()) }).await;
}

#[tokio::test]
async fn concurrency_and_queue_limit_bound_a_jobs_runs() {
    let job = format!("concurrency = 1\nqueue_limit = 2\n{SLOW}");
    let app = spawn_app_with(&[("one", &job)]).await;

    say(&app, "u0", "#one", "q0").await;
    wait_status(&app, 1, "running").await;

    // Three more at once: two may wait (queue_limit), the third is refused.
    let (a, b, c) = tokio::join!(
        say(&app, "u1", "#one", "q1"),
        say(&app, "u2", "#one", "q2"),
        say(&app, "u3", "#one", "q3"),
    );
    let replies = [a, b, c];
    let refused: Vec<&String> = replies
        .iter()
        .filter(|r| r.contains("Not running"))
        .collect();
    assert_eq!(refused.len(), 1, "{replies:?}");
    assert!(
        refused[0].contains("2 runs of it are already waiting, its limit \\(queue\\_limit\\)"),
        "{}",
        refused[0]
    );
    assert_eq!(app.store.list_runs(None, 10).await.unwrap().len(), 3);
    assert_eq!(app.store.counts().await.unwrap(), (2, 1));
    // Still one at a time after a while: the queued ones wait for the running one.
    let text = say(&app, "u1", "#ci queue", "q5").await;
    assert_eq!(text.matches("**#").count(), 3, "{text}");
    for id in 1..=3 {
        say(
            &app,
            &format!("u{id}"),
            &format!("#ci cancel {id}"),
            &format!("c{id}"),
        )
        .await;
    }
}

#[tokio::test]
async fn replace_supersedes_a_queued_run_with_the_same_arguments() {
    let job = format!(
        "on_new = \"replace\"\n[params.branch]\ndefault = \"main\"\npositional = 1\n{SLOW}"
    );
    let app = spawn_app_with(&[("deploy", &job)]).await;
    say(&app, "alice", "#deploy", "r1").await;
    wait_status(&app, 1, "running").await;
    say(&app, "alice", "#deploy feature", "r2").await;
    say(&app, "bob", "#deploy main", "r3").await;
    say(&app, "bob", "#deploy feature", "r4").await;

    wait_status(&app, 2, "cancelled").await;
    let replaced = app.store.get_run(RunId(2)).await.unwrap().unwrap();
    assert_eq!(replaced.error.as_deref(), Some("superseded by run #4"));
    assert_eq!(
        status_of(&app, 1).await,
        "running",
        "running runs are left alone"
    );
    assert_eq!(
        status_of(&app, 3).await,
        "queued",
        "other arguments are left alone"
    );
    // The superseded run's thread is told why.
    let posts = app.posts(1).await;
    let message = crate::helpers::body(&posts[0])["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("run #2 cancelled") && message.contains("superseded by run \\#4"),
        "{message}"
    );
    for id in [1, 3, 4] {
        say(
            &app,
            "alice",
            &format!("#ci cancel {id}"),
            &format!("c{id}"),
        )
        .await;
    }
}

#[tokio::test]
async fn replace_under_concurrent_triggers_keeps_exactly_one_of_the_same_request() {
    let job = format!("on_new = \"replace\"\n{SLOW}");
    let app = spawn_app_with(&[("deploy", &job)]).await;
    say(&app, "alice", "#deploy", "k1").await;
    wait_status(&app, 1, "running").await;

    tokio::join!(
        say(&app, "alice", "#deploy", "k2"),
        say(&app, "bob", "#deploy", "k3"),
        say(&app, "carol", "#deploy", "k4"),
    );

    // Runs 2 to 4 ask for the same thing: each newer one replaced the one before.
    wait_status(&app, 2, "cancelled").await;
    wait_status(&app, 3, "cancelled").await;
    assert_eq!(status_of(&app, 4).await, "queued");
    let second = app.store.get_run(RunId(2)).await.unwrap().unwrap();
    assert!(second.error.unwrap().starts_with("superseded by run #"));
    for id in [1, 4] {
        say(
            &app,
            "alice",
            &format!("#ci cancel {id}"),
            &format!("c{id}"),
        )
        .await;
    }
}

#[tokio::test]
async fn cancel_running_lets_the_latest_request_win() {
    let job = format!("on_new = \"cancel_running\"\n{SLOW}");
    let app = spawn_app_with(&[("preview", &job)]).await;
    say(&app, "alice", "#preview", "w1").await;
    wait_status(&app, 1, "running").await;
    say(&app, "bob", "#preview", "w2").await;

    wait_status(&app, 1, "cancelled").await;
    let first = app.store.get_run(RunId(1)).await.unwrap().unwrap();
    assert_eq!(first.error.as_deref(), Some("superseded by run #2"));
    wait_status(&app, 2, "running").await;
    say(&app, "bob", "#ci cancel 2", "c2").await;
}

#[tokio::test]
async fn the_acknowledgement_gives_the_expected_wait_once_the_job_has_history() {
    // Each run waits for its own file, so the test decides when it ends.
    let app = spawn_app_with(&[(
        "nap",
        "[[steps]]\nname = \"Nap\"\n\
         run = [\"sh\", \"-c\", \"while [ ! -e go-$CHATRUN_RUN_ID ]; do sleep 0.02; done\"]\n",
    )])
    .await;
    let go = |run: i64| std::fs::write(app.dir.path().join(format!("jobs/go-{run}")), "").unwrap();
    go(1);
    let first = say(&app, "alice", "#nap", "n1").await;
    assert!(!first.contains("expected"), "no history yet: {first}");
    app.finished_run(1).await;

    say(&app, "alice", "#nap", "n2").await;
    wait_status(&app, 2, "running").await;
    let third = say(&app, "alice", "#nap", "n3").await;
    assert!(
        third.contains("position 1 in the queue, expected to start in about "),
        "{third}"
    );
    go(2);
    go(3);
    app.finished_run(3).await;
}

#[tokio::test]
async fn a_user_who_starts_too_many_runs_is_asked_to_slow_down() {
    let app = spawn_app_with(&[("quick", "[[steps]]\nname = \"x\"\nrun = [\"true\"]\n")]).await;
    for i in 0..10 {
        let text = say(&app, "alice", "#quick", &format!("f{i}")).await;
        assert!(text.contains("Queued run"), "{i}: {text}");
    }
    let text = say(&app, "alice", "#quick", "f10").await;
    assert!(
        text.contains("slow down, please: 10 runs a minute at most; try again in"),
        "{text}"
    );
    // Others, and commands that start nothing, are not limited.
    assert!(
        say(&app, "bob", "#quick", "f11")
            .await
            .contains("Queued run")
    );
    assert!(
        !say(&app, "alice", "#ci queue", "f12")
            .await
            .contains("slow down")
    );
    assert!(
        say(&app, "alice", "#ci help", "f13")
            .await
            .contains("Jobs you can run")
    );
}

#[tokio::test]
async fn cancel_running_under_concurrent_triggers_never_cancels_the_newest() {
    let job = format!("on_new = \"cancel_running\"\n{SLOW}");
    let app = spawn_app_with(&[("preview", &job)]).await;
    say(&app, "alice", "#preview", "z1").await;
    wait_status(&app, 1, "running").await;

    tokio::join!(
        say(&app, "bob", "#preview", "z2"),
        say(&app, "carol", "#preview", "z3"),
    );

    wait_status(&app, 1, "cancelled").await;
    wait_for(|| async {
        let two = status_of(&app, 2).await;
        let three = status_of(&app, 3).await;
        (two == "running" || three == "running").then_some(())
    })
    .await;
    assert_ne!(
        status_of(&app, 3).await,
        "cancelled",
        "the newest request stays"
    );
    for (id, user) in [(2, "bob"), (3, "carol")] {
        say(&app, user, &format!("#ci cancel {id}"), &format!("c{id}")).await;
    }
}
