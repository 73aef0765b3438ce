//! The life cycle shared by both daemons: start-up, serving, control socket, reload on
//! SIGHUP (listener hand-over to a re-executed successor) and graceful shutdown on
//! SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{format_err, Context, Error};
use serde_json::Value;
use tokio::signal::unix::{signal, SignalKind};

use pbs_rest_server::control::{control_socket_name, CommandSocket};
use pbs_rest_server::reload::{import_listener, reexec_command, spawn_with_listeners};
use pbs_rest_server::{
    spawn_server, FileLogger, RpcEnvType, ServerConfig, ServerHandle, TlsAcceptorHandle, TlsConfig,
    Transport,
};
use std::process::Command;

use super::layout::{self, UserIds};
use super::{log, notify, test_routes, worker_control};

/// Environment variable carrying the inherited listening socket of a reloaded daemon.
pub const LISTEN_FD_ENV: &str = "PROXMOX_BACKUP_LISTEN_FD";
/// Listen address of the API daemon (default `127.0.0.1:82`).
pub const API_LISTEN_ENV: &str = "PBS_API_LISTEN";
/// Listen address of the proxy (default `[::]:8007`).
pub const PROXY_LISTEN_ENV: &str = "PBS_PROXY_LISTEN";

/// Which of the two daemons runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonKind {
    /// `proxmox-backup-api`: privileged, plain HTTP on the loopback address.
    Api,
    /// `proxmox-backup-proxy`: public, TLS, forwards protected calls.
    Proxy,
}

impl DaemonKind {
    /// The program name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Api => "proxmox-backup-api",
            Self::Proxy => "proxmox-backup-proxy",
        }
    }

    fn env_type(self) -> RpcEnvType {
        match self {
            Self::Api => RpcEnvType::Privileged,
            Self::Proxy => RpcEnvType::Public,
        }
    }

    /// `<run dir>/api.pid` or `<run dir>/proxy.pid`.
    pub fn pid_file(self) -> PathBuf {
        pbs_buildcfg::run_dir().join(match self {
            Self::Api => "api.pid",
            Self::Proxy => "proxy.pid",
        })
    }

    /// The configured listen address.
    pub fn listen_address(self) -> Result<SocketAddr, Error> {
        match self {
            Self::Api => listen_address_from(API_LISTEN_ENV, "127.0.0.1:82"),
            Self::Proxy => listen_address_from(PROXY_LISTEN_ENV, "[::]:8007"),
        }
    }
}

fn listen_address_from(var: &str, default: &str) -> Result<SocketAddr, Error> {
    let text = std::env::var(var).unwrap_or_else(|_| default.to_string());
    text.parse()
        .map_err(|err| format_err!("{var}: invalid listen address '{text}': {err}"))
}

/// Drops root privileges to `backup:backup` (the proxy). Must run before any thread is
/// started. Without root the daemon keeps running as the invoking user (development).
pub fn drop_privileges_to_backup() -> Result<(), Error> {
    let Some(ids) = layout::service_owner()? else {
        return Ok(());
    };
    let UserIds { uid, gid } = ids;
    // SAFETY: plain system calls on ids; no memory is passed except the group array.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            return Err(std::io::Error::last_os_error()).context("setgroups");
        }
        if libc::setgid(gid) != 0 {
            return Err(std::io::Error::last_os_error()).context("setgid");
        }
        if libc::setuid(uid) != 0 {
            return Err(std::io::Error::last_os_error()).context("setuid");
        }
        if libc::geteuid() != uid || libc::getegid() != gid {
            anyhow::bail!(
                "proxy not running as backup user or group (got uid {} gid {})",
                libc::geteuid(),
                libc::getegid()
            );
        }
    }
    Ok(())
}

/// Reads the configuration files the daemons depend on, so that a broken file stops the
/// start with its name and line instead of failing requests later.
fn check_config_files() -> Result<(), Error> {
    pbs_config::user::config()?;
    pbs_config::acl::config()?;
    pbs_config::datastore::config()?;
    Ok(())
}

fn open_logs(owner: Option<UserIds>) -> Result<(Arc<FileLogger>, Arc<FileLogger>), Error> {
    let dir = pbs_buildcfg::log_dir().join("api");
    let access = FileLogger::access_log(dir.join("access.log"))?;
    let auth = FileLogger::auth_log(dir.join("auth.log"))?;
    if let Some(ids) = owner {
        for name in ["access.log", "auth.log"] {
            let path = dir.join(name);
            std::os::unix::fs::chown(&path, Some(ids.uid), Some(ids.gid))
                .with_context(|| format!("unable to change owner of {path:?}"))?;
        }
    }
    Ok((Arc::new(access), Arc::new(auth)))
}

fn bind_listener(kind: DaemonKind) -> Result<std::net::TcpListener, Error> {
    if let Some(listener) = import_listener(LISTEN_FD_ENV)? {
        return Ok(listener);
    }
    let addr = kind.listen_address()?;
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|err| format_err!("unable to listen on {addr} - {err}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn write_pid_file(path: &Path) -> Result<(), Error> {
    let data = format!("{}\n", std::process::id());
    pbs_tools::fs::replace_file(
        path,
        data.as_bytes(),
        pbs_tools::fs::ReplaceOptions::mode(0o644),
    )
    .with_context(|| format!("unable to write PID file {path:?}"))
}

/// Removes the PID file if it still names this process (a successor may have rewritten it).
fn remove_own_pid_file(path: &Path) {
    let own = format!("{}\n", std::process::id());
    if std::fs::read_to_string(path).is_ok_and(|content| content == own) {
        let _ = std::fs::remove_file(path);
    }
}

fn start_control_socket(
    kind: DaemonKind,
    access_log: Arc<FileLogger>,
    auth_log: Arc<FileLogger>,
    tls: Option<TlsAcceptorHandle>,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let backup_gid = layout::lookup_user("backup")?.map(|ids| ids.gid);
    let mut socket = CommandSocket::new(control_socket_name(std::process::id()), backup_gid);
    worker_control::register_task_commands(&mut socket)?;
    socket.register("api-access-log-reopen", move |_| {
        access_log.reopen()?;
        Ok(Value::Null)
    })?;
    socket.register("api-auth-log-reopen", move |_| {
        auth_log.reopen()?;
        Ok(Value::Null)
    })?;
    if kind == DaemonKind::Proxy {
        if let Some(tls) = tls {
            socket.register("reload-certificate", move |_| {
                tls.reload()?;
                Ok(Value::Null)
            })?;
        }
        // This proxy keeps no datastore cache, so there is nothing to drop or refresh.
        socket.register("datastore-removed", |_| Ok(Value::Null))?;
        socket.register("update-datastore-cache", |_| Ok(Value::Null))?;
    }
    Ok(socket.spawn()?)
}

/// The API tree served by the daemons (plus the test routes when enabled).
pub fn daemon_router() -> Result<pbs_rest_server::Router, Error> {
    let router = crate::api2::router()?;
    if test_routes::enabled() {
        log::info("test routes enabled");
        return Ok(test_routes::register(router)?);
    }
    Ok(router)
}

enum Exit {
    Shutdown,
    Reload,
}

/// Runs a daemon until SIGTERM/SIGINT, or until a successor took over after SIGHUP.
pub async fn run(kind: DaemonKind) -> Result<(), Error> {
    let owner = match kind {
        DaemonKind::Api => {
            layout::prepare_api_daemon()?;
            layout::service_owner()?
        }
        // The proxy runs as `backup` already; what it writes belongs to it.
        DaemonKind::Proxy => {
            layout::create_runtime_dirs(None)?;
            None
        }
    };
    check_config_files()?;
    let router = Arc::new(daemon_router()?);
    let auth = super::api_auth(kind == DaemonKind::Proxy)?;
    let (access_log, auth_log) = open_logs(owner)?;
    // Logins handled by the access API write their own auth log lines.
    crate::auth::set_auth_logger(Some(Arc::clone(&auth_log)));

    let tls = match kind {
        DaemonKind::Api => None,
        DaemonKind::Proxy => Some(TlsAcceptorHandle::new(TlsConfig::new(
            pbs_auth::tls::proxy_key_path(),
            pbs_auth::tls::proxy_cert_path(),
        ))?),
    };
    let listener = bind_listener(kind)?;
    let addr = listener.local_addr()?;

    let forward_to = match kind {
        DaemonKind::Proxy => Some(DaemonKind::Api.listen_address()?),
        DaemonKind::Api => None,
    };
    let (log_a, log_b) = (Arc::clone(&access_log), Arc::clone(&auth_log));
    let make_config = move || {
        let mut config = ServerConfig::new(kind.env_type(), Arc::clone(&router), Arc::clone(&auth));
        config.forward_to = forward_to;
        config.access_log = Some(Arc::clone(&log_a));
        config.auth_log = Some(Arc::clone(&log_b));
        config
    };
    let transport = match &tls {
        Some(tls) => Transport::Tls(tls.clone()),
        None => Transport::Plain,
    };

    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let mut server = spawn_server(
        tokio::net::TcpListener::from_std(listener)?,
        transport.clone(),
        make_config(),
    )?;
    log::info(format!("listening on {addr}"));
    let pid_file = kind.pid_file();
    write_pid_file(&pid_file)?;
    let control = start_control_socket(kind, access_log, auth_log, tls)?;
    report_notify_error(notify::notify("READY=1"));

    let exit = loop {
        tokio::select! {
            _ = sighup.recv() => {
                log::info("reload requested");
                report_notify_error(notify::notify("RELOADING=1"));
                match hand_over(&mut server).await {
                    Ok(pid) => {
                        log::info(format!("successor started (pid {pid}), finishing open requests"));
                        // The successor is the main process from now on.
                        report_notify_error(notify::notify(&format!("MAINPID={pid}")));
                        break Exit::Reload;
                    }
                    Err((err, listener)) => {
                        log::info(format!("reload failed: {err:#}"));
                        let Some(listener) = listener else { break Exit::Shutdown };
                        server = spawn_server(
                            tokio::net::TcpListener::from_std(listener)?,
                            transport.clone(),
                            make_config(),
                        )?;
                    }
                }
            }
            _ = sigterm.recv() => break Exit::Shutdown,
            _ = sigint.recv() => break Exit::Shutdown,
        }
    };

    if matches!(exit, Exit::Shutdown) {
        log::info("shutting down");
    }
    server.shutdown().await;
    if pbs_tasks::worker::running_worker_count() > 0 {
        log::info("server shutting down, waiting for active workers to complete");
        while pbs_tasks::worker::running_worker_count() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    control.abort();
    if matches!(exit, Exit::Shutdown) {
        remove_own_pid_file(&pid_file);
    }
    log::info("done - exit server");
    Ok(())
}

fn report_notify_error(result: Result<(), Error>) {
    if let Err(err) = result {
        log::info(format!("{err:#}"));
    }
}

/// The successor runs the binary now installed at this program's path (an update replaces
/// the file; `/proc/self/exe` would still name the old one), with the same arguments.
fn successor_command() -> Command {
    let Ok(exe) = std::env::current_exe() else {
        return reexec_command();
    };
    let text = exe.to_string_lossy();
    let path = PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text));
    if !path.is_file() {
        return reexec_command();
    }
    let mut command = Command::new(path);
    command.args(std::env::args_os().skip(1));
    command
}

/// Stops accepting and starts the successor with the listening socket. On failure the
/// listener (if it was taken back) is returned so that this process can go on serving.
async fn hand_over(
    server: &mut ServerHandle,
) -> Result<u32, (Error, Option<std::net::TcpListener>)> {
    let listener = server
        .hand_over_listener()
        .await
        .map_err(|err| (Error::from(err), None))?;
    match spawn_with_listeners(successor_command(), &[(&listener, LISTEN_FD_ENV)]) {
        Ok(child) => Ok(child.id()),
        Err(err) => Err((
            format_err!("unable to start successor: {err}"),
            Some(listener),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        // Variable names unique to this test: the environment is process-global.
        std::env::set_var("PBS_TEST_LISTEN_A", "[::1]:8008");
        assert_eq!(
            listen_address_from("PBS_TEST_LISTEN_A", "127.0.0.1:82").unwrap(),
            "[::1]:8008".parse().unwrap()
        );
        assert_eq!(
            listen_address_from("PBS_TEST_LISTEN_UNSET", "[::]:8007").unwrap(),
            "[::]:8007".parse().unwrap()
        );
        std::env::set_var("PBS_TEST_LISTEN_B", "localhost");
        let err = listen_address_from("PBS_TEST_LISTEN_B", "127.0.0.1:82").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("PBS_TEST_LISTEN_B: invalid listen address 'localhost'"),
            "{err}"
        );
    }

    #[test]
    fn pid_file_of_a_successor_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.pid");
        write_pid_file(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        remove_own_pid_file(&path);
        assert!(!path.exists());
        std::fs::write(&path, "1\n").unwrap();
        remove_own_pid_file(&path);
        assert!(path.exists());
    }
}
