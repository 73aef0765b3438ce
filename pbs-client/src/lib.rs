//! Backup client library.
//!
//! * [`pxar`]: creating pxar archives from a Linux directory tree, extracting them, FUSE access.

pub mod inject;
pub mod pxar;
pub mod pxar_backup_stream;
