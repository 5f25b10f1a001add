//! Group commit: many writes made durable by one `fdatasync` of the write-ahead log.
//!
//! The database runs in WAL mode with `synchronous = NORMAL`, so a commit writes its pages to
//! the log without waiting for the disk. A write that chatrun acts on outside the database
//! then waits on [`Flusher::flush`] before it returns: a trigger's run before the
//! acknowledgement, a claim before the step's process starts, a delivery's claim before it is
//! sent, a cancellation before the user is told. The first waiter syncs the log file, and every
//! write committed before that sync began is covered by it, so writers that committed meanwhile
//! share the next one, and the writes nobody acts on at once (step progress, results, lease
//! renewals) are carried by the next sync. Nothing is acknowledged before it is on disk, as
//! with `synchronous = FULL`, but N concurrent triggers cost one sync instead of N.
//!
//! Why this holds: SQLite appends a commit's frames to `<database>-wal` with `write()` before
//! the commit returns; `fdatasync` on any descriptor of that file flushes all of its written
//! pages (and its size); SQLite itself syncs the log before a checkpoint copies it into the
//! database, and the database after. A power cut may lose commits nobody waited for, never one
//! that returned.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

/// Syncs the write-ahead log for the writes committed before each call.
#[derive(Debug)]
pub struct Flusher {
    /// The log file; `None` when the database is not a WAL file (in memory), where commits
    /// are synced by SQLite itself or not at all.
    wal: Option<PathBuf>,
    /// Tickets handed out: one per [`Flusher::flush`] call, taken after its commit.
    requested: AtomicU64,
    /// Every ticket up to this one is on disk.
    flushed: AtomicU64,
    /// One sync at a time; waiters queue here in order.
    syncing: Mutex<()>,
    /// Syncs done, and the time they took (µs), for the figures.
    syncs: AtomicU64,
    sync_micros: AtomicU64,
}

impl Flusher {
    /// Flushes `wal` (the database file's path with `-wal` appended), or nothing.
    pub fn new(wal: Option<PathBuf>) -> Self {
        Self {
            wal,
            requested: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            syncing: Mutex::new(()),
            syncs: AtomicU64::new(0),
            sync_micros: AtomicU64::new(0),
        }
    }

    /// Returns once every write committed before this call is on disk.
    ///
    /// # Errors
    ///
    /// The log could not be opened or synced: what was committed may not survive a power cut.
    pub async fn flush(&self) -> io::Result<()> {
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = self.syncing.lock().await;
        if self.flushed.load(Ordering::SeqCst) >= ticket {
            // A sync that began after our commit has finished while we queued.
            return Ok(());
        }
        // Every ticket handed out so far belongs to a commit that has already happened.
        let covered = self.requested.load(Ordering::SeqCst);
        let wal = wal.clone();
        let began = std::time::Instant::now();
        tokio::task::spawn_blocking(move || std::fs::File::open(wal)?.sync_data())
            .await
            .map_err(io::Error::other)??;
        self.flushed.fetch_max(covered, Ordering::SeqCst);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let took = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.sync_micros.fetch_add(took, Ordering::Relaxed);
        Ok(())
    }

    /// How many writes waited for a sync, how many syncs there were and how long they took.
    pub fn counts(&self) -> FlushCounts {
        FlushCounts {
            waits: self.requested.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            sync_time: std::time::Duration::from_micros(self.sync_micros.load(Ordering::Relaxed)),
        }
    }
}

/// What `Flusher::counts` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushCounts {
    /// Writes that waited for a sync.
    pub waits: u64,
    /// Syncs done.
    pub syncs: u64,
    /// Their total time.
    pub sync_time: std::time::Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_flushes_share_syncs_and_a_missing_log_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("t.db-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let flusher = std::sync::Arc::new(Flusher::new(Some(wal.clone())));
        let waiters: Vec<_> = (0..64)
            .map(|_| {
                let flusher = flusher.clone();
                tokio::spawn(async move { flusher.flush().await })
            })
            .collect();
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
        assert_eq!(flusher.flushed.load(Ordering::SeqCst), 64);
        let counts = flusher.counts();
        assert_eq!(counts.waits, 64);
        assert!(
            counts.syncs < 8,
            "64 waiting writes took {} syncs",
            counts.syncs
        );

        std::fs::remove_file(&wal).unwrap();
        assert_eq!(
            flusher.flush().await.unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "a write that cannot be made durable is not reported as done"
        );
        Flusher::new(None).flush().await.unwrap();
    }
}
