//! Restoring from the catalog shell.
//!
//! Which entries are restored is decided on the catalog: each entry's path is matched against
//! the list on its own (no inheritance from its directory, except that an empty list restores
//! everything). The chosen set is then handed to the pxar extractor as an exact list: literal
//! includes for the chosen entries and literal excludes for the unchosen children of chosen
//! directories, so the extractor's directory inheritance cannot add anything.

use std::io::{self, Read, Seek};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{format_err, Result};
use pathpatterns::{MatchEntry, MatchFlag, MatchList, MatchPattern, MatchType};
use pbs_datastore::catalog::DirEntry;
use pxar::accessor::ReadAt;

use super::Shell;
use crate::pxar::{extract_archive, Flags, PxarExtractOptions};

/// Sequential `Read` over a positioned-read source.
struct ReadAtCursor<'a, R: ReadAt> {
    input: &'a R,
    pos: u64,
}

impl<R: ReadAt> Read for ReadAtCursor<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn exact(path: &[u8], ty: MatchType) -> MatchEntry {
    MatchEntry::new(MatchPattern::literal(path.to_vec()), ty).add_flags(MatchFlag::ANCHORED)
}

/// The extractor's match list reproducing the catalog decision for every entry.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct RestorePlan {
    /// Paths chosen for restore.
    pub(super) chosen: Vec<Vec<u8>>,
    /// Unchosen children of chosen directories.
    pub(super) excluded: Vec<Vec<u8>>,
}

impl RestorePlan {
    fn match_list(&self) -> Vec<MatchEntry> {
        let mut list: Vec<MatchEntry> = self
            .excluded
            .iter()
            .map(|p| exact(p, MatchType::Exclude))
            .chain(self.chosen.iter().map(|p| exact(p, MatchType::Include)))
            .collect();
        if list.is_empty() {
            // A non-empty list that includes nothing: the extractor then restores nothing.
            list.push(exact(b"/", MatchType::Exclude));
        }
        list
    }
}

impl<C: Read + Seek, R: ReadAt> Shell<C, R> {
    /// Walks the catalog below the archive root and decides every entry.
    pub(super) fn plan_restore(&mut self, list: &[MatchEntry]) -> Result<RestorePlan> {
        let restore_all = list.is_empty();
        let mut plan = RestorePlan::default();
        let root = self.position[0].clone();
        // (directory, its path, whether it is chosen)
        let mut pending: Vec<(DirEntry, Vec<u8>, bool)> = vec![(root, Vec::new(), restore_all)];
        while let Some((dir, dir_path, dir_chosen)) = pending.pop() {
            for entry in self.catalog.read_dir(&dir)? {
                let mut path = dir_path.clone();
                path.push(b'/');
                path.extend_from_slice(&entry.name);
                let file_mode = entry.attr.entry_type().file_mode();
                let chosen = match list.matches(&path, file_mode) {
                    Ok(Some(MatchType::Include)) => true,
                    Ok(Some(MatchType::Exclude)) => false,
                    Ok(None) | Err(_) => restore_all,
                };
                if chosen {
                    plan.chosen.push(path.clone());
                } else if dir_chosen {
                    plan.excluded.push(path.clone());
                }
                if entry.is_directory() {
                    pending.push((entry, path, chosen));
                }
            }
        }
        Ok(plan)
    }

    /// Restores the archive into `target` (created if missing) limited by `list`.
    pub(super) fn restore(&mut self, target: &Path, list: &[MatchEntry]) -> Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(target)
            .map_err(|err| format_err!("error creating directory {target:?}: {err}"))?;
        std::fs::File::open(target)
            .map_err(|err| format_err!("unable to open target directory {target:?}: {err}"))?;
        let match_list = if list.is_empty() {
            Vec::new()
        } else {
            self.plan_restore(list)?.match_list()
        };
        let decoder = pxar::Decoder::new_unified(ReadAtCursor {
            input: &*self.archive,
            pos: 0,
        })?;
        let options = PxarExtractOptions {
            allow_existing_dirs: true,
            ..Default::default()
        };
        extract_archive(decoder, target, &match_list, Flags::DEFAULT, options)
            .map_err(|err| format_err!("error extracting archive - {err:#}"))
    }
}
