//! When the endpoint sink tries again: full-jitter exponential backoff between failed attempts,
//! and the server's own `Retry-After` (delta-seconds or any of the three HTTP-date forms).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// First backoff ceiling: a receiver that blips (a rolling restart) is retried within a second.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// Largest backoff ceiling: an endpoint down for hours is still probed every few minutes, so
/// delivery resumes soon after it returns without hammering it meanwhile.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);

/// Longest `Retry-After` obeyed. A server asking for more (or a date far ahead, e.g. from a
/// skewed clock) gets this instead, so a bad header cannot silence a node for days.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(10 * 60);

/// Full-jitter exponential backoff (the "Full Jitter" of the AWS architecture blog, as in
/// Vector's HTTP sinks): the n-th consecutive retry sleeps a uniformly random time in
/// `[0, min(cap, base * 2^n)]`, which spreads a fleet of nodes that lost the endpoint at the
/// same moment instead of having them return in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: BACKOFF_BASE,
            cap: BACKOFF_CAP,
        }
    }
}

impl Backoff {
    /// `min(cap, base * 2^attempt)`; `attempt` counts from 0 for the first retry.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// A random delay in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=ceiling))
    }
}

/// The wait a `Retry-After` value asks for, measured from `now`, at most [`RETRY_AFTER_MAX`].
/// `None` when the value is neither delta-seconds nor an HTTP-date (RFC 9110 §10.2.3); a date
/// in the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Overlong digit strings are huge waits, not errors.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = parse_http_date(value)?;
        let now = i64::try_from(now.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()?;
        Duration::from_secs(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
    };
    Some(wait.min(RETRY_AFTER_MAX))
}

/// Seconds since the Unix epoch of an HTTP-date: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// and the obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`) forms that RFC 9110 says recipients must still accept.
fn parse_http_date(s: &str) -> Option<i64> {
    let fields: Vec<&str> = s.split_whitespace().collect();
    let (day, month, year, time) = match fields.as_slice() {
        [wkday, day, month, year, time, "GMT"] if wkday.ends_with(',') => {
            (day.parse().ok()?, *month, year.parse().ok()?, *time)
        }
        [weekday, date, time, "GMT"] if weekday.ends_with(',') => {
            let mut parts = date.split('-');
            let day = parts.next()?.parse().ok()?;
            let month = parts.next()?;
            let yy: i64 = parts.next()?.parse().ok()?;
            // Two-digit years: RFC 9110 says to read one more than 50 years ahead as the past
            // century; for a retry hint, 70..99 as 19xx and the rest as 20xx is that rule.
            let year = match yy {
                0..=69 => 2000 + yy,
                70..=99 => 1900 + yy,
                _ => yy,
            };
            (day, month, year, *time)
        }
        [_wkday, month, day, time, year] => (day.parse().ok()?, *month, year.parse().ok()?, *time),
        _ => return None,
    };
    let month = match month {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    // Years and times out of range would overflow the arithmetic below (HTTP-dates have
    // four-digit years).
    if hms.next().is_some()
        || !(0..=9999).contains(&year)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&m)
        || !(0..=60).contains(&sec)
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm, the inverse
/// of the one in `clock`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::from_millis(500));
        assert_eq!(b.ceiling(1), Duration::from_secs(1));
        assert_eq!(b.ceiling(3), Duration::from_secs(4));
        assert_eq!(b.ceiling(9), Duration::from_secs(256));
        assert_eq!(b.ceiling(10), BACKOFF_CAP);
        assert_eq!(b.ceiling(40), BACKOFF_CAP);
        assert_eq!(b.ceiling(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn delay_stays_within_the_ceiling() {
        let b = Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(35),
        };
        for attempt in 0..12 {
            for _ in 0..50 {
                assert!(b.delay(attempt) <= b.ceiling(attempt));
            }
        }
        let zero = Backoff {
            base: Duration::ZERO,
            cap: Duration::ZERO,
        };
        assert_eq!(zero.delay(5), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(RETRY_AFTER_MAX)
        );
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    /// Years or times far out of range overflowed the day arithmetic (a panic with overflow
    /// checks, a wrapped wait without).
    #[test]
    fn retry_after_dates_out_of_range_are_not_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        for v in [
            "Sun, 06 Nov 99999999999999999 08:49:37 GMT",
            "Sun, 06 Nov -9223372036854775808 08:49:37 GMT",
            "Sunday, 06-Nov-9223372036854775807 08:49:37 GMT",
            "Sun Nov  6 08:49:37 99999999999999999",
            "Sun, 06 Nov 1994 -9223372036854775808:49:37 GMT",
            "Sun, 06 Nov 1994 08:-9223372036854775808:37 GMT",
        ] {
            assert_eq!(parse_retry_after(v, now), None, "{v}");
        }
    }

    #[test]
    fn retry_after_http_dates() {
        // 1994-11-06T08:49:37Z, the example of RFC 9110.
        let at = 784_111_777;
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(at));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(at));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(at));
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT"),
            Some(1_709_251_199)
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);

        let now = UNIX_EPOCH + Duration::from_secs(at as u64);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            parse_retry_after("Fri, 06 Nov 2094 08:00:00 GMT", now),
            Some(RETRY_AFTER_MAX)
        );
    }
}
