//! SipHash-2-4 keyed with the pxar hash keys: item type constants and goodbye-table name hashes.

/// First key word (first 16 hex digits of `SHA1("PROXMOX ARCHIVE FORMAT")`).
pub const PXAR_HASH_KEY_1: u64 = 0x83ac3f1cfbb450db;
/// Second key word (next 16 hex digits of `SHA1("PROXMOX ARCHIVE FORMAT")`).
pub const PXAR_HASH_KEY_2: u64 = 0xaa4f1b6879369fbd;

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-2-4 with the 128-bit key `k0.to_le_bytes() || k1.to_le_bytes()`, 64-bit output.
pub fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f6d6570736575,
        k1 ^ 0x646f72616e646f6d,
        k0 ^ 0x6c7967656e657261,
        k1 ^ 0x7465646279746573,
    ];
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = u64::from_le_bytes(word);
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    let b = u64::from_le_bytes(last) | ((data.len() as u64) << 56);
    v[3] ^= b;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Hash used for item type constants and goodbye-table file name entries.
pub fn hash_filename(name: &[u8]) -> u64 {
    siphash24(PXAR_HASH_KEY_1, PXAR_HASH_KEY_2, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_derive_from_sha1_of_format_name() {
        let digest = openssl::sha::sha1(b"PROXMOX ARCHIVE FORMAT");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&hex[..24], "83ac3f1cfbb450dbaa4f1b68");
        assert_eq!(
            u64::from_str_radix(&hex[0..16], 16).unwrap(),
            PXAR_HASH_KEY_1
        );
        assert_eq!(
            u64::from_str_radix(&hex[16..32], 16).unwrap(),
            PXAR_HASH_KEY_2
        );
    }

    #[test]
    fn sample_hashes_from_spec() {
        let samples: &[(&[u8], u64)] = &[
            (b"__PROXMOX_FORMAT_ENTRY_V2__", 0xd5956474e588acef),
            (b"__PROXMOX_FORMAT_FILENAME__", 0x16701121063917b3),
            (b"__PROXMOX_FORMAT_GOODBYE__", 0x2fec4fa642d5731d),
            (
                b"__PROXMOX_FORMAT_PXAR_GOODBYE_TAIL_MARKER__",
                0xef5eed5b753e1555,
            ),
            (
                b"__PROXMOX_FORMAT_PXAR_PAYLOAD_TAIL_MARKER__",
                0x6c72b78b984c81b5,
            ),
            (b"", 0x76614015f8d1bb6c),
            (b"a", 0x0c26e9067c2c7bcf),
            (b"file.txt", 0x967764f630c3da14),
            (b".pxarexclude-cli", 0x046975ce672e09eb),
            (b"big.txt", 0x502ce3042b06ab84),
            (b"s", 0xccae548c9d292361),
            (b"alpha", 0xc7e855bd7e1aa5b1),
            (b"beta", 0x383f061fd51eaed8),
            (b"delta", 0x3e36a5cf02e52d50),
            (b"epsilon", 0x6b177759641ff3a2),
            (b"eta", 0x9b9051e6062ccca4),
            (b"gamma", 0x1def65733784215a),
            (b"zeta", 0xa226eba48081583c),
        ];
        for (input, expected) in samples {
            assert_eq!(
                hash_filename(input),
                *expected,
                "hash of {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn reference_siphash_vector() {
        // Reference vector of the SipHash paper: key 00..0f, message 00..0e.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash24(k0, k1, &msg), 0xa129ca6149be45e5);
    }
}
