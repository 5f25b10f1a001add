//! Remote agents: the real `chatrun agent` binary runs the steps of the jobs whose labels it
//! has, talking to chatrun over loopback HTTP; tokens are made with `chatrun agent-token`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use chatrun::domain::{RunId, RunStatus};
use serde_json::json;
use wiremock::MockServer;

use crate::helpers::{BUILD_JOB, TestApp, launch};

/// A job for agents with `label`: its step says which agent ran it.
fn job_on(label: &str) -> String {
    format!(
        r#"
runs_on = ["{label}"]
[[steps]]
name = "Where"
run = ["sh", "-c", "echo \"ran on $AGENT_MARK in $PWD\""]
"#
    )
}

/// A `chatrun agent` process, killed when dropped.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The configuration file the `chatrun` command line reads to reach `app`'s database.
fn config_file(app: &TestApp) -> std::path::PathBuf {
    let path = app.dir.path().join("cli.toml");
    let text = format!(
        "database_url = \"sqlite://{dir}/chatrun.db\"\njobs_dir = \"{dir}/jobs\"\ndata_dir = \"{dir}/data\"\n",
        dir = app.dir.path().display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `chatrun agent-token ARGS…` on `app`'s database: its exit status and what it printed.
fn agent_token(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let config = config_file(app);
    let output = Command::new(env!("CARGO_BIN_EXE_chatrun"))
        .arg("agent-token")
        .args(args)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A new token named `name`, as a user makes one.
fn new_token(app: &TestApp, name: &str) -> String {
    let (ok, token, err) = agent_token(app, &["create", name]);
    assert!(ok, "{err}");
    assert!(err.contains("shown this once"), "{err}");
    token.trim().to_string()
}

/// Starts `chatrun agent` for `app` with `token`, `name` and `labels`; its steps see
/// `AGENT_MARK=name` and run under `workdir`.
fn start_agent(
    app: &TestApp,
    token: &str,
    name: &str,
    labels: &str,
    workdir: &std::path::Path,
) -> AgentProcess {
    start_agent_at(&app.base, token, name, labels, workdir)
}

/// [`start_agent`], for the server at `server`.
fn start_agent_at(
    server: &str,
    token: &str,
    name: &str,
    labels: &str,
    workdir: &std::path::Path,
) -> AgentProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_chatrun"))
        .args([
            "agent", "--server", server, "--name", name, "--labels", labels,
        ])
        .arg("--workdir")
        .arg(workdir)
        .env("CHATRUN_AGENT_TOKEN", token)
        .env("AGENT_MARK", name)
        .env("RUST_LOG", "chatrun=warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    AgentProcess(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_goes_to_an_agent_with_its_jobs_labels_and_the_local_agent_runs_the_rest() {
    let (mac, linux, gpu) = (job_on("macos"), job_on("linux"), job_on("gpu"));
    let jobs = [
        ("build", BUILD_JOB),
        ("mac", mac.as_str()),
        ("lin", linux.as_str()),
        ("gpu", gpu.as_str()),
    ];
    let app = launch(
        tempfile::tempdir().unwrap(),
        MockServer::start().await,
        &jobs,
        "",
        None,
    )
    .await;
    let token = new_token(&app, "pool");
    let places = tempfile::tempdir().unwrap();
    let _mac = start_agent(&app, &token, "mac-1", "macos,arm64", places.path());
    let _linux = start_agent(&app, &token, "linux-1", "linux,x86_64", places.path());
    // Both have asked for work once.
    crate::helpers::wait_for(|| async {
        (app.store.agents().await.ok()?.len() == 2).then_some(())
    })
    .await;

    let mut acks = Vec::new();
    for (i, job) in ["mac", "lin", "build", "gpu"].iter().enumerate() {
        let reply = app
            .trigger(&format!("#{job}"), &format!("agentpost{i}"))
            .await;
        acks.push(reply["text"].as_str().unwrap().to_string());
    }
    // Nobody waits for a run that cannot start: the acknowledgement and the page say so.
    assert!(
        acks[3].contains("waiting for a build agent with the labels gpu: none is connected"),
        "{}",
        acks[3]
    );
    assert!(!acks[0].contains("none is connected"), "{}", acks[0]);
    let page = app.get("/runs/4").await.text().await.unwrap();
    assert!(
        page.contains("with the labels <code>gpu</code>: none is connected"),
        "{page}"
    );
    let on_mac = app.finished_run(1).await;
    assert_eq!(on_mac.status, RunStatus::Succeeded, "{:?}", on_mac.error);
    let places = places.path().display().to_string();
    assert!(
        on_mac
            .log_head
            .contains(&format!("ran on mac-1 in {places}")),
        "{}",
        on_mac.log_head
    );
    let on_linux = app.finished_run(2).await;
    assert!(
        on_linux.log_head.contains("ran on linux-1"),
        "{}",
        on_linux.log_head
    );
    // Jobs without `runs_on` stay with the server's own workers.
    let local = app.finished_run(3).await;
    assert_eq!(local.status, RunStatus::Succeeded);
    assert!(!local.log_head.contains("ran on"));
    // No agent has `gpu`: the run waits.
    let waiting = app.store.get_run(RunId(4)).await.unwrap().unwrap();
    assert_eq!(waiting.status, RunStatus::Queued);

    // The run page and the API say which agent ran a run.
    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(
        page.contains(r#"<dt>Agent</dt><dd><a href="/agents">mac-1</a>"#),
        "{page}"
    );
    let api: serde_json::Value = app.get("/api/runs/2").await.json().await.unwrap();
    assert_eq!(api["run"]["agent"], "linux-1");
    assert_eq!(
        app.get("/api/runs/3")
            .await
            .json::<serde_json::Value>()
            .await
            .unwrap()["run"]["agent"],
        serde_json::Value::Null
    );
    let page = app.get("/agents").await.text().await.unwrap();
    assert!(
        page.contains("mac-1") && page.contains("<code>arm64</code>"),
        "{page}"
    );

    // The agents are listed with their labels.
    let agents: serde_json::Value = app.get("/api/agents").await.json().await.unwrap();
    let listed: Vec<(String, serde_json::Value)> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_string(), a["labels"].clone()))
        .collect();
    assert_eq!(
        listed,
        [
            ("linux-1".to_string(), json!(["linux", "x86_64"])),
            ("mac-1".to_string(), json!(["macos", "arm64"])),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_valid_token_gets_work_and_an_agent_reports_only_on_the_runs_it_holds() {
    let mac = job_on("macos");
    let app = launch(
        tempfile::tempdir().unwrap(),
        MockServer::start().await,
        &[("mac", mac.as_str())],
        // A heartbeat is held for a third of the lease: 2 s here.
        "lease_secs = 6",
        None,
    )
    .await;
    let client = reqwest::Client::new();
    let claim = |token: Option<String>, name: &'static str| {
        let mut request = client
            .post(format!("{}/api/agent/claim", app.base))
            .header("chatrun-agent", name)
            .json(&json!({"labels": ["macos"], "version": "test"}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(claim(None, "a").await.unwrap().status(), 401);
    assert_eq!(
        claim(Some("chatrun_not_a_token".into()), "a")
            .await
            .unwrap()
            .status(),
        401
    );
    let (first, second) = (new_token(&app, "first"), new_token(&app, "second"));
    // A name in use is refused, and the list shows both (never the tokens).
    let (ok, _, err) = agent_token(&app, &["create", "first"]);
    assert!(!ok && err.contains("exists already"), "{err}");
    let (_, list, _) = agent_token(&app, &["list"]);
    assert!(list.contains("first") && list.contains("second") && !list.contains(&first));

    app.trigger("#mac", "tokenpost").await;
    let answer = claim(Some(first.clone()), "a").await.unwrap();
    assert_eq!(answer.status(), 200);
    let assignment: serde_json::Value = answer.json().await.unwrap();
    let (run, attempt) = (
        assignment["plan"]["run_id"].as_i64().unwrap(),
        assignment["plan"]["attempt"].as_i64().unwrap(),
    );
    let report = |token: &str, path: &str, body: serde_json::Value| {
        client
            .post(format!("{}/api/agent/runs/{run}/{path}", app.base))
            .header("chatrun-agent", "a")
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let finish = json!({
        "attempt": attempt,
        "result": {"status": "succeeded", "error": null, "log_head": "forged", "log_tail": "",
                   "log_bytes": 6, "log_lines": 1, "log_path": null, "finished_at": 1},
        "last_step": null,
        "cancelled_because": null,
    });
    // Another token's agent of the same name, and a stale attempt, are refused.
    let forged = report(&second, "finish", finish.clone()).await.unwrap();
    assert_eq!(forged.status(), 409);
    let mut stale = finish.clone();
    stale["attempt"] = json!(attempt - 1);
    assert_eq!(report(&first, "finish", stale).await.unwrap().status(), 409);
    let held = report(&first, "heartbeat", json!({"attempt": attempt}))
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    assert_eq!(
        held.json::<serde_json::Value>().await.unwrap()["renewal"],
        "held"
    );
    let run_row = app.store.get_run(RunId(run)).await.unwrap().unwrap();
    assert_eq!(
        run_row.status,
        RunStatus::Running,
        "nothing forged was stored"
    );

    // Revoked: refused from then on.
    let (ok, said, _) = agent_token(&app, &["revoke", "first"]);
    assert!(ok, "{said}");
    let refused = report(&first, "heartbeat", json!({"attempt": attempt}))
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let (_, list, _) = agent_token(&app, &["list"]);
    assert!(list.contains("revoked"), "{list}");
}

/// A job for agents with `linux` whose step starts a grandchild (`sleep`), writes its pid to
/// `grandchild.pid` in the step's folder, says "started" and waits.
const SLOW_ON_LINUX: &str = r#"
runs_on = ["linux"]
[[steps]]
name = "Slow"
run = ["sh", "-c", "sleep 300 & echo $! > grandchild.pid; echo started; wait"]
"#;

/// A chatrun with `SLOW_ON_LINUX` as `slow` and `extra` in its configuration; a token for its
/// agents; a folder for their steps.
async fn slow_app(extra: &str) -> (TestApp, String, tempfile::TempDir) {
    let app = launch(
        tempfile::tempdir().unwrap(),
        MockServer::start().await,
        &[("slow", SLOW_ON_LINUX)],
        extra,
        None,
    )
    .await;
    let token = new_token(&app, "pool");
    (app, token, tempfile::tempdir().unwrap())
}

/// The pid of the grandchild `SLOW_ON_LINUX` started in `folder`, once it has.
async fn grandchild(folder: &std::path::Path) -> i32 {
    let file = folder.join("grandchild.pid");
    crate::helpers::wait_for(|| async { std::fs::read_to_string(&file).ok()?.trim().parse().ok() })
        .await
}

/// Waits until process `pid` is gone.
async fn gone(pid: i32) {
    crate::helpers::wait_for(|| async {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_from_chat_stops_a_run_on_an_agent_grandchild_included_and_its_log_is_live() {
    let (app, token, folder) = slow_app("").await;
    let _agent = start_agent(&app, &token, "linux-1", "linux", folder.path());
    app.trigger("#slow", "slowpost").await;
    let pid = grandchild(folder.path()).await;
    // The output the agent streams is on the run page while the run goes.
    crate::helpers::wait_for(|| async {
        let page = app.get("/runs/1").await.text().await.ok()?;
        page.contains("started").then_some(())
    })
    .await;

    let reply = app.trigger("#ci cancel 1", "cancelpost").await;
    assert!(reply["text"].as_str().unwrap().contains("#1"), "{reply}");
    let run = app.finished_run(1).await;
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.error.as_deref(), Some("cancelled by alice"));
    gone(pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_run_is_interrupted_within_the_lease_and_its_next_start_kills_what_it_left()
{
    let (app, token, folder) = slow_app("lease_secs = 4").await;
    let mut agent = start_agent(&app, &token, "linux-1", "linux", folder.path());
    app.trigger("#slow", "slowpost").await;
    let pid = grandchild(folder.path()).await;

    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let run = app.finished_run(1).await;
    assert_eq!(run.status, RunStatus::Interrupted);
    let posts = app.posts(1).await;
    let said = crate::helpers::body(&posts[0]).to_string();
    assert!(said.contains("interrupted"), "{said}");
    // The killed agent's step ran on: the next agent started on this host stops it (another
    // test's agent may have got there first, which is as good).
    let _again = start_agent(&app, &token, "linux-1", "linux", folder.path());
    gone(pid).await;
}

/// A TCP proxy in front of `target` that can stop forwarding, as a network that cuts an agent
/// off: while the flag is set nothing passes either way, and what was held passes once it is
/// cleared. Its address, and the flag.
async fn cutting_proxy(target: std::net::SocketAddr) -> (String, Arc<AtomicBool>) {
    let cut = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cutting = cut.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::spawn(pump(in_read, out_write, cutting.clone()));
            tokio::spawn(pump(out_read, in_write, cutting.clone()));
        }
    });
    (format!("http://{addr}"), cut)
}

/// Copies `from` to `to`, holding what it read while `cut` is set.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        while cut.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cut_off_mid_run_loses_it_within_the_lease_and_stops_it_once_back() {
    let (app, token, folder) = slow_app("lease_secs = 4").await;
    let target = app.base.trim_start_matches("http://").parse().unwrap();
    let (through, cut) = cutting_proxy(target).await;
    let _agent = start_agent_at(&through, &token, "far", "linux", folder.path());
    app.trigger("#slow", "farpost").await;
    let pid = grandchild(folder.path()).await;

    cut.store(true, Ordering::SeqCst);
    let run = app.finished_run(1).await;
    assert_eq!(run.status, RunStatus::Interrupted);
    let said = crate::helpers::body(&app.posts(1).await[0]).to_string();
    assert!(said.contains("interrupted"), "{said}");
    // Back on the network, the agent learns the run is no longer its own and stops it.
    cut.store(false, Ordering::SeqCst);
    gone(pid).await;
    assert_eq!(
        app.store.get_run(RunId(1)).await.unwrap().unwrap().status,
        RunStatus::Interrupted,
        "its late result is not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_an_agent_of_one_instance_runs_what_another_acknowledged() {
    let Some(url) = crate::throwaway_postgres::database() else {
        return;
    };
    let linux = job_on("linux");
    let jobs = [("lin", linux.as_str())];
    let start = || async {
        launch(
            tempfile::tempdir().unwrap(),
            MockServer::start().await,
            &jobs,
            &format!("database_url = \"{url}\""),
            None,
        )
        .await
    };
    let (a, b) = (start().await, start().await);
    // A token stored through A's database, which B shares.
    let token = chatrun::domain::agent_token().unwrap();
    assert!(
        a.store
            .create_agent_token("pool", &chatrun::domain::sha256_hex(&token), 1)
            .await
            .unwrap()
    );
    let folder = tempfile::tempdir().unwrap();
    let _agent = start_agent(&a, &token, "linux-1", "linux", folder.path());
    crate::helpers::wait_for(|| async { (!b.store.agents().await.ok()?.is_empty()).then_some(()) })
        .await;

    // Acknowledged by B; the agent, long-polling A, is woken through the database.
    let reply = b.trigger("#lin", "pgagentpost").await;
    assert!(
        !reply["text"]
            .as_str()
            .unwrap()
            .contains("none is connected"),
        "{reply}"
    );
    let run = b.finished_run(1).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert!(run.log_head.contains("ran on linux-1"), "{}", run.log_head);
    assert_eq!(run.agent.as_deref(), Some("linux-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_its_local_agent_leaves_every_run_to_the_agents() {
    let app = launch(
        tempfile::tempdir().unwrap(),
        MockServer::start().await,
        &[("build", BUILD_JOB)],
        "local_agent = false",
        None,
    )
    .await;
    // No agent yet: even a job without `runs_on` waits, and says so.
    let reply = app.trigger("#build", "nolocal1").await;
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains("waiting for a build agent: none is connected"),
        "{text}"
    );
    let token = new_token(&app, "pool");
    let folder = tempfile::tempdir().unwrap();
    let _agent = start_agent(&app, &token, "any-1", "linux", folder.path());
    let run = app.finished_run(1).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.agent.as_deref(), Some("any-1"));
}
