//! The one retry policy of every kiln network client: which answers are worth asking again,
//! how long to wait before the next attempt, and how a server's `Retry-After` is read.
//!
//! [`RetryPolicy`] holds the numbers (attempts, first and longest backoff, jitter); each client
//! keeps its own defaults (registries ride out restarts, mirrors and indexes give up sooner).
//! [`retryable_status`] and [`crate::http::FailureKind::is_transient`] decide what is retried;
//! [`retry_after`] reads the header in both forms HTTP allows (seconds, or an HTTP date).
//! [`RetryPolicy::after_transport_failure`] and [`RetryPolicy::after_status`] turn one failed
//! attempt into a [`Decision`] (send again after a wait, stop, or stop because the server
//! throttles for longer than kiln waits). [`get_blocking`] is the retry loop of the blocking
//! clients (Alpine mirrors, Python indexes); the registry client asks the same decisions in its
//! own async loop, which also re-authenticates and knows which requests may be sent again.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::failure::{Failure, classify, hint, report_retry};

/// Whether backoffs are spread around their nominal value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the nominal backoff.
    None,
    /// Within +-25% of it, so clients that failed together do not retry together.
    Quarter,
}

/// When and how often to retry.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per request, the first included. Default 5: enough to ride out a registry
    /// restart or a short 503 burst without hiding a real outage for long.
    pub attempts: u32,
    /// First backoff. Default 200 ms; doubled each attempt.
    pub base_delay: Duration,
    /// Longest backoff, and the longest `Retry-After` kiln waits. Default 30 s; a registry's
    /// 429 asking for longer fails at once with the rate-limit hint.
    pub max_delay: Duration,
    /// Spread of each backoff. Default [`Jitter::Quarter`].
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            jitter: Jitter::Quarter,
        }
    }
}

impl RetryPolicy {
    /// Attempts per request, at least one.
    pub fn attempts(&self) -> u32 {
        self.attempts.max(1)
    }

    /// The backoff after failed attempt number `attempt` (1 for the first): `base_delay`
    /// doubled for each attempt after the first, capped at `max_delay`, then jittered.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let nominal = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        match self.jitter {
            Jitter::None => nominal,
            Jitter::Quarter => jitter(nominal),
        }
    }

    /// The wait before the next attempt after failed attempt `attempt`: the server's
    /// `Retry-After` when it asked for one (capped at `max_delay`), else the backoff.
    pub fn delay(&self, attempt: u32, asked: Option<Duration>) -> Duration {
        match asked {
            Some(asked) => asked.min(self.max_delay),
            None => self.backoff(attempt),
        }
    }
}

/// What the policy says after an attempt that did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send the request again after this wait.
    Retry(Duration),
    /// Stop: waiting does not change the answer, or the attempts are spent.
    Stop,
    /// Stop: the server throttles (429) and asks for a longer wait than `max_delay`, or still
    /// throttles after the last attempt; the caller says so with its rate-limit hint.
    Throttled,
}

impl RetryPolicy {
    /// After attempt `attempt` (1 for the first) of `attempts` failed before an answer came:
    /// retry after the backoff while the failure may pass by waiting
    /// ([`crate::http::FailureKind::is_transient`]) and attempts remain.
    pub fn after_transport_failure(
        &self,
        attempt: u32,
        attempts: u32,
        failure: &Failure,
    ) -> Decision {
        if failure.kind.is_transient() && attempt < attempts {
            Decision::Retry(self.backoff(attempt))
        } else {
            Decision::Stop
        }
    }

    /// After attempt `attempt` (1 for the first) of `attempts` was answered with `status` and
    /// `headers`: a status [`retryable_status`] accepts is sent again after the wait the server
    /// asked for (capped at `max_delay`) or the backoff, while attempts remain; a 429 asking for
    /// more than `max_delay` is not waited for. Every other status (success included) is final.
    pub fn after_status(
        &self,
        attempt: u32,
        attempts: u32,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Decision {
        if !retryable_status(status) {
            return Decision::Stop;
        }
        let asked = retry_after(headers);
        if status == StatusCode::TOO_MANY_REQUESTS
            && (attempt >= attempts || asked.is_some_and(|wait| wait > self.max_delay))
        {
            return Decision::Throttled;
        }
        if attempt >= attempts {
            return Decision::Stop;
        }
        Decision::Retry(self.delay(attempt, asked))
    }
}

/// Whether a response with `status` is worth sending again: a request timeout, throttling, or
/// a server error that says "try later" (500, 502, 503, 504). Other statuses (4xx, 501, 505)
/// do not change by waiting.
pub fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The wait a response asks for in `Retry-After`, as a number of seconds or as an HTTP date
/// (a date in the past asks for no wait); `None` without the header or when it is neither.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `delay` within +-25%, from the clock's nanoseconds: enough to spread retries without a
/// random number generator.
fn jitter(delay: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    delay.mul_f64(factor)
}

/// Sends the request `request` builds, again after each transport failure that may pass and
/// each retryable status, while `policy` allows; one line on standard error per retry
/// (`<shown>: <what failed>`). Returns the last response whatever its status (the caller
/// decides what a 404 or an exhausted 503 means), or the last transport failure in words with
/// its hint. `shown` is the URL without credentials; `host` names the server in hints.
pub fn get_blocking(
    policy: &RetryPolicy,
    shown: &str,
    host: &str,
    request: impl Fn() -> reqwest::blocking::RequestBuilder,
) -> Result<reqwest::blocking::Response, String> {
    let attempts = policy.attempts();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match request().send() {
            Ok(response) => {
                let status = response.status();
                let Decision::Retry(delay) =
                    policy.after_status(attempt, attempts, status, response.headers())
                else {
                    return Ok(response);
                };
                report_retry(
                    delay,
                    attempt + 1,
                    attempts,
                    &format!("{shown}: HTTP {status}"),
                );
                std::thread::sleep(delay);
            }
            Err(e) => {
                let failure = classify(&e);
                let what = match hint(&failure, host, None) {
                    Some(hint) => format!("{}; {hint}", failure.detail),
                    None => failure.detail.clone(),
                };
                let Decision::Retry(delay) =
                    policy.after_transport_failure(attempt, attempts, &failure)
                else {
                    return Err(what);
                };
                report_retry(delay, attempt + 1, attempts, &format!("{shown}: {what}"));
                std::thread::sleep(delay);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::FailureKind;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    fn asking(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let cases: &[(&str, Option<Duration>)] = &[
            ("120", Some(Duration::from_secs(120))),
            (" 3 ", Some(Duration::from_secs(3))),
            (
                "Sun, 06 Nov 1994 08:49:47 GMT",
                Some(Duration::from_secs(10)),
            ),
            ("Sun, 06 Nov 1994 08:49:27 GMT", Some(Duration::ZERO)),
            (
                "Sunday, 06-Nov-94 08:50:37 GMT",
                Some(Duration::from_secs(60)),
            ),
            ("soon", None),
            ("-1", None),
        ];
        for (value, expected) in cases {
            assert_eq!(retry_after_at(&asking(value), now), *expected, "{value}");
        }
        assert_eq!(retry_after_at(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_longest_wait() {
        let policy = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(300),
            max_delay: Duration::from_secs(1),
            jitter: Jitter::None,
        };
        let waits: Vec<_> = (1..=4).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(waits, [300, 600, 1000, 1000]);
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(1)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_millis(50))),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let d = jitter(Duration::from_millis(1000));
        assert!(
            d >= Duration::from_millis(750) && d <= Duration::from_millis(1250),
            "{d:?}"
        );
    }

    #[test]
    fn decisions_after_one_failed_attempt() {
        let policy = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            jitter: Jitter::None,
        };
        let status = |code: u16, asked: Option<&str>, attempt: u32| {
            let headers = asked.map(asking).unwrap_or_default();
            policy.after_status(attempt, 3, StatusCode::from_u16(code).unwrap(), &headers)
        };
        let ms = |n| Decision::Retry(Duration::from_millis(n));
        let cases: &[(u16, Option<&str>, u32, Decision)] = &[
            (200, None, 1, Decision::Stop),
            (404, None, 1, Decision::Stop),
            (503, None, 1, ms(100)),
            (503, None, 2, ms(200)),
            (503, None, 3, Decision::Stop),
            (503, Some("3600"), 1, ms(10_000)),
            (429, Some("2"), 1, ms(2_000)),
            (429, Some("11"), 1, Decision::Throttled),
            (429, None, 3, Decision::Throttled),
        ];
        for (code, asked, attempt, expected) in cases {
            assert_eq!(
                status(*code, *asked, *attempt),
                *expected,
                "{code} {asked:?} {attempt}"
            );
        }
        let failure = |kind| Failure {
            kind,
            detail: String::new(),
        };
        let refused = failure(FailureKind::Refused);
        assert_eq!(policy.after_transport_failure(1, 3, &refused), ms(100));
        assert_eq!(
            policy.after_transport_failure(3, 3, &refused),
            Decision::Stop
        );
        let unknown_ca = failure(FailureKind::UnknownCa);
        assert_eq!(
            policy.after_transport_failure(1, 3, &unknown_ca),
            Decision::Stop
        );
    }

    #[test]
    fn only_statuses_that_change_by_waiting_are_retried() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(
                retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [200, 400, 401, 403, 404, 501, 505] {
            assert!(
                !retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }
}
