//! Helpers of the client commands: secrets from the environment, per-user files, the
//! repository option and connecting.

use std::io::{IsTerminal, Read};
use std::os::unix::io::FromRawFd;
use std::path::PathBuf;

use anyhow::{bail, format_err, Context, Result};
use serde_json::Value;

use pbs_cli::{Param, ParsedArgs};

use crate::http_client::{HttpClient, HttpClientOptions};
use crate::proxy::ProxyConfig;
use crate::repository::{self, BackupRepository};
use crate::xdg;

/// Maximal length of a `--repository` value.
pub const REPO_URL_SCHEMA_MAX: usize = 256;
/// Environment variable with the default repository.
pub const ENV_VAR_PBS_REPOSITORY: &str = "PBS_REPOSITORY";
/// Environment variable (base name) with the password or API token secret.
pub const ENV_VAR_PBS_PASSWORD: &str = "PBS_PASSWORD";
/// Environment variable (base name) with the passphrase of encryption keys.
pub const ENV_VAR_PBS_ENCRYPTION_PASSWORD: &str = "PBS_ENCRYPTION_PASSWORD";
/// Environment variable with the expected server certificate fingerprint.
pub const ENV_VAR_PBS_FINGERPRINT: &str = "PBS_FINGERPRINT";
/// File name of the repository usage counters in the cache directory.
pub const REPO_LIST_FILE: &str = "repo-list";
/// How many repositories `repo-list` keeps.
const REPO_LIST_KEEP: usize = 11;

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

fn env_text(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{name} contains bad characters"),
    }
}

/// A secret from `B`, `B_FD` (fd number), `B_FILE` (path) or `B_CMD` (command line), the
/// first one defined winning; only the first line is used.
pub fn get_secret_from_env(base_name: &str) -> Result<Option<String>> {
    if let Some(value) = env_text(base_name)? {
        return Ok(Some(first_line(&value)));
    }
    let name = format!("{base_name}_FD");
    if let Some(value) = env_text(&name)? {
        let fd: i32 = value
            .trim()
            .parse()
            .map_err(|err| format_err!("{name}: invalid file descriptor '{value}' - {err}"))?;
        if fd < 0 {
            bail!("{name}: invalid file descriptor '{value}'");
        }
        // SAFETY: the user hands this descriptor to us for reading the secret; it is consumed.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut text = String::new();
        file.read_to_string(&mut text)
            .with_context(|| format!("unable to read secret from {name}"))?;
        return Ok(Some(first_line(&text)));
    }
    let name = format!("{base_name}_FILE");
    if let Some(path) = env_text(&name)? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("unable to read secret from {name} file '{path}'"))?;
        return Ok(Some(first_line(&text)));
    }
    let name = format!("{base_name}_CMD");
    if let Some(command) = env_text(&name)? {
        let words = split_command_line(&command)?;
        let Some((program, args)) = words.split_first() else {
            bail!("{name}: empty command");
        };
        let output = std::process::Command::new(program)
            .args(args)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("{name}: unable to run '{program}'"))?;
        if !output.status.success() {
            bail!("{name}: command '{command}' failed - {}", output.status);
        }
        let text = String::from_utf8(output.stdout)
            .map_err(|_| format_err!("{name}: command output contains bad characters"))?;
        return Ok(Some(first_line(&text)));
    }
    Ok(None)
}

/// Splits a command line like a POSIX shell: words separated by blanks, single quotes,
/// double quotes (with `\` escaping `"`, `\`, `$`, `` ` ``) and backslash escapes.
pub fn split_command_line(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => bail!("unterminated single quote in '{line}'"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => bail!("unterminated double quote in '{line}'"),
                        },
                        Some(c) => word.push(c),
                        None => bail!("unterminated double quote in '{line}'"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => bail!("trailing backslash in '{line}'"),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The passphrase of an encryption key: from the environment, else asked on the terminal.
pub fn get_encryption_key_password() -> Result<Vec<u8>> {
    if let Some(password) = get_secret_from_env(ENV_VAR_PBS_ENCRYPTION_PASSWORD)? {
        return Ok(password.into_bytes());
    }
    if std::io::stdin().is_terminal() {
        return pbs_cli::read_password(
            "Encryption Key Password: ",
            ENV_VAR_PBS_ENCRYPTION_PASSWORD,
        );
    }
    bail!("no password input mechanism available");
}

/// Looks up `name` in `$XDG_CONFIG_HOME/proxmox-backup/`, then in the `$XDG_CONFIG_DIRS`.
pub fn xdg_config_file(name: &str) -> Option<PathBuf> {
    xdg::find_config_file(name)
}

/// Where a new default file `name` goes: `$XDG_CONFIG_HOME/proxmox-backup/` (created).
pub fn xdg_config_place(name: &str) -> Result<PathBuf> {
    xdg::place_config_file(name)
}

/// Counts a use of `repo` in `repo-list`, keeping the most used entries; errors are ignored.
pub fn record_repository(repo: &BackupRepository) {
    let Ok(path) = xdg::place_cache_file(REPO_LIST_FILE) else {
        return;
    };
    let _ = record_repository_in(&path, &repo.to_string());
}

fn record_repository_in(path: &std::path::Path, repo: &str) -> Result<()> {
    let mut data = match xdg::read_json_file(path)? {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let count = data.get(repo).and_then(Value::as_u64).unwrap_or(0);
    data.insert(repo.to_string(), Value::from(count + 1));
    if data.len() > REPO_LIST_KEEP {
        let mut kept = serde_json::Map::new();
        for _ in 0..REPO_LIST_KEEP {
            // The first of equally used entries (in key order) wins.
            let mut best: Option<(&String, u64)> = None;
            for (name, count) in &data {
                let count = count.as_u64().unwrap_or(0);
                if best.is_none_or(|(_, max)| count > max) {
                    best = Some((name, count));
                }
            }
            let Some((name, count)) = best.map(|(n, c)| (n.clone(), c)) else {
                break;
            };
            data.remove(&name);
            kept.insert(name, Value::from(count));
        }
        data = kept;
    }
    let text = serde_json::to_string(&Value::Object(data))?;
    xdg::replace_file(path, text.as_bytes(), 0o644)
}

/// Checks a `--repository` value against the option schema.
fn check_repository_option(value: &str) -> Result<()> {
    if value.len() > REPO_URL_SCHEMA_MAX {
        bail!(
            "parameter verification failed - 'repository': value may only be {REPO_URL_SCHEMA_MAX} characters long"
        );
    }
    if !repository::matches_grammar(value) {
        bail!(
            "parameter verification failed - 'repository': value does not match the regex pattern"
        );
    }
    Ok(())
}

/// The repository from `--repository` or `PBS_REPOSITORY`, if any.
pub fn extract_repository_optional(args: &ParsedArgs) -> Result<Option<BackupRepository>> {
    if let Some(value) = args.get("repository") {
        check_repository_option(value)?;
        return Ok(Some(value.parse()?));
    }
    match env_text(ENV_VAR_PBS_REPOSITORY)? {
        Some(value) => Ok(Some(value.parse()?)),
        None => Ok(None),
    }
}

/// The repository from `--repository` or `PBS_REPOSITORY`.
pub fn extract_repository(args: &ParsedArgs) -> Result<BackupRepository> {
    extract_repository_optional(args)?
        .ok_or_else(|| format_err!("unable to get (default) repository"))
}

/// A client for `repo` (password from the environment, `PBS_FINGERPRINT`, caches).
pub fn connect(repo: &BackupRepository) -> Result<HttpClient> {
    connect_rate_limited(repo, None, None)
}

/// Like [`connect`], limiting traffic to `rate` bytes/s with `burst` bytes of credit.
pub fn connect_rate_limited(
    repo: &BackupRepository,
    rate: Option<u64>,
    burst: Option<u64>,
) -> Result<HttpClient> {
    let fingerprint = env_text(ENV_VAR_PBS_FINGERPRINT)?;
    let password = get_secret_from_env(ENV_VAR_PBS_PASSWORD)?;
    let options = HttpClientOptions::new_interactive(password, fingerprint)
        .rate_limit(rate, burst)
        .proxy(ProxyConfig::from_env()?);
    HttpClient::new(repo.host(), repo.port(), repo.auth_id(), options)
}

/// The `repository` option.
pub fn repository_params() -> Vec<Param> {
    vec![Param::optional(
        "repository",
        "Repository URL ([[auth-id@]server[:port]:]datastore).",
    )]
}

/// The `ns` option.
pub fn ns_param() -> Param {
    Param::optional("ns", "Namespace.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_from_env() {
        // Unique variable names: tests run in parallel threads of one process.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\nsecond line\n").unwrap();

        assert_eq!(get_secret_from_env("PBS_TEST_SECRET_NONE").unwrap(), None);

        std::env::set_var("PBS_TEST_SECRET_A", "direct\nignored");
        std::env::set_var("PBS_TEST_SECRET_A_FILE", &file);
        assert_eq!(
            get_secret_from_env("PBS_TEST_SECRET_A").unwrap().as_deref(),
            Some("direct")
        );

        std::env::set_var("PBS_TEST_SECRET_B_FILE", &file);
        std::env::set_var("PBS_TEST_SECRET_B_CMD", "echo from-cmd");
        assert_eq!(
            get_secret_from_env("PBS_TEST_SECRET_B").unwrap().as_deref(),
            Some("from-file")
        );

        std::env::set_var("PBS_TEST_SECRET_C_CMD", "printf 'a b\\nc'");
        assert_eq!(
            get_secret_from_env("PBS_TEST_SECRET_C").unwrap().as_deref(),
            Some("a b")
        );
        std::env::set_var("PBS_TEST_SECRET_D_CMD", "false");
        assert!(get_secret_from_env("PBS_TEST_SECRET_D").is_err());

        let reader = std::fs::File::open(&file).unwrap();
        let fd = std::os::unix::io::IntoRawFd::into_raw_fd(reader);
        std::env::set_var("PBS_TEST_SECRET_E_FD", fd.to_string());
        assert_eq!(
            get_secret_from_env("PBS_TEST_SECRET_E").unwrap().as_deref(),
            Some("from-file")
        );
        std::env::set_var("PBS_TEST_SECRET_F_FD", "x");
        assert!(get_secret_from_env("PBS_TEST_SECRET_F").is_err());

        use std::os::unix::ffi::OsStrExt;
        std::env::set_var(
            "PBS_TEST_SECRET_G",
            std::ffi::OsStr::from_bytes(b"\xff\xfe"),
        );
        assert_eq!(
            get_secret_from_env("PBS_TEST_SECRET_G")
                .unwrap_err()
                .to_string(),
            "PBS_TEST_SECRET_G contains bad characters"
        );
    }

    fn parse_args(args: &[&str]) -> ParsedArgs {
        let tree = pbs_cli::CommandTree::Group(vec![(
            "cmd",
            pbs_cli::CommandTree::Leaf(pbs_cli::Command {
                description: "test",
                params: repository_params(),
                positionals: vec![],
            }),
        )]);
        let args: Vec<String> = std::iter::once("cmd")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        pbs_cli::parse_command_line(&tree, &args).unwrap().args
    }

    #[test]
    fn repository_from_option_and_env() {
        // The only test touching PBS_REPOSITORY.
        std::env::remove_var(ENV_VAR_PBS_REPOSITORY);
        assert_eq!(
            extract_repository(&parse_args(&[]))
                .unwrap_err()
                .to_string(),
            "unable to get (default) repository"
        );
        assert_eq!(extract_repository_optional(&parse_args(&[])).unwrap(), None);
        let repo = extract_repository(&parse_args(&["--repository", "u@pbs@h:9:st"])).unwrap();
        assert_eq!(repo.to_string(), "u@pbs@h:9:st");
        let err = extract_repository(&parse_args(&["--repository", "a b"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter verification failed - 'repository': value does not match the regex pattern"
        );
        // From the environment only parsed, without the length limit.
        let long = format!("h:{}", "s".repeat(300));
        std::env::set_var(ENV_VAR_PBS_REPOSITORY, &long);
        assert_eq!(
            extract_repository(&parse_args(&[])).unwrap().store().len(),
            300
        );
        let repo = extract_repository(&parse_args(&["--repository", "other"])).unwrap();
        assert_eq!(repo.store(), "other");
        std::env::remove_var(ENV_VAR_PBS_REPOSITORY);
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            split_command_line(r#"echo 'a b' "c \"d\" \x" e\ f"#).unwrap(),
            vec!["echo", "a b", r#"c "d" \x"#, "e f"]
        );
        assert_eq!(split_command_line("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_command_line("''").unwrap(), vec![""]);
        assert!(split_command_line("'open").is_err());
    }

    #[test]
    fn repo_list_keeps_most_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo-list");
        let initial: serde_json::Map<String, Value> = (0..11)
            .map(|i| (format!("store{i:02}"), Value::from(i + 1)))
            .collect();
        std::fs::write(&path, Value::Object(initial).to_string()).unwrap();
        record_repository_in(&path, "store05").unwrap();
        let data = xdg::read_json_file(&path).unwrap();
        assert_eq!(data.as_object().unwrap().len(), 11);
        assert_eq!(data["store05"], 7);
        // `new` and `store00` are both used once: the first in key order stays.
        record_repository_in(&path, "new").unwrap();
        let data = xdg::read_json_file(&path).unwrap();
        let map = data.as_object().unwrap();
        assert_eq!(map.len(), 11);
        assert_eq!(map["new"], 1);
        assert!(map.get("store00").is_none(), "{data}");
        record_repository_in(&path, "zzz").unwrap();
        let data = xdg::read_json_file(&path).unwrap();
        let map = data.as_object().unwrap();
        assert_eq!(map.len(), 11);
        assert!(
            map.get("zzz").is_none() && map.get("new").is_some(),
            "{data}"
        );
        assert_eq!(map["store10"], 11);
    }

    #[test]
    fn repository_option_schema() {
        check_repository_option("user@pbs@host:store").unwrap();
        let long = format!("h:{}", "s".repeat(300));
        assert_eq!(
            check_repository_option(&long).unwrap_err().to_string(),
            "parameter verification failed - 'repository': value may only be 256 characters long"
        );
        assert_eq!(
            check_repository_option("my_host:store")
                .unwrap_err()
                .to_string(),
            "parameter verification failed - 'repository': value does not match the regex pattern"
        );
    }
}
