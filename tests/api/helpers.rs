//! `spawn_app()` and friends: a running chatrun and a fake Mattermost for each test.

use std::future::Future;
use std::time::Duration;

use chatrun::app::App;
use chatrun::config::Config;
use chatrun::domain::{RunId, RunRow};
use chatrun::store::Store;
use serde_json::json;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The outgoing webhook token the test app accepts.
pub const TOKEN: &str = "testtoken0000000000000000a";
/// The bot's access token.
pub const BOT_TOKEN: &str = "botsecret";
/// The bot's user id: its posts must be ignored.
pub const BOT_USER: &str = "botuser00000000000000000bb";

/// The security token of the Teams webhook `platform-team` (the protocol notes' samples are
/// signed with it).
pub const TEAMS_TOKEN: &str = "mEVCLCRJfhz1YDb7NUBtBS0y2u7unCXoab0DP21W1hA=";
/// The security token of the Teams webhook `ops`, which has no follow-up URL.
pub const OPS_TOKEN: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The path of `platform-team`'s Workflows URL on the fake Workflows server.
pub const WORKFLOW_PATH: &str = "/workflows/0123abcd/triggers/manual/paths/invoke";

/// How long any condition may take before a test fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// A job that succeeds in three steps.
pub const BUILD_JOB: &str = r#"
description = "Build everything"
timeout = "1m"
[params.target]
default = "all"
positional = 1
[params.branch]
default = "main"
pattern = "[A-Za-z0-9._/-]{1,100}"
positional = 2
[[steps]]
name = "Server"
run = ["sh", "-c", "echo server ok"]
[[steps]]
name = "Web Client"
run = ["sh", "-c", "echo web ok"]
[[steps]]
name = "iOS Client"
run = ["true"]
"#;

/// Fails the tests its run number (counted in `n`) says: 1: a; 2: b; 3: a, b and c; then none.
pub const HISTORY_SCRIPT: &str = r#"n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n
case $n in 1) failed="a" ;; 2) failed="b" ;; 3) failed="a b c" ;; *) failed="" ;; esac
{
  echo '<testsuite name="web" tests="3">'
  for t in a b c; do
    case " $failed " in
      *" $t "*) echo "<testcase classname=\"web\" name=\"$t\"><failure message=\"$t broke\"/></testcase>" ;;
      *) echo "<testcase classname=\"web\" name=\"$t\"/>" ;;
    esac
  done
  echo '</testsuite>'
} > report.xml
[ -z "$failed" ]
"#;

/// A job running [`HISTORY_SCRIPT`] (as `jobs/history.sh`), its JUnit report read.
pub const HISTORY_JOB: &str =
    "[[steps]]\nname = \"Web Client\"\nrun = [\"sh\", \"history.sh\"]\njunit = \"report.xml\"\n";

pub struct TestApp {
    pub base: String,
    pub store: Store,
    pub mattermost: MockServer,
    /// Plays the Teams Workflows webhook that result cards are posted to.
    pub workflows: MockServer,
    pub dir: TempDir,
    /// Cancel to start chatrun's shutdown (as SIGTERM does).
    pub shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A chatrun with the `build` job.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[("build", BUILD_JOB)]).await
}

/// A chatrun with the given jobs (`name`, TOML); the fake Mattermost answers every call with
/// success until a test mounts other answers.
pub async fn spawn_app_with(jobs: &[(&str, &str)]) -> TestApp {
    let mattermost = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/api/v4/posts/[a-z0-9]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"root_id": ""})))
        .with_priority(10)
        .mount(&mattermost)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/posts"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "newpost"})))
        .with_priority(10)
        .mount(&mattermost)
        .await;
    let dir = tempfile::tempdir().expect("a temporary folder");
    start(dir, mattermost, jobs).await
}

async fn workflows_server() -> MockServer {
    let workflows = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(WORKFLOW_PATH))
        .respond_with(ResponseTemplate::new(202))
        .with_priority(10)
        .mount(&workflows)
        .await;
    workflows
}

/// Starts chatrun in `dir` (keeping what a previous start left there: the database).
pub async fn start(dir: TempDir, mattermost: MockServer, jobs: &[(&str, &str)]) -> TestApp {
    start_with(dir, mattermost, jobs, "").await
}

/// A chatrun with the `build` job and `extra` added to its configuration: its lines before the
/// first `[section]` are top-level keys, the rest is appended.
pub async fn spawn_app_configured(extra: &str) -> TestApp {
    let app = spawn_app().await;
    let (dir, mattermost) = app.stop().await;
    start_with(dir, mattermost, &[("build", BUILD_JOB)], extra).await
}

/// [`start`], with `extra` added to the configuration (its top-level keys at the top).
pub async fn start_with(
    dir: TempDir,
    mattermost: MockServer,
    jobs: &[(&str, &str)],
    extra: &str,
) -> TestApp {
    launch(dir, mattermost, jobs, extra, None).await
}

/// A chatrun with the `build` job whose Mattermost REST API and Teams Workflows URL (for
/// `platform-team`, at [`WORKFLOW_PATH`]) are both at `chat_url`, a fake the test runs itself,
/// and `extra` added to its configuration as in [`start_with`].
pub async fn spawn_app_with_chat(chat_url: &str, extra: &str) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let unused = MockServer::start().await;
    launch(dir, unused, &[("build", BUILD_JOB)], extra, Some(chat_url)).await
}

/// Starts chatrun in `dir` with `jobs`, its Mattermost REST API and Teams Workflows URL at
/// `chat_url` when given (else at fakes of its own), and `extra` added to its configuration as
/// in [`start_with`] (a top-level `database_url` there replaces the SQLite file in `dir`).
pub async fn launch(
    dir: TempDir,
    mattermost: MockServer,
    jobs: &[(&str, &str)],
    extra: &str,
    chat_url: Option<&str>,
) -> TestApp {
    let jobs_dir = dir.path().join("jobs");
    std::fs::create_dir_all(&jobs_dir).unwrap();
    for (name, text) in jobs {
        std::fs::write(jobs_dir.join(format!("{name}.toml")), text).unwrap();
    }
    let workflows = workflows_server().await;
    // Top-level keys of `extra` (the lines before its first table) replace the defaults here.
    let tables_at = extra
        .lines()
        .position(|line| line.trim_start().starts_with('['))
        .unwrap_or(extra.lines().count());
    let top: Vec<&str> = extra.lines().take(tables_at).collect();
    let tables: Vec<&str> = extra.lines().skip(tables_at).collect();
    let database = format!(
        "database_url = \"sqlite://{}/chatrun.db\"",
        dir.path().display()
    );
    let defaults = [
        database.as_str(),
        "workers = 2",
        "kill_grace_secs = 1",
        "shutdown_grace_secs = 1",
    ];
    let mut top_level: Vec<&str> = defaults
        .into_iter()
        .filter(|line| {
            let key = line.split('=').next().unwrap_or_default().trim();
            !top.iter()
                .any(|t| t.split('=').next().unwrap_or_default().trim() == key)
        })
        .collect();
    top_level.extend(top);
    let top_level = top_level.join("\n");
    // Tests retry fast unless their own `[outbox]` says otherwise.
    let mut tables: Vec<String> = tables.into_iter().map(String::from).collect();
    match tables.iter().position(|line| line.trim() == "[outbox]") {
        Some(at)
            if !tables
                .iter()
                .any(|l| l.trim_start().starts_with("retry_base_ms")) =>
        {
            tables.insert(at + 1, "retry_base_ms = 50".into());
        }
        Some(_) => {}
        None => tables
            .splice(0..0, ["[outbox]".into(), "retry_base_ms = 50".into()])
            .for_each(drop),
    }
    // Keys of an `[mattermost]` table in `extra` join the one here.
    let mut mattermost_keys = Vec::new();
    if let Some(at) = tables.iter().position(|line| line.trim() == "[mattermost]") {
        let end = tables[at + 1..]
            .iter()
            .position(|line| line.trim_start().starts_with('['))
            .map_or(tables.len(), |n| at + 1 + n);
        mattermost_keys = tables.drain(at..end).skip(1).collect();
    }
    let mattermost_keys = mattermost_keys.join("\n");
    let extra = tables.join("\n");
    let config = Config::parse(
        "test",
        &format!(
            r#"
listen = "127.0.0.1:0"
jobs_dir = "{dir}/jobs"
data_dir = "{dir}/data"
{top_level}
[mattermost]
tokens = ["{TOKEN}"]
url = "{url}"
bot_token = "{BOT_TOKEN}"
bot_user_id = "{BOT_USER}"
{mattermost_keys}
[[teams.webhooks]]
name = "platform-team"
secret = "{TEAMS_TOKEN}"
follow_up_url = "{workflows}{WORKFLOW_PATH}?api-version=1&sig=secretsig"
[[teams.webhooks]]
name = "ops"
secret = "{OPS_TOKEN}"
{extra}
"#,
            dir = dir.path().display(),
            url = chat_url.map_or_else(|| mattermost.uri(), String::from),
            workflows = chat_url.map_or_else(|| workflows.uri(), String::from),
        ),
        std::iter::empty(),
    )
    .expect("a valid test configuration");
    let app = App::build(config).await.expect("chatrun builds");
    let addr = app.addr();
    let store = app.state().store.clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        base: format!("http://{addr}"),
        store,
        mattermost,
        workflows,
        dir,
        shutdown,
        task: Some(task),
    }
}

impl TestApp {
    /// Stops chatrun (as on SIGTERM) and waits for it; returns what a restart needs.
    pub async fn stop(mut self) -> (TempDir, MockServer) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let mattermost = std::mem::replace(&mut self.mattermost, MockServer::start().await);
        (dir, mattermost)
    }

    /// POSTs a Teams activity with an `Authorization` header (or none) to `path`.
    pub async fn post_teams(
        &self,
        path: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_vec());
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request.send().await.expect("chatrun answers")
    }

    /// Mentions the bot in Teams with `text` as message `id`, through the `platform-team`
    /// webhook's route `/hooks/teams`, signed with its secret.
    pub async fn mention_teams(&self, id: &str, text: &str) -> reqwest::Response {
        let body = teams_activity(id, text);
        self.post_teams(
            "/hooks/teams",
            Some(&teams_signature(TEAMS_TOKEN, &body)),
            &body,
        )
        .await
    }

    /// Waits until the fake Workflows server has received `n` requests.
    pub async fn cards(&self, n: usize) -> Vec<Request> {
        wait_for(|| async {
            let cards = self.workflows.received_requests().await.unwrap_or_default();
            (cards.len() >= n).then_some(cards)
        })
        .await
    }

    /// The fields Mattermost sends, for `text` in post `post_id`.
    pub fn payload(&self, text: &str, post_id: &str) -> Vec<(&'static str, String)> {
        vec![
            ("channel_id", "chan0000000000000000000000".into()),
            ("channel_name", "ci-builds".into()),
            ("file_ids", String::new()),
            ("post_id", post_id.into()),
            ("team_domain", "engineering".into()),
            ("team_id", "team0000000000000000000000".into()),
            ("text", text.into()),
            // Now, in seconds as in form bodies: an older one is refused (replay_window).
            ("timestamp", (chatrun::store::now_ms() / 1000).to_string()),
            ("token", TOKEN.into()),
            (
                "trigger_word",
                text.split_whitespace().next().unwrap_or("").into(),
            ),
            ("user_id", "alice0000000000000000000aa".into()),
            ("user_name", "alice".into()),
        ]
    }

    /// POSTs a form-encoded outgoing webhook.
    pub async fn post_form(&self, fields: &[(&str, String)]) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/hooks/mattermost", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap())
            .send()
            .await
            .expect("chatrun answers")
    }

    /// Sends `text` as Mattermost user `user` (id `<user>-id`) and returns the reply text.
    pub async fn say(&self, user: &str, text: &str, post_id: &str) -> String {
        let mut fields = self.payload(text, post_id);
        for field in fields.iter_mut() {
            match field.0 {
                "user_name" => field.1 = user.into(),
                "user_id" => field.1 = format!("{user}-id"),
                _ => {}
            }
        }
        let reply: serde_json::Value = self.post_form(&fields).await.json().await.unwrap();
        reply["text"].as_str().unwrap_or_default().to_string()
    }

    /// Sends `text` as post `post_id`, form-encoded, and returns the reply JSON.
    pub async fn trigger(&self, text: &str, post_id: &str) -> serde_json::Value {
        let response = self.post_form(&self.payload(text, post_id)).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// GETs a page.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .expect("chatrun answers")
    }

    /// Waits until the first step of run `id` is running.
    pub async fn first_step_running(&self, id: i64) {
        wait_for(|| async {
            let steps = self.store.steps(RunId(id)).await.unwrap();
            (steps.first()?.status == chatrun::domain::StepStatus::Running).then_some(())
        })
        .await;
    }

    /// Waits until run `id` is finished.
    pub async fn finished_run(&self, id: i64) -> RunRow {
        wait_for(|| async {
            let run = self.store.get_run(RunId(id)).await.unwrap()?;
            run.status.is_finished().then_some(run)
        })
        .await
    }

    /// Waits until the fake Mattermost has received `n` result posts and returns them.
    pub async fn posts(&self, n: usize) -> Vec<Request> {
        wait_for(|| async {
            let posts: Vec<Request> = self
                .mattermost
                .received_requests()
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/api/v4/posts")
                .collect();
            (posts.len() >= n).then_some(posts)
        })
        .await
    }
}

/// Polls `check` until it gives a value, failing the test after the deadline.
pub async fn wait_for<T, F, Fut>(check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_within(DEADLINE, check).await
}

/// [`wait_for`], with another deadline.
pub async fn wait_for_within<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The JSON body of a request the fake Mattermost received.
pub fn body(request: &Request) -> serde_json::Value {
    serde_json::from_slice(&request.body).unwrap()
}

/// `HMAC <base64(HMAC-SHA256(base64-decoded token, body))>`, as Teams signs.
pub fn teams_signature(token: &str, body: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(token)
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(body);
    format!(
        "HMAC {}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The current time as Teams writes an activity's `timestamp`.
pub fn teams_now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A signed request body of the protocol notes (`tests/fixtures/teams/`) as Teams would send
/// it now: its `timestamp` made current (the same length, every other byte unchanged) and
/// signed again with `platform-team`'s token. Returns the body and its `Authorization`.
pub fn fresh_teams(sample: &[u8]) -> (Vec<u8>, String) {
    let text = std::str::from_utf8(sample).unwrap();
    let start = text.find(r#""timestamp":""#).unwrap() + r#""timestamp":""#.len();
    let end = start + text[start..].find('"').unwrap();
    let now = teams_now();
    assert_eq!(
        now.len(),
        end - start,
        "same length as the sample's timestamp"
    );
    let body = format!("{}{now}{}", &text[..start], &text[end..]).into_bytes();
    let authorization = teams_signature(TEAMS_TOKEN, &body);
    (body, authorization)
}

/// A Teams activity mentioning the webhook with `text`, as message `id`, sent now.
pub fn teams_activity(id: &str, text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "message", "id": id, "timestamp": teams_now(),
        "channelId": "msteams",
        "from": {"id": "29:user", "name": "Ada Lovelace", "aadObjectId": "3a7c9e21-aad"},
        "conversation": {"isGroup": true, "id": format!("19:chan@thread.tacv2;messageid={id}")},
        "recipient": null, "textFormat": "plain", "locale": null,
        "text": format!("<at>BuildBot</at>&nbsp;{text}\n"),
        "channelData": {"teamsChannelId": "19:chan@thread.tacv2", "teamsTeamId": "19:team@thread.tacv2",
            "channel": {"id": "19:chan@thread.tacv2"}, "team": {"id": "19:team@thread.tacv2"},
            "tenant": {"id": "tenant"}}
    }))
    .unwrap()
}

/// Opens the database a stopped chatrun left in `dir`.
pub async fn open_store(dir: &std::path::Path) -> Store {
    Store::connect(&format!("sqlite://{}/chatrun.db", dir.display()))
        .await
        .unwrap()
}
