//! How the API writes instants: RFC 3339 in UTC with milliseconds
//! (`2026-01-31T09:00:00.123Z`). The engine keeps milliseconds since the Unix
//! epoch; only this module turns them into text, so every response agrees,
//! and reads them back from queries.

use chrono::{DateTime, SecondsFormat, Utc};

/// `ms` since the Unix epoch as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: u64) -> String {
    let instant = i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    instant.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An RFC 3339 instant (any offset) as `ms` since the Unix epoch (negative
/// before 1970); `None` if it is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let instant = DateTime::parse_from_rfc3339(text).ok()?;
    Some(instant.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn instants_read_back_from_any_offset() {
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_rfc3339("2023-11-15T00:13:20.123+02:00"),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
