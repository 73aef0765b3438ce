//! Backup client library.
//!
//! * [`pxar`]: creating pxar archives from a Linux directory tree, extracting them, FUSE access.

pub mod backup_reader;
pub mod backup_writer;
pub mod inject;
pub mod pxar;
pub mod remote_chunk_reader;
pub mod restore;
