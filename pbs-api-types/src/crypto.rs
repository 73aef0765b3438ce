//! Crypt modes and encryption key fingerprints.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the data of a backup is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CryptMode {
    /// Plain data, unsigned manifest.
    #[default]
    None,
    /// Encrypted chunks and blobs, signed manifest.
    Encrypt,
    /// Plain data, signed manifest.
    SignOnly,
}

impl CryptMode {
    /// The API string of this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            CryptMode::None => "none",
            CryptMode::Encrypt => "encrypt",
            CryptMode::SignOnly => "sign-only",
        }
    }
}

impl fmt::Display for CryptMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CryptMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(CryptMode::None),
            "encrypt" => Ok(CryptMode::Encrypt),
            "sign-only" => Ok(CryptMode::SignOnly),
            other => anyhow::bail!("invalid crypt mode '{other}'"),
        }
    }
}

/// SHA-256 fingerprint of an encryption key.
///
/// Serialized in the full form (32 colon-separated hex pairs); `Display` prints the short form
/// (first 8 bytes) used in log and error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    bytes: [u8; 32],
}

impl Fingerprint {
    /// Wraps raw fingerprint bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self { bytes }
    }

    /// The raw 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The full form: all 32 bytes as `aa:bb:...` (95 characters).
    pub fn full(&self) -> String {
        join_hex(&self.bytes)
    }

    /// The short form: the first 8 bytes as `aa:bb:...`.
    pub fn short(&self) -> String {
        join_hex(&self.bytes[..8])
    }
}

fn join_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl FromStr for Fingerprint {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact: String = s.chars().filter(|c| *c != ':').collect();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&compact, &mut bytes)
            .map_err(|err| anyhow::format_err!("invalid fingerprint '{s}' - {err}"))?;
        Ok(Self { bytes })
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.full())
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b";

    #[test]
    fn fingerprint_text_forms() {
        let fp: Fingerprint = FULL.parse().unwrap();
        assert_eq!(fp.full(), FULL);
        assert_eq!(fp.to_string(), "0e:ab:d4:46:0b:6e:b9:ca");
        assert_eq!(serde_json::to_string(&fp).unwrap(), format!("\"{FULL}\""));
        let upper: Fingerprint = FULL.to_uppercase().parse().unwrap();
        assert_eq!(upper, fp);
        assert!("0e:ab".parse::<Fingerprint>().is_err());
    }

    #[test]
    fn crypt_mode_names() {
        for mode in [CryptMode::None, CryptMode::Encrypt, CryptMode::SignOnly] {
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{mode}\""));
            assert_eq!(mode.as_str().parse::<CryptMode>().unwrap(), mode);
        }
    }
}
