//! Encryption key files (`KeyConfig`): password wrapping, storage and the RSA master key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::{Padding, Rsa};
use openssl::symm::Cipher;
use pbs_api_types::Fingerprint;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::crypt_config::{
    aes_gcm_decrypt_into, aes_gcm_encrypt_into, CryptConfig, CryptError, IV_LEN, TAG_LEN,
};

/// Shortest accepted passphrase, in bytes.
pub const MIN_PASSPHRASE_LEN: usize = 5;
/// scrypt work factor of new keys.
pub const SCRYPT_N: u64 = 65536;
/// scrypt block size of new keys.
pub const SCRYPT_R: u64 = 8;
/// scrypt parallelism of new keys.
pub const SCRYPT_P: u64 = 1;
/// PBKDF2 iteration count of new keys.
pub const PBKDF2_ITER: usize = 65535;
/// Memory limit handed to scrypt (1025 MiB, enough for N = 2^20, r = 8).
const SCRYPT_MAXMEM: u64 = 1025 * 1024 * 1024;
/// RSA key size of `create-master-key`.
pub const MASTER_KEY_BITS: u32 = 4096;

/// Why a key could not be created, unwrapped, loaded or stored.
#[derive(Debug, Error)]
pub enum KeyConfigError {
    #[error("Passphrase is too short!")]
    PassphraseTooShort,
    #[error("unable to get passphrase - {0}")]
    Passphrase(anyhow::Error),
    #[error("Unable to decrypt key - short data")]
    ShortData,
    #[error("Unable to decrypt key (wrong password?) - {0}")]
    WrongPassword(CryptError),
    #[error("Unable to decrypt key (password hint: {0})")]
    WrongPasswordWithHint(String),
    #[error("got strange key length ({0} != 32)")]
    WrongKeyLength(usize),
    #[error(
        "KeyConfig contains wrong fingerprint {stored}, contained key has fingerprint {actual}"
    )]
    WrongFingerprint {
        stored: Fingerprint,
        actual: Fingerprint,
    },
    #[error("No key derivation function specified")]
    NoKdf,
    #[error("key derivation failed - {0}")]
    Kdf(openssl::error::ErrorStack),
    #[error("crypto error - {0}")]
    Crypt(#[from] CryptError),
    #[error("openssl error - {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    #[error("invalid time in key config - {0}")]
    Time(#[from] pbs_api_types::time::TimeError),
    #[error("key config {path:?}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unable to parse key config {path:?} - {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("unable to serialize key config - {0}")]
    Serialize(serde_json::Error),
    #[error("key config ({size} bytes) too large for a {bits}-bit RSA key")]
    TooLargeForRsa { size: usize, bits: u32 },
    #[error("unable to decrypt RSA encrypted key config - {0}")]
    RsaDecrypt(openssl::error::ErrorStack),
    #[error("RSA encrypted key config is not valid - {0}")]
    RsaPayload(String),
}

/// Key derivation function names as used by the API and CLI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kdf {
    /// Key stored in clear.
    None,
    /// scrypt (default).
    #[default]
    Scrypt,
    /// PBKDF2-HMAC-SHA256.
    Pbkdf2,
}

/// Parameters of the function that turns a passphrase into the wrapping key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyDerivationConfig {
    /// scrypt with the given cost parameters.
    Scrypt {
        n: u64,
        r: u64,
        p: u64,
        #[serde(with = "base64_bytes")]
        salt: Vec<u8>,
    },
    /// PBKDF2-HMAC-SHA256 with the given iteration count.
    #[serde(rename = "PBKDF2")]
    Pbkdf2 {
        iter: usize,
        #[serde(with = "base64_bytes")]
        salt: Vec<u8>,
    },
}

impl KeyDerivationConfig {
    /// Parameters for a new key of the given kind with a fresh random 32-byte salt.
    pub fn new_random(kdf: Kdf) -> Result<Self, KeyConfigError> {
        let mut salt = vec![0u8; 32];
        openssl::rand::rand_bytes(&mut salt)?;
        match kdf {
            Kdf::Scrypt => Ok(Self::Scrypt {
                n: SCRYPT_N,
                r: SCRYPT_R,
                p: SCRYPT_P,
                salt,
            }),
            Kdf::Pbkdf2 => Ok(Self::Pbkdf2 {
                iter: PBKDF2_ITER,
                salt,
            }),
            Kdf::None => Err(KeyConfigError::NoKdf),
        }
    }

    /// The API name of this function.
    pub fn kdf(&self) -> Kdf {
        match self {
            Self::Scrypt { .. } => Kdf::Scrypt,
            Self::Pbkdf2 { .. } => Kdf::Pbkdf2,
        }
    }

    /// Derives the 32-byte wrapping key from a passphrase.
    pub fn derive_key(&self, passphrase: &[u8]) -> Result<[u8; 32], KeyConfigError> {
        if passphrase.len() < MIN_PASSPHRASE_LEN {
            return Err(KeyConfigError::PassphraseTooShort);
        }
        let mut key = [0u8; 32];
        match self {
            Self::Scrypt { n, r, p, salt } => {
                openssl::pkcs5::scrypt(passphrase, salt, *n, *r, *p, SCRYPT_MAXMEM, &mut key)
                    .map_err(KeyConfigError::Kdf)?;
            }
            Self::Pbkdf2 { iter, salt } => {
                openssl::pkcs5::pbkdf2_hmac(
                    passphrase,
                    salt,
                    *iter,
                    MessageDigest::sha256(),
                    &mut key,
                )
                .map_err(KeyConfigError::Kdf)?;
            }
        }
        Ok(key)
    }
}

/// Wraps a raw key: `iv || tag || AES-256-GCM(wrapping_key, iv, raw_key)`.
fn wrap_key(
    wrapping_key: &[u8; 32],
    iv: &[u8; IV_LEN],
    raw_key: &[u8; 32],
) -> Result<Vec<u8>, KeyConfigError> {
    let mut data = Vec::with_capacity(IV_LEN + TAG_LEN + 32 + 16);
    data.extend_from_slice(iv);
    data.resize(IV_LEN + TAG_LEN, 0);
    let tag = aes_gcm_encrypt_into(wrapping_key, iv, raw_key, &mut data)?;
    data[IV_LEN..IV_LEN + TAG_LEN].copy_from_slice(&tag);
    Ok(data)
}

/// Serializes epochs as local RFC 3339 strings with offset, accepting `Z` on input too.
mod rfc3339_local {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(epoch: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        let text =
            pbs_api_types::time::epoch_to_rfc3339(*epoch).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = String::deserialize(deserializer)?;
        pbs_api_types::time::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// Standard base64 with padding.
mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// An encryption key file (`encryption-key.json`), serialized in struct order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyConfig {
    /// How the key is wrapped; `None` means `data` is the raw key.
    pub kdf: Option<KeyDerivationConfig>,
    /// Creation time (epoch).
    #[serde(with = "rfc3339_local")]
    pub created: i64,
    /// Last modification time (epoch).
    #[serde(with = "rfc3339_local")]
    pub modified: i64,
    /// The raw key, or `iv || tag || wrapped key`.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
    /// Fingerprint of the contained key (absent in old key files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// Password hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl KeyConfig {
    /// A key file holding the key in clear (kdf `null`).
    pub fn without_password(raw_key: [u8; 32]) -> Result<Self, KeyConfigError> {
        let fingerprint = CryptConfig::new(raw_key)?.fingerprint();
        let now = pbs_api_types::time::epoch_now();
        Ok(Self {
            kdf: None,
            created: now,
            modified: now,
            data: raw_key.to_vec(),
            fingerprint: Some(fingerprint),
            hint: None,
        })
    }

    /// A key file protecting `raw_key` with a passphrase (random salt and IV).
    pub fn with_key(
        raw_key: &[u8; 32],
        passphrase: &[u8],
        kdf: Kdf,
    ) -> Result<Self, KeyConfigError> {
        let kdf_config = KeyDerivationConfig::new_random(kdf)?;
        let mut iv = [0u8; IV_LEN];
        openssl::rand::rand_bytes(&mut iv)?;
        Self::with_key_params(
            raw_key,
            passphrase,
            kdf_config,
            &iv,
            pbs_api_types::time::epoch_now(),
        )
    }

    /// Deterministic core of [`KeyConfig::with_key`]: explicit KDF parameters, IV and time.
    pub fn with_key_params(
        raw_key: &[u8; 32],
        passphrase: &[u8],
        kdf_config: KeyDerivationConfig,
        iv: &[u8; IV_LEN],
        created: i64,
    ) -> Result<Self, KeyConfigError> {
        let wrapping_key = kdf_config.derive_key(passphrase)?;
        let data = wrap_key(&wrapping_key, iv, raw_key)?;
        let fingerprint = CryptConfig::new(*raw_key)?.fingerprint();
        Ok(Self {
            kdf: Some(kdf_config),
            created,
            modified: created,
            data,
            fingerprint: Some(fingerprint),
            hint: None,
        })
    }

    /// Unwraps the key: returns the raw key, its creation time and its fingerprint.
    ///
    /// `passphrase` is only called for protected keys.
    pub fn decrypt(
        &self,
        passphrase: &dyn Fn() -> anyhow::Result<Vec<u8>>,
    ) -> Result<([u8; 32], i64, Fingerprint), KeyConfigError> {
        let raw_key = match &self.kdf {
            None => self.data.clone(),
            Some(kdf) => {
                let passphrase = passphrase().map_err(KeyConfigError::Passphrase)?;
                let wrapping_key = kdf.derive_key(&passphrase)?;
                self.unwrap_data(&wrapping_key)?
            }
        };
        let raw_key: [u8; 32] = raw_key
            .as_slice()
            .try_into()
            .map_err(|_| KeyConfigError::WrongKeyLength(raw_key.len()))?;
        let actual = CryptConfig::new(raw_key)?.fingerprint();
        if let Some(stored) = self.fingerprint {
            if stored != actual {
                return Err(KeyConfigError::WrongFingerprint { stored, actual });
            }
        }
        Ok((raw_key, self.created, actual))
    }

    fn unwrap_data(&self, wrapping_key: &[u8; 32]) -> Result<Vec<u8>, KeyConfigError> {
        if self.data.len() < IV_LEN + TAG_LEN {
            return Err(KeyConfigError::ShortData);
        }
        let mut iv = [0u8; IV_LEN];
        let mut tag = [0u8; TAG_LEN];
        iv.copy_from_slice(&self.data[..IV_LEN]);
        tag.copy_from_slice(&self.data[IV_LEN..IV_LEN + TAG_LEN]);
        let mut raw_key = Vec::with_capacity(48);
        match aes_gcm_decrypt_into(
            wrapping_key,
            &iv,
            &tag,
            &self.data[IV_LEN + TAG_LEN..],
            &mut raw_key,
        ) {
            Ok(()) => Ok(raw_key),
            Err(err) => Err(match &self.hint {
                Some(hint) => KeyConfigError::WrongPasswordWithHint(hint.clone()),
                None => KeyConfigError::WrongPassword(err),
            }),
        }
    }

    /// Compact JSON in struct order, exactly as written to key files.
    pub fn to_json(&self) -> Result<String, KeyConfigError> {
        serde_json::to_string(self).map_err(KeyConfigError::Serialize)
    }

    /// Parses a key file's JSON.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Loads a key file.
    pub fn load<P: AsRef<Path>>(path: P) -> Result<Self, KeyConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| KeyConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text).map_err(|source| KeyConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Stores the key file with mode 0600; without `replace` an existing file is an error.
    pub fn store<P: AsRef<Path>>(&self, path: P, replace: bool) -> Result<(), KeyConfigError> {
        let path = path.as_ref();
        let data = self.to_json()?;
        let io_err = |source| KeyConfigError::Io {
            path: path.to_owned(),
            source,
        };
        if replace {
            replace_file_private(path, data.as_bytes()).map_err(io_err)
        } else {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io_err)?;
            file.write_all(data.as_bytes()).map_err(io_err)?;
            file.sync_all().map_err(io_err)
        }
    }
}

/// Atomically replaces `path` by a new mode-0600 file holding `data` (temp file, fsync, rename).
fn replace_file_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let options = pbs_tools::fs::ReplaceOptions {
        mode: 0o600,
        owner: None,
        fsync: true,
    };
    pbs_tools::fs::replace_file(path, data, options)
}

/// Key file summary shown by the API and CLI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Where the key file lives, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How the key is protected.
    pub kdf: Kdf,
    /// Creation time (epoch).
    pub created: i64,
    /// Last modification time (epoch).
    pub modified: i64,
    /// Full-form fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Password hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl From<&KeyConfig> for KeyInfo {
    fn from(key: &KeyConfig) -> Self {
        Self {
            path: None,
            kdf: key.kdf.as_ref().map_or(Kdf::None, KeyDerivationConfig::kdf),
            created: key.created,
            modified: key.modified,
            fingerprint: key.fingerprint.as_ref().map(Fingerprint::full),
            hint: key.hint.clone(),
        }
    }
}

/// Encrypts a key file's compact JSON with an RSA public key (PKCS#1 v1.5).
///
/// The ciphertext length equals the modulus size.
pub fn rsa_encrypt_key_config(
    pubkey: &Rsa<Public>,
    key: &KeyConfig,
) -> Result<Vec<u8>, KeyConfigError> {
    let json = key.to_json()?;
    let size = pubkey.size() as usize;
    // PKCS#1 v1.5 needs 11 bytes of padding.
    if json.len() + 11 > size {
        return Err(KeyConfigError::TooLargeForRsa {
            size: json.len(),
            bits: pubkey.size() * 8,
        });
    }
    let mut out = vec![0u8; size];
    let len = pubkey.public_encrypt(json.as_bytes(), &mut out, Padding::PKCS1)?;
    if len != size {
        return Err(KeyConfigError::RsaPayload(format!(
            "ciphertext length {len} differs from modulus size {size}"
        )));
    }
    Ok(out)
}

/// Decrypts an RSA encrypted key file and unwraps the key inside.
pub fn rsa_decrypt_key_config(
    privkey: &Rsa<Private>,
    data: &[u8],
    passphrase: &dyn Fn() -> anyhow::Result<Vec<u8>>,
) -> Result<([u8; 32], i64, Fingerprint), KeyConfigError> {
    let mut buffer = vec![0u8; privkey.size() as usize];
    let len = privkey
        .private_decrypt(data, &mut buffer, Padding::PKCS1)
        .map_err(KeyConfigError::RsaDecrypt)?;
    let text = std::str::from_utf8(&buffer[..len])
        .map_err(|err| KeyConfigError::RsaPayload(err.to_string()))?;
    let key =
        KeyConfig::from_json(text).map_err(|err| KeyConfigError::RsaPayload(err.to_string()))?;
    key.decrypt(passphrase)
}

/// A new RSA master key pair of `MASTER_KEY_BITS` bits.
///
/// Returns the public key as PEM (`BEGIN PUBLIC KEY`) and the private key as PKCS#8 PEM
/// encrypted with AES-256-CBC under `passphrase` (`BEGIN ENCRYPTED PRIVATE KEY`).
pub fn create_master_key(passphrase: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KeyConfigError> {
    create_master_key_with_bits(passphrase, MASTER_KEY_BITS)
}

/// Like [`create_master_key`] with a chosen key size.
pub fn create_master_key_with_bits(
    passphrase: &[u8],
    bits: u32,
) -> Result<(Vec<u8>, Vec<u8>), KeyConfigError> {
    if passphrase.len() < MIN_PASSPHRASE_LEN {
        return Err(KeyConfigError::PassphraseTooShort);
    }
    let rsa = Rsa::generate(bits)?;
    let public_pem = rsa.public_key_to_pem()?;
    let pkey = PKey::from_rsa(rsa)?;
    let private_pem =
        pkey.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), passphrase)?;
    Ok((public_pem, private_pem))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL_FP: &str = "0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b";
    const SALT_B64: &str = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=";

    fn test_key() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    fn vector_salt() -> Vec<u8> {
        (0x64u8..=0x83).collect()
    }

    fn vector_iv() -> [u8; 16] {
        std::array::from_fn(|i| 0xc8 + i as u8)
    }

    fn b64(data: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn pass(p: &'static [u8]) -> impl Fn() -> anyhow::Result<Vec<u8>> {
        move || Ok(p.to_vec())
    }

    fn no_pass() -> anyhow::Result<Vec<u8>> {
        anyhow::bail!("no passphrase expected")
    }

    #[test]
    fn wrapping_vectors() {
        assert_eq!(b64(&vector_salt()), SALT_B64);
        let cases = [
            (
                KeyDerivationConfig::Pbkdf2 {
                    iter: 65535,
                    salt: vector_salt(),
                },
                "5d34a26e1df74ef48d8608a9f45f26bf5d88b152122d39b96274acc50fae2d8a",
                "yMnKy8zNzs/Q0dLT1NXW1zyNL/aF5n0Nc3yLH2pPqxLLKU77wHqvcGK5dkFvr4sKv3fwblr8AY+U6nOA+WDedA==",
            ),
            (
                KeyDerivationConfig::Scrypt {
                    n: 65536,
                    r: 8,
                    p: 1,
                    salt: vector_salt(),
                },
                "86ccc009273e6a2e8187471a1912578b461989c81145df8485b3115554f7a61f",
                "yMnKy8zNzs/Q0dLT1NXW16CMo+2vp1o1InjEWpnmGqE5NvTRSW3azdSUqG+hTAX68PxJp0LpgK536xQlrT8+WA==",
            ),
        ];
        for (kdf, derived, data) in cases {
            let key = kdf.derive_key(b"password1").unwrap();
            assert_eq!(hex::encode(key), derived);
            let config =
                KeyConfig::with_key_params(&test_key(), b"password1", kdf, &vector_iv(), 0)
                    .unwrap();
            assert_eq!(b64(&config.data), data);
            assert_eq!(config.data.len(), 64);
            let (raw, created, fp) = config.decrypt(&pass(b"password1")).unwrap();
            assert_eq!(raw, test_key());
            assert_eq!(created, 0);
            assert_eq!(fp.full(), FULL_FP);
        }
    }

    #[test]
    fn manifest_signature_key_derivation() {
        // scrypt with an empty salt: the key of the upstream manifest signature test.
        let kdf = KeyDerivationConfig::Scrypt {
            n: 65536,
            r: 8,
            p: 1,
            salt: Vec::new(),
        };
        // "test" is shorter than the passphrase minimum, so derive it directly.
        assert!(matches!(
            kdf.derive_key(b"test"),
            Err(KeyConfigError::PassphraseTooShort)
        ));
        let mut derived = [0u8; 32];
        openssl::pkcs5::scrypt(b"test", &[], 65536, 8, 1, SCRYPT_MAXMEM, &mut derived).unwrap();
        assert_eq!(
            hex::encode(derived),
            "28cdb1a3bef39396c3860e00d448fe7a0efd8244486ab6feb30457681d31597e"
        );
        assert_eq!(
            CryptConfig::new(derived).unwrap().fingerprint().full(),
            "12:b9:b7:74:bb:3d:89:95:2b:97:cb:c2:82:f0:0c:14:2b:83:ba:7f:96:62:6a:a1:5a:44:9a:63:e8:91:fe:25"
        );
    }

    #[test]
    fn key_file_json_byte_for_byte() {
        let kdf = KeyDerivationConfig::Pbkdf2 {
            iter: 65535,
            salt: vector_salt(),
        };
        let epoch = 1_704_067_200; // 2024-01-01T00:00:00Z
        let config =
            KeyConfig::with_key_params(&test_key(), b"password1", kdf, &vector_iv(), epoch)
                .unwrap();
        let time = pbs_api_types::time::epoch_to_rfc3339(epoch).unwrap();
        let expected = format!(
            "{{\"kdf\":{{\"PBKDF2\":{{\"iter\":65535,\"salt\":\"{SALT_B64}\"}}}},\"created\":\"{time}\",\"modified\":\"{time}\",\"data\":\"yMnKy8zNzs/Q0dLT1NXW1zyNL/aF5n0Nc3yLH2pPqxLLKU77wHqvcGK5dkFvr4sKv3fwblr8AY+U6nOA+WDedA==\",\"fingerprint\":\"{FULL_FP}\"}}"
        );
        assert_eq!(config.to_json().unwrap(), expected);
        if time == "2024-01-01T00:00:00+00:00" {
            assert_eq!(
                expected,
                "{\"kdf\":{\"PBKDF2\":{\"iter\":65535,\"salt\":\"ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=\"}},\"created\":\"2024-01-01T00:00:00+00:00\",\"modified\":\"2024-01-01T00:00:00+00:00\",\"data\":\"yMnKy8zNzs/Q0dLT1NXW1zyNL/aF5n0Nc3yLH2pPqxLLKU77wHqvcGK5dkFvr4sKv3fwblr8AY+U6nOA+WDedA==\",\"fingerprint\":\"0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b\"}"
            );
        }
        // The spec's literal file parses back to the same key config, whatever the time zone.
        let literal = "{\"kdf\":{\"PBKDF2\":{\"iter\":65535,\"salt\":\"ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=\"}},\"created\":\"2024-01-01T00:00:00+00:00\",\"modified\":\"2024-01-01T00:00:00+00:00\",\"data\":\"yMnKy8zNzs/Q0dLT1NXW1zyNL/aF5n0Nc3yLH2pPqxLLKU77wHqvcGK5dkFvr4sKv3fwblr8AY+U6nOA+WDedA==\",\"fingerprint\":\"0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b\"}";
        assert_eq!(KeyConfig::from_json(literal).unwrap(), config);

        let scrypt = KeyDerivationConfig::Scrypt {
            n: 65536,
            r: 8,
            p: 1,
            salt: vector_salt(),
        };
        assert_eq!(
            serde_json::to_string(&scrypt).unwrap(),
            format!("{{\"Scrypt\":{{\"n\":65536,\"r\":8,\"p\":1,\"salt\":\"{SALT_B64}\"}}}}")
        );
    }

    #[test]
    fn unprotected_key_file() {
        let config = KeyConfig::without_password(test_key()).unwrap();
        assert_eq!(
            b64(&config.data),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        );
        let json = config.to_json().unwrap();
        assert!(json.starts_with("{\"kdf\":null,\"created\":\""));
        assert!(json.contains("\"data\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\""));
        assert!(!json.contains("hint"));
        let (raw, _, fp) = config.decrypt(&no_pass).unwrap();
        assert_eq!(raw, test_key());
        assert_eq!(fp.full(), FULL_FP);
        let info = KeyInfo::from(&config);
        assert_eq!(info.kdf, Kdf::None);
        assert_eq!(info.fingerprint.as_deref(), Some(FULL_FP));
        let info_json = serde_json::to_value(&info).unwrap();
        assert_eq!(info_json["kdf"], "none");
        assert!(info_json.get("path").is_none());
    }

    #[test]
    fn fingerprint_checks() {
        let mut config = KeyConfig::without_password(test_key()).unwrap();
        config.fingerprint = Some(Fingerprint::new([0u8; 32]));
        let err = config.decrypt(&no_pass).unwrap_err();
        assert!(matches!(err, KeyConfigError::WrongFingerprint { .. }));
        assert!(err
            .to_string()
            .starts_with("KeyConfig contains wrong fingerprint"));

        config.fingerprint = None;
        let json = config.to_json().unwrap();
        assert!(!json.contains("fingerprint"));
        let parsed = KeyConfig::from_json(&json).unwrap();
        let (raw, _, fp) = parsed.decrypt(&no_pass).unwrap();
        assert_eq!(raw, test_key());
        assert_eq!(
            fp.bytes(),
            &[
                14, 171, 212, 70, 11, 110, 185, 202, 52, 80, 35, 222, 226, 183, 120, 199, 144, 229,
                74, 22, 131, 185, 101, 156, 10, 87, 174, 25, 144, 144, 21, 155
            ]
        );
    }

    #[test]
    fn decrypt_errors() {
        let kdf = KeyDerivationConfig::Pbkdf2 {
            iter: 1000,
            salt: vector_salt(),
        };
        let mut config =
            KeyConfig::with_key_params(&test_key(), b"password1", kdf, &vector_iv(), 0).unwrap();
        let err = config.decrypt(&pass(b"pw")).unwrap_err();
        assert_eq!(err.to_string(), "Passphrase is too short!");
        let err = config.decrypt(&pass(b"password2")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("Unable to decrypt key (wrong password?) - "));
        config.hint = Some("the first one".into());
        let err = config.decrypt(&pass(b"password2")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unable to decrypt key (password hint: the first one)"
        );
        let err = config
            .decrypt(&|| anyhow::bail!("no terminal"))
            .unwrap_err();
        assert!(matches!(err, KeyConfigError::Passphrase(_)));
        config.data.truncate(31);
        let err = config.decrypt(&pass(b"password1")).unwrap_err();
        assert_eq!(err.to_string(), "Unable to decrypt key - short data");

        let mut clear = KeyConfig::without_password(test_key()).unwrap();
        clear.data.pop();
        assert!(matches!(
            clear.decrypt(&no_pass),
            Err(KeyConfigError::WrongKeyLength(31))
        ));
        assert!(matches!(
            KeyConfig::with_key(&test_key(), b"password1", Kdf::None),
            Err(KeyConfigError::NoKdf)
        ));
        assert!(matches!(
            KeyConfig::with_key(&test_key(), b"pass", Kdf::Pbkdf2),
            Err(KeyConfigError::PassphraseTooShort)
        ));
    }

    #[test]
    fn random_keys_round_trip() {
        for kdf in [Kdf::Pbkdf2, Kdf::Scrypt] {
            let config = KeyConfig::with_key(&test_key(), b"secret passphrase", kdf).unwrap();
            assert_eq!(config.kdf.as_ref().map(|k| k.kdf()), Some(kdf));
            assert_eq!(config.created, config.modified);
            let parsed = KeyConfig::from_json(&config.to_json().unwrap()).unwrap();
            assert_eq!(parsed, config);
            let (raw, _, fp) = parsed.decrypt(&pass(b"secret passphrase")).unwrap();
            assert_eq!(raw, test_key());
            assert_eq!(fp.full(), FULL_FP);
            assert_eq!(KeyInfo::from(&parsed).kdf, kdf);
        }
        assert_eq!(
            serde_json::to_string(&Kdf::default()).unwrap(),
            "\"scrypt\""
        );
        assert_eq!(serde_json::to_string(&Kdf::Pbkdf2).unwrap(), "\"pbkdf2\"");
    }

    #[test]
    fn store_and_load() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("encryption-key.json");
        let config = KeyConfig::without_password(test_key()).unwrap();
        config.store(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            config.to_json().unwrap()
        );
        assert!(matches!(
            config.store(&path, false),
            Err(KeyConfigError::Io { .. })
        ));
        let mut changed = config.clone();
        changed.hint = Some("hint".into());
        changed.store(&path, true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(KeyConfig::load(&path).unwrap(), changed);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&path, "not json").unwrap();
        let err = KeyConfig::load(&path).unwrap_err();
        assert!(err.to_string().contains("encryption-key.json"));
    }

    #[test]
    fn rsa_master_key_round_trip() {
        let (public_pem, private_pem) =
            create_master_key_with_bits(b"master secret", 3072).unwrap();
        assert!(public_pem.starts_with(b"-----BEGIN PUBLIC KEY-----\n"));
        assert!(private_pem.starts_with(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        let public = Rsa::public_key_from_pem(&public_pem).unwrap();
        let private = PKey::private_key_from_pem_passphrase(&private_pem, b"master secret")
            .unwrap()
            .rsa()
            .unwrap();
        assert!(PKey::private_key_from_pem_passphrase(&private_pem, b"wrong secret").is_err());

        let config = KeyConfig::without_password(test_key()).unwrap();
        let encrypted = rsa_encrypt_key_config(&public, &config).unwrap();
        assert_eq!(encrypted.len(), 384);
        let (raw, created, fp) = rsa_decrypt_key_config(&private, &encrypted, &no_pass).unwrap();
        assert_eq!(raw, test_key());
        assert_eq!(created, config.created);
        assert_eq!(fp.full(), FULL_FP);

        let mut corrupt = encrypted.clone();
        corrupt[10] ^= 1;
        assert!(rsa_decrypt_key_config(&private, &corrupt, &no_pass).is_err());
        assert!(rsa_decrypt_key_config(&private, &encrypted[1..], &no_pass).is_err());

        // A key config does not fit a 2048-bit modulus; this must be a clear error.
        let small = Rsa::generate(2048).unwrap();
        let small_public = Rsa::public_key_from_pem(&small.public_key_to_pem().unwrap()).unwrap();
        let err = rsa_encrypt_key_config(&small_public, &config).unwrap_err();
        assert!(matches!(
            err,
            KeyConfigError::TooLargeForRsa { bits: 2048, .. }
        ));
    }
}
