//! The processes a killed chatrun left behind. Every step process gets `CHATRUN_RUN_ID` and
//! `CHATRUN_OWNER` (the lease owner, `host:pid#worker`) in its environment, and its children
//! inherit them, even those that left the step's process group. A restarted chatrun finds them
//! by those two values and kills them with their process groups: nothing else is touched, and a
//! reused process or group id cannot be hit by mistake.

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// This process as a lease or claim owner: `host:pid#part` (`part`: which worker, or `outbox`),
/// so that a restarted chatrun can tell its dead predecessor's leases and claims from a live
/// neighbour's.
pub fn owner(part: impl std::fmt::Display) -> String {
    format!("{}:{}#{part}", hostname(), std::process::id())
}

/// This machine's host name (`chatrun` when it has none): the kernel's, as `hostname` prints
/// it (macOS has no /etc/hostname), else /etc/hostname's.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "chatrun".into())
}

/// True when `owner` (`host:pid#part`) names a process of this host that no longer exists.
pub fn owner_is_dead_here(owner: &str) -> bool {
    let Some((owner_host, rest)) = owner.split_once(':') else {
        return false;
    };
    let Some(pid) = rest.split('#').next().and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    if owner_host != hostname() || pid == i32::try_from(std::process::id()).unwrap_or(0) {
        return false;
    }
    matches!(
        kill(Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Kills every process of run `run_id` started by `owner`, and their process groups. Returns
/// how many processes it found.
pub fn kill_run(run_id: i64, owner: &str) -> usize {
    kill_matching(&[
        format!("CHATRUN_RUN_ID={run_id}"),
        format!("CHATRUN_OWNER={owner}"),
    ])
}

/// Kills every process whose environment holds every marker, and their process groups.
/// Returns how many processes it found.
fn kill_matching(markers: &[String]) -> usize {
    let mut found = std::collections::HashSet::new();
    // A step may still be forking while we look: look again until nothing is left.
    for _ in 0..10 {
        let pids = matching(markers);
        if pids.is_empty() {
            break;
        }
        for (pid, pgid) in pids {
            found.insert(pid);
            if let Some(pgid) = pgid {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    found.len()
}

/// Kills the processes (and their process groups) that dead processes of this host left
/// running as `part` (`host:pid#part` in their `CHATRUN_OWNER`): what a killed `chatrun agent`
/// left behind, found by the next one started on the host. Returns how many it found.
pub fn kill_orphans_of(part: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let suffix = format!("#{part}");
    let mut owners: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            environ.split(|b| *b == 0).find_map(|var| {
                let owner = std::str::from_utf8(var.strip_prefix(b"CHATRUN_OWNER=")?).ok()?;
                owner.ends_with(&suffix).then(|| owner.to_string())
            })
        })
        .filter(|owner| owner_is_dead_here(owner))
        .collect();
    owners.sort();
    owners.dedup();
    owners
        .iter()
        .map(|owner| kill_matching(&[format!("CHATRUN_OWNER={owner}")]))
        .sum()
}

/// The live processes (not zombies) whose environment holds every marker: `(pid, pgid)`.
fn matching(markers: &[String]) -> Vec<(i32, Option<i32>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                markers.iter().all(|marker| {
                    environ
                        .split(|b| *b == 0)
                        .any(|var| var == marker.as_bytes())
                })
            })
        })
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (state, pgid) = state_and_group(&stat)?;
            (state != "Z").then_some((pid, pgid))
        })
        .collect()
}

/// The state and process group in a `/proc/<pid>/stat` line: `pid (comm) state ppid pgrp …`,
/// where `comm` may hold spaces and parentheses.
fn state_and_group(stat: &str) -> Option<(&str, Option<i32>)> {
    let (_, after) = stat.rsplit_once(')')?;
    let mut fields = after.split_whitespace();
    let state = fields.next()?;
    Some((state, fields.nth(1).and_then(|g| g.parse().ok())))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn only_dead_owners_of_this_host_are_dead() {
        let me = owner(0);
        assert!(!owner_is_dead_here(&me));
        assert!(!owner_is_dead_here("elsewhere:1#0"));
        assert!(!owner_is_dead_here("garbage"));
        // pid_max is at most 2^22: this pid cannot exist.
        assert!(owner_is_dead_here(&format!("{}:9999999#0", hostname())));
        assert!(owner_is_dead_here(&format!(
            "{}:9999999#outbox",
            hostname()
        )));
    }

    #[test]
    fn the_state_and_group_are_read_after_the_last_parenthesis() {
        assert_eq!(
            state_and_group("12 (sleep) S 1 12 12 0 -1"),
            Some(("S", Some(12)))
        );
        assert_eq!(
            state_and_group("13 (a) b (c)) R 1 77 13 0"),
            Some(("R", Some(77)))
        );
        assert_eq!(state_and_group("garbage"), None);
    }

    #[test]
    fn only_the_processes_of_that_run_and_owner_are_killed() {
        let spawn = |run: &str, owner: &str| {
            std::process::Command::new("sleep")
                .arg("30")
                .process_group(0)
                .env("CHATRUN_RUN_ID", run)
                .env("CHATRUN_OWNER", owner)
                .spawn()
                .unwrap()
        };
        let owner = "test-host:1#0";
        let mut ours = spawn("41", owner);
        let mut other_run = spawn("42", owner);
        let mut other_owner = spawn("41", "test-host:2#0");

        assert_eq!(kill_run(41, owner), 1);

        assert!(!ours.wait().unwrap().success());
        assert!(other_run.try_wait().unwrap().is_none());
        assert!(other_owner.try_wait().unwrap().is_none());
        for mut child in [other_run, other_owner] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}
