//! Epoch and RFC 3339 time helpers (snapshot names, key files, prune periods).

use std::ffi::CString;

use thiserror::Error;

/// Errors of the time conversions.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TimeError {
    #[error("epoch {0} is outside of the years 0000..9999")]
    OutOfRange(i64),
    #[error("invalid RFC 3339 time string '{0}'")]
    InvalidFormat(String),
    #[error("failed to convert epoch {0} to local time")]
    LocalTime(i64),
    #[error("invalid strftime format '{0}'")]
    InvalidStrftime(String),
}

/// `0000-01-01T00:00:00Z`
pub const MIN_EPOCH: i64 = -62_167_219_200;
/// `9999-12-31T23:59:59Z`
pub const MAX_EPOCH: i64 = 253_402_300_799;

/// Current time in epoch seconds.
pub fn epoch_now() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(err) => -(err.duration().as_secs() as i64),
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Formats an epoch as `YYYY-MM-DDTHH:MM:SSZ` (snapshot directory names).
pub fn epoch_to_rfc3339_utc(epoch: i64) -> Result<String, TimeError> {
    if !(MIN_EPOCH..=MAX_EPOCH).contains(&epoch) {
        return Err(TimeError::OutOfRange(epoch));
    }
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    ))
}

/// Broken-down local time of an epoch (libc `localtime_r`, honours `TZ`).
fn local_tm(epoch: i64) -> Result<libc::tm, TimeError> {
    let time: libc::time_t = epoch;
    // SAFETY: tm is plain old data, localtime_r only writes into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    let res = unsafe { libc::localtime_r(&time, &mut tm) };
    if res.is_null() {
        return Err(TimeError::LocalTime(epoch));
    }
    Ok(tm)
}

/// Formats an epoch in local time as `YYYY-MM-DDTHH:MM:SS±HH:MM` (key files).
pub fn epoch_to_rfc3339(epoch: i64) -> Result<String, TimeError> {
    if !(MIN_EPOCH..=MAX_EPOCH).contains(&epoch) {
        return Err(TimeError::OutOfRange(epoch));
    }
    let tm = local_tm(epoch)?;
    let offset = tm.tm_gmtoff;
    let (sign, abs) = if offset < 0 {
        ('-', -offset)
    } else {
        ('+', offset)
    };
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        abs / 3600,
        (abs / 60) % 60
    ))
}

fn parse_digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DDTHH:MM:SS±HH:MM` into epoch seconds.
pub fn parse_rfc3339(input: &str) -> Result<i64, TimeError> {
    let err = || TimeError::InvalidFormat(input.to_string());
    let b = input.as_bytes();
    let offset = match b.len() {
        20 if b[19] == b'Z' => 0,
        25 if (b[19] == b'+' || b[19] == b'-') && b[22] == b':' => {
            let hours = parse_digits(&b[20..22]).ok_or_else(err)?;
            let mins = parse_digits(&b[23..25]).ok_or_else(err)?;
            if hours > 23 || mins > 59 {
                return Err(err());
            }
            let off = hours * 3600 + mins * 60;
            if b[19] == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return Err(err()),
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(err());
    }
    let year = parse_digits(&b[0..4]).ok_or_else(err)?;
    let month = parse_digits(&b[5..7]).ok_or_else(err)? as u32;
    let day = parse_digits(&b[8..10]).ok_or_else(err)? as u32;
    let hour = parse_digits(&b[11..13]).ok_or_else(err)?;
    let min = parse_digits(&b[14..16]).ok_or_else(err)?;
    let sec = parse_digits(&b[17..19]).ok_or_else(err)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 60
    {
        return Err(err());
    }
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + min * 60 + sec - offset)
}

/// Formats an epoch in local time with a libc `strftime` format (prune periods use
/// `%Y/%m/%d/%H`, `%G/%V`, ...).
pub fn strftime_local(format: &str, epoch: i64) -> Result<String, TimeError> {
    let tm = local_tm(epoch)?;
    strftime(format, &tm)
}

/// Formats an epoch in UTC with a libc `strftime` format.
pub fn strftime_utc(format: &str, epoch: i64) -> Result<String, TimeError> {
    let time: libc::time_t = epoch;
    // SAFETY: tm is plain old data, gmtime_r only writes into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    if unsafe { libc::gmtime_r(&time, &mut tm) }.is_null() {
        return Err(TimeError::OutOfRange(epoch));
    }
    strftime(format, &tm)
}

fn strftime(format: &str, tm: &libc::tm) -> Result<String, TimeError> {
    let c_format = CString::new(format).map_err(|_| TimeError::InvalidStrftime(format.into()))?;
    let mut buf = vec![0u8; 256];
    // SAFETY: buf is writable for buf.len() bytes, format is NUL-terminated, tm is valid.
    let len = unsafe {
        libc::strftime(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            c_format.as_ptr(),
            tm,
        )
    };
    if len == 0 && !format.is_empty() {
        return Err(TimeError::InvalidStrftime(format.into()));
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|_| TimeError::InvalidStrftime(format.into()))
}

/// Re-reads the `TZ` environment variable (after a test or daemon changed it).
pub fn reload_timezone() {
    extern "C" {
        fn tzset();
    }
    // SAFETY: tzset has no preconditions; callers make sure no other thread reads TZ meanwhile.
    unsafe { tzset() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_vectors() {
        assert_eq!(
            epoch_to_rfc3339_utc(1593179765).unwrap(),
            "2020-06-26T13:56:05Z"
        );
        assert_eq!(
            epoch_to_rfc3339_utc(MIN_EPOCH).unwrap(),
            "0000-01-01T00:00:00Z"
        );
        assert!(epoch_to_rfc3339_utc(MIN_EPOCH - 1).is_err());
        assert_eq!(
            epoch_to_rfc3339_utc(MAX_EPOCH).unwrap(),
            "9999-12-31T23:59:59Z"
        );
        assert!(epoch_to_rfc3339_utc(MAX_EPOCH + 1).is_err());
        assert_eq!(
            epoch_to_rfc3339_utc(-59011459201).unwrap(),
            "0099-12-31T23:59:59Z"
        );
        assert_eq!(epoch_to_rfc3339_utc(0).unwrap(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn parse_vectors() {
        assert_eq!(parse_rfc3339("2020-06-26T13:56:05Z").unwrap(), 1593179765);
        assert_eq!(parse_rfc3339("0000-01-01T00:00:00Z").unwrap(), MIN_EPOCH);
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59Z").unwrap(), MAX_EPOCH);
        assert_eq!(parse_rfc3339("0099-12-31T23:59:59Z").unwrap(), -59011459201);
        assert_eq!(
            parse_rfc3339("2020-12-30T00:00:00+06:30").unwrap(),
            1609263000
        );
        assert_eq!(parse_rfc3339("2005-12-31T23:59:60Z").unwrap(), 1136073600);
        assert_eq!(
            parse_rfc3339("2024-01-01T00:00:00+00:00").unwrap(),
            1704067200
        );
        for bad in [
            "",
            "2020-06-26 13:56:05Z",
            "2020-13-01T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2020-06-26T13:56:05",
            "2020-06-26T13:56:05+0200",
            "2020-06-26T24:00:00Z",
            "２020-06-26T13:56:05Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn round_trip_many() {
        let mut t = MIN_EPOCH;
        while t < MAX_EPOCH {
            let s = epoch_to_rfc3339_utc(t).unwrap();
            assert_eq!(parse_rfc3339(&s).unwrap(), t, "{s}");
            t += 86_399 * 37 + 13;
        }
    }

    #[test]
    fn local_form_parses_back() {
        let s = epoch_to_rfc3339(1593179765).unwrap();
        assert_eq!(s.len(), 25);
        assert_eq!(parse_rfc3339(&s).unwrap(), 1593179765);
    }

    #[test]
    fn strftime_utc_iso_week() {
        // 2019-12-01 is a Sunday in ISO week 48, 2019-12-04 is in week 49.
        assert_eq!(strftime_utc("%G/%V", 1575201555).unwrap(), "2019/48");
        assert_eq!(strftime_utc("%G/%V", 1575460755).unwrap(), "2019/49");
    }
}
