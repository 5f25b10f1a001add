//! What every platform's client shares: one JSON POST with its answer classified (sent,
//! retryable with the server's `Retry-After`, or permanent), and the error a delivery fails
//! with. The retry policy itself is the outbox's.

use std::time::Duration;

use reqwest::StatusCode;

use crate::store::now_ms;

/// How long one POST may take.
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
        /// The request may have arrived all the same (a timeout once connected, a connection
        /// lost after the request was written, a gateway timeout).
        unsure: bool,
    },
    /// Trying again would fail the same way.
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    /// A retryable error without `Retry-After`, surely not delivered.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            after: None,
            unsure: false,
        }
    }

    /// An error that trying again would not change.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }
}

/// POSTs `body` as JSON with `request`, and classifies the answer: 2xx is sent; a connection
/// error, a timeout, 408, 429 and 5xx are retryable (unsure when the request may have arrived);
/// any other status is permanent.
///
/// # Errors
///
/// What went wrong, described without the URL (a Workflows URL carries its credential).
pub async fn post_json(
    request: reqwest::RequestBuilder,
    body: String,
) -> Result<(), DeliveryError> {
    post_json_answer(request, body).await.map(drop)
}

/// As [`post_json`], and the answer's body when it is 2xx (a body that does not arrive whole
/// is an unsure failure: the request did).
///
/// # Errors
///
/// As [`post_json`].
pub async fn post_json_answer(
    request: reqwest::RequestBuilder,
    body: String,
) -> Result<Vec<u8>, DeliveryError> {
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
        return response.bytes().await.map(|b| b.to_vec()).map_err(|err| {
            DeliveryError::Retryable {
                message: format!(
                    "{} (the request arrived; its answer did not)",
                    describe(&err.without_url())
                ),
                after: None,
                unsure: true,
            }
        });
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

/// The response's `Retry-After`, read by [`parse_retry_after`].
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now_ms()))
}

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

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

/// A reqwest error, described without its URL: a Workflows URL carries its credential (`sig`)
/// and the description is stored and shown on the run page.
pub fn describe(err: &reqwest::Error) -> String {
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
}
