//! Match entries: a pattern with include/exclude type, file-type mask and anchoring.

use std::ops::{BitOr, BitOrAssign};

use crate::error::ParseError;
use crate::mode;
use crate::pattern::{Pattern, PatternFlag};

/// What a matching entry decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// Keep the entry.
    Include,
    /// Skip the entry (and, for directories, the whole subtree).
    Exclude,
}

impl MatchType {
    /// The opposite type.
    pub fn invert(self) -> Self {
        match self {
            Self::Include => Self::Exclude,
            Self::Exclude => Self::Include,
        }
    }
}

/// Anchoring and file-type mask of a [`MatchEntry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatchFlag(u32);

impl MatchFlag {
    /// The pattern must match the whole path, not just a suffix after a `/`.
    pub const ANCHORED: Self = Self(1 << 0);
    /// Matches directories.
    pub const MATCH_DIRECTORIES: Self = Self(1 << 1);
    /// Matches regular files.
    pub const MATCH_REGULAR_FILES: Self = Self(1 << 2);
    /// Matches symbolic links.
    pub const MATCH_SYMLINKS: Self = Self(1 << 3);
    /// Matches sockets.
    pub const MATCH_SOCKETS: Self = Self(1 << 4);
    /// Matches FIFOs.
    pub const MATCH_FIFOS: Self = Self(1 << 5);
    /// Matches character devices.
    pub const MATCH_CHARDEVS: Self = Self(1 << 6);
    /// Matches block devices.
    pub const MATCH_BLOCKDEVS: Self = Self(1 << 7);
    /// All file-type bits: the entry matches without looking at the file mode.
    pub const ANY_FILE_TYPE: Self = Self(0b1111_1110);

    /// No flags (and an empty file-type mask, which matches nothing).
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True if every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flags of `self` that are also in `other`.
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// `self` without the flags of `other`.
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The file-type flag of an `st_mode` (empty for an unknown type).
    pub const fn from_file_mode(file_mode: u32) -> Self {
        match file_mode & mode::S_IFMT {
            mode::S_IFDIR => Self::MATCH_DIRECTORIES,
            mode::S_IFREG => Self::MATCH_REGULAR_FILES,
            mode::S_IFLNK => Self::MATCH_SYMLINKS,
            mode::S_IFSOCK => Self::MATCH_SOCKETS,
            mode::S_IFIFO => Self::MATCH_FIFOS,
            mode::S_IFCHR => Self::MATCH_CHARDEVS,
            mode::S_IFBLK => Self::MATCH_BLOCKDEVS,
            _ => Self::empty(),
        }
    }
}

impl BitOr for MatchFlag {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for MatchFlag {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// The path test of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchPattern {
    /// A glob.
    Pattern(Pattern),
    /// An exact byte string (no glob characters).
    Literal(Vec<u8>),
}

impl MatchPattern {
    /// A literal (exact bytes) pattern.
    pub fn literal(text: impl Into<Vec<u8>>) -> Self {
        Self::Literal(text.into())
    }

    /// The pattern text.
    pub fn text(&self) -> &[u8] {
        match self {
            Self::Pattern(pattern) => pattern.pattern(),
            Self::Literal(text) => text,
        }
    }

    /// Whole-path match, or (unless `anchored`) a match of a suffix starting after a `/`.
    fn matches_path(&self, path: &[u8], anchored: bool) -> bool {
        match self {
            Self::Pattern(pattern) if anchored => pattern.matches(path),
            Self::Pattern(pattern) => pattern.matches_path_suffix(path),
            Self::Literal(text) => {
                path == text.as_slice()
                    || (!anchored
                        && path.len() > text.len()
                        && path.ends_with(text)
                        && path[path.len() - text.len() - 1] == b'/')
            }
        }
    }
}

impl From<Pattern> for MatchPattern {
    fn from(pattern: Pattern) -> Self {
        Self::Pattern(pattern)
    }
}

/// One entry of a match list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchEntry {
    pattern: MatchPattern,
    ty: MatchType,
    flags: MatchFlag,
}

impl AsRef<MatchEntry> for MatchEntry {
    fn as_ref(&self) -> &MatchEntry {
        self
    }
}

impl MatchEntry {
    /// An entry matching any file type, not anchored.
    pub fn new(pattern: impl Into<MatchPattern>, ty: MatchType) -> Self {
        Self {
            pattern: pattern.into(),
            ty,
            flags: MatchFlag::ANY_FILE_TYPE,
        }
    }

    /// An include entry matching any file type.
    pub fn include(pattern: impl Into<MatchPattern>) -> Self {
        Self::new(pattern, MatchType::Include)
    }

    /// An exclude entry matching any file type.
    pub fn exclude(pattern: impl Into<MatchPattern>) -> Self {
        Self::new(pattern, MatchType::Exclude)
    }

    /// Parses an entry text: one leading `!` flips `ty`; trailing `/` restrict the entry to
    /// directories (and are removed); an empty or all-slash text becomes `/`.
    pub fn parse_pattern(
        text: impl AsRef<[u8]>,
        pattern_flags: PatternFlag,
        ty: MatchType,
    ) -> Result<Self, ParseError> {
        let mut text = text.as_ref();
        let mut ty = ty;
        if let Some(rest) = text.strip_prefix(b"!") {
            text = rest;
            ty = ty.invert();
        }
        let mut flags = MatchFlag::ANY_FILE_TYPE;
        if text.ends_with(b"/") {
            flags = MatchFlag::MATCH_DIRECTORIES;
        }
        let text = match text.iter().rposition(|b| *b != b'/') {
            Some(last) => &text[..=last],
            None => b"/",
        };
        Ok(Self {
            pattern: Pattern::new(text, pattern_flags)?.into(),
            ty,
            flags,
        })
    }

    /// Replaces all flags (anchoring and file-type mask).
    pub fn flags(mut self, flags: MatchFlag) -> Self {
        self.flags = flags;
        self
    }

    /// Adds flags.
    pub fn add_flags(mut self, flags: MatchFlag) -> Self {
        self.flags |= flags;
        self
    }

    /// Replaces the file-type mask, keeping the anchoring.
    pub fn with_file_types(mut self, types: MatchFlag) -> Self {
        self.flags = self.flags.intersection(MatchFlag::ANCHORED)
            | types.intersection(MatchFlag::ANY_FILE_TYPE);
        self
    }

    /// The entry's type.
    pub fn match_type(&self) -> MatchType {
        self.ty
    }

    /// The entry's flags.
    pub fn match_flags(&self) -> MatchFlag {
        self.flags
    }

    /// The entry's pattern.
    pub fn pattern(&self) -> &MatchPattern {
        &self.pattern
    }

    /// True if matching needs the file mode (the file-type mask is restricted).
    pub fn needs_file_mode(&self) -> bool {
        !self.flags.contains(MatchFlag::ANY_FILE_TYPE)
    }

    /// True if the file-type mask admits `file_mode` (an unknown type is never admitted by
    /// a restricted mask).
    pub fn matches_mode(&self, file_mode: u32) -> bool {
        if !self.needs_file_mode() {
            return true;
        }
        let file_type = MatchFlag::from_file_mode(file_mode);
        !file_type.is_empty() && self.flags.contains(file_type)
    }

    /// True if the pattern matches `path` (whole path if anchored, else also any suffix
    /// starting after a `/`); the file type is not considered.
    pub fn matches_path(&self, path: impl AsRef<[u8]>) -> bool {
        self.pattern
            .matches_path(path.as_ref(), self.flags.contains(MatchFlag::ANCHORED))
    }

    /// True if both the file-type mask and the path match.
    pub fn matches(&self, path: impl AsRef<[u8]>, file_mode: u32) -> bool {
        self.matches_mode(file_mode) && self.matches_path(path)
    }

    /// Appends the `.pxarexclude-cli` line of this entry: `!` for includes, the pattern
    /// text, `/` for directory-only entries (unless the text already ends with one), `\n`.
    pub fn write_exclude_line(&self, out: &mut Vec<u8>) {
        if self.ty == MatchType::Include {
            out.push(b'!');
        }
        let text = self.pattern.text();
        out.extend_from_slice(text);
        let file_types = self.flags.intersection(MatchFlag::ANY_FILE_TYPE);
        if file_types == MatchFlag::MATCH_DIRECTORIES && !text.ends_with(b"/") {
            out.push(b'/');
        }
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, ty: MatchType) -> MatchEntry {
        MatchEntry::parse_pattern(text, PatternFlag::PATH_NAME, ty).unwrap()
    }

    fn line(entry: &MatchEntry) -> String {
        let mut out = Vec::new();
        entry.write_exclude_line(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn leading_bang_flips_once() {
        let entry = parse("!foo", MatchType::Exclude);
        assert_eq!(entry.match_type(), MatchType::Include);
        assert_eq!(entry.pattern().text(), b"foo");
        let entry = parse("!!foo", MatchType::Exclude);
        assert_eq!(entry.match_type(), MatchType::Include);
        assert_eq!(entry.pattern().text(), b"!foo");
        assert!(entry.matches_path("/x/!foo"));
        assert!(!entry.matches_path("/x/foo"));
        let entry = parse(r"\!foo", MatchType::Exclude);
        assert_eq!(entry.match_type(), MatchType::Exclude);
        assert!(entry.matches_path("/!foo"));
    }

    #[test]
    fn trailing_slashes_restrict_to_directories() {
        let entry = parse("foo//", MatchType::Exclude);
        assert_eq!(entry.pattern().text(), b"foo");
        assert_eq!(entry.match_flags(), MatchFlag::MATCH_DIRECTORIES);
        assert!(entry.needs_file_mode());
        assert!(entry.matches("/foo", mode::S_IFDIR | 0o755));
        assert!(!entry.matches("/foo", mode::S_IFREG | 0o644));
        let entry = parse("foo", MatchType::Exclude);
        assert_eq!(entry.match_flags(), MatchFlag::ANY_FILE_TYPE);
        assert!(!entry.needs_file_mode());
        assert!(entry.matches("/foo", 0));
    }

    #[test]
    fn empty_and_slash_only_texts_match_only_the_root() {
        for (text, flags) in [
            ("", MatchFlag::ANY_FILE_TYPE),
            ("!", MatchFlag::ANY_FILE_TYPE),
            ("/", MatchFlag::MATCH_DIRECTORIES),
            ("///", MatchFlag::MATCH_DIRECTORIES),
        ] {
            let entry = parse(text, MatchType::Exclude);
            assert_eq!(entry.pattern().text(), b"/", "{text:?}");
            assert_eq!(entry.match_flags(), flags, "{text:?}");
            assert!(!entry.matches("/etc", mode::S_IFDIR));
            assert!(entry.matches("/", mode::S_IFDIR));
        }
    }

    #[test]
    fn parse_errors_pass_through() {
        assert_eq!(
            MatchEntry::parse_pattern("a[", PatternFlag::PATH_NAME, MatchType::Exclude),
            Err(ParseError::UnclosedClass(1))
        );
        assert_eq!(
            MatchEntry::parse_pattern("!x\\", PatternFlag::PATH_NAME, MatchType::Exclude),
            Err(ParseError::TrailingBackslash)
        );
    }

    #[test]
    fn file_type_of_modes() {
        let cases = [
            (mode::S_IFDIR, MatchFlag::MATCH_DIRECTORIES),
            (mode::S_IFREG, MatchFlag::MATCH_REGULAR_FILES),
            (mode::S_IFLNK, MatchFlag::MATCH_SYMLINKS),
            (mode::S_IFSOCK, MatchFlag::MATCH_SOCKETS),
            (mode::S_IFIFO, MatchFlag::MATCH_FIFOS),
            (mode::S_IFCHR, MatchFlag::MATCH_CHARDEVS),
            (mode::S_IFBLK, MatchFlag::MATCH_BLOCKDEVS),
        ];
        for (file_type, flag) in cases {
            assert_eq!(MatchFlag::from_file_mode(file_type | 0o4755), flag);
            let entry = MatchEntry::include(Pattern::path("x").unwrap()).with_file_types(flag);
            assert!(entry.matches_mode(file_type));
            for (other, _) in cases.iter().filter(|(other, _)| *other != file_type) {
                assert!(!entry.matches_mode(*other));
            }
        }
        assert!(MatchFlag::from_file_mode(0o777).is_empty());
        assert!(MatchFlag::from_file_mode(0o170_000).is_empty());
    }

    #[test]
    fn with_file_types_keeps_anchoring() {
        let entry = parse("x", MatchType::Exclude)
            .add_flags(MatchFlag::ANCHORED)
            .with_file_types(MatchFlag::MATCH_FIFOS | MatchFlag::ANCHORED);
        assert_eq!(
            entry.match_flags(),
            MatchFlag::ANCHORED | MatchFlag::MATCH_FIFOS
        );
        let entry = entry.flags(MatchFlag::ANY_FILE_TYPE);
        assert_eq!(entry.match_flags(), MatchFlag::ANY_FILE_TYPE);
    }

    #[test]
    fn exclude_lines() {
        assert_eq!(line(&parse("*.tmp", MatchType::Exclude)), "*.tmp\n");
        assert_eq!(line(&parse("!keep//", MatchType::Exclude)), "!keep/\n");
        assert_eq!(line(&parse("cache/", MatchType::Exclude)), "cache/\n");
        assert_eq!(line(&parse("/", MatchType::Exclude)), "/\n");
        assert_eq!(line(&parse("!", MatchType::Exclude)), "!/\n");
        assert_eq!(line(&parse("!!x", MatchType::Exclude)), "!!x\n");
    }
}
