//! HTTP-date (RFC 9110 §5.6.7): formatting in the preferred IMF-fixdate form
//! and parsing all three forms a recipient must accept.
//!
//! Written out rather than taken from the `httpdate` crate because that crate
//! only covers 1970-9999 (and panics formatting anything else), while file
//! modification times can predate 1970 (`mtime-ns` is signed), and because a
//! few dozen lines of calendar arithmetic are cheaper in the component than a
//! dependency. Times are whole seconds since the Unix epoch (`i64`): HTTP
//! dates have one-second resolution, and all comparisons happen at that
//! granularity.

/// Day names, starting with Sunday.
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
/// The long day names of the obsolete RFC 850 form, starting with Sunday.
const DAYS_LONG: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

pub(crate) const SECS_PER_DAY: i64 = 86_400;

/// Earliest time with a four-digit year: 0001-01-01T00:00:00Z.
pub const MIN: i64 = -62_135_596_800;
/// Latest time with a four-digit year: 9999-12-31T23:59:59Z.
pub const MAX: i64 = 253_402_300_799;

/// Whole seconds since the epoch from nanoseconds, rounding towards the past
/// (a file modified at 12:00:00.9 was last modified in the second 12:00:00).
pub fn secs_from_ns(ns: i64) -> i64 {
    ns.div_euclid(1_000_000_000)
}

/// Formats `secs` as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
/// Times outside years 1-9999 are clamped into them (file times never are:
/// an `i64` of nanoseconds spans 1677-2262).
pub fn format(secs: i64) -> String {
    let secs = secs.clamp(MIN, MAX);
    let days = secs.div_euclid(SECS_PER_DAY);
    let tod = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    // Written digit by digit rather than with `format!`: this runs on every
    // file response (`Last-Modified`), and the formatting machinery was a
    // tenth of an uncached `decide` (host/benches/RESULTS.md). Every field
    // is in range after the clamp: year 1-9999, day 1-31.
    let mut out = String::with_capacity(29);
    out.push_str(DAYS[weekday(days)]);
    out.push_str(", ");
    push_digits(&mut out, day, 2);
    out.push(' ');
    out.push_str(MONTHS[(month - 1) as usize]);
    out.push(' ');
    push_digits(&mut out, year, 4);
    out.push(' ');
    push_digits(&mut out, tod / 3600, 2);
    out.push(':');
    push_digits(&mut out, tod / 60 % 60, 2);
    out.push(':');
    push_digits(&mut out, tod % 60, 2);
    out.push_str(" GMT");
    out
}

/// Appends the last `width` decimal digits of `n` (`n` is not negative),
/// zero-padded: what `{:0width$}` writes for an `n` below `10^width`.
fn push_digits(out: &mut String, n: i64, width: u32) {
    for place in (0..width).rev() {
        let digit = n / 10_i64.pow(place) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// Parses an HTTP-date in any of its three forms (IMF-fixdate, RFC 850,
/// asctime), surrounded by optional whitespace. `None` for anything else,
/// including a list of dates and impossible dates (Feb 30).
///
/// Day names must be valid names but are not checked against the date: the
/// RFC asks recipients to be robust, and a wrong day name does not make the
/// instant ambiguous. Leap seconds (`:60`) are accepted and count as the next
/// second. Two-digit RFC 850 years are read as 1970-2069: the policy has no
/// clock for RFC 9110's "not more than 50 years in the future" rule, and this
/// pivot gives the same answer for every date a file can plausibly carry.
pub fn parse(value: &str) -> Option<i64> {
    let s = crate::fields::trim_ows(value).as_bytes();
    imf_fixdate(s).or_else(|| rfc850(s)).or_else(|| asctime(s))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(s: &[u8]) -> Option<i64> {
    let s: &[u8; 29] = s.try_into().ok()?;
    name(&s[0..3], &DAYS)?;
    if &s[3..5] != b", " || s[7] != b' ' || s[11] != b' ' || s[16] != b' ' || &s[25..] != b" GMT" {
        return None;
    }
    let day = number(&s[5..7])?;
    let month = name(&s[8..11], &MONTHS)? + 1;
    let year = number(&s[12..16])?;
    to_secs(year, month, day, time(&s[17..25])?)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850(s: &[u8]) -> Option<i64> {
    let comma = s.iter().position(|&b| b == b',')?;
    name(&s[..comma], &DAYS_LONG)?;
    let s: &[u8; 23] = s[comma + 1..].try_into().ok()?;
    if s[0] != b' ' || s[3] != b'-' || s[7] != b'-' || s[10] != b' ' || &s[19..] != b" GMT" {
        return None;
    }
    let day = number(&s[1..3])?;
    let month = name(&s[4..7], &MONTHS)? + 1;
    let yy = number(&s[8..10])?;
    let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
    to_secs(year, month, day, time(&s[11..19])?)
}

/// `Sun Nov  6 08:49:37 1994` (the day of the month may also be two digits).
fn asctime(s: &[u8]) -> Option<i64> {
    let s: &[u8; 24] = s.try_into().ok()?;
    name(&s[0..3], &DAYS)?;
    if s[3] != b' ' || s[7] != b' ' || s[10] != b' ' || s[19] != b' ' {
        return None;
    }
    let month = name(&s[4..7], &MONTHS)? + 1;
    let day = match s[8] {
        b' ' => number(&s[9..10])?,
        _ => number(&s[8..10])?,
    };
    let year = number(&s[20..24])?;
    to_secs(year, month, day, time(&s[11..19])?)
}

/// Index of `s` in `names` (case-sensitive, as the grammar is).
fn name(s: &[u8], names: &[&str]) -> Option<i64> {
    names
        .iter()
        .position(|n| n.as_bytes() == s)
        .map(|i| i as i64)
}

/// A fixed-width decimal number (at most four digits here, so no overflow).
fn number(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &d| n * 10 + i64::from(d - b'0')))
}

/// `HH:MM:SS` → seconds into the day (`23:59:60` allowed).
fn time(s: &[u8]) -> Option<i64> {
    if s.len() != 8 || s[2] != b':' || s[5] != b':' {
        return None;
    }
    let (h, m, sec) = (number(&s[0..2])?, number(&s[3..5])?, number(&s[6..8])?);
    (h < 24 && m < 60 && sec <= 60).then_some(h * 3600 + m * 60 + sec)
}

fn to_secs(year: i64, month: i64, day: i64, tod: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * SECS_PER_DAY + tod)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// 0 = Sunday; 1970-01-01 (day 0) was a Thursday.
fn weekday(days: i64) -> usize {
    (days + 4).rem_euclid(7) as usize
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`), exact for every year an `i64` of seconds can reach.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of `days_from_civil`: (year, month 1-12, day 1-31).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 850 form of `secs` (years 1970-2069 only), for tests.
    pub(crate) fn format_rfc850(secs: i64) -> String {
        let days = secs.div_euclid(SECS_PER_DAY);
        let tod = secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        format!(
            "{}, {:02}-{}-{:02} {:02}:{:02}:{:02} GMT",
            DAYS_LONG[weekday(days)],
            day,
            MONTHS[(month - 1) as usize],
            year % 100,
            tod / 3600,
            tod / 60 % 60,
            tod % 60
        )
    }

    /// asctime form of `secs`, for tests.
    pub(crate) fn format_asctime(secs: i64) -> String {
        let days = secs.div_euclid(SECS_PER_DAY);
        let tod = secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        format!(
            "{} {} {:>2} {:02}:{:02}:{:02} {:04}",
            DAYS[weekday(days)],
            MONTHS[(month - 1) as usize],
            day,
            tod / 3600,
            tod / 60 % 60,
            tod % 60,
            year
        )
    }

    /// 1994-11-06T08:49:37Z, RFC 9110's example.
    const EXAMPLE: i64 = 784_111_777;

    #[test]
    fn formats_the_rfc_example() {
        assert_eq!(format(EXAMPLE), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(format(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(format(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
    }

    #[test]
    fn formats_times_before_1970_and_clamps_the_extremes() {
        assert_eq!(format(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
        assert_eq!(format(-2_208_988_800), "Mon, 01 Jan 1900 00:00:00 GMT");
        assert_eq!(format(MIN), "Mon, 01 Jan 0001 00:00:00 GMT");
        assert_eq!(format(MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(format(i64::MIN), format(MIN));
        assert_eq!(format(i64::MAX), format(MAX));
    }

    #[test]
    fn parses_all_three_forms_of_the_rfc_example() {
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun Nov 06 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT\t",
        ] {
            assert_eq!(parse(s), Some(EXAMPLE), "{s:?}");
        }
    }

    #[test]
    fn rejects_malformed_dates() {
        for s in [
            "",
            "0",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun,  06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 23:60:00 GMT",
            "Sun, 06 Nov 1994 23:59:61 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT junk",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6 08:49:37 94",
            "Sun, 06 Nov 1994 08:49:37\u{a0}GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 19９4 08:49:37 GMT",
        ] {
            assert_eq!(parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn accepts_leap_days_and_leap_seconds() {
        assert!(parse("Tue, 29 Feb 2000 00:00:00 GMT").is_some());
        assert!(parse("Thu, 29 Feb 2024 00:00:00 GMT").is_some());
        assert_eq!(
            parse("Wed, 28 Feb 2024 23:59:60 GMT"),
            parse("Thu, 29 Feb 2024 00:00:00 GMT")
        );
    }

    #[test]
    fn does_not_check_the_day_name_against_the_date() {
        assert_eq!(parse("Mon, 06 Nov 1994 08:49:37 GMT"), Some(EXAMPLE));
    }

    #[test]
    fn rfc850_two_digit_years_pivot_at_70() {
        assert_eq!(parse("Thursday, 01-Jan-70 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse("Sunday, 01-Jan-69 00:00:00 GMT")
                .map(format)
                .as_deref(),
            Some("Tue, 01 Jan 2069 00:00:00 GMT")
        );
    }

    #[test]
    fn seconds_from_nanoseconds_round_down() {
        assert_eq!(secs_from_ns(1_999_999_999), 1);
        assert_eq!(secs_from_ns(0), 0);
        assert_eq!(secs_from_ns(-1), -1);
        assert_eq!(secs_from_ns(i64::MIN), -9_223_372_037);
        assert_eq!(secs_from_ns(i64::MAX), 9_223_372_036);
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(secs in MIN..=MAX) {
            prop_assert_eq!(parse(&format(secs)), Some(secs));
        }

        #[test]
        fn asctime_round_trips(secs in MIN..=MAX) {
            prop_assert_eq!(parse(&format_asctime(secs)), Some(secs));
        }

        #[test]
        fn rfc850_round_trips(secs in 0i64..3_155_760_000) {
            prop_assert_eq!(parse(&format_rfc850(secs)), Some(secs));
        }

        /// `format` writes its digits by hand: exactly what the
        /// `format!` it replaced wrote, for every input.
        #[test]
        fn format_is_the_format_macros(secs in any::<i64>()) {
            let clamped = secs.clamp(MIN, MAX);
            let days = clamped.div_euclid(SECS_PER_DAY);
            let tod = clamped.rem_euclid(SECS_PER_DAY);
            let (year, month, day) = civil_from_days(days);
            let want = format!(
                "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
                DAYS[weekday(days)],
                day,
                MONTHS[(month - 1) as usize],
                year,
                tod / 3600,
                tod / 60 % 60,
                tod % 60
            );
            prop_assert_eq!(format(secs), want);
        }

        #[test]
        fn formatted_dates_are_29_ascii_bytes(secs in any::<i64>()) {
            let s = format(secs);
            prop_assert_eq!(s.len(), 29);
            prop_assert!(s.is_ascii());
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_date_like_strings(s in "[A-Za-z]{0,9},? ?[0-9 ]{0,2}[- ][A-Za-z]{0,3}[- ][0-9]{0,4} [0-9:]{0,9} ?[A-Z]{0,3}") {
            let _ = parse(&s);
        }

        #[test]
        fn day_arithmetic_round_trips(days in -800_000i64..3_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
