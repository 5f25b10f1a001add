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
