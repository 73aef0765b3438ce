//! `pxar mount`: serve an archive over FUSE, in the foreground with `--verbose`, otherwise
//! detached into the background once the mount is up.

use std::fs::File;

use anyhow::{format_err, Context, Result};
use pbs_client::pxar::fuse;
use pxar::Accessor;

fn open_sized(path: &str) -> Result<(File, u64)> {
    let file = File::open(path).with_context(|| format!("failed to open archive {path:?}"))?;
    let size = file
        .metadata()
        .with_context(|| format!("failed to stat archive {path:?}"))?
        .len();
    Ok((file, size))
}

/// Detach from the terminal: the parent exits, the child continues in a new session.
fn daemonize() -> Result<()> {
    // SAFETY: the process is single-threaded here (the FUSE session has no threads yet).
    match unsafe { libc::fork() } {
        -1 => Err(format_err!(
            "failed to fork - {}",
            std::io::Error::last_os_error()
        )),
        // SAFETY: `_exit` skips destructors, so the parent does not unmount the session.
        pid if pid > 0 => unsafe { libc::_exit(0) },
        _ => {
            // SAFETY: plain syscalls on our own process and stdio fds.
            unsafe {
                libc::setsid();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::dup2(null, 1);
                    libc::dup2(null, 2);
                    if null > 2 {
                        libc::close(null);
                    }
                }
            }
            Ok(())
        }
    }
}

/// Mount `archive` (plus its payload archive) at `mountpoint` and serve it until unmounted.
pub fn mount(
    archive: &str,
    mountpoint: &str,
    payload_input: Option<&str>,
    verbose: bool,
) -> Result<()> {
    let (input, size) = open_sized(archive)?;
    let payload = payload_input.map(open_sized).transpose()?;
    let accessor = Accessor::new(input, size, payload)
        .map_err(|err| format_err!("archive {archive:?}: {err}"))?;
    let session = fuse::mount(accessor, mountpoint.as_ref(), verbose)?;
    if !verbose {
        daemonize()?;
    }
    session
        .run()
        .map_err(|err| format_err!("FUSE session on {mountpoint:?} failed - {err}"))
}
