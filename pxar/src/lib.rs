//! pxar archive format: v1 unified archives and v2 split archives (`.mpxar` + `.ppxar`).
//!
//! * [`format`]: item types, header and fixed layouts, goodbye tables.
//! * [`encoder::Encoder`]: writes an archive from entries added in archive order.
//! * [`decoder::Decoder`]: reads an archive sequentially.
//! * [`accessor::Accessor`]: random access through goodbye tables.

pub mod accessor;
pub mod decoder;
pub mod encoder;
pub mod entry;
pub mod error;
pub mod format;
mod items;
pub mod metadata;

pub use accessor::{Accessor, FileEntry, ReadAt};
pub use decoder::Decoder;
pub use encoder::{Encoder, LinkOffset, SeqWrite};
pub use entry::{Entry, EntryKind};
pub use error::{Error, Result};
pub use metadata::{Acl, Metadata};
pub mod fuzz;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod roundtrip_tests;
