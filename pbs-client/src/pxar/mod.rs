//! Creating pxar archives from a real directory tree.
//!
//! * [`create`]: the walk and the encoder driving ([`create_archive`], [`create_archive_split`]).
//! * [`flags`]: feature flags and the per-file-system flag masks.
//! * [`metadata`]: collecting stat, xattrs, ACLs, file capabilities, chattr flags, project ids.
//! * [`tools`]: thin `openat`-style system call wrappers.

pub mod create;
pub mod flags;
pub mod metadata;
pub mod tools;

pub use create::{
    create_archive, create_archive_split, include_dev_set, ArchiveError, ArchiveStats,
    PxarCreateOptions, SourceDir, ENCODER_MAX_ENTRIES,
};
pub use flags::Flags;
