//! A run's output: the run's log file, capped at `max_log_bytes`, and a head and tail in memory
//! for the database. Nothing here grows with the output.
//!
//! Output that fits under the cap is stored whole. Beyond it, the file keeps the first half (the
//! head) and the last half (the tail) with one line between them, `[chatrun: N bytes omitted]`,
//! N being exactly the bytes left out. How, with bounded memory and disk, while pages follow the
//! log live:
//!
//! - A run whose whole output fits in the database's head (16 KiB of valid UTF-8), and that is
//!   over before its first flush, gets no file: its log is that head ([`RunLog`]). Making a file
//!   cost more than running `true` (an inode and a directory entry, per run). Otherwise the file
//!   is made at the first flush, or when the output outgrows the head, with the head so far.
//! - The head goes to `<run>.log` as it comes.
//! - The output after it is held in memory, its last `max_log_bytes / 2` bytes (5 MiB by
//!   default), when that is at most 8 MiB. Every 100 ms its newest bytes, up to a segment's
//!   length, are mirrored to segment files in `<run>.log.parts/` for live readers: a step
//!   printing slower than that is mirrored whole, a flood by its latest output, so a flood is
//!   not written to disk only to be deleted (docs/performance.md has what that cost).
//! - With a larger cap, the output after the head is written whole to the segment files.
//! - Segments are named `<offset>-<lines>` (where the first byte is in the output, and the
//!   newlines before it) and are a sixteenth of the cap long (at most 1 MiB). A segment is
//!   deleted once the newer ones hold the tail, so the files never hold more than the cap plus
//!   one segment.
//! - When the run ends, [`LogSink::finish`] appends to `<run>.log` all the output after the head
//!   (when it fitted) or the marker line and the tail, from memory or the segments, and removes
//!   the segments.
//! - [`read_log`] and [`count_lines`] serve `<run>.log` followed by the segments as one log,
//!   addressed by offsets in the output as printed. For a finished run (no segments) that is
//!   just the file. Where a part is not kept, the reader jumps to the next one and says so
//!   (`start` past the asked offset).
//!
//! In memory besides: the database's head (16 KiB) and tail (up to 96 KiB before trimming), the
//! current step's tail (up to 16 KiB), output held back for secret masking (64 KiB and a read)
//! and the write buffers. Writes are flushed every 100 ms, not after every read.
//!
//! Counts: a run's *printed* bytes and lines are those of its whole output (chatrun's notes
//! included, secrets already masked); what is *stored* is the file. Line numbers (`#L123`) are
//! numbers in the printed output, so a line keeps its number whether the page shows it live,
//! from the head or from the tail.

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::time::Instant;

mod mask;
mod read;
mod rows;
mod sink;
mod store;

pub use mask::{MASK, mask_secrets};
use mask::{masked, safe_cut};
pub use read::{RunLog, count_lines, read_log};
pub use rows::{ChunkTarget, MAX_DATABASE_LOG_BYTES};
pub use sink::LogSink;
pub use store::{Follow, LogStore};

/// Bytes kept from the start of the output, for the database.
pub const HEAD_BYTES: usize = 16 * 1024;
/// Bytes kept from the end of the output, for the database.
pub const TAIL_BYTES: usize = 48 * 1024;

/// The default cap of a run's log file: 10 MiB.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;
/// The smallest cap: room for the database's head and tail on either side of the marker.
pub const MIN_MAX_LOG_BYTES: u64 = 64 * 1024;

/// Room left for the marker line (a newline, `[chatrun: ` 20 digits ` bytes omitted]`, a newline).
const MARKER_ROOM: u64 = 64;
/// Bytes gathered before a write to a file.
const WRITE_BUFFER: usize = 64 * 1024;
/// The longest segment file of the tail.
const MAX_SEGMENT_BYTES: u64 = 1024 * 1024;
/// The longest tail held in memory: caps up to twice this (16 MiB) keep their tail in memory.
const MEMORY_TAIL_BYTES: u64 = 8 * 1024 * 1024;

/// The line that stands for the output left out of a capped log.
pub fn marker(omitted: u64) -> String {
    format!("[chatrun: {omitted} bytes omitted]")
}

/// How a log file is capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// The most bytes the file holds.
    pub max: u64,
    /// Bytes kept from the start of the output.
    pub head: u64,
    /// Bytes kept from the end, when the output did not fit.
    pub tail: u64,
    /// Length of one segment file of the tail.
    segment: u64,
    /// Whether the tail is held in memory (and mirrored to the segments for live readers)
    /// rather than written whole to the segments.
    in_memory: bool,
}

impl Cap {
    /// The cap of `max` bytes (raised to [`MIN_MAX_LOG_BYTES`]).
    pub fn new(max: u64) -> Self {
        let max = max.max(MIN_MAX_LOG_BYTES);
        let head = max / 2;
        Self {
            max,
            head,
            tail: max - head - MARKER_ROOM,
            segment: (max / 16).min(MAX_SEGMENT_BYTES),
            in_memory: max - head <= MEMORY_TAIL_BYTES,
        }
    }
}

/// Bytes kept of the current step's output, for its last lines.
const STEP_TAIL_BYTES: usize = 8 * 1024;

/// What is kept of a run's output once it is over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSummary {
    /// The first bytes (lossy UTF-8).
    pub head: String,
    /// The last bytes that are not in `head` (lossy UTF-8); empty when everything fit in `head`.
    /// Never reaches back past the marker of a capped log.
    pub tail: String,
    /// Every byte printed.
    pub printed: u64,
    /// The log file's size: `printed` when it fitted under the cap, else the head, the marker
    /// line and the tail.
    pub stored: u64,
    /// Lines printed (a last line without a newline counts).
    pub lines: u64,
    /// Whether the log has a file; without one, `head` is the whole log.
    pub file: bool,
}

/// Newlines in `bytes`; counted in blocks of 255 into a byte, which compiles to wide compares
/// (a plain `filter().count()` widens every byte to 64 bits, several times slower).
fn newlines(bytes: &[u8]) -> u64 {
    bytes
        .chunks(255)
        .map(|block| u64::from(block.iter().fold(0u8, |n, b| n + u8::from(*b == b'\n'))))
        .sum()
}

/// Appends `bytes` to `kept`, which keeps at least its last `keep` bytes (trimmed when it
/// doubles); of a chunk longer than that, only its end is copied.
fn keep_last(kept: &mut Vec<u8>, bytes: &[u8], keep: usize) {
    if bytes.len() >= keep {
        kept.clear();
        kept.extend_from_slice(&bytes[bytes.len() - keep..]);
        return;
    }
    kept.extend_from_slice(bytes);
    if kept.len() > 2 * keep {
        kept.drain(..kept.len() - keep);
    }
}

/// Appends `bytes` to `ring`, which keeps its last `keep` bytes.
fn push_ring(ring: &mut VecDeque<u8>, bytes: &[u8], keep: usize) {
    if bytes.is_empty() {
        return;
    }
    let bytes = &bytes[bytes.len().saturating_sub(keep)..];
    if ring.capacity() < keep {
        // Once, exactly: growing by doubling would take up to twice the tail.
        ring.reserve_exact(keep - ring.len());
    }
    let overflow = (ring.len() + bytes.len()).saturating_sub(keep);
    ring.drain(..overflow);
    ring.extend(bytes);
}

/// `<run>.log.parts`, the folder of a log's segments while its run goes.
fn parts_dir(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".parts");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::mask::PENDING_BYTES;
    use super::*;

    const CAP: u64 = MIN_MAX_LOG_BYTES;

    /// The cap of the tests, with its tail in memory, then written whole to the segments.
    fn caps() -> [Cap; 2] {
        let cap = Cap::new(CAP);
        assert!(cap.in_memory);
        [
            cap,
            Cap {
                in_memory: false,
                ..cap
            },
        ]
    }

    /// Numbered lines, `line 0\n` upwards, `bytes` long in all (the last one cut).
    pub(super) fn output(bytes: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes + 16);
        let mut i = 0;
        while out.len() < bytes {
            out.extend_from_slice(format!("line {i}\n").as_bytes());
            i += 1;
        }
        out.truncate(bytes);
        out
    }

    /// Bytes in the log's files.
    fn on_disk(path: &Path) -> u64 {
        let parts: u64 = std::fs::read_dir(parts_dir(path))
            .map(|dir| dir.map(|e| e.unwrap().metadata().unwrap().len()).sum())
            .unwrap_or(0);
        std::fs::metadata(path).unwrap().len() + parts
    }

    #[tokio::test]
    async fn keeps_head_and_tail_in_memory_and_everything_that_fits_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let mut sink = LogSink::create(&path, DEFAULT_MAX_LOG_BYTES, false).await;
        let chunk = vec![b'a'; 10_000];
        for _ in 0..100 {
            sink.write(&chunk).await;
        }
        sink.write(b"THE END").await;
        let (summary, error) = sink.finish().await;
        assert_eq!(error, None);
        assert_eq!(summary.printed, 1_000_007);
        assert_eq!(summary.stored, 1_000_007);
        assert_eq!(summary.head.len(), HEAD_BYTES);
        assert_eq!(summary.tail.len(), TAIL_BYTES);
        assert!(summary.tail.ends_with("THE END"));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1_000_007);
        assert!(!parts_dir(&path).exists());
    }

    #[tokio::test]
    async fn output_up_to_the_cap_is_kept_whole() {
        for cap in caps() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("5.log");
            let mut sink = LogSink::with_cap(&path, cap).await;
            let all = output(usize::try_from(CAP).unwrap());
            for (i, chunk) in all.chunks(1000).enumerate() {
                sink.write(chunk).await;
                if i % 7 == 0 {
                    sink.flush().await;
                }
            }
            let (summary, error) = sink.finish().await;
            assert_eq!(error, None);
            assert_eq!(std::fs::read(&path).unwrap(), all);
            assert_eq!((summary.printed, summary.stored), (CAP, CAP));
            assert_eq!(summary.lines, newlines(&all) + 1);
            assert!(!parts_dir(&path).exists());
        }
    }

    #[tokio::test]
    async fn output_over_the_cap_keeps_head_marker_and_tail_with_the_exact_count() {
        for cap in caps() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("6.log");
            let mut sink = LogSink::with_cap(&path, cap).await;
            let all = output(1_000_000);
            let mut most_on_disk = 0;
            for (i, chunk) in all.chunks(3000).enumerate() {
                sink.write(chunk).await;
                if i % 5 == 0 {
                    sink.flush().await;
                }
                most_on_disk = most_on_disk.max(on_disk(&path));
            }
            let (summary, error) = sink.finish().await;
            assert_eq!(error, None);

            let file = std::fs::read(&path).unwrap();
            assert!(file.len() as u64 <= CAP, "{} bytes", file.len());
            assert!(
                most_on_disk <= CAP + cap.segment,
                "{most_on_disk} bytes on disk"
            );
            let (head, tail) = (cap.head as usize, cap.tail as usize);
            let omitted = all.len() - head - tail;
            assert_eq!(&file[..head], &all[..head]);
            let line = format!("\n[chatrun: {omitted} bytes omitted]\n");
            assert_eq!(&file[head..head + line.len()], line.as_bytes());
            assert_eq!(&file[head + line.len()..], &all[all.len() - tail..]);

            assert_eq!(summary.printed, 1_000_000);
            assert_eq!(summary.stored, file.len() as u64);
            assert_eq!(summary.lines, newlines(&all) + 1);
            assert_eq!(summary.head.as_bytes(), &all[..HEAD_BYTES]);
            assert!(summary.tail.len() <= tail);
            assert!(all.ends_with(summary.tail.as_bytes()));
            assert!(!parts_dir(&path).exists());
        }
    }

    #[tokio::test]
    async fn a_log_over_the_cap_reads_live_by_printed_offsets_and_lines() {
        for cap in caps() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("7.log");
            let mut sink = LogSink::with_cap(&path, cap).await;
            let all = output(500_000);
            // Readers see what was written once it is flushed (at most FLUSH_EVERY later):
            // here after every chunk, as for a step that prints at a human pace.
            for chunk in all.chunks(4096) {
                sink.write(chunk).await;
                assert!(sink.flush_due().is_some());
                sink.flush().await;
                assert_eq!(sink.flush_due(), None);
            }
            let size = all.len() as u64;

            // The end, as the live page shows it, numbered as printed.
            let (bytes, start, total) = read_log(&path, None, 1000).await;
            assert_eq!(total, size);
            assert_eq!(start, size - 1000);
            assert_eq!(bytes, &all[all.len() - 1000..]);
            let before = newlines(&all[..usize::try_from(start).unwrap()]);
            assert_eq!(count_lines(&path, start).await, before);
            assert_eq!(count_lines(&path, size).await, newlines(&all));

            // The head is there; the middle is gone, and a reader is sent on to what is kept.
            let (bytes, start, _) = read_log(&path, Some(10), 100).await;
            assert_eq!((start, bytes.as_slice()), (10, &all[10..110]));
            let (bytes, start, _) = read_log(&path, Some(CAP), 100).await;
            assert!(start > CAP && start < size - cap.tail, "{start}");
            let at = usize::try_from(start).unwrap();
            assert_eq!(bytes, &all[at..at + 100]);
            // Across a segment's end, in one read.
            let (bytes, start, _) = read_log(&path, Some(size - 20_000), 10_000).await;
            assert_eq!(start, size - 20_000);
            assert_eq!(bytes, &all[all.len() - 20_000..all.len() - 10_000]);
            sink.finish().await;
        }
    }

    // Time stands still: no flush comes due while the flood is written.
    #[tokio::test(start_paused = true)]
    async fn a_flood_is_mirrored_live_by_its_newest_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("10.log");
        let cap = Cap::new(CAP);
        let mut sink = LogSink::with_cap(&path, cap).await;
        let all = output(500_000);
        for chunk in all.chunks(4096) {
            sink.write(chunk).await;
        }
        sink.flush().await;
        // Only the newest segment's length was written past the head: the reader of the
        // middle jumps there, and the end is there.
        assert!(on_disk(&path) <= cap.head + cap.segment);
        let size = all.len() as u64;
        let (bytes, start, total) = read_log(&path, Some(cap.head), 100).await;
        assert_eq!((start, total), (size - cap.segment, size));
        let at = usize::try_from(start).unwrap();
        assert_eq!(bytes, &all[at..at + 100]);
        assert_eq!(count_lines(&path, size).await, newlines(&all));
        // The log file still keeps the whole tail.
        let (summary, _) = sink.finish().await;
        let file = std::fs::read(&path).unwrap();
        assert!(file.ends_with(&all[all.len() - usize::try_from(cap.tail).unwrap()..]));
        assert_eq!(summary.stored, file.len() as u64);
    }

    #[tokio::test]
    async fn the_marker_gets_a_line_of_its_own_and_secrets_stay_masked_in_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("8.log");
        let mut sink = LogSink::create(&path, CAP, false).await;
        sink.set_secrets(["hunter2hunter2".to_string()]);
        let line = vec![b'x'; 999];
        for _ in 0..200 {
            sink.write_step(&line).await;
            sink.write_step(b"\ntoken=hunter2hunter2\n").await;
        }
        sink.end_step().await;
        let (summary, _) = sink.finish().await;
        let file = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        assert!(!file.contains("hunter2"));
        assert!(file.contains("token=••••••\n"));
        let omitted = summary.printed - Cap::new(CAP).head - Cap::new(CAP).tail;
        assert!(
            file.contains(&format!("x\n[chatrun: {omitted} bytes omitted]\n")),
            "{file}"
        );
        assert!(summary.tail.ends_with("token=••••••\n"));
    }

    #[tokio::test]
    async fn a_new_attempt_of_a_run_removes_the_log_the_last_one_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("9.log");
        let mut sink = LogSink::create(&path, CAP, false).await;
        sink.write(&output(200_000)).await;
        sink.flush().await;
        // The process died here: no finish.
        drop(sink);
        assert!(path.exists() && parts_dir(&path).exists());
        let mut sink = LogSink::create(&path, CAP, true).await;
        assert!(!path.exists() && !parts_dir(&path).exists());
        // Short enough to be kept in the database only: no file, and none left from before.
        sink.write(b"again\n").await;
        let (summary, error) = sink.finish().await;
        assert_eq!(
            (summary.head.as_str(), summary.file, error),
            ("again\n", false, None)
        );
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_log_gets_a_file_once_it_is_flushed_outgrows_the_head_or_is_not_utf8() {
        async fn finished(
            path: PathBuf,
            bytes: &[u8],
            flush: bool,
        ) -> (LogSummary, Option<Vec<u8>>) {
            let mut sink = LogSink::create(&path, CAP, false).await;
            sink.write(bytes).await;
            assert!(!path.exists(), "{path:?}: made before it was needed");
            if flush {
                sink.flush().await;
                assert_eq!(std::fs::read(&path).unwrap(), bytes, "{path:?}: flushed");
            }
            let (summary, _) = sink.finish().await;
            let file = std::fs::read(&path).ok();
            assert_eq!(summary.file, file.is_some(), "{path:?}");
            (summary, file)
        }
        let dir = tempfile::tempdir().unwrap();
        let (summary, file) = finished(dir.path().join("short.log"), b"short\n", false).await;
        assert_eq!((summary.head.as_str(), file), ("short\n", None));
        let (_, file) = finished(dir.path().join("flushed.log"), b"flushed\n", true).await;
        assert_eq!(file.unwrap(), b"flushed\n");
        let (_, file) = finished(dir.path().join("binary.log"), &[0xff, b'\n'], false).await;
        assert_eq!(file.unwrap(), [0xff, b'\n']);
        // Over the head: the file is made before the head stops growing, and holds it all.
        let long = output(HEAD_BYTES + 10);
        let path = dir.path().join("long.log");
        let mut sink = LogSink::create(&path, CAP, false).await;
        sink.write(&long[..HEAD_BYTES]).await;
        assert!(!path.exists());
        sink.write(&long[HEAD_BYTES..]).await;
        assert!(path.exists());
        let (summary, _) = sink.finish().await;
        assert!(summary.file);
        assert_eq!(std::fs::read(&path).unwrap(), long);
    }

    #[tokio::test]
    async fn keeps_the_last_lines_of_the_current_step_without_colours() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = LogSink::create(&dir.path().join("3.log"), CAP, false).await;
        sink.write_step(b"first step\n").await;
        sink.begin_step();
        sink.note("step 2").await;
        for i in 0..30 {
            sink.write_step(format!("\x1b[31mline {i}\x1b[0m\n").as_bytes())
                .await;
        }
        let tail = sink.step_tail(20);
        assert_eq!(tail.lines().count(), 20);
        assert!(tail.starts_with("line 10\n"), "{tail}");
        assert!(tail.ends_with("line 29"), "{tail}");
        assert!(!tail.contains("first step") && !tail.contains("[chatrun]"));
    }

    #[tokio::test]
    async fn secrets_are_masked_even_when_split_across_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("4.log");
        let mut sink = LogSink::create(&path, CAP, false).await;
        sink.set_secrets(["hunter2hunter2".to_string(), "ab".to_string()]);
        sink.write_step(b"token=hunter2").await;
        sink.write_step(b"hunter2 ok ab\nlast hunter2hunter2").await;
        sink.end_step().await;
        // Written to the file too (a short log has one only once flushed).
        sink.flush().await;
        let tail = sink.step_tail(5);
        let (summary, _) = sink.finish().await;
        assert_eq!(summary.head, "token=•••••• ok ab\nlast ••••••");
        assert_eq!(tail, "token=•••••• ok ab\nlast ••••••");
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(!file.contains("hunter2"), "{file}");
    }

    #[tokio::test]
    async fn a_secret_is_masked_across_a_long_line_cut_and_a_newline_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("11.log");
        let mut sink = LogSink::create(&path, DEFAULT_MAX_LOG_BYTES, false).await;
        let key = "-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----";
        sink.set_secrets([key.to_string(), "hunter2hunter2".to_string()]);
        // A line longer than PENDING_BYTES with the secret across where it is cut.
        // (cut before the last 48 bytes, the longest secret's length less one)
        let mut long = vec![b'x'; PENDING_BYTES + 100];
        long.extend_from_slice(b"hunter2hunter2");
        long.extend_from_slice(&[b'y'; 39]);
        sink.write_step(&long).await;
        assert_eq!(
            sink.pending,
            vec![b'y'; 39],
            "cut after the secret, not in it"
        );
        sink.write_step(b" and more\n").await;
        // A secret with newlines, arriving in pieces cut at them.
        sink.write_step(b"key: -----BEGIN KEY-----\n").await;
        sink.write_step(b"MIIEvQIBADANBg\n").await;
        sink.write_step(b"-----END KEY----- done\n").await;
        sink.end_step().await;
        sink.finish().await;
        let file = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        assert!(
            !file.contains("hunter2") && !file.contains("MIIEvQ"),
            "{}",
            &file[file.len() - 200..]
        );
        let end = format!("x••••••{} and more\nkey: •••••• done\n", "y".repeat(39));
        assert!(file.ends_with(&end), "{}", &file[file.len() - 100..]);
        assert_eq!(file.len(), long.len() - 14 + 18 + 10 + 5 + 18 + 6);
    }

    #[test]
    fn masking_leaves_text_without_secrets_uncopied() {
        let secrets = vec![b"hunter2".to_vec()];
        assert!(matches!(
            masked(b"nothing here", &secrets),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            mask_secrets(b"a hunter2 b hunter2hunter2", &secrets),
            "a •••••• b ••••••••••••".as_bytes()
        );
    }

    #[tokio::test]
    async fn short_output_is_all_in_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = LogSink::create(&dir.path().join("2.log"), CAP, false).await;
        sink.note("step 1").await;
        sink.write(b"hello\n").await;
        let (summary, _) = sink.finish().await;
        assert_eq!(summary.head, "[chatrun] step 1\nhello\n");
        assert_eq!(summary.tail, "");
        assert_eq!(summary.lines, 2);
    }

    #[tokio::test]
    async fn a_log_file_that_cannot_be_created_is_reported_not_fatal() {
        // Its folder cannot be made either: a file is in the way.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let mut sink = LogSink::create(&dir.path().join("file/dir/x.log"), CAP, false).await;
        sink.write(b"still kept").await;
        // Only a flush (or a longer output) needs the file.
        sink.flush().await;
        let (summary, error) = sink.finish().await;
        assert_eq!((summary.head.as_str(), summary.file), ("still kept", false));
        assert!(error.unwrap().contains("cannot write"));
    }
}
