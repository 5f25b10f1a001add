//! The outbox under faults: replies given up after `outbox.give_up_after` and shown as not
//! delivered; a chat server that is down, failing, then throttling, then back.

use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{spawn_app_configured, wait_for};
use chatrun::store::{DeliveryState, RunId};

/// The deliveries of run `id` once `done` holds for the first.
async fn first_delivery_when(
    app: &crate::helpers::TestApp,
    id: i64,
    done: impl Fn(&DeliveryState) -> bool,
) -> DeliveryState {
    wait_for(|| async {
        let list = app.store.deliveries(RunId(id)).await.unwrap();
        list.into_iter().next().filter(|d| done(d))
    })
    .await
}

#[tokio::test]
async fn a_reply_still_failing_after_give_up_after_is_shown_as_not_delivered_with_why() {
    let app = spawn_app_configured("give_up_after = \"1s\"\n").await;
    Mock::given(method("POST"))
        .and(path("/api/v4/posts"))
        .respond_with(ResponseTemplate::new(500).set_body_string("database unavailable"))
        .with_priority(1)
        .mount(&app.mattermost)
        .await;

    app.trigger("#build", "giveup1").await;

    let dead = first_delivery_when(&app, 1, |d| d.status == "dead").await;
    assert!(dead.attempts > 1, "retried before giving up: {dead:?}");
    assert!(
        dead.sent_at.is_none() && dead.created_at + 1000 <= chatrun::store::now_ms(),
        "given up no sooner than give_up_after: {dead:?}"
    );
    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(
        page.contains(
            "not delivered: gave up after 1s: 500 Internal Server Error: database unavailable"
        ),
        "{page}"
    );
}

#[tokio::test]
async fn a_reply_being_retried_shows_its_last_error_and_next_attempt() {
    let app = spawn_app_configured("retry_max_secs = 3600\n").await;
    Mock::given(method("POST"))
        .and(path("/api/v4/posts"))
        .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
        .with_priority(1)
        .mount(&app.mattermost)
        .await;

    app.trigger("#build", "pending1").await;

    first_delivery_when(&app, 1, |d| d.status == "pending" && d.last_error.is_some()).await;
    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(
        page.contains("not delivered yet: 503 Service Unavailable: maintenance; next attempt"),
        "{page}"
    );
    assert!(page.contains(">pending<"), "{page}");
}
