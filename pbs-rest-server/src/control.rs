//! The per-process control socket: an abstract Unix socket taking one JSON command per line
//! (`{"command":"<name>","args":…}`) and answering `OK: <json>` or `ERROR: <text>`.

use std::collections::HashMap;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::sync::Arc;

use anyhow::{bail, format_err, Error};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// A command implementation: receives the optional `args` member.
pub type CommandHandler = Arc<dyn Fn(Option<Value>) -> Result<Value, Error> + Send + Sync>;

/// Name of the control socket of process `pid` (abstract namespace, without the NUL byte).
pub fn control_socket_name(pid: u32) -> String {
    format!("/run/proxmox-backup/control-{pid}.sock")
}

/// A set of commands served on an abstract Unix socket.
pub struct CommandSocket {
    name: String,
    extra_gid: Option<u32>,
    commands: HashMap<String, CommandHandler>,
}

impl CommandSocket {
    /// Commands for the socket `name`; peers are accepted with uid 0, the process' own gid,
    /// or `extra_gid` (the `backup` group).
    pub fn new(name: impl Into<String>, extra_gid: Option<u32>) -> Self {
        Self {
            name: name.into(),
            extra_gid,
            commands: HashMap::new(),
        }
    }

    /// Adds a command; each name can only be registered once.
    pub fn register<F>(&mut self, command: &str, handler: F) -> Result<(), Error>
    where
        F: Fn(Option<Value>) -> Result<Value, Error> + Send + Sync + 'static,
    {
        if self.commands.contains_key(command) {
            bail!("control socket command '{command}' already registered");
        }
        self.commands.insert(command.to_string(), Arc::new(handler));
        Ok(())
    }

    /// Binds the socket and serves it until the returned task is aborted.
    pub fn spawn(self) -> io::Result<JoinHandle<()>> {
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(self.name.as_bytes())?;
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr).map_err(|err| {
            io::Error::new(err.kind(), format!("control socket {}: {err}", self.name))
        })?;
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        let commands = Arc::new(self.commands);
        let extra_gid = self.extra_gid;
        Ok(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                if !peer_allowed(&stream, extra_gid) {
                    continue;
                }
                tokio::spawn(serve_client(stream, Arc::clone(&commands)));
            }
        }))
    }
}

fn peer_allowed(stream: &UnixStream, extra_gid: Option<u32>) -> bool {
    let Ok(cred) = stream.peer_cred() else {
        return false;
    };
    // SAFETY: getegid has no preconditions.
    let own_gid = unsafe { libc::getegid() };
    cred.uid() == 0 || cred.gid() == own_gid || Some(cred.gid()) == extra_gid
}

async fn serve_client(stream: UnixStream, commands: Arc<HashMap<String, CommandHandler>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match run_command(&line, &commands) {
            Ok(value) => format!("OK: {value}\n"),
            Err(err) => format!("ERROR: {err}\n"),
        };
        if write.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn run_command(line: &str, commands: &HashMap<String, CommandHandler>) -> Result<Value, Error> {
    let mut request: Value =
        serde_json::from_str(line).map_err(|err| format_err!("unable to parse command: {err}"))?;
    let Some(name) = request
        .get("command")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        bail!("missing command");
    };
    let args = request.as_object_mut().and_then(|map| map.remove("args"));
    match commands.get(&name) {
        Some(handler) => handler(args),
        None => bail!("got unknown command '{name}'"),
    }
}

/// Sends one command to the control socket `name` and returns the answer's value.
pub async fn send_command(name: &str, command: &str, args: Option<Value>) -> Result<Value, Error> {
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let stream = std::os::unix::net::UnixStream::connect_addr(&addr)
        .map_err(|err| format_err!("control socket {name}: {err}"))?;
    stream.set_nonblocking(true)?;
    let stream = UnixStream::from_std(stream)?;
    let mut request = serde_json::json!({ "command": command });
    if let Some(args) = args {
        request["args"] = args;
    }
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{request}\n").as_bytes()).await?;
    write.shutdown().await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let line = line.trim_end_matches('\n');
    if let Some(data) = line.strip_prefix("OK: ") {
        serde_json::from_str(data)
            .map_err(|err| format_err!("control socket {name}: bad answer: {err}"))
    } else if let Some(message) = line.strip_prefix("ERROR: ") {
        bail!("{message}")
    } else {
        bail!("control socket {name}: unable to parse answer '{line}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique_name(tag: &str) -> String {
        format!(
            "/run/pbs-rest-server-test/{}-{tag}.sock",
            std::process::id()
        )
    }

    #[tokio::test]
    async fn commands_round_trip() {
        let name = unique_name("control");
        let mut socket = CommandSocket::new(&name, None);
        socket
            .register("echo", |args| Ok(args.unwrap_or(Value::Null)))
            .unwrap();
        socket
            .register("fail", |_| {
                Err(format_err!("upid does not belong to this process"))
            })
            .unwrap();
        assert!(socket.register("echo", |_| Ok(Value::Null)).is_err());
        let task = socket.spawn().unwrap();

        let value = send_command(&name, "echo", Some(serde_json::json!({"upid":"x"})))
            .await
            .unwrap();
        assert_eq!(value, serde_json::json!({"upid":"x"}));
        assert_eq!(
            send_command(&name, "echo", None).await.unwrap(),
            Value::Null
        );
        let err = send_command(&name, "fail", None).await.unwrap_err();
        assert_eq!(err.to_string(), "upid does not belong to this process");
        let err = send_command(&name, "nope", None).await.unwrap_err();
        assert_eq!(err.to_string(), "got unknown command 'nope'");

        // Several commands on one connection, one answer line each.
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let std_stream = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
        std_stream.set_nonblocking(true).unwrap();
        let stream = UnixStream::from_std(std_stream).unwrap();
        let (read, mut write) = stream.into_split();
        write
            .write_all(b"{\"command\":\"echo\",\"args\":\"store1\"}\nnot json\n")
            .await
            .unwrap();
        write.shutdown().await.unwrap();
        let mut lines = BufReader::new(read).lines();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "OK: \"store1\"");
        let second = lines.next_line().await.unwrap().unwrap();
        assert!(
            second.starts_with("ERROR: unable to parse command: "),
            "{second}"
        );
        assert!(lines.next_line().await.unwrap().is_none());
        task.abort();
    }

    #[test]
    fn socket_name() {
        assert_eq!(
            control_socket_name(1234),
            "/run/proxmox-backup/control-1234.sock"
        );
    }
}
