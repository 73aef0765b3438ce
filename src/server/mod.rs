//! Daemon plumbing shared by `proxmox-backup-api` and `proxmox-backup-proxy`: directory
//! layout and start-up files, listen addresses, control socket, reload and shutdown.

pub mod daemon;
pub mod dev_setup;
pub mod layout;
pub mod log;
pub mod notify;
pub mod test_routes;
pub mod worker_control;

use std::sync::Arc;

pub use daemon::{run, DaemonKind};

/// The authentication hook of a daemon (`public` = the proxy, which only has the public
/// ticket key).
///
pub fn api_auth(public: bool) -> anyhow::Result<Arc<dyn pbs_rest_server::ApiAuth>> {
    crate::auth::ApiAuthState::new(public)
}

/// Entry point of both daemon binaries: runs the daemon on a multi-threaded runtime and
/// reports a failed start on stderr with exit code 1.
pub fn daemon_main(kind: DaemonKind) -> ! {
    log::init(kind.name());
    let result = (|| {
        if kind == DaemonKind::Proxy {
            daemon::drop_privileges_to_backup()?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(run(kind))
    })();
    match result {
        Ok(()) => std::process::exit(0),
        Err(err) => {
            log::info(format!("error: {err:#}"));
            std::process::exit(1)
        }
    }
}
