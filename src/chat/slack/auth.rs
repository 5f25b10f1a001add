//! Is a request really from Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256>` of
//! `v0:<X-Slack-Request-Timestamp>:<raw body>` under the app's signing secret, compared in
//! constant time over the raw bytes before anything is parsed; then the timestamp, which the
//! signature covers, within the replay window either way (as Slack's SDKs take the absolute
//! difference).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Why a request is not authentically from Slack, or not now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `X-Slack-Signature` or `X-Slack-Request-Timestamp` header.
    #[error("no X-Slack-Signature or X-Slack-Request-Timestamp header")]
    Missing,
    /// The signature is not `v0=` and 64 hex digits, or the timestamp not a number.
    #[error("the X-Slack-Signature header is not `v0=<hex>`, or the timestamp is not a number")]
    Malformed,
    /// The signing secret did not sign this body at this time.
    #[error("the signature does not match the signing secret")]
    Mismatch,
    /// Signed, but dated outside the replay window.
    #[error(transparent)]
    Replay(#[from] crate::chat::Replay),
}

/// Checks that `secret` signed `body` at `timestamp` (the headers' values, `None` when absent),
/// and that the timestamp lies within `window` of `now_ms`.
///
/// # Errors
///
/// A header is missing or malformed, the signature does not match, or the time is outside the
/// window.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_ms: i64,
    window: Duration,
) -> Result<(), AuthError> {
    let (timestamp, signature) = match (timestamp, signature) {
        (Some(t), Some(s)) => (t.trim(), s.trim()),
        _ => return Err(AuthError::Missing),
    };
    let seconds: i64 = timestamp.parse().map_err(|_| AuthError::Malformed)?;
    let hex = signature.strip_prefix("v0=").ok_or(AuthError::Malformed)?;
    let given = crate::domain::sha256_from_hex(hex).ok_or(AuthError::Malformed)?;
    let mut mac = mac(secret, timestamp);
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| AuthError::Mismatch)?;
    crate::chat::check_replay_window(seconds.saturating_mul(1000), now_ms, window)?;
    Ok(())
}

/// The `X-Slack-Signature` Slack sends with `body` at `timestamp` (unix seconds, as sent).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = mac(secret, timestamp);
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("v0={}", crate::domain::to_hex(&bytes))
}

/// The MAC over `v0:<timestamp>:`, ready for the body.
fn mac(secret: &[u8], timestamp: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's worked example (its documentation, pinned in python-slack-sdk's signature
    // tests; ../shared/protocols/slack.md).
    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &[u8] = include_bytes!("../../../tests/fixtures/slack/slash-command.txt");
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const WINDOW: Duration = Duration::from_secs(300);
    /// The example's own time, and a minute after.
    const THEN: i64 = 1_531_420_618_000;

    fn check(
        secret: &[u8],
        ts: Option<&str>,
        sig: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), AuthError> {
        verify(secret, ts, sig, body, now, WINDOW)
    }

    #[test]
    fn slacks_worked_example_is_signed_and_verified_as_slack_does() {
        assert_eq!(sign(SECRET, TIMESTAMP, BODY), SIGNATURE);
        assert_eq!(
            check(
                SECRET,
                Some(TIMESTAMP),
                Some(SIGNATURE),
                BODY,
                THEN + 60_000
            ),
            Ok(())
        );
        // Upper-case hex is the same signature.
        let upper = format!("v0={}", SIGNATURE[3..].to_uppercase());
        assert_eq!(
            check(SECRET, Some(TIMESTAMP), Some(&upper), BODY, THEN),
            Ok(())
        );
    }

    #[test]
    fn a_wrong_secret_a_changed_body_or_time_and_missing_headers_are_refused() {
        let ts = Some(TIMESTAMP);
        let sig = Some(SIGNATURE);
        assert_eq!(
            check(b"another secret", ts, sig, BODY, THEN),
            Err(AuthError::Mismatch)
        );
        let mut changed = BODY.to_vec();
        changed[BODY.len() - 1] ^= 1;
        assert_eq!(
            check(SECRET, ts, sig, &changed, THEN),
            Err(AuthError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(
            check(SECRET, Some("1531420619"), sig, BODY, THEN),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            check(SECRET, None, sig, BODY, THEN),
            Err(AuthError::Missing)
        );
        assert_eq!(check(SECRET, ts, None, BODY, THEN), Err(AuthError::Missing));
        for bad in [
            "a2114d57",
            "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "v0=zz",
        ] {
            assert_eq!(
                check(SECRET, ts, Some(bad), BODY, THEN),
                Err(AuthError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            check(SECRET, Some("soon"), sig, BODY, THEN),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn a_signed_request_older_or_further_ahead_than_the_window_is_refused() {
        let ok = |now| check(SECRET, Some(TIMESTAMP), Some(SIGNATURE), BODY, now);
        assert!(ok(THEN + 300_000).is_ok());
        assert!(matches!(
            ok(THEN + 301_000),
            Err(AuthError::Replay(crate::chat::Replay::TooOld { .. }))
        ));
        assert!(matches!(
            ok(THEN - 301_000),
            Err(AuthError::Replay(crate::chat::Replay::Ahead { .. }))
        ));
    }
}
