//! Backup client library.
//!
//! * [`pxar`]: creating pxar archives from a Linux directory tree, extracting them, FUSE access.

pub mod catalog_shell;
pub mod inject;
pub mod pxar;
pub mod tools;
