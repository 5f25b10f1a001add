//! The Teams path: HMAC, the activity, the reply, the result card through Workflows.

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    BUILD_JOB, OPS_TOKEN, TEAMS_TOKEN, TestApp, WORKFLOW_PATH, fresh_teams, spawn_app,
    spawn_app_with, teams_activity, teams_signature,
};

const SAMPLE1: &[u8] = include_bytes!("../fixtures/teams/sample1.json");
const SAMPLE1_HMAC: &str = "HMAC cNZs4wJSlBrtQkMUNjd0P4kPpj4p3RXjDQ+4OWfhbSg=";
const SAMPLE2: &[u8] = include_bytes!("../fixtures/teams/sample2.json");

/// Posts a sample of the protocol notes as Teams would send it now (see [`fresh_teams`]).
async fn post_fresh(app: &TestApp, path: &str, sample: &[u8]) -> reqwest::Response {
    let (body, authorization) = fresh_teams(sample);
    app.post_teams(path, Some(&authorization), &body).await
}

fn schema() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(include_str!("../fixtures/teams/adaptive-card.json")).unwrap();
    jsonschema::draft6::options().build(&schema).unwrap()
}

#[tokio::test]
async fn a_signed_mention_queues_the_job_and_answers_with_a_message() {
    let app = spawn_app().await;

    let response = post_fresh(&app, "/hooks/teams", SAMPLE1).await;

    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["type"], "message");
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.starts_with("⏳ Queued run **#1** of **build** (branch=main target=api-server), asked by Ada Lovelace, starting now"),
        "{text}"
    );
    assert!(text.contains(&format!("({}/runs/1)", app.base)), "{text}");
    let run = app.finished_run(1).await;
    assert_eq!(run.origin.platform, "teams");
    assert_eq!(run.origin.user_id, "3a7c9e21-5b4d-4f60-8e12-9d0c1b2a3f45");
    assert_eq!(run.hook, "platform-team");
    assert_eq!(run.args, "branch=main target=api-server");
    assert_eq!(run.message_id, "1716220800123");
    assert_eq!(run.thread_root_id.as_deref(), Some("1716220800123"));
}

#[tokio::test]
async fn a_person_mentioned_before_the_bot_is_not_part_of_the_command() {
    let app = spawn_app().await;

    let response = post_fresh(
        &app,
        "/hooks/teams",
        include_bytes!("../fixtures/teams/mention-before-bot.json"),
    )
    .await;

    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    let text = reply["text"].as_str().unwrap();
    assert!(text.contains("Queued run **#1** of **build**"), "{text}");
    let run = app.finished_run(1).await;
    assert_eq!(run.job, "build");
    assert!(run.args.contains("feature/y"), "{}", run.args);
    assert!(!run.args.contains("Pranav"), "{}", run.args);
}

#[tokio::test]
async fn the_result_card_reaches_the_workflow_and_is_a_valid_adaptive_card() {
    let app = spawn_app().await;
    post_fresh(&app, "/hooks/teams", SAMPLE1).await;

    let cards = app.cards(1).await;

    let card = &cards[0];
    assert_eq!(card.url.path(), WORKFLOW_PATH);
    assert_eq!(card.url.query(), Some("api-version=1&sig=secretsig"));
    assert_eq!(card.headers["content-type"], "application/json");
    assert!(card.body.len() < 28 * 1024);
    let message: Value = serde_json::from_slice(&card.body).unwrap();
    assert_eq!(message["type"], "message");
    let attachment = &message["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert!(attachment["contentUrl"].is_null());
    let content = &attachment["content"];
    assert_eq!(content["version"], "1.4");
    let errors: Vec<String> = schema()
        .iter_errors(content)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(content["body"][0]["items"][0]["color"], "Good");
    assert_eq!(content["actions"][0]["url"], format!("{}/runs/1", app.base));
    let rows: Vec<&Value> = content["body"].as_array().unwrap()[3..].iter().collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["columns"][0]["items"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Server", "Web Client", "iOS Client"]);
}

#[tokio::test]
async fn the_schema_rejects_a_broken_card() {
    // The check above can fail: a card with a misspelt colour does not validate.
    let card: Value = serde_json::json!({
        "type": "AdaptiveCard", "version": "1.4",
        "body": [{"type": "TextBlock", "text": "x", "color": "Purple"}]
    });
    assert!(!schema().is_valid(&card));
}

#[tokio::test]
async fn a_throttled_card_is_sent_again_after_retry_after_and_delivered_once() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path(WORKFLOW_PATH))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.workflows)
        .await;
    post_fresh(&app, "/hooks/teams", SAMPLE1).await;

    let deliveries = crate::helpers::wait_for(|| async {
        let list = app
            .store
            .deliveries(chatrun::domain::RunId(1))
            .await
            .unwrap();
        list.first()
            .is_some_and(|d| d.status == "sent")
            .then_some(list)
    })
    .await;

    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].attempts, 2, "one 429, then one 202");
    let requests = app.workflows.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body);
}

#[tokio::test]
async fn a_refused_card_is_recorded_and_shown_on_the_run_page() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path(WORKFLOW_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_string("InvalidRequestContent"))
        .with_priority(1)
        .mount(&app.workflows)
        .await;
    post_fresh(&app, "/hooks/teams", SAMPLE1).await;

    crate::helpers::wait_for(|| async {
        let list = app
            .store
            .deliveries(chatrun::domain::RunId(1))
            .await
            .unwrap();
        list.first()
            .is_some_and(|d| d.status == "dead")
            .then_some(())
    })
    .await;

    assert_eq!(app.workflows.received_requests().await.unwrap().len(), 1);
    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(page.contains("Teams webhook platform-team"), "{page}");
    assert!(
        page.contains("400 Bad Request: InvalidRequestContent"),
        "{page}"
    );
    assert!(!page.contains("secretsig"), "the Workflows URL is a secret");
}

#[tokio::test]
async fn bad_or_missing_signatures_get_401_and_store_nothing() {
    let app = spawn_app().await;
    let unknown_key = teams_signature("c2VjcmV0IHRoYXQgaXMgY29uZmlndXJlZCBub3doZXJl", SAMPLE1);
    let mut changed = SAMPLE1.to_vec();
    changed.push(b'\n');
    let cases: Vec<(&str, Option<&str>, &[u8])> = vec![
        ("/hooks/teams", None, SAMPLE1),
        (
            "/hooks/teams",
            Some("Bearer cNZs4wJSlBrtQkMUNjd0P4kPpj4p3RXjDQ+4OWfhbSg="),
            SAMPLE1,
        ),
        ("/hooks/teams", Some("HMAC cNZs4wJSlBrtQkMU"), SAMPLE1),
        ("/hooks/teams", Some(SAMPLE1_HMAC), &changed),
        ("/hooks/teams", Some(SAMPLE1_HMAC), b""),
        ("/hooks/teams", Some(&unknown_key), SAMPLE1),
        // Signed by platform-team, sent to another webhook's URL.
        ("/hooks/teams/ops", Some(SAMPLE1_HMAC), SAMPLE1),
        ("/hooks/teams/nobody", Some(SAMPLE1_HMAC), SAMPLE1),
    ];
    for (path, authorization, body) in cases {
        let response = app.post_teams(path, authorization, body).await;
        assert_eq!(response.status(), 401, "{path} {authorization:?}");
    }
    assert!(app.store.list_runs(None, 10).await.unwrap().is_empty());

    let response = post_fresh(&app, "/hooks/teams/platform-team", SAMPLE1).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_signed_body_that_is_not_an_activity_is_a_400() {
    let app = spawn_app().await;
    for body in [&b"{not json"[..], br#"{"type":"message","text":"x"}"#] {
        let response = app
            .post_teams(
                "/hooks/teams",
                Some(&teams_signature(OPS_TOKEN, body)),
                body,
            )
            .await;
        assert_eq!(response.status(), 400);
    }
    assert!(app.store.list_runs(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_same_activity_twice_makes_one_run() {
    let app = spawn_app().await;
    let (body, authorization) = fresh_teams(SAMPLE1);
    let (first, second) = tokio::join!(
        app.post_teams("/hooks/teams", Some(&authorization), &body),
        app.post_teams("/hooks/teams", Some(&authorization), &body)
    );
    let first: Value = first.json().await.unwrap();
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    app.finished_run(1).await;
    assert_eq!(app.store.list_runs(None, 10).await.unwrap().len(), 1);
    assert_eq!(app.cards(1).await.len(), 1);
}

#[tokio::test]
async fn an_unknown_job_gets_the_list_of_jobs() {
    let app = spawn_app_with(&[("build", BUILD_JOB)]).await;

    // Sample 2 asks for `test`, which is not a job here.
    let response = post_fresh(&app, "/hooks/teams", SAMPLE2).await;

    let reply: Value = response.json().await.unwrap();
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.starts_with("❓ There is no job or command **test**."),
        "{text}"
    );
    assert!(text.contains("**build**: Build everything"), "{text}");
    assert!(text.contains("**@BuildBot build**"), "{text}");
    assert!(app.store.list_runs(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_webhook_without_follow_up_url_keeps_results_on_the_history_page() {
    let app = spawn_app().await;
    let body = teams_activity("1716220900000", "build");
    let response = app
        .post_teams(
            "/hooks/teams/ops",
            Some(&teams_signature(OPS_TOKEN, &body)),
            &body,
        )
        .await;
    assert_eq!(response.status(), 200);
    let run = app.finished_run(1).await;
    assert_eq!(run.hook, "ops");
    assert!(app.store.deliveries(run.run_id).await.unwrap().is_empty());
}

#[tokio::test]
async fn any_configured_webhook_may_sign_on_the_shared_url() {
    let app = spawn_app().await;
    for (token, id) in [(TEAMS_TOKEN, "1716220900001"), (OPS_TOKEN, "1716220900002")] {
        let body = teams_activity(id, "build");
        let response = app
            .post_teams("/hooks/teams", Some(&teams_signature(token, &body)), &body)
            .await;
        assert_eq!(response.status(), 200);
    }
    let runs = app.store.list_runs(None, 10).await.unwrap();
    let hooks: Vec<&str> = runs.iter().map(|r| r.hook.as_str()).collect();
    assert_eq!(hooks, vec!["ops", "platform-team"]);
}
