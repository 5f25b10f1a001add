//! A real browser against a running chatrun: headless Chromium driven through chromedriver's
//! WebDriver HTTP API (plain JSON over loopback, no download at run time). `.ci/run` installs
//! Debian's `chromium` and `chromium-driver`; on a machine without them the test says so and
//! passes, except under CI, where it fails.

use std::process::Stdio;

use serde_json::{Value, json};

use crate::helpers::{spawn_app_with, wait_for};

const TICKER: &str = r#"
[[steps]]
name = "Tick"
run = ["sh", "-c", "i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo tick $i; sleep 0.1; done"]
"#;

struct Driver {
    base: String,
    session: String,
    process: tokio::process::Child,
    client: reqwest::Client,
}

impl Driver {
    async fn start() -> Option<Driver> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(binary) = binary else {
            assert!(
                std::env::var_os("CI").is_none(),
                "chromedriver is missing: .ci/run installs chromium and chromium-driver"
            );
            eprintln!("browser test skipped: install chromium and chromium-driver to run it");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = tokio::process::Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        wait_for(|| {
            let client = client.clone();
            let url = format!("{base}/status");
            async move {
                let status: Value = client.get(url).send().await.ok()?.json().await.ok()?;
                status["value"]["ready"].as_bool().filter(|r| *r)
            }
        })
        .await;
        let profile = tempfile::tempdir().unwrap().keep();
        let session: Value = client
            .post(format!("{base}/session"))
            .json(
                &json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                             "--no-first-run", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync",
                             "--window-size=1200,1000",
                             format!("--user-data-dir={}", profile.display())]
                }}}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = session["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_string();
        Some(Driver {
            base,
            session,
            process,
            client,
        })
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.client.request(method, url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        response["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    async fn screenshot(&self, name: &str) {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(
                png.as_str()
                    .unwrap_or_else(|| panic!("no screenshot: {png}")),
            )
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    async fn quit(mut self) {
        self.command(reqwest::Method::DELETE, "", Value::Null).await;
        let _ = self.process.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_filters_the_list_and_sees_a_running_runs_lines_appear() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let app = spawn_app_with(&[("build", crate::helpers::BUILD_JOB), ("ticker", TICKER)]).await;
    app.say("alice", "#build", "b1").await;
    app.finished_run(1).await;
    app.say("bob", "#ticker", "t1").await;
    wait_for(|| async {
        let run = app
            .store
            .get_run(chatrun::domain::RunId(2))
            .await
            .unwrap()?;
        (run.status.as_str() == "running").then_some(())
    })
    .await;

    // The list, then filtered with the form.
    driver.open(&format!("{}/", app.base)).await;
    let title = driver.script("return document.title").await;
    assert_eq!(title, "Runs · chatrun");
    driver
        .script(
            "document.querySelector('input[name=job]').value = 'build';
             document.querySelector('form.filters').submit(); return true;",
        )
        .await;
    wait_for(|| async {
        let url = driver.script("return location.search").await;
        (url.as_str() == Some("?job=build&status=&user=&channel=&platform=&since=&until="))
            .then_some(())
    })
    .await;
    let rows = driver
        .script("return [...document.querySelectorAll('table:not(.queue) tbody tr td:nth-child(2)')].map(td => td.textContent.trim())")
        .await;
    assert_eq!(rows, json!(["build"]), "only the build run is listed");

    // The running run: lines appear while the page is open.
    driver.open(&format!("{}/runs/2", app.base)).await;
    let count = "return document.querySelectorAll('#live .line').length";
    let first = driver.script(count).await.as_u64().unwrap_or(0);
    wait_for(|| async {
        let now = driver.script(count).await.as_u64().unwrap_or(0);
        (now >= first + 5).then_some(now)
    })
    .await;
    let still_loaded = driver
        .script("return performance.getEntriesByType('navigation').length")
        .await;
    assert_eq!(
        still_loaded,
        json!(1),
        "the page was not reloaded: the lines came live"
    );
    // Every line has its anchor, live ones too, numbered as in the whole log.
    let ids = driver
        .script("return [...document.querySelectorAll('#live .line')].map(l => l.id)")
        .await;
    let ids: Vec<u64> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            id.as_str()
                .unwrap()
                .trim_start_matches('L')
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive: {ids:?}"
    );
    driver.screenshot("browser-run.png").await;

    app.say("bob", "#ci cancel 2", "c2").await;
    driver.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_phone_no_page_scrolls_sideways_and_runs_of_one_job_tell_apart() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let app = spawn_app_with(&[
        ("build", crate::helpers::BUILD_JOB),
        ("web", crate::helpers::HISTORY_JOB),
    ])
    .await;
    // Three runs of `web` give it a flaky test, for its job page and the test's history.
    std::fs::write(
        app.dir.path().join("jobs/history.sh"),
        crate::helpers::HISTORY_SCRIPT,
    )
    .unwrap();
    for n in 1..=3 {
        app.say("alice", "#web", &format!("w{n}")).await;
        app.finished_run(n).await;
    }
    for n in 4..=7 {
        app.say(
            "alice",
            &format!("#build all feature/{}", n - 3),
            &format!("f{n}"),
        )
        .await;
        app.finished_run(n).await;
    }

    // The list tells runs #1 to #4 apart by their arguments, and says where each came from.
    driver.open(&format!("{}/", app.base)).await;
    let args = driver
        .script("return [...document.querySelectorAll('table:not(.queue) tbody td.args')].map(td => td.textContent.trim())")
        .await;
    assert_eq!(
        args,
        json!([
            "branch=feature/4 target=all",
            "branch=feature/3 target=all",
            "branch=feature/2 target=all",
            "branch=feature/1 target=all",
            "",
            "",
            ""
        ])
    );
    let body = driver.script("return document.body.innerText").await;
    assert!(body.as_str().unwrap().contains("(Mattermost)"), "{body}");

    // At 390 px wide, nothing is wider than the screen: the list, a run, a job, the jobs, the
    // agents, an error page (an HTML page with the navigation).
    driver
        .command(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": 390, "height": 844}),
        )
        .await;
    let width = driver.script("return window.innerWidth").await;
    assert!(width.as_u64().unwrap() <= 400, "{width}");
    for (path, title) in [
        ("/", "Runs · chatrun"),
        ("/runs/4", "#4 build · chatrun"),
        ("/runs/3", "#3 web · chatrun"),
        ("/jobs/build", "build · chatrun"),
        ("/jobs/web", "web · chatrun"),
        (
            "/jobs/web/tests?args=&suite=web&test=a",
            "a · web · chatrun",
        ),
        ("/jobs", "Jobs · chatrun"),
        ("/agents", "Agents · chatrun"),
        ("/runs/999", "Not Found · chatrun"),
        ("/runs/abc", "Bad Request · chatrun"),
    ] {
        driver.open(&format!("{}{path}", app.base)).await;
        assert_eq!(
            driver.script("return document.title").await,
            json!(title),
            "{path}"
        );
        let (wide, inner) = (
            driver
                .script("return document.documentElement.scrollWidth")
                .await,
            driver.script("return window.innerWidth").await,
        );
        assert!(
            wide.as_u64() <= inner.as_u64(),
            "{path} is {wide} px wide in a {inner} px window"
        );
        let nav = driver
            .script("return [...document.querySelectorAll('header a')].map(a => a.textContent)")
            .await;
        assert_eq!(nav, json!(["chatrun", "Runs", "Jobs", "Agents"]), "{path}");
    }
    driver.open(&format!("{}/", app.base)).await;
    driver.screenshot("browser-runs-390.png").await;
    driver.open(&format!("{}/runs/4", app.base)).await;
    driver.screenshot("browser-run-390.png").await;
    driver.open(&format!("{}/jobs/web", app.base)).await;
    driver.screenshot("browser-job-flaky-390.png").await;
    driver.quit().await;
}
