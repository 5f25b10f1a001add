//! Reading a log: `<run>.log` followed by the segments of a run that still goes, as one log
//! addressed by offsets in the output as printed.

use super::*;

/// A segment file as readers see it.
#[derive(Debug)]
pub(super) struct Part {
    offset: u64,
    /// Newlines before it.
    lines: u64,
    len: u64,
    path: PathBuf,
}

/// The segments of a log whose run goes, in order, without those already appended to the file.
pub(super) async fn parts(path: &Path, main_len: u64) -> Vec<Part> {
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
pub(super) async fn read_range(path: &Path, from: u64, length: u64, out: &mut Vec<u8>) -> u64 {
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

/// A run's log as readers get it: its file (followed by its segments while it goes), its
/// chunks in the database, or, for a finished run that has neither, the database's head, which
/// is then the whole log.
#[derive(Debug)]
pub enum RunLog {
    File(PathBuf),
    Rows(crate::store::Store, crate::domain::RunId),
    Head(Vec<u8>),
}

/// `result`'s value; a failure to read is logged and read as `default` (a page shows less).
fn or_logged<T>(result: crate::store::Result<T>, default: T) -> T {
    result.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "cannot read a run's log from the database");
        default
    })
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

    /// The log of run `run_id`, kept in the database by `store`, of a run that is `finished`
    /// (or not), whose database head and printed bytes are `head` and `printed`.
    pub async fn in_database(
        store: crate::store::Store,
        run_id: crate::domain::RunId,
        finished: bool,
        head: &str,
        printed: i64,
    ) -> Self {
        let whole = u64::try_from(printed).is_ok_and(|n| n == head.len() as u64);
        if finished && whole && matches!(store.log_size(run_id).await, Ok(None)) {
            RunLog::Head(head.as_bytes().to_vec())
        } else {
            RunLog::Rows(store, run_id)
        }
    }

    /// As [`read_log`].
    pub async fn read(&self, offset: Option<u64>, length: u64) -> (Vec<u8>, u64, u64) {
        match self {
            RunLog::File(path) => read_log(path, offset, length).await,
            RunLog::Rows(store, run_id) => or_logged(
                super::rows::read(store, *run_id, offset, length).await,
                (Vec::new(), 0, 0),
            ),
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
            RunLog::Rows(store, run_id) => {
                or_logged(super::rows::count_lines(store, *run_id, end).await, 0)
            }
            RunLog::Head(head) => {
                newlines(&head[..usize::try_from(end).unwrap_or(usize::MAX).min(head.len())])
            }
        }
    }

    /// Its size in bytes: the file's (none while it has none) or the head's.
    pub async fn stored(&self) -> Option<u64> {
        match self {
            RunLog::File(path) => tokio::fs::metadata(path).await.ok().map(|m| m.len()),
            RunLog::Rows(store, run_id) => or_logged(store.log_size(*run_id).await, None)
                .and_then(|size| u64::try_from(size).ok()),
            RunLog::Head(head) => Some(head.len() as u64),
        }
    }
}

/// A stretch of a log kept in one place (a file, a chunk in the database), in a reader's list
/// of them in order.
pub(super) trait Piece {
    /// Where it starts in the log, and its length.
    fn span(&self) -> (u64, u64);
    /// Appends up to `want` of its bytes from `from` (in it) to `out`; how many.
    fn read(&self, from: u64, want: u64, out: &mut Vec<u8>) -> impl Future<Output = u64> + Send;
}

impl Piece for Part {
    fn span(&self) -> (u64, u64) {
        (self.offset, self.len)
    }

    async fn read(&self, from: u64, want: u64, out: &mut Vec<u8>) -> u64 {
        read_range(&self.path, from, want, out).await
    }
}

/// Up to `length` bytes from `offset` (clamped to `size`) or, with `None`, the last `length`,
/// out of `pieces`, a log of `size` bytes: as [`read_log`].
pub(super) async fn read_pieces(
    pieces: &[impl Piece],
    size: u64,
    offset: Option<u64>,
    length: u64,
) -> (Vec<u8>, u64, u64) {
    let mut start = offset.map_or(size.saturating_sub(length), |o| o.min(size));
    let mut bytes = Vec::new();
    let mut at = start;
    for piece in pieces {
        let left = length - bytes.len() as u64;
        let (offset, len) = piece.span();
        let end = offset + len;
        if left == 0 {
            break;
        }
        if end <= at {
            continue;
        }
        if offset > at {
            if !bytes.is_empty() {
                // Not contiguous: the caller asks again from where this stops.
                break;
            }
            at = offset;
            start = at;
        }
        let want = left.min(end - at);
        let got = piece.read(at - offset, want, &mut bytes).await;
        at += got;
        if got < want {
            break;
        }
    }
    (bytes, start, size)
}

/// Up to `length` bytes of a run's log from `offset` (clamped to its end) or, with `None`, its
/// last `length` bytes: `(bytes, where they start, the log's size so far)`. Offsets count the
/// output as printed (see the module's notes); when the asked part is no longer kept, the bytes
/// start at the next part kept. Nothing when the log does not exist yet (a queued run) or
/// cannot be read.
pub async fn read_log(path: &Path, offset: Option<u64>, length: u64) -> (Vec<u8>, u64, u64) {
    let main_len = tokio::fs::metadata(path).await.map(|m| m.len()).ok();
    let mut pieces = parts(path, main_len.unwrap_or(0)).await;
    if main_len.is_none() && pieces.is_empty() {
        return (Vec::new(), 0, 0);
    }
    let main_len = main_len.unwrap_or(0);
    let size = pieces
        .last()
        .map_or(main_len, |p| (p.offset + p.len).max(main_len));
    // `<run>.log` first, as the piece at the start.
    pieces.insert(
        0,
        Part {
            offset: 0,
            lines: 0,
            len: main_len,
            path: path.to_path_buf(),
        },
    );
    read_pieces(&pieces, size, offset, length).await
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
