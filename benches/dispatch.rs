//! Dispatch latency and runner overhead (issue #8, figures 3 and 4), through the real
//! `chatrun serve` (`CHATRUN_BIN`, default the release binary cargo built with this bench),
//! triggered over loopback HTTP/1.1 with distinct Mattermost triggers (fresh `timestamp`, unique
//! `post_id`). Each figure is printed next to a baseline the bench measures in the same run.
//!
//! Figure 3, dispatch latency: job `probe` runs `date +%s%N` (argv, no shell). Triggers go one
//! at a time, each once the previous run finished, so a worker is always idle and waiting.
//! Per run: `sent` (CLOCK_REALTIME just before the request is written), `acked` (the answer
//! read) and `started` (what `date` printed, read from the run's log file). The run is committed
//! between `sent` and `acked`, and the worker is woken at the commit, so `acked → started` may
//! be about zero; the latency from the commit lies between the two figures. Measured with the
//! default `job_nice` (steps spawned by chatrun's thread at nice +10) and with `job_nice = 0`.
//! Baseline: the bench itself spawning `date +%s%N`, from just before `spawn` to the time `date`
//! printed: what exec'ing `date` costs alone.
//!
//! Figure 4, runner overhead: job `noop`, one step `true`. `OVERHEAD_RUNS` triggers are sent as
//! fast as a few keep-alive connections go; the figure is the wall time from the first send to
//! the last `finished_at` stored (the result recorded). Then the same runs drained from a full
//! queue (both workers held by a job `hold` while the triggers queue up; first `started_at` to
//! last `finished_at`), which leaves the acknowledgements out. Both with concurrency 1 (next to
//! a plain loop spawning `true` that many times) and with concurrency 2 = workers (next to two
//! threads doing the same); each row's loop is measured just before and just after it.
//!
//! ```text
//! cargo bench --bench dispatch                  both figures
//! cargo bench --bench dispatch -- latency       figure 3 only (or `overhead`: figure 4 only)
//! cargo bench --bench dispatch -- postgres      figure 3 on Postgres, next to SQLite (#21)
//! ```
//! Environment: `DISPATCH_RUNS` (figure 3, default 200), `OVERHEAD_RUNS` (figure 4, default
//! 1000), `OVERHEAD_CONNECTIONS` (default 4), `CHATRUN_BIN`.

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/postgres.rs"]
mod throwaway_postgres;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Server, TOKEN, base36};
use tokio::runtime::Runtime;

/// Workers of every chatrun started here: the default, one per core.
const WORKERS: usize = 2;
/// Runs of figure 3 sent first and not counted (caches, the first spawns).
const WARMUP_RUNS: usize = 5;

/// CLOCK_REALTIME in nanoseconds, the clock `date +%s%N` prints.
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos() as i64
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Triggers over plain HTTP/1.1

/// Distinct Mattermost triggers: unique 26-character `post_id`s, a fresh `timestamp` each.
struct Triggers {
    /// Distinguishes this process's ids from another run's.
    tag: String,
    next: AtomicU64,
}

impl Triggers {
    fn new() -> Self {
        Triggers {
            tag: base36(now_ns() as u64, 12),
            next: AtomicU64::new(0),
        }
    }

    /// The form body of a trigger of job `job`.
    fn body(&self, job: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let post_id = format!("{}{}", self.tag, base36(n, 14));
        let word = format!("#{job}");
        let now = (now_ns() / 1_000_000_000).to_string();
        serde_urlencoded::to_string([
            ("channel_id", "chan0000000000000000000000"),
            ("channel_name", "ci-builds"),
            ("file_ids", ""),
            ("post_id", &post_id),
            ("team_domain", "engineering"),
            ("team_id", "team0000000000000000000000"),
            ("text", &word),
            ("timestamp", &now),
            ("token", TOKEN),
            ("trigger_word", &word),
            ("user_id", "alice0000000000000000000aa"),
            ("user_name", "alice"),
        ])
        .expect("a form")
    }
}

/// What chatrun answered to one trigger.
struct Answer {
    /// CLOCK_REALTIME ns just before the request was written.
    sent: i64,
    /// CLOCK_REALTIME ns once the whole answer was read.
    acked: i64,
    status: u16,
    body: String,
}

impl Answer {
    /// The run number in the acknowledgement (`Queued run **#12** of ...`).
    fn run_id(&self) -> i64 {
        let digits: String = self
            .body
            .split_once("**#")
            .map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).collect())
            .unwrap_or_default();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("no run number in the ack: {}", self.body))
    }
}

/// One keep-alive HTTP/1.1 connection, blocking: the request is written whole, with its
/// timestamp taken right before the write, and the answer read to the end of its body.
struct Connection {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
}

impl Connection {
    fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("chatrun accepts a connection");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("a read timeout");
        Connection {
            stream,
            host: addr.to_string(),
            buf: Vec::new(),
        }
    }

    /// Posts the Mattermost trigger `body` and reads the answer.
    fn trigger(&mut self, body: &str) -> Answer {
        let request = format!(
            "POST /hooks/mattermost HTTP/1.1\r\nhost: {}\r\n\
             content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        let sent = now_ns();
        self.stream
            .write_all(request.as_bytes())
            .expect("the request is written");
        let (status, body) = self.read_answer();
        Answer {
            sent,
            acked: now_ns(),
            status,
            body,
        }
    }

    fn read_answer(&mut self) -> (u16, String) {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("not an HTTP answer: {head}"));
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or_else(|| panic!("an answer without content-length: {head}"));
                let total = end + 4 + length;
                while self.buf.len() < total {
                    self.fill();
                }
                let body = String::from_utf8_lossy(&self.buf[end + 4..total]).into_owned();
                self.buf.drain(..total);
                return (status, body);
            }
            self.fill();
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).expect("the answer is read");
        assert!(n > 0, "chatrun closed the connection mid-answer");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

// ---------------------------------------------------------------------------------------------
// chatrun under test

/// A chatrun started for one measurement, with a read-only look into its database.
struct Chatrun<'rt> {
    rt: &'rt Runtime,
    server: Server,
    addr: SocketAddr,
    pool: sqlx::SqlitePool,
}

impl<'rt> Chatrun<'rt> {
    fn start(rt: &'rt Runtime, jobs: &[(&str, &str)], settings: &str) -> Self {
        let settings = format!("workers = {WORKERS}\n{settings}");
        let (server, addr) = rt.block_on(common::start_chatrun(jobs, &settings, ""));
        let db = server.db.clone().expect("chatrun has a database");
        let url = format!("sqlite://{}?mode=ro", db.display());
        let pool = rt
            .block_on(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect(&url),
            )
            .expect("the database opens");
        Chatrun {
            rt,
            server,
            addr,
            pool,
        }
    }

    /// The row `sql` selects, with `bind` for its one parameter.
    fn row<'q, T, B>(&self, sql: &'static str, bind: B) -> T
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
        B: 'q + sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send,
    {
        self.rt
            .block_on(sqlx::query_as(sql).bind(bind).fetch_one(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The status of run `run_id` once it finished, polling every 2 ms (after `first_look`)
    /// for up to a minute.
    fn wait_finished(&self, run_id: i64, first_look: Duration) -> String {
        std::thread::sleep(first_look);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, finished): (String, Option<i64>) = self.row(
                "select status, finished_at from run where run_id = ?",
                run_id,
            );
            if finished.is_some() {
                return status;
            }
            assert!(Instant::now() < deadline, "run {run_id} did not finish");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until `expected` runs of `job` are finished (polling every 20 ms, up to
    /// ten minutes) and returns what the database says of them.
    fn wait_all_finished(&self, job: &str, expected: usize) -> Finished {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let (finished,): (i64,) = self.row(
                "select count(*) from run where job = ? and finished_at is not null",
                job,
            );
            if finished as usize >= expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {finished} of {expected} runs of {job} finished"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (runs, succeeded, first_started, last_finished, busy): (i64, i64, i64, i64, i64) = self
            .row(
                "select count(*), coalesce(sum(status = 'succeeded'), 0),
                    min(started_at), max(finished_at), sum(finished_at - started_at)
                 from run where job = ?",
                job,
            );
        Finished {
            runs,
            succeeded,
            first_started,
            last_finished,
            busy_ms: busy,
        }
    }

    /// Runs of `job` in `status`.
    fn count(&self, job: &str, status: &str) -> i64 {
        let query = sqlx::query_as("select count(*) from run where job = ? and status = ?")
            .bind(job)
            .bind(status)
            .fetch_one(&self.pool);
        let (n,): (i64,) = self.rt.block_on(query).expect("runs are counted");
        n
    }

    /// What `date` printed in finished run `run_id`: the first line of its log that is all
    /// digits (a log this short is the database's head; chatrun makes no file for it).
    fn date_printed(&self, run_id: i64) -> i64 {
        let query = sqlx::query_as("select log_head from run where run_id = ?")
            .bind(run_id)
            .fetch_one(&self.pool);
        let (log,): (String,) = self.rt.block_on(query).expect("the run's log is read");
        log.lines()
            .map(str::trim)
            .find(|line| line.len() >= 18 && line.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|line| line.parse().ok())
            .unwrap_or_else(|| panic!("no time printed in run {run_id}'s log:\n{log}"))
    }

    /// Sends `runs` triggers of `job` over `connections` keep-alive connections, as fast as
    /// they go; returns when all are answered.
    fn flood(&self, triggers: &Triggers, job: &str, runs: usize, connections: usize) -> Sent {
        let next = AtomicU64::new(0);
        let first_sent = now_ns();
        let per_connection: Vec<(u64, u64, i64, Option<String>)> = std::thread::scope(|scope| {
            let tasks: Vec<_> = (0..connections)
                .map(|_| {
                    scope.spawn(|| {
                        let mut connection = Connection::open(self.addr);
                        let (mut ok, mut failed, mut last_ack) = (0, 0, 0);
                        let mut first_failure = None;
                        while next.fetch_add(1, Ordering::Relaxed) < runs as u64 {
                            let answer = connection.trigger(&triggers.body(job));
                            last_ack = answer.acked;
                            if (200..300).contains(&answer.status) {
                                ok += 1;
                            } else {
                                failed += 1;
                                first_failure
                                    .get_or_insert(format!("{}: {}", answer.status, answer.body));
                            }
                        }
                        (ok, failed, last_ack, first_failure)
                    })
                })
                .collect();
            tasks
                .into_iter()
                .map(|t| t.join().expect("a sender thread"))
                .collect()
        });
        let mut sent = Sent {
            first_sent,
            last_acked: 0,
            ok: 0,
            failed: 0,
        };
        for (ok, failed, last_ack, first_failure) in per_connection {
            sent.ok += ok;
            sent.failed += failed;
            sent.last_acked = sent.last_acked.max(last_ack);
            if let Some(why) = first_failure {
                eprintln!("a trigger of {job} was refused: {why}");
            }
        }
        sent
    }
}

/// A `chatrun agent` a bench started, killed when dropped.
struct AgentProcess(std::process::Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Chatrun<'_> {
    /// Starts `n` agents with the label `bench` (none for 0), with a token made by
    /// `chatrun agent-token create`; returns once each has asked for work.
    fn start_agents(&self, n: usize) -> Vec<AgentProcess> {
        if n == 0 {
            return Vec::new();
        }
        let config = self.server.dir.path().join("chatrun.toml");
        let made = Command::new(common::chatrun_bin())
            .args(["agent-token", "create", "bench", "--config"])
            .arg(&config)
            .env_remove("CHATRUN_BIN")
            .output()
            .expect("chatrun agent-token runs");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let token = String::from_utf8_lossy(&made.stdout).trim().to_string();
        let workdir = self.server.dir.path().join("agents");
        std::fs::create_dir_all(&workdir).expect("the agents' folder");
        let agents: Vec<AgentProcess> = (0..n)
            .map(|i| {
                let child = Command::new(common::chatrun_bin())
                    .args(["agent", "--server", &format!("http://{}", self.addr)])
                    .args(["--name", &format!("bench-{i}"), "--labels", "bench"])
                    .arg("--workdir")
                    .arg(&workdir)
                    .env("CHATRUN_AGENT_TOKEN", &token)
                    .env_remove("CHATRUN_BIN")
                    .env("RUST_LOG", "chatrun=error")
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("chatrun agent starts");
                AgentProcess(child)
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (seen,): (i64,) = self.row("select count(*) from agent where last_seen_at > ?", 0);
            if seen as usize >= n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {seen} of {n} agents connected"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        agents
    }
}

impl Drop for Chatrun<'_> {
    fn drop(&mut self) {
        // Closed on the runtime it was opened on, before the server stops.
        self.rt.block_on(self.pool.close());
    }
}

/// Triggers sent by [`Chatrun::flood`].
struct Sent {
    /// CLOCK_REALTIME ns before the first request.
    first_sent: i64,
    /// CLOCK_REALTIME ns when the last answer was read.
    last_acked: i64,
    ok: u64,
    failed: u64,
}

/// The runs of a job, once all finished (times in ms, as chatrun stores them).
struct Finished {
    runs: i64,
    succeeded: i64,
    first_started: i64,
    last_finished: i64,
    /// The sum of the runs' `finished_at - started_at`.
    busy_ms: i64,
}

// ---------------------------------------------------------------------------------------------
// Figures

/// Sorted samples in milliseconds.
struct Samples(Vec<f64>);

impl Samples {
    fn new(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        Samples(ms)
    }

    fn at(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0[((self.0.len() as f64 - 1.0) * p).round() as usize]
    }

    fn row(&self, what: &str) -> String {
        format!(
            "| {what} | {:.2} | {:.2} | {:.2} | {:.2} |",
            self.at(0.5),
            self.at(0.9),
            self.at(0.99),
            self.at(1.0)
        )
    }
}

/// Dispatch latencies of one chatrun configuration.
struct Dispatch {
    from_ack: Samples,
    from_send: Samples,
    ack: Samples,
    /// Ack read → the run's `started_at` (taken just before the claim).
    to_claim: Samples,
    /// The run's `started_at` → its step's `started_at` (claim and step reset committed).
    to_step: Samples,
    /// The step's `started_at` → `date` printed (step start committed, log, spawn, exec).
    to_exec: Samples,
}

/// Figure 3 against one chatrun: `runs` triggers of `probe`, one at a time.
fn measure_dispatch(rt: &Runtime, runs: usize, settings: &str) -> Dispatch {
    measure_dispatch_on(rt, runs, settings, 0)
}

/// [`measure_dispatch`], the probe run by one of `agents` remote agents when there are any
/// (its job `runs_on = ["bench"]`).
fn measure_dispatch_on(rt: &Runtime, runs: usize, settings: &str, agents: usize) -> Dispatch {
    let probe = format!(
        "description = \"dispatch probe\"\ntimeout = \"1m\"\nconcurrency = 1\n\
         queue_limit = 0\n{}[[steps]]\nname = \"date\"\nrun = [\"date\", \"+%s%N\"]\n",
        if agents > 0 {
            "runs_on = [\"bench\"]\n"
        } else {
            ""
        }
    );
    let chatrun = Chatrun::start(rt, &[("probe", &probe)], settings);
    let _agents = chatrun.start_agents(agents);
    let triggers = Triggers::new();
    let mut connection = Connection::open(chatrun.addr);
    let mut measured = Vec::with_capacity(runs);
    for i in 0..WARMUP_RUNS + runs {
        let answer = connection.trigger(&triggers.body("probe"));
        assert_eq!(
            answer.status, 200,
            "chatrun refused a trigger: {}",
            answer.body
        );
        let run_id = answer.run_id();
        // A first look only once `date` is long done, so the polling takes no CPU from the
        // dispatch it measures.
        let status = chatrun.wait_finished(run_id, Duration::from_millis(20));
        assert_eq!(status, "succeeded", "run {run_id} of probe");
        if i >= WARMUP_RUNS {
            measured.push((run_id, answer.sent, answer.acked));
        }
    }
    let (mut from_ack, mut from_send, mut ack) = (Vec::new(), Vec::new(), Vec::new());
    let (mut to_claim, mut to_step, mut to_exec) = (Vec::new(), Vec::new(), Vec::new());
    for (run_id, sent, acked) in measured {
        let started = chatrun.date_printed(run_id);
        from_ack.push((started - acked) as f64 / 1e6);
        from_send.push((started - sent) as f64 / 1e6);
        ack.push((acked - sent) as f64 / 1e6);
        let (claimed, step_started): (i64, i64) = chatrun.row(
            "select r.started_at, s.started_at from run r
             join step s on s.run_id = r.run_id and s.position = 0
             where r.run_id = ?",
            run_id,
        );
        to_claim.push(claimed as f64 - acked as f64 / 1e6);
        to_step.push((step_started - claimed) as f64);
        to_exec.push(started as f64 / 1e6 - step_started as f64);
    }
    Dispatch {
        from_ack: Samples::new(from_ack),
        from_send: Samples::new(from_send),
        ack: Samples::new(ack),
        to_claim: Samples::new(to_claim),
        to_step: Samples::new(to_step),
        to_exec: Samples::new(to_exec),
    }
}

/// The baseline of figure 3: from just before `spawn` to the time `argv` (ending in
/// `date +%s%N`) printed, `runs` times.
fn spawn_date(argv: &[&str], runs: usize) -> Samples {
    let mut ms = Vec::with_capacity(runs);
    for i in 0..WARMUP_RUNS + runs {
        let mut command = Command::new(argv[0]);
        command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let before = now_ns();
        let output = command
            .spawn()
            .and_then(|child| child.wait_with_output())
            .expect("date runs");
        let printed: i64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("date printed nanoseconds");
        if i >= WARMUP_RUNS {
            ms.push((printed - before) as f64 / 1e6);
        }
    }
    Samples::new(ms)
}

fn figure_3(rt: &Runtime) {
    let runs = env_number("DISPATCH_RUNS", 200);
    let niced = measure_dispatch(rt, runs, "");
    let plain = measure_dispatch(rt, runs, "job_nice = 0");
    let date = spawn_date(&["date", "+%s%N"], runs);

    println!(
        "\n**Figure 3: dispatch latency, {runs} runs of a one-step job, one at a time \
         ({WARMUP_RUNS} more first, not counted; ms)**\n"
    );
    println!("| measured | p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for line in [
        niced.from_ack.row("chatrun: ack read → step started"),
        niced.from_send.row("chatrun: trigger sent → step started"),
        niced.ack.row("chatrun: trigger sent → ack read"),
        plain
            .from_ack
            .row("chatrun, `job_nice = 0`: ack read → step started"),
        plain
            .from_send
            .row("chatrun, `job_nice = 0`: trigger sent → step started"),
        date.row("baseline: bench spawns `date +%s%N`"),
    ] {
        println!("{line}");
    }
    println!(
        "\n\"step started\" is the time `date` printed; the run is committed between \"sent\" and \
         \"ack read\" (so the latency from the commit lies between those two rows). By default \
         steps run at nice +10 (`job_nice`), spawned by a chatrun thread at that priority."
    );
    let ratio = |chatrun: &Samples, base: &Samples| {
        format!(
            "p50 {:.2}x, p99 {:.2}x; beyond the spawn: p50 {:+.2} ms, p99 {:+.2} ms",
            chatrun.at(0.5) / base.at(0.5),
            chatrun.at(0.99) / base.at(0.99),
            chatrun.at(0.5) - base.at(0.5),
            chatrun.at(0.99) - base.at(0.99)
        )
    };
    println!(
        "\nsent → started / bench spawning the same argv: default `job_nice`: {}; \
         `job_nice = 0`: {}",
        ratio(&niced.from_send, &date),
        ratio(&plain.from_send, &date)
    );
    println!(
        "\nack read → started / bench spawning the same argv: default `job_nice`: {}; \
         `job_nice = 0`: {}",
        ratio(&niced.from_ack, &date),
        ratio(&plain.from_ack, &date)
    );
    println!(
        "\nTarget (from the commit): p50 under 2 ms, p99 under 10 ms. The commit lies between \
         \"sent\" and \"ack read\", so chatrun's own dispatch time (beyond the spawn, which \
         the baseline pays too) lies between the two \"beyond the spawn\" figures."
    );

    println!(
        "\n**Figure 3, where the time goes** (default `job_nice`; chatrun stores whole \
         milliseconds, so each row is good to about 1 ms)\n"
    );
    println!("| from → to | p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for line in [
        niced
            .to_claim
            .row("ack read → run `started_at` (worker woken, about to claim)"),
        niced
            .to_step
            .row("run `started_at` → step `started_at` (claim, steps written)"),
        niced
            .to_exec
            .row("step `started_at` → `date` printed (log file, spawn, exec)"),
    ] {
        println!("{line}");
    }
}

/// The baseline of figure 4: `threads` threads spawning `true` and waiting for it, `runs`
/// times in all.
fn loop_true(runs: usize, threads: usize) -> Duration {
    let next = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < runs as u64 {
                    let status = Command::new("true").status().expect("true runs");
                    assert!(status.success());
                }
            });
        }
    });
    start.elapsed()
}

/// One line of figure 4.
struct Overhead {
    what: String,
    wall: Duration,
    /// The loop it is compared with.
    baseline: Duration,
    runs: usize,
}

impl Overhead {
    fn row(&self) -> String {
        let secs = self.wall.as_secs_f64();
        let per_run = |d: Duration| d.as_secs_f64() * 1e3 / self.runs as f64;
        format!(
            "| {} | {:.3} | {:.0} | {:.3} | {:.3} | {:.3} | {:.2}x |",
            self.what,
            secs,
            self.runs as f64 / secs,
            per_run(self.wall),
            per_run(self.baseline),
            (secs - self.baseline.as_secs_f64()) * 1e3 / self.runs as f64,
            secs / self.baseline.as_secs_f64()
        )
    }
}

/// `measure`, with the loop of `threads` threads spawning `true` `runs` times just before and
/// just after it: what it measured, and the mean of the two loops. The machines these figures
/// come from are shared, and how fast they spawn changes within a minute (0.6 to 2.7 ms per
/// `true` in one hour): a loop measured at another moment would move the ratio more than
/// chatrun does.
fn next_to_loops<T>(runs: usize, threads: usize, measure: impl FnOnce() -> T) -> (T, Duration) {
    let before = loop_true(runs, threads);
    let measured = measure();
    let after = loop_true(runs, threads);
    (measured, (before + after) / 2)
}

fn noop_jobs(concurrency: usize, go: &std::path::Path) -> (String, String) {
    let noop = format!(
        "description = \"runner overhead\"\ntimeout = \"1m\"\nconcurrency = {concurrency}\n\
         queue_limit = 0\n[[steps]]\nname = \"true\"\nrun = [\"true\"]\n"
    );
    // Holds a worker until the file `go` exists.
    let hold = format!(
        "description = \"holds a worker\"\ntimeout = \"10m\"\nconcurrency = {WORKERS}\n\
         queue_limit = 0\n[[steps]]\nname = \"hold\"\nrun = [\"sh\", \"-c\", {:?}, {:?}]\n",
        "while [ ! -e \"$0\" ]; do sleep 0.01; done",
        go.display().to_string()
    );
    (noop, hold)
}

/// Figure 4, end to end: `runs` triggers as fast as they go, to the last result recorded.
/// Returns the wall time and the time until the last ack.
fn overhead_end_to_end(
    rt: &Runtime,
    runs: usize,
    connections: usize,
    concurrency: usize,
) -> (Duration, Duration) {
    let go = common::Folder::new();
    let (noop, hold) = noop_jobs(concurrency, &go.path().join("go"));
    let chatrun = Chatrun::start(rt, &[("noop", &noop), ("hold", &hold)], "");
    let sent = chatrun.flood(&Triggers::new(), "noop", runs, connections);
    assert_eq!(sent.failed, 0, "chatrun refused triggers");
    let finished = chatrun.wait_all_finished("noop", runs);
    check(&finished, runs, "noop");
    let wall_ms = finished.last_finished - sent.first_sent / 1_000_000;
    (
        Duration::from_millis(wall_ms as u64),
        Duration::from_nanos((sent.last_acked - sent.first_sent) as u64),
    )
}

/// Figure 4 without the acknowledgements: `runs` runs queued while `hold` occupies every
/// worker, then released; first `started_at` to last `finished_at`. Also returns the mean of
/// the runs' own `finished_at - started_at` (ms), and the CPU time per run (ms) of chatrun
/// itself and of the processes it started, meanwhile.
fn overhead_drained(
    rt: &Runtime,
    runs: usize,
    connections: usize,
    concurrency: usize,
) -> (Duration, f64, (f64, f64)) {
    let go = common::Folder::new();
    let (noop, hold) = noop_jobs(concurrency, &go.path().join("go"));
    let chatrun = Chatrun::start(rt, &[("noop", &noop), ("hold", &hold)], "");
    let triggers = Triggers::new();
    let held = chatrun.flood(&triggers, "hold", WORKERS, 1);
    assert_eq!(held.failed, 0, "chatrun refused `hold`");
    let deadline = Instant::now() + Duration::from_secs(30);
    while chatrun.count("hold", "running") < WORKERS as i64 {
        assert!(Instant::now() < deadline, "the hold runs did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = chatrun.flood(&triggers, "noop", runs, connections);
    assert_eq!(sent.failed, 0, "chatrun refused triggers");
    assert_eq!(
        chatrun.count("noop", "queued"),
        runs as i64,
        "every run of noop waits"
    );
    let pid = chatrun.server.child.id();
    let cpu_before = common::cpu_secs(pid);
    std::fs::write(go.path().join("go"), "").expect("the go file");
    let finished = chatrun.wait_all_finished("noop", runs);
    let cpu_after = common::cpu_secs(pid);
    check(&finished, runs, "noop");
    let per_run = |before: f64, after: f64| (after - before) * 1000.0 / runs as f64;
    (
        Duration::from_millis((finished.last_finished - finished.first_started) as u64),
        finished.busy_ms as f64 / finished.runs as f64,
        (
            per_run(cpu_before.0, cpu_after.0),
            per_run(cpu_before.1, cpu_after.1),
        ),
    )
}

fn check(finished: &Finished, runs: usize, job: &str) {
    assert_eq!(finished.runs, runs as i64, "runs of {job} stored");
    assert_eq!(
        finished.succeeded, finished.runs,
        "every run of {job} succeeded"
    );
}

fn figure_4(rt: &Runtime) {
    let runs = env_number("OVERHEAD_RUNS", 1000);
    let connections = env_number("OVERHEAD_CONNECTIONS", 4);
    let mut lines = Vec::new();
    let mut notes = Vec::new();
    for concurrency in [1, WORKERS] {
        let ((wall, acked), baseline) = next_to_loops(runs, concurrency, || {
            overhead_end_to_end(rt, runs, connections, concurrency)
        });
        lines.push(Overhead {
            what: format!(
                "chatrun, concurrency {concurrency}: first trigger sent → last result recorded"
            ),
            wall,
            baseline,
            runs,
        });
        notes.push(format!(
            "concurrency {concurrency}: the {runs} acks took {:.3} s ({:.0}/s) of the {:.3} s",
            acked.as_secs_f64(),
            runs as f64 / acked.as_secs_f64(),
            wall.as_secs_f64()
        ));
        let ((drained, mean_run, (cpu_own, cpu_steps)), baseline) =
            next_to_loops(runs, concurrency, || {
                overhead_drained(rt, runs, connections, concurrency)
            });
        lines.push(Overhead {
            what: format!(
                "chatrun, concurrency {concurrency}: drained from a full queue (first start → last result)"
            ),
            wall: drained,
            baseline,
            runs,
        });
        notes.push(format!(
            "concurrency {concurrency}, drained: a run's own `started_at → finished_at` took \
             {mean_run:.2} ms on average; CPU time per run: chatrun {cpu_own:.2} ms, the \
             processes it started {cpu_steps:.2} ms (10 ms ticks over all the runs; the \
             `hold` runs end meanwhile too)"
        ));
    }

    println!(
        "\n**Figure 4: runner overhead, {runs} runs of a one-step job running `true` \
         ({WORKERS} workers, triggers over {connections} keep-alive connections)**\n"
    );
    println!(
        "| measured | wall s | runs/s | ms per run | its loop, ms per `true` | overhead ms per run | ratio to its loop |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for line in &lines {
        println!("{}", line.row());
    }
    println!(
        "\nIts loop: a plain loop spawning `true` and waiting for it, {runs} times (at \
         concurrency {WORKERS}: {WORKERS} threads doing the same), measured just before and just \
         after each row; the mean of the two. Result recorded = the run's `finished_at` (ms) in \
         the database."
    );
    for note in notes {
        println!("\n{note}");
    }
    println!("\nTarget: end to end under 3x the plain loop.");
}

// ---------------------------------------------------------------------------------------------
// Postgres (issue #21)

/// How the run of a trigger reaches a worker on Postgres.
#[derive(Clone, Copy, PartialEq)]
enum Wake {
    /// The instance that stored the run runs it: woken in process, as on SQLite.
    SameInstance,
    /// One instance (no workers) stores it, the other runs it: woken by `NOTIFY`.
    Notify,
    /// As `Notify`, with the database's notifications of new runs switched off: the other
    /// instance finds the run when its workers next look (their slow poll).
    PollOnly,
}

/// Trigger → step started on Postgres, `runs` triggers one at a time, woken as `wake` says.
/// Returns (from send, from ack).
fn measure_dispatch_postgres(rt: &Runtime, runs: usize, wake: Wake) -> (Samples, Samples) {
    let url = throwaway_postgres::database().expect("Postgres is installed");
    let probe = "description = \"dispatch probe\"\ntimeout = \"1m\"\nconcurrency = 1\n\
                 queue_limit = 0\n[[steps]]\nname = \"date\"\nrun = [\"date\", \"+%s%N\"]\n";
    let start = |workers: usize| {
        rt.block_on(common::start_chatrun_on(
            Some(&url),
            &[("probe", probe)],
            &format!("workers = {workers}"),
            "",
        ))
    };
    let (front, front_addr) = start(if wake == Wake::SameInstance {
        WORKERS
    } else {
        0
    });
    let runner = (wake != Wake::SameInstance).then(|| start(WORKERS));
    let pool = rt
        .block_on(sqlx::PgPool::connect(&url))
        .expect("the database opens");
    if wake == Wake::PollOnly {
        rt.block_on(
            sqlx::query(
                "create or replace function chatrun_notify_run() returns trigger
                 language plpgsql as $$ begin return null; end $$",
            )
            .execute(&pool),
        )
        .expect("notifications switched off");
    }
    let triggers = Triggers::new();
    let mut connection = Connection::open(front_addr);
    let (mut from_send, mut from_ack) = (Vec::new(), Vec::new());
    for i in 0..WARMUP_RUNS + runs {
        let answer = connection.trigger(&triggers.body("probe"));
        assert_eq!(
            answer.status, 200,
            "chatrun refused a trigger: {}",
            answer.body
        );
        let run_id = answer.run_id();
        std::thread::sleep(Duration::from_millis(20));
        let deadline = Instant::now() + Duration::from_secs(60);
        let log = loop {
            let (status, log): (String, String) = rt
                .block_on(
                    sqlx::query_as("select status, log_head from run where run_id = $1")
                        .bind(run_id)
                        .fetch_one(&pool),
                )
                .expect("the run is read");
            if status == "succeeded" {
                break log;
            }
            assert!(status != "failed", "run {run_id} of probe failed");
            assert!(Instant::now() < deadline, "run {run_id} did not finish");
            std::thread::sleep(Duration::from_millis(2));
        };
        let started: i64 = log
            .lines()
            .map(str::trim)
            .find(|line| line.len() >= 18 && line.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|line| line.parse().ok())
            .unwrap_or_else(|| panic!("no time printed in run {run_id}'s log:\n{log}"));
        if i >= WARMUP_RUNS {
            from_send.push((started - answer.sent) as f64 / 1e6);
            from_ack.push((started - answer.acked) as f64 / 1e6);
        }
    }
    rt.block_on(pool.close());
    drop((front, runner));
    (Samples::new(from_send), Samples::new(from_ack))
}

/// Failover on Postgres: instance A runs a long step, B (no workers) survives; A is killed with
/// SIGKILL. Per round: when B settled A's run (interrupted) after the kill, next to when its
/// lease ran out, and how long B took to acknowledge a trigger sent at the kill. With
/// `other_host`, the run's lease names another host (as when A runs on another machine): B
/// cannot see that A's process is gone, and waits for the lease; otherwise B, on the same host,
/// sees A's process gone at its next look.
fn failover(rt: &Runtime, rounds: usize, lease_secs: u64, other_host: bool) {
    let url = throwaway_postgres::database().expect("Postgres is installed");
    let hold = "description = \"holds a worker\"\ntimeout = \"5m\"\n\
                [[steps]]\nname = \"hold\"\nrun = [\"sleep\", \"120\"]\n";
    let ping = "description = \"answers\"\n[[steps]]\nname = \"ping\"\nrun = [\"true\"]\n";
    let settings = |workers: usize| format!("workers = {workers}\nlease_secs = {lease_secs}");
    let jobs = [("hold", hold), ("ping", ping)];
    let (_survivor, survivor_addr) = rt.block_on(common::start_chatrun_on(
        Some(&url),
        &jobs,
        &settings(0),
        "",
    ));
    let pool = rt
        .block_on(sqlx::PgPool::connect(&url))
        .expect("the database opens");
    let status = |run_id: i64| -> (String, Option<i64>, Option<i64>) {
        rt.block_on(
            sqlx::query_as(
                "select status, lease_expires_at, finished_at from run where run_id = $1",
            )
            .bind(run_id)
            .fetch_one(&pool),
        )
        .expect("the run is read")
    };
    let triggers = Triggers::new();
    println!(
        "\n**Failover on Postgres: SIGKILL of the instance running a run, `lease_secs = \
         {lease_secs}` (renewed every third of it); the other instance, {}, settles it (ms)**\n",
        if other_host {
            "as if on another host"
        } else {
            "on the same host"
        }
    );
    println!(
        "| round | kill → lease ran out | kill → run interrupted by the survivor | after the lease \
         | kill → survivor acknowledged a trigger |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let mut overshoots = Vec::new();
    for round in 0..rounds {
        let (mut victim, victim_addr) = rt.block_on(common::start_chatrun_on(
            Some(&url),
            &jobs,
            &settings(2),
            "",
        ));
        let answer = Connection::open(victim_addr).trigger(&triggers.body("hold"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        let run_id = answer.run_id();
        let deadline = Instant::now() + Duration::from_secs(30);
        while status(run_id).0 != "running" {
            assert!(Instant::now() < deadline, "run {run_id} did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        if other_host {
            // The victim keeps renewing: its renewals check the attempt, not the owner.
            rt.block_on(
                sqlx::query("update run set lease_owner = 'another-host:1#0' where run_id = $1")
                    .bind(run_id)
                    .execute(&pool),
            )
            .expect("the lease is moved");
        }
        // Kills fall at different points of the renewal cycle.
        std::thread::sleep(Duration::from_millis(
            (round as u64 * lease_secs * 1000 / 3 / rounds as u64).max(1),
        ));
        victim.child.kill().expect("SIGKILL");
        let killed = now_ns();
        victim.child.wait().expect("the victim is reaped");
        // No renewal comes any more: this is when the lease runs out (settling clears it).
        let expiry = status(run_id).1;
        let ack = Connection::open(survivor_addr).trigger(&triggers.body("ping"));
        assert_eq!(ack.status, 200, "{}", ack.body);
        let deadline = Instant::now() + Duration::from_secs(lease_secs * 3 + 30);
        let finished = loop {
            let (state, _, finished) = status(run_id);
            if state == "interrupted" {
                break finished.expect("a finished run has its time");
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} was not settled: {state}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let killed_ms = killed / 1_000_000;
        let lease_left = expiry.map_or(f64::NAN, |e| (e - killed_ms) as f64);
        let settled = (finished - killed_ms) as f64;
        overshoots.push(settled - lease_left);
        println!(
            "| {} | {lease_left:.0} | {settled:.0} | {:+.0} | {:.1} |",
            round + 1,
            settled - lease_left,
            (ack.acked - killed) as f64 / 1e6
        );
        drop(victim);
    }
    rt.block_on(pool.close());
    let overshoots = Samples::new(overshoots);
    println!(
        "\nThe survivor settled each run {:+.0} ms (median; at most {:+.0} ms) from when its \
         lease ran out. Target: within the lease time + 1 s of the kill.",
        overshoots.at(0.5),
        overshoots.at(1.0)
    );
}

/// `cargo bench --bench dispatch -- postgres`: figure 3 on Postgres, next to SQLite.
fn figure_3_postgres(rt: &Runtime) {
    throwaway_postgres::durable();
    let runs = env_number("DISPATCH_RUNS", 200);
    // The poll is seconds long: fewer runs tell its spread well enough.
    let poll_runs = (runs / 10).max(10);
    let sqlite = measure_dispatch(rt, runs, "");
    let same = measure_dispatch_postgres(rt, runs, Wake::SameInstance);
    let notify = measure_dispatch_postgres(rt, runs, Wake::Notify);
    let poll = measure_dispatch_postgres(rt, poll_runs, Wake::PollOnly);
    println!(
        "\n**Trigger → step started on Postgres, one trigger at a time ({runs} runs, {poll_runs} \
         poll only; {WARMUP_RUNS} more first, not counted; ms)**\n"
    );
    println!("| measured | p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for line in [
        sqlite.from_send.row("SQLite, one instance: sent → started"),
        same.0.row("Postgres, one instance: sent → started"),
        same.1.row("Postgres, one instance: ack read → started"),
        notify
            .0
            .row("Postgres, acked by A, run by B (NOTIFY): sent → started"),
        notify
            .1
            .row("Postgres, acked by A, run by B (NOTIFY): ack read → started"),
        poll.0
            .row("Postgres, acked by A, run by B, no NOTIFY (poll only): sent → started"),
    ] {
        println!("{line}");
    }
    println!(
        "\nPostgres one instance / SQLite, sent → started: p50 {:.2}x, p99 {:.2}x. Target with \
         NOTIFY: p50 under 10 ms.",
        same.0.at(0.5) / sqlite.from_send.at(0.5),
        same.0.at(0.99) / sqlite.from_send.at(0.99)
    );
    failover(rt, 4, 6, false);
    failover(rt, 4, 6, true);
}

/// Runs of `true` drained from a full queue by `agents` remote agents: first start → last
/// end.
fn drained_by_agents(rt: &Runtime, runs: usize, agents: usize) -> Duration {
    let noop = "timeout = \"1m\"\nconcurrency = 8\nqueue_limit = 0\nruns_on = [\"bench\"]\n\
                [[steps]]\nname = \"noop\"\nrun = [\"true\"]\n";
    let chatrun = Chatrun::start(rt, &[("noop", noop)], "");
    let triggers = Triggers::new();
    // No agent yet: every run waits.
    let sent = chatrun.flood(&triggers, "noop", runs, 4);
    assert_eq!(sent.failed, 0, "chatrun refused triggers");
    let _agents = chatrun.start_agents(agents);
    let finished = chatrun.wait_all_finished("noop", runs);
    check(&finished, runs, "noop");
    Duration::from_millis((finished.last_finished - finished.first_started) as u64)
}

/// Issue #22's figures: trigger → step started on a remote agent beside the local one; runs/s
/// drained by 1, 2 and 4 agents; 200 idle agents long-polling one server.
fn agents_figures(rt: &Runtime) {
    let runs = env_number("DISPATCH_RUNS", 200);
    let local = measure_dispatch_on(rt, runs, "", 0);
    let remote = measure_dispatch_on(rt, runs, "", 1);
    println!(
        "\n**Agents: trigger → step started, {runs} runs of a one-step job (`date +%s%N`), one \
         at a time ({WARMUP_RUNS} more first, not counted; ms)**\n"
    );
    println!("| measured | p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for line in [
        local
            .from_send
            .row("local agent (the server's workers): sent → started"),
        remote
            .from_send
            .row("remote agent over loopback HTTP: sent → started"),
        remote.from_ack.row("remote agent: ack read → started"),
    ] {
        println!("{line}");
    }
    println!(
        "\nremote / local, sent → started: p50 {:.2}x, p99 {:.2}x. Target: remote p50 under 50 ms.",
        remote.from_send.at(0.5) / local.from_send.at(0.5),
        remote.from_send.at(0.99) / local.from_send.at(0.99)
    );

    let drained = env_number("AGENT_RUNS", 400);
    println!(
        "\n**Agents: {drained} runs of `true` drained from a full queue (first start → last \
         end)**\n"
    );
    println!("| drained by | wall s | runs/s |");
    println!("|---|---:|---:|");
    let row = |what: &str, wall: Duration| {
        println!(
            "| {what} | {:.3} | {:.0} |",
            wall.as_secs_f64(),
            drained as f64 / wall.as_secs_f64()
        );
    };
    for agents in [1, 2, 4] {
        row(
            &format!("{agents} remote agent(s)"),
            drained_by_agents(rt, drained, agents),
        );
    }
    println!(
        "\nThe local agent drains the same runs in figure 4's \"drained from a full queue\" rows."
    );

    let idle = env_number("IDLE_AGENTS", 200);
    let chatrun = Chatrun::start(rt, &[], "");
    let pid = chatrun.server.child.id();
    let rss = |pid: u32| -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
            / 1024.0
    };
    let before = rss(pid);
    let _agents = chatrun.start_agents(idle);
    // Settled: every agent's first poll is in.
    std::thread::sleep(Duration::from_secs(5));
    let window = Duration::from_secs(30);
    let cpu_before = common::cpu_secs(pid);
    std::thread::sleep(window);
    let cpu_after = common::cpu_secs(pid);
    let share = (cpu_after.0 - cpu_before.0) / window.as_secs_f64() * 100.0;
    println!(
        "\n**Agents: {idle} idle agents long-polling one server**\n\n\
         server RSS {:.1} MiB with them ({before:.1} MiB before; target under 64 MiB); server CPU \
         {share:.2} % of a core over {} s (target under 5 %)",
        rss(pid),
        window.as_secs()
    );
}

fn main() {
    // cargo bench passes `--bench`; ignore it.
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    // `postgres` only when asked for: it needs the Postgres binaries.
    let wants =
        |part: &str| (parts.is_empty() && part != "postgres") || parts.iter().any(|p| p == part);
    if let Some(other) = parts
        .iter()
        .find(|p| !["latency", "overhead", "postgres", "agents"].contains(&p.as_str()))
    {
        eprintln!(
            "usage: cargo bench --bench dispatch -- [latency] [overhead] [postgres] [agents] \
             (not `{other}`)"
        );
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!("chatrun: {}", common::chatrun_bin().display());
    if wants("latency") {
        figure_3(&rt);
    }
    if wants("overhead") {
        figure_4(&rt);
    }
    if wants("postgres") {
        figure_3_postgres(&rt);
    }
    if wants("agents") {
        agents_figures(&rt);
    }
    common::remove_folders();
}
