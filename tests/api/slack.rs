//! Slack, black box: signed requests to chatrun's three Slack URLs, and a local server playing
//! Slack's Web API (`chat.postMessage`, `conversations.history`, `conversations.replies`, with
//! message metadata, rate limits and a post whose answer never comes).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chatrun::chat::slack::auth::sign;
use chatrun::domain::{RunId, RunStatus};
use serde_json::{Value, json};

use crate::helpers::{BUILD_JOB, TestApp, start_with, wait_for};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN: &str = "xoxb-test-token";
const CHANNEL: &str = "C0123CHAN";

/// A job with a test report: 3 tests, 1 failed.
const TESTED_JOB: &str = r#"
[[steps]]
name = "Web Client"
run = ["sh", "-c", "printf '<testsuite name=\"web\" tests=\"3\" failures=\"1\"><testcase classname=\"web\" name=\"renders\"/><testcase classname=\"web\" name=\"logs in\"><failure message=\"expected 200, got 500\"/></testcase><testcase classname=\"web\" name=\"logs out\"/></testsuite>' > report.xml; exit 1"]
junit = "report.xml"
"#;

/// Plays Slack's Web API for one test.
#[derive(Clone, Default)]
struct FakeSlack {
    /// Messages posted, in order, each as `chat.postMessage` took it plus its `ts`.
    messages: Arc<Mutex<Vec<Value>>>,
    /// When each `chat.postMessage` arrived, and whether it was refused with 429.
    attempts: Arc<Mutex<Vec<(Instant, bool)>>>,
    /// The next this many `chat.postMessage` calls get 429 with `Retry-After: 1`.
    rate_limited: Arc<AtomicUsize>,
    /// A threaded post is recorded, then never answered (the connection stays open).
    hang_on_replies: Arc<AtomicUsize>,
    /// Searches made (`conversations.*`).
    searches: Arc<AtomicUsize>,
}

impl FakeSlack {
    async fn start(self) -> String {
        let app = Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route("/api/chat.update", post(update_message))
            .route("/api/conversations.history", get(history))
            .route("/api/conversations.replies", get(replies))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/api")
    }

    fn messages(&self) -> Vec<Value> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until `n` messages were posted, and returns them.
    async fn wait_messages(&self, n: usize) -> Vec<Value> {
        wait_for(|| async {
            let messages = self.messages();
            (messages.len() >= n).then_some(messages)
        })
        .await
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {BOT_TOKEN}"))
}

async fn post_message(
    State(slack): State<FakeSlack>,
    headers: HeaderMap,
    Json(mut message): Json<Value>,
) -> Response {
    if !authorized(&headers) {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    let limited = slack
        .rate_limited
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    slack
        .attempts
        .lock()
        .unwrap()
        .push((Instant::now(), limited));
    if limited {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
    }
    let ts = {
        let mut messages = slack.messages.lock().unwrap();
        let ts = format!("1700000000.{:06}", messages.len() + 1);
        message["ts"] = ts.clone().into();
        let mut kept = message.clone();
        // As first posted, whatever `chat.update` later makes of it.
        kept["posted"] = message.clone();
        messages.push(kept);
        ts
    };
    let threaded = message.get("thread_ts").is_some();
    if threaded
        && slack
            .hang_on_replies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        // Posted, but the answer never comes.
        std::future::pending::<()>().await;
    }
    Json(json!({"ok": true, "channel": message["channel"], "ts": ts, "message": message}))
        .into_response()
}

/// `chat.update`: the message `ts` of `channel` says the new text and blocks.
async fn update_message(
    State(slack): State<FakeSlack>,
    headers: HeaderMap,
    Json(update): Json<Value>,
) -> Json<Value> {
    assert!(authorized(&headers));
    let mut messages = slack.messages.lock().unwrap();
    let Some(message) = messages
        .iter_mut()
        .find(|m| m["channel"] == update["channel"] && m["ts"] == update["ts"])
    else {
        return Json(json!({"ok": false, "error": "message_not_found"}));
    };
    message["text"] = update["text"].clone();
    message["blocks"] = update["blocks"].clone();
    message["edited"] = true.into();
    Json(json!({"ok": true, "channel": update["channel"], "ts": update["ts"]}))
}

/// What Slack lists of a message: its metadata only when asked for.
fn listed(message: &Value, with_metadata: bool) -> Value {
    let mut out = json!({"type": "message", "ts": message["ts"], "text": message["text"],
        "bot_id": "B0BOT"});
    if with_metadata && let Some(metadata) = message.get("metadata") {
        out["metadata"] = metadata.clone();
    }
    out
}

fn wants_metadata(query: &std::collections::HashMap<String, String>) -> bool {
    query.get("include_all_metadata").map(String::as_str) == Some("true")
}

async fn history(
    State(slack): State<FakeSlack>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    slack.searches.fetch_add(1, Ordering::SeqCst);
    assert!(authorized(&headers));
    let channel = query.get("channel").cloned().unwrap_or_default();
    let messages: Vec<Value> = slack
        .messages()
        .iter()
        .rev()
        .filter(|m| m["channel"] == channel.as_str() && m.get("thread_ts").is_none())
        .map(|m| listed(m, wants_metadata(&query)))
        .collect();
    Json(json!({"ok": true, "messages": messages, "has_more": false,
        "response_metadata": {"next_cursor": ""}}))
}

async fn replies(
    State(slack): State<FakeSlack>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    slack.searches.fetch_add(1, Ordering::SeqCst);
    assert!(authorized(&headers));
    let (channel, ts) = (query["channel"].clone(), query["ts"].clone());
    let messages: Vec<Value> = slack
        .messages()
        .iter()
        .filter(|m| {
            m["channel"] == channel.as_str()
                && (m["ts"] == ts.as_str() || m["thread_ts"] == ts.as_str())
        })
        .map(|m| listed(m, wants_metadata(&query)))
        .collect();
    Json(json!({"ok": true, "messages": messages, "has_more": false,
        "response_metadata": {"next_cursor": ""}}))
}

/// The `[slack]` section for a fake at `api`.
fn slack_config(api: &str) -> String {
    format!(
        "[slack]\nsigning_secret = \"{SECRET}\"\nbot_token = \"{BOT_TOKEN}\"\napi_url = \"{api}\"\n"
    )
}

/// A chatrun with the `build` job and `jobs`, its Slack Web API played by `slack`.
async fn spawn(slack: &FakeSlack, jobs: &[(&str, &str)]) -> TestApp {
    let api = slack.clone().start().await;
    let jobs: Vec<(&str, &str)> = [("build", BUILD_JOB)]
        .into_iter()
        .chain(jobs.iter().copied())
        .collect();
    let dir = tempfile::tempdir().expect("a temporary folder");
    start_with(
        dir,
        wiremock::MockServer::start().await,
        &jobs,
        &slack_config(&api),
    )
    .await
}

fn now_secs() -> String {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs())
    .to_string()
}

/// A POST of `body` to `/hooks/slack/{endpoint}` of chatrun at `base`, signed now as Slack
/// signs.
fn signed(base: &str, endpoint: &str, body: &[u8]) -> reqwest::RequestBuilder {
    let timestamp = now_secs();
    reqwest::Client::new()
        .post(format!("{base}/hooks/slack/{endpoint}"))
        .header("x-slack-request-timestamp", &timestamp)
        .header(
            "x-slack-signature",
            sign(SECRET.as_bytes(), &timestamp, body),
        )
        .body(body.to_vec())
}

/// POSTs `body` to `/hooks/slack/{endpoint}`, signed, with `headers` besides.
async fn post_signed(
    app: &TestApp,
    endpoint: &str,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = signed(&app.base, endpoint, body).header("content-type", content_type);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// POSTs a click's form (see [`click`]) to `/hooks/slack/actions`, signed.
async fn press(app: &TestApp, form: &[u8]) -> reqwest::Response {
    post_signed(
        app,
        "actions",
        "application/x-www-form-urlencoded",
        form,
        &[],
    )
    .await
}

/// A slash command's form, fields as Slack sends them.
fn slash_form(user: &str, command: &str, text: &str, trigger_id: &str) -> Vec<u8> {
    serde_urlencoded::to_string([
        ("token", "gIkuvaNzQIHg97ATvDxqgjtO"),
        ("team_id", "T0001"),
        ("team_domain", "example"),
        ("channel_id", CHANNEL),
        ("channel_name", "builds"),
        ("user_id", user),
        ("user_name", &format!("name-{user}")),
        ("command", command),
        ("text", text),
        ("api_app_id", "A0APP"),
        ("is_enterprise_install", "false"),
        ("response_url", "https://hooks.slack.com/commands/1234/5678"),
        ("trigger_id", trigger_id),
    ])
    .unwrap()
    .into_bytes()
}

async fn slash(
    app: &TestApp,
    user: &str,
    command: &str,
    text: &str,
    trigger_id: &str,
) -> reqwest::Response {
    post_signed(
        app,
        "commands",
        "application/x-www-form-urlencoded",
        &slash_form(user, command, text, trigger_id),
        &[],
    )
    .await
}

/// An `app_mention` delivery (the shape of Slack's documented example).
fn mention(event_id: &str, user: &str, text: &str, ts: &str, thread_ts: Option<&str>) -> Vec<u8> {
    let mut event = json!({"type": "app_mention", "user": user, "text": text, "ts": ts,
        "channel": CHANNEL, "event_ts": ts});
    if let Some(thread) = thread_ts {
        event["thread_ts"] = thread.into();
    }
    serde_json::to_vec(
        &json!({"token": "ZZZZZZWSxiZZZ2yIvs3peJ", "team_id": "T0001",
        "api_app_id": "A0APP", "event": event, "type": "event_callback",
        "event_id": event_id, "event_time": 1_515_449_522, "authed_users": ["U0BOT"]}),
    )
    .unwrap()
}

/// A click on a button of message `message_ts` (the shape of the block_actions fixture).
fn click(
    user: &str,
    action_id: &str,
    value: &str,
    message_ts: &str,
    thread_ts: Option<&str>,
) -> Vec<u8> {
    let fixture: Value =
        serde_json::from_str(include_str!("../fixtures/slack/block-actions.json")).unwrap();
    let mut payload = fixture;
    payload["user"]["id"] = user.into();
    payload["user"]["username"] = format!("name-{user}").into();
    payload["api_app_id"] = "A0APP".into();
    payload["channel"]["id"] = CHANNEL.into();
    payload["container"]["channel_id"] = CHANNEL.into();
    payload["container"]["message_ts"] = message_ts.into();
    payload["message"]["ts"] = message_ts.into();
    if let Some(thread) = thread_ts {
        payload["container"]["thread_ts"] = thread.into();
        payload["message"]["thread_ts"] = thread.into();
    }
    payload["actions"][0]["action_id"] = action_id.into();
    payload["actions"][0]["value"] = value.into();
    serde_urlencoded::to_string([("payload", payload.to_string())])
        .unwrap()
        .into_bytes()
}

/// The text of every block of `message`, joined: what a reader sees.
fn shown(message: &Value) -> String {
    let mut out = message["text"].as_str().unwrap_or_default().to_string();
    out.push('\n');
    out.push_str(&message["blocks"].to_string());
    out
}

/// The action ids and values of a message's buttons.
fn buttons(message: &Value) -> Vec<(String, String)> {
    message["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["action_id"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn finished(app: &TestApp, id: i64) -> chatrun::domain::RunRow {
    app.finished_run(id).await
}

#[tokio::test]
async fn a_slash_command_gets_an_anchor_and_its_result_threaded_under_it_with_the_table() {
    let slack = FakeSlack::default();
    let app = spawn(&slack, &[("tests", TESTED_JOB)]).await;

    let response = slash(&app, "U0ALICE", "/tests", "", "trig.1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "",
        "Slack's plain acknowledgement"
    );

    let messages = slack.wait_messages(2).await;
    let (anchor, result) = (&messages[0], &messages[1]);
    // The acknowledgement is a new message in the channel: the anchor, with a Cancel button.
    assert_eq!(anchor["channel"], CHANNEL);
    assert!(anchor.get("thread_ts").is_none(), "{anchor}");
    assert!(shown(&anchor["posted"]).contains("#1"), "{anchor}");
    assert_eq!(
        buttons(&anchor["posted"]),
        [("chatrun_cancel".to_string(), "1".to_string())]
    );
    assert_eq!(anchor["metadata"]["event_type"], "chatrun_delivery");
    // The result is threaded under it, with the table and the failed test, and a Rerun button.
    assert_eq!(result["thread_ts"], anchor["ts"], "{result}");
    let text = shown(result);
    for expected in ["Web Client", "logs in", "expected 200, got 500", "Tests"] {
        assert!(text.contains(expected), "{expected} missing: {text}");
    }
    assert!(
        result["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "table"),
        "a table block: {result}"
    );
    assert_eq!(
        buttons(result),
        [("chatrun_rerun".to_string(), "1".to_string())]
    );
    let run = finished(&app, 1).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.origin.platform, chatrun::domain::Platform::Slack);
    assert_eq!(run.origin.user_id, "U0ALICE");
    assert_eq!(run.thread_root_id.as_deref(), anchor["ts"].as_str());
    // Exactly two posts, each once.
    assert_eq!(slack.messages().len(), 2);
}

#[tokio::test]
async fn unsigned_forged_and_stale_requests_are_refused_and_nothing_is_stored() {
    let slack = FakeSlack::default();
    let app = spawn(&slack, &[]).await;
    let form = slash_form("U0ALICE", "/build", "", "trig.2");
    let url = format!("{}/hooks/slack/commands", app.base);
    let client = reqwest::Client::new();

    let unsigned = client.post(&url).body(form.clone()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let timestamp = now_secs();
    let wrong = client
        .post(&url)
        .header("x-slack-request-timestamp", &timestamp)
        .header(
            "x-slack-signature",
            sign(b"another secret", &timestamp, &form),
        )
        .body(form.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let mut changed = form.clone();
    changed.extend_from_slice(b"&text=deploy");
    let tampered = client
        .post(&url)
        .header("x-slack-request-timestamp", &timestamp)
        .header(
            "x-slack-signature",
            sign(SECRET.as_bytes(), &timestamp, &form),
        )
        .body(changed)
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 401);
    let old = (now_secs().parse::<i64>().unwrap() - 600).to_string();
    let stale = client
        .post(&url)
        .header("x-slack-request-timestamp", &old)
        .header("x-slack-signature", sign(SECRET.as_bytes(), &old, &form))
        .body(form.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 400);
    let said: Value = stale.json().await.unwrap();
    assert!(
        said["text"]
            .as_str()
            .unwrap()
            .contains("looks like a replay"),
        "{said}"
    );
    // An unknown Slack URL is not found.
    let other = post_signed(&app, "shortcuts", "application/json", b"{}", &[]).await;
    assert_eq!(other.status(), 404);

    assert!(app.store.get_run(RunId(1)).await.unwrap().is_none());
    assert!(slack.messages().is_empty());
}

#[tokio::test]
async fn the_events_url_answers_slacks_challenge() {
    let slack = FakeSlack::default();
    let app = spawn(&slack, &[]).await;
    let body = include_bytes!("../fixtures/slack/url-verification.json");
    let response = post_signed(&app, "events", "application/json", body, &[]).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
}

#[tokio::test]
async fn a_mention_delivered_twice_gives_one_run_answered_in_its_thread() {
    let slack = FakeSlack::default();
    let app = spawn(&slack, &[]).await;
    let event = mention(
        "Ev0001",
        "U0BOB",
        "<@U0BOT> build web feature/x",
        "1700000100.000100",
        None,
    );

    let first = post_signed(&app, "events", "application/json", &event, &[]).await;
    assert_eq!(first.status(), 200);
    // Slack's retry, as if the first answer had come too late.
    let retry = post_signed(
        &app,
        "events",
        "application/json",
        &event,
        &[
            ("x-slack-retry-num", "1"),
            ("x-slack-retry-reason", "http_timeout"),
        ],
    )
    .await;
    assert_eq!(retry.status(), 200);
    // A bot's mention (chatrun's own, or another bot's) is never answered.
    let mut own: Value = serde_json::from_slice(&mention(
        "Ev0002",
        "U0BOT",
        "<@U0BOT> build",
        "1700000100.000200",
        None,
    ))
    .unwrap();
    own["event"]["bot_id"] = "B0BOT".into();
    let ignored = post_signed(
        &app,
        "events",
        "application/json",
        own.to_string().as_bytes(),
        &[],
    )
    .await;
    assert_eq!(ignored.status(), 200);

    let run = finished(&app, 1).await;
    assert_eq!(run.args, "branch=feature/x target=web");
    assert_eq!(run.status, RunStatus::Succeeded);
    let messages = slack.wait_messages(2).await;
    for message in &messages {
        assert_eq!(
            message["thread_ts"], "1700000100.000100",
            "in the mention's thread: {message}"
        );
    }
    assert!(
        app.store.get_run(RunId(2)).await.unwrap().is_none(),
        "one run"
    );
    assert_eq!(slack.messages().len(), 2, "an acknowledgement and a result");

    // `status` asked once and retried by Slack: answered once.
    let status = mention(
        "Ev0003",
        "U0BOB",
        "<@U0BOT> status 1",
        "1700000100.000300",
        None,
    );
    post_signed(&app, "events", "application/json", &status, &[]).await;
    let retried = [
        ("x-slack-retry-num", "1"),
        ("x-slack-retry-reason", "http_timeout"),
    ];
    post_signed(&app, "events", "application/json", &status, &retried).await;
    // Another event after them: once its answer is posted, the retry's would have been too
    // (queued before it).
    let help = mention(
        "Ev0004",
        "U0BOB",
        "<@U0BOT> help",
        "1700000100.000400",
        None,
    );
    post_signed(&app, "events", "application/json", &help, &[]).await;
    let messages = wait_for(|| async {
        let messages = slack.messages();
        messages
            .iter()
            .any(|m| shown(m).contains("Jobs you can run"))
            .then_some(messages)
    })
    .await;
    let statuses = messages
        .iter()
        .filter(|m| shown(m).contains("Run *#1* of"))
        .count();
    assert_eq!(statuses, 1, "{messages:?}");
}

#[tokio::test]
async fn a_click_on_rerun_runs_the_job_again_for_a_user_who_may() {
    let slack = FakeSlack::default();
    let guarded = "[allow]\nusers = [\"U0ALICE\"]\n[[steps]]\nname = \"x\"\nrun = [\"true\"]\n";
    let app = spawn(&slack, &[("deploy", guarded)]).await;
    slash(&app, "U0ALICE", "/ci", "deploy", "trig.3").await;
    let first = finished(&app, 1).await;
    assert_eq!(first.status, RunStatus::Succeeded);
    let messages = slack.wait_messages(2).await;
    let (anchor, result) = (messages[0].clone(), messages[1].clone());
    let root = anchor["ts"].as_str().unwrap();
    let (_, run) = buttons(&result)[0].clone();

    // Someone the job does not allow: refused in the thread, nothing run.
    let response = press(
        &app,
        &click(
            "U0MALLORY",
            "chatrun_rerun",
            &run,
            result["ts"].as_str().unwrap(),
            Some(root),
        ),
    )
    .await;
    assert_eq!(response.status(), 200);
    let refusal = slack.wait_messages(3).await[2].clone();
    assert_eq!(refusal["thread_ts"], root);
    assert!(
        shown(&refusal).contains("not in the job's allow.users"),
        "{refusal}"
    );

    // Alice may: a second run of the same job, acknowledged and answered in the thread.
    press(
        &app,
        &click(
            "U0ALICE",
            "chatrun_rerun",
            &run,
            result["ts"].as_str().unwrap(),
            Some(root),
        ),
    )
    .await;
    let second = finished(&app, 3).await;
    assert_eq!(
        (second.job.as_str(), second.status),
        ("deploy", RunStatus::Succeeded)
    );
    assert_eq!(second.thread_root_id.as_deref(), Some(root));
    let messages = slack.wait_messages(5).await;
    for message in &messages[3..] {
        assert_eq!(message["thread_ts"], root, "{message}");
    }
    let denied = app.store.get_run(RunId(2)).await.unwrap().unwrap();
    assert_eq!(
        denied.status,
        RunStatus::Denied,
        "the refused click is in the history"
    );
}

#[tokio::test]
async fn a_429_is_honoured_before_posting_again() {
    let slack = FakeSlack::default();
    slack.rate_limited.store(1, Ordering::SeqCst);
    let app = spawn(&slack, &[]).await;
    slash(&app, "U0ALICE", "/build", "", "trig.4").await;
    slack.wait_messages(2).await;
    let attempts = slack.attempts.lock().unwrap().clone();
    assert!(attempts[0].1, "the first was refused");
    let waited = attempts[1].0 - attempts[0].0;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
    finished(&app, 1).await;
    assert_eq!(slack.messages().len(), 2);
}

#[tokio::test]
async fn a_chatrun_killed_while_its_result_was_posted_finds_the_post_and_never_posts_twice() {
    let slack = FakeSlack::default();
    // The result is posted, and its answer never comes.
    slack.hang_on_replies.store(1, Ordering::SeqCst);
    let api = slack.clone().start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
    std::fs::write(dir.path().join("jobs/build.toml"), BUILD_JOB).unwrap();
    std::fs::write(
        dir.path().join("chatrun.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{dir}/chatrun.db\"\n\
             jobs_dir = \"{dir}/jobs\"\ndata_dir = \"{dir}/data\"\n[outbox]\nretry_base_ms = 50\n{}",
            slack_config(&api),
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let mut server = crate::spawned::Spawned::start(dir.path(), "", &[]).await;
    let app_base = server.base.clone();
    let form = slash_form("U0ALICE", "/build", "", "trig.9");
    let response = signed(&app_base, "commands", &form).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // The anchor, then the result, which the fake keeps without answering: kill -9 then.
    let posted = slack.wait_messages(2).await;
    assert_eq!(posted[1]["thread_ts"], posted[0]["ts"]);
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();

    let server = crate::spawned::Spawned::start(dir.path(), "", &[]).await;
    // The restarted chatrun looks for the post in the thread, finds it by its metadata, and
    // marks the reply sent without posting it again.
    let api_run = format!("{}/api/runs/1", server.base);
    let replies = wait_for(|| async {
        let run: Value = reqwest::get(&api_run).await.ok()?.json().await.ok()?;
        let replies = run["replies"].as_array()?.clone();
        replies
            .iter()
            .all(|r| r["status"] == "sent")
            .then_some(replies)
    })
    .await;
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(
        replies.iter().all(|r| r["maybe_duplicate"] == false),
        "{replies:?}"
    );
    assert!(slack.searches.load(Ordering::SeqCst) >= 1, "it looked");
    assert_eq!(
        slack.messages().len(),
        2,
        "one anchor and one result: {:?}",
        slack.messages()
    );
    server.stop().await;
}

#[tokio::test]
async fn cancel_on_the_acknowledgement_stops_the_run_for_its_requester_only() {
    let slack = FakeSlack::default();
    let slow = "[[steps]]\nname = \"Wait\"\nrun = [\"sleep\", \"100\"]\n";
    let app = spawn(&slack, &[("slow", slow)]).await;
    // Asked for in a thread, by a mention: answered in that thread.
    let event = mention(
        "Ev0010",
        "U0ALICE",
        "<@U0BOT> slow",
        "1700000200.000200",
        Some("1700000200.000100"),
    );
    post_signed(&app, "events", "application/json", &event, &[]).await;
    app.first_step_running(1).await;
    let ack = slack.wait_messages(1).await[0].clone();
    assert_eq!(ack["thread_ts"], "1700000200.000100", "{ack}");
    let (action, run) = buttons(&ack)[0].clone();
    assert_eq!((action.as_str(), run.as_str()), ("chatrun_cancel", "1"));
    let ack_ts = ack["ts"].as_str().unwrap();

    // Someone else's click is refused in the thread; the run goes on.
    let mallory = click(
        "U0MALLORY",
        "chatrun_cancel",
        &run,
        ack_ts,
        Some("1700000200.000100"),
    );
    press(&app, &mallory).await;
    let refusal = slack.wait_messages(2).await[1].clone();
    assert!(shown(&refusal).contains("may cancel it"), "{refusal}");
    assert_eq!(refusal["thread_ts"], "1700000200.000100");
    assert_eq!(
        app.store.get_run(RunId(1)).await.unwrap().unwrap().status,
        RunStatus::Running
    );

    // Alice's click stops it; the result says who cancelled it.
    let alice = click(
        "U0ALICE",
        "chatrun_cancel",
        &run,
        ack_ts,
        Some("1700000200.000100"),
    );
    press(&app, &alice).await;
    let run = finished(&app, 1).await;
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(
        run.error
            .as_deref()
            .unwrap_or_default()
            .contains("cancelled by"),
        "{run:?}"
    );
    let messages = slack.wait_messages(4).await;
    assert!(
        messages
            .iter()
            .all(|m| m["thread_ts"] == "1700000200.000100"),
        "{messages:?}"
    );
}
