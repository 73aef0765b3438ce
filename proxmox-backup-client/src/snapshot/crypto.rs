//! Key resolution of `snapshot upload-log`: `--keyfile`/`--keyfd`, `--crypt-mode` and the
//! default key file (no master key options here).

use std::io::Read;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, format_err, Context, Result};

use pbs_api_types::CryptMode;
use pbs_cli::ParsedArgs;
use pbs_datastore::crypt_config::CryptConfig;
use pbs_datastore::key_config::KeyConfig;

/// Where the data key comes from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// A key file given with `--keyfile` or the default key file.
    File(PathBuf),
    /// An open file descriptor given with `--keyfd`.
    Fd(i32),
}

/// The resolved crypt mode and key source.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CryptoParams {
    pub mode: CryptMode,
    pub key: Option<KeySource>,
}

fn parse_crypt_mode(text: &str) -> Result<CryptMode> {
    match text {
        "none" => Ok(CryptMode::None),
        "encrypt" => Ok(CryptMode::Encrypt),
        "sign-only" => Ok(CryptMode::SignOnly),
        other => bail!(
            "parameter verification failed - 'crypt-mode': value '{other}' is not defined in the enumeration."
        ),
    }
}

/// Resolves `--keyfile`, `--keyfd` and `--crypt-mode`; `default_key` is the default key
/// file if one exists.
pub(crate) fn crypto_params(
    args: &ParsedArgs,
    default_key: Option<PathBuf>,
) -> Result<CryptoParams> {
    let keyfd = match args.integer("keyfd")? {
        Some(fd) if fd < 0 || fd > i32::MAX as i64 => bail!(
            "parameter verification failed - 'keyfd': value must have a minimum value of 0 (got {fd})"
        ),
        fd => fd.map(|fd| fd as i32),
    };
    let explicit = match (args.get("keyfile"), keyfd) {
        (Some(_), Some(_)) => bail!("--keyfile and --keyfd are mutually exclusive"),
        (Some(path), None) => Some(KeySource::File(PathBuf::from(path))),
        (None, Some(fd)) => Some(KeySource::Fd(fd)),
        (None, None) => None,
    };
    let mode = args.get("crypt-mode").map(parse_crypt_mode).transpose()?;
    Ok(match (mode, explicit) {
        (None, Some(key)) => CryptoParams {
            mode: CryptMode::Encrypt,
            key: Some(key),
        },
        (None, None) => match default_key {
            Some(path) => CryptoParams {
                mode: CryptMode::Encrypt,
                key: Some(KeySource::File(path)),
            },
            None => CryptoParams {
                mode: CryptMode::None,
                key: None,
            },
        },
        (Some(CryptMode::None), Some(_)) => {
            bail!("--keyfile/--keyfd and --crypt-mode=none are mutually exclusive")
        }
        (Some(CryptMode::None), None) => CryptoParams {
            mode: CryptMode::None,
            key: None,
        },
        (Some(mode), Some(key)) => CryptoParams {
            mode,
            key: Some(key),
        },
        (Some(mode), None) => match default_key {
            Some(path) => {
                eprintln!("Encrypting with default encryption key!");
                CryptoParams {
                    mode,
                    key: Some(KeySource::File(path)),
                }
            }
            None => bail!("--crypt-mode without --keyfile and no default key file available"),
        },
    })
}

fn read_key_text(source: &KeySource) -> Result<String> {
    match source {
        KeySource::File(path) => std::fs::read_to_string(path)
            .with_context(|| format!("unable to read key file {path:?}")),
        KeySource::Fd(fd) => {
            // SAFETY: the user handed this descriptor to us for reading the key; we take
            // ownership of it, as nothing else in the process uses it.
            let mut file = unsafe { std::fs::File::from_raw_fd(*fd) };
            let mut text = String::new();
            file.read_to_string(&mut text)
                .with_context(|| format!("unable to read key from fd {fd}"))?;
            Ok(text)
        }
    }
}

/// Loads and unlocks the key (`passphrase` is asked only for protected keys).
pub(crate) fn load_crypt_config(
    source: &KeySource,
    passphrase: &dyn Fn() -> Result<Vec<u8>>,
) -> Result<CryptConfig> {
    let text = read_key_text(source)?;
    let config = KeyConfig::from_json(&text)
        .map_err(|err| format_err!("unable to parse key config - {err}"))?;
    let (key, _created, _fingerprint) = config
        .decrypt(passphrase)
        .map_err(|err| format_err!("unable to decrypt key - {err}"))?;
    Ok(CryptConfig::new(key)?)
}

/// The default key file if it exists.
pub(crate) fn existing(path: Option<PathBuf>) -> Option<PathBuf> {
    path.filter(|p| Path::new(p).exists())
}

#[cfg(test)]
mod tests {
    use super::super::common::testing::parse;
    use super::*;
    use pbs_cli::{Command, Param, ValueKind};

    fn command() -> Command {
        Command {
            description: "test",
            params: vec![
                Param::optional("keyfile", "key"),
                Param {
                    name: "keyfd",
                    kind: ValueKind::Integer,
                    optional: true,
                    description: "fd",
                },
                Param::optional("crypt-mode", "mode"),
            ],
            positionals: vec![],
        }
    }

    fn resolve(args: &[&str], default: Option<&str>) -> Result<CryptoParams> {
        crypto_params(&parse(command(), args), default.map(PathBuf::from))
    }

    fn file(path: &str) -> Option<KeySource> {
        Some(KeySource::File(PathBuf::from(path)))
    }

    #[test]
    fn resolution_table() {
        let none = CryptoParams {
            mode: CryptMode::None,
            key: None,
        };
        assert_eq!(resolve(&[], None).unwrap(), none);
        assert_eq!(
            resolve(&[], Some("/d")).unwrap(),
            CryptoParams {
                mode: CryptMode::Encrypt,
                key: file("/d")
            }
        );
        assert_eq!(
            resolve(&["--keyfile", "/k"], Some("/d")).unwrap(),
            CryptoParams {
                mode: CryptMode::Encrypt,
                key: file("/k")
            }
        );
        assert_eq!(
            resolve(&["--keyfd", "5"], None).unwrap(),
            CryptoParams {
                mode: CryptMode::Encrypt,
                key: Some(KeySource::Fd(5))
            }
        );
        assert_eq!(
            resolve(&["--crypt-mode", "none"], Some("/d")).unwrap(),
            none
        );
        assert_eq!(
            resolve(&["--crypt-mode", "sign-only"], Some("/d")).unwrap(),
            CryptoParams {
                mode: CryptMode::SignOnly,
                key: file("/d")
            }
        );
        assert_eq!(
            resolve(&["--crypt-mode", "encrypt", "--keyfile", "/k"], None).unwrap(),
            CryptoParams {
                mode: CryptMode::Encrypt,
                key: file("/k")
            }
        );
        let err = |args: &[&str], default| resolve(args, default).unwrap_err().to_string();
        assert_eq!(
            err(&["--keyfile", "/k", "--keyfd", "3"], None),
            "--keyfile and --keyfd are mutually exclusive"
        );
        assert_eq!(
            err(&["--keyfile", "/k", "--crypt-mode", "none"], None),
            "--keyfile/--keyfd and --crypt-mode=none are mutually exclusive"
        );
        assert_eq!(
            err(&["--crypt-mode", "encrypt"], None),
            "--crypt-mode without --keyfile and no default key file available"
        );
    }

    #[test]
    fn loads_plain_and_protected_keys() {
        let dir = tempfile::tempdir().unwrap();
        let raw = [9u8; 32];
        let plain = dir.path().join("plain.json");
        std::fs::write(
            &plain,
            KeyConfig::without_password(raw).unwrap().to_json().unwrap(),
        )
        .unwrap();
        let no_pass = || -> Result<Vec<u8>> { bail!("no passphrase expected") };
        let config = load_crypt_config(&KeySource::File(plain), &no_pass).unwrap();
        assert_eq!(
            config.fingerprint(),
            CryptConfig::new(raw).unwrap().fingerprint()
        );

        let missing = load_crypt_config(&KeySource::File(dir.path().join("x")), &no_pass);
        assert!(missing
            .unwrap_err()
            .to_string()
            .starts_with("unable to read key file"));
    }
}
