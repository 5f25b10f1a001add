//! Is a request really from our Mattermost: its token, compared in constant time.

use super::*;

/// Whether `given` is one of the `accepted` tokens, in constant time: both sides are hashed
/// first, so neither the content nor the length of a token leaks through timing, and every
/// accepted token is compared.
pub fn token_matches(given: &str, accepted: &[String]) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let mut found = subtle::Choice::from(0);
    for token in accepted {
        let token = Sha256::digest(token.as_bytes());
        found |= given.as_slice().ct_eq(token.as_slice());
    }
    !accepted.is_empty() && bool::from(found)
}
