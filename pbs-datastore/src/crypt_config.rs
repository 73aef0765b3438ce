//! Values derived from an encryption key: chunk digests, signatures, the key fingerprint and
//! AES-256-GCM with the 16-byte IV upstream uses.

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::symm::{Cipher, Crypter, Mode};
use pbs_api_types::Fingerprint;
use thiserror::Error;

/// `SHA-256("Proxmox Backup Encryption Key Fingerprint")`
pub const FINGERPRINT_INPUT: [u8; 32] = [
    110, 208, 239, 119, 71, 31, 255, 77, 85, 199, 168, 254, 74, 157, 182, 33, 97, 64, 127, 19, 76,
    114, 93, 223, 48, 153, 45, 37, 236, 69, 237, 38,
];

/// Length of the AES-GCM IV stored in encrypted blobs and key files.
pub const IV_LEN: usize = 16;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;

/// Failures of the crypto primitives.
#[derive(Debug, Error)]
pub enum CryptError {
    #[error("openssl error: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    #[error("decryption failed - wrong key or corrupt data")]
    Authentication,
}

/// Encryption configuration derived from a 32-byte key.
#[derive(Clone)]
pub struct CryptConfig {
    enc_key: [u8; 32],
    id_key: [u8; 32],
    id_pkey: PKey<openssl::pkey::Private>,
}

impl std::fmt::Debug for CryptConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "CryptConfig({})", self.fingerprint())
    }
}

impl CryptConfig {
    /// Derives the id key (PBKDF2-HMAC-SHA256, salt `_id_key`, 10 iterations).
    pub fn new(enc_key: [u8; 32]) -> Result<Self, CryptError> {
        let mut id_key = [0u8; 32];
        openssl::pkcs5::pbkdf2_hmac(
            &enc_key,
            b"_id_key",
            10,
            MessageDigest::sha256(),
            &mut id_key,
        )?;
        let id_pkey = PKey::hmac(&id_key)?;
        Ok(Self {
            enc_key,
            id_key,
            id_pkey,
        })
    }

    /// The raw AES key.
    pub fn enc_key(&self) -> &[u8; 32] {
        &self.enc_key
    }

    /// The secret appended to chunk data before hashing.
    pub fn id_key(&self) -> &[u8; 32] {
        &self.id_key
    }

    /// Digest of an encrypted-mode chunk: `SHA-256(data || id_key)`.
    pub fn compute_digest(&self, data: &[u8]) -> [u8; 32] {
        let mut hasher = openssl::sha::Sha256::new();
        hasher.update(data);
        hasher.update(&self.id_key);
        hasher.finish()
    }

    /// `HMAC-SHA256(id_key, data)`: manifest signatures.
    pub fn compute_auth_tag(&self, data: &[u8]) -> Result<[u8; 32], CryptError> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.id_pkey)?;
        signer.update(data)?;
        let mut tag = [0u8; 32];
        signer.sign(&mut tag)?;
        Ok(tag)
    }

    /// The key fingerprint: the chunk digest of [`FINGERPRINT_INPUT`].
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::new(self.compute_digest(&FINGERPRINT_INPUT))
    }

    /// Encrypts `plain` with AES-256-GCM (empty AAD), appending the ciphertext to `out`.
    pub fn encrypt_into(
        &self,
        iv: &[u8; IV_LEN],
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<[u8; TAG_LEN], CryptError> {
        aes_gcm_encrypt_into(&self.enc_key, iv, plain, out)
    }

    /// Decrypts and authenticates `cipher`, appending the plaintext to `out`.
    pub fn decrypt_into(
        &self,
        iv: &[u8; IV_LEN],
        tag: &[u8; TAG_LEN],
        cipher: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptError> {
        aes_gcm_decrypt_into(&self.enc_key, iv, tag, cipher, out)
    }
}

/// AES-256-GCM encryption with a 16-byte IV and empty AAD (also used for key wrapping).
pub fn aes_gcm_encrypt_into(
    key: &[u8; 32],
    iv: &[u8; IV_LEN],
    plain: &[u8],
    out: &mut Vec<u8>,
) -> Result<[u8; TAG_LEN], CryptError> {
    let cipher = Cipher::aes_256_gcm();
    let mut crypter = Crypter::new(cipher, Mode::Encrypt, key, Some(iv))?;
    crypter.aad_update(b"")?;
    let start = out.len();
    // GCM is a stream mode: the output never exceeds the input plus one block.
    out.resize(start + plain.len() + cipher.block_size(), 0);
    let mut written = crypter.update(plain, &mut out[start..])?;
    written += crypter.finalize(&mut out[start + written..])?;
    out.truncate(start + written);
    let mut tag = [0u8; TAG_LEN];
    crypter.get_tag(&mut tag)?;
    Ok(tag)
}

/// AES-256-GCM decryption with a 16-byte IV and empty AAD; fails if the tag does not match.
pub fn aes_gcm_decrypt_into(
    key: &[u8; 32],
    iv: &[u8; IV_LEN],
    tag: &[u8; TAG_LEN],
    cipher_text: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptError> {
    let cipher = Cipher::aes_256_gcm();
    let mut crypter = Crypter::new(cipher, Mode::Decrypt, key, Some(iv))?;
    crypter.aad_update(b"")?;
    let start = out.len();
    out.resize(start + cipher_text.len() + cipher.block_size(), 0);
    let mut written = crypter.update(cipher_text, &mut out[start..])?;
    crypter.set_tag(tag)?;
    match crypter.finalize(&mut out[start + written..]) {
        Ok(n) => written += n,
        Err(_) => {
            out.truncate(start);
            return Err(CryptError::Authentication);
        }
    }
    out.truncate(start + written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_key() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn fingerprint_input_is_sha256_of_its_label() {
        assert_eq!(
            openssl::sha::sha256(b"Proxmox Backup Encryption Key Fingerprint"),
            FINGERPRINT_INPUT
        );
    }

    #[test]
    fn key_derived_values() {
        let config = CryptConfig::new(test_key()).unwrap();
        assert_eq!(
            hex::encode(config.id_key()),
            "7c2c013efd07f3b25717a485263343cd4d292a4b65c200bb3b18ea227abe225c"
        );
        assert_eq!(
            config.fingerprint().bytes(),
            &[
                14, 171, 212, 70, 11, 110, 185, 202, 52, 80, 35, 222, 226, 183, 120, 199, 144, 229,
                74, 22, 131, 185, 101, 156, 10, 87, 174, 25, 144, 144, 21, 155
            ]
        );
        assert_eq!(
            config.fingerprint().full(),
            "0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b"
        );
        assert_eq!(config.fingerprint().to_string(), "0e:ab:d4:46:0b:6e:b9:ca");
        assert_eq!(
            hex::encode(config.compute_digest(&[0, 1])),
            "1658e5d0fba9723e3e9b74242d363abab688380f95cae91ee726c6d6a9010845"
        );
    }

    #[test]
    fn blob_writer_key_vectors() {
        let config = CryptConfig::new([1u8; 32]).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 255) as u8).collect();
        assert_eq!(
            hex::encode(config.id_key()),
            "421679d8d439d1cbf2a915904a91d1ba20b7e641f9c846378b899864189ff304"
        );
        assert_eq!(
            hex::encode(config.compute_digest(&data)),
            "32a2bf5dff84090e7f175c27f666f5cc8268046ab6efda0e501196bceffdc675"
        );
        assert_eq!(
            config.fingerprint().full(),
            "4c:f7:c7:a9:31:86:6a:0d:33:d8:b2:58:8a:09:9d:41:a5:70:e0:cd:cd:e2:f5:2c:5c:07:be:b3:13:8e:15:3d"
        );
    }

    #[test]
    fn gcm_with_16_byte_iv_matches_spec_vector() {
        let config = CryptConfig::new(test_key()).unwrap();
        let mut out = Vec::new();
        let tag = config.encrypt_into(&[0u8; 16], &[0, 1], &mut out).unwrap();
        assert_eq!(hex::encode(&out), "c8bf");
        assert_eq!(hex::encode(tag), "aa47ecd6f9f4470d8f3671e8e539d5f7");
        let mut plain = Vec::new();
        config
            .decrypt_into(&[0u8; 16], &tag, &out, &mut plain)
            .unwrap();
        assert_eq!(plain, [0, 1]);
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        let mut plain = Vec::new();
        assert!(config
            .decrypt_into(&[0u8; 16], &bad_tag, &out, &mut plain)
            .is_err());
        assert!(plain.is_empty());
    }
}
