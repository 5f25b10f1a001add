//! A run's output: every byte goes to the run's log file; only a capped head and tail stay in
//! memory (and go to the database), so memory is bounded however much a job prints.

use std::path::{Path, PathBuf};

use tokio::fs::File;
use tokio::io::{AsyncWriteExt, BufWriter};

/// Bytes kept from the start of the output.
pub const HEAD_BYTES: usize = 16 * 1024;
/// Bytes kept from the end of the output.
pub const TAIL_BYTES: usize = 48 * 1024;

/// Where a run's output goes.
#[derive(Debug)]
pub struct LogSink {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    head: Vec<u8>,
    /// The last bytes after the head; trimmed to `TAIL_BYTES` when it doubles.
    tail: Vec<u8>,
    total: u64,
    /// Newlines written.
    lines: u64,
    /// The current step's last bytes (see [`LogSink::begin_step`]); trimmed to `STEP_TAIL_BYTES`.
    step_tail: Vec<u8>,
    /// Why the log file could not be written, if it could not.
    file_error: Option<String>,
    /// Values never to be written: replaced by [`MASK`] in everything a step prints.
    secrets: Vec<Vec<u8>>,
    /// Step output held back until its line is complete, so a secret split across two reads
    /// is still found.
    pending: Vec<u8>,
}

/// What a secret value is replaced with.
pub const MASK: &str = "••••••";

/// Held-back output beyond which it is written anyway (a very long line).
const PENDING_BYTES: usize = 64 * 1024;

/// `text` with every occurrence of each secret replaced by [`MASK`].
pub fn mask_secrets(text: &[u8], secrets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = text.to_vec();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let mut masked = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(secret) {
                masked.extend_from_slice(MASK.as_bytes());
                i += secret.len();
            } else {
                masked.push(out[i]);
                i += 1;
            }
        }
        out = masked;
    }
    out
}

/// Bytes kept of the current step's output, for its last lines.
const STEP_TAIL_BYTES: usize = 8 * 1024;

/// What is kept of a run's output once it is over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSummary {
    /// The first bytes (lossy UTF-8).
    pub head: String,
    /// The last bytes that are not in `head` (lossy UTF-8); empty when everything fit in `head`.
    pub tail: String,
    /// Every byte written.
    pub total: u64,
    /// Lines in the whole log (a last line without a newline counts).
    pub lines: u64,
}

impl LogSink {
    /// Creates (truncating) the log file at `path`. A file that cannot be created is reported in
    /// the log summary, not fatal: the head and tail are still kept.
    pub async fn create(path: &Path) -> Self {
        let (file, file_error) = match File::create(path).await {
            Ok(file) => (Some(BufWriter::new(file)), None),
            Err(err) => (
                None,
                Some(format!("cannot write {}: {err}", path.display())),
            ),
        };
        Self {
            path: path.to_path_buf(),
            file,
            head: Vec::new(),
            tail: Vec::new(),
            total: 0,
            lines: 0,
            step_tail: Vec::new(),
            file_error,
            secrets: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends bytes.
    pub async fn write(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        self.lines += bytes.iter().filter(|b| **b == b'\n').count() as u64;
        // Flushed with every chunk: the run page and the live stream read the file while the
        // run goes (a chunk is up to 32 KiB, so this is no write per byte).
        if let Some(file) = &mut self.file {
            let written = match file.write_all(bytes).await {
                Ok(()) => file.flush().await,
                Err(err) => Err(err),
            };
            if let Err(err) = written {
                self.file_error = Some(format!("cannot write {}: {err}", self.path.display()));
                self.file = None;
            }
        }
        if self.head.len() < HEAD_BYTES {
            let take = bytes.len().min(HEAD_BYTES - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * TAIL_BYTES {
            self.tail.drain(..self.tail.len() - TAIL_BYTES);
        }
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
        self.pending.extend_from_slice(bytes);
        let longest = self.secrets.first().map_or(0, Vec::len);
        let cut = match self.pending.iter().rposition(|b| *b == b'\n') {
            Some(newline) => newline + 1,
            None if self.pending.len() > PENDING_BYTES => self.pending.len() - longest,
            None => 0,
        };
        if cut > 0 {
            let ready: Vec<u8> = self.pending.drain(..cut).collect();
            let masked = mask_secrets(&ready, &self.secrets);
            self.emit_step(&masked).await;
        }
    }

    /// Writes what a step printed last without a newline (at the end of the step).
    pub async fn end_step(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let masked = mask_secrets(&rest, &self.secrets);
            self.emit_step(&masked).await;
        }
    }

    async fn emit_step(&mut self, bytes: &[u8]) {
        self.write(bytes).await;
        self.step_tail.extend_from_slice(bytes);
        if self.step_tail.len() > 2 * STEP_TAIL_BYTES {
            self.step_tail
                .drain(..self.step_tail.len() - STEP_TAIL_BYTES);
        }
    }

    /// The current step's last `lines` lines of output, ANSI escape codes removed.
    pub fn step_tail(&self, lines: usize) -> String {
        let text = crate::render::strip_ansi(&String::from_utf8_lossy(&self.step_tail));
        let all: Vec<&str> = text.trim_end().lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Appends a line of chatrun's own (step headers), marked so it stands out from job output.
    pub async fn note(&mut self, line: &str) {
        self.write(format!("[chatrun] {line}\n").as_bytes()).await;
    }

    /// Flushes the file and returns what is kept.
    pub async fn finish(mut self) -> (LogSummary, Option<String>) {
        if let Some(file) = &mut self.file
            && let Err(err) = file.flush().await
        {
            self.file_error = Some(format!("cannot write {}: {err}", self.path.display()));
        }
        let tail_start = self.tail.len().saturating_sub(TAIL_BYTES);
        let summary = LogSummary {
            head: String::from_utf8_lossy(&self.head).into_owned(),
            tail: String::from_utf8_lossy(&self.tail[tail_start..]).into_owned(),
            total: self.total,
            lines: self.lines
                + u64::from(
                    self.tail
                        .last()
                        .or(self.head.last())
                        .is_some_and(|b| *b != b'\n'),
                ),
        };
        (summary, self.file_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_head_and_tail_in_memory_and_everything_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let mut sink = LogSink::create(&path).await;
        let chunk = vec![b'a'; 10_000];
        for _ in 0..100 {
            sink.write(&chunk).await;
        }
        sink.write(b"THE END").await;
        let (summary, error) = sink.finish().await;
        assert_eq!(error, None);
        assert_eq!(summary.total, 1_000_007);
        assert_eq!(summary.head.len(), HEAD_BYTES);
        assert_eq!(summary.tail.len(), TAIL_BYTES);
        assert!(summary.tail.ends_with("THE END"));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1_000_007);
    }

    #[tokio::test]
    async fn keeps_the_last_lines_of_the_current_step_without_colours() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = LogSink::create(&dir.path().join("3.log")).await;
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
        let mut sink = LogSink::create(&path).await;
        sink.set_secrets(["hunter2hunter2".to_string(), "ab".to_string()]);
        sink.write_step(b"token=hunter2").await;
        sink.write_step(b"hunter2 ok ab\nlast hunter2hunter2").await;
        sink.end_step().await;
        let tail = sink.step_tail(5);
        let (summary, _) = sink.finish().await;
        assert_eq!(summary.head, "token=•••••• ok ab\nlast ••••••");
        assert_eq!(tail, "token=•••••• ok ab\nlast ••••••");
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(!file.contains("hunter2"), "{file}");
    }

    #[tokio::test]
    async fn short_output_is_all_in_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = LogSink::create(&dir.path().join("2.log")).await;
        sink.note("step 1").await;
        sink.write(b"hello\n").await;
        let (summary, _) = sink.finish().await;
        assert_eq!(summary.head, "[chatrun] step 1\nhello\n");
        assert_eq!(summary.tail, "");
    }

    #[tokio::test]
    async fn a_log_file_that_cannot_be_created_is_reported_not_fatal() {
        let mut sink = LogSink::create(Path::new("/nonexistent/dir/x.log")).await;
        sink.write(b"still kept").await;
        let (summary, error) = sink.finish().await;
        assert_eq!(summary.head, "still kept");
        assert!(error.unwrap().contains("cannot write"));
    }
}
