//! The database fails while a webhook is answered (locked by another writer, disk full): the
//! chat server gets 503, never an acknowledgement of a run that was not stored.

use std::collections::BTreeSet;

use serde_json::Value;
use sqlx::Connection;

use crate::helpers::{BUILD_JOB, TOKEN, spawn_app_configured};
use crate::spawned::Spawned;

const MESSAGE: &str = "chatrun cannot store the request right now; try again";

/// Another writer holding `app`'s database, until it rolls back.
async fn lock_database(app: &crate::helpers::TestApp) -> sqlx::SqliteConnection {
    let url = format!("sqlite://{}/chatrun.db", app.dir.path().display());
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("begin exclusive")
        .execute(&mut other)
        .await
        .unwrap();
    other
}

#[tokio::test]
async fn a_locked_database_gets_503_and_no_run_until_the_lock_is_gone() {
    // 300 ms instead of 5 s of waiting for the lock keeps the test short.
    let app = spawn_app_configured("busy_timeout_ms = 300").await;
    let mut other = lock_database(&app).await;

    let response = app.post_form(&app.payload("#build", "lockedpost1")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["content-type"], "application/json");
    let reply: Value = response.json().await.unwrap();
    assert_eq!(
        reply["text"],
        format!(":warning: {MESSAGE}"),
        "Mattermost posts a JSON reply's text whatever the status"
    );
    let response = app.mention_teams("1716220800555", "build").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.text().await.unwrap(), format!("{MESSAGE}\n"));

    sqlx::query("rollback").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    assert!(app.store.list_runs(None, 10).await.unwrap().is_empty());
    let api: Value = app.get("/api/runs").await.json().await.unwrap();
    assert_eq!(api["runs"], serde_json::json!([]));

    // The user tries again: now it is stored, once.
    let reply = app.trigger("#build", "lockedpost1").await;
    assert!(
        reply["text"].as_str().unwrap().contains("run **#"),
        "{reply}"
    );
    assert_eq!(app.store.list_runs(None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_teams_trigger_is_answered_within_teams_5_s_however_long_the_database_waits() {
    // With the default busy_timeout (5 s), a write would wait for the lock all of Teams' time.
    let app = spawn_app_configured("").await;
    let mut other = lock_database(&app).await;

    let response = app.mention_teams("1716220800556", "build").await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.text().await.unwrap(),
        "chatrun could not store the request within 3.5 s (the database is busy); nothing was \
         started: send it again\n",
        "answered at chatrun's own limit, before the store's"
    );

    sqlx::query("rollback").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    // The trigger that was dropped at the deadline is not stored once the lock is gone.
    let response = app.mention_teams("1716220800557", "build").await;
    assert_eq!(response.status(), 200);
    let runs = app.store.list_runs(None, 10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].message_id, "1716220800557");
}

#[tokio::test]
async fn a_full_disk_gets_503_and_every_acknowledged_trigger_has_its_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::write(dir.path().join("jobs/build.toml"), BUILD_JOB).unwrap();
    let database = format!("sqlite://{}/chatrun.db", dir.path().display());
    std::fs::write(
        dir.path().join("chatrun.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"{database}\"\nworkers = 1\n\
             [mattermost]\ntokens = [\"{TOKEN}\"]\n"
        ),
    )
    .unwrap();
    // The schema is written before the limit applies; closing removes the WAL.
    let store = chatrun::store::Store::connect(&database).await.unwrap();
    store.close().await;
    assert!(!dir.path().join("chatrun.db-wal").exists());

    // No file may grow past 128 KiB, so the WAL fills after a few transactions, as on a full
    // disk: SQLite's write fails (EFBIG; SQLITE_IOERR_WRITE where a full disk gives
    // SQLITE_FULL, both a store error to chatrun). SIGXFSZ is ignored, so the write fails
    // instead of killing the process. `ulimit -f` counts 512-byte blocks in POSIX sh.
    let server = Spawned::start(
        dir.path(),
        "trap '' XFSZ; ulimit -f 256;",
        &[("RUST_LOG", "chatrun=info")],
    )
    .await;
    let pid = server.child.id().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let max_file = limits
        .lines()
        .find(|l| l.starts_with("Max file size"))
        .unwrap();
    assert!(
        max_file.split_whitespace().any(|word| word == "131072"),
        "the limit applies to chatrun itself: {max_file}"
    );

    let client = reqwest::Client::new();
    let mut acknowledged = BTreeSet::new();
    let mut refused = None;
    for i in 0..60 {
        let user = format!("user{i}");
        let now = chatrun::store::now_ms() / 1000;
        let fields = [
            ("channel_id", "chan0000000000000000000000".to_string()),
            ("channel_name", "ci-builds".into()),
            ("post_id", format!("fullpost{i}")),
            ("text", "#build".into()),
            ("timestamp", now.to_string()),
            ("token", TOKEN.into()),
            ("trigger_word", "#build".into()),
            ("user_id", format!("{user}-id")),
            ("user_name", user.clone()),
        ];
        let response = client
            .post(format!("{}/hooks/mattermost", server.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap())
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => {
                acknowledged.insert(user);
            }
            503 => {
                let reply: Value = response.json().await.unwrap();
                assert_eq!(reply["text"], format!(":warning: {MESSAGE}"));
                refused = Some(user);
                break;
            }
            other => panic!("{other}: {}", response.text().await.unwrap()),
        }
    }
    let refused = refused.expect("the disk fills up within 60 triggers");

    // Reading still works: the API lists exactly the acknowledged triggers.
    let api: Value = client
        .get(format!("{}/api/runs?limit=100", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: BTreeSet<String> = api["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["user"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, acknowledged, "refused: {refused}");
    assert!(!listed.contains(&refused));

    let output = server.stop().await;
    assert!(
        output.contains("cannot store a webhook request; answered 503"),
        "{output}"
    );
}
