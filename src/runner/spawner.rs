//! Starting a step's process at the jobs' lower CPU priority, with no extra exec.
//!
//! Linux keeps the nice value per thread, and a new process starts with the value of the
//! thread that forked it. So a step is spawned by a thread that lowered its own priority once,
//! when it started: the step's program is executed directly, at the lower priority from its
//! first instruction, and whatever it forks (`make -j`, `sh -c`) inherits it. There is one such
//! thread per nice value, started on first use; it blocks on its queue between spawns.
//!
//! N.B. Why not the alternatives: `setpriority` on the child's pid after the spawn races with a
//! step that forks at once; a `pre_exec` hook needs `unsafe`, which this crate forbids; and
//! wrapping the argv in coreutils' `nice` costs one more exec per step (measured in
//! docs/performance.md, "Figures behind the code").

use std::collections::BTreeMap;
use std::io;
use std::sync::{Mutex, PoisonError, mpsc};

use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A command to start, the runtime its child belongs to, and where its result goes.
type Request = (Command, Handle, oneshot::Sender<io::Result<Child>>);

/// Starts `command` with `nice` added to the server's nice value (0 starts it as it is).
///
/// # Errors
///
/// The spawn failed (no such program, no permission).
pub async fn spawn(mut command: Command, nice: u8) -> io::Result<Child> {
    if nice == 0 {
        return command.spawn();
    }
    let gone = || io::Error::other("the thread that starts steps stopped");
    let (reply, child) = oneshot::channel();
    let mut request = (command, Handle::current(), reply);
    // A thread that stopped (only a bug could make it) is replaced, once per spawn.
    for _ in 0..2 {
        match spawner(nice, false).send(request) {
            Ok(()) => return child.await.map_err(|_| gone())?,
            Err(mpsc::SendError(back)) => {
                spawner(nice, true);
                request = back;
            }
        }
    }
    Err(gone())
}

/// The queue of the thread that spawns at `nice`, started on first use, or anew when `restart`.
fn spawner(nice: u8, restart: bool) -> mpsc::Sender<Request> {
    static SPAWNERS: Mutex<BTreeMap<u8, mpsc::Sender<Request>>> = Mutex::new(BTreeMap::new());
    let mut spawners = SPAWNERS.lock().unwrap_or_else(PoisonError::into_inner);
    if restart {
        spawners.remove(&nice);
    }
    spawners
        .entry(nice)
        .or_insert_with(|| {
            let (tx, rx) = mpsc::channel::<Request>();
            std::thread::Builder::new()
                .name(format!("spawn-nice-{nice}"))
                .spawn(move || {
                    lower_own_priority(nice);
                    for (mut command, runtime, reply) in rx {
                        // The child's pipes and exit status are watched by the caller's runtime.
                        let _runtime = runtime.enter();
                        let spawned = command.spawn();
                        // With the command go its copies of the step's output pipe.
                        drop(command);
                        let _ = reply.send(spawned);
                    }
                })
                .expect("a thread can be started");
            tx
        })
        .clone()
}

/// Adds `nice` to this thread's nice value (at most 19). Raising it needs no privilege; when
/// it fails all the same, steps run at the server's priority and this is logged.
fn lower_own_priority(nice: u8) {
    let thread = Some(rustix::thread::gettid());
    let lowered = rustix::process::getpriority_process(thread).and_then(|own| {
        rustix::process::setpriority_process(thread, (own + i32::from(nice)).min(19))
    });
    if let Err(err) = lowered {
        tracing::warn!(error = %err, nice, "cannot lower the priority of steps: they run at the server's");
    }
}
