//! pxar archives on a real file system.
//!
//! * [`create`]: the walk and the encoder driving ([`create_archive`], [`create_archive_split`]).
//! * [`extract`]: restoring an archive ([`extract_archive`]); [`apply`] restores metadata.
//! * [`fuse`]: read-only FUSE access to an archive.
//! * [`reuse`]: change-detection mode `metadata` (payload chunk reuse).
//! * [`flags`]: feature flags and the per-file-system flag masks.
//! * [`metadata`]: collecting stat, xattrs, ACLs, file capabilities, chattr flags, project ids.
//! * [`tools`]: thin `openat`-style system call wrappers.

pub mod apply;
pub mod create;
pub mod extract;
pub mod flags;
pub mod fuse;
pub mod metadata;
pub mod reuse;
pub mod tools;

pub use create::{
    create_archive, create_archive_split, create_archive_split_with_reference, include_dev_set,
    ArchiveError, ArchiveStats, PxarCreateOptions, SourceDir, ENCODER_MAX_ENTRIES,
};
pub use extract::{extract_archive, ErrorHandler, OverwriteFlags, PxarExtractOptions};
pub use flags::Flags;
pub use reuse::{
    previous_reference_files, raise_open_files_limit, split_archive_names, PreviousArchiveRef,
    ReferenceUnavailable,
};
