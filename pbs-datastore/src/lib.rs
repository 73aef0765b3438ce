//! The datastore: everything a backup server keeps on disk, byte-compatible with upstream.

pub mod canonical_json;
pub mod catalog;
pub mod chunker;
pub mod crypt_config;
pub mod file_formats;
pub mod manifest;

pub use chunker::Chunker;
pub use crypt_config::CryptConfig;
pub use manifest::BackupManifest;
