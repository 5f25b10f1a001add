//! Secrets never leak: the real binary runs the usual scenarios with every secret configured,
//! and none of them appears in what it prints, answers, shows or stores.

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{BUILD_JOB, teams_activity, teams_signature, wait_for};
use crate::spawned::Spawned;

const MM_TOKEN: &str = "mmwebhooktokenSECRET00000a";
const BOT_TOKEN: &str = "botaccesstokenSECRET0000bb";
const WEB_PASSWORD: &str = "webpasswordSECRET-123456";
const SIG_OK: &str = "sigOKsecretSECRET111";
const SIG_REFUSED: &str = "sigREFUSEDsecretSECRET222";
const SIG_DOWN: &str = "sigDOWNsecretSECRET333";

/// A Teams security token (base64 of 32 bytes) made of `seed`.
fn teams_secret(seed: &str) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = seed.bytes().cycle().take(32).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A job that fails after printing its whole environment (where a secret passed to chatrun in
/// a `CHATRUN_*` variable would show).
const LEAKY_JOB: &str = r#"
description = "Prints its environment, then fails"
[[steps]]
name = "Environment"
run = ["sh", "-c", "env; echo 'about to fail' >&2; exit 3"]
"#;

#[tokio::test]
async fn no_secret_appears_in_logs_replies_pages_the_api_or_the_database() {
    let mattermost = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/api/v4/posts/[a-z0-9]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"root_id": ""})))
        .mount(&mattermost)
        .await;
    // The first result post fails (retried), the others succeed.
    Mock::given(method("POST"))
        .and(path("/api/v4/posts"))
        .respond_with(ResponseTemplate::new(500).set_body_string("try later"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&mattermost)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/posts"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "newpost"})))
        .with_priority(2)
        .mount(&mattermost)
        .await;
    let workflows = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/workflows/ok"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&workflows)
        .await;
    Mock::given(method("POST"))
        .and(path("/workflows/ok"))
        .respond_with(ResponseTemplate::new(202))
        .with_priority(2)
        .mount(&workflows)
        .await;
    Mock::given(method("POST"))
        .and(path("/workflows/refused"))
        .respond_with(ResponseTemplate::new(400).set_body_string("InvalidRequestContent"))
        .mount(&workflows)
        .await;
    // A Workflows URL nobody listens on: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);

    let platform_secret = teams_secret("platform-team-secret-key-");
    let refused_secret = teams_secret("refused-webhook-secret-");
    let down_secret = teams_secret("down-webhook-secret-key-");
    let ok_url = format!(
        "{}/workflows/ok?api-version=1&sig={SIG_OK}",
        workflows.uri()
    );
    let refused_url = format!("{}/workflows/refused?sig={SIG_REFUSED}", workflows.uri());
    let down_url = format!("http://127.0.0.1:{closed_port}/workflows/down?sig={SIG_DOWN}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::write(dir.path().join("jobs/build.toml"), BUILD_JOB).unwrap();
    std::fs::write(dir.path().join("jobs/leaky.toml"), LEAKY_JOB).unwrap();
    std::fs::write(
        dir.path().join("chatrun.toml"),
        format!(
            r#"listen = "127.0.0.1:0"
workers = 2
[mattermost]
tokens = ["{MM_TOKEN}"]
url = "{mattermost}"
bot_user_id = "botuser00000000000000000bb"
[[teams.webhooks]]
name = "platform-team"
secret = "{platform_secret}"
follow_up_url = "{ok_url}"
[[teams.webhooks]]
name = "refused"
secret = "{refused_secret}"
follow_up_url = "{refused_url}"
[[teams.webhooks]]
name = "down"
secret = "{down_secret}"
follow_up_url = "{down_url}"
[outbox]
retry_base_ms = 50
retry_max_secs = 1
"#,
            mattermost = mattermost.uri(),
        ),
    )
    .unwrap();
    // Two secrets come from the environment, as a deployment would pass them.
    let server = Spawned::start(
        dir.path(),
        "",
        &[
            ("CHATRUN_MATTERMOST__BOT_TOKEN", BOT_TOKEN),
            ("CHATRUN_WEB__PASSWORD", WEB_PASSWORD),
            ("RUST_LOG", "chatrun=debug,tower_http=debug"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let mut seen = Vec::new();

    // Mattermost: a good trigger, a failing job, a command, a bad token, a replay, bad input.
    let now = chatrun::store::now_ms() / 1000;
    let form = |text: &str, post: &str, token: &str, timestamp: i64| {
        serde_urlencoded::to_string([
            ("channel_id", "chan0000000000000000000000"),
            ("channel_name", "ci-builds"),
            ("post_id", post),
            ("text", text),
            ("timestamp", &timestamp.to_string()),
            ("token", token),
            ("trigger_word", text.split_whitespace().next().unwrap_or("")),
            ("user_id", "alice0000000000000000000aa"),
            ("user_name", "alice"),
        ])
        .unwrap()
    };
    let mattermost_requests = [
        (form("#build", "mmgood1", MM_TOKEN, now), 200),
        (form("#leaky", "mmleak1", MM_TOKEN, now), 200),
        (form("#ci status 1", "mmstatus1", MM_TOKEN, now), 200),
        (form("#build", "mmbadtoken1", "not-the-token", now), 401),
        (form("#build", "mmold1", MM_TOKEN, now - 3600), 400),
        (
            form(&"#build x".repeat(3000), "mmhuge1", MM_TOKEN, now),
            400,
        ),
    ];
    for (body, status) in mattermost_requests {
        let response = client
            .post(format!("{}/hooks/mattermost", server.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        seen.push(response.text().await.unwrap());
    }
    // Teams: a good trigger, a failing job on a webhook whose Workflows URL refuses, a trigger
    // on a webhook whose URL is down, a bad signature.
    let teams_requests = [
        (
            "platform-team",
            &platform_secret,
            "1716220800101",
            "build",
            200,
        ),
        ("refused", &refused_secret, "1716220800102", "leaky", 200),
        ("down", &down_secret, "1716220800103", "build", 200),
        ("platform-team", &down_secret, "1716220800104", "build", 401),
    ];
    for (hook, secret, id, text, status) in teams_requests {
        let body = teams_activity(id, text);
        let response = client
            .post(format!("{}/hooks/teams/{hook}", server.base))
            .header("content-type", "application/json")
            .header("authorization", teams_signature(secret, &body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{hook}");
        seen.push(response.text().await.unwrap());
    }

    // Every run finishes, and every reply was delivered or has failed at least once (the one
    // refused and the one that cannot connect).
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{}{path}", server.base);
        async move {
            let response = client
                .get(url)
                .basic_auth("auditor", Some(WEB_PASSWORD))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.text().await.unwrap()
        }
    };
    let runs = wait_for(|| async {
        let list: Value = serde_json::from_str(&get("/api/runs".into()).await).unwrap();
        let runs = list["runs"].as_array().unwrap().clone();
        let done = runs.len() == 5
            && runs
                .iter()
                .all(|r| matches!(r["status"].as_str(), Some("succeeded" | "failed")));
        done.then_some(runs)
    })
    .await;
    for run in &runs {
        let id = run["id"].as_i64().unwrap();
        wait_for(|| async {
            let one: Value = serde_json::from_str(&get(format!("/api/runs/{id}")).await).unwrap();
            let replies = one["replies"].as_array().unwrap();
            let settled = replies.iter().all(|r| {
                r["status"] == "sent"
                    || (r["last_error"].is_string() && r["attempts"].as_i64() >= Some(2))
                    || r["status"] == "dead"
            });
            settled.then_some(())
        })
        .await;
    }
    assert!(
        workflows.received_requests().await.unwrap().len() >= 3,
        "the OK card was retried and the refused one sent"
    );

    // What people and scripts can see: every page, every log, the API.
    let mut leaky_log = String::new();
    seen.push(get("/".into()).await);
    seen.push(get("/api/runs".into()).await);
    seen.push(get("/jobs/build".into()).await);
    for run in &runs {
        let id = run["id"].as_i64().unwrap();
        seen.push(get(format!("/runs/{id}")).await);
        let log = get(format!("/runs/{id}/log")).await;
        if run["job"] == "leaky" {
            leaky_log.push_str(&log);
        }
        seen.push(log);
        seen.push(get(format!("/api/runs/{id}")).await);
        seen.push(get(format!("/api/runs/{id}/log")).await);
    }
    assert!(
        leaky_log.contains("about to fail") && leaky_log.contains("PATH="),
        "{leaky_log}"
    );
    // A wrong password is refused without echoing anything secret.
    let refused = client
        .get(format!("{}/api/runs", server.base))
        .basic_auth("auditor", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    seen.push(refused.text().await.unwrap());
    // What chatrun sent to chat (the replies themselves, not their credentials).
    for request in mattermost.received_requests().await.unwrap() {
        seen.push(String::from_utf8_lossy(&request.body).into_owned());
    }
    for request in workflows.received_requests().await.unwrap() {
        seen.push(String::from_utf8_lossy(&request.body).into_owned());
    }

    // Its own output, from start to exit, and what it left on disk.
    let output = server.stop().await;
    assert!(
        output.contains("reply delivered"),
        "debug logging was on: {output}"
    );
    assert!(
        output.contains("  database       sqlite://"),
        "the start-up banner names the database: {output}"
    );
    seen.push(output);
    seen.push(
        String::from_utf8_lossy(&std::fs::read(dir.path().join("data/chatrun.db")).unwrap())
            .into_owned(),
    );
    // (Short logs are kept in the database only: there may be no file, nor the folder.)
    for entry in std::fs::read_dir(dir.path().join("data/logs"))
        .into_iter()
        .flatten()
    {
        seen.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }

    let secrets = [
        ("the Mattermost webhook token", MM_TOKEN.to_string()),
        ("the bot token", BOT_TOKEN.to_string()),
        ("the web password", WEB_PASSWORD.to_string()),
        ("a Teams secret", platform_secret),
        ("a Teams secret", refused_secret),
        ("a Teams secret", down_secret),
        ("a Workflows URL", ok_url),
        ("a Workflows URL", refused_url),
        ("a Workflows URL", down_url),
        ("a Workflows signature", SIG_OK.to_string()),
        ("a Workflows signature", SIG_REFUSED.to_string()),
        ("a Workflows signature", SIG_DOWN.to_string()),
    ];
    for text in &seen {
        for (what, secret) in &secrets {
            if let Some(at) = text.find(secret.as_str()) {
                let start = text[..at]
                    .char_indices()
                    .rev()
                    .nth(200)
                    .map_or(0, |(i, _)| i);
                panic!(
                    "{what} leaked: …{}…",
                    &text[start..(at + secret.len()).min(text.len())]
                );
            }
        }
    }
    // The checks above can fail: the secrets were in play (the job saw chatrun's environment
    // minus its CHATRUN_* variables, the fakes received the credentials).
    let received = mattermost.received_requests().await.unwrap();
    assert!(
        received
            .iter()
            .any(|r| r.headers["authorization"] == format!("Bearer {BOT_TOKEN}"))
    );
}
