//! The datastore: everything a backup server keeps on disk, byte-compatible with upstream.

pub mod backup_info;
pub mod crypt_config;
pub mod datastore;
pub mod file_formats;
pub mod group_files;
pub mod hierarchy;
pub mod locks;
pub mod prune;

pub use backup_info::BackupInfo;
pub use crypt_config::CryptConfig;
pub use datastore::{DataStore, HierarchyError};
pub use prune::{compute_prune_info, PruneMark};
