//! Runs and the queue: timeouts kill whole process trees; a crash does not strand a run.

use chatrun::store::runs::Ack;
use chatrun::store::{NewRun, RunId, StepStatus, now_ms};

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
async fn a_run_left_running_by_a_crashed_chatrun_is_run_after_restart() {
    // A first chatrun acknowledged a run, claimed it and died; its lease ran out.
    let long_ago = now_ms() - 60_000;
    let (dir, mattermost) =
        leave_a_claimed_run(spawn_app().await, "dead-worker", long_ago, long_ago + 1).await;

    let app = start(dir, mattermost, &[("build", BUILD_JOB)]).await;

    let run = app.finished_run(1).await;
    assert_eq!(run.status.as_str(), "succeeded");
    assert_eq!(run.attempt, 2);
    assert_eq!(app.posts(1).await.len(), 1);
}

#[tokio::test]
async fn a_stopped_chatrun_puts_its_running_run_back_in_the_queue() {
    let app = spawn_app_with(&[(
        "slow",
        "[[steps]]\nname = \"Wait\"\nrun = [\"sleep\", \"30\"]\n",
    )])
    .await;
    app.trigger("#slow", "slowpost1").await;
    wait_for(|| async {
        let steps = app.store.steps(RunId(1)).await.unwrap();
        (steps.first()?.status == StepStatus::Running).then_some(())
    })
    .await;

    let (dir, _mattermost) = app.stop().await;

    let store =
        chatrun::store::Store::connect(&format!("sqlite://{}/chatrun.db", dir.path().display()))
            .await
            .unwrap();
    let run = store.get_run(RunId(1)).await.unwrap().unwrap();
    assert_eq!(run.status.as_str(), "queued");
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
    let owner = chatrun::queue::owner_name(0)
        .replace(&format!(":{}#", std::process::id()), &format!(":{dead}#"));
    let now = now_ms();
    let (dir, mattermost) =
        leave_a_claimed_run(spawn_app().await, &owner, now, now + 3_600_000).await;

    let app = start(dir, mattermost, &[("build", BUILD_JOB)]).await;

    let run = app.finished_run(1).await;
    assert_eq!(run.status.as_str(), "succeeded");
    assert_eq!(run.attempt, 2);
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
    let store =
        chatrun::store::Store::connect(&format!("sqlite://{}/chatrun.db", dir.path().display()))
            .await
            .unwrap();
    let new = NewRun {
        platform: "mattermost".into(),
        channel_id: "chan1".into(),
        message_id: "crashpost".into(),
        job: "build".into(),
        message: "#build".into(),
        user_name: "alice".into(),
        ..NewRun::default()
    };
    store
        .insert_run(&new, now_ms(), |_, _| Ack {
            text: "queued".into(),
            delivery: None,
        })
        .await
        .unwrap();
    let claimed = store
        .try_claim(owner, claimed_at, lease_until)
        .await
        .unwrap();
    assert!(claimed.is_some());
    store.close().await;
    (dir, mattermost)
}
