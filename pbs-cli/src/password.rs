//! Reading a passphrase from the environment or the controlling terminal.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};

/// Returns the value of `env_var` if set, else prompts on the terminal without echo.
pub fn read_password(prompt: &str, env_var: &str) -> Result<Vec<u8>> {
    if let Some(value) = std::env::var_os(env_var) {
        use std::os::unix::ffi::OsStringExt;
        return Ok(value.into_vec());
    }
    read_tty_password(prompt).map_err(|err| anyhow::format_err!("{err:#} - set {env_var}"))
}

/// Prompts on the controlling terminal without echo (no environment lookup).
pub fn read_tty_password(prompt: &str) -> Result<Vec<u8>> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("no terminal to ask for the password")?;
    let fd = std::os::unix::io::AsRawFd::as_raw_fd(&tty);
    // SAFETY: termios is plain old data filled by tcgetattr.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is an open terminal for the lifetime of `tty`.
    if unsafe { libc::tcgetattr(fd, &mut term) } != 0 {
        bail!("unable to read terminal settings");
    }
    let saved = term;
    term.c_lflag &= !libc::ECHO;
    // SAFETY: as above; the settings are restored below.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
    let mut writer = &tty;
    let _ = write!(writer, "{prompt}");
    let _ = writer.flush();
    let mut line = String::new();
    let result = std::io::BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    let _ = writeln!(writer);
    result.context("unable to read password from terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
}
