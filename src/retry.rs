//! When to try again: full-jitter exponential backoff, and the server's own advice
//! (`Retry-After` as seconds or an HTTP date, `retry-after-ms`, `x-should-retry`).

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first retry): uniformly random in
    /// `[0, min(max, base * 2^(retry-1))]` ("full jitter"), so that workers that failed
    /// together do not come back together.
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(retry);
        if ceiling.is_zero() {
            return Duration::ZERO;
        }
        ceiling.mul_f64(rng.random::<f64>())
    }

    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(30));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait before the next try: the server's advice when it gave one (never sooner),
    /// otherwise the jittered backoff.
    pub fn wait(&self, retry: u32, advised: Option<Duration>, rng: &mut impl Rng) -> Duration {
        advised.unwrap_or_else(|| self.delay(retry, rng))
    }
}

/// The server's advice on when to retry, from `retry-after-ms` (preferred: finer) or
/// `Retry-After` (delta seconds, possibly fractional, or an HTTP date).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && let Some(wait) = seconds(ms / 1000.0)
    {
        return Some(wait);
    }
    let value = header_str(headers, "retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An advised wait in seconds as a Duration, whatever the server wrote: negative, NaN and
/// infinite advice is no advice; advice past what a Duration holds (`1e20`) saturates to
/// `Duration::MAX`, which `--max-wait` then turns into a clean stop. Never panics
/// (`Duration::from_secs_f64` does, on overflow).
pub fn seconds(secs: f64) -> Option<Duration> {
    if !(secs.is_finite() && secs >= 0.0) {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// The server's `x-should-retry` header: `Some(true)` for `true`, `Some(false)` for
/// `false`, None otherwise. openai-python (`_base_client.py`, `BaseClient._should_retry`)
/// compares the value exactly with "true" and "false" and obeys it before the status;
/// so does bulkgen (surrounding spaces aside).
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match header_str(headers, "x-should-retry")? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_grows_then_caps_and_stays_within_its_ceiling() {
        let b = Backoff { base: Duration::from_secs(2), max: Duration::from_secs(60) };
        assert_eq!(b.ceiling(1), Duration::from_secs(2));
        assert_eq!(b.ceiling(3), Duration::from_secs(8));
        assert_eq!(b.ceiling(10), Duration::from_secs(60));
        assert_eq!(b.ceiling(200), Duration::from_secs(60));
        let mut rng = StdRng::seed_from_u64(7);
        let samples: Vec<Duration> = (0..1000).map(|_| b.delay(4, &mut rng)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_secs(16)));
        let mean = samples.iter().sum::<Duration>() / 1000;
        assert!(mean > Duration::from_secs(7) && mean < Duration::from_secs(9), "{mean:?}");
    }

    #[test]
    fn server_advice_wins_over_backoff() {
        let b = Backoff { base: Duration::from_secs(2), max: Duration::from_secs(60) };
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(b.wait(5, Some(Duration::from_millis(1500)), &mut rng), Duration::from_millis(1500));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn x_should_retry_is_read_as_the_openai_sdk_reads_it() {
        assert_eq!(should_retry(&headers(&[("x-should-retry", "true")])), Some(true));
        assert_eq!(should_retry(&headers(&[("x-should-retry", "false")])), Some(false));
        assert_eq!(should_retry(&headers(&[("x-should-retry", " false ")])), Some(false));
        assert_eq!(should_retry(&headers(&[("x-should-retry", "yes")])), None);
        assert_eq!(should_retry(&headers(&[("x-should-retry", "True")])), None);
        assert_eq!(should_retry(&HeaderMap::new()), None);
    }

    #[test]
    fn retry_after_reads_seconds_dates_and_milliseconds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(&headers(&[("retry-after", "38")]), now), Some(Duration::from_secs(38)));
        assert_eq!(retry_after(&headers(&[("retry-after", "1.5")]), now), Some(Duration::from_millis(1500)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(retry_after(&headers(&[("retry-after", &date)]), now), Some(Duration::from_secs(120)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(retry_after(&headers(&[("retry-after", &past)]), now), Some(Duration::ZERO));
        let both = headers(&[("retry-after", "2"), ("retry-after-ms", "1250")]);
        assert_eq!(retry_after(&both, now), Some(Duration::from_millis(1250)));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn absurd_advice_saturates_instead_of_panicking() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(&headers(&[("retry-after", "1e19")]), now), Some(Duration::from_secs(10u64.pow(19))));
        assert_eq!(retry_after(&headers(&[("retry-after", "1e20")]), now), Some(Duration::MAX));
        assert_eq!(retry_after(&headers(&[("retry-after-ms", "1e25")]), now), Some(Duration::MAX));
        assert_eq!(retry_after(&headers(&[("retry-after", "1e400")]), now), None, "parses as infinity");
        assert_eq!(retry_after(&headers(&[("retry-after", "-3")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "NaN")]), now), None);
        let far = retry_after(&headers(&[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")]), now).unwrap();
        assert!(far > Duration::from_secs(200 * 365 * 86_400), "{far:?}");
    }
}
