//! The history pages list runs and show their output, escaped.

use chatrun::domain::{RunId, RunStatus};

use crate::helpers::{BUILD_JOB, spawn_app_with};

#[tokio::test]
async fn the_history_lists_the_run_and_escapes_what_a_job_printed() {
    let app = spawn_app_with(&[(
        "xss",
        r#"
description = "prints markup"
[params.note]
pattern = '[\s\S]{0,100}'
positional = 1
[[steps]]
name = "<b>Step</b>"
run = ["sh", "-c", '''echo '<script>alert(1)</script>'; printf '\033[31mred\033[0m\n' ''']
"#,
    )])
    .await;
    app.trigger(r#"#xss "<img src=x>""#, "xsspost1").await;
    app.finished_run(1).await;

    let list = app.get("/").await;
    assert_eq!(list.status(), 200);
    let list = list.text().await.unwrap();
    assert!(list.contains(r#"<a href="/jobs/xss">xss</a>"#), "{list}");
    assert!(list.contains(r#"<a href="/runs/1">#1</a>"#), "{list}");
    assert!(list.contains("alice"));
    assert!(list.contains("succeeded"));
    // When, as a person says it, and exactly on hover.
    assert!(
        list.contains(r#"<td data-label="When"><time title="20"#)
            && list.contains(">just now</time>"),
        "{list}"
    );

    let page = app.get("/runs/1").await.text().await.unwrap();
    // No one can sign in here: the page says why there is no Cancel button and what to do.
    assert!(
        page.contains(
            "Cancel and Run again are for signed-in users, and no one can sign in here yet"
        ),
        "{page}"
    );
    // No step has a detail: no empty Detail column.
    assert!(!page.contains("<th>Detail</th>"), "{page}");
    // What the posted result says, rendered, beside its delivery state.
    assert!(page.contains("<summary>What it says</summary>"), "{page}");
    assert!(
        page.contains("✅ <strong>xss</strong> run #1 succeeded"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            r#"<a href="{}/engineering/pl/xsspost1">open the message in chat</a>"#,
            app.mattermost.uri()
        )),
        "{page}"
    );
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || page.contains("&lt;script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "{page}");
    assert!(!page.contains("<img src=x>"), "{page}");
    assert!(!page.contains("<b>Step</b>"), "{page}");
    assert!(!page.contains('\u{1b}'), "no raw ANSI codes");
    assert!(page.contains("red"));

    let log = app.get("/runs/1/log").await;
    assert_eq!(log.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(
        log.text()
            .await
            .unwrap()
            .contains("<script>alert(1)</script>")
    );
    // A log this short is served from the database: the run made no file.
    assert!(!app.dir.path().join("data/logs/1.log").exists());
}

#[tokio::test]
async fn an_unknown_run_is_a_404() {
    let app = spawn_app_with(&[("build", crate::helpers::BUILD_JOB)]).await;
    assert_eq!(app.get("/runs/999").await.status(), 404);
    assert_eq!(app.get("/runs/abc").await.status(), 400);
}

#[tokio::test]
async fn the_json_api_filters_pages_with_a_cursor_and_serves_runs_and_logs() {
    let app = spawn_app_with(&[
        ("build", crate::helpers::BUILD_JOB),
        (
            "fail",
            "[[steps]]\nname = \"x\"\nrun = [\"sh\", \"-c\", \"echo broken; exit 1\"]\n",
        ),
    ])
    .await;
    for i in 0..5 {
        app.say(
            if i % 2 == 0 { "alice" } else { "bob" },
            "#build",
            &format!("b{i}"),
        )
        .await;
    }
    app.say("alice", "#fail", "f0").await;
    for id in 1..=6 {
        app.finished_run(id).await;
    }
    let app = &app;
    let get = |path: String| async move {
        let response = app.get(&path).await;
        let status = response.status().as_u16();
        (
            status,
            response
                .json::<serde_json::Value>()
                .await
                .unwrap_or_default(),
        )
    };

    let (status, page) = get("/api/runs?limit=4".into()).await;
    assert_eq!(status, 200);
    let ids: Vec<i64> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![6, 5, 4, 3]);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, rest) = get(format!("/api/runs?limit=4&cursor={cursor}")).await;
    let ids: Vec<i64> = rest["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![2, 1]);
    assert!(rest["next_cursor"].is_null(), "the last page has no cursor");
    // Exactly a page: no empty page after it.
    let (_, exact) = get("/api/runs?limit=6".into()).await;
    assert!(exact["next_cursor"].is_null());

    let (_, alice) =
        get("/api/runs?user=alice&job=build&status=succeeded&platform=mattermost".into()).await;
    let ids: Vec<i64> = alice["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![5, 3, 1]);
    let run = &alice["runs"][0];
    for field in [
        "id",
        "job",
        "status",
        "user",
        "channel",
        "platform",
        "created_at",
        "started_at",
        "finished_at",
    ] {
        assert!(!run[field].is_null(), "{field} in {run}");
    }
    let (_, failed) = get("/api/runs?status=failed".into()).await;
    assert_eq!(failed["runs"][0]["job"], "fail");
    let (_, none) = get("/api/runs?since=2999-01-01T00:00:00Z".into()).await;
    assert!(none["runs"].as_array().unwrap().is_empty());
    let (_, all) = get("/api/runs?until=2999-01-01T00:00:00Z&channel=ci-builds".into()).await;
    assert_eq!(all["runs"].as_array().unwrap().len(), 6);

    for bad in [
        "status=done",
        "since=yesterday",
        "limit=0",
        "limit=501",
        "cursor=abc",
    ] {
        let (status, body) = get(format!("/api/runs?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}: {body}");
    }

    let (status, one) = get("/api/runs/6".into()).await;
    assert_eq!(status, 200);
    assert_eq!(one["run"]["status"], "failed");
    assert_eq!(one["steps"][0]["exit_code"], 1);
    // Every time of the API in one form, RFC 3339 in UTC.
    for time in [
        &one["run"]["created_at"],
        &one["steps"][0]["started_at"],
        &one["steps"][0]["finished_at"],
    ] {
        let time = time.as_str().unwrap_or_default();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.contains('T'),
            "{one}"
        );
    }
    let (status, missing) = get("/api/runs/99".into()).await;
    assert_eq!(status, 404);
    assert_eq!(
        missing,
        serde_json::json!({"error": {"code": "not_found", "message": "not found"}})
    );
    let (status, word) = get("/api/runs/abc".into()).await;
    assert_eq!(status, 400);
    assert_eq!(
        word["error"]["message"],
        "a run is named by its number, as in /runs/42: `abc` is not a number"
    );
    assert_eq!(
        get("/api/nowhere".into()).await.1["error"]["code"],
        "not_found"
    );
    // A bare date is its midnight.
    let (status, day) = get("/api/runs?since=2000-01-01".into()).await;
    assert_eq!(status, 200, "{day}");
    assert_eq!(day["runs"].as_array().unwrap().len(), 6);
    // The pages answer the same errors as a page with the navigation.
    for path in ["/runs/99", "/runs/abc", "/nowhere"] {
        let page = app.get(path).await;
        assert!(page.status().is_client_error(), "{path}");
        assert_eq!(
            page.headers()["content-type"],
            "text/html; charset=utf-8",
            "{path}"
        );
        let html = page.text().await.unwrap();
        assert!(
            html.contains(r#"<a href="/jobs">Jobs</a>"#),
            "{path}: {html}"
        );
    }

    let (_, log) = get("/api/runs/6/log?offset=0&length=10".into()).await;
    assert_eq!(log["offset"], 0);
    assert_eq!(log["text"].as_str().unwrap().len(), 10);
    let next = log["next_offset"].as_u64().unwrap();
    let (_, rest) = get(format!("/api/runs/6/log?offset={next}&length=100000")).await;
    let whole = format!(
        "{}{}",
        log["text"].as_str().unwrap(),
        rest["text"].as_str().unwrap()
    );
    assert!(whole.contains("broken\n"), "{whole}");
    assert!(rest["next_offset"].is_null());
    assert_eq!(rest["size"].as_u64().unwrap() as usize, whole.len());

    // The page takes the same filters, and its paging keeps them.
    let page = app.get("/?user=bob&job=build").await.text().await.unwrap();
    assert!(page.contains(r#"<a href="/runs/4">#4</a>"#), "{page}");
    assert!(!page.contains(r#"<a href="/runs/5">#5</a>"#), "{page}");
    assert_eq!(app.get("/?status=done").await.status(), 400);
}

/// Reads a Server-Sent Events stream to its `end` event: `(id, data)` of each message.
async fn read_events(response: reqwest::Response) -> Vec<(String, String)> {
    let mut response = response;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !text.contains("event: end") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no end event: {text}"
        );
        match response.chunk().await.unwrap() {
            Some(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
            None => break,
        }
    }
    text.split("\n\n")
        .filter(|block| !block.contains("event: end") && block.contains("data:"))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .trim_start()
                    .to_string()
            };
            (field("id:"), field("data:"))
        })
        .collect()
}

#[tokio::test]
async fn the_log_streams_live_and_a_reconnect_resumes_without_loss_or_repeats() {
    let app = spawn_app_with(&[(
        "ticker",
        "[[steps]]\nname = \"Tick\"\nrun = [\"sh\", \"-c\", \"for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done\"]\n",
    )])
    .await;
    app.trigger("#ticker", "tickpost1").await;

    // Connected while the job prints: every line, in order, then the end.
    let url = format!("{}/runs/1/log/stream", app.base);
    let live = read_events(reqwest::get(&url).await.unwrap()).await;
    let lines: Vec<&str> = live
        .iter()
        .map(|(_, data)| data.as_str())
        .filter(|d| d.starts_with("line"))
        .collect();
    assert_eq!(
        lines,
        vec!["line 1", "line 2", "line 3", "line 4", "line 5"],
        "{live:?}"
    );

    // Reconnecting after the third line gives the rest, once.
    let third = live.iter().find(|(_, d)| d == "line 3").unwrap().0.clone();
    let resumed = read_events(
        reqwest::Client::new()
            .get(&url)
            .header("Last-Event-ID", &third)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let lines: Vec<&str> = resumed
        .iter()
        .map(|(_, data)| data.as_str())
        .filter(|d| d.starts_with("line"))
        .collect();
    assert_eq!(lines, vec!["line 4", "line 5"], "{resumed:?}");
    let ids: Vec<(u64, u64)> = resumed
        .iter()
        .map(|(id, _)| {
            let (offset, line) = id.split_once(':').unwrap();
            (offset.parse().unwrap(), line.parse().unwrap())
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets grow: {ids:?}"
    );
    // Line 1 is chatrun's note of the step; "line 4" is the fifth line of the log.
    assert_eq!(ids[0].1, 5, "{resumed:?}");
}

#[tokio::test]
async fn closed_pages_need_a_login_and_webhooks_do_not() {
    let hash = chatrun::http::auth::hash_password("correct horse battery").unwrap();
    let app = crate::helpers::spawn_app_configured(&format!(
        "[web]\nopen = false\npassword = \"a shared secret\"\ntrust_header = \"X-Forwarded-User\"\n\
         [[web.users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n"
    ))
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| client.get(format!("{}{path}", app.base));

    let page = get("/runs/1").send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/login?next=%2Fruns%2F1");
    let api = get("/api/runs").send().await.unwrap();
    assert_eq!(api.status(), 401);
    assert_eq!(api.headers()["www-authenticate"], "Basic realm=\"chatrun\"");

    // Scripts: HTTP Basic with a user's password or the shared one.
    let ok = get("/api/runs")
        .basic_auth("alice", Some("correct horse battery"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok = get("/api/runs")
        .basic_auth("ci-bot", Some("a shared secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = get("/api/runs")
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    // A trusted reverse proxy.
    let proxied = get("/")
        .header("X-Forwarded-User", "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200);

    // People: the login form sets a session cookie.
    let login = |user: &str, password: &str| {
        client
            .post(format!("{}/login", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([
                    ("user", user),
                    ("password", password),
                    ("next", "/?job=build"),
                ])
                .unwrap(),
            )
            .send()
    };
    assert_eq!(login("alice", "wrong").await.unwrap().status(), 401);
    let signed_in = login("alice", "correct horse battery").await.unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], "/?job=build");
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let page = get("/").header("cookie", &session).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let out = client
        .post(format!("{}/logout", app.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(
        get("/")
            .header("cookie", &session)
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
    // An open redirect is not followed.
    let evil = client
        .post(format!("{}/login", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("password", "a shared secret"),
                ("next", "//evil.example/"),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(evil.headers()["location"], "/");

    // Webhooks and the health check keep their own rules.
    assert_eq!(get("/healthz").send().await.unwrap().status(), 200);
    let reply = app.trigger("#build", "loginpost1").await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("Queued run **#1**")
    );
}

#[tokio::test]
async fn a_job_page_shows_its_definition_success_rate_and_durations() {
    let app = spawn_app_with(&[
        ("build", crate::helpers::BUILD_JOB),
        ("fail", "[[steps]]\nname = \"x\"\nrun = [\"false\"]\n"),
    ])
    .await;
    for i in 0..3 {
        app.say("alice", "#build", &format!("j{i}")).await;
    }
    app.say("alice", "#fail", "jf").await;
    for id in 1..=4 {
        app.finished_run(id).await;
    }

    let page = app.get("/jobs/build").await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("3 of 3 finished runs succeeded (100%)"),
        "{page}"
    );
    assert_eq!(
        page.matches("<rect ").count(),
        3,
        "one bar per finished run: {page}"
    );
    assert!(page.contains(r#"<a href="/runs/3">"#), "{page}");
    assert!(
        page.contains("<code>branch</code>"),
        "parameters are listed: {page}"
    );
    let fail = app.get("/jobs/fail").await.text().await.unwrap();
    assert!(
        fail.contains("0 of 1 finished runs succeeded (0%)"),
        "{fail}"
    );
    assert!(fail.contains("#dc2626"), "a failed run's bar is red");
    assert_eq!(app.get("/jobs/nope").await.status(), 404);
    let list = app.get("/").await.text().await.unwrap();
    assert!(
        list.contains(r#"<a href="/jobs/build">build</a>"#),
        "{list}"
    );
}

#[tokio::test]
async fn a_long_log_has_numbered_lines_and_the_middle_on_demand() {
    let app = spawn_app_with(&[(
        "seq",
        "[[steps]]\nname = \"Seq\"\nrun = [\"seq\", \"1\", \"20000\"]\n",
    )])
    .await;
    app.trigger("#seq", "seqpost1").await;
    let run = app.finished_run(1).await;
    // The step's header line, 20000 numbers, the step's result line.
    assert_eq!(run.log_lines, 20002);

    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(
        page.contains(r##"<span class="line" id="L2"><a class="ln" href="#L2">2</a>1"##),
        "the head is numbered from 1"
    );
    assert!(
        page.contains(
            r##"<span class="line" id="L20001"><a class="ln" href="#L20001">20001</a>20000"##
        ),
        "the tail keeps the lines' own numbers"
    );
    assert!(
        page.contains(r#"id="load-gap""#),
        "the middle is offered, not loaded"
    );
    assert!(
        page.len() < 200_000,
        "the page stays small: {} bytes",
        page.len()
    );
}

#[tokio::test]
async fn a_signed_in_user_reruns_and_cancels_from_the_run_page_with_its_form_token() {
    const SLOW: &str = "description = \"waits\"\ntimeout = \"1m\"\n\
                        [[steps]]\nname = \"Wait\"\nrun = [\"sleep\", \"30\"]\n";
    let jobs = [("slow", SLOW)];
    let (dir, mattermost) = spawn_app_with(&jobs).await.stop().await;
    let app = crate::helpers::start_with(
        dir,
        mattermost,
        &jobs,
        "[web]\ntrust_header = \"X-Forwarded-User\"\n",
    )
    .await;
    app.trigger("#slow", "formpost1").await;
    app.first_step_running(1).await;

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client
        .get(format!("{}/runs/1", app.base))
        .header("X-Forwarded-User", "alice")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = page
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the run page has a form token")
        .to_string();
    let post = |path: &str, user: Option<&str>, origin: Option<&str>| {
        let mut request = client
            .post(format!("{}{path}", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string([("token", &token)]).unwrap());
        if let Some(user) = user {
            request = request.header("X-Forwarded-User", user);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let status = |response: reqwest::Response| response.status().as_u16();

    // Nobody signed in (sent to the login), alice's token in mallory's hands, a form from
    // another site, an unknown run: refused, and nothing queued or stopped.
    let anonymous = post("/runs/1/rerun", None, None).await.unwrap();
    assert_eq!(anonymous.status(), 303);
    assert_eq!(
        anonymous.headers()["location"],
        "/login?next=%2Fruns%2F1%2Frerun"
    );
    assert_eq!(
        status(post("/runs/1/rerun", Some("mallory"), None).await.unwrap()),
        403
    );
    assert_eq!(
        status(
            post("/runs/1/cancel", Some("alice"), Some("http://evil.example"))
                .await
                .unwrap()
        ),
        403
    );
    assert_eq!(
        status(post("/runs/99/rerun", Some("alice"), None).await.unwrap()),
        404
    );
    assert!(app.store.get_run(RunId(2)).await.unwrap().is_none());
    assert_eq!(
        app.store.get_run(RunId(1)).await.unwrap().unwrap().status,
        RunStatus::Running
    );

    // Run again: the same job, queued by alice from the web, behind run 1.
    let rerun = post("/runs/1/rerun", Some("alice"), None).await.unwrap();
    assert_eq!(rerun.status(), 303);
    assert_eq!(rerun.headers()["location"], "/runs/2");
    let second = app.store.get_run(RunId(2)).await.unwrap().unwrap();
    assert_eq!(
        (
            second.job.as_str(),
            second.origin.user_name.as_str(),
            second.origin.platform.as_str(),
            second.status
        ),
        ("slow", "alice", "web", RunStatus::Queued)
    );

    // Cancel: the queued run never starts, the running one stops.
    for id in [2, 1] {
        let cancel = post(&format!("/runs/{id}/cancel"), Some("alice"), None)
            .await
            .unwrap();
        assert_eq!(cancel.status(), 303);
        assert_eq!(cancel.headers()["location"], format!("/runs/{id}"));
        assert_eq!(app.finished_run(id).await.status, RunStatus::Cancelled);
    }
    assert!(
        app.store
            .steps(RunId(2))
            .await
            .unwrap()
            .iter()
            .all(|step| step.started_at.is_none())
    );
}

#[tokio::test]
async fn a_log_shows_its_colours_not_their_codes() {
    let app = spawn_app_with(&[(
        "colours",
        r#"
[[steps]]
name = "Paint"
run = ["printf", '\033[1;31merror\033[0m: <not a tag> \033[32mok\033[0m\n']
"#,
    )])
    .await;
    app.trigger("#colours", "colour1").await;
    app.finished_run(1).await;

    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(
        page.contains(
            r#"<span class="a-1 a-b">error</span>: &lt;not a tag&gt; <span class="a-2">ok</span>"#
        ),
        "{page}"
    );
    assert!(!page.contains('\u{1b}'), "no raw escape codes");
}

/// Signs in on `base` with the shared password: the session cookie (`name=value`).
pub async fn sign_in(base: &str) -> String {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("password=a+shared+secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

/// The status of `path` on `base` with `cookie`, redirects not followed.
pub async fn status_with(base: &str, path: &str, cookie: &str) -> u16 {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_session_outlives_a_restart() {
    let extra = "[web]\nopen = false\npassword = \"a shared secret\"\n";
    let app = crate::helpers::spawn_app_configured(extra).await;
    let session = sign_in(&app.base).await;
    assert_eq!(status_with(&app.base, "/", &session).await, 200);

    let (dir, mattermost) = app.stop().await;
    let app = crate::helpers::start_with(dir, mattermost, &[("build", BUILD_JOB)], extra).await;
    assert_eq!(
        status_with(&app.base, "/", &session).await,
        200,
        "still signed in"
    );
    assert_eq!(
        status_with(&app.base, "/", "chatrun_session=forged").await,
        303
    );
}
