//! Crypto parameters of `backup`/`restore`: which encryption key, master key and crypt mode.
//!
//! [`resolve`] implements the decision table of the crypt-mode options (pure, table-tested);
//! [`load_key`] reads a resolved key source and [`crypt_config_from_key`] unwraps a key file.

use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, format_err, Context, Result};

use pbs_api_types::{CryptMode, Fingerprint};
use pbs_cli::{Param, ParsedArgs, ValueKind};
use pbs_datastore::key_config::KeyConfig;
use pbs_datastore::CryptConfig;

/// File name of the default encryption key in the client's config directory.
pub const DEFAULT_ENCRYPTION_KEY_FILE_NAME: &str = "encryption-key.json";
/// File name of the default RSA master public key in the client's config directory.
pub const DEFAULT_MASTER_PUBKEY_FILE_NAME: &str = "master-public.pem";

/// Where a key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The default file found in the config directory.
    Default(PathBuf),
    /// A path given on the command line.
    Path(PathBuf),
    /// A file descriptor given on the command line.
    Fd(RawFd),
}

impl KeySource {
    /// How the source is named in log lines (`Using <this>`).
    pub fn describe(&self, what: &str) -> String {
        match self {
            KeySource::Default(path) => format!("default {what} from {path:?}"),
            KeySource::Path(path) => format!("{what} from {path:?}"),
            KeySource::Fd(_) => format!("{what} from file descriptor"),
        }
    }
}

/// The crypto options as given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CryptoArgs {
    /// `--crypt-mode`.
    pub mode: Option<CryptMode>,
    /// `--keyfile` / `--keyfd`.
    pub key: Option<KeySource>,
    /// `--master-pubkey-file` / `--master-pubkey-fd`.
    pub master: Option<KeySource>,
}

/// The default key files that exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DefaultKeys {
    /// `encryption-key.json`, if found.
    pub key: Option<PathBuf>,
    /// `master-public.pem`, if found.
    pub master: Option<PathBuf>,
}

/// The outcome of the decision table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptoParams {
    /// The effective crypt mode.
    pub mode: CryptMode,
    /// The data key (`None` exactly when `mode` is `none`).
    pub key: Option<KeySource>,
    /// The RSA master public key the data key gets wrapped with.
    pub master: Option<KeySource>,
    /// An explicit crypt mode picked the default key (logged as a warning).
    pub default_key_implied: bool,
}

impl CryptoParams {
    fn none() -> Self {
        Self {
            mode: CryptMode::None,
            key: None,
            master: None,
            default_key_implied: false,
        }
    }
}

fn as_default(path: &Option<PathBuf>) -> Option<KeySource> {
    path.clone().map(KeySource::Default)
}

/// Decides crypt mode, data key and master key from the options and the default files.
pub fn resolve(args: &CryptoArgs, defaults: &DefaultKeys) -> Result<CryptoParams> {
    match args.mode {
        None => match (&args.key, &args.master) {
            (None, None) => match as_default(&defaults.key) {
                Some(key) => Ok(CryptoParams {
                    mode: CryptMode::Encrypt,
                    key: Some(key),
                    master: as_default(&defaults.master),
                    default_key_implied: false,
                }),
                None => Ok(CryptoParams::none()),
            },
            (None, Some(master)) => match as_default(&defaults.key) {
                Some(key) => Ok(CryptoParams {
                    mode: CryptMode::Encrypt,
                    key: Some(key),
                    master: Some(master.clone()),
                    default_key_implied: false,
                }),
                None => {
                    bail!("--master-pubkey-file/--master-pubkey-fd specified, but no key available")
                }
            },
            (Some(key), master) => Ok(CryptoParams {
                mode: CryptMode::Encrypt,
                key: Some(key.clone()),
                master: master.clone().or_else(|| as_default(&defaults.master)),
                default_key_implied: false,
            }),
        },
        Some(CryptMode::None) => {
            if args.key.is_some() {
                bail!("--keyfile/--keyfd and --crypt-mode=none are mutually exclusive");
            }
            if args.master.is_some() {
                bail!(
                    "--master-pubkey-file/--master-pubkey-fd and --crypt-mode=none are mutually exclusive"
                );
            }
            Ok(CryptoParams::none())
        }
        Some(mode) => {
            let (key, default_key_implied) = match &args.key {
                Some(key) => (key.clone(), false),
                None => match as_default(&defaults.key) {
                    Some(key) => (key, true),
                    None => {
                        bail!("--crypt-mode without --keyfile and no default key file available")
                    }
                },
            };
            Ok(CryptoParams {
                mode,
                key: Some(key),
                master: args.master.clone().or_else(|| as_default(&defaults.master)),
                default_key_implied,
            })
        }
    }
}

/// The `--keyfile`, `--keyfd` and `--crypt-mode` options.
pub fn key_params() -> Vec<Param> {
    vec![
        Param::optional("keyfile", "Path to encryption key."),
        Param::integer(
            "keyfd",
            "Pass an encryption key via an already opened file descriptor.",
        ),
        Param {
            name: "crypt-mode",
            kind: ValueKind::String,
            optional: true,
            description:
                "Defines whether data is encrypted (using an AEAD cipher), only signed, or neither.",
        },
    ]
}

/// The `--master-pubkey-file` and `--master-pubkey-fd` options.
pub fn master_key_params() -> Vec<Param> {
    vec![
        Param::optional(
            "master-pubkey-file",
            "Path to master public key. The encryption key used for a backup will be encrypted using this key and appended to the backup.",
        ),
        Param::integer(
            "master-pubkey-fd",
            "Pass a master public key via an already opened file descriptor.",
        ),
    ]
}

fn source_from_args(
    args: &ParsedArgs,
    file_opt: &str,
    fd_opt: &str,
    conflict: &str,
) -> Result<Option<KeySource>> {
    let file = args.get(file_opt);
    let fd = args.integer(fd_opt)?;
    match (file, fd) {
        (Some(_), Some(_)) => bail!("{conflict}"),
        (Some(path), None) => Ok(Some(KeySource::Path(PathBuf::from(path)))),
        (None, Some(fd)) => {
            let fd = RawFd::try_from(fd)
                .ok()
                .filter(|fd| *fd >= 0)
                .ok_or_else(|| {
                    format_err!(
                        "parameter verification failed - '{fd_opt}': value must be at least 0"
                    )
                })?;
            Ok(Some(KeySource::Fd(fd)))
        }
        (None, None) => Ok(None),
    }
}

/// Reads the crypto options (`with_master` adds the master-key pair).
pub fn crypto_args(args: &ParsedArgs, with_master: bool) -> Result<CryptoArgs> {
    let mode = args
        .get("crypt-mode")
        .map(|mode| {
            mode.parse::<CryptMode>().map_err(|_| {
                format_err!("parameter verification failed - 'crypt-mode': value '{mode}' is not defined in the enumeration.")
            })
        })
        .transpose()?;
    let key = source_from_args(
        args,
        "keyfile",
        "keyfd",
        "--keyfile and --keyfd are mutually exclusive",
    )?;
    let master = if with_master {
        source_from_args(
            args,
            "master-pubkey-file",
            "master-pubkey-fd",
            "--keyfile and --keyfd are mutually exclusive",
        )?
    } else {
        None
    };
    Ok(CryptoArgs { mode, key, master })
}

/// The default key files present in the client's config search path.
pub fn default_keys() -> DefaultKeys {
    DefaultKeys {
        key: pbs_client::tools::xdg_config_file(DEFAULT_ENCRYPTION_KEY_FILE_NAME),
        master: pbs_client::tools::xdg_config_file(DEFAULT_MASTER_PUBKEY_FILE_NAME),
    }
}

/// Resolves the command's crypto options against the default key files.
pub fn crypto_parameters(args: &ParsedArgs, with_master: bool) -> Result<CryptoParams> {
    resolve(&crypto_args(args, with_master)?, &default_keys())
}

/// Reads the bytes of a key source (a file descriptor is consumed).
pub fn load_key(source: &KeySource) -> Result<Vec<u8>> {
    match source {
        KeySource::Default(path) | KeySource::Path(path) => {
            std::fs::read(path).with_context(|| format!("unable to read key file {path:?}"))
        }
        KeySource::Fd(fd) => {
            // The descriptor was handed to us for exactly this read; we own it from here on.
            let mut file = unsafe { std::fs::File::from_raw_fd(*fd) };
            let mut data = Vec::new();
            file.read_to_end(&mut data)
                .with_context(|| format!("unable to read key from file descriptor {fd}"))?;
            Ok(data)
        }
    }
}

/// A loaded data key.
pub struct LoadedKey {
    /// The key file as read.
    pub config: KeyConfig,
    /// The raw key and its derived values.
    pub crypt_config: Arc<CryptConfig>,
    /// The key's creation time (kept when it is re-wrapped for the master key).
    pub created: i64,
    /// The key's fingerprint.
    pub fingerprint: Fingerprint,
}

/// Parses a key file and unwraps the key (asking for the passphrase only if it is protected).
pub fn crypt_config_from_key(
    data: &[u8],
    passphrase: &dyn Fn() -> Result<Vec<u8>>,
) -> Result<LoadedKey> {
    let text = std::str::from_utf8(data).context("key file is not valid UTF-8")?;
    let config = KeyConfig::from_json(text).context("unable to parse key file")?;
    let (raw_key, created, fingerprint) = config.decrypt(passphrase)?;
    let crypt_config = Arc::new(CryptConfig::new(raw_key)?);
    Ok(LoadedKey {
        config,
        crypt_config,
        created,
        fingerprint,
    })
}

/// Loads and unwraps the data key of `params` (passphrase from the environment or a prompt);
/// logs the key source the way `backup` and `restore` do.
pub fn load_crypt_config(params: &CryptoParams) -> Result<Option<LoadedKey>> {
    let Some(source) = &params.key else {
        return Ok(None);
    };
    if params.default_key_implied {
        eprintln!("Encrypting with default encryption key!");
    }
    let data = load_key(source)?;
    eprintln!("Using {}", source.describe("encryption key"));
    let key = crypt_config_from_key(&data, &pbs_client::tools::get_encryption_key_password)?;
    Ok(Some(key))
}

/// The RSA ciphertext of the data key for `rsa-encrypted.key.blob`: a password-less key file
/// with the original creation time, encrypted with the master public key.
pub fn rsa_encrypted_key(master_pem: &[u8], key: &LoadedKey) -> Result<Vec<u8>> {
    let rsa = openssl::rsa::Rsa::public_key_from_pem(master_pem)
        .context("unable to parse master public key")?;
    let mut plain = KeyConfig::without_password(*key.crypt_config.enc_key())?;
    plain.created = key.created;
    Ok(pbs_datastore::key_config::rsa_encrypt_key_config(
        &rsa, &plain,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> KeySource {
        KeySource::Path(PathBuf::from(p))
    }
    fn default(p: &str) -> KeySource {
        KeySource::Default(PathBuf::from(p))
    }

    type Outcome = (CryptMode, Option<KeySource>, Option<KeySource>, bool);

    struct Row {
        mode: Option<CryptMode>,
        key: Option<KeySource>,
        master: Option<KeySource>,
        default_key: bool,
        default_master: bool,
        expected: Result<Outcome, &'static str>,
    }

    #[test]
    fn decision_table() {
        use CryptMode::{Encrypt, SignOnly};
        let dk = || Some(default("/cfg/encryption-key.json"));
        let dm = || Some(default("/cfg/master-public.pem"));
        let k = || Some(path("/k.json"));
        let m = || Some(path("/m.pem"));
        let rows = vec![
            // absent, no key, no master
            Row { mode: None, key: None, master: None, default_key: true, default_master: true,
                  expected: Ok((Encrypt, dk(), dm(), false)) },
            Row { mode: None, key: None, master: None, default_key: true, default_master: false,
                  expected: Ok((Encrypt, dk(), None, false)) },
            Row { mode: None, key: None, master: None, default_key: false, default_master: true,
                  expected: Ok((CryptMode::None, None, None, false)) },
            // absent, no key, explicit master
            Row { mode: None, key: None, master: m(), default_key: true, default_master: true,
                  expected: Ok((Encrypt, dk(), m(), false)) },
            Row { mode: None, key: None, master: m(), default_key: false, default_master: true,
                  expected: Err("--master-pubkey-file/--master-pubkey-fd specified, but no key available") },
            // absent, explicit key, no master
            Row { mode: None, key: k(), master: None, default_key: true, default_master: true,
                  expected: Ok((Encrypt, k(), dm(), false)) },
            Row { mode: None, key: k(), master: None, default_key: false, default_master: false,
                  expected: Ok((Encrypt, k(), None, false)) },
            // absent, explicit key and master
            Row { mode: None, key: k(), master: m(), default_key: true, default_master: true,
                  expected: Ok((Encrypt, k(), m(), false)) },
            // none
            Row { mode: Some(CryptMode::None), key: None, master: None, default_key: true, default_master: true,
                  expected: Ok((CryptMode::None, None, None, false)) },
            Row { mode: Some(CryptMode::None), key: k(), master: None, default_key: true, default_master: true,
                  expected: Err("--keyfile/--keyfd and --crypt-mode=none are mutually exclusive") },
            Row { mode: Some(CryptMode::None), key: None, master: m(), default_key: true, default_master: true,
                  expected: Err("--master-pubkey-file/--master-pubkey-fd and --crypt-mode=none are mutually exclusive") },
            // encrypt / sign-only without key
            Row { mode: Some(Encrypt), key: None, master: None, default_key: true, default_master: true,
                  expected: Ok((Encrypt, dk(), dm(), true)) },
            Row { mode: Some(SignOnly), key: None, master: m(), default_key: true, default_master: true,
                  expected: Ok((SignOnly, dk(), m(), true)) },
            Row { mode: Some(Encrypt), key: None, master: None, default_key: false, default_master: true,
                  expected: Err("--crypt-mode without --keyfile and no default key file available") },
            Row { mode: Some(SignOnly), key: None, master: None, default_key: false, default_master: false,
                  expected: Err("--crypt-mode without --keyfile and no default key file available") },
            // encrypt / sign-only with key
            Row { mode: Some(Encrypt), key: k(), master: None, default_key: true, default_master: true,
                  expected: Ok((Encrypt, k(), dm(), false)) },
            Row { mode: Some(SignOnly), key: k(), master: m(), default_key: false, default_master: true,
                  expected: Ok((SignOnly, k(), m(), false)) },
            Row { mode: Some(SignOnly), key: k(), master: None, default_key: false, default_master: false,
                  expected: Ok((SignOnly, k(), None, false)) },
        ];
        for (i, row) in rows.into_iter().enumerate() {
            let args = CryptoArgs {
                mode: row.mode,
                key: row.key,
                master: row.master,
            };
            let defaults = DefaultKeys {
                key: row
                    .default_key
                    .then(|| PathBuf::from("/cfg/encryption-key.json")),
                master: row
                    .default_master
                    .then(|| PathBuf::from("/cfg/master-public.pem")),
            };
            let got = resolve(&args, &defaults)
                .map(|p| (p.mode, p.key, p.master, p.default_key_implied))
                .map_err(|e| e.to_string());
            let expected = row.expected.map_err(str::to_string);
            assert_eq!(got, expected, "row {i}");
        }
    }

    #[test]
    fn key_and_fd_conflict() {
        let tree = pbs_cli::CommandTree::Leaf(pbs_cli::Command {
            description: "test",
            params: [key_params(), master_key_params()].concat(),
            positionals: vec![],
        });
        let parse = |argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            let inv = pbs_cli::parse_command_line(&tree, &argv).expect("parse");
            crypto_args(&inv.args, true)
        };
        let err = parse(&["--keyfile", "/a", "--keyfd", "3"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--keyfile and --keyfd are mutually exclusive"
        );
        let err = parse(&["--master-pubkey-file", "/a", "--master-pubkey-fd", "3"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--keyfile and --keyfd are mutually exclusive"
        );
        let ok = parse(&["--keyfd", "7", "--crypt-mode", "sign-only"]).expect("args");
        assert_eq!(ok.key, Some(KeySource::Fd(7)));
        assert_eq!(ok.mode, Some(CryptMode::SignOnly));
        assert!(parse(&["--crypt-mode", "bogus"]).is_err());
    }

    #[test]
    fn key_file_roundtrip_and_master_wrap() {
        let raw = [7u8; 32];
        let config = KeyConfig::with_key(&raw, b"secret", pbs_datastore::key_config::Kdf::Pbkdf2)
            .expect("key");
        let json = config.to_json().expect("json");
        let wrong = crypt_config_from_key(json.as_bytes(), &|| Ok(b"nope".to_vec()));
        assert!(wrong.is_err());
        let key = crypt_config_from_key(json.as_bytes(), &|| Ok(b"secret".to_vec())).expect("key");
        assert_eq!(key.crypt_config.enc_key(), &raw);
        assert_eq!(key.created, config.created);

        let rsa = openssl::rsa::Rsa::generate(3072).expect("rsa");
        let pem = rsa.public_key_to_pem().expect("pem");
        let blob = rsa_encrypted_key(&pem, &key).expect("wrap");
        assert_eq!(blob.len(), 384);
        let (unwrapped, created, fp) =
            pbs_datastore::key_config::rsa_decrypt_key_config(&rsa, &blob, &|| {
                bail!("no passphrase expected")
            })
            .expect("unwrap");
        assert_eq!(unwrapped, raw);
        assert_eq!(created, config.created);
        assert_eq!(fp, key.fingerprint);
    }
}
