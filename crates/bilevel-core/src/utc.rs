//! UTC date and time of Unix seconds, for run folders, run ids and provenance (no time-zone
//! database: proleptic Gregorian calendar, Howard Hinnant's civil-from-days).

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar date and time of day, to the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
    /// Second, 0–59.
    pub second: u32,
}

/// Seconds since the Unix epoch now (0 if the clock is before it).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Utc {
    /// The UTC time `unix_s` seconds after the Unix epoch (fractions of a second dropped).
    pub fn from_unix(unix_s: f64) -> Self {
        let secs = unix_s.floor() as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Self {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: ((rem % 3600) / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// The time now.
    pub fn now() -> Self {
        Self::from_unix(unix_now())
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` (ISO 8601).
    pub fn iso(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `YYYYMMDDTHHMMSSZ` (run ids).
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `YYYYMMDD-HHMMSS` (run folder names).
    pub fn folder(&self) -> String {
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known dates, leap days included. Fails (tried) with `month <= 2` dropped from the year.
    #[test]
    fn formats_known_dates() {
        assert_eq!(Utc::from_unix(0.0).iso(), "1970-01-01T00:00:00Z");
        assert_eq!(Utc::from_unix(951_782_400.0).iso(), "2000-02-29T00:00:00Z");
        assert_eq!(
            Utc::from_unix(1_709_251_199.5).iso(),
            "2024-02-29T23:59:59Z"
        );
        assert_eq!(
            Utc::from_unix(1_767_225_600.0).compact(),
            "20260101T000000Z"
        );
        assert_eq!(Utc::from_unix(1_796_385_600.0).folder(), "20261204-120000");
        assert_eq!(Utc::from_unix(-1.0).iso(), "1969-12-31T23:59:59Z");
    }
}
