//! chatrun on Postgres: the same black box as the rest of these tests, with `database_url`
//! naming a database on the throwaway cluster the tests start (`support/postgres.rs`), and two
//! chatruns sharing one database as two instances do.

use std::collections::BTreeSet;

use chatrun::domain::{RunId, RunStatus};
use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{BUILD_JOB, TestApp, body, launch, wait_for};
use crate::throwaway_postgres;

/// A step that appends its run's number to `runs.txt` in the folder it is given, then waits
/// `$2` seconds: the file proves how many times each run was executed.
fn marking_job(folder: &std::path::Path) -> String {
    format!(
        r#"
description = "Marks its run"
[params.wait]
default = "0"
pattern = "[0-9]{{1,3}}"
positional = 1
[[steps]]
name = "Mark"
run = ["sh", "-c", "echo \"$CHATRUN_RUN_ID\" >> \"$1\"; sleep \"$2\"", "sh", "{}/runs.txt", "{{wait}}"]
"#,
        folder.display()
    )
}

/// A fake Mattermost that answers every thread look-up and accepts every post.
async fn mattermost() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/api/v4/posts/[a-z0-9]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"root_id": ""})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/posts"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "newpost"})))
        .mount(&server)
        .await;
    server
}

/// A chatrun on database `url`, posting to `chat`, with the `build` job and `mark` (see
/// [`marking_job`], writing into `folder`).
async fn instance(url: &str, chat: &MockServer, folder: &std::path::Path) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mark = marking_job(folder);
    launch(
        dir,
        MockServer::start().await,
        &[("build", BUILD_JOB), ("mark", &mark)],
        &format!("database_url = \"{url}\"\nworkers = 4"),
        Some(&chat.uri()),
    )
    .await
}

/// The result posts `chat` received, by the thread they answer.
async fn result_posts(chat: &MockServer) -> Vec<serde_json::Value> {
    chat.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/api/v4/posts")
        .map(body)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_is_acknowledged_run_and_answered_in_its_thread_on_postgres() {
    let Some(url) = throwaway_postgres::database() else {
        return;
    };
    let chat = mattermost().await;
    let folder = tempfile::tempdir().unwrap();
    let app = instance(&url, &chat, folder.path()).await;

    let reply = app.trigger("#build web", "rootpost1").await;
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains("run **#1** of **build** (branch=main target=web), asked by @alice"),
        "{text}"
    );
    let run = app.finished_run(1).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    let steps = app.store.steps(RunId(1)).await.unwrap();
    assert_eq!(steps.len(), 3);
    let posts = wait_for(|| async {
        let posts = result_posts(&chat).await;
        (!posts.is_empty()).then_some(posts)
    })
    .await;
    assert_eq!(posts[0]["root_id"], "rootpost1");
    let message = posts[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(":white_check_mark: **build** run #1 succeeded"),
        "{message}"
    );

    // The same post delivered again: the same run, the same words.
    let again = app.trigger("#build web", "rootpost1").await;
    assert_eq!(again["text"], reply["text"]);
    assert_eq!(app.store.counts().await.unwrap(), (0, 0));
    assert_eq!(app.store.list_runs(None, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_queue_run_each_trigger_once_and_answer_once() {
    let Some(url) = throwaway_postgres::database() else {
        return;
    };
    let chat = mattermost().await;
    let folder = tempfile::tempdir().unwrap();
    let a = instance(&url, &chat, folder.path()).await;
    let b = instance(&url, &chat, folder.path()).await;

    // Alternately to each, as a load balancer would; every one acknowledged with its number.
    let triggers = 40;
    let mut numbers = BTreeSet::new();
    for i in 0..triggers {
        let app = if i % 2 == 0 { &a } else { &b };
        // (A user each: the rate limit allows a user ten runs a minute.)
        let text = app
            .say(&format!("user{i}"), "#mark", &format!("post{i:04}"))
            .await;
        let number: i64 = text
            .split("**#")
            .nth(1)
            .and_then(|rest| rest.split("**").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no run number in {text}"));
        numbers.insert(number);
    }
    assert_eq!(
        numbers.len(),
        triggers,
        "distinct numbers from both instances"
    );

    // Every run finishes, executed once (its number once in the file)…
    for number in &numbers {
        a.finished_run(*number).await;
    }
    let marks = std::fs::read_to_string(folder.path().join("runs.txt")).unwrap();
    let mut executed: Vec<i64> = marks.lines().map(|l| l.parse().unwrap()).collect();
    executed.sort_unstable();
    assert_eq!(
        executed,
        numbers.iter().copied().collect::<Vec<_>>(),
        "each run once"
    );

    // …and answered once: every delivery sent, one post per run.
    wait_for(|| async {
        for number in &numbers {
            let deliveries = a.store.deliveries(RunId(*number)).await.unwrap();
            if deliveries.is_empty() || deliveries.iter().any(|d| d.status != "sent") {
                return None;
            }
        }
        Some(())
    })
    .await;
    let posts = result_posts(&chat).await;
    let mut threads: Vec<&str> = posts
        .iter()
        .map(|p| p["root_id"].as_str().unwrap())
        .collect();
    threads.sort_unstable();
    let answered = threads.len();
    threads.dedup();
    assert_eq!(
        (answered, threads.len()),
        (triggers, triggers),
        "one answer per trigger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_to_one_instance_stops_a_run_on_the_other_whose_pages_it_serves() {
    let Some(url) = throwaway_postgres::database() else {
        return;
    };
    let chat = mattermost().await;
    let folder = tempfile::tempdir().unwrap();
    // Only B runs steps: A dispatches nothing (no workers), as a web-only instance.
    let a = launch(
        tempfile::tempdir().unwrap(),
        MockServer::start().await,
        &[("build", BUILD_JOB), ("mark", &marking_job(folder.path()))],
        &format!("database_url = \"{url}\"\nworkers = 0"),
        Some(&chat.uri()),
    )
    .await;
    let b = instance(&url, &chat, folder.path()).await;

    a.trigger("#mark 100", "slowpost").await;
    b.first_step_running(1).await;
    let reply = a.trigger("#ci cancel 1", "cancelpost").await;
    assert!(reply["text"].as_str().unwrap().contains("#1"), "{reply}");
    let run = a.finished_run(1).await;
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.error.as_deref(), Some("cancelled by alice"));

    // A serves the run that B executed.
    let page = a.get("/runs/1").await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("cancelled by alice"), "{page}");
    let api: serde_json::Value = a.get("/api/runs/1").await.json().await.unwrap();
    assert_eq!(api["run"]["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_on_one_instance_signs_in_on_the_other() {
    let Some(url) = throwaway_postgres::database() else {
        return;
    };
    let chat = mattermost().await;
    let closed =
        format!("database_url = \"{url}\"\n[web]\nopen = false\npassword = \"a shared secret\"\n");
    let start = || async {
        launch(
            tempfile::tempdir().unwrap(),
            MockServer::start().await,
            &[("build", BUILD_JOB)],
            &closed,
            Some(&chat.uri()),
        )
        .await
    };
    let a = start().await;
    let b = start().await;
    let session = crate::history::sign_in(&a.base).await;
    assert_eq!(
        crate::history::status_with(&b.base, "/", &session).await,
        200
    );
    assert_eq!(
        crate::history::status_with(&b.base, "/", "chatrun_session=x").await,
        303
    );
}

/// Reads `stream`'s text until it contains `until`, for at most 30 s.
async fn read_until(stream: &mut reqwest::Response, text: &mut String, until: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !text.contains(until) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {until:?} within 30 s; so far: {text}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended before {until:?}: {text}"));
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_of_a_run_on_one_instance_is_followed_live_and_read_whole_on_the_other() {
    let Some(url) = throwaway_postgres::database() else {
        return;
    };
    let chat = mattermost().await;
    let folder = tempfile::tempdir().unwrap();
    // 3000 lines (past the database's head of 16 KiB), then it waits for `go`.
    let talk = format!(
        r#"
[[steps]]
name = "Talk"
run = ["sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); done; echo ready; while [ ! -e \"$1\" ]; do sleep 0.05; done; echo done", "sh", "{}/go"]
"#,
        folder.path().display()
    );
    let jobs = [("build", BUILD_JOB), ("talk", talk.as_str())];
    // A runs nothing; B runs the steps; each has a data folder of its own.
    let start = |workers: usize| {
        let (jobs, chat) = (&jobs, chat.uri());
        let config = format!("database_url = \"{url}\"\nworkers = {workers}");
        async move {
            let dir = tempfile::tempdir().unwrap();
            launch(dir, MockServer::start().await, jobs, &config, Some(&chat)).await
        }
    };
    let a = start(0).await;
    let b = start(2).await;

    a.trigger("#talk", "talkpost").await;
    // A follows the run while B executes it: every line so far, live, before the run ends.
    let mut stream = reqwest::get(format!("{}/runs/1/log/stream", a.base))
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut text = String::new();
    read_until(&mut stream, &mut text, "data: ready\n").await;
    assert!(!text.contains("event: end"), "{text}");
    let page = a.get("/runs/1").await.text().await.unwrap();
    assert!(
        page.contains("ready"),
        "the page shows the live end of the log"
    );

    std::fs::write(folder.path().join("go"), "").unwrap();
    read_until(&mut stream, &mut text, "event: end").await;
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| data.starts_with("line ") || *data == "ready" || *data == "done")
        .collect();
    let mut expected: Vec<String> = (0..3000).map(|i| format!("line {i}")).collect();
    expected.extend(["ready".to_string(), "done".to_string()]);
    assert_eq!(lines, expected, "every line once, in order");

    // Once over: A serves the whole log, which B kept in the database, not in its folder.
    let run = a.finished_run(1).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    let log = a.get("/runs/1/log").await.text().await.unwrap();
    for line in &expected {
        assert!(
            log.contains(&format!("{line}\n")),
            "{line} missing from the log"
        );
    }
    let api: serde_json::Value = a
        .get("/api/runs/1/log?offset=0&length=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["size"], log.len());
    assert!(!b.dir.path().join("data/logs/1.log").exists());
}
