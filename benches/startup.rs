//! Start-up and idle memory of the real binary: the time from spawning `chatrun serve` to its
//! first 200 on `/healthz`, and its resident memory (VmRSS) after 2 s idle, with an empty
//! database and with a large one (runs with big log heads and tails; 1 GiB by default).
//! Targets: start-up under 200 ms with a 1 GB database, idle RSS under 20 MiB.
//!
//! Baseline, measured in the same run: spawning `chatrun --version` and waiting for it to exit
//! (loading the binary, nothing else).
//!
//!     cargo bench --bench startup                (DB_MIB=200 for a quicker look)
//!
//! The large database is read from the page cache (it was just written): this is a warm start,
//! as after a restart; a cold boot adds the disk reads of whatever start-up touches.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chatrun::store::Store;

const ROUNDS: usize = 7;
/// The chatrun under test: `CHATRUN_BIN`, else the release binary cargo built with the bench.
fn bin() -> std::path::PathBuf {
    std::env::var_os("CHATRUN_BIN").map_or_else(|| env!("CARGO_BIN_EXE_chatrun").into(), Into::into)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A folder with a configuration and one job, its database at `db`.
fn prepare(dir: &Path, port: u16, db: &Path) {
    std::fs::create_dir_all(dir.join("jobs")).expect("jobs folder");
    std::fs::write(
        dir.join("jobs/build.toml"),
        "[[steps]]\nname = \"Build\"\nrun = [\"true\"]\n",
    )
    .expect("job file");
    std::fs::write(
        dir.join("chatrun.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"sqlite://{}\"\n\
             [mattermost]\ntokens = [\"startup-bench-token\"]\n",
            db.display()
        ),
    )
    .expect("config file");
}

/// Whether `/healthz` answers 200 now.
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

fn spawn(dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("chatrun.log")).expect("log file");
    Command::new(bin())
        .args(["serve", "--config", "chatrun.toml"])
        .current_dir(dir)
        // chatrun reads every CHATRUN_ variable as a setting, and has none by that name.
        .env_remove("CHATRUN_BIN")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("chatrun starts")
}

fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

/// A `kB` line of `/proc/<pid>/status`, in MiB.
fn status_mib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a kB figure");
    kb / 1024.0
}

struct Figures {
    startup: Vec<Duration>,
    rss_mib: f64,
    peak_mib: f64,
}

/// Starts chatrun `ROUNDS` times; the memory figures are from the last start, 2 s after it
/// first answered.
fn measure(dir: &Path, port: u16) -> Figures {
    let mut startup = Vec::new();
    let mut figures = None;
    for round in 0..ROUNDS {
        let start = Instant::now();
        let mut child = spawn(dir);
        while !healthy(port) {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("chatrun.log")).unwrap_or_default();
                panic!("chatrun exited ({status}) before serving:\n{log}");
            }
            assert!(start.elapsed() < Duration::from_secs(60), "not serving");
            std::thread::sleep(Duration::from_micros(500));
        }
        startup.push(start.elapsed());
        if round == ROUNDS - 1 {
            std::thread::sleep(Duration::from_secs(2));
            figures = Some((
                status_mib(child.id(), "VmRSS:"),
                status_mib(child.id(), "VmHWM:"),
            ));
        }
        stop(child);
    }
    startup.sort();
    let (rss_mib, peak_mib) = figures.expect("a last round");
    Figures {
        startup,
        rss_mib,
        peak_mib,
    }
}

/// Fills the database with finished runs of `head` + `tail` bytes of log each, up to `mib`.
async fn fill(db: &Path, mib: u64) -> (u64, Duration) {
    let started = Instant::now();
    let url = format!("sqlite://{}", db.display());
    let store = Store::connect(&url).await.expect("the database opens");
    let per_run: u64 = 8 * 1024;
    let runs = mib * 1024 * 1024 / per_run;
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .expect("a second connection");
    sqlx::query(
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < ?)
         insert into run (platform, channel_id, channel_name, user_id, user_name, message_id,
             message, job, args, status, ack_text, log_head, log_tail, log_bytes,
             created_at, started_at, finished_at)
         select 'mattermost', 'c' || (i % 30), 'channel-' || (i % 30), 'u' || (i % 50),
                'user-' || (i % 50), 'm' || i, '#build', 'job-' || (i % 20), '',
                case i % 10 when 0 then 'failed' else 'succeeded' end, 'queued as #' || i,
                hex(randomblob(2048)), hex(randomblob(2048)), 1000000,
                1700000000000 + i * 1000, 1700000000000 + i * 1000, 1700000000000 + i * 1000 + 5000
         from n",
    )
    .bind(i64::try_from(runs).expect("a run count"))
    .execute(&pool)
    .await
    .expect("the runs are inserted");
    // Closing the last connection checkpoints the WAL: start-up opens the database, not a
    // gigabyte of log to replay.
    pool.close().await;
    store.close().await;
    (runs, started.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, f: &Figures, baseline: Duration) {
    let median = f.startup[f.startup.len() / 2];
    let max = f.startup[f.startup.len() - 1];
    println!(
        "{name:<22} start-up to 200: median {:7.1} ms  max {:7.1} ms  ({:.1}x --version; target < 200 ms: {})",
        ms(median),
        ms(max),
        ms(median) / ms(baseline),
        if max < Duration::from_millis(200) {
            "met"
        } else {
            "MISSED"
        },
    );
    println!(
        "{name:<22} idle VmRSS after 2 s: {:5.1} MiB  (peak VmHWM {:5.1} MiB; target < 20 MiB: {})",
        f.rss_mib,
        f.peak_mib,
        if f.rss_mib < 20.0 { "met" } else { "MISSED" },
    );
}

#[tokio::main]
async fn main() {
    let mib: u64 = std::env::var("DB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary folder");

    let mut version = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let status = Command::new(bin())
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .expect("chatrun --version runs");
        assert!(status.success());
        version.push(start.elapsed());
    }
    version.sort();
    let baseline = version[version.len() / 2];
    println!(
        "baseline: `chatrun --version` spawn to exit: median {:.1} ms",
        ms(baseline)
    );

    let empty = dir.path().join("empty");
    let port = free_port();
    prepare(&empty, port, &empty.join("chatrun.db"));
    let figures = measure(&empty, port);
    report("empty database", &figures, baseline);

    let large = dir.path().join("large");
    let db = large.join("chatrun.db");
    let port = free_port();
    prepare(&large, port, &db);
    let (runs, took) = fill(&db, mib).await;
    let size = std::fs::metadata(&db).map_or(0, |m| m.len());
    println!(
        "filled {runs} runs, {:.0} MiB, in {:.1?}",
        size as f64 / 1024.0 / 1024.0,
        took
    );
    let figures = measure(&large, port);
    report(
        &format!("{:.0} MiB database", size as f64 / 1048576.0),
        &figures,
        baseline,
    );
}
