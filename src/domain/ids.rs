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
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
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
