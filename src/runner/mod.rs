//! The runner: one step as a child process, its output drained, its whole process tree
//! stopped on timeout or cancellation.
//!
//! - argv is executed directly, never through a shell; chat text never reaches it here.
//! - Each step gets its own process group (`process_group(0)`), so `killpg` reaches children of
//!   children. A timeout or cancel sends SIGTERM to the group, waits the grace period, then
//!   SIGKILL: a step that ignores SIGTERM, or closed its output and sleeps, ends all the same.
//! - A step is over when its own process exits; its exit status is its result. Whatever it left
//!   running in its group (`cmd &`, a build daemon) is killed then with SIGKILL, so no pipe a
//!   background child holds open keeps the step, or the run, waiting until the timeout.
//! - Not contained: a process that leaves the group (`setsid`, as daemons do) escapes `killpg`
//!   and keeps running. If it holds the output pipes, reading stops 5 s after the step ended,
//!   with a note in the log. Containing those would need a cgroup per run.
//! - stdout and stderr are one pipe, as in a terminal: the log has the lines in the order the
//!   step wrote them, and one reader drains both (two pipes read one after the other can
//!   deadlock a child blocked on the other, as ripgrep learnt). Its chunks go to one
//!   [`LogSink`].
//! - Steps run at a lower CPU priority than the server (`job_nice` added to its nice value):
//!   they are spawned by a thread that runs at that priority, so the step's program and whatever
//!   it forks inherit it from the start ([`spawner`]).
//! - The environment is the server's, minus every `CHATRUN_*` variable (the configuration, with
//!   its secrets), plus the step's `env` and the run's `CHATRUN_RUN_ID`, `CHATRUN_JOB`,
//!   `CHATRUN_USER`, `CHATRUN_CHANNEL`.
//!
//! A failed step is data ([`StepOutcome`]), not an error.

pub mod orphans;
pub mod spawner;

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::catalog::StepDef;
use crate::logs::LogSink;

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Exit status 0.
    Succeeded,
    /// Another exit status, or killed by a signal nobody sent on purpose.
    Failed {
        /// The exit code, when it exited.
        code: Option<i32>,
        /// The signal, when one killed it.
        signal: Option<i32>,
    },
    /// The run's deadline passed.
    TimedOut,
    /// The cancel token fired (shutdown, lost lease).
    Cancelled,
    /// It could not be started.
    SpawnFailed {
        /// Why, for people.
        reason: String,
    },
}

/// What bounds a step: its CPU priority, and how its process tree is stopped (SIGTERM to the
/// group, then SIGKILL after the grace period).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// When the whole run must be over.
    pub deadline: Instant,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Added to the server's nice value for the step and everything it starts (0 to 19; 0
    /// leaves the priority alone).
    pub nice: u8,
}

/// Runs one step to its end, writing its output to `log`.
///
/// # Cancel safety
///
/// Dropping the future kills the direct child (`kill_on_drop`); cancel `cancel` instead to stop
/// the whole group gracefully.
pub async fn run_step(
    step: &StepDef,
    env: &[(String, String)],
    limits: Limits,
    log: &mut LogSink,
    cancel: &CancellationToken,
) -> StepOutcome {
    log.begin_step();
    if !step.workdir.is_dir() {
        return StepOutcome::SpawnFailed {
            // The path is the server's: in the log, not in chat or on the page.
            reason: {
                tracing::warn!(workdir = %step.workdir.display(), step = %step.name,
                    "a step's working directory does not exist");
                "its working directory (`workdir`) does not exist on this server; chatrun's log \
                 names it"
                    .into()
            },
        };
    }
    // Both ends close-on-exec: the step gets its copies as 1 and 2, and no other step started
    // meanwhile gets one (which would hold the pipe open).
    let pipe = std::io::pipe().and_then(|(output, stdout)| {
        let stderr = stdout.try_clone()?;
        Ok((output, stdout, stderr))
    });
    let (output, stdout, stderr) = match pipe {
        Ok(ends) => ends,
        Err(err) => {
            return StepOutcome::SpawnFailed {
                reason: format!("cannot make a pipe for its output: {err}"),
            };
        }
    };
    let mut command = Command::new(&step.run[0]);
    command
        .args(&step.run[1..])
        .current_dir(&step.workdir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CHATRUN_") {
            command.env_remove(name);
        }
    }
    command.envs(&step.env);
    command.envs(env.iter().map(|(k, v)| (k, v)));

    let mut child = match spawner::spawn(command, limits.nice).await {
        Ok(child) => child,
        Err(err) => {
            return StepOutcome::SpawnFailed {
                reason: format!("cannot start `{}`: {err}", step.run[0]),
            };
        }
    };
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);

    // Chunks in flight between the pipe and the log: at most 4 x READ_BYTES in memory. (The
    // command, and with it our copies of the pipe's writing end, is gone: the pipe ends when
    // the step and whatever it left running have closed theirs.)
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    widen(&output);
    let reader = match tokio::net::unix::pipe::Receiver::from_owned_fd(output.into()) {
        Ok(pipe) => tokio::spawn(drain(pipe, tx)),
        Err(err) => {
            signal_group(group, Signal::SIGKILL);
            let _ = child.wait().await;
            return StepOutcome::SpawnFailed {
                reason: format!("cannot read its output: {err}"),
            };
        }
    };

    let (status, stopped_for) =
        wait_draining(&mut child, group, limits, log, &mut rx, cancel).await;
    // Whatever the step left behind in its group goes with it; then the pipes close.
    signal_group(group, Signal::SIGKILL);
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = rx.recv().await {
            log.write_step(&chunk).await;
        }
    })
    .await;
    log.end_step().await;
    if drained.is_err() {
        // A descendant left the group (setsid) and holds the pipe open: stop reading.
        reader.abort();
        log.note(
            "output still open after the step ended (a process left its group); stopped reading",
        )
        .await;
    }

    match (stopped_for, status) {
        (Some(Stop::Timeout), _) => StepOutcome::TimedOut,
        (Some(Stop::Cancel), _) => StepOutcome::Cancelled,
        (None, Ok(status)) if status.success() => StepOutcome::Succeeded,
        (None, Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            StepOutcome::Failed {
                code: status.code(),
                signal: status.signal(),
            }
        }
        (None, Err(err)) => StepOutcome::SpawnFailed {
            reason: format!("lost track of the process: {err}"),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Timeout,
    Cancel,
}

/// Waits for the child while writing its output; on deadline or cancel, stops its group.
async fn wait_draining(
    child: &mut Child,
    group: Option<Pid>,
    limits: Limits,
    log: &mut LogSink,
    rx: &mut mpsc::Receiver<Vec<u8>>,
    cancel: &CancellationToken,
) -> (std::io::Result<ExitStatus>, Option<Stop>) {
    let mut stopping: Option<(Stop, Instant)> = None;
    let mut open = true;
    loop {
        let kill_at = stopping.map(|(_, at)| at);
        let flush_at = log.flush_due();
        tokio::select! {
            status = child.wait() => return (status, stopping.map(|(why, _)| why)),
            chunk = rx.recv(), if open => match chunk {
                Some(chunk) => log.write_step(&chunk).await,
                None => open = false,
            },
            () = tokio::time::sleep_until(limits.deadline), if stopping.is_none() => {
                log.note("timeout: stopping the step's processes").await;
                signal_group(group, Signal::SIGTERM);
                stopping = Some((Stop::Timeout, Instant::now() + limits.kill_grace));
            }
            () = cancel.cancelled(), if stopping.is_none() => {
                log.note("cancelled: stopping the step's processes").await;
                signal_group(group, Signal::SIGTERM);
                stopping = Some((Stop::Cancel, Instant::now() + limits.kill_grace));
            }
            () = sleep_until_opt(flush_at) => log.flush().await,
            () = sleep_until_opt(kill_at) => {
                signal_group(group, Signal::SIGKILL);
                if let Some((why, _)) = stopping {
                    stopping = Some((why, Instant::now() + Duration::from_secs(3600)));
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group {
        // ESRCH (the group is already gone) is the normal case after a clean exit.
        let _ = killpg(group, signal);
    }
}

/// The most bytes read from a pipe at once.
const READ_BYTES: usize = 256 * 1024;

/// Asks for a pipe of READ_BYTES: a step that prints fast is then read in a quarter as many
/// chunks as with Linux's 64 KiB (fewer wake-ups, writes and allocations). Best effort: a
/// system whose `fs.pipe-max-size` is lower keeps the default.
fn widen(pipe: &impl std::os::fd::AsFd) {
    let size = i32::try_from(READ_BYTES).unwrap_or(i32::MAX);
    let _ = nix::fcntl::fcntl(pipe.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(size));
}

/// Sends what `pipe` gives until it ends. Each chunk is read into a buffer of its own, sent as
/// it is (not copied, not zeroed first); the buffers start small and grow to READ_BYTES for a
/// step that fills them, since most steps print little.
async fn drain(mut pipe: impl AsyncReadExt + Unpin, tx: mpsc::Sender<Vec<u8>>) {
    let mut size = 4096;
    loop {
        let mut buf = Vec::with_capacity(size);
        match pipe.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if n == size {
                    size = (size * 4).min(READ_BYTES);
                }
                if tx.send(buf).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn step(script: &str) -> StepDef {
        StepDef {
            name: "s".into(),
            run: vec!["sh".into(), "-c".into(), script.into()],
            workdir: PathBuf::from("/tmp"),
            env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
            ..StepDef::default()
        }
    }

    fn limits(secs: u64) -> Limits {
        Limits {
            deadline: Instant::now() + Duration::from_secs(secs),
            kill_grace: Duration::from_millis(500),
            nice: 10,
        }
    }

    async fn run(def: &StepDef, secs: u64) -> (StepOutcome, crate::logs::LogSummary) {
        run_with(def, limits(secs)).await
    }

    /// Runs `def` within `limits` (with `CHATRUN_RUN_ID=7`): how it ended, and its log.
    async fn run_with(def: &StepDef, limits: Limits) -> (StepOutcome, crate::logs::LogSummary) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogSink::create(
            &dir.path().join("log"),
            crate::logs::DEFAULT_MAX_LOG_BYTES,
            false,
        )
        .await;
        let env = vec![("CHATRUN_RUN_ID".to_string(), "7".to_string())];
        let outcome = run_step(def, &env, limits, &mut log, &CancellationToken::new()).await;
        (outcome, log.finish().await.0)
    }

    #[tokio::test]
    async fn captures_stdout_and_stderr_with_the_step_environment() {
        let (outcome, log) = run(
            &step("echo $GREETING run $CHATRUN_RUN_ID; echo oops >&2"),
            10,
        )
        .await;
        assert_eq!(outcome, StepOutcome::Succeeded);
        assert!(log.head.contains("hi run 7\n"), "{log:?}");
        assert!(log.head.contains("oops\n"), "{log:?}");
    }

    #[tokio::test]
    async fn stdout_and_stderr_keep_the_order_they_were_written_in() {
        // Through two pipes, the reader could take either first; through one, never.
        let script = "for i in 1 2 3 4 5; do echo out $i; echo err $i >&2; done";
        for nice in [10, 0] {
            let (outcome, log) = run_with(&step(script), Limits { nice, ..limits(10) }).await;
            assert_eq!(outcome, StepOutcome::Succeeded);
            let head = log.head;
            let expected: String = (1..=5).map(|i| format!("out {i}\nerr {i}\n")).collect();
            assert_eq!(head, expected, "nice {nice}");
        }
    }

    #[tokio::test]
    async fn reports_the_exit_code_of_a_failing_step() {
        let (outcome, _) = run(&step("exit 3"), 10).await;
        assert_eq!(
            outcome,
            StepOutcome::Failed {
                code: Some(3),
                signal: None
            }
        );
    }

    #[tokio::test]
    async fn a_missing_program_or_folder_is_a_spawn_failure() {
        let mut def = step("true");
        def.run = vec!["/no/such/program".into()];
        let (outcome, _) = run(&def, 10).await;
        assert!(
            matches!(outcome, StepOutcome::SpawnFailed { reason } if reason.contains("/no/such/program"))
        );
        let mut def = step("true");
        def.workdir = PathBuf::from("/no/such/dir");
        let (outcome, _) = run(&def, 10).await;
        assert!(
            matches!(outcome, StepOutcome::SpawnFailed { reason } if reason.contains("does not exist"))
        );
    }

    /// The nice value of this test's thread (field 19 of `/proc/thread-self/stat`; the fields
    /// after `(comm)` start at the 3rd).
    fn own_niceness() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 1..];
        after_comm
            .split_whitespace()
            .nth(16)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn a_step_and_what_it_forks_run_at_the_configured_niceness() {
        let own = own_niceness();
        let script = step("echo step $(nice); sh -c 'echo child $(nice)'");
        for nice in [10, 0] {
            let (outcome, log) = run_with(&script, Limits { nice, ..limits(10) }).await;
            assert_eq!(outcome, StepOutcome::Succeeded);
            let head = log.head;
            let expected = (own + i64::from(nice)).min(19);
            assert!(
                head.contains(&format!("step {expected}\nchild {expected}\n")),
                "nice {nice}: {head:?}"
            );
        }
        assert_eq!(
            own_niceness(),
            own,
            "the server's own threads keep their priority"
        );
    }

    #[tokio::test]
    async fn cancel_stops_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogSink::create(
            &dir.path().join("log"),
            crate::logs::DEFAULT_MAX_LOG_BYTES,
            false,
        )
        .await;
        let cancel = CancellationToken::new();
        cancel.cancel();
        let outcome = run_step(&step("sleep 30"), &[], limits(60), &mut log, &cancel).await;
        assert_eq!(outcome, StepOutcome::Cancelled);
    }
}
