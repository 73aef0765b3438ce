//! The datastore: everything a backup server keeps on disk, byte-compatible with upstream.

pub mod backup_info;
pub mod canonical_json;
pub mod catalog;
pub mod chunker;
pub mod crypt_config;
pub mod data_blob;
pub mod data_blob_reader;
pub mod data_blob_writer;
pub mod datastore;
pub mod file_formats;
pub mod group_files;
pub mod hierarchy;
pub mod key_config;
pub mod locks;
pub mod manifest;
pub mod paperkey;
pub mod prune;

pub use backup_info::BackupInfo;
pub use chunker::Chunker;
pub use crypt_config::CryptConfig;
pub use data_blob::{DataBlob, DataChunkBuilder};
pub use data_blob_reader::DataBlobReader;
pub use data_blob_writer::DataBlobWriter;
pub use datastore::{DataStore, HierarchyError};
pub use key_config::KeyConfig;
pub use manifest::BackupManifest;
pub use prune::{compute_prune_info, PruneMark};
