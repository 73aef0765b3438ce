//! The datastore: everything a backup server keeps on disk, byte-compatible with upstream.

pub mod crypt_config;
pub mod file_formats;

pub use crypt_config::CryptConfig;
pub mod data_blob;
pub mod key_config;
pub mod paperkey;

pub use data_blob::{DataBlob, DataChunkBuilder};
pub use key_config::KeyConfig;
