//! The outbox sender: the only code that POSTs replies to chat servers.
//!
//! It claims the delivery due first, resolves its target (URL and credentials come from the
//! configuration at send time, so no secret is in the database), POSTs it and records the
//! outcome: sent; retried with exponential backoff and jitter (connection errors, timeouts, 408,
//! 429, 5xx); or dead (any other 4xx, or too many attempts). It sleeps until the next delivery
//! is due or it is woken by a new one.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::chat::{Delivery, mattermost, teams};
use crate::config::Config;
use crate::store::{self, DeliveryRow, Store, ms, now_ms};

/// How long one attempt may take, and how long a claimed delivery is held.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a delivery did not go through.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again later.
    #[error("{message}")]
    Retryable {
        message: String,
        /// What the server asked for (`Retry-After`).
        after: Option<Duration>,
    },
    /// Trying again would fail the same way.
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            after: None,
        }
    }

    fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }
}

/// Sends queued replies.
#[derive(Debug, Clone)]
pub struct Sender {
    pub store: Store,
    pub config: Arc<Config>,
    pub client: reqwest::Client,
    /// Notified when a delivery is queued.
    pub wake: Arc<Notify>,
}

impl Sender {
    /// Delivers until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.try_send_one().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => tracing::error!(error = ?err, "outbox cannot reach the database"),
            }
            let wait = match self.store.next_delivery_at().await {
                Ok(Some(at)) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
                _ => Duration::from_secs(60),
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = woken => {}
                () = tokio::time::sleep(wait.min(Duration::from_secs(60))) => {}
            }
        }
    }

    /// Sends the delivery due first, if one is due. True when there was one.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn try_send_one(&self) -> store::Result<bool> {
        let now = now_ms();
        let hold = now + ms(SEND_TIMEOUT) * 2;
        let Some(row) = self.store.try_claim_delivery(now, hold).await? else {
            return Ok(false);
        };
        match self.send(&row.delivery()).await {
            Ok(()) => {
                tracing::info!(outbox = row.outbox_id, run = ?row.run_id, "reply delivered");
                self.store.mark_sent(row.outbox_id, now_ms()).await?;
            }
            Err(err) => self.failed(&row, err).await?,
        }
        Ok(true)
    }

    /// Sends every delivery that is due, one after another, until none is or `until` passes
    /// (on shutdown). A delivery that fails stays queued for the next start. Returns how many
    /// it tried.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn drain(&self, until: tokio::time::Instant) -> store::Result<usize> {
        let mut tried = 0;
        while tokio::time::Instant::now() < until {
            match tokio::time::timeout_at(until, self.try_send_one()).await {
                Ok(Ok(true)) => tried += 1,
                Ok(Ok(false)) | Err(_) => break,
                Ok(Err(err)) => return Err(err),
            }
        }
        Ok(tried)
    }

    async fn failed(&self, row: &DeliveryRow, err: DeliveryError) -> store::Result<()> {
        let outbox = &self.config.outbox;
        match err {
            DeliveryError::Retryable { message, after }
                if row.attempts < i64::from(outbox.max_attempts) =>
            {
                let delay = after.unwrap_or_else(|| backoff(outbox, row.attempts));
                tracing::warn!(outbox = row.outbox_id, attempt = row.attempts, error = %message,
                    retry_in = ?delay, "reply not delivered; will retry");
                self.store
                    .mark_retry(row.outbox_id, now_ms() + ms(delay), &message)
                    .await
            }
            DeliveryError::Retryable { message, .. } | DeliveryError::Permanent(message) => {
                tracing::error!(outbox = row.outbox_id, attempt = row.attempts, error = %message,
                    "reply given up");
                self.store.mark_dead(row.outbox_id, &message).await
            }
        }
    }

    /// One POST.
    async fn send(&self, delivery: &Delivery) -> Result<(), DeliveryError> {
        let request = match delivery.target.as_str() {
            mattermost::TARGET_POST => {
                let Some((url, token)) = self.config.mattermost.rest() else {
                    return Err(DeliveryError::permanent(
                        "mattermost.url and mattermost.bot_token are not configured",
                    ));
                };
                self.client
                    .post(format!("{url}/api/v4/posts"))
                    .bearer_auth(token)
            }
            other => match other.strip_prefix(teams::TARGET_PREFIX) {
                Some(name) => {
                    let url = self
                        .config
                        .teams
                        .iter()
                        .find(|hook| hook.name == name)
                        .and_then(|hook| hook.follow_up_url.as_deref())
                        .ok_or_else(|| {
                            DeliveryError::permanent(format!(
                                "the Teams webhook `{name}` has no follow_up_url configured"
                            ))
                        })?;
                    self.client.post(url)
                }
                None => {
                    return Err(DeliveryError::permanent(format!(
                        "unknown delivery target `{other}`"
                    )));
                }
            },
        };
        let response = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(delivery.body.clone())
            .timeout(SEND_TIMEOUT)
            .send()
            .await
            .map_err(|err| DeliveryError::retryable(describe(&err.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| Duration::from_secs(secs.min(3600)));
        let body = response.text().await.unwrap_or_default();
        let message = format!("{status}: {}", body.chars().take(300).collect::<String>());
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            Err(DeliveryError::Retryable { message, after })
        } else {
            Err(DeliveryError::permanent(message))
        }
    }
}

/// `base * 2^(attempt-1)`, at most `retry_max`, less up to a fifth at random so retries of many
/// deliveries spread out.
fn backoff(outbox: &crate::config::Outbox, attempt: i64) -> Duration {
    let exp = u32::try_from(attempt.clamp(1, 30) - 1).unwrap_or(0);
    let delay = outbox
        .retry_base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(outbox.retry_max);
    let mut byte = [0u8; 1];
    let jitter = if getrandom::fill(&mut byte).is_ok() {
        delay.mul_f64(f64::from(byte[0]) / 255.0 / 5.0)
    } else {
        Duration::ZERO
    };
    delay - jitter
}

/// A reqwest error, described without its URL: a Workflows URL carries its credential (`sig`)
/// and the description is stored and shown on the run page.
fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "cannot connect".into()
    } else {
        let mut message = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_some_jitter() {
        let outbox = crate::config::Outbox {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_attempts: 20,
        };
        let first = backoff(&outbox, 1);
        assert!(first <= Duration::from_secs(1) && first >= Duration::from_millis(800));
        let fourth = backoff(&outbox, 4);
        assert!(fourth <= Duration::from_secs(8) && fourth >= Duration::from_millis(6400));
        let late = backoff(&outbox, 25);
        assert!(late <= Duration::from_secs(300) && late >= Duration::from_secs(240));
    }
}
