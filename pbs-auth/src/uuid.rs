//! Random (version 4) UUIDs for token secrets and certificate subjects.

/// A random UUID v4 in upper-case hyphenated form.
pub fn random_uuid_v4() -> Result<String, openssl::error::ErrorStack> {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex = hex::encode_upper(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}
