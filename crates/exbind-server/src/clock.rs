//! The one source of time, injectable so tests of quotas and expiry need no sleeping.

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// RFC 3339 text of a millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The UTC date and time of a Unix second, `2026-11-24T07:08:00` (`rfc3339`) or
/// `20261124070800`.
pub fn utc_second(secs: i64, rfc3339: bool) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (date, middle, time) = if rfc3339 {
        ("-", "T", ":")
    } else {
        ("", "", "")
    };
    format!(
        "{:04}{date}{:02}{date}{:02}{middle}{:02}{time}{:02}{time}{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_seconds() {
        assert_eq!(
            super::utc_second(1_700_000_000, true),
            "2023-11-14T22:13:20"
        );
        assert_eq!(super::utc_second(1_700_000_000, false), "20231114221320");
    }
}
