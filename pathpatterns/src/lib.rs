//! Path patterns as used by the backup client, the archiver and the catalog.
//!
//! * [`Pattern`]: a glob on byte strings with wildmatch semantics (`?`, `*`, `**`, classes).
//! * [`MatchEntry`]: a pattern plus include/exclude type, file-type mask and anchoring.
//! * [`MatchList`]: "last matching entry wins" evaluation over a slice of entries.
//! * [`exclude_file`]: `.pxarexclude` parsing, command-line exclude lists and the
//!   `.pxarexclude-cli` content.

mod class;
pub mod entry;
pub mod error;
pub mod exclude_file;
pub mod list;
pub mod mode;
pub mod pattern;

pub use entry::{MatchEntry, MatchFlag, MatchPattern, MatchType};
pub use error::ParseError;
pub use exclude_file::{
    cli_exclude_file_content, parse_cli_excludes, parse_exclude_file, InvalidExcludeEntry,
};
pub use list::{FileModeRequired, GetFileMode, MatchList};
pub use pattern::{Pattern, PatternFlag};
