//! What the benches that drive a real `chatrun serve` share: starting it in a temporary folder
//! with a job catalog of their own, waiting until it listens, and stopping it (SIGTERM, then
//! SIGKILL) when the [`Server`] is dropped.
//!
//! Every bench makes its folders under cargo's `target/tmp` (`CARGO_TARGET_TMPDIR`), on the
//! disk of the project folder, where a chatrun's default `data/` is, not in /tmp: on the
//! machine of BENCHMARKS.md making a file in /tmp cost 0.5 ms, ten times as much as elsewhere on
//! the same disk (`python3 -c` timing `os.open(..., O_CREAT)` in each), and every run makes one.
//!
//! Included by each bench with `#[path = "common/mod.rs"] mod common;` (a bench is its own
//! crate); each uses a part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The Mattermost token of every chatrun a bench starts.
pub const TOKEN: &str = "load-test-token-0123456789";

/// CPU time (user + system, in seconds) of process `pid`: its own, and that of the children it
/// has waited for.
pub fn cpu_secs(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    // After the command's name in parentheses: state is field 3, utime 14, stime 15, cutime 16,
    // cstime 17.
    let fields: Vec<f64> = stat[stat.rfind(')').expect("a name") + 2..]
        .split(' ')
        .skip(11)
        .take(4)
        .map(|f| f.parse().expect("a number of ticks"))
        .collect();
    // USER_HZ is 100 on Linux.
    (
        (fields[0] + fields[1]) / 100.0,
        (fields[2] + fields[3]) / 100.0,
    )
}

/// A temporary folder under `target/tmp`, removed when the bench ends ([`remove_folders`]),
/// not when dropped: after thousands of files are removed, ext4 makes new files slowly for
/// minutes (it skips the inodes freed recently: `recently_deleted` in `perf`), and the next
/// measurement would pay for the last one's clean-up. chatrun itself removes no files.
pub struct Folder(Option<tempfile::TempDir>);

static KEPT: std::sync::Mutex<Vec<tempfile::TempDir>> = std::sync::Mutex::new(Vec::new());

impl Folder {
    pub fn new() -> Self {
        Folder(Some(
            tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary folder"),
        ))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("kept until dropped").path()
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(dir);
        }
    }
}

/// Removes the folders dropped so far: call at the end of a bench's `main`.
pub fn remove_folders() {
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// A server process the bench started; killed (its process group too) when dropped.
pub struct Server {
    pub child: Child,
    /// The server's folder: configuration, database, `data/`, `jobs/`.
    pub dir: Folder,
    /// chatrun's SQLite database (None for other servers).
    pub db: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address")
}

/// Waits up to 30 s for `addr` to accept connections; panics with the server's log if the
/// server exits first.
pub async fn wait_for_port(addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("the server exited ({status}) before listening:\n{log}");
        }
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The chatrun under test: `CHATRUN_BIN`, else the release binary cargo built with the bench.
pub fn chatrun_bin() -> PathBuf {
    std::env::var_os("CHATRUN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_chatrun")))
}

/// Starts chatrun in a temporary folder with `jobs` (name, TOML text) in its `jobs/`, the rate
/// limit off, the Mattermost [`TOKEN`], short grace periods, and the configuration lines
/// `settings` (top-level keys, such as `workers = 4`) and `tables` (TOML tables, written after
/// `[mattermost]`). Returns once it listens.
pub async fn start_chatrun(
    jobs: &[(&str, &str)],
    settings: &str,
    tables: &str,
) -> (Server, SocketAddr) {
    start_chatrun_on(None, jobs, settings, tables).await
}

/// [`start_chatrun`] on the database `database_url` (a Postgres URL) instead of a SQLite file
/// of its own (`None`).
pub async fn start_chatrun_on(
    database_url: Option<&str>,
    jobs: &[(&str, &str)],
    settings: &str,
    tables: &str,
) -> (Server, SocketAddr) {
    let dir = Folder::new();
    let jobs_dir = dir.path().join("jobs");
    std::fs::create_dir(&jobs_dir).expect("jobs/");
    for (name, text) in jobs {
        std::fs::write(jobs_dir.join(format!("{name}.toml")), text)
            .unwrap_or_else(|e| panic!("{name}.toml: {e}"));
    }
    let addr = free_port();
    let config = dir.path().join("chatrun.toml");
    let d = dir.path().display();
    let database_url =
        database_url.map_or_else(|| format!("sqlite://{d}/chatrun.db"), String::from);
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\ndatabase_url = \"{database_url}\"\n\
             jobs_dir = \"{d}/jobs\"\ndata_dir = \"{d}/data\"\n\
             rate_limit_per_minute = 0\nshutdown_grace_secs = 1\nkill_grace_secs = 1\n\
             {settings}\n[mattermost]\ntokens = [\"{TOKEN}\"]\n{tables}"
        ),
    )
    .expect("chatrun.toml");
    let log = dir.path().join("chatrun.log");
    let log_file = std::fs::File::create(&log).expect("a log file");
    let mut child = Command::new(chatrun_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        // chatrun reads every CHATRUN_ variable as a setting, and has none by that name.
        .env_remove("CHATRUN_BIN")
        .stdout(log_file.try_clone().expect("a log file"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", chatrun_bin().display()));
    wait_for_port(addr, &mut child, &log).await;
    let db = database_url
        .starts_with("sqlite:")
        .then(|| dir.path().join("chatrun.db"));
    (Server { child, dir, db }, addr)
}

/// `n` in base 36, `width` digits: the distinct ids of the triggers a bench sends.
pub fn base36(mut n: u64, width: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = digits[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).expect("ASCII")
}
