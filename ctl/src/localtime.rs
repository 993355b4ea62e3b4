//! Times as people read them: ISO 8601 in the local time zone with its UTC
//! offset (`2026-12-02T07:05:09.123+01:00`), for `vlnet ctl` output and
//! the log. The zone comes from the C library (`TZ`, `/etc/localtime`).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A moment broken down in the local time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// Year, e.g. 2026.
    pub year: i32,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of the month, 1..=31.
    pub day: u8,
    /// Hour, 0..=23.
    pub hour: u8,
    /// Minute, 0..=59.
    pub minute: u8,
    /// Second, 0..=60 (a leap second).
    pub second: u8,
    /// Milliseconds, 0..=999.
    pub millis: u16,
    /// Offset from UTC, seconds east.
    pub offset_secs: i32,
}

impl LocalTime {
    /// `unix_ms` (milliseconds since the Unix epoch) in the local zone;
    /// `None` if the C library cannot convert it.
    #[must_use]
    pub fn from_unix_ms(unix_ms: u64) -> Option<Self> {
        let secs = libc::time_t::try_from(unix_ms / 1000).ok()?;
        // SAFETY: `tm` is plain data; all-zero is a valid value to overwrite.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; localtime_r is the
        // thread-safe variant and writes only `tm`.
        let done = unsafe { libc::localtime_r(&raw const secs, &raw mut tm) };
        if done.is_null() {
            return None;
        }
        Some(Self {
            year: tm.tm_year + 1900,
            month: u8::try_from(tm.tm_mon + 1).ok()?,
            day: u8::try_from(tm.tm_mday).ok()?,
            hour: u8::try_from(tm.tm_hour).ok()?,
            minute: u8::try_from(tm.tm_min).ok()?,
            second: u8::try_from(tm.tm_sec).ok()?,
            millis: u16::try_from(unix_ms % 1000).ok()?,
            offset_secs: i32::try_from(tm.tm_gmtoff).ok()?,
        })
    }

    /// Now, in the local zone.
    #[must_use]
    pub fn now() -> Option<Self> {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_millis();
        Self::from_unix_ms(u64::try_from(ms).ok()?)
    }
}

impl fmt::Display for LocalTime {
    /// `YYYY-MM-DDThh:mm:ss.mmm±hh:mm` (`{:#}` leaves out the milliseconds).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )?;
        if !f.alternate() {
            write!(f, ".{:03}", self.millis)?;
        }
        let sign = if self.offset_secs < 0 { '-' } else { '+' };
        let offset = self.offset_secs.unsigned_abs() / 60;
        write!(f, "{sign}{:02}:{:02}", offset / 60, offset % 60)
    }
}

/// `unix_ms` as local ISO 8601, or the raw number if it cannot be converted.
#[must_use]
pub fn iso8601(unix_ms: u64) -> String {
    LocalTime::from_unix_ms(unix_ms).map_or_else(|| format!("{unix_ms} ms"), |t| t.to_string())
}

/// Log line times in the local zone (for `tracing_subscriber`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogTime;

impl tracing_subscriber::fmt::time::FormatTime for LogTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> fmt::Result {
        match LocalTime::now() {
            Some(t) => write!(w, "{t}"),
            None => write!(w, "-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset_secs: i32) -> LocalTime {
        LocalTime {
            year: 2026,
            month: 12,
            day: 2,
            hour: 7,
            minute: 5,
            second: 9,
            millis: 42,
            offset_secs,
        }
    }

    #[test]
    fn iso8601_with_the_offset() {
        assert_eq!(at(3600).to_string(), "2026-12-02T07:05:09.042+01:00");
        assert_eq!(at(0).to_string(), "2026-12-02T07:05:09.042+00:00");
        assert_eq!(
            at(-(9 * 3600 + 1800)).to_string(),
            "2026-12-02T07:05:09.042-09:30"
        );
        assert_eq!(format!("{:#}", at(19_800)), "2026-12-02T07:05:09+05:30");
    }

    #[test]
    fn converts_through_the_local_zone() {
        let t = LocalTime::from_unix_ms(1_796_188_800_123).unwrap();
        assert_eq!(t.millis, 123);
        // Whatever the zone, the wall clock minus the offset is the instant.
        let days = days_from_civil(t.year, t.month, t.day);
        let wall = days * 86_400
            + i64::from(t.hour) * 3600
            + i64::from(t.minute) * 60
            + i64::from(t.second);
        assert_eq!(wall - i64::from(t.offset_secs), 1_796_188_800);
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
    fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
        let y = i64::from(year) - i64::from(month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(month);
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
}
