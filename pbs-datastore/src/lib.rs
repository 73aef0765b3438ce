//! The datastore: everything a backup server keeps on disk, byte-compatible with upstream.

pub mod canonical_json;
pub mod catalog;
pub mod chunker;
pub mod crypt_config;
pub mod data_blob;
pub mod data_blob_reader;
pub mod data_blob_writer;
pub mod file_formats;
pub mod key_config;
pub mod manifest;
pub mod paperkey;

pub use chunker::Chunker;
pub use crypt_config::CryptConfig;
pub use data_blob::{DataBlob, DataChunkBuilder};
pub use data_blob_reader::DataBlobReader;
pub use data_blob_writer::DataBlobWriter;
pub use key_config::KeyConfig;
pub use manifest::BackupManifest;
