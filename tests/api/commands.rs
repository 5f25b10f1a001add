//! Chat commands and permissions, on both platforms.

use chatrun::domain::RunId;
use serde_json::Value;

use crate::helpers::{BUILD_JOB, TestApp, body, spawn_app_with, wait_for};

/// A job whose step leaves a grandchild running, writing its pid; it runs until cancelled.
const SLOW_JOB: &str = r#"
description = "Takes its time"
[[steps]]
name = "Wait"
run = ["sh", "-c", "sleep 100 & echo $! > grandchild-$CHATRUN_RUN_ID.pid; wait"]
junit = "never-written-{run_id}.xml"
"#;

/// Only alice, only in ci-builds; root may cancel anyone's run.
const GUARDED_JOB: &str = r#"
description = "Deploy to production"
[allow]
users = ["alice"]
channels = ["ci-builds"]
admins = ["root"]
[[steps]]
name = "Deploy"
run = ["true"]
"#;

async fn app() -> TestApp {
    spawn_app_with(&[
        ("build", BUILD_JOB),
        ("slow", SLOW_JOB),
        ("deploy", GUARDED_JOB),
    ])
    .await
}

/// Sends `text` as `user` in Mattermost and returns the reply text.
async fn say(app: &TestApp, user: &str, text: &str, post_id: &str) -> String {
    app.say(user, text, post_id).await
}

/// Sends `text` after the mention in Teams and returns the reply text.
async fn say_teams(app: &TestApp, text: &str, id: &str) -> String {
    let response = app.mention_teams(id, text).await;
    let reply: Value = response.json().await.unwrap();
    reply["text"].as_str().unwrap().to_string()
}

fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.contains(") Z "),
    }
}

#[tokio::test]
async fn help_details_a_job_with_its_parameters_on_both_platforms() {
    let app = app().await;
    let text = say(&app, "alice", "#ci help build", "p1").await;
    assert!(text.contains("**build**: Build everything"), "{text}");
    assert!(
        text.contains("• **branch** (position 2, default main)"),
        "{text}"
    );
    assert!(
        text.contains("Usage: **\\#ci build all main** or **\\#ci build branch=…**"),
        "{text}"
    );

    let text = say_teams(&app, "help build", "1001").await;
    assert!(text.contains("**build**: Build everything<br>"), "{text}");
    assert!(
        text.contains("Usage: **@BuildBot build all main**"),
        "{text}"
    );

    let text = say(&app, "alice", "#ci help biuld", "p2").await;
    assert!(text.contains("Did you mean **build**?"), "{text}");
}

#[tokio::test]
async fn status_and_queue_follow_a_run_and_cancel_kills_its_grandchildren() {
    let app = app().await;
    let ack = say(&app, "alice", "#slow", "p1").await;
    assert!(ack.contains("Queued run **#1**"), "{ack}");
    app.first_step_running(1).await;
    let pid_file = app.dir.path().join("jobs/grandchild-1.pid");
    let pid = wait_for(|| async {
        std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|p| !p.trim().is_empty())
    })
    .await
    .trim()
    .to_string();

    let text = say(&app, "bob", "#ci status 1", "p2").await;
    assert!(
        text.contains("Run **#1** of **slow**, asked by alice: running step 1/1 (Wait)"),
        "{text}"
    );
    let text = say(&app, "bob", "#ci queue", "p3").await;
    assert!(
        text.contains("**Running here:**\n• **#1** of **slow**, asked by alice"),
        "{text}"
    );

    // Only the requester (or an admin) may cancel.
    let text = say(&app, "bob", "#ci cancel 1", "p4").await;
    assert!(
        text.contains("only alice (who asked for run #1) and the admins of slow may cancel it"),
        "{text}"
    );
    let text = say(&app, "alice", "#ci cancel #1", "p5").await;
    assert!(text.contains("Cancelling run **#1** of **slow**"), "{text}");

    let run = app.finished_run(1).await;
    assert_eq!(run.status.as_str(), "cancelled");
    assert_eq!(run.error.as_deref(), Some("cancelled by alice"));
    // A step stopped before its end wrote no report to miss.
    let steps = app.store.steps(RunId(1)).await.unwrap();
    assert_eq!(steps[0].report_error, None, "{steps:?}");
    wait_for(|| async { process_gone(&pid).then_some(()) }).await;
    let result = body(&app.posts(1).await[0])["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        result.starts_with(":black_square_for_stop: **slow** run #1 cancelled"),
        "{result}"
    );
    assert!(result.contains("> cancelled by alice"), "{result}");

    let text = say(&app, "alice", "#ci status 1", "p6").await;
    assert!(text.contains("cancelled"), "{text}");
    let text = say(&app, "alice", "#ci status 99", "p7").await;
    assert!(text.contains("there is no run #99"), "{text}");
}

#[tokio::test]
async fn retry_runs_the_same_job_with_the_same_arguments_and_cancel_stops_a_queued_run() {
    let app = app().await;
    say(&app, "alice", "#build web feature/x", "p1").await;
    let first = app.finished_run(1).await;
    assert_eq!(first.args, "branch=feature/x target=web");

    let text = say_teams(&app, "rerun 1", "1002").await;
    assert!(
        text.contains("Queued run **#2** of **build** (branch=feature/x target=web)"),
        "{text}"
    );
    let second = app.finished_run(2).await;
    assert_eq!(
        (second.args.as_str(), second.origin.platform.as_str()),
        (first.args.as_str(), "teams")
    );
    let text = say(&app, "bob", "#ci retry #2", "p1b").await;
    assert!(
        text.contains(
            "Queued run **#3** of **build** (branch=feature/x target=web), asked by @bob"
        ),
        "{text}"
    );
    app.finished_run(3).await;

    // One slow run at a time (the job's default concurrency): the next two wait.
    say(&app, "alice", "#slow", "p2").await;
    say(&app, "alice", "#slow", "p3").await;
    say(&app, "alice", "#slow", "p4").await;
    let text = say(&app, "alice", "#ci queue", "p5").await;
    assert!(
        text.contains(
            "**Queued here:**\n• 1. **#5** of **slow**, asked by alice\n• 2. **#6** of **slow**, asked by alice"
        ),
        "{text}"
    );
    let list = app.get("/").await.text().await.unwrap();
    assert!(list.contains("<h2>Now</h2>"), "{list}");
    assert!(list.contains(r#"<span class="status s-waiting">2. waiting</span></td><td class="num" data-label="Run"><a href="/runs/6">#6</a>"#), "{list}");
    let text = say(&app, "alice", "#ci cancel 6", "p6").await;
    assert!(
        text.contains("Cancelled run **#6** of **slow** before it started"),
        "{text}"
    );
    let cancelled = app.finished_run(6).await;
    assert_eq!(cancelled.error.as_deref(), Some("cancelled by alice"));
    assert!(cancelled.started_at.is_none());
    for run in [4, 5] {
        say(
            &app,
            "alice",
            &format!("#ci cancel {run}"),
            &format!("c{run}"),
        )
        .await;
    }
}

#[tokio::test]
async fn denied_requests_are_refused_recorded_and_hidden_from_help() {
    let app = app().await;
    let text = say(&app, "bob", "#deploy", "p1").await;
    assert_eq!(
        text,
        ":no_entry_sign: Not running **deploy**: bob is not in the job's allow.users. Nothing was started."
    );
    let run = app.store.get_run(RunId(1)).await.unwrap().unwrap();
    assert_eq!(run.status.as_str(), "denied");
    assert_eq!(
        (
            run.origin.user_name.as_str(),
            run.origin.channel_name.as_str()
        ),
        ("bob", "ci-builds")
    );
    let list = app.get("/").await.text().await.unwrap();
    assert!(list.contains("denied"), "{list}");

    let help = say(&app, "bob", "#ci help", "p2").await;
    assert!(!help.contains("deploy"), "{help}");
    let help = say(&app, "alice", "#ci help", "p3").await;
    assert!(
        help.contains("| **deploy** | Deploy to production |"),
        "{help}"
    );

    // Teams users are Entra ids, and the channel is not ci-builds.
    let text = say_teams(&app, "deploy", "1003").await;
    assert!(
        text.contains("Not running **deploy**: Ada Lovelace is not in the job"),
        "{text}"
    );

    // An admin of deploy may cancel alice's run of it; bob may not.
    let text = say(&app, "alice", "#deploy", "p4").await;
    assert!(text.contains("Queued run **#3** of **deploy**"), "{text}");
    let text = say(&app, "root", "#ci cancel 3", "p5").await;
    assert!(!text.contains("may cancel it"), "{text}");
}

#[tokio::test]
async fn status_queue_and_cancel_work_from_teams_too() {
    let app = app().await;
    let ack = say_teams(&app, "slow", "2001").await;
    assert!(
        ack.contains("Queued run **#1** of **slow**, asked by Ada Lovelace"),
        "{ack}"
    );
    app.first_step_running(1).await;

    let text = say_teams(&app, "status 1", "2002").await;
    assert!(
        text.contains("Run **#1** of **slow**, asked by Ada Lovelace: running step 1/1 (Wait)"),
        "{text}"
    );
    let text = say_teams(&app, "queue", "2003").await;
    assert!(
        text.starts_with("**Running here:**<br>\n• **#1** of **slow**, asked by Ada Lovelace"),
        "{text}"
    );
    let text = say_teams(&app, "cancel 1", "2004").await;
    assert!(text.contains("Cancelling run **#1** of **slow**"), "{text}");
    let run = app.finished_run(1).await;
    assert_eq!(run.error.as_deref(), Some("cancelled by Ada Lovelace"));
    // The result card says so.
    let cards = app.cards(1).await;
    let card = String::from_utf8_lossy(&cards[0].body).to_string();
    assert!(card.contains("cancelled by Ada Lovelace"), "{card}");
    let text = say_teams(&app, "stauts 1", "2005").await;
    assert!(text.contains("Did you mean **status**?"), "{text}");
}

#[tokio::test]
async fn injection_attempts_from_teams_are_refused_too() {
    let app = app().await;
    for (i, attack) in [
        "\"$(id)\"",
        "web;id",
        "--force",
        "`id`",
        "&quot;a&quot;&amp;&amp;id",
    ]
    .iter()
    .enumerate()
    {
        let text = say_teams(&app, &format!("build {attack}"), &format!("30{i}")).await;
        assert!(
            text.starts_with("🚫 Not running **build**:"),
            "{attack}: {text}"
        );
    }
    assert!(app.store.list_runs(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_command_without_a_run_number_shows_that_command_with_one() {
    let app = app().await;
    for (command, post) in [("status", "p-s"), ("cancel", "p-c"), ("retry", "p-r")] {
        let reply = say(&app, "alice", &format!("#ci {command}"), post).await;
        assert!(
            reply.contains(&format!("e.g. **{command} 42**")),
            "{command}: {reply}"
        );
    }
}
