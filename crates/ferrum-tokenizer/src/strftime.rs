//! `strftime_now(fmt)` for chat templates (Llama 3.1 writes "Today Date: 26 Jul 2024" with
//! `strftime_now("%d %b %Y")`). transformers calls Python's `datetime.now().strftime`; we format
//! the current UTC time with the common C codes, which is the same thing on a UTC server and
//! keeps the crate free of a date library.

use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DateTime {
    pub year: i64,
    pub month: u32, // 1..=12
    pub day: u32,   // 1..=31
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub weekday: u32,     // 0 = Monday
    pub day_of_year: u32, // 1..=366
}

impl DateTime {
    pub(crate) fn now() -> DateTime {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        DateTime::from_unix(secs)
    }

    /// Days-to-civil conversion (Howard Hinnant's algorithm), exact for the proleptic
    /// Gregorian calendar.
    pub(crate) fn from_unix(secs: i64) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy_mar = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy_mar + 2) / 153;
        let day = (doy_mar - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let day_of_year = BEFORE[month as usize - 1] + day + u32::from(leap && month > 2);
        DateTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            // 1970-01-01 was a Thursday (3 with Monday = 0).
            weekday: (days + 3).rem_euclid(7) as u32,
            day_of_year,
        }
    }
}

/// Formats like C `strftime` for the codes templates use; glibc's `%-d` style (no padding) is
/// accepted too, as Python on Linux accepts it. Unknown codes are written as they are.
pub(crate) fn strftime(fmt: &str, t: &DateTime) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut code = chars.next();
        let unpadded = code == Some('-');
        if unpadded {
            code = chars.next();
        }
        let num = |n: u32, width: usize| {
            if unpadded {
                n.to_string()
            } else {
                format!("{n:0width$}")
            }
        };
        let hour12 = if t.hour.is_multiple_of(12) {
            12
        } else {
            t.hour % 12
        };
        let piece = match code {
            Some('Y') => t.year.to_string(),
            Some('y') => num(t.year.rem_euclid(100) as u32, 2),
            Some('m') => num(t.month, 2),
            Some('d') => num(t.day, 2),
            Some('e') => format!("{:>2}", t.day),
            Some('H') => num(t.hour, 2),
            Some('I') => num(hour12, 2),
            Some('M') => num(t.minute, 2),
            Some('S') => num(t.second, 2),
            Some('j') => num(t.day_of_year, 3),
            Some('p') => if t.hour < 12 { "AM" } else { "PM" }.to_string(),
            Some('a') => DAYS[t.weekday as usize][..3].to_string(),
            Some('A') => DAYS[t.weekday as usize].to_string(),
            Some('b') | Some('h') => MONTHS[t.month as usize - 1][..3].to_string(),
            Some('B') => MONTHS[t.month as usize - 1].to_string(),
            Some('F') => format!("{}-{:02}-{:02}", t.year, t.month, t.day),
            Some('T') => format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second),
            Some('Z') => "UTC".to_string(),
            Some('z') => "+0000".to_string(),
            Some('%') => "%".to_string(),
            Some(other) => format!("%{}{other}", if unpadded { "-" } else { "" }),
            None => "%".to_string(),
        };
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        // 2024-07-26 13:05:09 UTC, a Friday, day 208 of a leap year.
        let t = DateTime::from_unix(1_721_999_109);
        assert_eq!(
            strftime("%d %b %Y|%A %B %-d %H:%M:%S %j %I%p %y %%", &t),
            "26 Jul 2024|Friday July 26 13:05:09 208 01PM 24 %"
        );
        let epoch = DateTime::from_unix(0);
        assert_eq!(strftime("%F %T %a", &epoch), "1970-01-01 00:00:00 Thu");
        let leap_day = DateTime::from_unix(951_782_400); // 2000-02-29
        assert_eq!(strftime("%F %j", &leap_day), "2000-02-29 060");
    }
}
