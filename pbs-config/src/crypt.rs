//! Password hashing with the system's libcrypt (yescrypt for new hashes, any scheme verifies).

use std::ffi::{c_char, c_int, c_ulong, CStr};

use anyhow::{bail, Error};

const CRYPT_OUTPUT_SIZE: usize = 384;
const CRYPT_MAX_PASSPHRASE_SIZE: usize = 512;
const CRYPT_DATA_RESERVED_SIZE: usize = 767;
const CRYPT_DATA_INTERNAL_SIZE: usize = 30720;
const CRYPT_GENSALT_OUTPUT_SIZE: usize = 192;

/// Prefix of yescrypt hashes, the scheme used for new passwords.
pub const YESCRYPT_PREFIX: &str = "$y$";

/// Cost parameter passed to `crypt_gensalt_rn` for yescrypt.
const YESCRYPT_COST: c_ulong = 5;

/// Layout of libxcrypt's `struct crypt_data` (32768 bytes).
#[repr(C)]
struct CryptData {
    output: [c_char; CRYPT_OUTPUT_SIZE],
    setting: [c_char; CRYPT_OUTPUT_SIZE],
    input: [c_char; CRYPT_MAX_PASSPHRASE_SIZE],
    reserved: [c_char; CRYPT_DATA_RESERVED_SIZE],
    initialized: c_char,
    internal: [c_char; CRYPT_DATA_INTERNAL_SIZE],
}

#[link(name = "crypt")]
extern "C" {
    fn crypt_r(phrase: *const c_char, setting: *const c_char, data: *mut CryptData) -> *mut c_char;
    fn crypt_gensalt_rn(
        prefix: *const c_char,
        count: c_ulong,
        rbytes: *const c_char,
        nrbytes: c_int,
        output: *mut c_char,
        output_size: c_int,
    ) -> *mut c_char;
}

fn zeroed_data() -> Box<CryptData> {
    // SAFETY: CryptData consists of byte arrays only; all-zero is the documented initial state.
    unsafe { Box::new(std::mem::zeroed()) }
}

/// Copies at most `dst.len() - 1` bytes and NUL-terminates (longer input is truncated).
fn copy_truncated(dst: &mut [c_char], src: &[u8]) -> Result<(), Error> {
    if src.contains(&0) {
        bail!("value contains a NUL byte");
    }
    let len = src.len().min(dst.len() - 1);
    for (d, s) in dst.iter_mut().zip(&src[..len]) {
        *d = *s as c_char;
    }
    dst[len] = 0;
    Ok(())
}

/// Hashes `password` with `setting` (a salt string or an existing hash) via `crypt_r`.
pub fn crypt(password: &[u8], setting: &str) -> Result<String, Error> {
    let mut data = zeroed_data();
    copy_truncated(&mut data.input, password)?;
    copy_truncated(&mut data.setting, setting.as_bytes())?;
    let input = data.input.as_ptr();
    let setting_ptr = data.setting.as_ptr();
    let data_ptr: *mut CryptData = &mut *data;
    // SAFETY: input and setting are NUL-terminated fields of `data`, which libcrypt may use as
    // scratch space only in `output`/`internal`; the result points into `data`.
    let result = unsafe { crypt_r(input, setting_ptr, data_ptr) };
    if result.is_null() {
        bail!("internal error: crypt_r returned null pointer");
    }
    // SAFETY: a non-null result is a NUL-terminated string inside `data`, still alive here.
    let hash = unsafe { CStr::from_ptr(result) }.to_bytes();
    if hash.first() == Some(&b'*') {
        bail!("internal error: crypt_r failed");
    }
    String::from_utf8(hash.to_vec()).map_err(|_| anyhow::format_err!("crypt_r returned non-UTF-8"))
}

/// A yescrypt setting string from the given random bytes.
pub fn gensalt_yescrypt(random: &[u8]) -> Result<String, Error> {
    let mut output = [0 as c_char; CRYPT_GENSALT_OUTPUT_SIZE];
    let prefix = c"$y$";
    let nrbytes = c_int::try_from(random.len())?;
    // SAFETY: all buffers are valid for the given sizes.
    let result = unsafe {
        crypt_gensalt_rn(
            prefix.as_ptr(),
            YESCRYPT_COST,
            random.as_ptr() as *const c_char,
            nrbytes,
            output.as_mut_ptr(),
            CRYPT_GENSALT_OUTPUT_SIZE as c_int,
        )
    };
    if result.is_null() {
        bail!("internal error: crypt_gensalt_rn returned null pointer");
    }
    // SAFETY: on success output holds a NUL-terminated string.
    let salt = unsafe { CStr::from_ptr(output.as_ptr()) }.to_bytes();
    if salt.first() == Some(&b'*') {
        bail!("internal error: crypt_gensalt_rn failed");
    }
    String::from_utf8(salt.to_vec())
        .map_err(|_| anyhow::format_err!("crypt_gensalt_rn returned non-UTF-8"))
}

/// Hashes a new password with yescrypt and a fresh 32-byte random salt.
pub fn hash_password(password: &str) -> Result<String, Error> {
    let mut random = [0u8; 32];
    openssl::rand::rand_bytes(&mut random)?;
    let setting = gensalt_yescrypt(&random)?;
    crypt(password.as_bytes(), &setting)
}

/// Checks `password` against a stored hash of any scheme libcrypt knows (constant time).
pub fn verify_crypt_pw(password: &str, hash: &str) -> Result<(), Error> {
    let computed = crypt(password.as_bytes(), hash)?;
    if computed.len() != hash.len() || !openssl::memcmp::eq(computed.as_bytes(), hash.as_bytes()) {
        bail!("invalid credentials");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypt_data_layout() {
        assert_eq!(std::mem::size_of::<CryptData>(), 32768);
    }

    #[test]
    fn legacy_sha256_crypt_vector() {
        let hash = "$5$bx7fjhlS8yMPM3Nc$yRgB5vyoTWeRcYn31RFTg5hAGyTInUq.l0HqLKzRuRC";
        verify_crypt_pw("supersecretpassphrasenoonewillguess", hash).unwrap();
        assert_eq!(
            verify_crypt_pw("nope", hash).unwrap_err().to_string(),
            "invalid credentials"
        );
    }

    #[test]
    fn yescrypt_vectors() {
        let random: Vec<u8> = (0u8..=0x1f).collect();
        let setting = gensalt_yescrypt(&random).unwrap();
        assert_eq!(
            setting,
            "$y$j9T$.2U.1EE/4Q.07ck0AoU1D.F2GA/3JMl3MYV4PkF5Sw/"
        );
        assert_eq!(
            crypt(b"supersecretpassphrasenoonewillguess", &setting).unwrap(),
            "$y$j9T$.2U.1EE/4Q.07ck0AoU1D.F2GA/3JMl3MYV4PkF5Sw/$KmjJWAyrs7XC0ayYQx5qwj06mKDaDKtELCrScNfODP6"
        );
    }

    #[test]
    fn new_hashes_are_yescrypt_and_verify() {
        let hash = hash_password("pa55word").unwrap();
        assert!(hash.starts_with(YESCRYPT_PREFIX), "{hash}");
        verify_crypt_pw("pa55word", &hash).unwrap();
        assert!(verify_crypt_pw("pa55worD", &hash).is_err());
        assert_ne!(hash, hash_password("pa55word").unwrap());
        assert!(verify_crypt_pw("x", "garbage").is_err());
        assert!(crypt(b"a\0b", &hash).is_err());
    }

    #[test]
    fn long_passwords_are_truncated_to_511_bytes() {
        let random = [7u8; 32];
        let setting = gensalt_yescrypt(&random).unwrap();
        let long = "a".repeat(600);
        assert_eq!(
            crypt(long.as_bytes(), &setting).unwrap(),
            crypt(&long.as_bytes()[..511], &setting).unwrap()
        );
        assert_ne!(
            crypt(&long.as_bytes()[..510], &setting).unwrap(),
            crypt(&long.as_bytes()[..511], &setting).unwrap()
        );
    }
}
