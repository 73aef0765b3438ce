//! The datastore: everything a backup server keeps on disk, byte-compatible with upstream.

pub mod chunk_store;
pub mod crypt_config;
pub mod dynamic_index;
pub mod file_formats;
pub mod fixed_index;
pub mod garbage_collection;
pub mod index;
pub mod process_locker;

pub use chunk_store::{ChunkStore, DatastoreFSyncLevel};
pub use crypt_config::CryptConfig;
pub use dynamic_index::{DynamicIndexReader, DynamicIndexWriter};
pub use fixed_index::{FixedIndexReader, FixedIndexWriter};
pub use garbage_collection::{garbage_collection, load_gc_status, GarbageCollectionStatus};
pub use index::{open_index, ChunkReadInfo, IndexFile};
