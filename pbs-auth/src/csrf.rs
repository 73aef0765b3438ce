//! CSRF prevention tokens `<TIME>:<HMAC-SHA3-256 base64>` bound to a user id (§3.4).

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use anyhow::{Context, Error};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use openssl::hash::{hash, MessageDigest};
use openssl::pkey::PKey;
use openssl::sign::Signer;
use thiserror::Error;

use pbs_api_types::Userid;

use crate::files::{write_key_file, FileOwner};

/// File name of the CSRF secret in the configuration directory.
pub const CSRF_KEY_FILE: &str = "csrf.key";
/// Number of random bytes in a new secret.
pub const CSRF_SECRET_LEN: usize = 64;
/// Accepted token age in seconds.
pub const CSRF_TIME_FRAME: RangeInclusive<i64> = -300..=7200;

/// Standard alphabet, padding optional.
const DECODER: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `<config dir>/csrf.key`
pub fn csrf_key_path() -> PathBuf {
    pbs_buildcfg::config_dir().join(CSRF_KEY_FILE)
}

/// Why a CSRF token was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CsrfError {
    #[error("invalid csrf token - format error - wrong number of parts.")]
    WrongNumberOfParts,
    #[error("invalid csrf token - could not base64 decode csrf signature - {0}")]
    Base64(String),
    #[error("invalid csrf token - timestamp format error - {0}")]
    Timestamp(String),
    #[error("invalid csrf token - invalid signature.")]
    InvalidSignature,
    #[error("invalid csrf token - timestamp newer than expected.")]
    TooNew,
    #[error("invalid csrf token - timestamp too old.")]
    TooOld,
}

/// The HMAC key of the CSRF tokens.
#[derive(Clone)]
pub struct CsrfSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for CsrfSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CsrfSecret({} bytes)", self.key.len())
    }
}

impl CsrfSecret {
    /// 64 fresh random bytes.
    pub fn generate() -> Result<Self, Error> {
        let mut key = vec![0u8; CSRF_SECRET_LEN];
        openssl::rand::rand_bytes(&mut key).context("failed to generate csrf secret")?;
        Ok(Self { key })
    }

    /// Uses `key` as HMAC key.
    pub fn from_bytes(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// Interprets `csrf.key` content: base64 text, or (legacy PEM files) the raw bytes.
    pub fn from_file_content(content: &[u8]) -> Self {
        match DECODER.decode(content) {
            Ok(key) => Self { key },
            Err(_) => Self {
                key: content.to_vec(),
            },
        }
    }

    /// Content of `csrf.key`: base64 without padding and without newline.
    pub fn to_file_content(&self) -> String {
        STANDARD_NO_PAD.encode(&self.key)
    }

    /// Reads a `csrf.key` file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let content = std::fs::read(path).with_context(|| format!("unable to read {path:?}"))?;
        Ok(Self::from_file_content(&content))
    }

    fn hmac(&self, data: &str) -> Vec<u8> {
        // HMAC-SHA3-256 cannot fail for a byte key; fall back to an empty (never matching)
        // result should the library refuse anyway.
        (|| -> Result<Vec<u8>, openssl::error::ErrorStack> {
            let pkey = PKey::hmac(&self.key)?;
            let mut signer = Signer::new(MessageDigest::sha3_256(), &pkey)?;
            signer.update(data.as_bytes())?;
            signer.sign_to_vec()
        })()
        .unwrap_or_default()
    }

    fn legacy_digest(&self, data: &str) -> Vec<u8> {
        let mut input = Vec::with_capacity(data.len() + self.key.len());
        input.extend_from_slice(data.as_bytes());
        input.extend_from_slice(&self.key);
        hash(MessageDigest::sha256(), &input)
            .map(|d| d.to_vec())
            .unwrap_or_default()
    }
}

/// Creates `csrf.key` in `dir` if it is missing. Returns whether a new secret was written.
pub fn ensure_csrf_key_in(dir: &Path) -> Result<bool, Error> {
    let path = dir.join(CSRF_KEY_FILE);
    if path.exists() {
        return Ok(false);
    }
    let secret = CsrfSecret::generate()?;
    write_key_file(
        &path,
        secret.to_file_content().as_bytes(),
        0o640,
        FileOwner::RootBackup,
    )?;
    Ok(true)
}

/// [`ensure_csrf_key_in`] for the configuration directory.
pub fn ensure_csrf_key() -> Result<bool, Error> {
    ensure_csrf_key_in(&pbs_buildcfg::config_dir())
}

/// Loads `<config dir>/csrf.key`.
pub fn load_csrf_secret() -> Result<CsrfSecret, Error> {
    CsrfSecret::load(&csrf_key_path())
}

fn token_data(time: i64, userid: &Userid) -> String {
    format!("{time:08X}:{userid}:")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && !a.is_empty() && openssl::memcmp::eq(a, b)
}

/// A token for `userid` created now.
pub fn assemble_csrf_prevention_token(secret: &CsrfSecret, userid: &Userid) -> String {
    assemble_csrf_prevention_token_at(secret, userid, pbs_api_types::time::epoch_now())
}

/// A token for `userid` with an explicit creation time.
pub fn assemble_csrf_prevention_token_at(
    secret: &CsrfSecret,
    userid: &Userid,
    time: i64,
) -> String {
    let data = token_data(time, userid);
    let digest = secret.hmac(&data);
    format!("{time:08X}:{}", STANDARD_NO_PAD.encode(digest))
}

/// Checks a token for `userid` against the current time; returns its age in seconds.
pub fn verify_csrf_prevention_token(
    secret: &CsrfSecret,
    userid: &Userid,
    token: &str,
) -> Result<i64, CsrfError> {
    verify_csrf_prevention_token_at(
        secret,
        userid,
        token,
        CSRF_TIME_FRAME,
        pbs_api_types::time::epoch_now(),
    )
}

/// Like [`verify_csrf_prevention_token`] with an explicit age window and current time.
pub fn verify_csrf_prevention_token_at(
    secret: &CsrfSecret,
    userid: &Userid,
    token: &str,
    time_frame: RangeInclusive<i64>,
    now: i64,
) -> Result<i64, CsrfError> {
    let (time, signature) = match token.split_once(':') {
        Some((time, sig)) if !sig.contains(':') => (time, sig),
        _ => return Err(CsrfError::WrongNumberOfParts),
    };
    let signature = DECODER
        .decode(signature)
        .map_err(|err| CsrfError::Base64(err.to_string()))?;
    let time =
        i64::from_str_radix(time, 16).map_err(|err| CsrfError::Timestamp(err.to_string()))?;

    let data = token_data(time, userid);
    if !constant_time_eq(&secret.hmac(&data), &signature)
        && !constant_time_eq(&secret.legacy_digest(&data), &signature)
    {
        return Err(CsrfError::InvalidSignature);
    }

    let age = now.saturating_sub(time);
    if age < *time_frame.start() {
        return Err(CsrfError::TooNew);
    }
    if age > *time_frame.end() {
        return Err(CsrfError::TooOld);
    }
    Ok(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_FILE: &str =
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw";
    const TOKEN: &str = "66603A80:kdUTFau4Gchv1JRdZZipsrcwI9cYu9SA3c7/RaPTW34";
    const LEGACY_TOKEN: &str = "66603A80:GMexqgmWajIjQqMxInfe7mwmCqlJZzcVjb5Eqq4Ev6s";
    const TIME: i64 = 0x66603A80;

    fn secret() -> CsrfSecret {
        CsrfSecret::from_file_content(KEY_FILE.as_bytes())
    }

    fn root() -> Userid {
        "root@pam".parse().unwrap()
    }

    fn verify(token: &str, now: i64) -> Result<i64, CsrfError> {
        verify_csrf_prevention_token_at(&secret(), &root(), token, CSRF_TIME_FRAME, now)
    }

    #[test]
    fn key_file_vector() {
        let key: Vec<u8> = (0u8..64).collect();
        assert_eq!(secret().key, key);
        assert_eq!(CsrfSecret::from_bytes(key).to_file_content(), KEY_FILE);
    }

    #[test]
    fn token_vector() {
        assert_eq!(
            assemble_csrf_prevention_token_at(&secret(), &root(), TIME),
            TOKEN
        );
        assert_eq!(verify(TOKEN, TIME + 10), Ok(10));
        assert_eq!(verify(LEGACY_TOKEN, TIME), Ok(0));
    }

    #[test]
    fn invalid_tokens() {
        let other: Userid = "root@pbs".parse().unwrap();
        assert_eq!(
            verify_csrf_prevention_token_at(&secret(), &other, TOKEN, CSRF_TIME_FRAME, TIME),
            Err(CsrfError::InvalidSignature)
        );
        let other_key = CsrfSecret::generate().unwrap();
        assert_eq!(
            verify_csrf_prevention_token_at(&other_key, &root(), TOKEN, CSRF_TIME_FRAME, TIME),
            Err(CsrfError::InvalidSignature)
        );
        assert_eq!(
            verify(&TOKEN.replace("66603A80", "66603A81"), TIME),
            Err(CsrfError::InvalidSignature)
        );
        assert_eq!(verify("66603A80", TIME), Err(CsrfError::WrongNumberOfParts));
        assert_eq!(verify("a:b:c", TIME), Err(CsrfError::WrongNumberOfParts));
        assert!(matches!(
            verify("66603A80:!!", TIME),
            Err(CsrfError::Base64(_))
        ));
        assert!(matches!(
            verify("xyz:kdUTFau4Gchv1JRdZZipsrcwI9cYu9SA3c7/RaPTW34", TIME),
            Err(CsrfError::Timestamp(_))
        ));
        assert_eq!(verify("66603A80:", TIME), Err(CsrfError::InvalidSignature));
        assert_eq!(
            CsrfError::TooOld.to_string(),
            "invalid csrf token - timestamp too old."
        );
    }

    #[test]
    fn time_window() {
        assert_eq!(verify(TOKEN, TIME - 300), Ok(-300));
        assert_eq!(verify(TOKEN, TIME - 301), Err(CsrfError::TooNew));
        assert_eq!(verify(TOKEN, TIME + 7200), Ok(7200));
        assert_eq!(verify(TOKEN, TIME + 7201), Err(CsrfError::TooOld));
        let fresh = assemble_csrf_prevention_token(&secret(), &root());
        assert!(verify_csrf_prevention_token(&secret(), &root(), &fresh).is_ok());
        assert_eq!(
            verify_csrf_prevention_token(&secret(), &root(), TOKEN),
            Err(CsrfError::TooOld)
        );
    }

    #[test]
    fn legacy_pem_key_files_are_used_raw() {
        let pem = b"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n";
        let legacy = CsrfSecret::from_file_content(pem);
        assert_eq!(legacy.key, pem.to_vec());
        let token = assemble_csrf_prevention_token_at(&legacy, &root(), TIME);
        assert!(
            verify_csrf_prevention_token_at(&legacy, &root(), &token, CSRF_TIME_FRAME, TIME)
                .is_ok()
        );
    }

    #[test]
    fn key_file_is_created_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure_csrf_key_in(dir.path()).unwrap());
        let path = dir.path().join(CSRF_KEY_FILE);
        let content = std::fs::read_to_string(&path).unwrap();
        assert_eq!(content.len(), 86);
        assert!(!content.contains(['=', '\n']));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(CsrfSecret::load(&path).unwrap().key.len(), 64);
        assert!(!ensure_csrf_key_in(dir.path()).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
    }
}
