//! The Mattermost path: authentication, parsing, acknowledgement, idempotency, follow-ups.

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    BOT_TOKEN, BOT_USER, HISTORY_JOB, HISTORY_SCRIPT, TOKEN, TestApp, body, spawn_app,
    spawn_app_with,
};

#[tokio::test]
async fn a_form_trigger_is_stored_and_acknowledged_in_its_thread() {
    let app = spawn_app().await;

    let reply = app.trigger("#build", "post00000000000000000000001").await;

    assert_eq!(reply["response_type"], "comment");
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains(
            "run **#1** of **build** (branch=main target=all), asked by @alice, starting now"
        ),
        "{text}"
    );
    assert!(text.contains(&format!("{}/runs/1", app.base)), "{text}");
    // With a Cancel button whose click comes back to chatrun.
    let cancel = &reply["attachments"][0]["actions"][0];
    assert_eq!(cancel["name"], "Cancel #1", "{reply}");
    assert_eq!(cancel["integration"]["context"]["action"], "cancel");
    let run = app.finished_run(1).await;
    assert_eq!(run.job, "build");
    assert_eq!(run.origin.user_name, "alice");
    assert_eq!(run.origin.channel_name, "ci-builds");
    assert_eq!(run.message, "#build");
}

#[tokio::test]
async fn a_json_trigger_with_a_millisecond_timestamp_is_accepted() {
    let app = spawn_app().await;
    let response = reqwest::Client::new()
        .post(format!("{}/hooks/mattermost", app.base))
        .json(&json!({
            "token": TOKEN, "team_id": "t1", "team_domain": "engineering",
            "channel_id": "chan1", "channel_name": "ci-builds", "timestamp": chatrun::store::now_ms(),
            "user_id": "bob1", "user_name": "bob", "post_id": "jsonpost1",
            "text": "#ci build web\nbranch=feature/x", "trigger_word": "#ci", "file_ids": ""
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply: serde_json::Value = response.json().await.unwrap();
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("**build** (branch=feature/x target=web), asked by @bob"),
        "{reply}"
    );
    let run = app.finished_run(1).await;
    assert_eq!(run.args, "branch=feature/x target=web");
}

#[tokio::test]
async fn a_wrong_or_missing_token_gets_401_and_stores_nothing() {
    let app = spawn_app().await;
    let mut fields = app.payload("#build", "post1");
    fields.iter_mut().find(|f| f.0 == "token").unwrap().1 = "wrong".into();
    assert_eq!(app.post_form(&fields).await.status(), 401);
    fields.retain(|f| f.0 != "token");
    assert_eq!(app.post_form(&fields).await.status(), 401);
    let response = reqwest::Client::new()
        .post(format!("{}/hooks/mattermost", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    assert!(app.store.list_runs(None, 10).await.unwrap().is_empty());
    assert_eq!(app.store.next_delivery_at().await.unwrap(), None);
}

#[tokio::test]
async fn an_unknown_job_gets_the_list_of_jobs_and_runs_nothing() {
    let app = spawn_app_with(&[
        ("build", crate::helpers::BUILD_JOB),
        (
            "lint",
            "description = \"Lint it\"\n[[steps]]\nname = \"x\"\nrun = [\"true\"]\n",
        ),
    ])
    .await;

    let reply = app.trigger("#ci biuld", "post2").await;

    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains("There is no job or command **biuld**. Did you mean **build**?"),
        "{text}"
    );
    assert!(text.contains("| **build** | Build everything |"), "{text}");
    assert!(text.contains("| **lint** | Lint it |"), "{text}");
    assert!(app.store.list_runs(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_same_post_delivered_twice_makes_one_run_with_the_same_acknowledgement() {
    let app = spawn_app().await;
    let (first, second) = tokio::join!(
        app.trigger("#build", "dupe1"),
        app.trigger("#build", "dupe1")
    );
    assert_eq!(first, second);
    app.finished_run(1).await;
    assert_eq!(app.store.list_runs(None, 10).await.unwrap().len(), 1);
    let again = app.trigger("#build", "dupe1").await;
    assert_eq!(again, first);
    assert_eq!(app.posts(1).await.len(), 1);
}

#[tokio::test]
async fn posts_of_our_own_bot_are_ignored() {
    let app = spawn_app().await;
    let mut fields = app.payload("#build", "botpost1");
    fields.iter_mut().find(|f| f.0 == "user_id").unwrap().1 = BOT_USER.into();
    let response = app.post_form(&fields).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "{}");
    assert!(app.store.list_runs(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_result_is_posted_in_the_trigger_thread_with_a_table() {
    let app = spawn_app().await;
    app.trigger("#build", "rootpost1").await;

    let posts = app.posts(1).await;

    let post = &posts[0];
    assert_eq!(
        post.headers.get("authorization").unwrap(),
        &format!("Bearer {BOT_TOKEN}")
    );
    let body = body(post);
    assert_eq!(body["channel_id"], "chan0000000000000000000000");
    assert_eq!(body["root_id"], "rootpost1");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with(":white_check_mark: **build** run #1 succeeded in "),
        "{message}"
    );
    assert!(message.contains("asked by @alice"), "{message}");
    assert!(
        message.contains("| Step | Result | Duration |"),
        "{message}"
    );
    assert!(
        message.contains("| Web Client | :white_check_mark: succeeded |"),
        "{message}"
    );
    assert!(
        message.contains(&format!("]({}/runs/1)", app.base)),
        "{message}"
    );
}

/// Mattermost says that `post` was typed in the thread of `root`.
async fn in_thread(app: &TestApp, post: &str, root: &str) {
    Mock::given(method("GET"))
        .and(path(format!("/api/v4/posts/{post}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": post, "root_id": root})),
        )
        .with_priority(1)
        .mount(&app.mattermost)
        .await;
}

#[tokio::test]
async fn a_trigger_typed_inside_a_thread_is_answered_in_that_thread() {
    let app = spawn_app().await;
    in_thread(&app, "replypost1", "threadroot1").await;

    let reply = app.trigger("#build", "replypost1").await;

    // A `comment` reply would be dropped by Mattermost here: the ack goes through the REST API.
    assert_eq!(reply, json!({}));
    let posts = app.posts(2).await;
    let ack = body(&posts[0]);
    assert_eq!(ack["root_id"], "threadroot1");
    assert!(
        ack["message"]
            .as_str()
            .unwrap()
            .contains("Queued run **#1**")
    );
    let result = body(&posts[1]);
    assert_eq!(result["root_id"], "threadroot1");
    assert!(result["message"].as_str().unwrap().contains("succeeded"));
}

#[tokio::test]
async fn an_acknowledgement_in_a_thread_is_posted_while_its_run_still_goes() {
    let app = spawn_app_with(&[(
        "deploy",
        r#"
[[steps]]
name = "Wait"
run = ["sleep", "120"]
"#,
    )])
    .await;
    in_thread(&app, "replypost2", "threadroot2").await;

    assert_eq!(app.trigger("#deploy", "replypost2").await, json!({}));

    // Not left for the result to carry along: the sender is woken for the acknowledgement.
    let posts = app.posts(1).await;
    let ack = body(&posts[0]);
    assert_eq!(ack["root_id"], "threadroot2");
    assert!(
        ack["message"]
            .as_str()
            .unwrap()
            .contains("Queued run **#1**"),
        "{ack}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failing_step_fails_the_run_and_skips_the_rest() {
    let app = spawn_app_with(&[(
        "release",
        r#"
[[steps]]
name = "Compile"
run = ["sh", "-c", "echo compiling; exit 3"]
[[steps]]
name = "Publish"
run = ["sh", "-c", "echo must not run; exit 0"]
"#,
    )])
    .await;
    app.trigger("#release", "failpost1").await;

    let run = app.finished_run(1).await;

    assert_eq!(run.status.as_str(), "failed");
    assert!(!run.log_head.contains("must not run"));
    let message = body(&app.posts(1).await[0])["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with(":x: **release** run #1 failed"),
        "{message}"
    );
    assert!(
        message.contains("| Compile | :x: failed \\(exit 3\\) |"),
        "{message}"
    );
    assert!(
        message.contains("| Publish | :fast_forward: skipped | — |"),
        "{message}"
    );
}

#[tokio::test]
async fn a_follow_up_is_retried_until_the_chat_server_takes_it() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path("/api/v4/posts"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&app.mattermost)
        .await;

    app.trigger("#build", "retrypost1").await;

    let posts = app.posts(3).await;
    assert_eq!(body(&posts[0]), body(&posts[2]));
    let deliveries = crate::helpers::wait_for(|| async {
        let list = app
            .store
            .deliveries(chatrun::domain::RunId(1))
            .await
            .unwrap();
        (list.first().is_some_and(|d| d.status == "sent")).then_some(list)
    })
    .await;
    assert_eq!(deliveries[0].attempts, 3, "three attempts");
}

#[tokio::test]
async fn a_channel_hook_without_trigger_words_stays_quiet_on_chatter() {
    let app = spawn_app().await;
    let mut fields = app.payload("lunch anyone?", "chatter1");
    fields.iter_mut().find(|f| f.0 == "trigger_word").unwrap().1 = String::new();
    let response = app.post_form(&fields).await;
    assert_eq!(response.text().await.unwrap(), "{}");

    let mut fields = app.payload("build", "chatter2");
    fields.iter_mut().find(|f| f.0 == "trigger_word").unwrap().1 = String::new();
    let reply: serde_json::Value = app.post_form(&fields).await.json().await.unwrap();
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("Queued run **#1**")
    );
    assert_eq!(app.store.list_runs(None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn when_the_thread_look_up_is_refused_replies_go_to_the_channel() {
    // A bot that may post but not read posts (403): asking again would not help, so neither
    // reply waits. (A look-up that fails for a while, 5xx, is asked again by the result's
    // delivery: `outbox::a_thread_that_could_not_be_looked_up_is_looked_up_again_before_the_result`.)
    let app = spawn_app().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/posts/lostpost1"))
        .respond_with(ResponseTemplate::new(403))
        .with_priority(1)
        .mount(&app.mattermost)
        .await;

    let reply = app.trigger("#build", "lostpost1").await;

    assert!(reply.get("response_type").is_none(), "{reply}");
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("Queued run **#1**")
    );
    let result = body(&app.posts(1).await[0]);
    assert!(result.get("root_id").is_none(), "{result}");
    assert_eq!(result["channel_id"], "chan0000000000000000000000");
}

#[tokio::test]
async fn the_example_matrix_job_reports_tests_by_component_with_the_failures_named() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs");
    let matrix = std::fs::read_to_string(format!("{examples}/matrix.toml")).unwrap();
    let app = spawn_app_with(&[("matrix", &matrix)]).await;
    let scripts = app.dir.path().join("jobs/scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    for script in ["component.sh", "package.sh"] {
        std::fs::copy(format!("{examples}/scripts/{script}"), scripts.join(script)).unwrap();
    }

    app.trigger("#matrix", "matrixpost1").await;

    let message = body(&app.posts(1).await[0])["message"]
        .as_str()
        .unwrap()
        .to_string();
    let link = format!("{}/runs/1", app.base);
    for line in [
        "| Component | Tests Run | Tests Failed | Duration |".to_string(),
        "| Server | 948 | :white_check_mark: 0 |".to_string(),
        // A first run: every failure is new.
        format!("| Web Client | 123 | :warning: [2 (2 new)]({link}#step-1) |"),
        format!("| iOS Client | 78 | :warning: [3 (3 new)]({link}#step-2) |"),
        "| Packaging | — | :x: failed (exit 2) |".to_string(),
        "**iOS Client**: 3 failed".to_string(),
        "- ios.api › **test\\_case\\_3** \\(new\\): assertion failed\\: expected 200, got 500"
            .to_string(),
        "**Packaging**: last 3 lines of output".to_string(),
        "error: signing key not found".to_string(),
    ] {
        assert!(message.contains(&line), "missing {line:?} in\n{message}");
    }
    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(page.contains(r#"<tr id="step-1">"#), "{page}");
    assert!(page.contains("123 run · 2 failed · 0 skipped"), "{page}");
    assert!(
        page.contains("at web/api.rs:20"),
        "full messages on the run page: {page}"
    );
}

#[tokio::test]
async fn a_missing_or_broken_report_is_shown_not_silently_ignored() {
    let app = spawn_app_with(&[(
        "tests",
        r#"
keep_going = true
[[steps]]
name = "Unit"
run = ["sh", "-c", "echo tests ran"]
junit = "missing/*.xml"
[[steps]]
name = "Integration"
run = ["sh", "-c", "printf '<testsuite><testcase name=x>' > broken.xml"]
junit = "broken.xml"
"#,
    )])
    .await;
    app.trigger("#tests", "reportpost1").await;

    let message = body(&app.posts(1).await[0])["message"]
        .as_str()
        .unwrap()
        .to_string();

    assert!(
        message.contains("| Unit | — | :white_check_mark: succeeded, :warning: report missing |"),
        "{message}"
    );
    assert!(
        message.contains(
            "| Integration | — | :white_check_mark: succeeded, :warning: report unreadable |"
        ),
        "{message}"
    );
    assert!(
        message.contains("**Unit**: report missing\\: no file matches \\`missing/\\*.xml\\`"),
        "{message}"
    );
    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(page.contains("report unreadable: broken.xml: "), "{page}");
}

#[tokio::test]
async fn arguments_reach_steps_as_one_literal_value_or_are_refused() {
    let app = spawn_app_with(&[(
        "echo",
        r#"
[params.msg]
pattern = '[\s\S]{0,200}'
positional = 1
[params.target]
default = "all"
[[steps]]
name = "Echo"
run = ["sh", "-c", "printf '%s|%s|%s' \"$1\" \"$CHATRUN_PARAM_MSG\" \"$CHATRUN_PARAM_TARGET\" > out.txt", "sh", "--msg={msg}"]
"#,
    )])
    .await;

    let reply = app
        .trigger(r#"#echo "$(id); rm -rf / `id`""#, "argpost1")
        .await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("Queued run **#1**"),
        "{reply}"
    );
    let run = app.finished_run(1).await;
    assert_eq!(run.status.as_str(), "succeeded");
    let out = std::fs::read_to_string(app.dir.path().join("jobs/out.txt")).unwrap();
    assert_eq!(out, "--msg=$(id); rm -rf / `id`|$(id); rm -rf / `id`|all");

    // A parameter with the default pattern refuses shell syntax and options; nothing is stored.
    for (i, attack) in ["; rm -rf /", "$(id)", "`id`", "--force", "a\nb"]
        .iter()
        .enumerate()
    {
        let reply = app
            .trigger(&format!("#echo hi target={attack}"), &format!("attack{i}"))
            .await;
        let text = reply["text"].as_str().unwrap();
        assert!(
            text.starts_with(":no_entry_sign: Not running **echo**:"),
            "{attack}: {text}"
        );
    }
    let reply = app.trigger("#echo hi colour=red", "attack9").await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("`colour` is not a parameter of echo"),
        "{reply}"
    );
    assert_eq!(app.store.list_runs(None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn secret_values_are_masked_in_logs_pages_and_replies() {
    let app = spawn_app_with(&[(
        "deploy",
        r#"
secret_env = ["DEPLOY_TOKEN"]
[[steps]]
name = "Deploy"
run = ["sh", "-c", "echo using token $DEPLOY_TOKEN; printf 'last %s' \"$DEPLOY_TOKEN\"; exit 1"]
env = { DEPLOY_TOKEN = "s3cr3t-deploy-token" }
"#,
    )])
    .await;
    app.trigger("#deploy", "secretpost1").await;
    let run = app.finished_run(1).await;

    let message = body(&app.posts(1).await[0])["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("using token ••••••"), "{message}");
    assert!(message.contains("last ••••••"), "{message}");
    let page = app.get("/runs/1").await.text().await.unwrap();
    let log = app.get("/runs/1/log").await.text().await.unwrap();
    for (place, text) in [
        ("reply", &message),
        ("page", &page),
        ("log", &log),
        ("stored head", &run.log_head),
    ] {
        assert!(
            !text.contains("s3cr3t-deploy-token"),
            "the secret is in the {place}: {text}"
        );
    }
}

#[tokio::test]
async fn each_failed_test_is_classed_new_still_failing_or_flaky_against_earlier_runs() {
    let app = spawn_app_with(&[("web", HISTORY_JOB)]).await;
    std::fs::write(app.dir.path().join("jobs/history.sh"), HISTORY_SCRIPT).unwrap();
    for (i, post) in ["histpost1", "histpost2", "histpost3"].iter().enumerate() {
        app.trigger("#web", post).await;
        app.finished_run(i64::try_from(i).unwrap() + 1).await;
    }
    let posts = app.posts(3).await;
    let message = |i: usize| body(&posts[i])["message"].as_str().unwrap().to_string();
    assert!(message(0).contains("[1 (1 new)]"), "{}", message(0));
    assert!(message(1).contains("**b** \\(new\\)"), "{}", message(1));

    // The third: c is new, b has failed since #2, a failed in #1, passed in #2: flaky. Listed
    // in that order, and the count says how many are new.
    let third = message(2);
    assert!(third.contains("[3 (1 new)]"), "{third}");
    let at = |needle: &str| {
        third
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} missing: {third}"))
    };
    let (c, b, a) = (
        at("**c** \\(new\\)"),
        at("**b** \\(failing since \\#2\\)"),
        at("**a** \\(flaky\\)"),
    );
    assert!(
        c < b && b < a,
        "new, then still failing, then flaky: {third}"
    );

    // The API and the run page say the same.
    let api: serde_json::Value = app.get("/api/runs/3").await.json().await.unwrap();
    let classes: Vec<(String, String, i64)> = api["failed_tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["position"] == 0)
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["class"].as_str().unwrap().to_string(),
                f["since"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        classes,
        [
            ("a".to_string(), "flaky".to_string(), 3),
            ("b".to_string(), "still_failing".to_string(), 2),
            ("c".to_string(), "new".to_string(), 3),
        ]
    );
    let page = app.get("/runs/3").await.text().await.unwrap();
    assert!(
        page.contains(r#"<span class="status c-still_failing">failing since #2</span>"#),
        "{page}"
    );

    // The fourth passes: back to green after the three failed runs.
    app.trigger("#web", "histpost4").await;
    app.finished_run(4).await;
    let fourth = body(&app.posts(4).await[3])["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        fourth.contains(":tada: back to green after 3 failed runs, since \\#1."),
        "{fourth}"
    );

    // The job page lists a as flaky (failed in #1 and #3, not in #2), b not (#2 and #3 in a
    // row); its history page has a line per run.
    let page = app.get("/jobs/web").await.text().await.unwrap();
    let flaky =
        &page[page.find("<h2>Flaky tests</h2>").unwrap()..page.find("<h2>Steps</h2>").unwrap()];
    assert!(flaky.contains("<strong>a</strong>"), "{flaky}");
    assert!(!flaky.contains("<strong>b</strong>"), "{flaky}");
    assert!(flaky.contains("2 of 4 runs (50%)"), "{flaky}");
    assert!(flaky.contains(r#"<a href="/runs/3">#3</a>"#), "{flaky}");
    let history = app
        .get("/jobs/web/tests?args=&suite=web&test=a")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        history.contains("in 2 of the last 4 finished runs"),
        "{history}"
    );
    let lines: Vec<&str> = history
        .lines()
        .filter(|l| l.contains(r#"data-label="This test""#))
        .collect();
    assert_eq!(lines.len(), 4, "{history}");
    let failed: Vec<bool> = lines
        .iter()
        .map(|l| l.contains(">failed</span></td><td data-label=\"The run\""))
        .collect();
    assert_eq!(
        failed,
        [false, true, false, true],
        "newest first: #4, #3, #2, #1"
    );
}

/// A click on `button` (a post's action, as the REST post carried it) by `user`, as
/// Mattermost's server sends it: the fixture's request with the button's context.
fn click_request(
    button: &serde_json::Value,
    user: (&str, &str),
    trigger: &str,
) -> serde_json::Value {
    let mut request: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/mattermost/action-request.json")).unwrap();
    request["user_id"] = user.0.into();
    request["user_name"] = user.1.into();
    request["channel_id"] = "chan1".into();
    request["post_id"] = "newpost".into();
    request["trigger_id"] = trigger.into();
    request["context"] = button["integration"]["context"].clone();
    request
}

#[tokio::test]
async fn the_results_run_again_button_reruns_for_a_user_who_may_and_a_forged_one_is_refused() {
    let guarded = "[allow]\nusers = [\"alice\"]\n[[steps]]\nname = \"x\"\nrun = [\"true\"]\n";
    let app = spawn_app_with(&[("deploy", guarded)]).await;
    app.trigger("#deploy", "btnpost1").await;
    app.finished_run(1).await;
    let result = body(&app.posts(1).await[0]);
    let button = result["props"]["attachments"][0]["actions"][0].clone();
    assert_eq!(
        button["id"], "chatrunrerun",
        "letters and digits only: {result}"
    );
    assert_eq!(button["name"], "Run again #1");
    let url = button["integration"]["url"].as_str().unwrap().to_string();
    assert!(url.ends_with("/hooks/mattermost/actions"), "{url}");
    let click = |request: serde_json::Value| {
        let url = format!("{}/hooks/mattermost/actions", app.base);
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&request)
                .send()
                .await
                .unwrap()
        }
    };

    // A context changed to name another run, or one signed with another key: refused,
    // nothing stored.
    let mut tampered = click_request(&button, ("alice1", "alice"), "tr1");
    tampered["context"]["run"] = 7.into();
    assert_eq!(click(tampered).await.status(), 401);
    let mut unsigned = click_request(&button, ("alice1", "alice"), "tr2");
    unsigned["context"]["sig"] = "00".repeat(32).into();
    assert_eq!(click(unsigned).await.status(), 401);
    assert!(
        app.store
            .get_run(chatrun::domain::RunId(2))
            .await
            .unwrap()
            .is_none()
    );

    // Bob may not run the job: the refusal is posted in the thread, nothing runs.
    let response = click(click_request(&button, ("bob1", "bob"), "tr3")).await;
    assert_eq!(response.status(), 200);
    let refusal = body(&app.posts(2).await[1]);
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("not in the job's allow.users"),
        "{refusal}"
    );
    assert_eq!(refusal["root_id"], "newpost");

    // Alice may: run #3 of the same job, acknowledged in the thread with a Cancel button.
    let response = click(click_request(&button, ("alice1", "alice"), "tr4")).await;
    assert_eq!(response.status(), 200);
    let rerun = app.finished_run(3).await;
    assert_eq!(rerun.job, "deploy");
    assert_eq!(rerun.origin.user_name, "alice");
    let posts = app.posts(4).await;
    let ack = posts
        .iter()
        .map(body)
        .find(|p| {
            p["message"]
                .as_str()
                .unwrap_or_default()
                .contains("run **#3**")
        })
        .expect("the acknowledgement of run #3");
    assert_eq!(ack["root_id"], "newpost");
    assert_eq!(
        ack["props"]["attachments"][0]["actions"][0]["name"],
        "Cancel #3"
    );
}

#[tokio::test]
async fn a_jobs_notify_channel_hears_of_status_changes_only() {
    // Passes, fails twice, passes.
    let flip = "[notify]\nmattermost = \"alertschannel\"\n[[steps]]\nname = \"x\"\n\
                run = [\"sh\", \"-c\", \"n=$(cat flip 2>/dev/null || echo 0); n=$((n+1)); \
                echo $n > flip; [ $n = 1 ] || [ $n = 4 ]\"]\n";
    let app = spawn_app_with(&[("flip", flip)]).await;
    for i in 1..=4 {
        app.trigger("#flip", &format!("flippost{i}")).await;
        app.finished_run(i).await;
    }
    // Four results in the trigger's thread, and two notices at the top of the channel.
    let posts = app.posts(6).await;
    let notices: Vec<String> = posts
        .iter()
        .map(body)
        .filter(|p| p["channel_id"] == "alertschannel")
        .map(|p| {
            assert!(p.get("root_id").is_none(), "a top-level post: {p}");
            p["message"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(
        notices[0].starts_with(":x: **flip** broke: run #2 failed after #1 succeeded. Details: "),
        "{notices:?}"
    );
    assert!(
        notices[1].starts_with(
            ":white_check_mark: **flip** is back to green: run #4 succeeded after 2 failed \
             runs, since #2. Details: "
        ),
        "{notices:?}"
    );
}

#[tokio::test]
async fn a_test_that_passed_on_a_retry_is_listed_flaky_and_not_counted_failed() {
    // nextest's own report of a run with retries (tests/fixtures/junit/flaky.xml).
    let report = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/junit/flaky.xml"
    );
    let job = format!(
        "[[steps]]\nname = \"Unit\"\nrun = [\"sh\", \"-c\", \"cp {report} report.xml; exit 100\"]\n\
         junit = \"report.xml\"\n"
    );
    let app = spawn_app_with(&[("unit", &job)]).await;
    app.trigger("#unit", "retrypost1").await;
    app.finished_run(1).await;
    let message = body(&app.posts(1).await[0])["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("| Unit | 3 | :warning: [1 (1 new)]"),
        "{message}"
    );
    assert!(
        message.contains("**Unit**: 1 failed, 1 passed on a retry"),
        "{message}"
    );
    assert!(
        message.contains("**test\\_flaky\\_mod\\_4** \\(flaky\\: passed on a retry\\)"),
        "{message}"
    );
    let api: serde_json::Value = app.get("/api/runs/1").await.json().await.unwrap();
    let flaky = &api["failed_tests"][1];
    assert_eq!(flaky["name"], "test_flaky_mod_4");
    assert_eq!(flaky["passed_on_retry"], true);
    assert_eq!(flaky["class"], "flaky");
}
