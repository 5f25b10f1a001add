//! Is a request really from Teams: the HMAC-SHA256 of its body, under a webhook's secret,
//! compared in constant time.

use super::*;

/// Why a request is not authentically from Teams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    Missing,
    /// The header is not `HMAC <base64 of 32 bytes>`.
    #[error("the Authorization header is not `HMAC <base64>`")]
    Malformed,
    /// An empty body is never signed by Teams.
    #[error("empty body")]
    EmptyBody,
    /// No configured secret signed this body.
    #[error("the signature matches no configured webhook")]
    Mismatch,
}

/// Which of `keys` signed `body`, per `Authorization: HMAC <base64(HMAC-SHA256(key, body))>`.
/// The scheme is matched case-insensitively, the MAC must be 32 bytes, and every key is tried
/// (constant-time compares, no early exit) over the raw bytes, before anything is parsed.
///
/// # Errors
///
/// The header is missing or malformed, the body is empty, or no key matches.
pub fn verify(
    authorization: Option<&str>,
    body: &[u8],
    keys: &[&[u8]],
) -> Result<usize, AuthError> {
    let header = authorization.ok_or(AuthError::Missing)?.trim();
    let (scheme, value) = header.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("HMAC") {
        return Err(AuthError::Malformed);
    }
    let given = STANDARD
        .decode(value.trim())
        .map_err(|_| AuthError::Malformed)?;
    if given.len() != 32 {
        return Err(AuthError::Malformed);
    }
    if body.is_empty() {
        return Err(AuthError::EmptyBody);
    }
    let mut found = None;
    for (index, key) in keys.iter().enumerate() {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(body);
        if mac.verify_slice(&given).is_ok() && found.is_none() {
            found = Some(index);
        }
    }
    found.ok_or(AuthError::Mismatch)
}

/// The `Authorization` value Teams would send with `body`: `HMAC <base64 MAC>`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("HMAC {}", STANDARD.encode(mac.finalize().into_bytes()))
}
