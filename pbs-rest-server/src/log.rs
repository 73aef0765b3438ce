//! The access log and the authentication log.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pbs_api_types::time::{epoch_now, epoch_to_rfc3339, strftime_local};

/// The request line in the access log is cut to this many characters.
const MAX_REQUEST_CHARS: usize = 3072;
/// The user agent in the access log is cut to this many characters.
const MAX_USER_AGENT_CHARS: usize = 128;

/// An append-only log file that can be reopened after rotation.
#[derive(Debug)]
pub struct FileLogger {
    path: PathBuf,
    file: Mutex<File>,
    time_prefix: bool,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|err| io::Error::new(err.kind(), format!("log file {path:?}: {err}")))
}

impl FileLogger {
    /// Opens the access log (lines without prefix).
    pub fn access_log(path: impl Into<PathBuf>) -> io::Result<Self> {
        Self::open(path.into(), false)
    }

    /// Opens the auth log (every line prefixed with the local RFC 3339 time and `": "`).
    pub fn auth_log(path: impl Into<PathBuf>) -> io::Result<Self> {
        Self::open(path.into(), true)
    }

    fn open(path: PathBuf, time_prefix: bool) -> io::Result<Self> {
        let file = open_append(&path)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
            time_prefix,
        })
    }

    /// Reopens the file at its path (after log rotation).
    pub fn reopen(&self) -> io::Result<()> {
        let file = open_append(&self.path)?;
        if let Ok(mut guard) = self.file.lock() {
            *guard = file;
        }
        Ok(())
    }

    /// Appends one line (a newline is added).
    pub fn log(&self, message: &str) {
        let mut line = String::with_capacity(message.len() + 32);
        if self.time_prefix {
            if let Ok(time) = epoch_to_rfc3339(epoch_now()) {
                line.push_str(&time);
                line.push_str(": ");
            }
        }
        line.push_str(message);
        line.push('\n');
        if let Ok(mut file) = self.file.lock() {
            // A failing log write must not fail the request it describes.
            let _ = file.write_all(line.as_bytes());
        }
    }
}

fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// The access log time stamp, `dd/mm/YYYY:HH:MM:SS +zzzz` in local time.
pub fn access_log_time(epoch: i64) -> String {
    strftime_local("%d/%m/%Y:%H:%M:%S %z", epoch).unwrap_or_default()
}

/// One access log line (without newline); `time` comes from [`access_log_time`].
#[allow(clippy::too_many_arguments)]
pub fn access_log_line(
    client: IpAddr,
    auth_id: Option<&str>,
    time: &str,
    method: &str,
    path_and_query: &str,
    status: u16,
    size_hint: u64,
    user_agent: Option<&str>,
) -> String {
    format!(
        "{client} - {} [{time}] \"{method} {}\" {status} {size_hint} {}",
        auth_id.unwrap_or("-"),
        truncate_chars(path_and_query, MAX_REQUEST_CHARS),
        user_agent
            .map(|ua| truncate_chars(ua, MAX_USER_AGENT_CHARS))
            .unwrap_or("-"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_line_format() {
        let line = access_log_line(
            "::ffff:10.0.0.1".parse().unwrap(),
            Some("root@pam"),
            "05/06/2024:10:14:24 +0000",
            "GET",
            "/api2/json/version?x=1",
            200,
            57,
            Some("proxmox-backup-client/1.0"),
        );
        assert_eq!(
            line,
            "::ffff:10.0.0.1 - root@pam [05/06/2024:10:14:24 +0000] \"GET /api2/json/version?x=1\" 200 57 proxmox-backup-client/1.0"
        );
        let long_ua = "u".repeat(200);
        let long_path = format!("/{}", "p".repeat(4000));
        let line = access_log_line(
            "127.0.0.1".parse().unwrap(),
            None,
            "01/01/1970:00:00:00 +0000",
            "POST",
            &long_path,
            401,
            0,
            Some(&long_ua),
        );
        let expected_path = &long_path[..3072];
        assert_eq!(
            line,
            format!(
                "127.0.0.1 - - [01/01/1970:00:00:00 +0000] \"POST {expected_path}\" 401 0 {}",
                "u".repeat(128)
            )
        );
    }

    #[test]
    fn access_time_shape() {
        let time = access_log_time(0x66603A80);
        let bytes = time.as_bytes();
        assert_eq!(bytes.len(), 25, "{time}");
        assert_eq!(
            (bytes[2], bytes[5], bytes[10], bytes[19]),
            (b'/', b'/', b':', b' ')
        );
        assert!(bytes[20] == b'+' || bytes[20] == b'-', "{time}");
        assert!(time.contains("/06/2024:"), "{time}");
    }

    #[test]
    fn logger_appends_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        let logger = FileLogger::auth_log(&path).unwrap();
        logger.log("first");
        std::fs::rename(&path, dir.path().join("auth.log.1")).unwrap();
        logger.reopen().unwrap();
        logger.log("second");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(": second\n"), "{text}");
        assert_eq!(text.lines().count(), 1);
        // RFC 3339 with offset: 25 characters before ": ".
        assert_eq!(text.find(": "), Some(25));
    }
}
