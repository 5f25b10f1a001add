//! A throwaway Postgres cluster for the tests: started once per test process from the local
//! Postgres binaries, shared by every test of that process, with a fresh empty database for each
//! caller; stopped and deleted when the process exits, however it exits. Included by
//! `tests/store_suite.rs` and `tests/api/` through `#[path]`. Only std and the Postgres command-line
//! tools (`initdb`, `postgres`, `psql`), so a cluster needs no crate and no running service; it
//! does not install Postgres, tune it beyond throwaway settings, or clean databases between tests.

#![allow(dead_code)] // each including test crate uses a different part of it

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long initdb's cluster may take to accept connections before the tests fail.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The role every database belongs to (initdb's superuser, no password: `-A trust`).
const ROLE: &str = "chatrun";

/// The server's settings. Durability is worthless for a cluster deleted at exit: without it
/// commits are cheap.
const SETTINGS: [&str; 5] = [
    "listen_addresses=127.0.0.1",
    "max_connections=200",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
];

/// Set by [`durable`]: the cluster syncs its commits.
static DURABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the cluster, when it starts (call before the first [`database`]), sync its commits as
/// Postgres does by default: for the benchmarks, which compare it with SQLite syncing its own.
pub fn durable() {
    DURABLE.store(true, Ordering::Relaxed);
}

/// [`SETTINGS`], without the ones that skip syncs when [`durable`] was called.
fn settings() -> &'static [&'static str] {
    if DURABLE.load(Ordering::Relaxed) {
        &SETTINGS[..2]
    } else {
        &SETTINGS
    }
}

/// Runs the server and stops it when the test process is gone. Its stdin is a pipe whose only
/// writer is the test process, so EOF means that process has exited (passed, panicked, killed):
/// Rust runs no destructor for a static, and a `kill -0` poll fails across users (EPERM) and can
/// meet a reused pid. `$1` is the cluster's folder, the rest the server's command line.
const WATCHDOG: &str = r#"
dir=$1; shift
exec 3<&0
"$@" </dev/null >"$dir/log" 2>&1 3<&- &
pg=$!
# a fast shutdown at EOF; a server still up 10 s later is killed
(read -r line <&3; kill -INT "$pg"; n=0; while [ $n -lt 20 ]; do sleep 0.5; n=$((n + 1)); done
 kill -KILL "$pg") 2>/dev/null &
stopper=$!
wait "$pg"
# its late kill -KILL must not reach a process that reuses the pid
kill "$stopper" 2>/dev/null
# tells a server that died while starting from a slow one; the log stays until the test ends
touch "$dir/stopped"
read -r line <&3
rm -rf "$dir"
"#;

/// A fresh, empty database on the shared throwaway cluster: its URL
/// (`postgres://chatrun@127.0.0.1:PORT/NAME`), or `None` (after printing one line to stderr
/// saying how to enable these tests) when no Postgres binaries are installed and `CI` is not set.
///
/// Blocking but brief (one `psql` call; the first call also runs initdb and starts the server),
/// and it never touches a runtime, so async tests call it directly.
///
/// # Panics
///
/// With `CI` set (non-empty) and no binaries, since CI must never skip these tests; when the
/// cluster cannot start (the message holds the server's log) or the database cannot be created.
pub fn database() -> Option<String> {
    static CLUSTER: OnceLock<Result<Option<Cluster>, String>> = OnceLock::new();
    // A failed start is kept, so the next tests fail at once with its message instead of retrying.
    match CLUSTER.get_or_init(Cluster::start) {
        Ok(Some(cluster)) => Some(cluster.create_database().unwrap_or_else(|e| panic!("{e}"))),
        Ok(None) => None,
        Err(e) => panic!("{e}"),
    }
}

/// The running server of this test process.
struct Cluster {
    port: u16,
    psql: PathBuf,
    /// The write end of the watchdog's stdin, open until the process exits (statics never drop).
    alive: ChildStdin,
}

impl Cluster {
    /// Finds the binaries, runs initdb and starts the server; `None` when skipping.
    fn start() -> Result<Option<Cluster>, String> {
        let Some(bin) = find_bin() else {
            let missing = "no initdb, postgres and psql on PATH or in /usr/lib/postgresql/*/bin";
            if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) {
                return Err(format!(
                    "CI is set and must run the Postgres tests, but there is {missing}: \
                     .ci/run installs postgresql"
                ));
            }
            // Past the harness's output capture, once per process: a skip must be seen, not repeated.
            let _ = writeln!(
                std::io::stderr(),
                "Postgres tests skipped: {missing}; apt-get install postgresql to run them"
            );
            return Ok(None);
        };
        let dir = new_dir()?;
        let owner = init(&bin, &dir).inspect_err(|_| {
            // No watchdog owns the folder yet.
            let _ = fs::remove_dir_all(&dir);
        })?;
        serve(&bin, &dir, owner).map(Some)
    }

    /// Creates `t_<n>` and returns its URL.
    fn create_database(&self) -> Result<String, String> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!("t_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("create database {name}"))?;
        Ok(self.url(&name))
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs one statement through `psql`, failing with its error output.
    fn psql(&self, database: &str, sql: &str) -> Result<(), String> {
        let output = Command::new(&self.psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(self.url(database))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.psql.display()))?;
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "psql `{sql}` on the test cluster failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs initdb in `dir` (as the postgres user when we are root) and returns that user.
fn init(bin: &Path, dir: &Path) -> Result<Option<(u32, u32)>, String> {
    // The new folder's owner is our effective user: root, found without libc or a process.
    let created = fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let owner = if created.uid() == 0 {
        Some(postgres_user()?)
    } else {
        None
    };
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| format!("cannot give {} to the postgres user: {e}", dir.display()))?;
    }
    let mut initdb = Command::new(bin.join("initdb"));
    initdb.arg("--pgdata").arg(dir.join("data"));
    initdb.arg(format!("--username={ROLE}"));
    initdb.args(["--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"]);
    let output = as_owner(&mut initdb, dir, owner)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}/initdb: {e}", bin.display()))?;
    if !output.status.success() {
        return Err(format!(
            "initdb for the test cluster failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(owner)
}

/// Starts the server of `dir` under the watchdog and waits until it answers.
fn serve(bin: &Path, dir: &Path, owner: Option<(u32, u32)>) -> Result<Cluster, String> {
    let port = free_port()?;
    let mut watchdog = Command::new("sh");
    watchdog
        .args(["-c", WATCHDOG, "sh"])
        .arg(dir)
        .arg(bin.join("postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args(settings().iter().flat_map(|setting| ["-c", setting]));
    let mut child = as_owner(&mut watchdog, dir, owner)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of the terminal's process group: Ctrl-C must end the tests, not the cleanup.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let alive = child.stdin.take().expect("stdin was piped");
    let cluster = Cluster {
        port,
        psql: bin.join("psql"),
        alive,
    };
    wait_ready(&cluster, dir)?;
    Ok(cluster)
}

/// Polls until the server answers `select 1`, it stops, or [`READY_TIMEOUT`] passes.
fn wait_ready(cluster: &Cluster, dir: &Path) -> Result<(), String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, cluster.port));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if dir.join("stopped").exists() {
            return Err(format!(
                "the test cluster's server stopped while starting:\n{}",
                log_tail(dir)
            ));
        }
        // The cheap probe first: psql only once something listens.
        let listening = TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok();
        if listening && cluster.psql("postgres", "select 1").is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the test cluster did not answer on {address} within {READY_TIMEOUT:?}:\n{}",
                log_tail(dir)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `command` in `dir`, as the postgres user when we are root (postgres refuses root).
fn as_owner<'a>(
    command: &'a mut Command,
    dir: &Path,
    owner: Option<(u32, u32)>,
) -> &'a mut Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    // A cwd the postgres user can read: initdb fails on one it cannot.
    command.current_dir(dir)
}

/// The uid and gid of the `postgres` system user.
fn postgres_user() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Option<u32> {
        let output = Command::new("id").args([flag, "postgres"]).output().ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        text.trim().parse().ok().filter(|_| output.status.success())
    };
    id("-u").zip(id("-g")).ok_or_else(|| {
        "the tests run as root, which the postgres server refuses, and there is no `postgres` user \
         to run it as: `apt-get install postgresql` creates one"
            .to_string()
    })
}

/// The folder holding `initdb`, `postgres` and `psql`: the one of the `initdb` on PATH (through
/// its symlinks), else the newest Debian `/usr/lib/postgresql/<version>/bin`.
fn find_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        let initdb = std::env::split_paths(&path)
            .map(|d| d.join("initdb"))
            .find(|p| executable(p))?;
        Some(fs::canonicalize(initdb).ok()?.parent()?.to_path_buf())
    });
    let complete = |bin: &PathBuf| ["initdb", "postgres", "psql"].map(|t| bin.join(t));
    on_path
        .into_iter()
        .chain(newest_debian_bin())
        .find(|bin| complete(bin).iter().all(|tool| executable(tool)))
}

/// The `bin` of the highest `/usr/lib/postgresql/<version>` that has an `initdb`.
fn newest_debian_bin() -> Option<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut found = Vec::new();
    for entry in fs::read_dir(root).ok()?.flatten() {
        let bin = entry.path().join("bin");
        // Numerically, so 10 is newer than 9.6.
        let version: Option<Vec<u32>> = entry
            .file_name()
            .to_str()
            .and_then(|name| name.split('.').map(|part| part.parse().ok()).collect());
        if let Some(version) = version.filter(|_| executable(&bin.join("initdb"))) {
            found.push((version, bin));
        }
    }
    found.into_iter().max().map(|(_, bin)| bin)
}

fn executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A new, empty folder for one cluster (data, socket, log) in the system's temp folder.
fn new_dir() -> Result<PathBuf, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    // The pid keeps live processes apart, the time a folder a crashed one left behind.
    let dir = std::env::temp_dir().join(format!("chatrun-pg-{}-{nanos}", std::process::id()));
    fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

/// The server log's last lines, for a failure message.
fn log_tail(dir: &Path) -> String {
    let log = fs::read_to_string(dir.join("log")).unwrap_or_else(|e| format!("(no log: {e})"));
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
