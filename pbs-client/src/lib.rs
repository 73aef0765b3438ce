//! Backup client library.
//!
//! * [`pxar`]: creating pxar archives from a Linux directory tree.

pub mod pxar;
