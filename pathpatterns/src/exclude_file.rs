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
    let end = path
        .iter()
        .rposition(|b| *b != b'/')
        .map_or(start, |last| last + 1);
    &path[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::MatchList;
    use crate::mode::{S_IFDIR, S_IFREG};

    #[derive(Debug, PartialEq, Eq)]
    enum Walk {
        Excluded,
        Included,
        NoMatch,
        /// A directory on the way was excluded, so the entry is never looked at.
        NotReached,
    }

    /// Evaluates `path` the way the archiver reaches it: every ancestor directory is matched
    /// first, and each directory's `.pxarexclude` (`files`: relative dir, content) is added
    /// before its entries are matched.
    fn walk(
        cli: &[&str],
        lost_and_found: bool,
        files: &[(&str, &str)],
        path: &str,
        mode: u32,
    ) -> Walk {
        let mut list = parse_cli_excludes(cli, lost_and_found).unwrap();
        let components: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for depth in 0..components.len() {
            let dir = components[..depth].join("/");
            for (_, content) in files.iter().filter(|(file_dir, _)| *file_dir == dir) {
                list.extend(parse_exclude_file(
                    content.as_bytes(),
                    dir.as_bytes(),
                    |line, err| panic!("bad line {line:?}: {err}"),
                ));
            }
            let last = depth + 1 == components.len();
            let entry_path = format!("/{}", components[..=depth].join("/"));
            let entry_mode = if last { mode } else { S_IFDIR };
            match list.matches(entry_path.as_bytes(), entry_mode).unwrap() {
                Some(MatchType::Exclude) if last => return Walk::Excluded,
                Some(MatchType::Exclude) => return Walk::NotReached,
                Some(MatchType::Include) if last => return Walk::Included,
                _ if last => return Walk::NoMatch,
                _ => {}
            }
        }
        unreachable!("the last component returns")
    }

    fn cli(values: &[&str], path: &str, mode: u32) -> Walk {
        walk(values, false, &[], path, mode)
    }

    /// The decision of the full list for `path` alone, ignoring its ancestors.
    fn glob_level(values: &[&str], path: &str, mode: u32) -> Option<MatchType> {
        parse_cli_excludes(values, false)
            .unwrap()
            .matches(path.as_bytes(), mode)
            .unwrap()
    }

    fn root_file(content: &str, path: &str, mode: u32) -> Walk {
        walk(&[], false, &[("", content)], path, mode)
    }

    fn sub_file(content: &str, path: &str, mode: u32) -> Walk {
        walk(&[], false, &[("sub", content)], path, mode)
    }

    #[test]
    fn spec_cli_vectors() {
        assert_eq!(cli(&["*.tmp"], "/a.tmp", S_IFREG), Walk::Excluded);
        assert_eq!(cli(&["*.tmp"], "/x/y/a.tmp", S_IFREG), Walk::Excluded);
        assert_eq!(glob_level(&["*.tmp"], "/x.tmp/y", S_IFREG), None);
        assert_eq!(cli(&["*.tmp"], "/x.tmp/y", S_IFREG), Walk::NotReached);

        assert_eq!(cli(&["/var/cache"], "/var/cache", S_IFDIR), Walk::Excluded);
        assert_eq!(
            cli(&["/var/cache"], "/srv/var/cache", S_IFDIR),
            Walk::NoMatch
        );
        assert_eq!(cli(&["var/cache"], "/var/cache", S_IFDIR), Walk::Excluded);
        assert_eq!(
            cli(&["var/cache"], "/srv/var/cache", S_IFDIR),
            Walk::Excluded
        );
        assert_eq!(cli(&["cache/"], "/home/u/cache", S_IFDIR), Walk::Excluded);
        assert_eq!(cli(&["cache/"], "/home/u/cache", S_IFREG), Walk::NoMatch);
        assert_eq!(cli(&["cache"], "/home/u/cache", S_IFREG), Walk::Excluded);
        assert_eq!(cli(&["/"], "/etc", S_IFDIR), Walk::NoMatch);
        assert_eq!(cli(&["*"], "/etc", S_IFDIR), Walk::Excluded);
        assert_eq!(
            glob_level(&["*"], "/etc/passwd", S_IFREG),
            Some(MatchType::Exclude)
        );
        assert_eq!(
            cli(&["**/*.log"], "/var/log/syslog.log", S_IFREG),
            Walk::Excluded
        );
        assert_eq!(cli(&["**/*.log"], "/a.log", S_IFREG), Walk::Excluded);
        assert_eq!(cli(&["/var/log/**"], "/var/log", S_IFDIR), Walk::NoMatch);
        assert_eq!(cli(&["/var/log/**"], "/var/log/x", S_IFREG), Walk::Excluded);
        assert_eq!(glob_level(&["/var/log/*"], "/var/log/sub/x", S_IFREG), None);
        assert_eq!(
            cli(&["/var/log/*"], "/var/log/sub/x", S_IFREG),
            Walk::NotReached
        );
        assert_eq!(
            cli(&["/etc/*.conf"], "/etc/a.conf", S_IFREG),
            Walk::Excluded
        );
        assert_eq!(
            cli(&["/etc/*.conf"], "/etc/sub/a.conf", S_IFREG),
            Walk::NoMatch
        );
        assert_eq!(cli(&["foo/bar"], "/x/foo/bar", S_IFREG), Walk::Excluded);
        assert_eq!(cli(&["foo/bar"], "/foo/bar", S_IFREG), Walk::Excluded);
        assert_eq!(cli(&["foo/bar"], "/xfoo/bar", S_IFREG), Walk::NoMatch);
        assert_eq!(cli(&["a?c"], "/abc", S_IFREG), Walk::Excluded);
        assert_eq!(cli(&["a?c"], "/a/c", S_IFREG), Walk::NoMatch);
    }

    #[test]
    fn spec_cli_order_vectors() {
        assert_eq!(
            cli(&["*.tmp", "!keep.tmp"], "/d/keep.tmp", S_IFREG),
            Walk::Included
        );
        assert_eq!(
            cli(&["!keep.tmp", "*.tmp"], "/d/keep.tmp", S_IFREG),
            Walk::Excluded
        );
        let home = ["/home/*", "!/home/alice"];
        assert_eq!(cli(&home, "/home/alice", S_IFDIR), Walk::Included);
        assert_eq!(cli(&home, "/home/bob", S_IFDIR), Walk::Excluded);
        assert_eq!(cli(&home, "/home/alice/x", S_IFREG), Walk::NoMatch);
        let dir = ["dir/", "!dir/keep"];
        assert_eq!(
            glob_level(&dir, "/dir/keep", S_IFREG),
            Some(MatchType::Include)
        );
        assert_eq!(cli(&dir, "/dir/keep", S_IFREG), Walk::NotReached);
    }

    #[test]
    fn spec_cli_class_vectors() {
        assert_eq!(cli(&["[!a]*"], "/abc", S_IFREG), Walk::Excluded);
        assert_eq!(cli(&["[!a]*"], "/!bc", S_IFREG), Walk::Excluded);
        assert_eq!(cli(&["[!a]*"], "/bcd", S_IFREG), Walk::NoMatch);
        assert_eq!(cli(&["[^a]*"], "/bcd", S_IFREG), Walk::Excluded);
        assert_eq!(glob_level(&["[^a]*"], "/x/abc", S_IFREG), None);
        assert_eq!(cli(&["[^a]*"], "/abc", S_IFREG), Walk::Excluded);
        assert_eq!(cli(&["[[:punct:]]etc"], "/etc", S_IFDIR), Walk::Excluded);
    }

    #[test]
    fn spec_lost_and_found() {
        assert_eq!(walk(&[], true, &[], "/lost+found", S_IFDIR), Walk::Excluded);
        assert_eq!(
            walk(&[], true, &[], "/home/lost+found", S_IFDIR),
            Walk::Excluded
        );
        let entries = parse_cli_excludes(["*.tmp"], true).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].pattern().text(), b"lost+found");
        assert_eq!(entries[1].match_flags(), MatchFlag::ANY_FILE_TYPE);
        assert_eq!(cli_exclude_file_content(&entries), b"*.tmp\nlost+found\n");
    }

    #[test]
    fn spec_root_exclude_file_vectors() {
        assert_eq!(root_file("/tmp", "/tmp", S_IFDIR), Walk::Excluded);
        assert_eq!(root_file("/tmp", "/x/tmp", S_IFDIR), Walk::NoMatch);
        assert_eq!(root_file("tmp", "/x/tmp", S_IFDIR), Walk::Excluded);
        assert_eq!(
            root_file("*.o\n!important.o\n", "/src/important.o", S_IFREG),
            Walk::Included
        );
        assert_eq!(
            root_file("# comment\n  *.o  \n", "/a.o", S_IFREG),
            Walk::Excluded
        );
        assert_eq!(root_file("build/", "/build", S_IFDIR), Walk::Excluded);
        assert_eq!(root_file("build/", "/build", S_IFREG), Walk::NoMatch);
        assert_eq!(root_file("!/keep\n/*\n", "/keep", S_IFREG), Walk::Excluded);
        assert_eq!(root_file("/*\n!/keep\n", "/keep", S_IFREG), Walk::Included);
        assert_eq!(root_file("/*\n!/keep\n", "/other", S_IFREG), Walk::Excluded);
        assert_eq!(
            root_file("/**/*.bak", "/a/b/c.bak", S_IFREG),
            Walk::Excluded
        );
        assert_eq!(root_file("/**/*.bak", "/c.bak", S_IFREG), Walk::Excluded);
    }

    #[test]
    fn nested_exclude_file_vectors_with_fixed_anchoring() {
        // 3.2.4 produced the pattern `sub/x` here, which never matched (`/sub/x` kept / no
        // match); the documented behavior anchors at the directory.
        assert_eq!(sub_file("/x", "/sub/x", S_IFREG), Walk::Excluded);
        assert_eq!(sub_file("!/x", "/sub/x", S_IFREG), Walk::Included);
        assert_eq!(sub_file("x", "/sub/x", S_IFREG), Walk::Excluded);
        assert_eq!(sub_file("/x", "/sub/y/x", S_IFREG), Walk::NoMatch);
        assert_eq!(sub_file("/x", "/x", S_IFREG), Walk::NoMatch);
        let entries = parse_exclude_file(b"/x\n!/y/\n", b"sub", |_, _| {});
        assert_eq!(entries[0].pattern().text(), b"/sub/x");
        assert!(entries[0].match_flags().contains(MatchFlag::ANCHORED));
        assert_eq!(entries[1].pattern().text(), b"/sub/y");
        assert_eq!(entries[1].match_type(), MatchType::Include);
        assert_eq!(
            entries[1].match_flags(),
            MatchFlag::ANCHORED | MatchFlag::MATCH_DIRECTORIES
        );
        let entries = parse_exclude_file(b"/x", b"/a/b/", |_, _| {});
        assert_eq!(entries[0].pattern().text(), b"/a/b/x");
    }

    #[test]
    fn exclude_file_line_syntax() {
        let mut bad = Vec::new();
        let content = b"\t# c\n\n  \r\n!!foo\n!bar/\r\nba[d\n\x0c baz \x0c\n#x\nq\\\n";
        let entries = parse_exclude_file(content, b"", |line, err| bad.push((line.to_vec(), err)));
        let summary: Vec<(MatchType, &[u8], bool)> = entries
            .iter()
            .map(|e| (e.match_type(), e.pattern().text(), e.needs_file_mode()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (MatchType::Exclude, &b"foo"[..], false),
                (MatchType::Include, &b"bar"[..], true),
                (MatchType::Exclude, &b"baz"[..], false),
            ]
        );
        assert_eq!(
            bad,
            vec![
                (b"ba[d".to_vec(), ParseError::UnclosedClass(2)),
                (b"q\\".to_vec(), ParseError::TrailingBackslash),
            ]
        );
        // Vertical tab is not whitespace here, so the line keeps it.
        let entries = parse_exclude_file(b"\x0bv", b"", |_, _| {});
        assert_eq!(entries[0].pattern().text(), b"\x0bv");
    }

    #[test]
    fn cli_errors() {
        let err = parse_cli_excludes(["ok", "[a-"], false).unwrap_err();
        assert_eq!(err.text, b"[a-");
        assert_eq!(
            err.to_string(),
            "invalid exclude pattern entry: unclosed character class in pattern, starting at byte 0"
        );
        let entries = parse_cli_excludes(["", "!"], false).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(cli_exclude_file_content(&entries), b"/\n!/\n");
        assert!(cli_exclude_file_content(&[]).is_empty());
    }
}
