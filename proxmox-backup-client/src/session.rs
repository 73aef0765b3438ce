//! `login`, `logout` and `version`.

use anyhow::{bail, Result};
use serde_json::{json, Value};

use pbs_cli::{Command, CommandTree, OutputFormat, Param, ParsedArgs};
use pbs_client::tools::{
    connect, extract_repository, extract_repository_optional, record_repository, repository_params,
};

/// `<major>.<minor>` of the client version.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION_MAJOR"),
    ".",
    env!("CARGO_PKG_VERSION_MINOR")
);
/// The release (patch level) of the client version.
const RELEASE: &str = env!("CARGO_PKG_VERSION_PATCH");
/// Source revision set by the packaging at build time.
const REPOID: &str = match option_env!("REPOID") {
    Some(id) => id,
    None => "unknown",
};

fn output_format_param() -> Param {
    Param::optional("output-format", "Output format (text, json, json-pretty).")
}

/// The top-level entries of this module.
pub fn commands() -> Vec<(&'static str, CommandTree)> {
    vec![
        (
            "login",
            CommandTree::Leaf(Command {
                description: "Try to login. If successful, store ticket.",
                params: repository_params(),
                positionals: vec![],
            }),
        ),
        (
            "logout",
            CommandTree::Leaf(Command {
                description: "Logout (delete stored ticket).",
                params: repository_params(),
                positionals: vec![],
            }),
        ),
        (
            "version",
            CommandTree::Leaf(Command {
                description: "Show client and optional server version",
                params: {
                    let mut params = repository_params();
                    params.push(output_format_param());
                    params
                },
                positionals: vec![],
            }),
        ),
    ]
}

/// Runs `login`, `logout` or `version`.
pub async fn run(path: &[&'static str], args: &ParsedArgs) -> Result<Option<Value>> {
    match path {
        ["login"] => login(args).await,
        ["logout"] => logout(args),
        ["version"] => version(args).await,
        _ => bail!("unknown command '{}'", path.join(" ")),
    }
}

async fn login(args: &ParsedArgs) -> Result<Option<Value>> {
    let repo = extract_repository(args)?;
    record_repository(&repo);
    let client = connect(&repo)?;
    client.login().await?;
    Ok(None)
}

fn logout(args: &ParsedArgs) -> Result<Option<Value>> {
    let repo = extract_repository(args)?;
    let userid = repo.auth_id().user().to_string();
    pbs_client::ticket_cache::delete_ticket(repo.host(), &userid)?;
    Ok(None)
}

async fn version(args: &ParsedArgs) -> Result<Option<Value>> {
    let format = OutputFormat::from_args(args)?;
    let mut info = json!({
        "client": { "version": VERSION, "release": RELEASE, "repoid": REPOID },
    });
    if let Ok(Some(repo)) = extract_repository_optional(args) {
        let client = connect(&repo)?;
        match client.get("api2/json/version", None).await {
            Ok(mut result) => info["server"] = result["data"].take(),
            Err(err) => eprintln!("could not connect to server - {err:#}"),
        }
    }
    match format {
        OutputFormat::Text => {
            println!("client version: {VERSION}.{RELEASE}");
            if let Some(server) = info.get("server") {
                let text = |key: &str| server[key].as_str().unwrap_or("").to_string();
                println!("server version: {}.{}", text("version"), text("release"));
            }
        }
        other => other.print(&info)?,
    }
    Ok(None)
}
