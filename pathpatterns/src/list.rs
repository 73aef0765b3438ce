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
