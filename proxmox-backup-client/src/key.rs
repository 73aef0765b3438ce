//! `key` commands: encryption key files, the RSA master key and paper keys.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, format_err, Context, Result};
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use serde::Serialize;
use serde_json::Value;

use pbs_cli::format::{format_and_print_result, render_epoch, ColumnConfig, TableOptions};
use pbs_cli::{CommandTree, OutputFormat, Param, ParsedArgs};
use pbs_datastore::key_config::{
    create_master_key, rsa_decrypt_key_config, Kdf, KeyConfig, KeyConfigError, KeyInfo,
};
use pbs_datastore::paperkey::{generate_paper_key, PaperkeyFormat};

/// File name of the default encryption key in the XDG config directory.
pub const DEFAULT_ENCRYPTION_KEY_FILE_NAME: &str = "encryption-key.json";
/// File name of the default RSA master public key in the XDG config directory.
pub const DEFAULT_MASTER_PUBKEY_FILE_NAME: &str = "master-public.pem";

const MASTER_PUBLIC_FILE: &str = "master-public.pem";
const MASTER_PRIVATE_FILE: &str = "master-private.pem";
/// Shortest accepted new passphrase.
const MIN_PASSWORD_LEN: usize = 5;
const MAX_HINT_LEN: usize = 64;

const KDF_PARAM: Param = Param::optional(
    "kdf",
    "Key derivation function: none, scrypt (default) or pbkdf2.",
);
const HINT_PARAM: Param = Param::optional("hint", "Password hint.");
const PATH_PARAM: Param = Param::optional(
    "path",
    "Key file. Without this the default key's location is used.",
);
const FORMAT_PARAM: Param =
    Param::optional("output-format", "Output format: text, json or json-pretty.");

/// The `key` command group.
pub fn commands() -> Vec<(&'static str, CommandTree)> {
    let group = vec![
        (
            "change-passphrase",
            CommandTree::leaf(
                "Change the encryption key's password.",
                vec![PATH_PARAM, KDF_PARAM, HINT_PARAM],
                vec!["path"],
            ),
        ),
        (
            "create",
            CommandTree::leaf(
                "Create a new encryption key.",
                vec![PATH_PARAM, KDF_PARAM, HINT_PARAM],
                vec!["path"],
            ),
        ),
        (
            "create-master-key",
            CommandTree::leaf(
                "Create an RSA public/private key pair used to put an encrypted version of the encryption key onto the backup server along with each backup.",
                vec![],
                vec![],
            ),
        ),
        (
            "import-master-pubkey",
            CommandTree::leaf(
                "Import an RSA public key used to put an encrypted version of the symmetric backup encryption key onto the backup server along with each backup.",
                vec![Param::required("path", "Path to the PEM formatted RSA public key.")],
                vec!["path"],
            ),
        ),
        (
            "import-with-master-key",
            CommandTree::leaf(
                "Import an encrypted backup of an encryption key using a (private) master key.",
                vec![
                    Param::required("master-keyfile", "(Private) master key to use."),
                    Param::required("encrypted-keyfile", "RSA-encrypted keyfile to import."),
                    PATH_PARAM,
                    KDF_PARAM,
                    HINT_PARAM,
                ],
                vec!["path"],
            ),
        ),
        (
            "paperkey",
            CommandTree::leaf(
                "Generate a printable, human readable text file containing the encryption key.",
                vec![
                    PATH_PARAM,
                    Param::optional("subject", "Include the specified subject as title text."),
                    Param::optional("output-format", "Output format: text or html (default)."),
                ],
                vec!["path"],
            ),
        ),
        (
            "show",
            CommandTree::leaf(
                "Display information about an encryption key.",
                vec![PATH_PARAM, FORMAT_PARAM],
                vec!["path"],
            ),
        ),
        (
            "show-master-pubkey",
            CommandTree::leaf(
                "List information about master key.",
                vec![
                    Param::optional("path", "Path to the PEM formatted RSA public key. Default location will be used if not specified."),
                    FORMAT_PARAM,
                ],
                vec!["path"],
            ),
        ),
    ];
    vec![("key", CommandTree::Group(group))]
}

/// Runs one `key` sub-command.
pub async fn run(path: &[&'static str], args: &ParsedArgs) -> Result<Option<Value>> {
    match path.get(1).copied() {
        Some("create") => create(args)?,
        Some("import-with-master-key") => import_with_master_key(args)?,
        Some("create-master-key") => create_master_key_cmd()?,
        Some("import-master-pubkey") => import_master_pubkey(args)?,
        Some("change-passphrase") => change_passphrase(args)?,
        Some("show") => show(args)?,
        Some("show-master-pubkey") => show_master_pubkey(args)?,
        Some("paperkey") => paperkey(args)?,
        _ => bail!("command '{}' is not available", path.join(" ")),
    }
    Ok(None)
}

/// The default encryption key, if one exists on the XDG config search path.
pub fn find_default_encryption_key() -> Option<PathBuf> {
    pbs_client::tools::xdg_config_file(DEFAULT_ENCRYPTION_KEY_FILE_NAME)
}

/// The default master public key, if one exists on the XDG config search path.
pub fn find_default_master_pubkey() -> Option<PathBuf> {
    pbs_client::tools::xdg_config_file(DEFAULT_MASTER_PUBKEY_FILE_NAME)
}

/// Where a new default encryption key goes.
pub fn place_default_encryption_key() -> Result<PathBuf> {
    pbs_client::tools::xdg_config_place(DEFAULT_ENCRYPTION_KEY_FILE_NAME)
}

/// Where a new default master public key goes.
pub fn place_default_master_pubkey() -> Result<PathBuf> {
    pbs_client::tools::xdg_config_place(DEFAULT_MASTER_PUBKEY_FILE_NAME)
}

/// The passphrase of an existing key: `PBS_ENCRYPTION_PASSWORD*`, else a terminal prompt.
pub fn encryption_key_password() -> Result<Vec<u8>> {
    pbs_client::tools::get_encryption_key_password()
}

/// Prompts for a new password twice; both must agree and be long enough.
fn read_and_verify_password(prompt: &str) -> Result<Vec<u8>> {
    let password = pbs_cli::read_tty_password(prompt)?;
    let verify = pbs_cli::read_tty_password("Verify Password: ")?;
    if password != verify {
        bail!("Passwords do not match!");
    }
    if password.len() < MIN_PASSWORD_LEN {
        bail!("Password too short!");
    }
    Ok(password)
}

fn parse_kdf(args: &ParsedArgs) -> Result<Kdf> {
    match args.get("kdf") {
        None | Some("scrypt") => Ok(Kdf::Scrypt),
        Some("none") => Ok(Kdf::None),
        Some("pbkdf2") => Ok(Kdf::Pbkdf2),
        Some(other) => bail!(
            "parameter verification failed - 'kdf': value '{other}' is not defined in the enumeration."
        ),
    }
}

fn parse_hint(args: &ParsedArgs) -> Result<Option<String>> {
    let Some(hint) = args.get("hint") else {
        return Ok(None);
    };
    let len = hint.chars().count();
    if len < 1 {
        bail!("parameter verification failed - 'hint': value must be at least 1 characters long");
    }
    if len > MAX_HINT_LEN {
        bail!("parameter verification failed - 'hint': value may only be {MAX_HINT_LEN} characters long");
    }
    if hint.contains(['\n', '\r']) {
        bail!("parameter verification failed - 'hint': value does not match the regex pattern");
    }
    Ok(Some(hint.to_string()))
}

fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// Stores a key file, naming the file in I/O errors the way the CLI reports them.
fn store_key(config: &KeyConfig, path: &Path, replace: bool) -> Result<()> {
    config.store(path, replace).map_err(|err| match err {
        KeyConfigError::Io { path, source } => {
            format_err!("Unable to store key file {path:?} - {source}")
        }
        other => other.into(),
    })
}

/// A new key file for `raw_key` protected as `kdf` says (prompting for a new passphrase).
fn protect_key(
    raw_key: &[u8; 32],
    kdf: Kdf,
    hint: Option<String>,
    prompt: &str,
) -> Result<KeyConfig> {
    match kdf {
        Kdf::None => {
            if hint.is_some() {
                bail!("password hint not allowed for Kdf::None");
            }
            Ok(KeyConfig::without_password(*raw_key)?)
        }
        Kdf::Scrypt | Kdf::Pbkdf2 => {
            let password = read_and_verify_password(prompt)?;
            let mut config = KeyConfig::with_key(raw_key, &password, kdf)?;
            config.hint = hint;
            Ok(config)
        }
    }
}

fn create(args: &ParsedArgs) -> Result<()> {
    let kdf = parse_kdf(args)?;
    let hint = parse_hint(args)?;
    let path = match args.get("path") {
        Some(path) => PathBuf::from(path),
        None => {
            let path = place_default_encryption_key()?;
            eprintln!("creating default key at: {path:?}");
            path
        }
    };
    let mut raw_key = [0u8; 32];
    openssl::rand::rand_bytes(&mut raw_key)?;
    let config = match kdf {
        Kdf::None => protect_key(&raw_key, kdf, hint, "")?,
        Kdf::Scrypt | Kdf::Pbkdf2 => {
            if !stdin_is_tty() {
                bail!("unable to read passphrase - no tty");
            }
            protect_key(&raw_key, kdf, hint, "Encryption Key Password: ")?
        }
    };
    store_key(&config, &path, false)
}

/// Decrypts an RSA-encrypted key file with a PEM private master key.
pub fn decrypt_with_master_key(
    master_pem: &[u8],
    master_password: &[u8],
    encrypted_key: &[u8],
    passphrase: &dyn Fn() -> Result<Vec<u8>>,
) -> Result<([u8; 32], i64)> {
    let master = PKey::private_key_from_pem_passphrase(master_pem, master_password)
        .map_err(|err| format_err!("failed to read PEM-formatted private key - {err}"))?
        .rsa()
        .map_err(|err| format_err!("not a valid private RSA key - {err}"))?;
    let (raw_key, created, _fingerprint) =
        rsa_decrypt_key_config(&master, encrypted_key, passphrase)?;
    Ok((raw_key, created))
}

fn import_with_master_key(args: &ParsedArgs) -> Result<()> {
    let kdf = parse_kdf(args)?;
    let hint = parse_hint(args)?;
    let path = match args.get("path") {
        Some(path) => PathBuf::from(path),
        None => {
            let path = place_default_encryption_key()?;
            if path.exists() {
                bail!(
                    "Please remove default encryption key at {path:?} before importing to default location (or choose a non-default one)."
                );
            }
            eprintln!("Importing key to default location at: {path:?}");
            path
        }
    };
    let encrypted_file = args.required("encrypted-keyfile")?;
    let encrypted_key = std::fs::read(encrypted_file)
        .with_context(|| format!("unable to read file {encrypted_file:?}"))?;
    let master_file = args.required("master-keyfile")?;
    let master_pem = std::fs::read(master_file)
        .with_context(|| format!("unable to read file {master_file:?}"))?;
    let master_password = pbs_cli::read_tty_password("Master Key Password: ")?;
    let (raw_key, created) = decrypt_with_master_key(
        &master_pem,
        &master_password,
        &encrypted_key,
        &encryption_key_password,
    )?;
    let mut config = protect_key(&raw_key, kdf, hint, "New Password: ")?;
    config.created = created;
    store_key(&config, &path, true)
}

/// Logs the public parameters of an RSA key.
fn log_rsa_key(rsa: &Rsa<impl openssl::pkey::HasPublic>) -> Result<()> {
    eprintln!("Modulus: {}", rsa.n().to_hex_str()?);
    eprintln!("Exponent: {}", rsa.e().to_dec_str()?);
    Ok(())
}

fn create_master_key_cmd() -> Result<()> {
    if !stdin_is_tty() {
        bail!("unable to create master key - no tty");
    }
    let password = read_and_verify_password("Master Key Password: ")?;
    eprintln!("Generating 4096-bit RSA key..");
    let (public_pem, private_pem) = create_master_key(&password)?;
    let public = Rsa::public_key_from_pem(&public_pem)?;
    log_rsa_key(&public)?;
    eprintln!();
    let private_options = pbs_tools::fs::ReplaceOptions {
        mode: 0o600,
        owner: None,
        fsync: true,
    };
    let public_options = pbs_tools::fs::ReplaceOptions {
        mode: 0o644,
        ..private_options
    };
    eprintln!("Writing public master key to {MASTER_PUBLIC_FILE}");
    pbs_tools::fs::replace_file(Path::new(MASTER_PUBLIC_FILE), &public_pem, public_options)
        .with_context(|| format!("unable to write {MASTER_PUBLIC_FILE}"))?;
    eprintln!("Writing private master key to {MASTER_PRIVATE_FILE}");
    pbs_tools::fs::replace_file(
        Path::new(MASTER_PRIVATE_FILE),
        &private_pem,
        private_options,
    )
    .with_context(|| format!("unable to write {MASTER_PRIVATE_FILE}"))?;
    Ok(())
}

/// Summary of an RSA public key as shown by `show-master-pubkey` (field order = JSON order).
#[derive(Serialize)]
struct RsaPubKeyInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    modulus: String,
    exponent: String,
    length: usize,
}

fn rsa_pubkey_info(path: Option<String>, rsa: &Rsa<Public>) -> Result<Value> {
    Ok(serde_json::to_value(rsa_pubkey_struct(path, rsa)?)?)
}

fn rsa_pubkey_struct(path: Option<String>, rsa: &Rsa<Public>) -> Result<RsaPubKeyInfo> {
    Ok(RsaPubKeyInfo {
        path,
        modulus: rsa.n().to_hex_str()?.to_string(),
        exponent: rsa.e().to_dec_str()?.to_string(),
        length: rsa.n().to_vec().len() * 8,
    })
}

/// Prints `data` (JSON formats keep the struct's field order) or its text table.
fn print_record<T: Serialize>(
    data: &T,
    format: OutputFormat,
    options: &TableOptions,
) -> Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string(data)?),
        OutputFormat::JsonPretty => println!("{}", serde_json::to_string_pretty(data)?),
        OutputFormat::Text => {
            format_and_print_result(&serde_json::to_value(data)?, format, options)?
        }
    }
    Ok(())
}

fn decode_pubkey_pem(pem: &[u8]) -> Result<Rsa<Public>> {
    PKey::public_key_from_pem(pem)
        .and_then(|key| key.rsa())
        .map_err(|err| format_err!("Unable to decode PEM data - {err}"))
}

fn import_master_pubkey(args: &ParsedArgs) -> Result<()> {
    let path = args.required("path")?;
    let pem = std::fs::read(path).with_context(|| format!("unable to read file {path:?}"))?;
    let rsa = decode_pubkey_pem(&pem)?;
    let info = rsa_pubkey_info(None, &rsa)?;
    eprintln!("Found following key at {path:?}");
    eprintln!("Modulus: {}", info["modulus"].as_str().unwrap_or_default());
    eprintln!(
        "Exponent: {}",
        info["exponent"].as_str().unwrap_or_default()
    );
    eprintln!("Length: {}", info["length"]);
    let target = place_default_master_pubkey()?;
    let options = pbs_tools::fs::ReplaceOptions {
        mode: 0o644,
        owner: None,
        fsync: true,
    };
    pbs_tools::fs::replace_file(&target, &pem, options)
        .with_context(|| format!("unable to write {target:?}"))?;
    eprintln!("Imported public master key to {target:?}");
    Ok(())
}

fn change_passphrase(args: &ParsedArgs) -> Result<()> {
    let kdf = parse_kdf(args)?;
    let hint = parse_hint(args)?;
    let path = match args.get("path") {
        Some(path) => PathBuf::from(path),
        None => {
            let path = find_default_encryption_key().ok_or_else(|| {
                format_err!("no encryption file provided and no default file found")
            })?;
            eprintln!("updating default key at: {path:?}");
            path
        }
    };
    if !stdin_is_tty() {
        bail!("unable to change passphrase - no tty");
    }
    let old = KeyConfig::load(&path)?;
    let (raw_key, created, _fingerprint) = old.decrypt(&encryption_key_password)?;
    let mut config = protect_key(&raw_key, kdf, hint, "New Password: ")?;
    config.created = created;
    store_key(&config, &path, true)
}

/// The `key show` record of a key file: a `KeyInfo` with the debug-quoted path.
pub fn key_info(path: &Path, config: &KeyConfig) -> KeyInfo {
    let mut info = KeyInfo::from(config);
    info.path = Some(format!("{path:?}"));
    info
}

fn show(args: &ParsedArgs) -> Result<()> {
    let format = OutputFormat::from_args(args)?;
    let path = match args.get("path") {
        Some(path) => PathBuf::from(path),
        None => find_default_encryption_key()
            .ok_or_else(|| format_err!("no encryption file provided and no default file found"))?,
    };
    let config = KeyConfig::load(&path)?;
    let info = key_info(&path, &config);
    let options = TableOptions::new()
        .column(ColumnConfig::new("path"))
        .column(ColumnConfig::new("kdf"))
        .column(ColumnConfig::new("created").renderer(render_epoch))
        .column(ColumnConfig::new("modified").renderer(render_epoch))
        .column(ColumnConfig::new("fingerprint"))
        .column(ColumnConfig::new("hint"));
    print_record(&info, format, &options)
}

fn show_master_pubkey(args: &ParsedArgs) -> Result<()> {
    let format = OutputFormat::from_args(args)?;
    let path = match args.get("path") {
        Some(path) => PathBuf::from(path),
        None => find_default_master_pubkey()
            .ok_or_else(|| format_err!("No path specified and no default master key available."))?,
    };
    let path =
        std::fs::canonicalize(&path).with_context(|| format!("unable to resolve path {path:?}"))?;
    let pem = std::fs::read(&path).with_context(|| format!("unable to read file {path:?}"))?;
    let rsa = decode_pubkey_pem(&pem)?;
    let info = rsa_pubkey_struct(Some(path.display().to_string()), &rsa)?;
    let options = TableOptions::new()
        .column(ColumnConfig::new("path"))
        .column(ColumnConfig::new("modulus"))
        .column(ColumnConfig::new("exponent"))
        .column(ColumnConfig::new("length"));
    print_record(&info, format, &options)
}

/// Whether `data` looks like something `paperkey` can print.
fn is_paperkey_input(data: &str) -> bool {
    data.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
        || data.starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
        || KeyConfig::from_json(data).is_ok()
}

fn paperkey(args: &ParsedArgs) -> Result<()> {
    let path = match args.get("path") {
        Some(path) => PathBuf::from(path),
        None => find_default_encryption_key()
            .ok_or_else(|| format_err!("no encryption file provided and no default file found"))?,
    };
    let format = match args.get("output-format") {
        None | Some("html") => PaperkeyFormat::Html,
        Some("text") => PaperkeyFormat::Text,
        Some(other) => bail!(
            "parameter verification failed - 'output-format': value '{other}' is not defined in the enumeration."
        ),
    };
    let subject = args.get("subject").map(String::from);
    let data =
        std::fs::read_to_string(&path).with_context(|| format!("unable to read file {path:?}"))?;
    if !is_paperkey_input(&data) {
        bail!("Neither a PEM-formatted private key, nor a PBS key file.");
    }
    let stdout = std::io::stdout();
    generate_paper_key(stdout.lock(), &data, subject, format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbs_datastore::key_config::{create_master_key_with_bits, rsa_encrypt_key_config};

    #[test]
    fn paperkey_input_classification() {
        let key = KeyConfig::without_password([7u8; 32]).unwrap();
        assert!(is_paperkey_input(&key.to_json().unwrap()));
        assert!(is_paperkey_input("-----BEGIN RSA PRIVATE KEY-----\nabc\n"));
        assert!(!is_paperkey_input("-----BEGIN PUBLIC KEY-----\nabc\n"));
        assert!(!is_paperkey_input("{\"not\": \"a key\"}"));
    }

    #[test]
    fn master_key_round_trip() {
        let (public_pem, private_pem) = create_master_key_with_bits(b"master", 3072).unwrap();
        let public = decode_pubkey_pem(&public_pem).unwrap();
        let key = KeyConfig::without_password([9u8; 32]).unwrap();
        let encrypted = rsa_encrypt_key_config(&public, &key).unwrap();
        let no_pass = || -> Result<Vec<u8>> { bail!("not asked") };
        let (raw, created) =
            decrypt_with_master_key(&private_pem, b"master", &encrypted, &no_pass).unwrap();
        assert_eq!(raw, [9u8; 32]);
        assert_eq!(created, key.created);
        let err = decrypt_with_master_key(&private_pem, b"wrong", &encrypted, &no_pass)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("failed to read PEM-formatted private key - "),
            "{err}"
        );
        let info = rsa_pubkey_info(None, &public).unwrap();
        assert_eq!(info["length"], 3072);
        assert_eq!(info["exponent"], "65537");
        assert!(decode_pubkey_pem(b"garbage")
            .unwrap_err()
            .to_string()
            .starts_with("Unable to decode PEM data - "));
    }

    #[test]
    fn hint_and_kdf_validation() {
        let tree = CommandTree::Group(commands());
        let parse = |words: &[&str]| {
            let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            pbs_cli::parse_command_line(&tree, &words).unwrap().args
        };
        let args = parse(&["key", "create", "--kdf", "foo"]);
        assert!(parse_kdf(&args).is_err());
        let args = parse(&["key", "create", "--kdf", "pbkdf2", "--hint", "x\ny"]);
        assert_eq!(parse_kdf(&args).unwrap(), Kdf::Pbkdf2);
        assert!(parse_hint(&args).is_err());
        let long = "a".repeat(65);
        let args = parse(&["key", "create", "--hint", &long]);
        assert!(parse_hint(&args).is_err());
        let args = parse(&["key", "create", "--hint", "my hint"]);
        assert_eq!(parse_hint(&args).unwrap().as_deref(), Some("my hint"));
        assert!(protect_key(&[1u8; 32], Kdf::None, Some("h".into()), "")
            .unwrap_err()
            .to_string()
            .contains("password hint not allowed for Kdf::None"));
    }
}
