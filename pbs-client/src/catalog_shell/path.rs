//! Path resolution in the catalog shell: component by component on a stack of catalog
//! entries whose bottom is the archive root.

use std::ffi::OsStr;
use std::io::{Read, Seek};
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, format_err, Result};
use pbs_datastore::catalog::DirEntry;
use pxar::accessor::ReadAt;
use pxar::EntryKind;

use super::Shell;

/// Symlink resolutions allowed in one lookup.
const MAX_SYMLINK_LEVELS: usize = 40;

impl<C: Read + Seek, R: ReadAt> Shell<C, R> {
    /// Resolves `path` (absolute = from the archive root, else from the current directory).
    ///
    /// A symlink is followed only when another component (also `.`) comes after it; with
    /// `follow_symlinks == false` (for `cd`) that is an error instead. `..` stops at the
    /// archive root.
    pub(super) fn resolve(&mut self, path: &[u8], follow_symlinks: bool) -> Result<Vec<DirEntry>> {
        let mut stack = self.position.clone();
        let mut levels = 0;
        self.walk(&mut stack, path, follow_symlinks, &mut levels)?;
        Ok(stack)
    }

    fn walk(
        &mut self,
        stack: &mut Vec<DirEntry>,
        path: &[u8],
        follow_symlinks: bool,
        levels: &mut usize,
    ) -> Result<()> {
        if path.starts_with(b"/") {
            stack.truncate(1);
        }
        for component in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
            match component {
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                }
                b"." => self.follow_top_symlink(stack, follow_symlinks, levels)?,
                name => {
                    self.follow_top_symlink(stack, follow_symlinks, levels)?;
                    let parent = stack
                        .last()
                        .ok_or_else(|| format_err!("empty path stack"))?;
                    if !parent.is_directory() {
                        bail!("not a directory");
                    }
                    let entry = self.catalog.lookup(parent, name)?.ok_or_else(|| {
                        format_err!("no such file or directory: {:?}", OsStr::from_bytes(name))
                    })?;
                    stack.push(entry);
                }
            }
        }
        Ok(())
    }

    /// If the top of `stack` is a symlink, replaces the path by the link's target.
    fn follow_top_symlink(
        &mut self,
        stack: &mut Vec<DirEntry>,
        follow_symlinks: bool,
        levels: &mut usize,
    ) -> Result<()> {
        if !stack.last().is_some_and(DirEntry::is_symlink) {
            return Ok(());
        }
        if !follow_symlinks {
            bail!("target is a symlink");
        }
        *levels += 1;
        if *levels > MAX_SYMLINK_LEVELS {
            bail!("too many levels of symbolic links");
        }
        let link_path = Self::stack_path(stack);
        let entry = self.archive_entry(&link_path)?;
        let EntryKind::Symlink(target) = entry.kind() else {
            bail!("symlink in the catalog was not a symlink in the archive");
        };
        let target = target.as_os_str().as_bytes().to_vec();
        // A relative target is walked with the link itself still on the stack.
        self.walk(stack, &target, follow_symlinks, levels)
    }
}
