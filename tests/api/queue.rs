//! Runs and the queue: timeouts kill whole process trees; a crash or a shutdown does not strand
//! a run.

use std::os::unix::process::CommandExt;

use chatrun::domain::{RunId, StepStatus};
use chatrun::store::Ack;
use chatrun::store::{NewRun, now_ms};

use crate::helpers::{BUILD_JOB, spawn_app, spawn_app_with, start, wait_for};

#[tokio::test]
async fn a_timeout_kills_the_steps_children_and_grandchildren() {
    let app = spawn_app_with(&[(
        "hang",
        r#"
timeout = "1s"
[[steps]]
name = "Hang"
run = ["sh", "-c", "sleep 100 & echo $! > grandchild.pid; wait"]
"#,
    )])
    .await;
    app.trigger("#hang", "hangpost1").await;

    let run = app.finished_run(1).await;

    assert_eq!(run.status.as_str(), "timed out");
    let steps = app.store.steps(RunId(1)).await.unwrap();
    assert_eq!(steps[0].status, StepStatus::TimedOut);
    let pid_file = app.dir.path().join("jobs/grandchild.pid");
    let pid = std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .to_string();
    wait_for(|| async {
        // Gone, or a zombie waiting for init to reap it: either way no longer running.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => Some(()),
            Ok(stat) => stat.contains(") Z ").then_some(()),
        }
    })
    .await;
    let message = crate::helpers::body(&app.posts(1).await[0])["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with(":alarm_clock: **hang** run #1 timed out"),
        "{message}"
    );
}

#[tokio::test]
async fn steps_get_the_run_in_their_environment_and_keep_going_reports_every_step() {
    let app = spawn_app_with(&[(
        "matrix",
        r#"
keep_going = true
[[steps]]
name = "A"
run = ["sh", "-c", "echo run=$CHATRUN_RUN_ID job=$CHATRUN_JOB user=$CHATRUN_USER channel=$CHATRUN_CHANNEL; exit 1"]
[[steps]]
name = "B"
run = ["sh", "-c", "echo B ran"]
"#,
    )])
    .await;
    app.trigger("#matrix", "envpost1").await;

    let run = app.finished_run(1).await;

    assert_eq!(run.status.as_str(), "failed");
    assert!(
        run.log_head
            .contains("run=1 job=matrix user=alice channel=ci-builds"),
        "{}",
        run.log_head
    );
    assert!(run.log_head.contains("B ran"));
    let steps = app.store.steps(RunId(1)).await.unwrap();
    assert_eq!(steps[0].status, StepStatus::Failed);
    assert_eq!(steps[1].status, StepStatus::Succeeded);
}

#[tokio::test]
async fn a_run_left_running_by_a_crashed_chatrun_ends_interrupted_with_a_reply() {
    // A first chatrun acknowledged a run, claimed it and died; its lease ran out.
    let long_ago = now_ms() - 60_000;
    let (dir, mattermost) =
        leave_a_claimed_run(spawn_app().await, "dead-worker", long_ago, long_ago + 1).await;

    let app = start(dir, mattermost, &[("build", BUILD_JOB)]).await;

    let run = app.finished_run(1).await;
    assert_eq!(run.status.as_str(), "interrupted");
    assert_eq!(run.attempt, 1, "it was not run again");
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("chatrun stopped while this run was going"),
        "{error}"
    );
    let message = crate::helpers::body(&app.posts(1).await[0])["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("interrupted"), "{message}");
    assert!(message.contains("it is not run again"), "{message}");
}

#[tokio::test]
async fn a_job_that_allows_it_is_run_once_more_after_a_crash() {
    let long_ago = now_ms() - 60_000;
    let (dir, mattermost) =
        leave_a_claimed_run(spawn_app().await, "dead-worker", long_ago, long_ago + 1).await;
    let job = format!("retry_interrupted = true\n{BUILD_JOB}");

    let app = start(dir, mattermost, &[("build", &job)]).await;

    let run = app.finished_run(1).await;
    assert_eq!(run.status.as_str(), "succeeded");
    assert_eq!(run.attempt, 2);
    assert_eq!(app.posts(1).await.len(), 1);
}

#[tokio::test]
async fn on_shutdown_a_step_that_outlives_the_grace_period_is_stopped_and_reported() {
    let app = spawn_app_with(&[(
        "slow",
        "[[steps]]\nname = \"Wait\"\nrun = [\"sleep\", \"30\"]\n",
    )])
    .await;
    app.trigger("#slow", "slowpost1").await;
    app.first_step_running(1).await;

    // The helpers' configuration gives steps one second.
    let (dir, mattermost) = app.stop().await;

    let store = crate::helpers::open_store(dir.path()).await;
    let run = store.get_run(RunId(1)).await.unwrap().unwrap();
    assert_eq!(run.status.as_str(), "interrupted");
    let error = run.error.unwrap_or_default();
    assert!(error.contains("shut down"), "{error}");
    let steps = store.steps(RunId(1)).await.unwrap();
    assert_eq!(steps[0].status, StepStatus::Interrupted);
    // The reply went out before chatrun exited.
    let posts: Vec<_> = mattermost
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/api/v4/posts")
        .collect();
    assert_eq!(posts.len(), 1);
    let message = crate::helpers::body(&posts[0])["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("interrupted"), "{message}");
}

#[tokio::test]
async fn on_shutdown_webhooks_get_503_while_a_running_step_finishes_in_its_grace_period() {
    let app = spawn_app().await;
    let (dir, mattermost) = app.stop().await;
    let app = crate::helpers::start_with(
        dir,
        mattermost,
        &[(
            "slow",
            "[[steps]]\nname = \"Wait\"\nrun = [\"sh\", \"-c\", \"while [ ! -e go ]; do sleep 0.05; done\"]\n",
        )],
        "shutdown_grace_secs = 60",
    )
    .await;
    app.trigger("#slow", "slowpost1").await;
    app.first_step_running(1).await;

    app.shutdown.cancel();
    let refused = wait_for(|| async {
        let response = app.post_form(&app.payload("#slow", "slowpost2")).await;
        (response.status() == 503).then_some(response)
    })
    .await;
    let reason = refused.text().await.unwrap();
    assert!(reason.contains("shutting down"), "{reason}");
    // The pages still answer while the step finishes.
    assert_eq!(app.get("/runs/1").await.status(), 200);
    std::fs::write(app.dir.path().join("jobs/go"), "").unwrap();

    // chatrun exits once the step is done, well before its 60 s grace period is over.
    let (dir, _mattermost) = app.stop().await;
    let store = crate::helpers::open_store(dir.path()).await;
    let run = store.get_run(RunId(1)).await.unwrap().unwrap();
    assert_eq!(run.status.as_str(), "succeeded");
    assert!(store.get_run(RunId(2)).await.unwrap().is_none());
}

#[tokio::test]
async fn the_health_check_answers_when_the_database_does() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_restart_takes_over_at_once_the_runs_of_a_dead_chatrun_on_this_host() {
    // Its owner: a process of this host that has exited; its lease would last an hour.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let owner = chatrun::worker::owner_name(0)
        .replace(&format!(":{}#", std::process::id()), &format!(":{dead}#"));
    let now = now_ms();
    let (dir, mattermost) =
        leave_a_claimed_run(spawn_app().await, &owner, now, now + 3_600_000).await;

    let app = start(dir, mattermost, &[("build", BUILD_JOB)]).await;

    let run = app.finished_run(1).await;
    assert_eq!(run.status.as_str(), "interrupted");
    assert_eq!(run.attempt, 1);
}

#[tokio::test]
async fn a_restart_kills_the_processes_a_dead_chatrun_left_running_and_only_those() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let owner = chatrun::worker::owner_name(0)
        .replace(&format!(":{}#", std::process::id()), &format!(":{dead}#"));
    let now = now_ms();
    let (dir, mattermost) =
        leave_a_claimed_run(spawn_app().await, &owner, now, now + 3_600_000).await;
    // What the dead chatrun's step left: a process carrying the run's number and owner (as
    // every step process and its children do), and one of another run.
    let spawn = |run: &str| {
        std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .env("CHATRUN_RUN_ID", run)
            .env("CHATRUN_OWNER", &owner)
            .spawn()
            .unwrap()
    };
    let left = std::sync::Mutex::new(spawn("1"));
    let mut other = spawn("2");

    let app = start(dir, mattermost, &[("build", BUILD_JOB)]).await;

    let run = app.finished_run(1).await;
    assert_eq!(run.status.as_str(), "interrupted");
    wait_for(|| async { left.lock().unwrap().try_wait().unwrap() }).await;
    assert!(
        other.try_wait().unwrap().is_none(),
        "not the run's: left alone"
    );
    other.kill().unwrap();
    other.wait().unwrap();
}

/// Stops `app` and leaves in its database a run claimed by `owner` whose lease ends at
/// `lease_until`: what a chatrun that died mid-run leaves behind.
async fn leave_a_claimed_run(
    app: crate::helpers::TestApp,
    owner: &str,
    claimed_at: i64,
    lease_until: i64,
) -> (tempfile::TempDir, wiremock::MockServer) {
    let (dir, mattermost) = app.stop().await;
    let store = crate::helpers::open_store(dir.path()).await;
    let new = NewRun {
        origin: chatrun::domain::Origin {
            platform: chatrun::domain::Platform::Mattermost,
            channel_id: "chan1".into(),
            user_name: "alice".into(),
            ..chatrun::domain::Origin::default()
        },
        message_id: "crashpost".into(),
        job: "build".into(),
        message: "#build".into(),
        ..NewRun::default()
    };
    store
        .insert_run(&new, now_ms(), |_: &chatrun::store::AckFacts| Ack {
            text: "queued".into(),
            delivery: None,
        })
        .await
        .unwrap();
    let claimed = store
        .try_claim(chatrun::store::Claim {
            owner,
            now: claimed_at,
            lease_until,
            steps: &chatrun::store::JobSteps::new([("build", vec!["Build"])]),
        })
        .await
        .unwrap();
    assert!(claimed.is_some());
    store.close().await;
    (dir, mattermost)
}

#[tokio::test]
async fn a_run_whose_arguments_no_longer_fit_its_job_fails_with_its_steps_skipped() {
    let app = spawn_app().await;
    // Queued when `build` took a `flavour` (the job has changed since).
    let old = NewRun {
        origin: chatrun::domain::Origin {
            platform: chatrun::domain::Platform::Mattermost,
            user_name: "alice".into(),
            ..chatrun::domain::Origin::default()
        },
        message_id: "oldpost1".into(),
        job: "build".into(),
        message: "#build flavour=dark".into(),
        args: "flavour=dark".into(),
        ..NewRun::default()
    };
    app.store
        .insert_run(&old, now_ms(), |_: &chatrun::store::AckFacts| Ack {
            text: "queued".into(),
            delivery: None,
        })
        .await
        .unwrap();

    let run = app.finished_run(1).await;
    assert_eq!(run.status.as_str(), "failed");
    let error = run.error.unwrap_or_default();
    assert!(error.contains("no longer fit"), "{error}");
    // The claim wrote the job's steps; none of them ran.
    let steps = app.store.steps(RunId(1)).await.unwrap();
    assert_eq!(steps.len(), 3);
    assert!(
        steps.iter().all(|s| s.status == StepStatus::Skipped),
        "{steps:?}"
    );
}
