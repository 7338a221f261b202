//! A tiny civil date (proleptic Gregorian, UTC) with strict `YYYY-MM-DD` parsing.
//!
//! The services only need day arithmetic and ISO-8601 dates, so a day count since
//! 1970-01-01 is enough; it keeps a date/time crate out of the build.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// A calendar day, stored as days since 1970-01-01 (negative before).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i32);

/// Why a string is not a date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DateError {
    /// Not of the shape `YYYY-MM-DD` (four, two and two ASCII digits).
    Format(String),
    /// The right shape, but no such day (e.g. `2016-02-30`).
    NoSuchDay(String),
}

impl fmt::Display for DateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Format(s) => write!(f, "malformed date '{s}': expected YYYY-MM-DD"),
            Self::NoSuchDay(s) => write!(f, "malformed date '{s}': no such calendar day"),
        }
    }
}

impl std::error::Error for DateError {}

impl Date {
    /// The date `days` days after 1970-01-01.
    pub const fn from_days(days: i32) -> Self {
        Self(days)
    }

    /// Days since 1970-01-01.
    pub const fn days(self) -> i32 {
        self.0
    }

    /// The date for a year, month (1–12) and day (1–31), if that day exists.
    /// Years are limited to 1–9999, the range `YYYY` can write.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        if !(1..=9999).contains(&year) || !(1..=12).contains(&month) {
            return None;
        }
        if day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Self(days_from_civil(year, month, day)))
    }

    /// Year, month (1–12) and day (1–31).
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    /// Today in UTC, from the system clock.
    pub fn today() -> Self {
        let secs = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            // A clock before 1970 is broken; count backwards rather than panic.
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        let days = secs.div_euclid(86_400);
        Self(i32::try_from(days).unwrap_or(if days < 0 { i32::MIN } else { i32::MAX }))
    }

    /// The date `n` days later (earlier for negative `n`), saturating at the ends.
    pub fn add_days(self, n: i32) -> Self {
        Self(self.0.saturating_add(n))
    }

    /// Days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Date) -> i64 {
        i64::from(later.0) - i64::from(self.0)
    }

    /// Monday = 0 … Sunday = 6.
    pub fn weekday(self) -> u32 {
        // 1970-01-01 was a Thursday (3).
        (i64::from(self.0) + 3).rem_euclid(7) as u32
    }
}

impl FromStr for Date {
    type Err = DateError;

    /// Strict `YYYY-MM-DD`: exactly ten ASCII characters, no sign, no spaces.
    fn from_str(s: &str) -> Result<Self, DateError> {
        let b = s.as_bytes();
        let shape_ok = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !shape_ok {
            return Err(DateError::Format(s.to_owned()));
        }
        let num = |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'));
        let (y, m, d) = (num(0..4), num(5..7), num(8..10));
        // `y` has at most four digits, so it always fits an i32.
        Date::from_ymd(y as i32, m, d).ok_or_else(|| DateError::NoSuchDay(s.to_owned()))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `days_from_civil`: eras of 400 years, March-based years so
/// the leap day is last.
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400) as u32; // [0, 399]
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe as i32 - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (i32::try_from(year).unwrap_or(i32::MAX), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().expect("valid date")
    }

    #[test]
    fn epoch_and_known_days() {
        assert_eq!(d("1970-01-01").days(), 0);
        assert_eq!(d("1999-01-04").days(), 10_595);
        assert_eq!(d("2000-03-01").days(), 11_017);
        assert_eq!(d("1969-12-31").days(), -1);
    }

    #[test]
    fn round_trips_every_day_for_centuries() {
        let start = d("1899-12-25").days();
        for n in start..start + 200 * 366 {
            let date = Date::from_days(n);
            assert_eq!(date.to_string().parse::<Date>(), Ok(date), "day {n}");
        }
    }

    #[test]
    fn strict_parsing() {
        assert_eq!(d("2016-02-29").to_string(), "2016-02-29");
        for bad in ["2016-02-30", "2015-02-29", "1900-02-29", "2016-13-01", "2016-00-10", "2016-04-31", "0000-01-01"] {
            assert!(matches!(bad.parse::<Date>(), Err(DateError::NoSuchDay(_))), "{bad}");
        }
        for bad in [
            "2016-9-05",
            "20160905",
            "2016/09/05",
            " 2016-09-05",
            "2016-09-05 ",
            "+016-09-05",
            "",
            "2016-09-0a",
            "２016-09-05",
        ] {
            assert!(matches!(bad.parse::<Date>(), Err(DateError::Format(_))), "{bad:?}");
        }
        assert_eq!(d("2000-02-29").ymd(), (2000, 2, 29));
    }

    #[test]
    fn weekdays_and_arithmetic() {
        assert_eq!(d("2016-09-05").weekday(), 0); // a Monday
        assert_eq!(d("2016-09-04").weekday(), 6); // a Sunday
        assert_eq!(d("2016-09-05").add_days(-3), d("2016-09-02"));
        assert_eq!(d("2016-01-01").days_until(d("2016-12-31")), 365);
    }

    #[test]
    fn today_is_plausible() {
        assert!(Date::today() > d("2020-01-01"));
    }
}
