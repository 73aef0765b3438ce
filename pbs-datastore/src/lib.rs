//! The datastore: everything a backup server keeps on disk, byte-compatible with upstream.

pub mod crypt_config;
pub mod file_formats;

pub use crypt_config::CryptConfig;
pub mod chunker;

pub use chunker::Chunker;
