//! Hostile and broken input on the webhooks: every bad request gets a 4xx with a short reason,
//! never a 5xx, and leaves no run behind.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TEAMS_TOKEN, TOKEN, TestApp, spawn_app, spawn_app_configured, teams_signature,
};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// One request to a webhook.
struct Request {
    path: &'static str,
    content_type: Option<&'static str>,
    authorization: Option<String>,
    body: Vec<u8>,
}

impl Request {
    /// To `/hooks/mattermost`, as `content_type`.
    fn mattermost(content_type: Option<&'static str>, body: Vec<u8>) -> Self {
        Self {
            path: "/hooks/mattermost",
            content_type,
            authorization: None,
            body,
        }
    }

    /// To `path`, as JSON signed with the `platform-team` webhook's token.
    fn teams(path: &'static str, body: Vec<u8>) -> Self {
        Self {
            path,
            content_type: Some(JSON),
            authorization: Some(teams_signature(TEAMS_TOKEN, &body)),
            body,
        }
    }

    /// Sends it; returns the status and the body.
    async fn send(self, app: &TestApp) -> (StatusCode, String) {
        let mut request = reqwest::Client::new()
            .post(format!("{}{}", app.base, self.path))
            .body(self.body);
        if let Some(content_type) = self.content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(authorization) = self.authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.expect("chatrun answers");
        let status = response.status();
        (status, response.text().await.unwrap())
    }
}

/// A Mattermost form body of `fields`.
fn form(fields: &[(&str, String)]) -> Vec<u8> {
    serde_urlencoded::to_string(fields).unwrap().into_bytes()
}

/// A Mattermost JSON body with every field and a fresh timestamp, `changes` applied.
fn mattermost_json(changes: Value) -> Vec<u8> {
    let mut payload = json!({
        "token": TOKEN, "team_id": "t1", "team_domain": "engineering",
        "channel_id": "chan1", "channel_name": "ci-builds",
        "timestamp": chatrun::store::now_ms(),
        "user_id": "bob1", "user_name": "bob", "post_id": "jsonpost1",
        "text": "#build", "trigger_word": "#build", "file_ids": ""
    });
    for (key, value) in changes.as_object().unwrap() {
        payload[key] = value.clone();
    }
    serde_json::to_vec(&payload).unwrap()
}

/// JSON nested `depth` deep in an unknown field `x`, after `head` (`"token":"…",`).
fn nested(head: &str, depth: usize) -> Vec<u8> {
    format!("{{{head}\"x\":{}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

/// Asserts that chatrun stored no run: in the store and in the JSON API.
async fn assert_no_run(app: &TestApp) {
    assert!(app.store.list_runs(None, 10).await.unwrap().is_empty());
    let api: Value = app.get("/api/runs").await.json().await.unwrap();
    assert_eq!(api["runs"], json!([]), "{api}");
}

/// Sends each case (name, request, status, part of the reason) and checks the answer: that
/// status, a reason containing that part, one short line.
async fn expect_all(app: &TestApp, cases: Vec<(&str, Request, u16, &str)>) {
    for (name, request, status, reason) in cases {
        let (got, text) = request.send(app).await;
        assert_eq!(got.as_u16(), status, "{name}: {text}");
        assert!(text.contains(reason), "{name}: {text:?} lacks {reason:?}");
        assert!(
            text.len() < 300 && text.lines().count() == 1,
            "{name}: {text:?}"
        );
    }
}

#[tokio::test]
async fn broken_mattermost_requests_get_400_or_401_with_a_reason_and_store_nothing() {
    let app = spawn_app().await;
    let good = app.payload("#build", "badinput1");
    let without = |name: &str| -> Vec<u8> {
        form(
            &good
                .iter()
                .filter(|f| f.0 != name)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let with = |name: &str, value: String| -> Vec<u8> {
        let mut fields = good.clone();
        fields.iter_mut().find(|f| f.0 == name).unwrap().1 = value;
        form(&fields)
    };
    let form_of = |body: Vec<u8>| Request::mattermost(Some(FORM), body);
    let json_of = |body: Vec<u8>| Request::mattermost(Some(JSON), body);
    let typed = |content_type: Option<&'static str>| Request::mattermost(content_type, form(&good));
    let bad_percent = [without("file_ids"), b"&file_ids=%FF%FE".to_vec()].concat();
    let twice = [form(&good), b"&token=again".to_vec()].concat();
    let cases = vec![
        (
            "no content type",
            typed(None),
            400,
            "the Content-Type must be application/x-www-form-urlencoded or application/json, not none",
        ),
        (
            "text/plain",
            typed(Some("text/plain")),
            400,
            "not text/plain",
        ),
        (
            "multipart",
            typed(Some("multipart/form-data; boundary=x")),
            400,
            "not multipart/form-data",
        ),
        (
            "form %FF",
            form_of(bad_percent),
            400,
            "the form body is not a Mattermost outgoing-webhook payload: a value is not UTF-8",
        ),
        (
            "form raw \\xff",
            form_of(b"token=\xff\xfe&text=x".to_vec()),
            400,
            "a value is not UTF-8",
        ),
        (
            "form field twice",
            form_of(twice),
            400,
            "duplicate field `token`",
        ),
        (
            "JSON \\xff",
            json_of(b"{\"token\":\"\xff\"}".to_vec()),
            400,
            "the JSON body is not a Mattermost outgoing-webhook payload: the body is not UTF-8",
        ),
        (
            "JSON broken",
            json_of(b"{\"token\": ".to_vec()),
            400,
            "the JSON body is not a Mattermost outgoing-webhook payload: EOF",
        ),
        (
            "JSON array",
            json_of(b"[1,2]".to_vec()),
            400,
            "the JSON body is not a Mattermost outgoing-webhook payload",
        ),
        (
            "JSON wrong type",
            json_of(mattermost_json(json!({"text": ["#build"]}))),
            400,
            "invalid type: sequence, expected a string",
        ),
        (
            "JSON nested deep",
            json_of(nested(&format!("\"token\":\"{TOKEN}\","), 10_000)),
            400,
            "nested deeper than 32 levels",
        ),
        (
            "no token",
            form_of(without("token")),
            401,
            "the token matches no configured outgoing webhook",
        ),
        (
            "no post_id",
            form_of(without("post_id")),
            400,
            "post_id is missing or is not an id",
        ),
        (
            "post_id a path",
            form_of(with("post_id", "../../etc".into())),
            400,
            "post_id is missing or is not an id",
        ),
        (
            "no user_id",
            form_of(without("user_id")),
            400,
            "user_id is missing",
        ),
        (
            "huge text",
            form_of(with("text", format!("#build {}", "x".repeat(16_400)))),
            400,
            "text is too long: at most 16383 characters",
        ),
        (
            "huge user name",
            form_of(with("user_name", "a".repeat(5000))),
            400,
            "user_name is too long: at most 1024 bytes",
        ),
        (
            "huge JSON channel",
            json_of(mattermost_json(
                json!({"channel_name": "c".repeat(100_000)}),
            )),
            400,
            "channel_name is too long: at most 1024 bytes",
        ),
    ];
    expect_all(&app, cases).await;

    assert_no_run(&app).await;
    assert_eq!(app.store.next_delivery_at().await.unwrap(), None);
    // The same request, well formed, is accepted: the refusals were about the input.
    let (status, _) = form_of(form(&good)).send(&app).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn broken_teams_requests_get_400_after_the_signature_and_store_nothing() {
    let app = spawn_app().await;
    let activity = |changes: Value| -> Vec<u8> {
        let mut activity: Value =
            serde_json::from_slice(&crate::helpers::teams_activity("1716220800999", "build"))
                .unwrap();
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                activity.as_object_mut().unwrap().remove(key);
            } else {
                activity[key] = value.clone();
            }
        }
        serde_json::to_vec(&activity).unwrap()
    };
    let good = activity(json!({}));
    let not_utf8 = [&good[..good.len() - 1], b",\"x\":\"\xff\"}"].concat();
    let hook = "/hooks/teams/platform-team";
    let signed = |body: Vec<u8>| Request::teams(hook, body);
    let unsigned = Request {
        authorization: None,
        ..signed(good.clone())
    };
    let wrongly_signed = Request {
        authorization: Some(teams_signature(TEAMS_TOKEN, b"{}")),
        ..signed(good.clone())
    };
    let text_plain = Request {
        content_type: Some("text/plain"),
        ..signed(good.clone())
    };
    let huge_text = format!("<at>BuildBot</at> build {}", "x".repeat(30_000));
    let cases = vec![
        // Unsigned or badly signed: 401 before anything in the body is read.
        (
            "unsigned",
            unsigned,
            401,
            "the HMAC signature matches no configured Teams webhook",
        ),
        (
            "signed for another body",
            wrongly_signed,
            401,
            "the HMAC signature",
        ),
        (
            "text/plain",
            text_plain,
            400,
            "the Content-Type must be application/json, not text/plain",
        ),
        (
            "not UTF-8",
            signed(not_utf8),
            400,
            "the body is not a Teams activity: the body is not UTF-8",
        ),
        (
            "not JSON",
            signed(b"hello".to_vec()),
            400,
            "the body is not a Teams activity: expected value",
        ),
        (
            "nested deep",
            Request::teams("/hooks/teams", nested("\"id\":\"1\",", 10_000)),
            400,
            "nested deeper than 32 levels",
        ),
        (
            "no id",
            signed(activity(json!({"id": null}))),
            400,
            "the activity has no id",
        ),
        (
            "no sender",
            signed(activity(json!({"from": null}))),
            400,
            "the activity has no sender (from.id)",
        ),
        (
            "huge text",
            signed(activity(json!({"text": huge_text}))),
            400,
            "text is too long: at most 28672 bytes",
        ),
        (
            "huge name",
            signed(activity(
                json!({"from": {"id": "29:u", "name": "n".repeat(2000)}}),
            )),
            400,
            "from.name is too long: at most 1024 bytes",
        ),
    ];
    expect_all(&app, cases).await;

    assert_no_run(&app).await;
    let (status, text) = Request {
        content_type: None,
        ..signed(good)
    }
    .send(&app)
    .await;
    assert_eq!(status, 200, "no Content-Type is tolerated: {text}");
}

#[tokio::test]
async fn a_body_over_the_default_limit_gets_413_on_every_webhook() {
    let app = spawn_app().await;
    let mut fields = app.payload("#build", "bigpost1");
    // 1 MiB and a little: the whole body is over the limit, whatever the field limits say.
    fields.push(("padding", "x".repeat(1024 * 1024)));
    let body = form(&fields);
    for path in ["/hooks/teams", "/hooks/teams/platform-team"] {
        let (status, text) = Request::teams(path, body.clone()).send(&app).await;
        assert_eq!(status, 413, "{path}: {text}");
        assert_eq!(
            text, "the request body is larger than 1048576 bytes (max_body_bytes)\n",
            "{path}"
        );
    }
    // Mattermost shows a reply's text whatever the status: the user is told.
    let (status, text) = Request::teams("/hooks/mattermost", body.clone())
        .send(&app)
        .await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(
        text,
        r#"{"text":":warning: the request body is larger than 1048576 bytes (max_body_bytes)"}"#
    );
    assert_no_run(&app).await;
}

#[tokio::test]
async fn max_body_bytes_sets_the_limit() {
    let app = spawn_app_configured("max_body_bytes = 8192").await;
    let mut fields = app.payload("#build", "smallpost1");
    let (status, _) = Request::mattermost(Some(FORM), form(&fields))
        .send(&app)
        .await;
    assert_eq!(status, 200, "a usual trigger fits");
    fields.iter_mut().find(|f| f.0 == "post_id").unwrap().1 = "smallpost2".into();
    fields.iter_mut().find(|f| f.0 == "text").unwrap().1 = format!("#build {}", "y".repeat(9000));
    let (status, text) = Request::mattermost(Some(FORM), form(&fields))
        .send(&app)
        .await;
    assert_eq!(status, 413);
    assert_eq!(
        text,
        r#"{"text":":warning: the request body is larger than 8192 bytes (max_body_bytes)"}"#
    );
    assert_eq!(app.store.list_runs(None, 10).await.unwrap().len(), 1);
}

/// `fields` with `timestamp` set to `value`.
fn dated(mut fields: Vec<(&'static str, String)>, value: &str) -> Vec<u8> {
    fields.retain(|f| f.0 != "timestamp");
    if !value.is_empty() {
        fields.push(("timestamp", value.to_string()));
    }
    form(&fields)
}

#[tokio::test]
async fn an_old_or_future_mattermost_message_is_refused_and_stores_nothing() {
    let app = spawn_app().await;
    let now_s = chatrun::store::now_ms() / 1000;
    let now_ms = chatrun::store::now_ms();
    let fields = app.payload("#build", "replayed1");
    let form_of = |body: Vec<u8>| Request::mattermost(Some(FORM), body);
    let json_of = |body: Vec<u8>| Request::mattermost(Some(JSON), body);
    let cases = vec![
        (
            "form, 10 minutes old",
            form_of(dated(fields.clone(), &(now_s - 600).to_string())),
            400,
            "the message is 10 minutes old; chatrun takes messages at most 5m old (replay_window), so it looks like a replay: send it again",
        ),
        (
            // The protocol notes' sample, sent again much later.
            "form, the sample's time",
            form_of(dated(fields.clone(), "1718294400")),
            400,
            "days old; chatrun takes messages at most 5m old",
        ),
        (
            "JSON in ms, 6 minutes old",
            json_of(mattermost_json(json!({"timestamp": now_ms - 360_000}))),
            400,
            "the message is 6 minutes old",
        ),
        (
            "JSON in ms, 10 minutes ahead",
            json_of(mattermost_json(json!({"timestamp": now_ms + 630_000}))),
            400,
            "the message is dated 10 minutes in the future, more than replay_window (5m) allows",
        ),
        (
            "no timestamp",
            form_of(dated(fields.clone(), "")),
            400,
            "timestamp is missing",
        ),
        (
            "timestamp not a number",
            form_of(dated(fields.clone(), "yesterday")),
            400,
            "timestamp is not a whole number",
        ),
    ];
    expect_all(&app, cases).await;
    assert_no_run(&app).await;
    // As a reply Mattermost shows (it ignores the status and drops a body that is not JSON).
    let (_, text) = form_of(dated(fields.clone(), &(now_s - 600).to_string()))
        .send(&app)
        .await;
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with(":warning: the message is 10 minutes old"),
        "{text}"
    );

    // Within the window both ways (a clock a little ahead or behind): accepted.
    for (post, offset) in [("skewed1", -240), ("skewed2", 240)] {
        let mut fields = app.payload("#build", post);
        fields.retain(|f| f.0 != "timestamp");
        let (status, text) = form_of(dated(fields, &(now_s + offset).to_string()))
            .send(&app)
            .await;
        assert_eq!(status, 200, "{offset}s: {text}");
    }
    assert_eq!(app.store.list_runs(None, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_replayed_teams_capture_is_refused_and_stores_nothing() {
    let app = spawn_app().await;
    // The protocol notes' sample 1 with its own signature: authentic, but from 2024.
    let sample = include_bytes!("../fixtures/teams/sample1.json").to_vec();
    let signature = "HMAC cNZs4wJSlBrtQkMUNjd0P4kPpj4p3RXjDQ+4OWfhbSg=".to_string();
    let replayed = Request {
        authorization: Some(signature),
        ..Request::teams("/hooks/teams", sample)
    };
    let ahead = |minutes: u64| -> Vec<u8> {
        let mut activity: Value =
            serde_json::from_slice(&crate::helpers::teams_activity("1716220800777", "build"))
                .unwrap();
        let at = std::time::SystemTime::now() + std::time::Duration::from_secs(60 * minutes + 30);
        activity["timestamp"] = json!(humantime::format_rfc3339_millis(at).to_string());
        serde_json::to_vec(&activity).unwrap()
    };
    let mut garbled: Value =
        serde_json::from_slice(&crate::helpers::teams_activity("1716220800778", "build")).unwrap();
    garbled["timestamp"] = json!("last tuesday");
    let cases = vec![
        (
            "replayed capture",
            replayed,
            400,
            "days old; chatrun takes messages at most 5m old (replay_window)",
        ),
        (
            "20 minutes ahead",
            Request::teams("/hooks/teams", ahead(20)),
            400,
            "the message is dated 20 minutes in the future",
        ),
        (
            "not a time",
            Request::teams("/hooks/teams", serde_json::to_vec(&garbled).unwrap()),
            400,
            "timestamp is not an ISO 8601 date and time",
        ),
    ];
    expect_all(&app, cases).await;
    assert_no_run(&app).await;

    // No timestamp at all: signed, so not stripped from a capture; the id still de-duplicates.
    let mut undated: Value =
        serde_json::from_slice(&crate::helpers::teams_activity("1716220800779", "build")).unwrap();
    undated.as_object_mut().unwrap().remove("timestamp");
    let (status, text) = Request::teams("/hooks/teams", serde_json::to_vec(&undated).unwrap())
        .send(&app)
        .await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn replay_window_sets_how_old_a_message_may_be() {
    let app = spawn_app_configured("replay_window = \"1h\"").await;
    let now_s = chatrun::store::now_ms() / 1000;
    let mut fields = app.payload("#build", "halfhour1");
    fields.retain(|f| f.0 != "timestamp");
    let (status, text) = Request::mattermost(
        Some(FORM),
        dated(fields.clone(), &(now_s - 1800).to_string()),
    )
    .send(&app)
    .await;
    assert_eq!(status, 200, "{text}");
    fields.iter_mut().find(|f| f.0 == "post_id").unwrap().1 = "twohours1".into();
    let (status, text) =
        Request::mattermost(Some(FORM), dated(fields, &(now_s - 7200).to_string()))
            .send(&app)
            .await;
    assert_eq!(status, 400);
    assert!(
        text.starts_with(
            r#"{"text":":warning: the message is 2 hours old; chatrun takes messages at most 1h old"#
        ),
        "{text}"
    );
    assert_eq!(app.store.list_runs(None, 10).await.unwrap().len(), 1);
}
