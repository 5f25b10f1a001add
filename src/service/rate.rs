//! The rate limit on requests that start runs: a sliding one-minute window per user.

use std::time::Duration;

/// A sliding one-minute window of requests per user.
#[derive(Debug, Default)]
pub struct RateLimit {
    seen: std::sync::Mutex<
        std::collections::HashMap<String, std::collections::VecDeque<std::time::Instant>>,
    >,
}

impl RateLimit {
    /// Counts a request of `user` and says whether it is within `per_minute` (0: no limit);
    /// when not, how long until the next is allowed.
    pub fn check(&self, user: &str, per_minute: usize) -> Result<(), Duration> {
        if per_minute == 0 {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let window = Duration::from_secs(60);
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let times = seen.entry(user.to_string()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.len() >= per_minute {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(window.saturating_sub(now.duration_since(oldest)));
        }
        times.push_back(now);
        Ok(())
    }
}
