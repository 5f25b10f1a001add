//! The processes a crashed chatrun left behind. Each step runs in its own process group, whose
//! id is stored while it runs; a restarted chatrun kills that group, but only after checking
//! that its processes are still the run's (they carry `CHATRUN_RUN_ID`), since a process group
//! id can be reused once the group is gone.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Kills process group `pgid` when one of its processes belongs to run `run_id`. True when it
/// did.
pub fn kill_group(pgid: i32, run_id: i64) -> bool {
    let marker = format!("CHATRUN_RUN_ID={run_id}");
    let ours = members(pgid).into_iter().any(|pid| {
        std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
            environ
                .split(|b| *b == 0)
                .any(|var| var == marker.as_bytes())
        })
    });
    ours && killpg(Pid::from_raw(pgid), Signal::SIGKILL).is_ok()
}

/// The processes whose process group is `pgid`.
fn members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| group_of(&stat))
                == Some(pgid)
        })
        .collect()
}

/// The process group in a `/proc/<pid>/stat` line: `pid (comm) state ppid pgrp …`, where
/// `comm` may hold spaces and parentheses.
fn group_of(stat: &str) -> Option<i32> {
    let (_, after) = stat.rsplit_once(')')?;
    after.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn the_group_is_read_after_the_last_parenthesis() {
        assert_eq!(group_of("12 (sleep) S 1 12 12 0 -1"), Some(12));
        assert_eq!(group_of("13 (a) b (c)) R 1 77 13 0"), Some(77));
        assert_eq!(group_of("garbage"), None);
    }

    #[test]
    fn a_group_that_is_not_the_runs_is_left_alone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .env("CHATRUN_RUN_ID", "41")
            .spawn()
            .unwrap();
        let pgid = i32::try_from(child.id()).unwrap();
        assert!(!kill_group(pgid, 42), "another run's marker");
        assert!(child.try_wait().unwrap().is_none());
        assert!(kill_group(pgid, 41));
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}
