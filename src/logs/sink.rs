//! Writing a log: [`LogSink`] takes a run's output as it comes and keeps it within its cap, in
//! the files (head, segments) and in memory (the database's head and tail).

use super::*;

/// Where a run's output goes.
#[derive(Debug)]
pub struct LogSink {
    to: Destination,
    cap: Cap,
    /// The files or the database's chunks; `None` until they are made (see the module's
    /// notes), or once one could not be written (`file_error`).
    disk: Option<Kept>,
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
    pub(super) pending: Vec<u8>,
    /// Since when written output waits to be flushed to the files.
    dirty_since: Option<Instant>,
}

/// Where a log is kept.
#[derive(Debug)]
enum Destination {
    /// In the file at this path (and its segments).
    File(PathBuf),
    /// In the database (or sent to the server that has it), as chunks of the run's.
    Database(
        std::sync::Arc<dyn super::rows::ChunkTarget>,
        crate::domain::RunId,
    ),
}

/// What holds the log once it is made.
#[derive(Debug)]
enum Kept {
    Files(Box<Disk>),
    Rows(super::rows::Rows),
}

impl Kept {
    /// Writes `bytes`, which start at `offset` in the output, after `lines` newlines.
    async fn write(&mut self, bytes: &[u8], offset: u64, lines: u64) -> std::io::Result<()> {
        match self {
            Kept::Files(disk) => disk.write(bytes, offset, lines).await,
            Kept::Rows(rows) => rows.write(bytes).await,
        }
    }

    /// Makes the output up to `total` bytes (`lines` newlines) readable.
    async fn flush(&mut self, total: u64, lines: u64) -> std::io::Result<()> {
        match self {
            Kept::Files(disk) => disk.flush(total, lines).await,
            Kept::Rows(rows) => rows.flush(total, lines).await,
        }
    }

    /// Puts the log together as it stays; its size. What is left of it on failure is removed.
    async fn assemble(self, total: u64) -> std::io::Result<u64> {
        match self {
            Kept::Files(disk) => {
                let parts = disk.parts.clone();
                let assembled = (*disk).assemble(total).await;
                if assembled.is_err() {
                    let _ = tokio::fs::remove_dir_all(&parts).await;
                }
                assembled
            }
            Kept::Rows(rows) => rows.assemble(total).await,
        }
    }
}

/// How long written output may wait before readers of the log see it.
pub(super) const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The log's files while the run goes.
#[derive(Debug)]
pub(super) struct Disk {
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
pub(super) struct Segment {
    /// Where its first byte is in the output.
    offset: u64,
    len: u64,
    path: PathBuf,
}

impl LogSink {
    /// A log for the file at `path`, capped at `max_bytes`. The file (and its folder) is made
    /// when first needed (see the module's notes), not now. When `earlier` (the run's earlier
    /// attempt may have left a log), that log and its segments are removed now. A file that
    /// cannot be made is reported in the log summary, not fatal: the head and tail are still
    /// kept.
    pub async fn create(path: &Path, max_bytes: u64, earlier: bool) -> Self {
        let to = Destination::File(path.to_path_buf());
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
        Self::new(to, Cap::new(max_bytes))
    }

    /// A log of run `run_id` kept in the database by `store`, capped at `max_bytes`; as
    /// [`LogSink::create`].
    pub async fn database(
        store: crate::store::Store,
        run_id: crate::domain::RunId,
        max_bytes: u64,
        earlier: bool,
    ) -> Self {
        Self::chunks(std::sync::Arc::new(store), run_id, max_bytes, earlier).await
    }

    /// A log of run `run_id` kept as chunks, written to `target`, capped at `max_bytes`; as
    /// [`LogSink::create`].
    pub async fn chunks(
        target: std::sync::Arc<dyn super::rows::ChunkTarget>,
        run_id: crate::domain::RunId,
        max_bytes: u64,
        earlier: bool,
    ) -> Self {
        if earlier && let Err(err) = super::rows::Rows::remove(&*target, run_id).await {
            tracing::warn!(error = %err, run = %run_id, "cannot remove the log of an earlier attempt");
        }
        Self::new(
            Destination::Database(target, run_id),
            Cap::new(max_bytes.min(super::rows::MAX_DATABASE_LOG_BYTES)),
        )
    }

    fn new(to: Destination, cap: Cap) -> Self {
        Self {
            to,
            cap,
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
    pub(super) async fn with_cap(path: &Path, cap: Cap) -> Self {
        Self::new(Destination::File(path.to_path_buf()), cap)
    }

    /// Makes the log file and its folder (or starts the database's chunks), with what was
    /// printed so far: all of it is in `head` (called before the output outgrows it). In one
    /// trip to the blocking threads (each costs two thread wake-ups). Nothing when the log is
    /// made already or cannot be.
    async fn open(&mut self) {
        if self.disk.is_some() || self.file_error.is_some() {
            return;
        }
        debug_assert_eq!(self.total, self.head.len() as u64);
        let mut kept = match &self.to {
            Destination::File(path) => {
                let (path, parts) = (path.clone(), parts_dir(path));
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
                Kept::Files(Box::new(Disk {
                    cap: self.cap,
                    main: BufWriter::with_capacity(WRITE_BUFFER, file),
                    main_len: 0,
                    main_last: None,
                    ring: self.cap.in_memory.then(VecDeque::new),
                    parts,
                    parts_made: false,
                    segments: VecDeque::new(),
                    current: None,
                }))
            }
            Destination::Database(store, run_id) => {
                Kept::Rows(super::rows::Rows::new(store.clone(), *run_id, self.cap))
            }
        };
        match kept.write(&self.head, 0, 0).await {
            Ok(()) => self.disk = Some(kept),
            Err(err) => self.fail(&err),
        }
    }

    /// Where the log is kept: its file's path, or the database's table.
    pub fn place(&self) -> String {
        match &self.to {
            Destination::File(path) => path.display().to_string(),
            Destination::Database(target, _) => target.place(),
        }
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
        // The path is the server's: in the log, not on the page.
        tracing::warn!(error = %err, log = %self.place(), "cannot write a run's log");
        self.file_error = Some(match &self.to {
            Destination::File(_) => format!("cannot write the run's log file: {err}"),
            Destination::Database(target, _) => {
                format!("cannot write the run's log to {}: {err}", target.place())
            }
        });
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
            match disk.assemble(self.total).await {
                Ok(len) => stored = len,
                Err(err) => self.fail(&err),
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
                push_ring(ring, rest, keep);
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
