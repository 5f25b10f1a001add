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
//!   not written to disk only to be deleted (that took half of chatrun's time for 1 GiB).
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

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::time::Instant;

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

/// Where a run's output goes.
#[derive(Debug)]
pub struct LogSink {
    path: PathBuf,
    cap: Cap,
    /// The files; `None` until they are made (see the module's notes), or once one could not
    /// be written (`file_error`).
    disk: Option<Disk>,
    head: Vec<u8>,
    /// The last bytes after the head; trimmed to `TAIL_BYTES` when it doubles.
    tail: Vec<u8>,
    /// Bytes printed.
    total: u64,
    /// Newlines printed.
    lines: u64,
    /// The last byte printed.
    last: Option<u8>,
    /// The current step's last bytes (see [`LogSink::begin_step`]); trimmed to `STEP_TAIL_BYTES`.
    step_tail: Vec<u8>,
    /// Why the log file could not be written, if it could not.
    file_error: Option<String>,
    /// Values never to be written: replaced by [`MASK`] in everything a step prints.
    secrets: Vec<Vec<u8>>,
    /// Step output held back until its line is complete, so a secret split across two reads
    /// is still found.
    pending: Vec<u8>,
    /// Since when written output waits to be flushed to the files.
    dirty_since: Option<Instant>,
}

/// How long written output may wait before readers of the log see it.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The log's files while the run goes.
#[derive(Debug)]
struct Disk {
    cap: Cap,
    /// `<run>.log`: the head.
    main: BufWriter<File>,
    main_len: u64,
    /// The head's last byte, to put the marker on a line of its own.
    main_last: Option<u8>,
    /// The output after the head, up to `cap.max - cap.head` bytes, when `cap.in_memory`.
    ring: Option<VecDeque<u8>>,
    /// `<run>.log.parts`: the segments after the head.
    parts: PathBuf,
    /// Whether this run made `parts` (most runs print too little to need it).
    parts_made: bool,
    /// The segments kept, oldest first; the last one is being written to `current`.
    segments: VecDeque<Segment>,
    current: Option<BufWriter<File>>,
}

#[derive(Debug)]
struct Segment {
    /// Where its first byte is in the output.
    offset: u64,
    len: u64,
    path: PathBuf,
}

/// What a secret value is replaced with.
pub const MASK: &str = "••••••";

/// Held-back output beyond which it is written anyway (a very long line).
const PENDING_BYTES: usize = 64 * 1024;

/// `text` with every occurrence of each secret replaced by [`MASK`].
pub fn mask_secrets(text: &[u8], secrets: &[Vec<u8>]) -> Vec<u8> {
    masked(text, secrets).into_owned()
}

/// [`mask_secrets`], without a copy when no secret occurs (the usual case: searched at
/// several GB/s, where a byte-by-byte comparison made a run printing 1 GiB take 11 s).
fn masked<'a>(text: &'a [u8], secrets: &[Vec<u8>]) -> Cow<'a, [u8]> {
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let finder = memchr::memmem::Finder::new(secret);
        if finder.find(&out).is_none() {
            continue;
        }
        let mut masked = Vec::with_capacity(out.len());
        let mut last = 0;
        for at in finder.find_iter(&out) {
            masked.extend_from_slice(&out[last..at]);
            masked.extend_from_slice(MASK.as_bytes());
            last = at + secret.len();
        }
        masked.extend_from_slice(&out[last..]);
        out = Cow::Owned(masked);
    }
    out
}

/// Where held-back output `pending` may be cut for masking: after its last newline (or, on a
/// line longer than `PENDING_BYTES`, before the last bytes a secret could span), moved so that
/// no secret is split: past one the cut would cross, back before one that may go on in output
/// not read yet. `secrets` are longest first.
fn safe_cut(pending: &[u8], secrets: &[Vec<u8>]) -> usize {
    let longest = secrets.first().map_or(1, Vec::len).max(1);
    let mut cut = match memchr::memrchr(b'\n', pending) {
        Some(newline) => newline + 1,
        None if pending.len() > PENDING_BYTES => pending.len() + 1 - longest,
        None => return 0,
    };
    // A whole secret across the cut (a secret with a newline, or a long line's).
    let mut moved = true;
    while moved {
        moved = false;
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            let from = cut.saturating_sub(secret.len() - 1);
            let to = (cut + secret.len() - 1).min(pending.len());
            if let Some(at) = memchr::memmem::find(&pending[from..to], secret)
                && from + at < cut
            {
                cut = from + at + secret.len();
                moved = true;
            }
        }
    }
    // The start of a secret at the very end.
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let from = pending.len().saturating_sub(secret.len() - 1);
        if let Some(start) = (from..pending.len()).find(|&i| secret.starts_with(&pending[i..])) {
            cut = cut.min(start);
        }
    }
    cut
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
/// (a plain `filter().count()` widens every byte to 64 bits: 8 times slower on 1 GiB).
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

/// `<run>.log.parts`, the folder of a log's segments while its run goes.
fn parts_dir(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".parts");
    PathBuf::from(name)
}

impl LogSink {
    /// A log for the file at `path`, capped at `max_bytes`. The file (and its folder) is made
    /// when first needed (see the module's notes), not now. When `earlier` (the run's earlier
    /// attempt may have left a log), that log and its segments are removed now. A file that
    /// cannot be made is reported in the log summary, not fatal: the head and tail are still
    /// kept.
    pub async fn create(path: &Path, max_bytes: u64, earlier: bool) -> Self {
        if earlier {
            let (path, parts) = (path.to_path_buf(), parts_dir(path));
            let _ = tokio::task::spawn_blocking(move || {
                for removed in [std::fs::remove_file(&path), std::fs::remove_dir_all(&parts)] {
                    if let Err(err) = removed
                        && err.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(error = %err, log = %path.display(), "cannot remove the log of an earlier attempt");
                    }
                }
            })
            .await;
        }
        Self {
            path: path.to_path_buf(),
            cap: Cap::new(max_bytes),
            disk: None,
            head: Vec::new(),
            tail: Vec::new(),
            total: 0,
            lines: 0,
            last: None,
            step_tail: Vec::new(),
            file_error: None,
            secrets: Vec::new(),
            pending: Vec::new(),
            dirty_since: None,
        }
    }

    #[cfg(test)]
    async fn with_cap(path: &Path, cap: Cap) -> Self {
        Self {
            cap,
            ..Self::create(path, cap.max, false).await
        }
    }

    /// Makes the log file and its folder, with what was printed so far: all of it is in `head`
    /// (called before the output outgrows it). In one trip to the blocking threads (each costs
    /// two thread wake-ups). Nothing when the file is made already or cannot be.
    async fn open(&mut self) {
        if self.disk.is_some() || self.file_error.is_some() {
            return;
        }
        debug_assert_eq!(self.total, self.head.len() as u64);
        let path = self.path.clone();
        let created = tokio::task::spawn_blocking(move || {
            if let Some(folder) = path.parent() {
                std::fs::create_dir_all(folder)?;
            }
            std::fs::File::create(&path).map(File::from_std)
        })
        .await
        .unwrap_or_else(|err| Err(std::io::Error::other(err)));
        let file = match created {
            Ok(file) => file,
            Err(err) => return self.fail(&err),
        };
        let mut disk = Disk {
            cap: self.cap,
            main: BufWriter::with_capacity(WRITE_BUFFER, file),
            main_len: 0,
            main_last: None,
            ring: self.cap.in_memory.then(VecDeque::new),
            parts: parts_dir(&self.path),
            parts_made: false,
            segments: VecDeque::new(),
            current: None,
        };
        match disk.write(&self.head, 0, 0).await {
            Ok(()) => self.disk = Some(disk),
            Err(err) => self.fail(&err),
        }
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends bytes.
    pub async fn write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.total + bytes.len() as u64 > HEAD_BYTES as u64 {
            self.open().await;
        }
        let (offset, lines) = (self.total, self.lines);
        self.total += bytes.len() as u64;
        self.lines += newlines(bytes);
        self.last = bytes.last().copied();
        // The database's head and tail; until the file is made, the head is the whole log.
        let take = bytes.len().min(HEAD_BYTES.saturating_sub(self.head.len()));
        self.head.extend_from_slice(&bytes[..take]);
        keep_last(&mut self.tail, &bytes[take..], TAIL_BYTES);
        let written = match &mut self.disk {
            Some(disk) => disk.write(bytes, offset, lines).await,
            None => Ok(()),
        };
        match written {
            Err(err) => self.fail(&err),
            Ok(()) if self.file_error.is_none() => {
                // Flushed every FLUSH_EVERY, not every chunk: a flush waits for the write.
                let since = *self.dirty_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= FLUSH_EVERY {
                    self.flush().await;
                }
            }
            Ok(()) => {}
        }
    }

    /// When the output written last must be flushed for readers of the log to see it: call
    /// [`LogSink::flush`] then.
    pub fn flush_due(&self) -> Option<Instant> {
        self.dirty_since.map(|since| since + FLUSH_EVERY)
    }

    /// Flushes what was written to the files (making them first), for readers of the log.
    pub async fn flush(&mut self) {
        self.dirty_since = None;
        if self.total > 0 {
            self.open().await;
        }
        if let Some(disk) = &mut self.disk
            && let Err(err) = disk.flush(self.total, self.lines).await
        {
            self.fail(&err);
        }
    }

    fn fail(&mut self, err: &std::io::Error) {
        self.file_error = Some(format!("cannot write {}: {err}", self.path.display()));
        self.disk = None;
    }

    /// Starts a new step: [`LogSink::step_tail`] will show only what it prints.
    pub fn begin_step(&mut self) {
        self.step_tail.clear();
    }

    /// Values to mask in everything steps print from now on (values shorter than 4 bytes are
    /// left alone: masking every `a` would hide the log, not a secret).
    pub fn set_secrets(&mut self, secrets: impl IntoIterator<Item = String>) {
        self.secrets = secrets
            .into_iter()
            .filter(|s| s.len() >= 4)
            .map(String::into_bytes)
            .collect();
        // Longest first, so a secret that contains another is masked whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with the secrets masked (for test reports and other text a step produced).
    pub fn mask(&self, text: &str) -> String {
        if self.secrets.is_empty() {
            return text.to_string();
        }
        String::from_utf8_lossy(&mask_secrets(text.as_bytes(), &self.secrets)).into_owned()
    }

    /// Appends a step's output (which [`LogSink::step_tail`] keeps the end of), secrets masked.
    pub async fn write_step(&mut self, bytes: &[u8]) {
        if self.secrets.is_empty() {
            return self.emit_step(bytes).await;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(bytes);
        let cut = safe_cut(&pending, &self.secrets);
        if cut > 0 {
            let secrets = std::mem::take(&mut self.secrets);
            self.emit_step(&masked(&pending[..cut], &secrets)).await;
            self.secrets = secrets;
            pending.drain(..cut);
        }
        self.pending = pending;
    }

    /// Writes what a step printed last without a newline (at the end of the step).
    pub async fn end_step(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let secrets = std::mem::take(&mut self.secrets);
            self.emit_step(&masked(&rest, &secrets)).await;
            self.secrets = secrets;
        }
    }

    async fn emit_step(&mut self, bytes: &[u8]) {
        self.write(bytes).await;
        keep_last(&mut self.step_tail, bytes, STEP_TAIL_BYTES);
    }

    /// The current step's last `lines` lines of output, ANSI escape codes removed.
    pub fn step_tail(&self, lines: usize) -> String {
        let text = crate::domain::text::strip_ansi(&String::from_utf8_lossy(&self.step_tail));
        let all: Vec<&str> = text.trim_end().lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Appends a line of chatrun's own (step headers), marked so it stands out from job output.
    /// Readers see it with the output after it, at the next flush ([`LogSink::flush_due`]), not
    /// at once: a flush is a trip to the blocking threads, which on a step of `true` costs more
    /// than the step.
    pub async fn note(&mut self, line: &str) {
        self.write(format!("[chatrun] {line}\n").as_bytes()).await;
    }

    /// Puts the log file together (the head, then everything or the marker and the tail) and
    /// returns what is kept, with why the file could not be written, if it could not.
    pub async fn finish(mut self) -> (LogSummary, Option<String>) {
        // Without a file, the database's head must be the whole log, byte for byte.
        if std::str::from_utf8(&self.head).is_err() {
            self.open().await;
        }
        let mut stored = 0;
        let file = self.disk.is_some();
        if let Some(disk) = self.disk.take() {
            let parts = disk.parts.clone();
            match disk.assemble(self.total).await {
                Ok(len) => stored = len,
                Err(err) => {
                    self.fail(&err);
                    let _ = tokio::fs::remove_dir_all(&parts).await;
                }
            }
        }
        let capped = self.total > self.cap.max;
        // The database's tail stays within the file's tail: no marker, no numbering gap.
        let keep = if capped {
            TAIL_BYTES.min(usize::try_from(self.cap.tail).unwrap_or(usize::MAX))
        } else {
            TAIL_BYTES
        };
        let tail_start = self.tail.len().saturating_sub(keep);
        let summary = LogSummary {
            head: String::from_utf8_lossy(&self.head).into_owned(),
            tail: String::from_utf8_lossy(&self.tail[tail_start..]).into_owned(),
            printed: self.total,
            stored,
            lines: self.lines + u64::from(self.last.is_some_and(|b| b != b'\n')),
            file: file && self.file_error.is_none(),
        };
        (summary, self.file_error)
    }
}

impl Disk {
    /// Writes `bytes`, which start at `offset` in the output, after `lines` newlines: the head
    /// to the file, the rest to the ring (mirrored at the next flush) or to the segments.
    async fn write(&mut self, bytes: &[u8], offset: u64, lines: u64) -> std::io::Result<()> {
        let mut done = 0;
        if self.main_len < self.cap.head {
            let take = usize::try_from(self.cap.head - self.main_len)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            self.main.write_all(&bytes[..take]).await?;
            self.main_len += take as u64;
            self.main_last = bytes[..take].last().copied().or(self.main_last);
            done = take;
        }
        let rest = &bytes[done..];
        if rest.is_empty() {
            return Ok(());
        }
        match &mut self.ring {
            Some(ring) => {
                let keep = usize::try_from(self.cap.max - self.cap.head).unwrap_or(usize::MAX);
                let rest = &rest[rest.len().saturating_sub(keep)..];
                if ring.capacity() < keep {
                    // Once, exactly: growing by doubling would take up to twice the tail.
                    ring.reserve_exact(keep - ring.len());
                }
                let overflow = (ring.len() + rest.len()).saturating_sub(keep);
                ring.drain(..overflow);
                ring.extend(rest);
                Ok(())
            }
            None => {
                let at = offset + done as u64;
                self.append(rest, at, lines + newlines(&bytes[..done]))
                    .await
            }
        }
    }

    /// Appends `bytes`, which start at `offset` after `lines` newlines, to the segments: to the
    /// current one when they follow it and it has room, else to new ones.
    async fn append(&mut self, bytes: &[u8], offset: u64, lines: u64) -> std::io::Result<()> {
        let mut done = 0;
        while done < bytes.len() {
            let at = offset + done as u64;
            let follows = self
                .segments
                .back()
                .is_some_and(|s| s.offset + s.len == at && s.len < self.cap.segment);
            if !follows {
                self.roll(at, lines + newlines(&bytes[..done])).await?;
                self.forget(at);
            }
            let segment = self.segments.back_mut().expect("roll opened a segment");
            let current = self.current.as_mut().expect("roll opened a segment");
            let room = usize::try_from(self.cap.segment - segment.len).unwrap_or(usize::MAX);
            let take = room.min(bytes.len() - done);
            current.write_all(&bytes[done..done + take]).await?;
            segment.len += take as u64;
            done += take;
        }
        Ok(())
    }

    /// Starts a new segment at `offset`, after `lines` newlines.
    async fn roll(&mut self, offset: u64, lines: u64) -> std::io::Result<()> {
        if let Some(mut current) = self.current.take() {
            current.flush().await?;
        }
        if self.segments.is_empty() {
            tokio::fs::create_dir_all(&self.parts).await?;
            self.parts_made = true;
        }
        let path = self.parts.join(format!("{offset}-{lines}"));
        self.current = Some(BufWriter::with_capacity(
            WRITE_BUFFER,
            File::create(&path).await?,
        ));
        self.segments.push_back(Segment {
            offset,
            len: 0,
            path,
        });
        Ok(())
    }

    /// Deletes the oldest segments while the newer ones hold the tail of output ending at `end`.
    fn forget(&mut self, end: u64) {
        while self.segments.len() >= 2 && end - self.segments[1].offset >= self.cap.tail {
            if let Some(old) = self.segments.pop_front() {
                // Readers that opened it keep reading; the name goes now.
                if let Err(err) = std::fs::remove_file(&old.path) {
                    tracing::warn!(error = %err, file = %old.path.display(), "cannot remove a log part");
                }
            }
        }
    }

    /// Makes the output up to `total` bytes (`lines` newlines) readable in the files. With the
    /// tail in memory, its newest bytes are mirrored to the segments, at most a segment's
    /// length: a reader may miss output a step printed faster than that, never the latest.
    async fn flush(&mut self, total: u64, lines: u64) -> std::io::Result<()> {
        let end = self
            .segments
            .back()
            .map_or(self.main_len, |s| s.offset + s.len);
        if let Some(ring) = &self.ring
            && total > end
        {
            let want = (total - end).min(self.cap.segment).min(ring.len() as u64);
            let from = ring.len() - usize::try_from(want).unwrap_or(ring.len());
            let newest: Vec<u8> = ring.range(from..).copied().collect();
            let before = lines - newlines(&newest);
            self.append(&newest, total - want, before).await?;
        }
        self.main.flush().await?;
        if let Some(current) = &mut self.current {
            current.flush().await?;
        }
        Ok(())
    }

    /// Appends to the head the rest of the output (all of it, or the marker and the tail of
    /// `total` bytes printed), from the ring or the segments, removes the segments, and returns
    /// the file's size.
    async fn assemble(mut self, total: u64) -> std::io::Result<u64> {
        self.main.flush().await?;
        if let Some(mut current) = self.current.take() {
            current.flush().await?;
        }
        let keep_from = if total > self.cap.max {
            let mut line = String::new();
            if self.main_last.is_some_and(|b| b != b'\n') {
                line.push('\n');
            }
            line.push_str(&marker(total - self.cap.head - self.cap.tail));
            line.push('\n');
            self.main.write_all(line.as_bytes()).await?;
            self.main_len += line.len() as u64;
            total - self.cap.tail
        } else {
            0
        };
        let in_memory = self.ring.is_some();
        if let Some(mut ring) = self.ring.take() {
            let starts = total - ring.len() as u64;
            let skip = usize::try_from(keep_from.saturating_sub(starts)).unwrap_or(usize::MAX);
            ring.drain(..skip.min(ring.len()));
            let (a, b) = ring.as_slices();
            self.main.write_all(a).await?;
            self.main.write_all(b).await?;
            self.main_len += (a.len() + b.len()) as u64;
        }
        while let Some(segment) = self.segments.pop_front() {
            let end = segment.offset + segment.len;
            if !in_memory && end > keep_from {
                let skip = keep_from.saturating_sub(segment.offset);
                let mut file = File::open(&segment.path).await?;
                file.seek(SeekFrom::Start(skip)).await?;
                let rest = file.take(segment.len - skip);
                let mut reader = BufReader::with_capacity(256 * 1024, rest);
                self.main_len += tokio::io::copy_buf(&mut reader, &mut self.main).await?;
            }
            tokio::fs::remove_file(&segment.path).await?;
        }
        self.main.flush().await?;
        // (`create` removed the folder an earlier attempt left.)
        if self.parts_made {
            match tokio::fs::remove_dir(&self.parts).await {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(self.main_len)
    }
}

/// A segment file as readers see it.
#[derive(Debug)]
struct Part {
    offset: u64,
    /// Newlines before it.
    lines: u64,
    len: u64,
    path: PathBuf,
}

/// The segments of a log whose run goes, in order, without those already appended to the file.
async fn parts(path: &Path, main_len: u64) -> Vec<Part> {
    let Ok(mut dir) = tokio::fs::read_dir(parts_dir(path)).await else {
        return Vec::new();
    };
    let mut parts = Vec::new();
    while let Ok(Some(entry)) = dir.next_entry().await {
        let name = entry.file_name();
        let Some((offset, lines)) = name.to_str().and_then(|n| n.split_once('-')) else {
            continue;
        };
        let (Ok(offset), Ok(lines)) = (offset.parse::<u64>(), lines.parse::<u64>()) else {
            continue;
        };
        // Removed since it was listed: the next part takes over.
        let Ok(meta) = entry.metadata().await else {
            continue;
        };
        parts.push(Part {
            offset,
            lines,
            len: meta.len(),
            path: entry.path(),
        });
    }
    parts.retain(|p| p.offset + p.len > main_len);
    parts.sort_by_key(|p| p.offset);
    parts
}

/// Appends up to `length` bytes of `path` from `from` to `out`; how many.
async fn read_range(path: &Path, from: u64, length: u64, out: &mut Vec<u8>) -> u64 {
    let Ok(mut file) = File::open(path).await else {
        return 0;
    };
    if file.seek(SeekFrom::Start(from)).await.is_err() {
        return 0;
    }
    let before = out.len();
    let _ = file.take(length).read_to_end(out).await;
    (out.len() - before) as u64
}

/// A run's log as readers get it: its file (followed by its segments while it goes) or, for a
/// finished run that has no file, the database's head, which is then the whole log.
#[derive(Debug)]
pub enum RunLog {
    File(PathBuf),
    Head(Vec<u8>),
}

impl RunLog {
    /// The log at `path` of a run that is `finished` (or not), whose database head and printed
    /// bytes are `head` and `printed`.
    pub async fn of(path: PathBuf, finished: bool, head: &str, printed: i64) -> Self {
        let whole = u64::try_from(printed).is_ok_and(|n| n == head.len() as u64);
        if finished && whole && !tokio::fs::try_exists(&path).await.unwrap_or(true) {
            RunLog::Head(head.as_bytes().to_vec())
        } else {
            RunLog::File(path)
        }
    }

    /// As [`read_log`].
    pub async fn read(&self, offset: Option<u64>, length: u64) -> (Vec<u8>, u64, u64) {
        match self {
            RunLog::File(path) => read_log(path, offset, length).await,
            RunLog::Head(head) => {
                let size = head.len() as u64;
                let start = offset.map_or(size.saturating_sub(length), |o| o.min(size));
                let end = start.saturating_add(length).min(size);
                // Within `head`, whose length fits in usize.
                let range = start as usize..end as usize;
                (head[range].to_vec(), start, size)
            }
        }
    }

    /// As [`count_lines`].
    pub async fn count_lines(&self, end: u64) -> u64 {
        match self {
            RunLog::File(path) => count_lines(path, end).await,
            RunLog::Head(head) => {
                newlines(&head[..usize::try_from(end).unwrap_or(usize::MAX).min(head.len())])
            }
        }
    }

    /// Its size in bytes: the file's (none while it has none) or the head's.
    pub async fn stored(&self) -> Option<u64> {
        match self {
            RunLog::File(path) => tokio::fs::metadata(path).await.ok().map(|m| m.len()),
            RunLog::Head(head) => Some(head.len() as u64),
        }
    }
}

/// Up to `length` bytes of a run's log from `offset` (clamped to its end) or, with `None`, its
/// last `length` bytes: `(bytes, where they start, the log's size so far)`. Offsets count the
/// output as printed (see the module's notes); when the asked part is no longer kept, the bytes
/// start at the next part kept. Nothing when the log does not exist yet (a queued run) or
/// cannot be read.
pub async fn read_log(path: &Path, offset: Option<u64>, length: u64) -> (Vec<u8>, u64, u64) {
    let main_len = tokio::fs::metadata(path).await.map(|m| m.len()).ok();
    let parts = parts(path, main_len.unwrap_or(0)).await;
    if main_len.is_none() && parts.is_empty() {
        return (Vec::new(), 0, 0);
    }
    let main_len = main_len.unwrap_or(0);
    let size = parts
        .last()
        .map_or(main_len, |p| (p.offset + p.len).max(main_len));
    let mut start = offset.map_or(size.saturating_sub(length), |o| o.min(size));
    let mut bytes = Vec::new();
    let mut at = start;
    if at < main_len {
        let want = length.min(main_len - at);
        at += read_range(path, at, want, &mut bytes).await;
        if at - start < want {
            return (bytes, start, size);
        }
    }
    for part in &parts {
        let left = length - bytes.len() as u64;
        let end = part.offset + part.len;
        if left == 0 {
            break;
        }
        if end <= at {
            continue;
        }
        if part.offset > at {
            if !bytes.is_empty() {
                // Not contiguous: the caller asks again from where this stops.
                break;
            }
            at = part.offset;
            start = at;
        }
        let want = left.min(end - at);
        let got = read_range(&part.path, at - part.offset, want, &mut bytes).await;
        at += got;
        if got < want {
            break;
        }
    }
    (bytes, start, size)
}

/// Newlines in a run's log before offset `end`: the number of the line at `end`, less one.
pub async fn count_lines(path: &Path, end: u64) -> u64 {
    let main_len = tokio::fs::metadata(path).await.map_or(0, |m| m.len());
    let parts = parts(path, main_len).await;
    let (file, from, before) = if end > main_len && !parts.is_empty() {
        match parts.iter().rev().find(|p| p.offset <= end) {
            Some(part) => (part.path.clone(), end - part.offset, part.lines),
            // In output no longer kept: the first line kept after it.
            None => return parts[0].lines,
        }
    } else {
        (path.to_path_buf(), end, 0)
    };
    let Ok(file) = File::open(&file).await else {
        return before;
    };
    let mut reader = file.take(from);
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = before;
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        lines += newlines(&buf[..n]);
    }
    lines
}

#[cfg(test)]
mod tests {
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
    fn output(bytes: usize) -> Vec<u8> {
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
