//! Identifiers: run numbers and the random ids chatrun makes up (message ids of web and CLI
//! triggers, the local token).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A run's number, as users see it (`#42`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type, Serialize, Deserialize,
)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl RunId {
    /// The run's page under `public_url` (`http://ci.example/runs/42`): the link every reply
    /// and the API give.
    pub fn page(self, public_url: &str) -> String {
        format!("{public_url}/runs/{}", self.0)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// 26 random characters from Mattermost's id alphabet.
///
/// # Errors
///
/// The system's random source failed.
pub fn random_id() -> Result<String, NoRandomness> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuwxyz13456789";
    let mut bytes = [0u8; 26];
    getrandom::fill(&mut bytes).map_err(|err| NoRandomness(err.to_string()))?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

/// The SHA-256 of `secret`, in hex: how a token (a web session's, an agent's) is kept and
/// looked up, never the token itself.
pub fn sha256_hex(secret: &str) -> String {
    use sha2::Digest as _;
    to_hex(&sha2::Sha256::digest(secret.as_bytes()))
}

/// Bytes as lowercase hex digits.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32 bytes of an HMAC-SHA256 written as 64 hex digits (either case); `None` for anything
/// else.
pub fn sha256_from_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// A new agent token: `chatrun_` and 52 random characters (260 bits).
///
/// # Errors
///
/// The system's random source failed.
pub fn agent_token() -> Result<String, NoRandomness> {
    Ok(format!("chatrun_{}{}", random_id()?, random_id()?))
}

/// The system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("no random numbers: {0}")]
pub struct NoRandomness(String);
