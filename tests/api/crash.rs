//! Crash safety, tested on the real binary: a burst of triggers while chatrun is killed with
//! SIGKILL at random moments and restarted, with a Mattermost that answers some posts with 500
//! and 429. At the end every acknowledged trigger has exactly one run, every run is finished,
//! every result reached the fake Mattermost exactly once, in the trigger's thread, and no
//! process of a killed run is left, and no run was executed more often than it was claimed (its
//! step writes its number to a file). Three variants: a Mattermost that works, one whose channel
//! the bot cannot search (403), and one that is down as the first triggers come; and a fourth on
//! Postgres: two chatruns on one database, the triggers sent alternately to each, one of them
//! killed and restarted while the other goes on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chatrun::domain::RunId;
use chatrun::store::{RunFilter, Store};
use serde_json::{Value, json};

use crate::helpers::{TOKEN, wait_for_within};

/// Distinct triggers in the burst (on one SQLite chatrun; [`SHARED_TRIGGERS`] on two sharing
/// Postgres).
const TRIGGERS: usize = 400;
/// Distinct triggers in the burst sent to two instances sharing Postgres.
const SHARED_TRIGGERS: usize = 500;
/// SIGKILLs during the burst.
const KILLS: usize = 5;
/// Marks the step processes of this test in their environment.
const MARKER: &str = "CHATRUN_CRASH_TEST";

/// What the fake Mattermost does besides working.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trouble {
    /// One post in eight is answered 500, one in eight 429, before it is made.
    Faults,
    /// As `Faults`, and the bot may not read the channel: every search gets 403.
    NoSearch,
    /// As `Faults`, and for the first seconds every request gets 503 (the trigger look-ups
    /// included: the results' threads are settled later).
    DownAtFirst,
}

/// Plays Mattermost's REST API: knows every trigger post as a root post, creates posts
/// (dropping a repeated `pending_post_id` within 30 s, as Mattermost does), lists a channel's
/// posts a page at a time, newest first.
#[derive(Clone)]
struct FakeMattermost {
    posts: Arc<Mutex<Vec<Value>>>,
    pending: Arc<Mutex<HashMap<String, (Value, Instant)>>>,
    trouble: Trouble,
    started: Instant,
    requests: Arc<Mutex<u64>>,
    /// Posts answered with the post already made for their `pending_post_id`.
    dropped: Arc<Mutex<u64>>,
}

impl FakeMattermost {
    fn new(trouble: Trouble) -> Self {
        Self {
            posts: Arc::default(),
            pending: Arc::default(),
            trouble,
            started: Instant::now(),
            requests: Arc::default(),
            dropped: Arc::default(),
        }
    }

    async fn start(self) -> SocketAddr {
        let app = Router::new()
            .route("/api/v4/posts", post(create_post))
            .route("/api/v4/posts/{id}", get(trigger_post))
            .route("/api/v4/channels/{channel}/posts", get(channel_posts))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn posts(&self) -> Vec<Value> {
        self.posts.lock().unwrap().clone()
    }

    /// Down, for [`Trouble::DownAtFirst`], during its first seconds.
    fn down(&self) -> bool {
        self.trouble == Trouble::DownAtFirst && self.started.elapsed() < Duration::from_secs(4)
    }

    /// The fault this request gets, if any: counted over every request.
    fn fault(&self) -> Option<StatusCode> {
        let mut n = self.requests.lock().unwrap();
        *n += 1;
        match *n % 8 {
            3 => Some(StatusCode::INTERNAL_SERVER_ERROR),
            6 => Some(StatusCode::TOO_MANY_REQUESTS),
            _ => None,
        }
    }
}

fn error(status: StatusCode) -> (StatusCode, Json<Value>) {
    (status, Json(json!({"message": "try again"})))
}

async fn trigger_post(
    State(fake): State<FakeMattermost>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    if fake.down() {
        return error(StatusCode::SERVICE_UNAVAILABLE);
    }
    (StatusCode::OK, Json(json!({"id": id, "root_id": ""})))
}

async fn create_post(
    State(fake): State<FakeMattermost>,
    Json(mut post): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if fake.down() {
        return error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if let Some(status) = fake.fault() {
        return error(status);
    }
    let pending_id = post["pending_post_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut pending = fake.pending.lock().unwrap();
    if let Some((made, at)) = pending.get(&pending_id)
        && at.elapsed() < Duration::from_secs(30)
    {
        *fake.dropped.lock().unwrap() += 1;
        return (StatusCode::CREATED, Json(made.clone()));
    }
    let mut posts = fake.posts.lock().unwrap();
    post["id"] = json!(format!("post{:022}", posts.len()));
    post["create_at"] = json!(chatrun::store::now_ms());
    posts.push(post.clone());
    if !pending_id.is_empty() {
        pending.insert(pending_id, (post.clone(), Instant::now()));
    }
    (StatusCode::CREATED, Json(post))
}

async fn channel_posts(
    State(fake): State<FakeMattermost>,
    Path(channel): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    if fake.down() {
        return error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if fake.trouble == Trouble::NoSearch {
        return error(StatusCode::FORBIDDEN);
    }
    let param = |name: &str, default: usize| {
        query
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (page, per_page) = (param("page", 0), param("per_page", 60));
    let posts: Vec<Value> = fake
        .posts()
        .into_iter()
        .rev()
        .filter(|p| p["channel_id"] == channel.as_str())
        .skip(page * per_page)
        .take(per_page)
        .collect();
    let order: Vec<Value> = posts.iter().map(|p| p["id"].clone()).collect();
    let by_id: serde_json::Map<String, Value> = posts
        .into_iter()
        .map(|p| (p["id"].as_str().unwrap_or_default().to_string(), p))
        .collect();
    (
        StatusCode::OK,
        Json(json!({ "order": order, "posts": by_id })),
    )
}

/// A chatrun process under test, restarted on the same port, folder and database.
struct Server {
    dir: std::path::PathBuf,
    /// Its configuration file in `dir`.
    config: String,
    child: Option<tokio::process::Child>,
    starts: usize,
}

impl Server {
    async fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(
            self.dir
                .join(format!("{}-{}.log", self.config, self.starts)),
        )
        .unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatrun"))
            .args(["serve", "--config", &self.config])
            .current_dir(&self.dir)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the chatrun binary starts");
        self.child = Some(child);
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    /// Whether the process has exited (and was reaped).
    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().ok().flatten().is_some())
    }

    /// SIGTERM, and the exit status.
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        child.wait().await.unwrap()
    }
}

fn random_below(n: u64) -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    u64::from_le_bytes(bytes) % n
}

/// A form-encoded outgoing webhook for trigger `i`, sent now.
fn trigger_body(i: usize) -> String {
    // One in 25 asks for a step that runs until the job's timeout, so that kills find steps
    // running, and what a killed chatrun leaves would outlive the test.
    let (job, secs) = match i % 25 {
        0 => ("work", "300"),
        1 => ("again", "300"),
        n if n % 2 == 0 => ("work", "0.1"),
        _ => ("again", "0.1"),
    };
    let text = format!("#{job} {secs}");
    serde_urlencoded::to_string([
        ("channel_id", "chan0000000000000000000000"),
        ("channel_name", "ci-builds"),
        ("file_ids", ""),
        ("post_id", &format!("crash{i:021}")),
        ("team_domain", "engineering"),
        ("team_id", "team0000000000000000000000"),
        ("text", &text),
        ("timestamp", &(chatrun::store::now_ms() / 1000).to_string()),
        ("token", TOKEN),
        ("trigger_word", &format!("#{job}")),
        ("user_id", &format!("user{:022}", i % 7)),
        ("user_name", &format!("user{}", i % 7)),
    ])
    .unwrap()
}

/// Step processes of this test still alive (not zombies).
fn leftover_processes(marker: &str) -> Vec<i32> {
    let needle = format!("{MARKER}={marker}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        })
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                !stat
                    .rsplit_once(')')
                    .is_some_and(|(_, s)| s.trim_start().starts_with('Z'))
            })
        })
        .collect()
}

/// Rounds of each variant in one test run: a loss that shows once in a while still shows.
const ROUNDS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_triggers_survive_sigkill_with_one_run_and_one_threaded_reply_each() {
    for _ in 0..ROUNDS {
        burst(Trouble::Faults, None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_reply_arrives_once_when_the_channel_cannot_be_searched() {
    for _ in 0..ROUNDS {
        burst(Trouble::NoSearch, None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_reply_arrives_once_in_its_thread_when_mattermost_is_down_as_triggers_come() {
    for _ in 0..ROUNDS {
        burst(Trouble::DownAtFirst, None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_postgres_lose_nothing_while_one_is_killed_again_and_again() {
    let Some(url) = crate::throwaway_postgres::database() else {
        return;
    };
    burst(Trouble::Faults, Some(&url)).await;
}

/// A port below the ephemeral range (32768 and up): while a chatrun is down between a kill and
/// its restart, no other test's socket or outgoing connection can be given its port. Never one
/// handed out before in this process: another burst's chatrun may be down on it just now.
fn fixed_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap();
    let port = (0..100)
        .map(|_| 20_000 + u16::try_from(random_below(10_000)).unwrap())
        .find(|port| {
            !given.contains(port) && std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok()
        })
        .expect("a free port below the ephemeral range");
    given.insert(port);
    port
}

/// The burst on one chatrun with its SQLite file, or (`shared`: a Postgres URL) on two chatruns
/// sharing that database, of which the first is the one killed.
async fn burst(trouble: Trouble, shared: Option<&str>) {
    let triggers = if shared.is_some() {
        SHARED_TRIGGERS
    } else {
        TRIGGERS
    };
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("{}-{trouble:?}", std::process::id());
    let fake = FakeMattermost::new(trouble);
    let mattermost = fake.clone().start().await;
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    let marks = dir.path().join("executed.txt");
    let job = |retry: bool| {
        format!(
            "retry_interrupted = {retry}\nconcurrency = 8\nqueue_limit = 0\ntimeout = \"4s\"\n\
             [params.secs]\nchoices = [\"0.1\", \"300\"]\npositional = 1\n\
             [[steps]]\nname = \"Work\"\n\
             run = [\"sh\", \"-c\", \"echo $CHATRUN_RUN_ID >> '{marks}'; exec sleep $1\", \"sh\", \"{{secs}}\"]\n\
             env = {{ {MARKER} = \"{marker}\" }}\n",
            marks = marks.display()
        )
    };
    std::fs::write(dir.path().join("jobs/work.toml"), job(false)).unwrap();
    std::fs::write(dir.path().join("jobs/again.toml"), job(true)).unwrap();
    // One chatrun, or two sharing Postgres: each its own port, data folder and log.
    let database_url = shared.map_or_else(
        || format!("sqlite://{}/data/chatrun.db", dir.path().display()),
        String::from,
    );
    let mut servers = Vec::new();
    for name in if shared.is_some() {
        &["a", "b"][..]
    } else {
        &["chatrun"][..]
    } {
        let port = fixed_port();
        let config = format!("{name}.toml");
        std::fs::write(
            dir.path().join(&config),
            format!(
                "listen = \"127.0.0.1:{port}\"\nworkers = 8\nrate_limit_per_minute = 0\n\
                 database_url = \"{database_url}\"\ndata_dir = \"data-{name}\"\n\
                 lease_secs = 3\nkill_grace_secs = 1\nshutdown_grace_secs = 1\n\
                 [mattermost]\ntokens = [\"{TOKEN}\"]\nurl = \"http://{mattermost}\"\n\
                 bot_token = \"bot-token-for-the-crash-test\"\nbot_user_id = \"bot00000000000000000000000\"\n\
                 [outbox]\nretry_base_ms = 50\nretry_max_secs = 1\n"
            ),
        )
        .unwrap();
        let mut server = Server {
            dir: dir.path().to_path_buf(),
            config,
            child: None,
            starts: 0,
        };
        server.start().await;
        servers.push((server, format!("http://127.0.0.1:{port}")));
    }
    let bases: Vec<String> = servers.iter().map(|(_, base)| base.clone()).collect();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let healthy = |base: String| {
        let client = client.clone();
        async move {
            let ok = client.get(format!("{base}/healthz")).send().await;
            ok.is_ok_and(|r| r.status().is_success()).then_some(())
        }
    };
    for base in &bases {
        wait_for_within(Duration::from_secs(30), || healthy(base.clone())).await;
    }

    // The burst: 10 senders, each trigger sent until it is acknowledged (as a chat server or
    // a user would send it again), paced so that the kills fall in the middle of it. With two
    // instances, the triggers go alternately to each, and a trigger sent again goes to the
    // other (as a load balancer would send it).
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..10)
        .map(|sender| {
            let (client, bases, acked, refused) = (
                client.clone(),
                bases.clone(),
                acked.clone(),
                refused.clone(),
            );
            tokio::spawn(async move {
                for i in (sender..triggers).step_by(10) {
                    for attempt in 0.. {
                        let base = &bases[(i + attempt) % bases.len()];
                        let sent = client
                            .post(format!("{base}/hooks/mattermost"))
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(trigger_body(i))
                            .send()
                            .await;
                        match sent {
                            Ok(response) if response.status() == 200 => {
                                let ack: Value = response.json().await.unwrap();
                                let text = ack["text"].as_str().unwrap_or_default().to_string();
                                assert!(text.contains("Queued run"), "{text}");
                                acked.lock().unwrap().insert(format!("crash{i:021}"));
                                break;
                            }
                            Ok(response) => {
                                // 503 while a shutdown or a full disk: worth sending again.
                                let status = response.status();
                                assert!(status.is_server_error(), "trigger {i}: {status}");
                                refused.lock().unwrap().push(status);
                            }
                            Err(_) => {} // chatrun is down: send again once it is back
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(80)).await;
                }
            })
        })
        .collect();

    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300 + random_below(900))).await;
        let (server, base) = &mut servers[0];
        server.kill().await;
        server.start().await;
        // As wait_for_within, but a restart that does not come up shows its log, and what
        // held its port when that was the trouble.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut held = String::new();
        while healthy(base.clone()).await.is_none() {
            let log = std::fs::read_to_string(
                dir.path()
                    .join(format!("{}-{}.log", server.config, server.starts)),
            )
            .unwrap_or_default();
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "chatrun did not answer within 30 s of its restart; its log:\n{log}\n{held}"
                );
            }
            // Seen once in a while on CI: the port still taken just after the kill. What
            // holds it is kept for the failure message, and chatrun is started again.
            if server.exited() && log.contains("Address already in use") {
                let port = base.rsplit(':').next().unwrap_or_default();
                let sockets = std::process::Command::new("ss")
                    .args(["-tanp"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                held = sockets
                    .lines()
                    .filter(|line| line.contains(&format!(":{port} ")))
                    .collect::<Vec<_>>()
                    .join("\n");
                eprintln!("port {port} still taken after the kill:\n{held}");
                server.start().await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for sender in senders {
        sender.await.unwrap();
    }

    // Every run finishes and every reply is settled (sent or given up).
    let store = Store::connect(&database_url).await.unwrap();
    let runs = wait_for_within(Duration::from_secs(120), || async {
        let runs = store
            .search_runs(&RunFilter::default(), None, 10_000)
            .await
            .unwrap();
        if !runs.iter().all(|r| r.status.is_finished()) {
            return None;
        }
        for run in &runs {
            let deliveries = store.deliveries(run.run_id).await.unwrap();
            if deliveries.is_empty() || deliveries.iter().any(|d| d.status == "pending") {
                return None;
            }
        }
        Some(runs)
    })
    .await;

    // Exactly one run per acknowledged trigger (and none for triggers never sent).
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), triggers);
    let by_message: BTreeMap<&str, Vec<RunId>> = runs.iter().fold(BTreeMap::new(), |mut m, r| {
        m.entry(r.message_id.as_str())
            .or_insert_with(Vec::new)
            .push(r.run_id);
        m
    });
    for post_id in &acked {
        assert_eq!(
            by_message.get(post_id.as_str()).map(Vec::len),
            Some(1),
            "{post_id}"
        );
    }
    assert_eq!(runs.len(), acked.len());

    // Exactly one result post per run, in the trigger's thread; none given up.
    let posts = fake.posts();
    let run_number = regex::Regex::new(r"run #(\d+) ").unwrap();
    let mut results: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for post in &posts {
        let message = post["message"].as_str().unwrap_or_default();
        let id = run_number
            .captures(message)
            .and_then(|c| c[1].parse::<i64>().ok())
            .unwrap_or_else(|| panic!("a result post: {message}"));
        results.entry(id).or_default().push(post);
    }
    let mut maybe_twice = 0;
    for run in &runs {
        let deliveries = store.deliveries(run.run_id).await.unwrap();
        assert!(
            deliveries.iter().all(|d| d.status == "sent"),
            "run #{}: {deliveries:?}",
            run.run_id
        );
        maybe_twice += deliveries.iter().filter(|d| d.blind).count();
        let posted = results.get(&run.run_id.0).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            posted.len(),
            1,
            "run #{} was reported {} times",
            run.run_id,
            posted.len()
        );
        assert_eq!(
            posted[0]["root_id"].as_str(),
            Some(run.message_id.as_str()),
            "run #{}'s result is in its trigger's thread",
            run.run_id
        );
    }

    // No run executed more often than it was claimed, and every run that succeeded executed.
    let executed = std::fs::read_to_string(&marks).unwrap_or_default();
    let mut times: BTreeMap<i64, i64> = BTreeMap::new();
    for line in executed.lines() {
        *times.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    for run in &runs {
        let n = times.get(&run.run_id.0).copied().unwrap_or(0);
        assert!(
            n <= run.attempt,
            "run #{} executed {n} times in {} claims",
            run.run_id,
            run.attempt
        );
        if run.status.as_str() == "succeeded" {
            assert!(n >= 1, "run #{} succeeded without executing", run.run_id);
        }
    }

    // Nothing a killed chatrun started is still running (left alone, they would sleep for
    // minutes).
    wait_for_within(Duration::from_secs(5), || async {
        leftover_processes(&marker).is_empty().then_some(())
    })
    .await;

    let statuses = runs.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.status.as_str()).or_insert(0) += 1;
        m
    });
    let attempts = runs.iter().filter(|r| r.attempt > 1).count();
    let starts: usize = servers.iter().map(|(server, _)| server.starts).sum();
    eprintln!(
        "{trouble:?}{}: {triggers} triggers, {starts} chatrun starts, {} refusals: runs \
         {statuses:?}, {attempts} run again, {} result posts, {} repeats dropped by \
         pending_post_id, {maybe_twice} sent without knowing",
        if shared.is_some() {
            " on Postgres, two instances"
        } else {
            ""
        },
        refused.lock().unwrap().len(),
        posts.len(),
        fake.dropped.lock().unwrap()
    );
    assert!(statuses.get("succeeded").copied().unwrap_or(0) > triggers / 2);

    // A clean stop after all that: exit 0.
    store.close().await;
    for (server, _) in &mut servers {
        assert!(server.terminate().await.success());
    }
}
