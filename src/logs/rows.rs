//! Logs kept in the database ([`LogStore::database`]), for instances that share one: the same
//! log as the files hold, as chunks in `log_chunk`, so any instance shows (and follows) a run
//! another one executes.
//!
//! While the run goes, its head is stored as it comes (a chunk per flush) and, past the head,
//! the newest output at each flush (at most a segment's length), from the tail held in memory,
//! as the files mirror theirs; chunks that the newer ones hold the tail without are removed.
//! When it ends, the chunks past the head are replaced by the rest of the output, or the marker
//! and the tail, so the stored log is byte for byte the file's. The tail is always held in
//! memory here: with a Postgres database `max_log_bytes` is at most 16 MiB (see `config`).

use crate::domain::RunId;
use crate::store::{LogChunk, Store};

use super::read::{Piece, read_pieces};
use super::*;

/// Where a log's chunks go: the store ([`Store`]), or the server over HTTP (a remote agent's).
pub trait ChunkTarget: Send + Sync + std::fmt::Debug {
    /// Removes the chunks of run `run_id`'s log within `forget` and adds `chunks`
    /// ([`Store::write_log`]).
    fn write_chunks<'a>(
        &'a self,
        run_id: RunId,
        forget: (i64, i64),
        chunks: &'a [LogChunk],
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + 'a>>;

    /// Where the chunks go, for people reading chatrun's log.
    fn place(&self) -> String {
        "the database (log_chunk)".to_string()
    }
}

impl ChunkTarget for Store {
    fn write_chunks<'a>(
        &'a self,
        run_id: RunId,
        forget: (i64, i64),
        chunks: &'a [LogChunk],
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            self.write_log(run_id, forget, chunks)
                .await
                .map_err(std::io::Error::other)
        })
    }
}

/// The largest `max_log_bytes` with logs in the database: the cap whose tail is held in memory.
pub const MAX_DATABASE_LOG_BYTES: u64 = 2 * MEMORY_TAIL_BYTES;

/// A run's log on its way to the database (the sink's half).
#[derive(Debug)]
pub(super) struct Rows {
    store: std::sync::Arc<dyn ChunkTarget>,
    run_id: RunId,
    cap: Cap,
    /// Head bytes not stored yet; they start at `head_stored`.
    unsent: Vec<u8>,
    head_stored: u64,
    /// Newlines in the stored head.
    head_lines: u64,
    /// The head's last byte, to put the marker on a line of its own.
    head_last: Option<u8>,
    /// The output after the head, its last `cap.max - cap.head` bytes.
    ring: VecDeque<u8>,
    /// The end of the newest chunk stored past the head.
    mirrored: u64,
}

fn offset(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Rows {
    pub(super) fn new(store: std::sync::Arc<dyn ChunkTarget>, run_id: RunId, cap: Cap) -> Self {
        Self {
            store,
            run_id,
            cap,
            unsent: Vec::new(),
            head_stored: 0,
            head_lines: 0,
            head_last: None,
            ring: VecDeque::new(),
            mirrored: 0,
        }
    }

    /// Removes what an earlier attempt of run `run_id` stored.
    pub(super) async fn remove(store: &dyn ChunkTarget, run_id: RunId) -> std::io::Result<()> {
        store.write_chunks(run_id, (0, i64::MAX), &[]).await
    }

    /// Takes the next bytes of the output: the head's to store at the next flush (or now, a
    /// segment's worth at a time), the rest to the tail in memory.
    pub(super) async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let head_len = self.head_stored + self.unsent.len() as u64;
        let take = usize::try_from(self.cap.head.saturating_sub(head_len))
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        self.unsent.extend_from_slice(&bytes[..take]);
        self.head_last = bytes[..take].last().copied().or(self.head_last);
        let keep = usize::try_from(self.cap.max - self.cap.head).unwrap_or(usize::MAX);
        push_ring(&mut self.ring, &bytes[take..], keep);
        if self.unsent.len() as u64 >= self.cap.segment {
            let chunks = self.head_chunks();
            self.store(&chunks, (0, 0)).await?;
        }
        Ok(())
    }

    /// The head not stored yet, in chunks of a segment's length at most; counted as stored.
    fn head_chunks(&mut self) -> Vec<LogChunk> {
        let unsent = std::mem::take(&mut self.unsent);
        let chunks = chunks(self.head_stored, self.head_lines, &unsent, self.cap.segment);
        self.head_stored += unsent.len() as u64;
        self.head_lines += newlines(&unsent);
        chunks
    }

    async fn store(&self, chunks: &[LogChunk], forget: (u64, u64)) -> std::io::Result<()> {
        self.store
            .write_chunks(self.run_id, (offset(forget.0), offset(forget.1)), chunks)
            .await
    }

    /// Stores the output up to `total` bytes (`lines` newlines) for readers: the head not
    /// stored yet and the newest output past it, at most a segment's length (a reader may miss
    /// output a step printed faster than that, never the latest), and removes the chunks past
    /// the head that end before the tail.
    pub(super) async fn flush(&mut self, total: u64, lines: u64) -> std::io::Result<()> {
        let mut chunks = self.head_chunks();
        let past = self.head_stored.max(self.mirrored);
        if total > past {
            let want = (total - past)
                .min(self.cap.segment)
                .min(self.ring.len() as u64);
            let from = self.ring.len() - usize::try_from(want).unwrap_or(self.ring.len());
            let newest: Vec<u8> = self.ring.range(from..).copied().collect();
            chunks.push(LogChunk {
                pos: offset(total - want),
                lines: offset(lines - newlines(&newest)),
                data: newest,
            });
            self.mirrored = total;
        }
        if chunks.is_empty() {
            return Ok(());
        }
        self.store(
            &chunks,
            (self.cap.head, total.saturating_sub(self.cap.tail)),
        )
        .await
    }

    /// Stores the log as it stays, `total` bytes having been printed: the head, then all the
    /// rest or the marker and the tail, in place of the chunks past the head; its size.
    pub(super) async fn assemble(mut self, total: u64) -> std::io::Result<u64> {
        let mut chunks = self.head_chunks();
        let mut rest = Vec::new();
        let keep = if total > self.cap.max {
            if self.head_last.is_some_and(|b| b != b'\n') {
                rest.push(b'\n');
            }
            rest.extend_from_slice(marker(total - self.cap.head - self.cap.tail).as_bytes());
            rest.push(b'\n');
            usize::try_from(self.cap.tail).unwrap_or(usize::MAX)
        } else {
            self.ring.len()
        };
        rest.extend(self.ring.range(self.ring.len().saturating_sub(keep)..));
        chunks.extend(super::rows::chunks(
            self.head_stored,
            self.head_lines,
            &rest,
            self.cap.segment,
        ));
        self.store(&chunks, (self.cap.head, u64::MAX)).await?;
        Ok(self.head_stored + rest.len() as u64)
    }
}

/// `data`, which starts at `pos` after `lines` newlines, in chunks of at most `most` bytes.
fn chunks(pos: u64, lines: u64, data: &[u8], most: u64) -> Vec<LogChunk> {
    let (mut pos, mut lines) = (pos, lines);
    data.chunks(usize::try_from(most).unwrap_or(usize::MAX).max(1))
        .map(|piece| {
            let chunk = LogChunk {
                pos: offset(pos),
                lines: offset(lines),
                data: piece.to_vec(),
            };
            pos += piece.len() as u64;
            lines += newlines(piece);
            chunk
        })
        .collect()
}

/// A stretch of a log read from the database: where it starts, its bytes.
impl Piece for (i64, Vec<u8>) {
    fn span(&self) -> (u64, u64) {
        (u64::try_from(self.0).unwrap_or(0), self.1.len() as u64)
    }

    async fn read(&self, from: u64, want: u64, out: &mut Vec<u8>) -> u64 {
        let from = usize::try_from(from)
            .unwrap_or(usize::MAX)
            .min(self.1.len());
        let to = from
            .saturating_add(usize::try_from(want).unwrap_or(usize::MAX))
            .min(self.1.len());
        out.extend_from_slice(&self.1[from..to]);
        (to - from) as u64
    }
}

/// The reader's half: run `run_id`'s log in the database, as [`read_log`] reads a file.
pub(super) async fn read(
    store: &Store,
    run_id: RunId,
    offset: Option<u64>,
    length: u64,
) -> crate::store::Result<(Vec<u8>, u64, u64)> {
    let Some(size) = store.log_size(run_id).await? else {
        return Ok((Vec::new(), 0, 0));
    };
    let size = u64::try_from(size).unwrap_or(0);
    let start = offset.map_or(size.saturating_sub(length), |o| o.min(size));
    let pieces = if start < size && length > 0 {
        store
            .log_range(run_id, self::offset(start), self::offset(length))
            .await?
    } else {
        Vec::new()
    };
    Ok(read_pieces(&pieces, size, Some(start), length).await)
}

/// As [`count_lines`], for run `run_id`'s log in the database.
pub(super) async fn count_lines(
    store: &Store,
    run_id: RunId,
    end: u64,
) -> crate::store::Result<u64> {
    Ok(match store.log_lines_at(run_id, offset(end)).await? {
        Some((lines, bytes)) => u64::try_from(lines).unwrap_or(0) + newlines(&bytes),
        None => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::output;
    use super::*;

    const CAP: u64 = MIN_MAX_LOG_BYTES;

    /// Writes `all` in pieces of `step` bytes to a log file and to the database alike, flushing
    /// after every `every`-th piece (0: never), and checks that readers get the same from both
    /// while the run goes and once it is over.
    async fn alike(all: &[u8], step: usize, every: usize) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        let path = dir.path().join("1.log");
        let run_id = RunId(1);
        let mut file = LogSink::create(&path, CAP, false).await;
        let mut rows = LogSink::database(store.clone(), run_id, CAP, false).await;
        let what = format!("{} bytes by {step}, flushed every {every}", all.len());
        for (i, piece) in all.chunks(step).enumerate() {
            file.write(piece).await;
            rows.write(piece).await;
            if every > 0 && i % every == 0 {
                file.flush().await;
                rows.flush().await;
                let (from_file, from_rows) = (
                    RunLog::File(path.clone()),
                    RunLog::Rows(store.clone(), run_id),
                );
                let (bytes, start, size) = from_file.read(None, 1000).await;
                assert_eq!(
                    from_rows.read(None, 1000).await,
                    (bytes, start, size),
                    "{what}: live end"
                );
                for at in [start, size] {
                    assert_eq!(
                        from_rows.count_lines(at).await,
                        from_file.count_lines(at).await,
                        "{what}: lines before {at}, live"
                    );
                }
            }
        }
        let (file_summary, file_error) = file.finish().await;
        let (rows_summary, rows_error) = rows.finish().await;
        assert_eq!((&file_error, &rows_error), (&None, &None), "{what}");
        assert_eq!(rows_summary, file_summary, "{what}");
        let printed = i64::try_from(file_summary.printed).unwrap();
        let from_file = RunLog::of(path.clone(), true, &file_summary.head, printed).await;
        let from_rows =
            RunLog::in_database(store.clone(), run_id, true, &rows_summary.head, printed).await;
        assert_eq!(
            matches!(from_rows, RunLog::Head(_)),
            matches!(from_file, RunLog::Head(_)),
            "{what}: kept in the head only"
        );
        let whole = from_file.read(Some(0), u64::MAX / 2).await;
        assert_eq!(
            from_rows.read(Some(0), u64::MAX / 2).await,
            whole,
            "{what}: the log"
        );
        assert_eq!(
            from_rows.stored().await,
            from_file.stored().await,
            "{what}: size"
        );
        let size = whole.2;
        for at in [0, size / 3, size / 2, size - size.min(10), size] {
            assert_eq!(
                from_rows.count_lines(at).await,
                from_file.count_lines(at).await,
                "{what}: lines before {at}"
            );
        }
    }

    #[tokio::test]
    async fn a_log_in_the_database_reads_as_its_file_does() {
        // Short, over before a flush: in the database's head only.
        alike(b"short\n", 100, 0).await;
        // Not UTF-8: kept beyond the head.
        alike(&[0xff, b'\n'], 100, 0).await;
        // Over the head, flushed as it goes.
        alike(&output(30_000), 1000, 3).await;
        // Exactly the cap, then just over it.
        let cap = usize::try_from(CAP).unwrap();
        alike(&output(cap), 1000, 7).await;
        alike(&output(cap + 1), 1000, 7).await;
        // Far over the cap at a human pace, and as a flood flushed once at its end.
        alike(&output(500_000), 4096, 1).await;
        alike(&output(500_000), 4096, 0).await;
    }

    #[tokio::test]
    async fn a_capped_log_keeps_no_more_in_the_database_than_its_file_would() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        let run_id = RunId(2);
        let cap = Cap::new(CAP);
        let mut sink = LogSink::database(store.clone(), run_id, CAP, false).await;
        let all = output(1_000_000);
        let mut most = 0;
        for piece in all.chunks(3000) {
            sink.write(piece).await;
            sink.flush().await;
            let kept: usize = store
                .log_range(run_id, 0, i64::MAX / 2)
                .await
                .unwrap()
                .iter()
                .map(|(_, data)| data.len())
                .sum();
            most = most.max(kept as u64);
        }
        assert!(most <= CAP + cap.segment, "{most} bytes kept while it went");
        let (summary, _) = sink.finish().await;
        assert!(summary.stored <= CAP);

        // A new attempt of the run starts with nothing of the last one's log.
        let sink = LogSink::database(store.clone(), run_id, CAP, true).await;
        assert_eq!(store.log_size(run_id).await.unwrap(), None);
        drop(sink);
    }
}
