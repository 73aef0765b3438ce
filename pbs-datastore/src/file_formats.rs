//! Magic numbers of the binary file formats.
//!
//! Each magic is the first 8 bytes of the SHA-256 of a description string (see the tests).

/// `Proxmox Backup uncompressed blob v1.0`
pub const UNCOMPRESSED_BLOB_MAGIC_1_0: [u8; 8] = [66, 171, 56, 7, 190, 131, 112, 161];
/// `Proxmox Backup zstd compressed blob v1.0`
pub const COMPRESSED_BLOB_MAGIC_1_0: [u8; 8] = [49, 185, 88, 66, 111, 182, 163, 127];
/// `Proxmox Backup encrypted blob v1.0`
pub const ENCRYPTED_BLOB_MAGIC_1_0: [u8; 8] = [123, 103, 133, 190, 34, 45, 76, 240];
/// `Proxmox Backup zstd compressed encrypted blob v1.0`
pub const ENCR_COMPR_BLOB_MAGIC_1_0: [u8; 8] = [230, 89, 27, 191, 11, 191, 216, 11];
/// `Proxmox Backup fixed sized chunk index v1.0`
pub const FIXED_SIZED_CHUNK_INDEX_1_0: [u8; 8] = [47, 127, 65, 237, 145, 253, 15, 205];
/// `Proxmox Backup dynamic sized chunk index v1.0`
pub const DYNAMIC_SIZED_CHUNK_INDEX_1_0: [u8; 8] = [28, 145, 78, 165, 25, 186, 179, 205];
/// `Proxmox Backup Catalog file v1.0`
pub const PROXMOX_CATALOG_FILE_MAGIC_1_0: [u8; 8] = [145, 253, 96, 249, 196, 103, 88, 213];

/// Header size of an unencrypted blob: magic + CRC.
pub const BLOB_HEADER_SIZE: usize = 12;
/// Header size of an encrypted blob: magic + CRC + IV + tag.
pub const ENCRYPTED_BLOB_HEADER_SIZE: usize = 44;

#[cfg(test)]
mod tests {
    use super::*;

    fn magic_of(text: &str) -> [u8; 8] {
        let digest = openssl::sha::sha256(text.as_bytes());
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&digest[..8]);
        magic
    }

    #[test]
    fn magics_are_derived_from_their_names() {
        let cases: [(&str, [u8; 8]); 7] = [
            (
                "Proxmox Backup uncompressed blob v1.0",
                UNCOMPRESSED_BLOB_MAGIC_1_0,
            ),
            (
                "Proxmox Backup zstd compressed blob v1.0",
                COMPRESSED_BLOB_MAGIC_1_0,
            ),
            (
                "Proxmox Backup encrypted blob v1.0",
                ENCRYPTED_BLOB_MAGIC_1_0,
            ),
            (
                "Proxmox Backup zstd compressed encrypted blob v1.0",
                ENCR_COMPR_BLOB_MAGIC_1_0,
            ),
            (
                "Proxmox Backup fixed sized chunk index v1.0",
                FIXED_SIZED_CHUNK_INDEX_1_0,
            ),
            (
                "Proxmox Backup dynamic sized chunk index v1.0",
                DYNAMIC_SIZED_CHUNK_INDEX_1_0,
            ),
            (
                "Proxmox Backup Catalog file v1.0",
                PROXMOX_CATALOG_FILE_MAGIC_1_0,
            ),
        ];
        for (text, magic) in cases {
            assert_eq!(magic_of(text), magic, "{text}");
        }
        assert_eq!(hex::encode(UNCOMPRESSED_BLOB_MAGIC_1_0), "42ab3807be8370a1");
        assert_eq!(hex::encode(ENCR_COMPR_BLOB_MAGIC_1_0), "e6591bbf0bbfd80b");
        assert_eq!(
            hex::encode(DYNAMIC_SIZED_CHUNK_INDEX_1_0),
            "1c914ea519bab3cd"
        );
    }
}
