//! The outbox sender: the only code that POSTs replies to chat servers.
//!
//! It claims the delivery due first, resolves its target (URL and credentials come from the
//! configuration at send time, so no secret is in the database), POSTs it and records the
//! outcome: sent; retried with exponential backoff and jitter, or when `Retry-After` asks
//! (connection errors, timeouts, 408, 429, 5xx); or dead (any other 4xx, or still failing
//! `outbox.give_up_after` after it was queued). It sleeps until the next delivery is due or it
//! is woken by a new one.
//!
//! Duplicates are bounded. An attempt whose outcome chatrun did not learn (it died between the
//! POST and recording the answer, the request timed out or the connection was lost after the
//! request was written, or a gateway timed out) is counted as *unsure* in the row. Before
//! posting again, [`plan`] decides: a Mattermost post carries `props.chatrun_delivery`
//! ([`delivery_key`]), so the channel's recent posts are searched for it and a post found there
//! marks the delivery sent; a Teams card cannot be searched, so it is sent again only while
//! fewer than two attempts were unsure, and given up after that.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::chat::{mattermost, teams};
use crate::config::Config;
use crate::domain::RunId;
use crate::store::{self, DeliveryRow, Store, ms, now_ms};

/// How long one POST may take. A claimed delivery is held for twice as long, which covers the
/// look-up for an earlier attempt ([`LOOKUP_TIMEOUT`]) and the POST.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the search for an earlier attempt's Mattermost post may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The search for an earlier attempt's post starts this long before the delivery was queued,
/// in case Mattermost's clock is behind ours.
const LOOKUP_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Unsure attempts after which a Teams card is no longer sent: one repeat at most.
pub const MAX_UNSURE_UNSEARCHABLE: i64 = 2;

/// Why a delivery did not go through.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again later.
    #[error("{message}")]
    Retryable {
        message: String,
        /// What the server asked for (`Retry-After`).
        after: Option<Duration>,
        /// The request may have arrived all the same (a timeout once connected, a connection
        /// lost after the request was written, a gateway timeout).
        unsure: bool,
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
            unsure: false,
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

    /// Sends every delivery due now, one after another, until none is due or `until` passes:
    /// what shutdown calls to flush the outbox. A delivery that fails keeps its retry time, as
    /// usual, so the next start tries it again; one cut off by `until` mid-attempt stays
    /// claimed for [`SEND_TIMEOUT`] twice over and counts as unsure on its next attempt.
    /// Returns how many were delivered.
    ///
    /// # Errors
    ///
    /// The database failed.
    ///
    /// # Cancel safety
    ///
    /// As for `until`: a delivery cut off mid-attempt may have been sent.
    pub async fn drain(&self, until: tokio::time::Instant) -> store::Result<usize> {
        let mut delivered = 0;
        loop {
            match tokio::time::timeout_at(until, self.attempt_next()).await {
                Err(_) | Ok(Ok(None)) => return Ok(delivered),
                Ok(Ok(Some(Outcome::Sent))) => delivered += 1,
                Ok(Ok(Some(Outcome::Retry | Outcome::Dead))) => {}
                Ok(Err(err)) => return Err(err),
            }
        }
    }

    /// Sends the delivery due first, if one is due. True when there was one.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn try_send_one(&self) -> store::Result<bool> {
        Ok(self.attempt_next().await?.is_some())
    }

    /// Claims the delivery due first and tries it once; what came of it, or `None` when
    /// none was due.
    async fn attempt_next(&self) -> store::Result<Option<Outcome>> {
        let now = now_ms();
        let hold = now + ms(SEND_TIMEOUT) * 2;
        let Some(row) = self.store.try_claim_delivery(now, hold).await? else {
            return Ok(None);
        };
        let sent = match plan(&row.target, row.unsure) {
            Plan::Send => self.send(&row).await.map(|()| "reply delivered"),
            Plan::LookFirst => match self.find_post(&row).await {
                Ok(true) => Ok("reply found delivered by an earlier attempt; not posted again"),
                Ok(false) => self.send(&row).await.map(|()| "reply delivered"),
                Err(err) => Err(err),
            },
            Plan::GiveUp => Err(DeliveryError::permanent(format!(
                "may already be delivered ({} attempts ended without an answer, the last: {}); \
                 not sent again to avoid a duplicate",
                row.unsure,
                row.last_error.as_deref().unwrap_or("unknown")
            ))),
        };
        match sent {
            Ok(what) => {
                tracing::info!(outbox = row.outbox_id, run = ?row.run_id, "{what}");
                self.store.mark_sent(row.outbox_id, now_ms()).await?;
                Ok(Some(Outcome::Sent))
            }
            Err(err) => self.failed(&row, err).await.map(Some),
        }
    }

    async fn failed(&self, row: &DeliveryRow, err: DeliveryError) -> store::Result<Outcome> {
        let outbox = &self.config.outbox;
        let now = now_ms();
        match retry_at(outbox, row, &err, now) {
            Some(at) => {
                tracing::warn!(outbox = row.outbox_id, attempt = row.attempts, error = %err,
                    retry_in_ms = at - now, "reply not delivered; will retry");
                let unsure = matches!(err, DeliveryError::Retryable { unsure: true, .. });
                self.store
                    .mark_retry(row.outbox_id, at, &err.to_string(), unsure)
                    .await?;
                Ok(Outcome::Retry)
            }
            None => {
                let reason = match err {
                    DeliveryError::Retryable { message, .. } => format!(
                        "gave up after {}: {message}",
                        humantime::format_duration(outbox.give_up_after)
                    ),
                    DeliveryError::Permanent(message) => message,
                };
                tracing::error!(outbox = row.outbox_id, attempt = row.attempts, error = %reason,
                    "reply given up");
                self.store.mark_dead(row.outbox_id, &reason).await?;
                Ok(Outcome::Dead)
            }
        }
    }

    /// Whether the channel holds a post of this delivery, made by an attempt whose answer was
    /// lost: `GET /api/v4/channels/{channel_id}/posts?since=…`, the posts made since it was
    /// queued (less [`LOOKUP_CLOCK_SKEW`]), searched for its [`delivery_key`].
    async fn find_post(&self, row: &DeliveryRow) -> Result<bool, DeliveryError> {
        const CANNOT: &str = "cannot look for an earlier attempt's post";
        let Some((url, token)) = self.config.mattermost.rest() else {
            return Err(DeliveryError::permanent(
                "mattermost.url and mattermost.bot_token are not configured",
            ));
        };
        let channel_id = mattermost::post_channel(&row.body)
            .filter(|id| mattermost::is_id(id))
            .ok_or_else(|| DeliveryError::permanent("the stored post names no valid channel"))?;
        let since = row.created_at - ms(LOOKUP_CLOCK_SKEW);
        let response = self
            .client
            .get(format!(
                "{url}/api/v4/channels/{channel_id}/posts?since={since}"
            ))
            .bearer_auth(token)
            .timeout(LOOKUP_TIMEOUT)
            .send()
            .await
            .map_err(|err| {
                DeliveryError::retryable(format!("{CANNOT}: {}", describe(&err.without_url())))
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(DeliveryError::Retryable {
                message: format!("{CANNOT}: {status}"),
                after: retry_after(&response),
                unsure: false,
            });
        }
        let body = response.bytes().await.map_err(|err| {
            DeliveryError::retryable(format!("{CANNOT}: {}", describe(&err.without_url())))
        })?;
        let key = delivery_key(row.run_id, row.outbox_id, row.created_at);
        mattermost::posts_contain_delivery(&body, &key)
            .map_err(|err| DeliveryError::retryable(format!("{CANNOT}: unreadable answer: {err}")))
    }

    /// One POST. A Mattermost post carries the delivery's key in `props.chatrun_delivery`.
    async fn send(&self, row: &DeliveryRow) -> Result<(), DeliveryError> {
        let delivery = row.delivery();
        let mut body = delivery.body;
        let request = match delivery.target.as_str() {
            mattermost::TARGET_POST => {
                let Some((url, token)) = self.config.mattermost.rest() else {
                    return Err(DeliveryError::permanent(
                        "mattermost.url and mattermost.bot_token are not configured",
                    ));
                };
                let key = delivery_key(row.run_id, row.outbox_id, row.created_at);
                body = mattermost::with_delivery_key(&body, &key)
                    .ok_or_else(|| DeliveryError::permanent("the stored post is not JSON"))?;
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
            .body(body)
            .timeout(SEND_TIMEOUT)
            .send()
            .await
            .map_err(|err| {
                let err = err.without_url();
                // Only a connection never made (or a request never built) surely sent nothing.
                let unsure = !(err.is_connect() || err.is_builder());
                let message = if unsure {
                    format!("{} (the request may have arrived)", describe(&err))
                } else {
                    describe(&err)
                };
                DeliveryError::Retryable {
                    message,
                    after: None,
                    unsure,
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let after = retry_after(&response);
        let body = response.text().await.unwrap_or_default();
        let message = format!("{status}: {}", body.chars().take(300).collect::<String>());
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            Err(DeliveryError::Retryable {
                message,
                after,
                // A gateway that timed out may have passed the request on.
                unsure: status == StatusCode::GATEWAY_TIMEOUT,
            })
        } else {
            Err(DeliveryError::permanent(message))
        }
    }
}

/// What came of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    Retry,
    Dead,
}

/// What to do with a claimed delivery before posting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Post it.
    Send,
    /// Search the channel for a post an earlier attempt made; post only if there is none.
    LookFirst,
    /// Mark it dead: it may already be delivered, and cannot be checked.
    GiveUp,
}

/// Decides how to go on with a delivery to `target` after `unsure` attempts whose outcome is
/// unknown: Mattermost posts can be searched for, so they are looked for first; Teams cards
/// cannot, so one is sent again only while fewer than [`MAX_UNSURE_UNSEARCHABLE`] attempts were
/// unsure, which makes at most one duplicate.
pub fn plan(target: &str, unsure: i64) -> Plan {
    if unsure <= 0 {
        Plan::Send
    } else if target == mattermost::TARGET_POST {
        Plan::LookFirst
    } else if unsure < MAX_UNSURE_UNSEARCHABLE {
        Plan::Send
    } else {
        Plan::GiveUp
    }
}

/// The key that marks a delivery's Mattermost post (`props.chatrun_delivery`): its run, its
/// outbox row and when it was queued, so it is unique to the row even across databases.
pub fn delivery_key(run_id: Option<RunId>, outbox_id: i64, created_at: i64) -> String {
    format!(
        "chatrun-{}-{outbox_id}-{created_at}",
        run_id.map_or(0, |id| id.0)
    )
}

/// The response's `Retry-After`, read by [`parse_retry_after`].
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now_ms()))
}

/// When a failed delivery is tried again, or `None` when it is given up: at once for a
/// permanent error, and for a retryable one when `give_up_after` has passed since it was queued.
/// The next attempt is after the server's `Retry-After` (never sooner than `retry_base`) or the
/// backoff, and no later than the give-up time, so the last attempt falls on it.
fn retry_at(
    outbox: &crate::config::Outbox,
    row: &DeliveryRow,
    err: &DeliveryError,
    now: i64,
) -> Option<i64> {
    let DeliveryError::Retryable { after, .. } = err else {
        return None;
    };
    let give_up_at = row.created_at.saturating_add(ms(outbox.give_up_after));
    if now >= give_up_at {
        return None;
    }
    let delay = after.map_or_else(
        || backoff(outbox, row.attempts),
        |after| after.max(outbox.retry_base),
    );
    Some(now.saturating_add(ms(delay)).min(give_up_at))
}

/// The longest `Retry-After` honoured; a longer one is cut to this.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// A `Retry-After` value (RFC 9110 10.2.3): a number of seconds, or an HTTP date (IMF-fixdate,
/// `Wed, 21 Oct 2015 07:28:00 GMT`) taken relative to `now` (ms since the epoch); at most
/// [`RETRY_AFTER_MAX`], and zero for a date in the past. `None` when it is neither.
pub fn parse_retry_after(value: &str, now: i64) -> Option<Duration> {
    let value = value.trim();
    let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: too many of them is still "a long time".
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = parse_http_date(value)?;
        let wait = at.saturating_mul(1000).saturating_sub(now).max(0);
        Duration::from_millis(u64::try_from(wait).unwrap_or(0))
    };
    Some(delay.min(RETRY_AFTER_MAX))
}

/// An IMF-fixdate (RFC 9110 5.6.7), `Sun, 06 Nov 1994 08:49:37 GMT`, as seconds since the Unix
/// epoch. The day name must be one, but is not checked against the date.
pub fn parse_http_date(text: &str) -> Option<i64> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (day_name, rest) = text.split_once(", ")?;
    if !DAYS.contains(&day_name) {
        return None;
    }
    let mut parts = rest.split(' ');
    let (day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() || zone != "GMT" {
        return None;
    }
    let number = |digits: &str, len: usize| -> Option<i64> {
        (digits.len() == len && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    };
    let day = number(day, 2)?;
    let month = i64::try_from(MONTHS.iter().position(|m| *m == month)? + 1).ok()?;
    let year = number(year, 4)?;
    let mut clock = time.split(':');
    let (hour, minute, second) = (
        number(clock.next()?, 2)?,
        number(clock.next()?, 2)?,
        number(clock.next()?, 2)?,
    );
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if clock.next().is_some()
        || !(1..=month_days).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
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
            give_up_after: Duration::from_secs(24 * 3600),
        };
        let first = backoff(&outbox, 1);
        assert!(first <= Duration::from_secs(1) && first >= Duration::from_millis(800));
        let fourth = backoff(&outbox, 4);
        assert!(fourth <= Duration::from_secs(8) && fourth >= Duration::from_millis(6400));
        let late = backoff(&outbox, 25);
        assert!(late <= Duration::from_secs(300) && late >= Duration::from_secs(240));
    }

    fn outbox() -> crate::config::Outbox {
        crate::config::Outbox {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(3600),
        }
    }

    fn row(attempts: i64, created_at: i64) -> DeliveryRow {
        DeliveryRow {
            outbox_id: 1,
            run_id: None,
            target: "mattermost.post".into(),
            body: "{}".into(),
            attempts,
            created_at,
            thread: None,
            unsure: 0,
            last_error: None,
        }
    }

    #[test]
    fn a_failing_delivery_is_retried_until_give_up_after_has_passed_then_given_up() {
        let hour = 3_600_000;
        let err = DeliveryError::retryable("503 Service Unavailable");
        let at = retry_at(&outbox(), &row(1, 0), &err, 1000).unwrap();
        assert!((1080..=1100).contains(&at), "{at}");
        // The last attempt falls on the give-up time, not after it.
        assert_eq!(
            retry_at(&outbox(), &row(30, 0), &err, hour - 5).unwrap(),
            hour
        );
        assert_eq!(retry_at(&outbox(), &row(31, 0), &err, hour), None);
        assert_eq!(
            retry_at(
                &outbox(),
                &row(1, 0),
                &DeliveryError::permanent("404"),
                1000
            ),
            None,
            "a permanent error dies at once"
        );
    }

    #[test]
    fn retry_after_is_honoured_but_never_sooner_than_the_base_delay() {
        let asked = |secs| DeliveryError::Retryable {
            message: "429".into(),
            after: Some(Duration::from_secs(secs)),
            unsure: false,
        };
        assert_eq!(retry_at(&outbox(), &row(1, 0), &asked(7), 1000), Some(8000));
        assert_eq!(retry_at(&outbox(), &row(1, 0), &asked(0), 1000), Some(1100));
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: at once"
        );
        // Capped at an hour, both ways of asking.
        assert_eq!(parse_retry_after("86400", now), Some(RETRY_AFTER_MAX));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(RETRY_AFTER_MAX)
        );
        assert_eq!(
            parse_retry_after("Thu, 22 Oct 2015 07:28:00 GMT", now),
            Some(RETRY_AFTER_MAX)
        );
        for bad in ["", "-1", "1.5", "soon", "2015-10-21T07:28:00Z"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn http_dates_are_read_as_imf_fixdate() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 23:59:59 GMT"),
            Some(951_868_799)
        );
        assert_eq!(
            parse_http_date("Fri, 31 Dec 2049 12:00:00 GMT"),
            Some(2_524_564_800)
        );
        for bad in [
            "Sunday, 06-Nov-94 08:49:37 GMT", // RFC 850, obsolete
            "Sun Nov  6 08:49:37 1994",       // asctime, obsolete
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 31 Apr 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "Sun, 06 Nov +994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:4é:37 GMT",
            "",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_unsure_mattermost_post_is_looked_for_and_a_teams_card_repeated_at_most_once() {
        let mattermost = mattermost::TARGET_POST;
        assert_eq!(plan(mattermost, 0), Plan::Send);
        assert_eq!(plan(mattermost, 1), Plan::LookFirst);
        assert_eq!(plan(mattermost, 5), Plan::LookFirst);
        assert_eq!(plan("teams:ops", 0), Plan::Send);
        assert_eq!(plan("teams:ops", 1), Plan::Send, "one repeat");
        assert_eq!(plan("teams:ops", 2), Plan::GiveUp, "no second one");
        assert_eq!(plan("teams:ops", 3), Plan::GiveUp);
    }

    #[test]
    fn delivery_keys_differ_per_row_run_and_queue_time() {
        let key = delivery_key(Some(RunId(7)), 12, 1_700_000_000_000);
        assert_eq!(key, "chatrun-7-12-1700000000000");
        assert_ne!(key, delivery_key(Some(RunId(7)), 13, 1_700_000_000_000));
        assert_ne!(key, delivery_key(Some(RunId(8)), 12, 1_700_000_000_000));
        assert_ne!(key, delivery_key(Some(RunId(7)), 12, 1_700_000_000_001));
        assert_eq!(delivery_key(None, 3, 5), "chatrun-0-3-5");
    }
}
