//! Evaluating an ordered list of match entries: the last matching entry decides.

use std::convert::Infallible;
use std::fmt;

use crate::entry::{MatchEntry, MatchType};

/// Supplies the file mode, at most once and only when a type-restricted entry is reached.
pub trait GetFileMode {
    /// Why the mode is unavailable.
    type Error;

    /// Produces the `st_mode`.
    fn get(self) -> Result<u32, Self::Error>;
}

impl GetFileMode for u32 {
    type Error = Infallible;

    fn get(self) -> Result<u32, Infallible> {
        Ok(self)
    }
}

/// `None` means "this entry has no mode" (e.g. a hardlink in a catalog).
impl GetFileMode for Option<u32> {
    type Error = FileModeRequired;

    fn get(self) -> Result<u32, FileModeRequired> {
        self.ok_or(FileModeRequired)
    }
}

/// A lazy lookup such as an `lstat`.
impl<F, E> GetFileMode for F
where
    F: FnOnce() -> Result<u32, E>,
{
    type Error = E;

    fn get(self) -> Result<u32, E> {
        self()
    }
}

/// A type-restricted entry was reached but the path has no file mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileModeRequired;

impl fmt::Display for FileModeRequired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("file mode is required to match against a file-type restricted pattern")
    }
}

impl std::error::Error for FileModeRequired {}

/// An ordered list of match entries.
pub trait MatchList {
    /// Scans the entries from last to first and returns the type of the first one whose
    /// file-type mask and path match `path`; `None` if none does.
    ///
    /// The mode is requested when the scan reaches the first type-restricted entry (before
    /// its path is tested); an error from `file_mode` aborts the scan.
    fn matches<M: GetFileMode>(
        &self,
        path: &[u8],
        file_mode: M,
    ) -> Result<Option<MatchType>, M::Error>;
}

impl<E: AsRef<MatchEntry>> MatchList for [E] {
    fn matches<M: GetFileMode>(
        &self,
        path: &[u8],
        file_mode: M,
    ) -> Result<Option<MatchType>, M::Error> {
        let mut source = Some(file_mode);
        let mut mode = 0;
        for entry in self.iter().rev() {
            let entry = entry.as_ref();
            if entry.needs_file_mode() {
                if let Some(source) = source.take() {
                    mode = source.get()?;
                }
                if !entry.matches_mode(mode) {
                    continue;
                }
            }
            if entry.matches_path(path) {
                return Ok(Some(entry.match_type()));
            }
        }
        Ok(None)
    }
}

impl<E: AsRef<MatchEntry>> MatchList for Vec<E> {
    fn matches<M: GetFileMode>(
        &self,
        path: &[u8],
        file_mode: M,
    ) -> Result<Option<MatchType>, M::Error> {
        self.as_slice().matches(path, file_mode)
    }
}

impl<E: AsRef<MatchEntry>, const N: usize> MatchList for [E; N] {
    fn matches<M: GetFileMode>(
        &self,
        path: &[u8],
        file_mode: M,
    ) -> Result<Option<MatchType>, M::Error> {
        self.as_slice().matches(path, file_mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::MatchFlag;
    use crate::mode::{S_IFDIR, S_IFLNK, S_IFREG};
    use crate::pattern::{Pattern, PatternFlag};
    use MatchType::{Exclude, Include};

    fn entry(glob: &str, ty: MatchType) -> MatchEntry {
        MatchEntry::new(Pattern::path(glob).unwrap(), ty)
    }

    fn parsed(text: &str, ty: MatchType) -> MatchEntry {
        MatchEntry::parse_pattern(text, PatternFlag::PATH_NAME, ty).unwrap()
    }

    #[track_caller]
    fn check(list: &[MatchEntry], cases: &[(&str, u32, Option<MatchType>)]) {
        for (path, mode, expected) in cases {
            assert_eq!(
                list.matches(path.as_bytes(), *mode).unwrap(),
                *expected,
                "{path} (mode {mode:o})"
            );
        }
    }

    fn shop_list() -> Vec<MatchEntry> {
        vec![
            entry("shop", Include),
            entry("bananas", Exclude),
            entry("bananas/curved.*", Include),
        ]
    }

    #[test]
    fn spec_doc_example() {
        let list = shop_list();
        check(
            &list,
            &[
                ("/things", S_IFDIR, None),
                ("/things/shop", S_IFDIR, Some(Include)),
                ("/things/shop/bananas", S_IFDIR, Some(Exclude)),
                ("/things/shop/bananas/curved.txt", S_IFREG, Some(Include)),
                ("/things/shop/bananas/straight.txt", S_IFREG, None),
            ],
        );
        let mut list = shop_list();
        list.push(entry("curved.bak", Exclude));
        check(
            &list,
            &[("/things/shop/bananas/curved.bak", S_IFREG, Some(Exclude))],
        );
        let mut list = shop_list();
        list.push(entry("curved.bak", Exclude).add_flags(MatchFlag::ANCHORED));
        check(
            &list,
            &[("/things/shop/bananas/curved.bak", S_IFREG, Some(Include))],
        );
    }

    #[test]
    fn spec_class_lists() {
        let list = vec![entry("[cfs]*", Include)];
        check(
            &list,
            &[
                ("/things", S_IFDIR, None),
                ("/things/file1.dat", S_IFREG, Some(Include)),
                ("/things/shop", S_IFDIR, Some(Include)),
                ("/things/shop/info.txt", S_IFREG, None),
                ("/things/shop/bananas/straight.txt", S_IFREG, Some(Include)),
                ("/shop/bananas/curved.bak", S_IFREG, Some(Include)),
                ("/things/shop/bananas/other.txt", S_IFREG, None),
            ],
        );
        let list = vec![entry("[cfs]*", Include), entry("[cfs]*/**", Include)];
        check(
            &list,
            &[
                ("/things", S_IFDIR, None),
                ("/things/shop/info.txt", S_IFREG, Some(Include)),
                ("/things/shop/apples", S_IFDIR, Some(Include)),
                ("/shop/bananas/other.txt", S_IFREG, Some(Include)),
            ],
        );
    }

    #[test]
    fn spec_parsed_entries_with_file_types() {
        let list = vec![
            parsed("a_dir/", Include),
            parsed("!a_file", Include).with_file_types(MatchFlag::MATCH_REGULAR_FILES),
            parsed("!another_dir//", Include),
        ];
        check(
            &list,
            &[
                ("a_dir", S_IFDIR, Some(Include)),
                ("/a_dir", S_IFDIR, Some(Include)),
                ("/a_dir", S_IFREG, None),
                ("/a_file", S_IFREG, Some(Exclude)),
                ("/a_file", S_IFDIR, None),
                ("/another_dir", S_IFDIR, Some(Exclude)),
                ("/another_dir", S_IFREG, None),
            ],
        );
    }

    #[test]
    fn spec_anchoring() {
        let list = vec![
            entry("file-a", Include),
            entry("some/path", Include).add_flags(MatchFlag::ANCHORED),
        ];
        check(
            &list,
            &[
                ("file-a", S_IFREG, Some(Include)),
                ("another/file-a", S_IFREG, Some(Include)),
                ("some", S_IFREG, None),
                ("path", S_IFREG, None),
                ("some/path", S_IFREG, Some(Include)),
                ("another/some/path", S_IFREG, None),
            ],
        );
        let list = vec![
            entry("noslash", Include),
            entry("noslash-a", Include).add_flags(MatchFlag::ANCHORED),
            entry("/slash", Include),
            entry("/slash-a", Include).add_flags(MatchFlag::ANCHORED),
        ];
        check(
            &list,
            &[
                ("noslash", S_IFREG, Some(Include)),
                ("noslash-a", S_IFREG, Some(Include)),
                ("slash", S_IFREG, None),
                ("/slash", S_IFREG, Some(Include)),
                ("slash-a", S_IFREG, None),
                ("/slash-a", S_IFREG, Some(Include)),
                ("foo/noslash", S_IFREG, Some(Include)),
                ("foo/noslash-a", S_IFREG, None),
                ("foo/slash", S_IFREG, None),
                ("foo/slash-a", S_IFREG, None),
            ],
        );
    }

    #[test]
    fn spec_file_type_masks() {
        let list = vec![
            entry("a*", Exclude).with_file_types(MatchFlag::MATCH_DIRECTORIES),
            entry("b*", Exclude).with_file_types(MatchFlag::MATCH_REGULAR_FILES),
        ];
        check(
            &list,
            &[
                ("ahsjdj", S_IFDIR, Some(Exclude)),
                ("ahsjdj", S_IFREG, None),
                ("bhsjdj", S_IFREG, Some(Exclude)),
                ("bhsjdj", 0, None),
            ],
        );
        let list = vec![parsed("d/", Exclude)];
        check(&list, &[("/d", S_IFLNK, None), ("/d", 0, None)]);
    }

    #[test]
    fn spec_missing_mode_aborts_at_first_restricted_entry() {
        let star_then_dir = vec![entry("*", Include), parsed("foo/", Include)];
        assert_eq!(
            star_then_dir.matches(b"/h", None::<u32>),
            Err(FileModeRequired)
        );
        let dir_then_star = vec![parsed("foo/", Include), entry("*", Include)];
        assert_eq!(dir_then_star.matches(b"/h", None::<u32>), Ok(Some(Include)));
        assert_eq!(
            star_then_dir.matches(b"/h", Some(S_IFREG)),
            Ok(Some(Include))
        );
    }

    #[test]
    fn mode_is_fetched_lazily_and_once() {
        let mut calls = 0;
        let list = vec![parsed("x/", Exclude), entry("*.o", Exclude)];
        let result = list.matches(b"/a.o", || -> Result<u32, ()> {
            calls += 1;
            Ok(S_IFREG)
        });
        assert_eq!(result, Ok(Some(Exclude)));
        assert_eq!(calls, 0, "no restricted entry reached");

        let list = vec![
            parsed("b/", Exclude),
            parsed("a/", Exclude),
            parsed("c/", Include),
        ];
        let mut calls = 0;
        let result = list.matches(b"/a", || -> Result<u32, ()> {
            calls += 1;
            Ok(S_IFDIR)
        });
        assert_eq!(result, Ok(Some(Exclude)));
        assert_eq!(calls, 1);

        let result = list.matches(b"/a", || -> Result<u32, &str> { Err("lstat failed") });
        assert_eq!(result, Err("lstat failed"));
    }

    #[test]
    fn literal_entries_and_reference_lists() {
        let hosts = MatchEntry::include(crate::entry::MatchPattern::literal(&b"/etc/hosts"[..]));
        let list = vec![&hosts];
        assert_eq!(list.matches(b"/etc/hosts", S_IFREG), Ok(Some(Include)));
        assert_eq!(list.matches(b"/x/etc/hosts", S_IFREG), Ok(None));
        assert_eq!(list.matches(b"/etc/hosts2", S_IFREG), Ok(None));
        let name = MatchEntry::include(crate::entry::MatchPattern::literal(&b"a*b"[..]));
        let list = [name];
        assert_eq!(list.matches(b"/x/a*b", S_IFREG), Ok(Some(Include)));
        assert_eq!(list.matches(b"/x/axxb", S_IFREG), Ok(None));
        let empty: &[MatchEntry] = &[];
        assert_eq!(empty.matches(b"/x", S_IFREG), Ok(None));
    }
}
