//! Process identity from `/proc`: start times (to tell a PID's incarnations apart) and the
//! node name.

use std::io;
use std::sync::OnceLock;

use anyhow::{bail, Context, Error};

/// Field 22 of `/proc/<pid>/stat`: process start time in clock ticks since boot.
pub fn process_start_time(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unable to parse /proc/{pid}/stat"),
        )
    })
}

/// The command name may contain spaces and parentheses, so fields are counted after the
/// last `)`; the first field there is field 3.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Whether the process `pid` exists and is still the incarnation started at `pstart`.
pub fn process_is_running(pid: u32, pstart: u64) -> bool {
    matches!(process_start_time(pid), Ok(start) if start == pstart)
}

/// PID and start time of this process (computed once).
pub fn self_pid_pstart() -> Result<(u32, u64), Error> {
    static SELF: OnceLock<(u32, u64)> = OnceLock::new();
    if let Some(ids) = SELF.get() {
        return Ok(*ids);
    }
    let pid = std::process::id();
    let pstart = process_start_time(pid).context("unable to read own process start time")?;
    Ok(*SELF.get_or_init(|| (pid, pstart)))
}

/// The host name up to the first `.`.
pub fn nodename() -> Result<String, Error> {
    // SAFETY: utsname is plain data; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(io::Error::last_os_error()).context("uname failed");
    }
    // SAFETY: uname NUL-terminates nodename.
    let name = unsafe { std::ffi::CStr::from_ptr(uts.nodename.as_ptr()) }.to_string_lossy();
    match name.split('.').next() {
        Some(short) if !short.is_empty() => Ok(short.to_string()),
        _ => bail!("empty host name"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_field_22_after_the_command_name() {
        let stat =
            "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("1234 (x) S 1 2"), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn own_process_is_running() {
        let (pid, pstart) = self_pid_pstart().unwrap();
        assert_eq!(pid, std::process::id());
        assert!(process_is_running(pid, pstart));
        assert!(!process_is_running(pid, pstart + 1));
        assert!(!process_is_running(0x7fff_fff0, pstart));
        assert!(!nodename().unwrap().contains('.'));
    }
}
