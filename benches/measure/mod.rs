//! Measuring benchmark steps: wall time, CPU seconds and peak RSS of one child process
//! (its own, from `wait4`, so earlier children such as a cargo build do not count) and of
//! running daemons (from `/proc`).

#![allow(dead_code)]

use std::fs::{self, File};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Resource use of one measured command.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Wall time in seconds.
    pub wall: f64,
    /// User + system CPU seconds.
    pub cpu: f64,
    /// Peak resident set size in KiB.
    pub peak_rss_kib: u64,
}

/// Runs `cmd` to completion with its output appended to `log`; returns its wall time, CPU time
/// (user + system, including its reaped children) and peak RSS.
pub fn run_measured(cmd: &mut Command, log: &Path) -> Result<Usage> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("{log:?}: open log"))?;
    {
        use std::io::Write;
        let mut header = &out;
        let _ = writeln!(header, "\n$ {cmd:?}");
    }
    let start = Instant::now();
    let child = cmd
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("start {:?}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zero is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child; the pointers are valid for the call.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait for child");
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let result = Usage {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        peak_rss_kib: usage.ru_maxrss.max(0) as u64,
    };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let text = fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{:?} failed (wait status {status:#x}):\n{}",
            cmd.get_program(),
            tail.join("\n")
        );
    }
    Ok(result)
}

/// CPU seconds (user + system) a process has used so far.
pub fn process_cpu(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// Peak RSS of a process in KiB (`VmHWM`).
pub fn process_peak_rss(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets a process's peak RSS to its current RSS, so each step reports its own peak.
pub fn reset_peak_rss(pid: i32) {
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}
