//! Wall-clock time as nightjar shows it: Unix seconds, RFC 3339 text, and how long is left
//! before a certificate, a signature or a registration expires.
//!
//! A leaf: it imports nothing from the crate, so checks, status and the page share it
//! without importing one another.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds in a day.
const DAY: f64 = 86_400.0;

/// The time from the Unix epoch to `time` (zero before the epoch).
pub fn since_epoch(time: SystemTime) -> Duration {
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// `time` as whole Unix seconds (0 before the epoch).
pub fn unix_secs(time: SystemTime) -> i64 {
    since_epoch(time).as_secs() as i64
}

/// Now as whole Unix seconds.
pub fn unix_now() -> i64 {
    unix_secs(SystemTime::now())
}

/// The time `secs` Unix seconds after the epoch (the epoch itself for negative values).
pub fn from_unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

/// RFC 3339 in UTC with milliseconds: `2025-01-31T12:00:00.000Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let time: chrono::DateTime<chrono::Utc> = time.into();
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// [`rfc3339`] of a Unix time in seconds.
pub fn rfc3339_unix(secs: i64) -> String {
    rfc3339(from_unix(secs))
}

/// Days from `now` until `at` (Unix seconds); negative once `at` is past.
pub fn days_until(at: i64, now: SystemTime) -> f64 {
    (at - unix_secs(now)) as f64 / DAY
}

/// Days from now until `at` (Unix seconds), to one decimal: the API's `days_left`.
pub fn days_left(at: i64) -> f64 {
    (days_until(at, SystemTime::now()) * 10.0).round() / 10.0
}

/// A check's verdict on something `days` away from expiring: `expires in 12.5 days`, or
/// `expired 2.0 days ago` once past.
pub fn expiry_verdict(days: f64) -> String {
    if days < 0.0 {
        format!("expired {:.1} days ago", -days)
    } else {
        format!("expires in {days:.1} days")
    }
}

/// The status page's time left before an expiry `seconds` away: `12 days left`,
/// `2.0 hours left`, `expired 3.0 days ago`.
pub fn left_text(seconds: i64) -> String {
    if seconds < 0 {
        format!("expired {} ago", days_text(-seconds))
    } else {
        format!("{} left", days_text(seconds))
    }
}

/// A span of `seconds` as the status page writes it: `12 days`, `3.5 days`, `2.0 hours`.
pub fn days_text(seconds: i64) -> String {
    let days = seconds as f64 / DAY;
    if days >= 10.0 {
        format!("{days:.0} days")
    } else if days >= 1.0 {
        format!("{days:.1} days")
    } else {
        format!("{:.1} hours", seconds as f64 / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(expiry_verdict(12.46), "expires in 12.5 days");
        assert_eq!(expiry_verdict(0.0), "expires in 0.0 days");
        assert_eq!(expiry_verdict(-2.0), "expired 2.0 days ago");
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(days_until(1_000_000 + 86_400 * 3 / 2, now), 1.5);
        assert_eq!(days_until(1_000_000 - 86_400, now), -1.0);
    }

    #[test]
    fn unix_times() {
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert_eq!(from_unix(-5), UNIX_EPOCH);
        assert_eq!(rfc3339_unix(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_unix(86_400), "1970-01-02T00:00:00.000Z");
    }
}
