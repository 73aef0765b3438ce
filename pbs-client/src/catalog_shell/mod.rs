//! The interactive catalog shell: navigate an archive through its catalog, inspect entries in
//! the pxar archive, select entries and restore them.
//!
//! The shell works on any seekable catalog stream and any positioned-read pxar source, so the
//! same code serves a downloaded catalog plus a remote archive and local files in tests.

mod input;
mod path;
mod restore;
mod stat;
mod terminal;

use std::ffi::OsStr;
use std::io::{Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, format_err, Context, Error, Result};
use pathpatterns::{MatchEntry, MatchList, MatchPattern, MatchType, PatternFlag};
use pbs_cli::{CommandTree, Param, ParsedArgs, ValueKind};
use pbs_datastore::catalog::{CatalogReader, DirEntry};
use pxar::accessor::{Accessor, ReadAt};

pub use input::{stdin_line_source, Completer, LineSource, StdinLines};
pub use stat::{format_stat, mode_string};
pub use terminal::TerminalLines;

/// Program name used in the shell's usage texts.
const SHELL_PROGRAM: &str = "";

/// A positioned-read source shared between the accessor and the restore decoder.
pub struct SharedReadAt<R>(Arc<R>);

impl<R: ReadAt> ReadAt for SharedReadAt<R> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.0.read_at(buf, offset)
    }
}

/// The shell state: catalog, archive, current position and selection.
pub struct Shell<C: Read + Seek, R: ReadAt> {
    catalog: CatalogReader<C>,
    /// The archive bytes (also read sequentially by restores).
    archive: Arc<R>,
    accessor: Accessor<SharedReadAt<R>>,
    /// Current directory; the bottom element is the archive root.
    position: Vec<DirEntry>,
    /// Selected entries by key (canonical path or `find` pattern), in insertion order.
    selection: Vec<(Vec<u8>, MatchEntry)>,
    commands: CommandTree,
}

/// The shell's command map.
fn command_tree() -> CommandTree {
    let path = |description| Param::required("path", description);
    let target = Param::required("target", "Target directory to restore to.");
    let mut entries = vec![
        (
            "pwd",
            CommandTree::leaf("List the current working directory.", vec![], vec![]),
        ),
        (
            "cd",
            CommandTree::leaf(
                "Change the current working directory to the new directory.",
                vec![Param::optional("path", "Target directory.")],
                vec!["path"],
            ),
        ),
        (
            "ls",
            CommandTree::leaf(
                "List the content of working directory or given path.",
                vec![Param::optional("path", "Path to list.")],
                vec!["path"],
            ),
        ),
        (
            "stat",
            CommandTree::leaf(
                "Read the metadata for a given directory entry.",
                vec![path("Path to entry.")],
                vec!["path"],
            ),
        ),
        (
            "select",
            CommandTree::leaf(
                "Select an entry for restore.",
                vec![path("Path to entry.")],
                vec!["path"],
            ),
        ),
        (
            "deselect",
            CommandTree::leaf(
                "Deselect an entry for restore.",
                vec![path("Path to entry.")],
                vec!["path"],
            ),
        ),
        (
            "clear-selected",
            CommandTree::leaf(
                "Clear the list of files selected for restore.",
                vec![],
                vec![],
            ),
        ),
        (
            "list-selected",
            CommandTree::leaf(
                "List entries currently selected for restore.",
                vec![Param::flag(
                    "patterns",
                    "List match patterns instead of the matching files.",
                )],
                vec![],
            ),
        ),
        (
            "find",
            CommandTree::leaf(
                "Find entries in the catalog matching the given match pattern.",
                vec![
                    Param::required(
                        "pattern",
                        "Match pattern for matching files in the catalog.",
                    ),
                    Param::flag("select", "Add matching filenames to list for restore."),
                ],
                vec!["pattern"],
            ),
        ),
        (
            "restore-selected",
            CommandTree::leaf(
                "Restore the selected entries to the given target path.",
                vec![target.clone()],
                vec!["target"],
            ),
        ),
        (
            "restore",
            CommandTree::leaf(
                "Restore the sub-archive given by the current working directory to target.",
                vec![
                    target,
                    Param::optional("pattern", "Match pattern to limit files for restore."),
                ],
                vec!["target"],
            ),
        ),
        ("exit", CommandTree::leaf("Exit the shell.", vec![], vec![])),
        (
            "help",
            CommandTree::leaf(
                "Get help about specified command (or sub-command).",
                vec![
                    Param {
                        name: "command",
                        kind: ValueKind::Array,
                        optional: true,
                        description:
                            "Command. This may be a list in order to specify nested sub-commands.",
                    },
                    Param::flag("verbose", "Verbose help."),
                ],
                vec!["command"],
            ),
        ),
    ];
    entries.sort_by_key(|(name, _)| *name);
    CommandTree::Group(entries)
}

/// Usage texts are generated with an empty program name: drop the space it leaves behind.
fn strip_program_name(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let line = match line.strip_prefix("Usage:  ") {
            Some(rest) => {
                out.push_str("Usage: ");
                rest
            }
            None if line.starts_with(' ') && !line.starts_with("  ") => &line[1..],
            None => line,
        };
        out.push_str(line);
    }
    out
}

impl<C: Read + Seek, R: ReadAt> Shell<C, R> {
    /// A shell over `catalog`, positioned at `archive_root` (the archive's catalog directory,
    /// e.g. `root.pxar.didx`), reading metadata and contents from the pxar `archive` of
    /// `archive_size` bytes.
    pub fn new(
        catalog: CatalogReader<C>,
        archive_root: DirEntry,
        archive: R,
        archive_size: u64,
    ) -> Result<Self> {
        let archive = Arc::new(archive);
        let accessor = Accessor::new_unified(SharedReadAt(Arc::clone(&archive)), archive_size)
            .map_err(|err| format_err!("unable to open pxar archive - {err}"))?;
        if !archive_root.is_directory() {
            bail!(
                "archive root {:?} is not a directory in the catalog",
                String::from_utf8_lossy(&archive_root.name)
            );
        }
        Ok(Self {
            catalog,
            archive,
            accessor,
            position: vec![archive_root],
            selection: Vec::new(),
            commands: command_tree(),
        })
    }

    /// A shell for archive `archive_name` (server file name, e.g. `root.pxar.didx`) of a
    /// snapshot catalog; `archive not found in catalog` if it has no such directory.
    pub fn for_archive(
        mut catalog: CatalogReader<C>,
        archive_name: &str,
        archive: R,
        archive_size: u64,
    ) -> Result<Self> {
        let root = catalog.root()?;
        let archive_root = catalog
            .lookup(&root, archive_name.as_bytes())?
            .filter(DirEntry::is_directory)
            .ok_or_else(|| format_err!("archive not found in catalog"))?;
        Self::new(catalog, archive_root, archive, archive_size)
    }

    /// The prompt: `pxar:/dir/sub > `, non-UTF-8 components as `<non-utf8-dir>`.
    pub fn prompt(&self) -> String {
        let mut prompt = String::from("pxar:");
        if self.position.len() <= 1 {
            prompt.push('/');
        }
        for dir in &self.position[1..] {
            prompt.push('/');
            match std::str::from_utf8(&dir.name) {
                Ok(name) => prompt.push_str(name),
                Err(_) => prompt.push_str("<non-utf8-dir>"),
            }
        }
        prompt.push_str(" > ");
        prompt
    }

    /// Reads lines until `exit` or the end of input; command output goes to `out`, errors
    /// (`Error: ...`) to `err`.
    pub fn run(
        &mut self,
        lines: &mut dyn LineSource,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<()> {
        loop {
            let prompt = self.prompt();
            let Some(line) = lines.read_line(&prompt, &mut |partial| self.complete(partial))?
            else {
                break;
            };
            if line == "exit" {
                break;
            }
            if let Err(error) = self.handle_line(&line, out) {
                writeln!(err, "Error: {error:#}")?;
            }
            out.flush()?;
        }
        out.flush()?;
        Ok(())
    }

    /// Candidates for the last word of `line`: command names for the first word, else
    /// catalog paths (directories with a trailing `/`).
    pub fn complete(&mut self, line: &str) -> Vec<String> {
        let words: Vec<&str> = line.split(' ').collect();
        let last = words.last().copied().unwrap_or_default();
        if words.len() <= 1 {
            let CommandTree::Group(entries) = &self.commands else {
                return Vec::new();
            };
            return entries
                .iter()
                .map(|(name, _)| *name)
                .filter(|name| name.starts_with(last))
                .map(String::from)
                .collect();
        }
        let (dir, prefix) = match last.rfind('/') {
            Some(pos) => (&last[..=pos], &last[pos + 1..]),
            None => ("", last),
        };
        let stack = if dir.is_empty() {
            self.position.clone()
        } else {
            // The trailing `.` makes a symlinked directory resolve to its target.
            match self.resolve(format!("{dir}.").as_bytes(), true) {
                Ok(stack) => stack,
                Err(_) => return Vec::new(),
            }
        };
        let Some(parent) = stack.last().filter(|entry| entry.is_directory()) else {
            return Vec::new();
        };
        let Ok(children) = self.catalog.read_dir(parent) else {
            return Vec::new();
        };
        children
            .iter()
            .filter_map(|child| {
                let name = std::str::from_utf8(&child.name).ok()?;
                name.starts_with(prefix).then(|| {
                    let slash = if child.is_directory() { "/" } else { "" };
                    format!("{dir}{name}{slash}")
                })
            })
            .collect()
    }

    fn handle_line(&mut self, line: &str, out: &mut dyn Write) -> Result<()> {
        let words = crate::tools::split_command_line(line)?;
        if words.is_empty() {
            return Ok(());
        }
        let invocation = pbs_cli::parse_command_line(&self.commands, &words)?;
        let name = invocation.path.first().copied().unwrap_or_default();
        let args = invocation.args;
        self.execute(name, &args, out)
    }

    fn execute(&mut self, command: &str, args: &ParsedArgs, out: &mut dyn Write) -> Result<()> {
        match command {
            "pwd" => {
                let path = self.position_path();
                writeln!(out, "{:?}", Path::new(OsStr::from_bytes(&path)))?;
            }
            "cd" => self.cd(args.get("path"))?,
            "ls" => self.ls(args.get("path"), out)?,
            "stat" => self.stat(args.required("path")?, out)?,
            "select" => self.select(args.required("path")?, out)?,
            "deselect" => self.deselect(args.required("path")?, out)?,
            "clear-selected" => {
                self.selection.clear();
                writeln!(out, "cleared selection")?;
            }
            "list-selected" => self.list_selected(args.flag("patterns", false)?, out)?,
            "find" => self.find(args.required("pattern")?, args.flag("select", false)?, out)?,
            "restore-selected" => {
                if self.selection.is_empty() {
                    bail!("no entries selected");
                }
                let list: Vec<MatchEntry> = self.selection.iter().map(|(_, e)| e.clone()).collect();
                self.restore(Path::new(args.required("target")?), &list)?;
            }
            "restore" => {
                let list = match args.get("pattern") {
                    Some(pattern) => vec![MatchEntry::parse_pattern(
                        pattern,
                        PatternFlag::PATH_NAME,
                        MatchType::Include,
                    )?],
                    None => Vec::new(),
                };
                self.restore(Path::new(args.required("target")?), &list)?;
            }
            "exit" => {}
            "help" => {
                let text = pbs_cli::help_text(
                    SHELL_PROGRAM,
                    &self.commands,
                    args.get_all("command"),
                    args.flag("verbose", false)?,
                )?;
                write!(out, "{}", strip_program_name(&text))?;
            }
            other => bail!("unknown command '{other}'"),
        }
        Ok(())
    }

    /// `/` + names of the stack above the archive root.
    fn stack_path(stack: &[DirEntry]) -> Vec<u8> {
        let mut path = Vec::new();
        for entry in &stack[1..] {
            path.push(b'/');
            path.extend_from_slice(&entry.name);
        }
        if path.is_empty() {
            path.push(b'/');
        }
        path
    }

    fn position_path(&self) -> Vec<u8> {
        Self::stack_path(&self.position)
    }

    fn cd(&mut self, path: Option<&str>) -> Result<()> {
        let Some(path) = path else {
            self.position.truncate(1);
            return Ok(());
        };
        let stack = self.resolve(path.as_bytes(), false)?;
        match stack.last() {
            Some(entry) if entry.is_directory() => {
                self.position = stack;
                Ok(())
            }
            _ => bail!("not a directory"),
        }
    }

    fn ls(&mut self, path: Option<&str>, out: &mut dyn Write) -> Result<()> {
        let stack = match path {
            Some(path) => self.resolve(path.as_bytes(), true)?,
            None => self.position.clone(),
        };
        let entry = stack
            .last()
            .ok_or_else(|| format_err!("empty path stack"))?;
        if entry.is_directory() {
            for child in self.catalog.read_dir(entry)? {
                out.write_all(&child.name)?;
                out.write_all(b"\n")?;
            }
        } else {
            out.write_all(&entry.name)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn stat(&mut self, path: &str, out: &mut dyn Write) -> Result<()> {
        let stack = self.resolve(path.as_bytes(), true)?;
        let archive_path = Self::stack_path(&stack);
        let entry = self.archive_entry(&archive_path)?;
        out.write_all(format_stat(&archive_path, entry.kind(), entry.metadata()).as_bytes())?;
        Ok(())
    }

    /// The archive's entry at `path` (archive-root relative, starting with `/`).
    fn archive_entry(&self, path: &[u8]) -> Result<pxar::accessor::FileEntry> {
        self.accessor
            .lookup(Path::new(OsStr::from_bytes(path)))?
            .ok_or_else(|| {
                format_err!(
                    "catalog entry {:?} not found in the archive",
                    String::from_utf8_lossy(path)
                )
            })
    }

    fn select(&mut self, path: &str, out: &mut dyn Write) -> Result<()> {
        let stack = self.resolve(path.as_bytes(), true)?;
        let key = Self::stack_path(&stack);
        let shown = Path::new(OsStr::from_bytes(&key));
        if self.selection.iter().any(|(k, _)| *k == key) {
            writeln!(out, "path already selected: {shown:?}")?;
        } else {
            writeln!(out, "added path: {shown:?}")?;
            let entry = MatchEntry::include(MatchPattern::literal(key.clone()));
            self.selection.push((key, entry));
        }
        Ok(())
    }

    fn deselect(&mut self, path: &str, out: &mut dyn Write) -> Result<()> {
        let stack = self.resolve(path.as_bytes(), true)?;
        let key = Self::stack_path(&stack);
        let shown = Path::new(OsStr::from_bytes(&key));
        match self.selection.iter().position(|(k, _)| *k == key) {
            Some(index) => {
                self.selection.remove(index);
                writeln!(out, "removed path from selection: {shown:?}")?;
            }
            None => writeln!(out, "path not selected: {shown:?}")?,
        }
        Ok(())
    }

    /// Runs the catalog `find` below the archive root with `list`, printing raw paths.
    fn find_matches(
        &mut self,
        list: &(impl MatchList + ?Sized),
        out: &mut dyn Write,
    ) -> Result<usize> {
        let root = self.position[0].clone();
        let mut count = 0;
        let mut path = Vec::new();
        let mut write_error: Option<Error> = None;
        self.catalog.find(&root, &mut path, list, &mut |found| {
            count += 1;
            if let Err(err) = out.write_all(found).and_then(|()| out.write_all(b"\n")) {
                write_error = Some(err.into());
            }
            Ok(())
        })?;
        match write_error {
            Some(err) => Err(err),
            None => Ok(count),
        }
    }

    fn list_selected(&mut self, patterns: bool, out: &mut dyn Write) -> Result<()> {
        if patterns {
            for (key, _) in &self.selection {
                writeln!(out, "{:?}", Path::new(OsStr::from_bytes(key)))?;
            }
            return Ok(());
        }
        let list: Vec<MatchEntry> = self.selection.iter().map(|(_, e)| e.clone()).collect();
        self.find_matches(&list, out)?;
        Ok(())
    }

    fn find(&mut self, pattern: &str, select: bool, out: &mut dyn Write) -> Result<()> {
        let entry = MatchEntry::parse_pattern(pattern, PatternFlag::PATH_NAME, MatchType::Include)
            .with_context(|| format!("invalid match pattern {pattern:?}"))?;
        let list = [entry];
        let count = self.find_matches(&list, out)?;
        let [entry] = list;
        if select && count > 0 {
            let key = pattern.as_bytes().to_vec();
            match self.selection.iter_mut().find(|(k, _)| *k == key) {
                Some(existing) => existing.1 = entry,
                None => self.selection.push((key, entry)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
