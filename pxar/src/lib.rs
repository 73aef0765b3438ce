//! pxar archive format: v1 unified archives and v2 split archives (`.mpxar` + `.ppxar`).
//!
//! * [`format`](mod@format): item types, header and fixed layouts, goodbye tables.
//! * [`encoder::Encoder`]: writes an archive from entries added in archive order.
//! * [`decoder::Decoder`]: reads an archive sequentially.
//! * [`accessor::Accessor`]: random access through goodbye tables.
//!
//! The encoder and decoder issue many small reads and writes: hand them buffered streams.
//!
//! ```
//! use pxar::format::{mode, Stat};
//! use pxar::{Accessor, Decoder, Encoder, EntryKind, Metadata};
//!
//! let dir = Metadata::from_stat(Stat { mode: mode::IFDIR | 0o755, ..Default::default() });
//! let file = Metadata::from_stat(Stat { mode: mode::IFREG | 0o644, ..Default::default() });
//!
//! // v2: metadata stream plus payload stream.
//! let mut encoder = Encoder::new(Vec::new(), &dir, Some(Vec::new()), None)?;
//! encoder.create_directory(b"etc", &dir)?;
//! let link = encoder.add_file(&file, b"hosts", 5, &mut &b"hello"[..])?;
//! encoder.finish_directory()?;
//! encoder.add_hardlink(b"hosts-link", b"etc/hosts", link)?;
//! let (mpxar, ppxar) = encoder.finish()?;
//! let ppxar = ppxar.unwrap_or_default();
//!
//! let mut decoder = Decoder::new(&mpxar[..], Some(&ppxar[..]))?;
//! while let Some(entry) = decoder.next_entry()? {
//!     if let EntryKind::File { .. } = entry.kind {
//!         let mut data = Vec::new();
//!         std::io::Read::read_to_end(&mut decoder.contents().unwrap(), &mut data)?;
//!         assert_eq!(data, b"hello");
//!     }
//! }
//!
//! let accessor = Accessor::new(&mpxar[..], mpxar.len() as u64, Some((&ppxar[..], ppxar.len() as u64)))?;
//! let hosts = accessor.lookup("/etc/hosts".as_ref())?.expect("present");
//! assert_eq!(accessor.open_contents(&hosts)?.read_all()?, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod accessor;
#[cfg(feature = "tokio")]
pub mod aio;
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
