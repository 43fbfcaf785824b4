//! The server's one clock and its one way of writing a time.
//!
//! Inside the server a time is Unix seconds ([`Seconds`]): the ramp controller's virtual
//! clock, observation windows and instance reach all count in them, so they compare without
//! conversions. A time becomes RFC 3339 text only where people or the API read it.

use std::time::{SystemTime, UNIX_EPOCH};

pub use ripcord_engine::ramp::Seconds;

/// Unix seconds now. A system clock set before 1970 reads as 0 rather than failing: every
/// caller compares times, and "long ago" is the safe reading of a clock that is wrong.
pub fn unix_now() -> Seconds {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `seconds` as RFC 3339 in UTC, to the second: `2025-11-28T08:53:20Z`.
///
/// A time too far out for a calendar date (after the year 9999) cannot come from the clock,
/// only from a corrupt record; it is written as its number rather than passed off as another
/// date.
pub fn rfc3339(seconds: Seconds) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|seconds| time::OffsetDateTime::from_unix_timestamp(seconds).ok())
        .and_then(|time| {
            time.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{seconds} (Unix seconds)"))
}

/// Now as RFC 3339 in UTC, to the clock's full precision, as the audit log and key records
/// write it.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_320_000), "2025-11-28T08:53:20Z");
        assert_eq!(rfc3339(u64::MAX), format!("{} (Unix seconds)", u64::MAX));
        let now = now_rfc3339();
        let parsed =
            time::OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339)
                .unwrap();
        let clock = i64::try_from(unix_now()).unwrap();
        assert!(parsed.unix_timestamp().abs_diff(clock) <= 1, "{now}");
    }
}
