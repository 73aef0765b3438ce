//! Ticket signing keys (`authkey.key` / `authkey.pub`): generation, loading, signing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Error};
use openssl::hash::MessageDigest;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private, Public};
use openssl::sign::{Signer, Verifier};

use crate::files::{write_key_file, FileOwner};

/// File name of the private ticket key in the configuration directory.
pub const AUTHKEY_FILE: &str = "authkey.key";
/// File name of the public ticket key in the configuration directory.
pub const AUTHKEY_PUB_FILE: &str = "authkey.pub";

/// `<config dir>/authkey.key`
pub fn authkey_path() -> PathBuf {
    pbs_buildcfg::config_dir().join(AUTHKEY_FILE)
}

/// `<config dir>/authkey.pub`
pub fn authkey_pub_path() -> PathBuf {
    pbs_buildcfg::config_dir().join(AUTHKEY_PUB_FILE)
}

/// Ed25519 (and Ed448) sign the message itself; every other key type signs its SHA-256.
fn signs_without_digest<T>(key: &PKeyRef<T>) -> bool {
    matches!(key.id(), Id::ED25519 | Id::ED448)
}

fn verify_with<T: HasPublic>(
    key: &PKeyRef<T>,
    msg: &[u8],
    signature: &[u8],
) -> Result<bool, Error> {
    let ok = if signs_without_digest(key) {
        Verifier::new_without_digest(key)?.verify_oneshot(signature, msg)?
    } else {
        let mut verifier = Verifier::new(MessageDigest::sha256(), key)?;
        verifier.update(msg)?;
        verifier.verify(signature)?
    };
    Ok(ok)
}

/// Something that can check a ticket signature.
pub trait SignatureVerifier {
    /// Whether `signature` is a valid signature of `msg`.
    fn verify_signature(&self, msg: &[u8], signature: &[u8]) -> Result<bool, Error>;
}

/// The private ticket key (API daemon): signs and verifies.
pub struct PrivateAuthKey {
    key: PKey<Private>,
}

impl PrivateAuthKey {
    /// A fresh Ed25519 key (what new installations use).
    pub fn generate_ed25519() -> Result<Self, Error> {
        Ok(Self {
            key: PKey::generate_ed25519().context("failed to generate ed25519 ticket key")?,
        })
    }

    /// Loads any private key OpenSSL understands (PKCS#8 Ed25519, PKCS#1 RSA, ...).
    pub fn from_pem(pem: &[u8]) -> Result<Self, Error> {
        Ok(Self {
            key: PKey::private_key_from_pem(pem).context("failed to parse private ticket key")?,
        })
    }

    /// Reads `path` and loads it with [`Self::from_pem`].
    pub fn load(path: &Path) -> Result<Self, Error> {
        let pem = std::fs::read(path).with_context(|| format!("unable to read {path:?}"))?;
        Self::from_pem(&pem).with_context(|| format!("key file {path:?}"))
    }

    /// PEM of the private key: PKCS#1 for RSA keys, PKCS#8 for everything else.
    pub fn private_key_to_pem(&self) -> Result<Vec<u8>, Error> {
        let pem = match self.key.rsa() {
            Ok(rsa) => rsa.private_key_to_pem()?,
            Err(_) => self.key.private_key_to_pem_pkcs8()?,
        };
        Ok(pem)
    }

    /// PEM (SubjectPublicKeyInfo) of the public half.
    pub fn public_key_to_pem(&self) -> Result<Vec<u8>, Error> {
        Ok(self.key.public_key_to_pem()?)
    }

    /// The public half as a verification-only key.
    pub fn public_key(&self) -> Result<PublicAuthKey, Error> {
        PublicAuthKey::from_pem(&self.public_key_to_pem()?)
    }

    /// Signs `msg` (pure Ed25519, or SHA-256 + the key's default scheme, i.e. PKCS#1 v1.5 for RSA).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        let signature = if signs_without_digest(&self.key) {
            Signer::new_without_digest(&self.key)?.sign_oneshot_to_vec(msg)?
        } else {
            let mut signer = Signer::new(MessageDigest::sha256(), &self.key)?;
            signer.update(msg)?;
            signer.sign_to_vec()?
        };
        Ok(signature)
    }
}

impl SignatureVerifier for PrivateAuthKey {
    fn verify_signature(&self, msg: &[u8], signature: &[u8]) -> Result<bool, Error> {
        verify_with(&self.key, msg, signature)
    }
}

/// The public ticket key (proxy): verifies only.
pub struct PublicAuthKey {
    key: PKey<Public>,
}

impl PublicAuthKey {
    /// Loads a PEM SubjectPublicKeyInfo.
    pub fn from_pem(pem: &[u8]) -> Result<Self, Error> {
        Ok(Self {
            key: PKey::public_key_from_pem(pem).context("failed to parse public ticket key")?,
        })
    }

    /// Reads `path` and loads it with [`Self::from_pem`].
    pub fn load(path: &Path) -> Result<Self, Error> {
        let pem = std::fs::read(path).with_context(|| format!("unable to read {path:?}"))?;
        Self::from_pem(&pem).with_context(|| format!("key file {path:?}"))
    }
}

impl SignatureVerifier for PublicAuthKey {
    fn verify_signature(&self, msg: &[u8], signature: &[u8]) -> Result<bool, Error> {
        verify_with(&self.key, msg, signature)
    }
}

/// Creates a new Ed25519 key pair in `dir` unless both `authkey.key` and `authkey.pub`
/// exist. Returns whether new keys were written (which invalidates all tickets).
pub fn ensure_auth_keys_in(dir: &Path) -> Result<bool, Error> {
    let priv_path = dir.join(AUTHKEY_FILE);
    let pub_path = dir.join(AUTHKEY_PUB_FILE);
    if priv_path.exists() && pub_path.exists() {
        return Ok(false);
    }
    let key = PrivateAuthKey::generate_ed25519()?;
    write_key_file(
        &priv_path,
        &key.private_key_to_pem()?,
        0o600,
        FileOwner::RootRoot,
    )?;
    write_key_file(
        &pub_path,
        &key.public_key_to_pem()?,
        0o640,
        FileOwner::RootBackup,
    )?;
    Ok(true)
}

/// [`ensure_auth_keys_in`] for the configuration directory.
pub fn ensure_auth_keys() -> Result<bool, Error> {
    ensure_auth_keys_in(&pbs_buildcfg::config_dir())
}

/// Loads `<config dir>/authkey.key` (API daemon).
pub fn load_private_auth_key() -> Result<PrivateAuthKey, Error> {
    PrivateAuthKey::load(&authkey_path())
}

/// Loads `<config dir>/authkey.pub` (proxy).
pub fn load_public_auth_key() -> Result<PublicAuthKey, Error> {
    PublicAuthKey::load(&authkey_pub_path())
}

impl std::fmt::Debug for PrivateAuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateAuthKey({:?})", self.key.id())
    }
}

impl std::fmt::Debug for PublicAuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicAuthKey({:?})", self.key.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_ed25519_pem_files_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure_auth_keys_in(dir.path()).unwrap());
        let priv_pem = std::fs::read_to_string(dir.path().join(AUTHKEY_FILE)).unwrap();
        let pub_pem = std::fs::read_to_string(dir.path().join(AUTHKEY_PUB_FILE)).unwrap();
        assert!(
            priv_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{priv_pem}"
        );
        assert!(
            pub_pem.starts_with("-----BEGIN PUBLIC KEY-----"),
            "{pub_pem}"
        );
        let mode = |f: &str| {
            std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(AUTHKEY_FILE), 0o600);
        assert_eq!(mode(AUTHKEY_PUB_FILE), 0o640);

        // both present: untouched
        assert!(!ensure_auth_keys_in(dir.path()).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(AUTHKEY_FILE)).unwrap(),
            priv_pem
        );

        // one missing: a new pair replaces both
        std::fs::remove_file(dir.path().join(AUTHKEY_PUB_FILE)).unwrap();
        assert!(ensure_auth_keys_in(dir.path()).unwrap());
        assert_ne!(
            std::fs::read_to_string(dir.path().join(AUTHKEY_FILE)).unwrap(),
            priv_pem
        );

        let key = PrivateAuthKey::load(&dir.path().join(AUTHKEY_FILE)).unwrap();
        let public = PublicAuthKey::load(&dir.path().join(AUTHKEY_PUB_FILE)).unwrap();
        let sig = key.sign(b"message").unwrap();
        assert_eq!(sig.len(), 64);
        assert!(public.verify_signature(b"message", &sig).unwrap());
        assert!(!public.verify_signature(b"messagf", &sig).unwrap());
    }

    #[test]
    fn rsa_keys_sign_with_sha256_pkcs1() {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let pem = rsa.private_key_to_pem().unwrap();
        let key = PrivateAuthKey::from_pem(&pem).unwrap();
        assert_eq!(key.private_key_to_pem().unwrap(), pem);
        let sig = key.sign(b"PBS:root@pam:66603A80").unwrap();
        assert_eq!(sig.len(), 256);
        let public = key.public_key().unwrap();
        assert!(public
            .verify_signature(b"PBS:root@pam:66603A80", &sig)
            .unwrap());
        assert!(key
            .verify_signature(b"PBS:root@pam:66603A80", &sig)
            .unwrap());

        // cross-check with a plain SHA-256/PKCS#1 v1.5 verifier
        let pkey = PKey::from_rsa(rsa).unwrap();
        let mut verifier = Verifier::new(MessageDigest::sha256(), &pkey).unwrap();
        verifier.update(b"PBS:root@pam:66603A80").unwrap();
        assert!(verifier.verify(&sig).unwrap());
    }

    #[test]
    fn garbage_keys_are_rejected() {
        assert!(PrivateAuthKey::from_pem(b"not a key").is_err());
        assert!(
            PublicAuthKey::from_pem(b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
        assert!(PrivateAuthKey::load(Path::new("/nonexistent/authkey.key")).is_err());
    }
}
