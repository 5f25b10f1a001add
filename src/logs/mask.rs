//! Secret masking: every occurrence of a job's `secret_env` values in its output is replaced
//! before anything is written or kept.

use std::borrow::Cow;

/// What a secret value is replaced with.
pub const MASK: &str = "••••••";

/// Held-back output beyond which it is written anyway (a very long line).
pub(super) const PENDING_BYTES: usize = 64 * 1024;

/// `text` with every occurrence of each secret replaced by [`MASK`].
pub fn mask_secrets(text: &[u8], secrets: &[Vec<u8>]) -> Vec<u8> {
    masked(text, secrets).into_owned()
}

/// [`mask_secrets`], without a copy when no secret occurs (the usual case), searched with
/// `memchr`'s vectorised finder: a byte-by-byte comparison dominated a large run's time.
pub(super) fn masked<'a>(text: &'a [u8], secrets: &[Vec<u8>]) -> Cow<'a, [u8]> {
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
pub(super) fn safe_cut(pending: &[u8], secrets: &[Vec<u8>]) -> usize {
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
