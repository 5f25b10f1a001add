//! Load generator for the webhook endpoints (issue #8, figures 1 and 2).
//!
//! Drives an HTTP server over real TCP with N keep-alive connections. Every request is a
//! distinct, correctly authenticated trigger: a Mattermost form (token, a fresh `timestamp`,
//! a unique `post_id`) or a Teams activity (a fresh `timestamp`, a unique `id`, the HMAC
//! computed over each body). Closed loop (each connection sends its next request when the
//! last one is answered) by default; open loop with `--rate`, where request i is due at
//! `start + i / rate` and its latency counts from that due time, so a server that stalls is
//! charged for the requests it delayed (no coordinated omission).
//!
//! With no arguments it runs the whole comparison and prints Markdown tables:
//! - a bare axum route answering a constant JSON acknowledgement (the ceiling), in process;
//! - adnanh/webhook (`webhook` on PATH, else skipped) with a hook that checks the token
//!   (Mattermost) or an HMAC-SHA256 of the body (Teams) and starts `true` without waiting;
//! - chatrun itself (`CHATRUN_BIN`, default the release binary cargo built with this bench),
//!   a job `build` running `true` (concurrency 4, no queue limit, 4 workers, no rate limit).
//!
//! Figure 1: acknowledged triggers per second, closed loop. Figure 2: ack latency at a steady
//! rate (500/s), then again while two CPU-bound processes spin (for chatrun: two runs of a
//! job `burn`, so the job's priority shows; for the others: two plain `sh` loops).
//!
//! With `postgres` (issue #21): chatrun on Postgres next to chatrun on SQLite, one instance
//! each, and two instances sharing one Postgres next to one (the load split between them), on
//! a cluster the bench starts from the local Postgres binaries (`tests/support/postgres.rs`),
//! syncing its commits as Postgres does by default.
//!
//! ```text
//! cargo bench --bench load                       the whole comparison
//! cargo bench --bench load -- postgres           Postgres next to SQLite
//! cargo bench --bench load -- --url http://127.0.0.1:8080/hooks/mattermost \
//!     --token TOKEN [--teams-secret BASE64] [--platform mattermost|teams] \
//!     [--connections 32] [--duration 10 | --requests 50000] [--rate 500] [--warmup 2]
//! ```
//! Each comparison runs in rounds (`LOAD_ROUNDS`, default 3), each measuring the three servers
//! in turn on fresh servers; the tables give the median over the rounds and the rounds' own
//! rates and p99s, so one noisy minute of a shared machine does not decide a figure.
//!
//! Environment for the comparison: `LOAD_DURATION` (seconds per phase, default 10),
//! `LOAD_CONNECTIONS` (default 32), `LOAD_RATE` (default 500), `LOAD_ROUNDS` (default 3),
//! `CHATRUN_BIN`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/postgres.rs"]
mod throwaway_postgres;
use common::{Server, TOKEN, base36, free_port, wait_for_port};

/// 32 bytes, base64: the Teams security token of the chatrun under test.
const TEAMS_SECRET: &str = "bG9hZC10ZXN0LXNlY3JldC1vZi0zMi1ieXRlcy4uLi4=";
/// Key of webhook's `payload-hmac-sha256` rule (it signs in hex with a raw key).
const WEBHOOK_SECRET: &str = "load-test-hmac-key";

// ---------------------------------------------------------------------------------------------
// Requests

/// Which trigger a request carries, and how it is authenticated.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Platform {
    Mattermost,
    /// Teams activity signed as Teams does: `Authorization: HMAC <base64>`.
    Teams,
    /// Teams activity signed for adnanh/webhook: `X-Signature: sha256=<hex>`.
    TeamsHex,
}

/// Builds distinct, authenticated trigger requests.
struct Triggers {
    platform: Platform,
    uri: hyper::Uri,
    host: String,
    token: String,
    /// Decoded HMAC key (Teams) or the raw key (webhook's hex signature).
    key: Vec<u8>,
    /// Distinguishes this process's ids from an earlier run against the same server.
    tag: String,
    next: AtomicU64,
}

impl Triggers {
    fn new(platform: Platform, url: &str, token: &str, secret: &str) -> Self {
        let uri: hyper::Uri = url.parse().expect("a valid URL");
        let host = uri.authority().expect("a URL with a host").to_string();
        let key = match platform {
            Platform::Teams => STANDARD.decode(secret).expect("a base64 Teams secret"),
            _ => secret.as_bytes().to_vec(),
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos();
        Triggers {
            platform,
            uri,
            host,
            token: token.to_owned(),
            key,
            tag: base36(nanos as u64, 12),
            next: AtomicU64::new(0),
        }
    }

    fn request(&self) -> hyper::Request<Full<Bytes>> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}", self.tag, base36(n, 14)); // 26 chars [a-z0-9]
        let builder = hyper::Request::post(self.uri.clone()).header("host", &self.host);
        let (builder, body) = match self.platform {
            Platform::Mattermost => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("a clock after 1970")
                    .as_secs()
                    .to_string();
                let body = serde_urlencoded::to_string([
                    ("channel_id", "chan0000000000000000000000"),
                    ("channel_name", "ci-builds"),
                    ("file_ids", ""),
                    ("post_id", &id),
                    ("team_domain", "engineering"),
                    ("team_id", "team0000000000000000000000"),
                    ("text", "#build"),
                    ("timestamp", &now),
                    ("token", &self.token),
                    ("trigger_word", "#build"),
                    ("user_id", "alice0000000000000000000aa"),
                    ("user_name", "alice"),
                ])
                .expect("a form");
                let builder = builder.header("content-type", "application/x-www-form-urlencoded");
                (builder, body.into_bytes())
            }
            Platform::Teams | Platform::TeamsHex => {
                let body = serde_json::to_vec(&serde_json::json!({
                    "type": "message", "id": id,
                    "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                    "channelId": "msteams",
                    "from": {"id": "29:user", "name": "Ada Lovelace", "aadObjectId": "3a7c9e21-aad"},
                    "conversation": {"isGroup": true, "id": format!("19:chan@thread.tacv2;messageid={id}")},
                    "textFormat": "plain",
                    "text": "<at>BuildBot</at>&nbsp;build\n",
                    "entities": [{"type": "mention", "text": "<at>BuildBot</at>",
                        "mentioned": {"id": "28:bot", "name": "BuildBot"}}],
                    "channelData": {"teamsChannelId": "19:chan@thread.tacv2",
                        "teamsTeamId": "19:team@thread.tacv2", "tenant": {"id": "tenant"}}
                }))
                .expect("JSON");
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key)
                    .expect("HMAC takes any key length");
                mac.update(&body);
                let digest = mac.finalize().into_bytes();
                let builder = builder.header("content-type", "application/json");
                let builder = if self.platform == Platform::Teams {
                    builder.header("authorization", format!("HMAC {}", STANDARD.encode(digest)))
                } else {
                    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                    builder.header("x-signature", format!("sha256={hex}"))
                };
                (builder, body)
            }
        };
        builder
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request")
    }
}

// ---------------------------------------------------------------------------------------------
// The generator

/// How one measurement runs.
#[derive(Clone, Debug)]
struct Load {
    connections: usize,
    /// Stop after this long (measured part, after the warm-up) ...
    duration: Duration,
    /// ... or after this many measured requests, whichever comes first.
    requests: Option<u64>,
    /// Requests per second over all connections (open loop); None: closed loop.
    rate: Option<f64>,
    /// Requests in the first `warmup` are sent but not counted.
    warmup: Duration,
}

/// What one measurement saw.
#[derive(Debug, Default)]
struct Figures {
    ok: u64,
    failed: u64,
    /// 2xx answers during the warm-up (not in the figures).
    warmup_ok: u64,
    elapsed: Duration,
    /// Latency of every counted 2xx answer, in microseconds, sorted.
    micros: Vec<u64>,
    first_failure: Option<String>,
}

impl Figures {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// The p-quantile latency in milliseconds.
    fn ms(&self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let i = ((self.micros.len() as f64 - 1.0) * p).round() as usize;
        self.micros[i] as f64 / 1000.0
    }
}

/// Drives `target` with `load` and returns what it measured.
async fn drive(target: Arc<Triggers>, addr: SocketAddr, load: Load) -> Figures {
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + load.warmup;
    let deadline = measure_from + load.duration;
    let index = Arc::new(AtomicU64::new(0));
    let counted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..load.connections {
        let (target, index, counted, load) =
            (target.clone(), index.clone(), counted.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            let mut figures = Figures::default();
            let mut sender = None;
            loop {
                let i = index.fetch_add(1, Ordering::Relaxed);
                let due = match load.rate {
                    Some(rate) => start + Duration::from_secs_f64(i as f64 / rate),
                    None => Instant::now().max(start),
                };
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let counts = due >= measure_from;
                if counts
                    && let Some(max) = load.requests
                    && counted.fetch_add(1, Ordering::Relaxed) >= max
                {
                    break;
                }
                let request = target.request();
                let sent_at = if load.rate.is_some() {
                    due
                } else {
                    Instant::now()
                };
                let outcome = send(&mut sender, addr, request).await;
                let latency = sent_at.elapsed();
                if !counts {
                    figures.warmup_ok += u64::from(outcome.is_ok());
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        figures.ok += 1;
                        figures.micros.push(latency.as_micros() as u64);
                    }
                    Err(why) => {
                        figures.failed += 1;
                        figures.first_failure.get_or_insert(why);
                    }
                }
            }
            figures
        }));
    }
    let mut all = Figures::default();
    for task in tasks {
        let figures = task.await.expect("a connection task");
        all.ok += figures.ok;
        all.failed += figures.failed;
        all.warmup_ok += figures.warmup_ok;
        all.micros.extend(figures.micros);
        if all.first_failure.is_none() {
            all.first_failure = figures.first_failure;
        }
    }
    // Until the last answer: a server that falls behind a steady rate answers late, and its
    // rate is what it answered, not what was sent.
    all.elapsed = Instant::now() - measure_from;
    all.micros.sort_unstable();
    all
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Sends one request on the connection, (re)connecting first when there is none; the answer
/// must be 2xx, its body is read to the end.
async fn send(
    sender: &mut Option<Sender>,
    addr: SocketAddr,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(), String> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (s, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        *sender = Some(s);
    }
    let s = sender.as_mut().expect("connected above");
    let result = async {
        s.ready().await.map_err(|e| format!("ready: {e}"))?;
        let response = s
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
        }
    }
    .await;
    if result.is_err() {
        *sender = None;
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Servers under test

/// The bare axum ceiling: a route that reads the body and answers a constant JSON
/// acknowledgement. Runs on its own runtime (two worker threads, like a server would).
fn start_axum() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("an address");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let app = axum::Router::new().fallback(axum::routing::post(|_body: Bytes| async {
                axum::Json(serde_json::json!({"text": "Queued build (run #1)."}))
            }));
            let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
            axum::serve(listener, app).await.expect("axum serves");
        });
    });
    addr
}

/// adnanh/webhook with two hooks equivalent to chatrun's job: `mattermost` checks the form's
/// token, `teams` an HMAC-SHA256 of the body; both start `true` and answer without waiting.
async fn start_webhook() -> Option<(Server, SocketAddr)> {
    let found = Command::new("webhook")
        .arg("-version")
        .stdout(Stdio::null())
        .status();
    if !found.is_ok_and(|s| s.success()) {
        return None;
    }
    let dir = common::Folder::new();
    let hook = |id: &str, rule: serde_json::Value| {
        serde_json::json!({
            "id": id,
            "execute-command": "/bin/true",
            "include-command-output-in-response": false,
            "response-message": "{\"text\":\"Queued build.\"}",
            "response-headers": [{"name": "Content-Type", "value": "application/json"}],
            "trigger-rule-mismatch-http-response-code": 401,
            "trigger-rule": {"match": rule}
        })
    };
    let hooks = serde_json::json!([
        hook(
            "mattermost",
            serde_json::json!({"type": "value", "value": TOKEN,
            "parameter": {"source": "payload", "name": "token"}})
        ),
        hook(
            "teams",
            serde_json::json!({"type": "payload-hmac-sha256", "secret": WEBHOOK_SECRET,
            "parameter": {"source": "header", "name": "X-Signature"}})
        ),
    ]);
    let file = dir.path().join("hooks.json");
    std::fs::write(&file, hooks.to_string()).expect("hooks.json is written");
    let addr = free_port();
    let log = dir.path().join("webhook.log");
    let mut child = Command::new("webhook")
        .arg("-hooks")
        .arg(&file)
        .args(["-ip", "127.0.0.1", "-port", &addr.port().to_string()])
        .stdout(std::fs::File::create(&log).expect("a log file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("webhook starts");
    wait_for_port(addr, &mut child, &log).await;
    Some((
        Server {
            child,
            dir,
            db: None,
        },
        addr,
    ))
}

/// What each run of `build` executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runs {
    /// `true`: every run is started, watched and finished while the triggers come, competing
    /// with them for the cores.
    True,
    /// `sleep 5`: the runs wait without using a core, so the figure shows the triggers' own
    /// cost with durable runs queued behind them.
    Sleep,
}

impl Runs {
    fn argv(self) -> &'static str {
        match self {
            Runs::True => "[\"true\"]",
            Runs::Sleep => "[\"sleep\", \"5\"]",
        }
    }
}

/// chatrun in a temporary folder: rate limit off, job `build` (`runs`, concurrency 4, no
/// queue limit), job `burn` (a CPU-bound shell loop, for figure 2), four workers.
async fn start_chatrun(runs: Runs) -> (Server, SocketAddr) {
    start_chatrun_on(None, runs).await
}

/// [`start_chatrun`] on `database_url` (Postgres) instead of a SQLite file of its own.
async fn start_chatrun_on(database_url: Option<&str>, runs: Runs) -> (Server, SocketAddr) {
    let build = format!(
        "description = \"load test\"\ntimeout = \"1m\"\nconcurrency = 4\nqueue_limit = 0\n\
         [[steps]]\nname = \"run\"\nrun = {}\n",
        runs.argv()
    );
    common::start_chatrun_on(
        database_url,
        &[
            ("build", build.as_str()),
            (
                "burn",
                "description = \"spins a CPU\"\ntimeout = \"5m\"\nconcurrency = 2\nqueue_limit = 0\n\
                 [[steps]]\nname = \"spin\"\nrun = [\"sh\", \"-c\", \"while :; do :; done\"]\n",
            ),
        ],
        "workers = 4",
        &format!("[[teams.webhooks]]\nname = \"load\"\nsecret = \"{TEAMS_SECRET}\"\n"),
    )
    .await
}

/// Runs stored in chatrun's database: every acknowledged trigger must be one.
async fn stored_runs(db: &Path) -> i64 {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .expect("the database opens");
    let (n,): (i64,) = sqlx::query_as("select count(*) from run where job = 'build'")
        .fetch_one(&pool)
        .await
        .expect("runs are counted");
    pool.close().await;
    n
}

/// Two CPU-bound loops outside any server (the burden for the baselines).
struct Burners(Vec<Child>);

impl Burners {
    fn start() -> Self {
        Burners(
            (0..2)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("sh starts")
                })
                .collect(),
        )
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The comparison

/// One row of a table: a target's figures in each round (none: it was skipped).
struct Row {
    name: &'static str,
    rounds: Vec<Figures>,
}

impl Row {
    fn new(name: &'static str) -> Self {
        Row {
            name,
            rounds: Vec::new(),
        }
    }

    /// The median over the rounds of what `figure` reads from each (NaN when skipped).
    fn median(&self, figure: impl Fn(&Figures) -> f64) -> f64 {
        median(self.rounds.iter().map(figure).collect())
    }
}

/// The middle value (the mean of the two middle ones for an even count); NaN for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// `values` formatted with `decimals`, each followed by `unit`, joined by ", ".
fn listed(values: impl IntoIterator<Item = f64>, decimals: usize, unit: &str) -> String {
    values
        .into_iter()
        .map(|v| format!("{v:.decimals$}{unit}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_row(row: &Row) {
    if row.rounds.is_empty() {
        println!("| {} | skipped (not on PATH) | | | | | | |", row.name);
        return;
    }
    let (ok, failed) = row
        .rounds
        .iter()
        .fold((0, 0), |(ok, failed), f| (ok + f.ok, failed + f.failed));
    println!(
        "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} / {} | {} | {} |",
        row.name,
        row.median(Figures::per_second),
        row.median(|f| f.ms(0.5)),
        row.median(|f| f.ms(0.99)),
        row.median(|f| f.ms(0.999)),
        ok,
        failed,
        listed(row.rounds.iter().map(Figures::per_second), 0, ""),
        listed(row.rounds.iter().map(|f| f.ms(0.99)), 2, ""),
    );
}

/// Prints the table of `rows`: each figure the median over the rounds, and by round the rate
/// and the p99. Then chatrun's ratios to each baseline: taken round by round (each round
/// measures the three within a minute of each other), their median and each.
fn print_table(title: &str, rows: &[Row]) {
    println!("\n{title}\n");
    println!(
        "| server | ack/s | p50 ms | p99 ms | p99.9 ms | ok / failed | ack/s by round | p99 ms by round |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        print_row(row);
    }
    for row in rows {
        if let Some(why) = row.rounds.iter().find_map(|f| f.first_failure.as_ref()) {
            println!("\n{} first failure: `{}`", row.name, why.trim());
        }
    }
    let get = |name: &str| rows.iter().find(|r| r.name == name && !r.rounds.is_empty());
    if let Some(chatrun) = get("chatrun") {
        let mut ratios = Vec::new();
        for base in ["bare axum", "webhook"] {
            if let Some(base_row) = get(base) {
                let by_round = |figure: fn(&Figures) -> f64| -> Vec<f64> {
                    chatrun
                        .rounds
                        .iter()
                        .zip(&base_row.rounds)
                        .map(|(c, b)| figure(c) / figure(b))
                        .collect()
                };
                let rate = by_round(Figures::per_second);
                let p99 = by_round(|f| f.ms(0.99));
                let rounds = if rate.len() > 1 {
                    format!(
                        " (by round {}; p99 {})",
                        listed(rate.iter().copied(), 2, "x"),
                        listed(p99.iter().copied(), 2, "x")
                    )
                } else {
                    String::new()
                };
                ratios.push(format!(
                    "chatrun/{base}: ack/s {:.2}x, p99 {:.2}x{rounds}",
                    median(rate),
                    median(p99),
                ));
            }
        }
        println!("\n{}", ratios.join("; "));
    }
}

/// Measures the three servers with one platform and one load, `rounds` times: each round
/// measures the three in turn, each on a fresh server, so that a noisy minute of a shared
/// machine falls on one round of each of them rather than on all of one's.
async fn compare(
    title: &str,
    platform: Platform,
    load: &Load,
    burn: bool,
    runs: Runs,
    rounds: usize,
) {
    let mut rows = [
        Row::new("bare axum"),
        Row::new("webhook"),
        Row::new("chatrun"),
    ];
    let axum = start_axum();
    let (mut acked, mut stored) = (0, 0);
    for _ in 0..rounds {
        rows[0]
            .rounds
            .push(drive_axum(axum, platform, load, burn).await);
        rows[1]
            .rounds
            .extend(drive_webhook(platform, load, burn).await);
        let (figures, runs) = drive_chatrun(platform, load, burn, runs).await;
        acked += figures.ok + figures.warmup_ok;
        stored += runs;
        rows[2].rounds.push(figures);
    }
    print_table(title, &rows);
    println!(
        "\nchatrun stored {stored} runs of `build` for the {acked} triggers it acknowledged \
         (warm-ups included, all rounds)"
    );
}

/// One measurement of the bare axum route at `addr`.
async fn drive_axum(addr: SocketAddr, platform: Platform, load: &Load, burn: bool) -> Figures {
    let burners = burn.then(Burners::start);
    let target = Triggers::new(
        platform,
        &format!("http://{addr}/hooks"),
        TOKEN,
        TEAMS_SECRET,
    );
    let figures = drive(Arc::new(target), addr, load.clone()).await;
    drop(burners);
    figures
}

/// One measurement of a fresh webhook (None when it is not installed).
async fn drive_webhook(platform: Platform, load: &Load, burn: bool) -> Option<Figures> {
    let (server, addr) = start_webhook().await?;
    let burners = burn.then(Burners::start);
    let (hook, platform) = match platform {
        Platform::Mattermost => ("mattermost", Platform::Mattermost),
        _ => ("teams", Platform::TeamsHex),
    };
    let url = format!("http://{addr}/hooks/{hook}");
    let target = Triggers::new(platform, &url, TOKEN, WEBHOOK_SECRET);
    let figures = drive(Arc::new(target), addr, load.clone()).await;
    drop(burners);
    drop(server);
    Some(figures)
}

/// One measurement of a fresh chatrun, and the runs of `build` it stored.
async fn drive_chatrun(platform: Platform, load: &Load, burn: bool, runs: Runs) -> (Figures, i64) {
    let (server, addr) = start_chatrun(runs).await;
    if burn {
        // Two runs of `burn` take two of the four workers and spin until chatrun stops.
        let burn = Triggers::new(
            Platform::Mattermost,
            &format!("http://{addr}/hooks/mattermost"),
            TOKEN,
            TEAMS_SECRET,
        );
        for _ in 0..2 {
            let mut request = burn.request();
            let body = String::from_utf8(
                request
                    .body_mut()
                    .collect()
                    .await
                    .expect("a body")
                    .to_bytes()
                    .to_vec(),
            )
            .expect("UTF-8")
            .replace("%23build", "%23burn");
            *request.body_mut() = Full::new(Bytes::from(body));
            send(&mut None, addr, request)
                .await
                .expect("chatrun accepts #burn");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let path = match platform {
        Platform::Mattermost => "/hooks/mattermost",
        _ => "/hooks/teams",
    };
    let target = Triggers::new(
        platform,
        &format!("http://{addr}{path}"),
        TOKEN,
        TEAMS_SECRET,
    );
    let figures = drive(Arc::new(target), addr, load.clone()).await;
    let stored = stored_runs(server.db.as_deref().expect("chatrun has a database")).await;
    drop(server);
    (figures, stored)
}

/// The loads of the comparisons, from `LOAD_DURATION`, `LOAD_CONNECTIONS`, `LOAD_RATE` and
/// `LOAD_ROUNDS`.
struct Loads {
    seconds: f64,
    connections: usize,
    rate: f64,
    rounds: usize,
    /// Closed loop, `connections` connections.
    closed: Load,
    /// A steady `rate`.
    steady: Load,
}

impl Loads {
    fn from_env() -> Self {
        let env = |name: &str, default: f64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let seconds = env("LOAD_DURATION", 10.0);
        let connections = env("LOAD_CONNECTIONS", 32.0) as usize;
        let rate = env("LOAD_RATE", 500.0);
        let closed = Load {
            connections,
            duration: Duration::from_secs_f64(seconds),
            requests: None,
            rate: None,
            warmup: Duration::from_secs(2),
        };
        // At a steady rate few connections are busy at once; enough that a stall queues nothing.
        let steady = Load {
            connections: 16,
            rate: Some(rate),
            ..closed.clone()
        };
        Loads {
            seconds,
            connections,
            rate,
            rounds: (env("LOAD_ROUNDS", 3.0) as usize).max(1),
            closed,
            steady,
        }
    }
}

async fn comparison() {
    let Loads {
        seconds,
        connections,
        rate,
        rounds,
        closed,
        steady,
    } = Loads::from_env();
    println!(
        "chatrun: {}; {} s per measurement after a 2 s warm-up; {rounds} rounds, each measuring \
         the three servers in turn. Each figure is the median over the rounds; each ratio the \
         median of the rounds' ratios.",
        common::chatrun_bin().display(),
        seconds
    );
    let title = |what: &str| format!("**{what}**");
    compare(
        &title(&format!(
            "Figure 1, Mattermost: closed loop, {connections} connections"
        )),
        Platform::Mattermost,
        &closed,
        false,
        Runs::True,
        rounds,
    )
    .await;
    compare(
        &title(&format!(
            "Figure 1, Teams: closed loop, {connections} connections"
        )),
        Platform::Teams,
        &closed,
        false,
        Runs::True,
        rounds,
    )
    .await;
    compare(
        &title(&format!(
            "Figure 1, Mattermost: closed loop, {connections} connections, runs that sleep"
        )),
        Platform::Mattermost,
        &closed,
        false,
        Runs::Sleep,
        rounds,
    )
    .await;
    compare(
        &title(&format!(
            "Figure 2, Mattermost at a steady {rate} triggers/s"
        )),
        Platform::Mattermost,
        &steady,
        false,
        Runs::True,
        rounds,
    )
    .await;
    compare(
        &title(&format!(
            "Figure 2, Mattermost at a steady {rate} triggers/s, two CPU-bound jobs running"
        )),
        Platform::Mattermost,
        &steady,
        true,
        Runs::True,
        rounds,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Postgres (issue #21)

/// Where a measurement's chatruns keep their runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Store {
    Sqlite,
    /// A fresh database on the bench's throwaway cluster, shared by this many instances.
    Postgres(usize),
}

/// One measurement of fresh chatruns on `store`: with two instances, each gets half the
/// connections and half the rate, at once, and their figures are added up. Also the runs of
/// `build` stored.
async fn drive_store(store: Store, load: &Load) -> (Figures, i64) {
    let (url, instances) = match store {
        Store::Sqlite => (None, 1),
        Store::Postgres(n) => (
            Some(throwaway_postgres::database().expect("Postgres is installed")),
            n,
        ),
    };
    let mut servers = Vec::new();
    for _ in 0..instances {
        servers.push(start_chatrun_on(url.as_deref(), Runs::True).await);
    }
    let share = Load {
        connections: load.connections / instances,
        rate: load.rate.map(|r| r / instances as f64),
        ..load.clone()
    };
    let drives: Vec<_> = servers
        .iter()
        .map(|(_, addr)| {
            let target = Triggers::new(
                Platform::Mattermost,
                &format!("http://{addr}/hooks/mattermost"),
                TOKEN,
                TEAMS_SECRET,
            );
            tokio::spawn(drive(Arc::new(target), *addr, share.clone()))
        })
        .collect();
    let mut all = Figures::default();
    for drive in drives {
        let figures = drive.await.expect("a drive");
        all.ok += figures.ok;
        all.failed += figures.failed;
        all.warmup_ok += figures.warmup_ok;
        all.micros.extend(figures.micros);
        all.elapsed = all.elapsed.max(figures.elapsed);
        all.first_failure = all.first_failure.or(figures.first_failure);
    }
    all.micros.sort_unstable();
    let stored = match &url {
        None => stored_runs(servers[0].0.db.as_deref().expect("a SQLite file")).await,
        Some(url) => {
            let pool = sqlx::PgPool::connect(url)
                .await
                .expect("the database opens");
            let (n,): (i64,) = sqlx::query_as("select count(*) from run where job = 'build'")
                .fetch_one(&pool)
                .await
                .expect("runs are counted");
            pool.close().await;
            n
        }
    };
    drop(servers);
    (all, stored)
}

/// Measures each of `stores` with `load`, `rounds` times, in turn within each round; prints
/// the table and each row's ratios to the first row's, round by round.
async fn compare_stores(title: &str, stores: &[(&'static str, Store)], load: &Load, rounds: usize) {
    let mut rows: Vec<Row> = stores.iter().map(|(name, _)| Row::new(name)).collect();
    let (mut acked, mut stored) = (0, 0);
    for _ in 0..rounds {
        for (row, (_, store)) in rows.iter_mut().zip(stores) {
            let (figures, runs) = drive_store(*store, load).await;
            acked += figures.ok + figures.warmup_ok;
            stored += runs;
            row.rounds.push(figures);
        }
    }
    print_table(title, &rows);
    let base = &rows[0];
    for row in &rows[1..] {
        let by_round = |figure: fn(&Figures) -> f64| -> Vec<f64> {
            row.rounds
                .iter()
                .zip(&base.rounds)
                .map(|(r, b)| figure(r) / figure(b))
                .collect()
        };
        let rate = by_round(Figures::per_second);
        let p99 = by_round(|f| f.ms(0.99));
        println!(
            "\n{}/{}: ack/s {:.2}x, p99 {:.2}x (by round {}; p99 {})",
            row.name,
            base.name,
            median(rate.clone()),
            median(p99.clone()),
            listed(rate, 2, "x"),
            listed(p99, 2, "x"),
        );
    }
    println!(
        "\n{stored} runs of `build` stored for the {acked} triggers acknowledged (all rounds)"
    );
}

/// `cargo bench --bench load -- postgres`: acknowledged triggers and ack latency on Postgres
/// next to SQLite (one instance each), and two instances sharing Postgres next to one.
async fn postgres_comparison() {
    throwaway_postgres::durable();
    let Loads {
        seconds,
        connections,
        rate,
        rounds,
        closed,
        steady,
    } = Loads::from_env();
    println!(
        "chatrun: {}; Postgres: a cluster of the local binaries started by the bench on this \
         machine, syncing its commits (fsync and synchronous_commit on, as by default), a fresh \
         database per measurement; {} s per measurement after a 2 s warm-up; {rounds} rounds.",
        common::chatrun_bin().display(),
        seconds
    );
    let one = [("SQLite", Store::Sqlite), ("Postgres", Store::Postgres(1))];
    compare_stores(
        &format!(
            "**Mattermost triggers, closed loop, {connections} connections: Postgres vs SQLite**"
        ),
        &one,
        &closed,
        rounds,
    )
    .await;
    compare_stores(
        &format!("**Mattermost triggers at a steady {rate}/s: Postgres vs SQLite**"),
        &one,
        &steady,
        rounds,
    )
    .await;
    let two = [
        ("one instance", Store::Postgres(1)),
        ("two instances", Store::Postgres(2)),
    ];
    compare_stores(
        &format!(
            "**Two instances on one Postgres vs one, closed loop, {connections} connections in all**"
        ),
        &two,
        &closed,
        rounds,
    )
    .await;
    compare_stores(
        &format!("**Two instances on one Postgres vs one, a steady {rate}/s in all**"),
        &two,
        &steady,
        rounds,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Command line

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench load -- [--url URL --token T --teams-secret B64 \
         --platform mattermost|teams --connections N --duration SECS --requests N --rate PER_SEC \
         --warmup SECS]\n(no arguments: the whole comparison; `postgres`: Postgres next to SQLite)"
    );
    std::process::exit(2)
}

fn main() {
    // cargo bench passes `--bench`; ignore it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    if args.is_empty() {
        runtime.block_on(comparison());
        common::remove_folders();
        return;
    }
    if args == ["postgres"] {
        runtime.block_on(postgres_comparison());
        common::remove_folders();
        return;
    }
    let mut url = None;
    let mut token = TOKEN.to_owned();
    let mut secret = TEAMS_SECRET.to_owned();
    let mut platform = Platform::Mattermost;
    let mut load = Load {
        connections: 32,
        duration: Duration::from_secs(10),
        requests: None,
        rate: None,
        warmup: Duration::from_secs(1),
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        let number = || value.parse::<f64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--url" => url = Some(value.clone()),
            "--token" => token = value.clone(),
            "--teams-secret" => secret = value.clone(),
            "--platform" => {
                platform = match value.as_str() {
                    "mattermost" => Platform::Mattermost,
                    "teams" => Platform::Teams,
                    _ => usage(),
                }
            }
            "--connections" => load.connections = number() as usize,
            "--duration" => load.duration = Duration::from_secs_f64(number()),
            "--requests" => {
                load.requests = Some(number() as u64);
                load.duration = Duration::from_secs(3600);
            }
            "--rate" => load.rate = Some(number()),
            "--warmup" => load.warmup = Duration::from_secs_f64(number()),
            _ => usage(),
        }
    }
    let url = url.unwrap_or_else(|| usage());
    let target = Triggers::new(platform, &url, &token, &secret);
    let addr = runtime
        .block_on(tokio::net::lookup_host(target.host.clone()))
        .expect("the host resolves")
        .next()
        .expect("an address");
    let figures = runtime.block_on(drive(Arc::new(target), addr, load));
    print_table(
        &url,
        &[Row {
            name: "target",
            rounds: vec![figures],
        }],
    );
}
