//! Backup client library.

pub mod pxar;
