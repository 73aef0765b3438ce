//! pxar archives on the client side: extraction, metadata restore and FUSE access.

pub mod apply;
pub mod extract;
pub mod fuse;

pub use extract::{extract_archive, ErrorHandler, OverwriteFlags, PxarExtractOptions};
