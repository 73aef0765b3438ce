//! pxar archive format: v1 unified archives and v2 split archives (`.mpxar` + `.ppxar`).
//!
//! * [`format`]: item types, header and fixed layouts, goodbye tables.
//! * [`encoder::Encoder`]: writes an archive from entries added in archive order.
//! * [`decoder::Decoder`]: reads an archive sequentially.
//! * [`accessor::Accessor`]: random access through goodbye tables.

pub mod error;
pub mod format;
pub mod metadata;

pub use error::{Error, Result};
pub use metadata::{Acl, Metadata};
