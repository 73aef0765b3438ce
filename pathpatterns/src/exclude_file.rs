//! Pattern sources of the archiver: command-line excludes, `.pxarexclude` files and the
//! `.pxarexclude-cli` record.
//!
//! Order of a match list while archiving: the command-line entries (then `lost+found` if
//! requested), then the entries of each `.pxarexclude` on the current directory path, outer
//! directories first. A directory's entries are appended before its children are listed and
//! removed (`Vec::truncate`) when the directory is finished.

use std::fmt;

use crate::entry::{MatchEntry, MatchFlag, MatchType};
use crate::error::ParseError;
use crate::pattern::{Pattern, PatternFlag};

/// A command-line exclude value that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidExcludeEntry {
    /// The value as given.
    pub text: Vec<u8>,
    /// The parse error.
    pub error: ParseError,
}

impl fmt::Display for InvalidExcludeEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid exclude pattern entry: {}", self.error)
    }
}

impl std::error::Error for InvalidExcludeEntry {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Parses `--exclude` values in order (base type Exclude), then appends the non-anchored,
/// any-type Exclude entry `lost+found` if `skip_lost_and_found` is set.
pub fn parse_cli_excludes<I>(
    values: I,
    skip_lost_and_found: bool,
) -> Result<Vec<MatchEntry>, InvalidExcludeEntry>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut entries = Vec::new();
    for value in values {
        let value = value.as_ref();
        let entry = MatchEntry::parse_pattern(value, PatternFlag::PATH_NAME, MatchType::Exclude)
            .map_err(|error| InvalidExcludeEntry {
                text: value.to_vec(),
                error,
            })?;
        entries.push(entry);
    }
    if skip_lost_and_found {
        let pattern = Pattern::path(b"lost+found").map_err(|error| InvalidExcludeEntry {
            text: b"lost+found".to_vec(),
            error,
        })?;
        entries.push(MatchEntry::exclude(pattern));
    }
    Ok(entries)
}

/// The content of the `.pxarexclude-cli` file for the command-line entries (empty list:
/// empty content, the file is then not written).
pub fn cli_exclude_file_content(entries: &[MatchEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        entry.write_exclude_line(&mut out);
    }
    out
}

/// Parses the content of the `.pxarexclude` file of directory `dir_path` (relative to the
/// backup root, without leading slash; empty at the root).
///
/// Lines are trimmed of ASCII whitespace; empty lines and `#` comments are skipped. `/x` and
/// `!/x` lines are anchored at the directory: their pattern is `/<dir_path>/x` (`/x` at the
/// root). The 3.2.4 client used `<dir_path>/x` instead, which never matched below the root;
/// this implements the documented behavior. `!x` is an include, anything else an exclude, and
/// the entry syntax (a further `!`, trailing `/`) applies to the rest. Lines that do not parse
/// are reported to `on_bad_line` with their error and skipped.
pub fn parse_exclude_file(
    content: &[u8],
    dir_path: &[u8],
    mut on_bad_line: impl FnMut(&[u8], ParseError),
) -> Vec<MatchEntry> {
    let dir_path = trim_slashes(dir_path);
    let mut entries = Vec::new();
    let mut anchored_text = Vec::new();
    for line in content.split(|b| *b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let (ty, text, anchored) = if line.starts_with(b"/") {
            (MatchType::Exclude, line, true)
        } else if line.starts_with(b"!/") {
            (MatchType::Include, &line[1..], true)
        } else if let Some(rest) = line.strip_prefix(b"!") {
            (MatchType::Include, rest, false)
        } else {
            (MatchType::Exclude, line, false)
        };
        let parsed = if anchored {
            anchored_text.clear();
            if !dir_path.is_empty() {
                anchored_text.push(b'/');
                anchored_text.extend_from_slice(dir_path);
            }
            anchored_text.extend_from_slice(text);
            MatchEntry::parse_pattern(&anchored_text, PatternFlag::PATH_NAME, ty)
                .map(|entry| entry.add_flags(MatchFlag::ANCHORED))
        } else {
            MatchEntry::parse_pattern(text, PatternFlag::PATH_NAME, ty)
        };
        match parsed {
            Ok(entry) => entries.push(entry),
            Err(error) => on_bad_line(line, error),
        }
    }
    entries
}

fn trim_slashes(path: &[u8]) -> &[u8] {
    let start = path.iter().position(|b| *b != b'/').unwrap_or(path.len());
    let end = path.iter().rposition(|b| *b != b'/').map_or(start, |last| last + 1);
    &path[start..end.max(start)]
}
