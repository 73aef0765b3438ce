//! Cell renderers of text tables: epochs, durations, byte sizes, task states.

use anyhow::Result;
use serde_json::Value;

/// A cell renderer: the cell value and the whole record (row) it belongs to.
pub type RenderFn = fn(&Value, &Value) -> Result<String>;

fn strftime_c(epoch: i64) -> String {
    pbs_api_types::time::strftime_local("%c", epoch).unwrap_or_else(|_| epoch.to_string())
}

/// `strftime("%c")` in local time; empty for null, the raw JSON for non-integers.
pub fn render_epoch(value: &Value, _record: &Value) -> Result<String> {
    Ok(match value {
        Value::Null => String::new(),
        v => match v.as_i64() {
            Some(epoch) => strftime_c(epoch),
            None => v.to_string(),
        },
    })
}

/// Time-span display of integer seconds; empty for null.
pub fn render_duration(value: &Value, _record: &Value) -> Result<String> {
    Ok(match value {
        Value::Null => String::new(),
        v => match v.as_u64() {
            Some(seconds) => format_time_span(seconds as f64),
            None => v.to_string(),
        },
    })
}

/// Binary auto-scaled byte size (`0 B`, `1.161 GiB`); empty for null.
pub fn render_bytes(value: &Value, _record: &Value) -> Result<String> {
    Ok(match value {
        Value::Null => String::new(),
        v => match v.as_u64() {
            Some(bytes) => format_bytes_binary(bytes),
            None => v.to_string(),
        },
    })
}

/// `1`/`0`; anything but a boolean counts as true.
pub fn render_bool_default_true(value: &Value, _record: &Value) -> Result<String> {
    Ok(if value.as_bool().unwrap_or(true) {
        "1"
    } else {
        "0"
    }
    .to_string())
}

/// The status string; when missing, `running` for tasks without `endtime`, else `unknown`.
pub fn render_task_status(value: &Value, record: &Value) -> Result<String> {
    let fallback = if record["endtime"].is_null() {
        "running"
    } else {
        "unknown"
    };
    Ok(value.as_str().unwrap_or(fallback).to_string())
}

/// Account expiry: null or 0 is `never`, else `strftime("%c")` in local time.
pub fn render_expire(value: &Value, _record: &Value) -> Result<String> {
    Ok(match value {
        Value::Null => "never".to_string(),
        v => match v.as_i64() {
            Some(0) => "never".to_string(),
            Some(epoch) => strftime_c(epoch),
            None => v.to_string(),
        },
    })
}

/// Rounds to 3 decimals and prints the shortest form (`2`, `1.5`, `19.146`).
fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Binary auto-scaling by significant bits: ≥51 PiB, 41–50 TiB, 31–40 GiB, 21–30 MiB,
/// 11–20 KiB, else B.
pub fn format_bytes_binary(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let bits = 64 - bytes.leading_zeros();
    let exponent = match bits {
        0..=10 => 0,
        11..=20 => 1,
        21..=30 => 2,
        31..=40 => 3,
        41..=50 => 4,
        _ => 5,
    };
    let size = bytes as f64 / (1u64 << (10 * exponent)) as f64;
    format!("{} {}", round3(size), UNITS[exponent])
}

/// Time-span display of a number of seconds (years, months, weeks, days, hours, minutes,
/// then seconds; a trailing space when the seconds part is left out).
pub fn format_time_span(seconds: f64) -> String {
    let nanos_total = (seconds * 1e9).round().max(0.0) as u128;
    let msec = ((nanos_total / 1_000_000) % 1000) as u64;
    let total_secs = (nanos_total / 1_000_000_000) as u64;
    let secs = total_secs % 60;
    let minutes = (total_secs / 60) % 60;
    let hours = (total_secs / 3600) % 24;
    let days_total = (total_secs / 86400) as f64;
    let years = (days_total / 365.25).floor();
    let ydays = (days_total % 365.25).floor();
    let months = (ydays / 30.44).floor();
    let mdays = (ydays % 30.44).floor() as u64;
    let weeks = mdays / 7;
    let days = mdays % 7;

    let mut out = String::new();
    let parts = [
        (years as u64, "y"),
        (months as u64, "m"),
        (weeks, "w"),
        (days, "d"),
        (hours, "h"),
        (minutes, "min"),
    ];
    for (value, unit) in parts {
        if value > 0 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("{value}{unit}"));
        }
    }
    let written = !out.is_empty();
    if written {
        out.push(' ');
    }
    let secs = secs as f64 + msec as f64 / 1000.0;
    if secs >= 0.1 {
        if secs >= 1.0 || written {
            out.push_str(&format!("{secs:.0}s"));
        } else {
            out.push_str(&format!("{secs:.1}s"));
        }
    } else if !written {
        out.push_str("<0.1s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn byte_sizes() {
        assert_eq!(format_bytes_binary(0), "0 B");
        assert_eq!(format_bytes_binary(1023), "1023 B");
        assert_eq!(format_bytes_binary(1024), "1 KiB");
        assert_eq!(format_bytes_binary(19605), "19.146 KiB");
        assert_eq!(format_bytes_binary(1_246_601_953), "1.161 GiB");
        assert_eq!(format_bytes_binary(1536 * 1024), "1.5 MiB");
        assert_eq!(format_bytes_binary(1 << 50), "1 PiB");
        assert_eq!(format_bytes_binary((1 << 50) - 1), "1024 TiB");
        assert_eq!(render_bytes(&Value::Null, &Value::Null).unwrap(), "");
        assert_eq!(render_bytes(&json!("x"), &Value::Null).unwrap(), "\"x\"");
    }

    #[test]
    fn time_spans() {
        let cases: [(u64, &str); 13] = [
            (0, "<0.1s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1min "),
            (61, "1min 1s"),
            (3600, "1h "),
            (3661, "1h 1min 1s"),
            (86400, "1d "),
            (90061, "1d 1h 1min 1s"),
            (604800, "1w "),
            (2629743, "4w 2d 10h 29min 3s"),
            (31557600, "11m 4w 2d 6h "),
            (100000000, "3y 2m 9h 46min 40s"),
        ];
        for (seconds, text) in cases {
            assert_eq!(format_time_span(seconds as f64), text, "{seconds} seconds");
        }
        assert_eq!(format_time_span(55.5), "56s");
        assert_eq!(format_time_span(0.5), "0.5s");
        assert_eq!(
            render_duration(&json!(61), &Value::Null).unwrap(),
            "1min 1s"
        );
        assert_eq!(render_duration(&Value::Null, &Value::Null).unwrap(), "");
    }

    #[test]
    fn simple_renderers() {
        assert_eq!(
            render_bool_default_true(&Value::Null, &Value::Null).unwrap(),
            "1"
        );
        assert_eq!(
            render_bool_default_true(&json!(false), &Value::Null).unwrap(),
            "0"
        );
        let running = json!({"upid": "x"});
        assert_eq!(
            render_task_status(&Value::Null, &running).unwrap(),
            "running"
        );
        let ended = json!({"upid": "x", "endtime": 5});
        assert_eq!(render_task_status(&Value::Null, &ended).unwrap(), "unknown");
        assert_eq!(render_task_status(&json!("OK"), &ended).unwrap(), "OK");
        assert_eq!(render_expire(&Value::Null, &Value::Null).unwrap(), "never");
        assert_eq!(render_expire(&json!(0), &Value::Null).unwrap(), "never");
        assert_eq!(render_epoch(&Value::Null, &Value::Null).unwrap(), "");
        assert_eq!(
            render_epoch(&json!("abc"), &Value::Null).unwrap(),
            "\"abc\""
        );
        let epoch = render_epoch(&json!(1_700_000_000), &Value::Null).unwrap();
        assert_eq!(
            epoch,
            pbs_api_types::time::strftime_local("%c", 1_700_000_000).unwrap()
        );
        assert_eq!(
            render_expire(&json!(1_700_000_000), &Value::Null).unwrap(),
            epoch
        );
    }
}
