//! Creating a pxar archive from a directory tree.
//!
//! The walk is `openat`-relative throughout: every directory is read through its own file
//! descriptor, every entry is `lstat`ed and opened relative to its parent, so renames of
//! ancestors during the walk cannot redirect it. Children are archived in byte order of their
//! names; exclude patterns come from the caller and from `.pxarexclude` files.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc::Sender;

use anyhow::{bail, Context, Result};
use pathpatterns::{MatchEntry, MatchList, MatchType, PatternFlag};
use pbs_datastore::catalog::BackupCatalogWriter;
use pxar::encoder::{Encoder, LinkOffset, SeqWrite};
use pxar::format::{mode, Device};
use pxar::Metadata;

use super::flags::{fs_magic::is_virtual_file_system, Flags};
use super::metadata::get_metadata;
use super::reuse::{CachedFile, Deferred, FlushCause, PreviousArchiveRef, ReuseState};
use super::tools::{self, errno, Dir};
use crate::inject::PayloadHint;

/// Default limit of listed entries on the current directory path (`--entries-max`).
pub const ENCODER_MAX_ENTRIES: usize = 1024 * 1024;

/// Name of the per-directory exclude file.
const PXAREXCLUDE: &CStr = c".pxarexclude";
/// Name of the synthetic file recording the command-line patterns (v1 root only).
const PXAREXCLUDE_CLI: &[u8] = b".pxarexclude-cli";

/// Size of the buffer file contents are streamed through.
const COPY_BUFFER_SIZE: usize = 1024 * 1024;

/// Options of an archive run.
#[derive(Clone, Debug)]
pub struct PxarCreateOptions {
    /// Devices (`st_dev`) whose directories are descended into; the source directory's device
    /// is always added. `None` descends into all file systems (`--all-file-systems`); the
    /// default `Some(empty)` stays on the source's file system; add `--include-dev` devices.
    pub device_set: Option<HashSet<u64>>,
    /// Command-line exclude patterns in order (`--exclude`).
    pub patterns: Vec<MatchEntry>,
    /// Limit of listed entries on the current directory path (`--entries-max`).
    pub entries_max: usize,
    /// Append the exclude pattern `lost+found` (`--skip-lost-and-found`).
    pub skip_lost_and_found: bool,
    /// Ignore `E2BIG` from xattr calls (`--skip-e2big-xattr`).
    pub skip_e2big_xattr: bool,
    /// Report every archived path (relative to the root) through the message callback.
    pub verbose: bool,
}

impl Default for PxarCreateOptions {
    fn default() -> Self {
        Self {
            device_set: Some(HashSet::new()),
            patterns: Vec::new(),
            entries_max: ENCODER_MAX_ENTRIES,
            skip_lost_and_found: false,
            skip_e2big_xattr: false,
            verbose: false,
        }
    }
}

/// The device set for `--include-dev` paths: `st_dev` of `stat(path)` (symlinks followed).
pub fn include_dev_set<P: AsRef<Path>>(paths: &[P]) -> Result<HashSet<u64>> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|path| {
            let path = path.as_ref();
            std::fs::metadata(path)
                .map(|meta| meta.dev())
                .with_context(|| format!("unable to stat include-dev path {path:?}"))
        })
        .collect()
}

/// What an archive run wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Size of the (metadata) archive stream in bytes.
    pub archive_size: u64,
    /// Size of the payload stream (split archives only).
    pub payload_size: Option<u64>,
    /// Regular files, fresh or reused (the synthetic `.pxarexclude-cli` included).
    pub files: u64,
    /// Content bytes of those files.
    pub file_bytes: u64,
    /// Regular files whose contents were read from disk.
    pub files_read: u64,
    /// Metadata mode: unchanged files whose payload was taken from reused chunks.
    pub reused_files: u64,
    /// Content bytes of the reused files.
    pub reused_bytes: u64,
    /// Metadata mode: regular files encoded afresh (new, changed, or reuse rejected).
    pub reencoded_files: u64,
    /// Content bytes of the re-encoded files.
    pub reencoded_bytes: u64,
    /// Metadata mode: unchanged files re-encoded because reuse broke the padding rule.
    pub reuse_rejected_files: u64,
    /// Bytes of previous chunks injected into the payload stream.
    pub injected_bytes: u64,
    /// Number of injected chunks.
    pub injected_chunks: u64,
    /// Injected bytes that no reused file references (waste in partially used chunks).
    pub padding_bytes: u64,
    /// Subdirectories (the root not counted).
    pub directories: u64,
    /// Hardlinks (second and later occurrences).
    pub hardlinks: u64,
    /// Symlinks, devices, fifos and sockets.
    pub special_files: u64,
    /// Warnings reported (vanished or unreadable files, size changes, bad patterns).
    pub warnings: u64,
}

/// The directory to archive.
pub enum SourceDir<'a> {
    /// A path, opened with `O_DIRECTORY|O_NOFOLLOW`.
    Path(&'a Path),
    /// An already opened directory (read from its current position; pass a fresh one).
    Fd(OwnedFd),
}

impl<'a> From<&'a Path> for SourceDir<'a> {
    fn from(path: &'a Path) -> Self {
        SourceDir::Path(path)
    }
}

impl From<OwnedFd> for SourceDir<'_> {
    fn from(fd: OwnedFd) -> Self {
        SourceDir::Fd(fd)
    }
}

impl SourceDir<'_> {
    fn open(self) -> Result<Dir> {
        match self {
            SourceDir::Path(path) => {
                let name = tools::c_name(path.as_os_str().as_bytes())?;
                Dir::openat(libc::AT_FDCWD, &name, libc::O_NOFOLLOW)
                    .with_context(|| format!("unable to open directory {path:?}"))
            }
            SourceDir::Fd(fd) => Ok(Dir::from_fd(fd).context("source is not a directory")?),
        }
    }
}

/// An error while archiving a particular path.
#[derive(Debug)]
pub struct ArchiveError {
    /// Path relative to the archive root.
    pub path: Vec<u8>,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error at {:?}: {:#}",
            display_path(&self.path),
            self.error
        )
    }
}

impl std::error::Error for ArchiveError {}

fn display_path(path: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(path))
}

/// Create a v1 (unified) archive of `source` and write it to `writer`.
///
/// `feature_flags` is normally [`Flags::DEFAULT`]. The catalog, if given, receives the
/// archive's entries in archive order (the caller wraps them in the archive's directory).
/// Warnings and log lines (vanished files, mount points, verbose paths) go to `messages`.
pub fn create_archive<'a, 'h, W: Write>(
    source: impl Into<SourceDir<'a>>,
    writer: W,
    feature_flags: Flags,
    options: PxarCreateOptions,
    catalog: Option<&'h mut dyn BackupCatalogWriter>,
    messages: &'h mut dyn FnMut(String),
) -> Result<ArchiveStats> {
    let mut stats = run(
        source.into(),
        Outputs::<W, W>::Unified(writer),
        feature_flags,
        options,
        catalog,
        Hooks {
            messages,
            payload_hints: None,
            before_entry: None,
        },
    )?;
    stats.payload_size = None;
    Ok(stats)
}

/// Create a v2 split archive of `source`: metadata stream to `writer`, file contents to
/// `payload_writer`. Command-line patterns go into the PRELUDE instead of `.pxarexclude-cli`.
///
/// `payload_hints` (if given) receives the payload-stream offset of every regular file's
/// PAYLOAD header before it is written (a suggested chunk boundary), and first the end of
/// the start marker (a forced one).
pub fn create_archive_split<'a, 'h, W: Write, P: Write>(
    source: impl Into<SourceDir<'a>>,
    writer: W,
    payload_writer: P,
    feature_flags: Flags,
    options: PxarCreateOptions,
    payload_hints: Option<&'h mut dyn FnMut(PayloadHint)>,
    messages: &'h mut dyn FnMut(String),
) -> Result<ArchiveStats> {
    run(
        source.into(),
        Outputs::Split(writer, payload_writer),
        feature_flags,
        options,
        None,
        Hooks {
            messages,
            payload_hints,
            before_entry: None,
        },
    )
}

/// Create a v2 split archive like [`create_archive_split`] in change-detection mode
/// `metadata`: regular files whose metadata equals their entry in `reference` are not read;
/// their PAYLOAD items are taken over from the previous payload stream by injecting whole
/// previous chunks, announced on `hints` before any payload byte behind them is written.
/// The payload stream position counts injected bytes as if written. `hints` also receives
/// the suggested and forced chunk boundaries of [`create_archive_split`].
///
/// Without a reference this is [`create_archive_split`]. With one, a change-detection
/// summary goes to `messages` at the end.
#[allow(clippy::too_many_arguments)]
pub fn create_archive_split_with_reference<'a, 'h, W: Write, P: Write>(
    source: impl Into<SourceDir<'a>>,
    writer: W,
    payload_writer: P,
    feature_flags: Flags,
    options: PxarCreateOptions,
    reference: Option<PreviousArchiveRef>,
    hints: Sender<PayloadHint>,
    messages: &'h mut dyn FnMut(String),
) -> Result<ArchiveStats> {
    let reuse = reference
        .map(|reference| ReuseState::new(reference, hints.clone()))
        .transpose()?;
    // A hint nobody listens to any more only means the upload has stopped; the upload
    // reports why.
    let mut send_hint = move |hint: PayloadHint| {
        let _ = hints.send(hint);
    };
    run_with_reuse(
        source.into(),
        Outputs::Split(writer, payload_writer),
        feature_flags,
        options,
        None,
        reuse,
        Hooks {
            messages,
            payload_hints: Some(&mut send_hint),
            before_entry: None,
        },
    )
}

enum Outputs<W, P> {
    Unified(W),
    Split(W, P),
}

/// Called with an entry's relative path.
type EntryHook<'a> = &'a mut dyn FnMut(&[u8]);

/// Callbacks of one run.
struct Hooks<'a> {
    messages: &'a mut dyn FnMut(String),
    /// Receives the payload chunker's hints (split archives).
    payload_hints: Option<&'a mut dyn FnMut(PayloadHint)>,
    /// Called with the relative path right before an entry is opened (tests use it to
    /// change the tree mid-walk).
    before_entry: Option<EntryHook<'a>>,
}

/// Counts the bytes passing through, so the stream sizes are known after `finish`.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.count += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn buffered<W: Write>(inner: W) -> BufWriter<CountingWriter<W>> {
    BufWriter::with_capacity(256 * 1024, CountingWriter { inner, count: 0 })
}

fn finish_output<W: Write>(out: BufWriter<CountingWriter<W>>) -> Result<u64> {
    let counting = out
        .into_inner()
        .map_err(|err| err.into_error())
        .context("failed to flush archive output")?;
    Ok(counting.count)
}

fn run<'h, W: Write, P: Write>(
    source: SourceDir<'_>,
    outputs: Outputs<W, P>,
    feature_flags: Flags,
    options: PxarCreateOptions,
    catalog: Option<&'h mut dyn BackupCatalogWriter>,
    hooks: Hooks<'h>,
) -> Result<ArchiveStats> {
    run_with_reuse(
        source,
        outputs,
        feature_flags,
        options,
        catalog,
        None,
        hooks,
    )
}

fn run_with_reuse<'h, W: Write, P: Write>(
    source: SourceDir<'_>,
    outputs: Outputs<W, P>,
    feature_flags: Flags,
    options: PxarCreateOptions,
    catalog: Option<&'h mut dyn BackupCatalogWriter>,
    reuse: Option<ReuseState>,
    hooks: Hooks<'h>,
) -> Result<ArchiveStats> {
    let mut source_dir = source.open()?;
    let fd = source_dir.as_raw_fd();
    let fs_magic = tools::fs_magic(fd).context("statfs on the source directory failed")?;
    if is_virtual_file_system(fs_magic) {
        bail!("refusing to backup a virtual file system");
    }
    let mut fs_feature_flags = Flags::from_magic(fs_magic);
    let stat = tools::fstat(fd).context("stat on the source directory failed")?;
    let metadata = get_metadata(
        fd,
        &stat,
        feature_flags & fs_feature_flags,
        fs_magic,
        &mut fs_feature_flags,
        options.skip_e2big_xattr,
    )
    .context("failed to get metadata for source directory")?;

    let mut device_set = options.device_set;
    if let Some(set) = device_set.as_mut() {
        set.insert(stat.st_dev);
    }
    let mut patterns = options.patterns;
    if options.skip_lost_and_found {
        patterns.push(MatchEntry::parse_pattern(
            "lost+found",
            PatternFlag::PATH_NAME,
            MatchType::Exclude,
        )?);
    }
    let cli_content = pathpatterns::cli_exclude_file_content(&patterns);

    let split = matches!(outputs, Outputs::Split(..));
    let (out, payload_out) = match outputs {
        Outputs::Unified(w) => (buffered(w), None),
        Outputs::Split(w, p) => (buffered(w), Some(buffered(p))),
    };
    let prelude = if split && !patterns.is_empty() {
        let text = std::str::from_utf8(&cli_content)
            .context("exclude patterns are not valid UTF-8 and cannot be stored in the prelude")?;
        Some(serde_json::to_vec(
            &serde_json::json!({ "exclude-patterns": text }),
        )?)
    } else {
        None
    };
    let mut encoder = Encoder::new(out, &metadata, payload_out, prelude.as_deref())?;
    let mut hooks = hooks;
    if let (Some(hint), Some(pos)) = (hooks.payload_hints.as_mut(), encoder.payload_position()) {
        // The start marker is a chunk of its own: the files' chunks start at the same offset
        // in every backup, so re-used chunks keep their offsets.
        hint(PayloadHint::ForcedBoundary(pos));
    }

    let mut archiver = Archiver {
        feature_flags,
        fs_feature_flags,
        fs_magic,
        cli_pattern_count: patterns.len(),
        patterns,
        write_exclude_cli: !split,
        catalog,
        path: Vec::new(),
        entry_counter: 0,
        entry_limit: options.entries_max,
        current_st_dev: stat.st_dev,
        device_set,
        hardlinks: HashMap::new(),
        skip_e2big_xattr: options.skip_e2big_xattr,
        verbose: options.verbose,
        buffer: vec![0u8; COPY_BUFFER_SIZE],
        hooks,
        stats: ArchiveStats::default(),
        reuse,
    };
    archiver.archive_dir_contents(&mut encoder, &mut source_dir, true)?;
    archiver.finish_reuse(&mut encoder)?;
    let payload_position = encoder.payload_position();
    if let (Some(hint), Some(pos)) = (archiver.hooks.payload_hints.as_mut(), payload_position) {
        // The tail marker is a chunk of its own too: the last file's chunk is re-usable as a
        // whole.
        hint(PayloadHint::ForcedBoundary(pos));
    }
    let mut stats = archiver.stats;
    let (out, payload_out) = encoder.finish()?;
    stats.archive_size = finish_output(out)?;
    let written = payload_out.map(finish_output).transpose()?;
    // Injected chunks count as part of the payload stream; 16 bytes are the tail marker.
    stats.payload_size = written.map(|written| payload_position.map_or(written, |pos| pos + 16));
    Ok(stats)
}

/// A directory entry selected for archiving.
struct ListEntry {
    name: CString,
    stat: libc::stat,
}

/// State of one archive run.
struct Archiver<'a> {
    feature_flags: Flags,
    /// What the file system currently walked supports.
    fs_feature_flags: Flags,
    fs_magic: i64,
    patterns: Vec<MatchEntry>,
    /// Number of command-line patterns at the start of `patterns`.
    cli_pattern_count: usize,
    /// Append `.pxarexclude-cli` to the root (v1 only).
    write_exclude_cli: bool,
    catalog: Option<&'a mut dyn BackupCatalogWriter>,
    /// Path of the current entry relative to the root, `/`-joined, no leading slash.
    path: Vec<u8>,
    entry_counter: usize,
    entry_limit: usize,
    current_st_dev: u64,
    device_set: Option<HashSet<u64>>,
    /// First occurrence of multiply linked regular files by (st_dev, st_ino).
    hardlinks: HashMap<(u64, u64), (Vec<u8>, LinkOffset)>,
    skip_e2big_xattr: bool,
    verbose: bool,
    buffer: Vec<u8>,
    hooks: Hooks<'a>,
    stats: ArchiveStats,
    /// Metadata mode with a previous archive: the look-ahead cache and injections.
    reuse: Option<ReuseState>,
}

impl Archiver<'_> {
    /// Effective feature flags for the current file system.
    fn flags(&self) -> Flags {
        self.feature_flags & self.fs_feature_flags
    }

    fn warn(&mut self, message: String) {
        self.stats.warnings += 1;
        (self.hooks.messages)(message);
    }

    fn log(&mut self, message: String) {
        (self.hooks.messages)(message);
    }

    fn current_path(&self) -> &Path {
        display_path(&self.path)
    }

    /// Archive the children of `dir` (whose own entry is already written).
    fn archive_dir_contents<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        dir: &mut Dir,
        is_root: bool,
    ) -> Result<()> {
        let entry_counter = self.entry_counter;
        let pattern_count = self.patterns.len();
        let result = self.archive_dir_entries(encoder, dir, is_root);
        // The directory's listing and exclude entries apply to its subtree only.
        self.entry_counter = entry_counter;
        self.patterns.truncate(pattern_count);
        result
    }

    fn archive_dir_entries<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        dir: &mut Dir,
        is_root: bool,
    ) -> Result<()> {
        self.read_pxar_excludes(dir.as_raw_fd())?;
        let list = self.list_directory(dir, is_root)?;
        let dir_path = std::mem::take(&mut self.path);
        let result = self.archive_list(encoder, dir.as_raw_fd(), &dir_path, list);
        self.path = dir_path;
        result?;
        if is_root && self.write_exclude_cli && self.cli_pattern_count > 0 {
            self.encode_pxarexclude_cli(encoder)?;
        }
        Ok(())
    }

    /// Archive the listed children of the directory `dir_fd` at `dir_path`.
    fn archive_list<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        dir_fd: RawFd,
        dir_path: &[u8],
        list: Vec<ListEntry>,
    ) -> Result<()> {
        for entry in list {
            self.path.clear();
            self.path.extend_from_slice(dir_path);
            if !self.path.is_empty() {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(entry.name.to_bytes());
            if let Some(hook) = self.hooks.before_entry.as_mut() {
                hook(&self.path);
            }
            if self.verbose {
                let line = format!("{:?}", self.current_path());
                self.log(line);
            }
            self.add_entry(encoder, dir_fd, &entry)
                .map_err(|error| self.wrap_error(error))?;
        }
        Ok(())
    }

    fn wrap_error(&self, error: anyhow::Error) -> anyhow::Error {
        if error.downcast_ref::<ArchiveError>().is_some() {
            error
        } else {
            ArchiveError {
                path: self.path.clone(),
                error,
            }
            .into()
        }
    }

    /// Open `name` below `parent`. `ENOENT` (a warning if the entry was listed before) and
    /// `EACCES` (a warning) yield `None`; `O_NOATIME` is dropped on `EPERM`.
    fn open_file(
        &mut self,
        parent: RawFd,
        name: &CStr,
        flags: libc::c_int,
        existed: bool,
    ) -> Result<Option<OwnedFd>> {
        let flags = flags | libc::O_CLOEXEC | libc::O_NOCTTY;
        let mut noatime = libc::O_NOATIME;
        loop {
            match tools::openat(parent, name, flags | noatime) {
                Ok(fd) => return Ok(Some(fd)),
                Err(err) => match errno(&err) {
                    libc::ENOENT => {
                        if existed {
                            self.report_vanished_file();
                        }
                        return Ok(None);
                    }
                    libc::EACCES => {
                        // Listed entries are named by their path, exclude files by name.
                        let message = if existed {
                            format!(
                                "failed to open file: {:?}: access denied",
                                self.current_path()
                            )
                        } else {
                            format!("failed to open file: {name:?}: access denied")
                        };
                        self.warn(message);
                        return Ok(None);
                    }
                    libc::EPERM if noatime != 0 => noatime = 0,
                    _ => return Err(err).with_context(|| format!("failed to open file {name:?}")),
                },
            }
        }
    }

    fn report_vanished_file(&mut self) {
        let message = format!(
            "warning: file vanished while reading: {:?}",
            self.current_path()
        );
        self.warn(message);
    }

    /// Append the entries of the directory's `.pxarexclude` to the pattern list.
    fn read_pxar_excludes(&mut self, dir_fd: RawFd) -> Result<()> {
        // O_NONBLOCK: a fifo named like the exclude file must not stall the walk.
        let flags = libc::O_RDONLY | libc::O_NONBLOCK;
        let Some(fd) = self.open_file(dir_fd, PXAREXCLUDE, flags, false)? else {
            return Ok(());
        };
        let mut content = Vec::new();
        if let Err(err) = File::from(fd).read_to_end(&mut content) {
            let message = format!(
                "ignoring .pxarexclude after read error in {:?}: {err}",
                self.current_path()
            );
            self.warn(message);
            return Ok(());
        }
        let mut bad_lines = Vec::new();
        let entries = pathpatterns::parse_exclude_file(&content, &self.path, |_line, err| {
            bad_lines.push(err.to_string())
        });
        for err in bad_lines {
            let message = format!("bad pattern in {:?}: {err}", self.current_path());
            self.warn(message);
        }
        self.patterns.extend(entries);
        Ok(())
    }

    /// List, filter, `lstat` and sort the entries of `dir`.
    fn list_directory(&mut self, dir: &mut Dir, is_root: bool) -> Result<Vec<ListEntry>> {
        let dir_fd = dir.as_raw_fd();
        let mut list = Vec::new();
        let mut match_path = Vec::new();
        while let Some(name) = dir.next_name() {
            let name = name
                .with_context(|| format!("failed to read directory {:?}", self.current_path()))?;
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." || (is_root && bytes == PXAREXCLUDE_CLI) {
                continue;
            }
            match_path.clear();
            match_path.push(b'/');
            match_path.extend_from_slice(&self.path);
            if !self.path.is_empty() {
                match_path.push(b'/');
            }
            match_path.extend_from_slice(bytes);

            let mut stat = None;
            let matched = self.patterns.matches(&match_path, || {
                tools::lstatat(dir_fd, &name).map(|st| {
                    stat = Some(st);
                    st.st_mode
                })
            });
            match matched {
                Ok(Some(MatchType::Exclude)) => continue,
                Ok(_) => (),
                Err(err) if errno(&err) == libc::ENOENT => continue,
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!("stat failed on {:?}", display_path(&match_path[1..]))
                    })
                }
            }
            let stat = match stat {
                Some(stat) => stat,
                None => match tools::lstatat(dir_fd, &name) {
                    Ok(stat) => stat,
                    Err(err) if errno(&err) == libc::ENOENT => {
                        let message = format!(
                            "warning: file vanished while reading: {:?}",
                            display_path(&match_path[1..])
                        );
                        self.warn(message);
                        continue;
                    }
                    Err(err) => {
                        return Err(err).with_context(|| {
                            format!("stat failed on {:?}", display_path(&match_path[1..]))
                        })
                    }
                },
            };

            self.entry_counter += 1;
            if self.entry_counter > self.entry_limit {
                bail!(
                    "exceeded allowed number of file entries (> {})",
                    self.entry_limit
                );
            }
            list.push(ListEntry { name, stat });
        }
        list.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(list)
    }

    fn add_entry<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        parent: RawFd,
        entry: &ListEntry,
    ) -> Result<()> {
        let stat = &entry.stat;
        let file_type = stat.st_mode & libc::S_IFMT;
        let open_mode = if file_type == libc::S_IFREG || file_type == libc::S_IFDIR {
            libc::O_RDONLY
        } else {
            libc::O_PATH
        };
        let Some(fd) = self.open_file(parent, &entry.name, open_mode | libc::O_NOFOLLOW, true)?
        else {
            return Ok(());
        };

        let mut match_path = Vec::with_capacity(self.path.len() + 1);
        match_path.push(b'/');
        match_path.extend_from_slice(&self.path);
        if self.patterns.matches(&match_path, stat.st_mode)? == Some(MatchType::Exclude) {
            return Ok(());
        }

        let metadata = get_metadata(
            fd.as_raw_fd(),
            stat,
            self.flags(),
            self.fs_magic,
            &mut self.fs_feature_flags,
            self.skip_e2big_xattr,
        )?;
        let name = entry.name.to_bytes();

        match metadata.stat.file_type() {
            mode::IFREG => self.add_regular_file(encoder, fd, name, metadata, stat),
            mode::IFDIR => {
                let mut dir = Dir::from_fd(fd)?;
                if let Some(catalog) = self.catalog.as_mut() {
                    catalog.start_directory(name)?;
                }
                self.add_directory(encoder, &mut dir, name, &metadata, stat)?;
                if let Some(catalog) = self.catalog.as_mut() {
                    catalog.end_directory()?;
                }
                self.stats.directories += 1;
                Ok(())
            }
            mode::IFSOCK => {
                if let Some(catalog) = self.catalog.as_mut() {
                    catalog.add_socket(name)?;
                }
                let name = name.to_vec();
                self.emit(encoder, Deferred::Socket { name, metadata })?;
                self.stats.special_files += 1;
                Ok(())
            }
            mode::IFIFO => {
                if let Some(catalog) = self.catalog.as_mut() {
                    catalog.add_fifo(name)?;
                }
                let name = name.to_vec();
                self.emit(encoder, Deferred::Fifo { name, metadata })?;
                self.stats.special_files += 1;
                Ok(())
            }
            mode::IFLNK => {
                if let Some(catalog) = self.catalog.as_mut() {
                    catalog.add_symlink(name)?;
                }
                let target = tools::readlink_fd(fd.as_raw_fd()).context("readlink failed")?;
                let name = name.to_vec();
                self.emit(
                    encoder,
                    Deferred::Symlink {
                        name,
                        metadata,
                        target,
                    },
                )?;
                self.stats.special_files += 1;
                Ok(())
            }
            mode::IFBLK | mode::IFCHR => {
                if let Some(catalog) = self.catalog.as_mut() {
                    if metadata.stat.file_type() == mode::IFBLK {
                        catalog.add_block_device(name)?;
                    } else {
                        catalog.add_char_device(name)?;
                    }
                }
                let device = Device::from_dev_t(stat.st_rdev);
                let name = name.to_vec();
                self.emit(
                    encoder,
                    Deferred::Device {
                        name,
                        metadata,
                        device,
                    },
                )?;
                self.stats.special_files += 1;
                Ok(())
            }
            other => bail!("encountered unknown file type: 0x{other:x} (0o{other:o})"),
        }
    }

    fn add_regular_file<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        fd: OwnedFd,
        name: &[u8],
        metadata: Metadata,
        stat: &libc::stat,
    ) -> Result<()> {
        let link_key = (stat.st_dev, stat.st_ino);
        if stat.st_nlink > 1 {
            if let Some(reuse) = self.reuse.as_mut() {
                if reuse.has_cached_link(link_key) {
                    // The target's link offset is known once the cache is encoded.
                    if let Some(catalog) = self.catalog.as_mut() {
                        catalog.add_hardlink(name)?;
                    }
                    reuse.defer(Deferred::CachedHardlink {
                        name: name.to_vec(),
                        key: link_key,
                    });
                    self.stats.hardlinks += 1;
                    return Ok(());
                }
            }
            if let Some((target, offset)) = self.hardlinks.get(&link_key) {
                if let Some(catalog) = self.catalog.as_mut() {
                    catalog.add_hardlink(name)?;
                }
                let entry = Deferred::Hardlink {
                    name: name.to_vec(),
                    target: target.clone(),
                    offset: *offset,
                };
                self.emit(encoder, entry)?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
        }

        if let Some(reuse) = self.reuse.as_mut() {
            if let Some((range, previous_size)) = reuse.reusable(name, &metadata)? {
                if !reuse.continues_run(&range) {
                    self.flush_reuse_cache(encoder, FlushCause::RunEnd)?;
                }
                let file = CachedFile {
                    fd,
                    name: name.to_vec(),
                    path: self.path.clone(),
                    metadata,
                    stat: *stat,
                    range,
                    previous_size,
                };
                let full = match self.reuse.as_mut() {
                    Some(reuse) => reuse.cache_file(file),
                    None => false,
                };
                if full {
                    self.flush_reuse_cache(encoder, FlushCause::CacheFull)?;
                }
                return Ok(());
            }
            self.flush_reuse_cache(encoder, FlushCause::RunEnd)?;
        }
        self.encode_file(encoder, fd, name, &metadata, stat)
    }

    /// Encode a regular file with its contents read from `fd`.
    fn encode_file<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        fd: OwnedFd,
        name: &[u8],
        metadata: &Metadata,
        stat: &libc::stat,
    ) -> Result<()> {
        let size = stat.st_size as u64;
        if let Some(catalog) = self.catalog.as_mut() {
            catalog.add_file(name, size, stat.st_mtime)?;
        }
        if let Some(reuse) = self.reuse.as_mut() {
            reuse.commit(encoder)?;
        }
        if let (Some(hint), Some(pos)) = (
            self.hooks.payload_hints.as_mut(),
            encoder.payload_position(),
        ) {
            hint(PayloadHint::SuggestedBoundary(pos));
        }

        let mut file = File::from(fd);
        let mut remaining = size;
        let mut grew = false;
        let mut writer = encoder.create_file(metadata, name, size)?;
        while remaining != 0 {
            let got = match file.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(got) => got,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err).context("failed to read file contents"),
            };
            let take = if got as u64 > remaining {
                grew = true;
                remaining as usize
            } else {
                got
            };
            writer.write_content(&self.buffer[..take])?;
            remaining -= take as u64;
        }
        let shrunk = remaining > 0;
        if shrunk {
            let zeros = remaining.min(self.buffer.len() as u64) as usize;
            self.buffer[..zeros].fill(0);
            while remaining != 0 {
                let fill = remaining.min(zeros as u64) as usize;
                writer.write_content(&self.buffer[..fill])?;
                remaining -= fill as u64;
            }
        }
        let offset = writer.finish()?;

        if grew {
            let message = format!(
                "warning: file size increased while reading: {:?}",
                self.current_path()
            );
            self.warn(message);
        }
        if shrunk {
            let message = format!(
                "warning: file size shrunk while reading: {:?}, file will be padded with zeros!",
                self.current_path()
            );
            self.warn(message);
        }
        self.stats.files += 1;
        self.stats.file_bytes += size;
        self.stats.files_read += 1;
        if self.reuse.is_some() {
            self.stats.reencoded_files += 1;
            self.stats.reencoded_bytes += size;
        }
        if stat.st_nlink > 1 {
            self.hardlinks
                .insert((stat.st_dev, stat.st_ino), (self.path.clone(), offset));
        }
        Ok(())
    }

    fn add_directory<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        dir: &mut Dir,
        name: &[u8],
        metadata: &Metadata,
        stat: &libc::stat,
    ) -> Result<()> {
        self.emit(
            encoder,
            Deferred::DirStart {
                name: name.to_vec(),
                metadata: metadata.clone(),
            },
        )?;

        let old_fs_magic = self.fs_magic;
        let old_fs_feature_flags = self.fs_feature_flags;
        let old_st_dev = self.current_st_dev;

        let mut result = Ok(());
        let mut skip_contents = false;
        if old_st_dev != stat.st_dev {
            match tools::fs_magic(dir.as_raw_fd()) {
                Ok(magic) => {
                    self.fs_magic = magic;
                    self.fs_feature_flags = Flags::from_magic(magic);
                    self.current_st_dev = stat.st_dev;
                    skip_contents = is_virtual_file_system(magic)
                        || self
                            .device_set
                            .as_ref()
                            .is_some_and(|set| !set.contains(&stat.st_dev));
                }
                Err(err) => result = Err(err).context("statfs failed"),
            }
        }

        if result.is_ok() {
            if skip_contents {
                let message = format!("skipping mount point: {:?}", self.current_path());
                self.log(message);
            } else {
                result = self.archive_subdir_contents(encoder, dir, name);
            }
        }

        self.fs_magic = old_fs_magic;
        self.fs_feature_flags = old_fs_feature_flags;
        self.current_st_dev = old_st_dev;

        // After a failure the encoder holds a partial entry; the whole run is aborted anyway.
        result?;
        self.emit(encoder, Deferred::DirEnd)
    }

    /// Archive a subdirectory's children, following it in the previous archive too.
    fn archive_subdir_contents<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        dir: &mut Dir,
        name: &[u8],
    ) -> Result<()> {
        if let Some(reuse) = self.reuse.as_mut() {
            reuse.enter_dir(name)?;
        }
        let result = self.archive_dir_contents(encoder, dir, false);
        if let Some(reuse) = self.reuse.as_mut() {
            reuse.leave_dir();
        }
        result
    }

    /// Append `.pxarexclude-cli` with the command-line patterns to the root (v1 only).
    fn encode_pxarexclude_cli<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
    ) -> Result<()> {
        let content =
            pathpatterns::cli_exclude_file_content(&self.patterns[..self.cli_pattern_count]);
        if let Some(catalog) = self.catalog.as_mut() {
            catalog.add_file(PXAREXCLUDE_CLI, content.len() as u64, 0)?;
        }
        let metadata = Metadata::from_stat(pxar::format::Stat {
            mode: mode::IFREG | 0o600,
            ..Default::default()
        });
        encoder.allow_unsorted_next_entry();
        let mut writer = encoder.create_file(&metadata, PXAREXCLUDE_CLI, content.len() as u64)?;
        writer.write_content(&content)?;
        writer.finish()?;
        self.stats.files += 1;
        self.stats.file_bytes += content.len() as u64;
        Ok(())
    }
}

/// Encode an entry that needs no file contents.
fn encode_entry<W: SeqWrite, P: SeqWrite>(
    encoder: &mut Encoder<W, P>,
    entry: Deferred,
) -> Result<()> {
    match entry {
        Deferred::DirStart { name, metadata } => {
            encoder.create_directory(&name, &metadata)?;
        }
        Deferred::DirEnd => encoder.finish_directory()?,
        Deferred::Symlink {
            name,
            metadata,
            target,
        } => encoder.add_symlink(&metadata, &name, &target)?,
        Deferred::Device {
            name,
            metadata,
            device,
        } => encoder.add_device(&metadata, &name, device)?,
        Deferred::Fifo { name, metadata } => encoder.add_fifo(&metadata, &name)?,
        Deferred::Socket { name, metadata } => encoder.add_socket(&metadata, &name)?,
        Deferred::Hardlink {
            name,
            target,
            offset,
        } => encoder.add_hardlink(&name, &target, offset)?,
        Deferred::File(file) => bail!(
            "{:?}: a file with contents cannot be encoded without them",
            display_path(&file.path)
        ),
        Deferred::CachedHardlink { name, .. } => bail!(
            "hardlink {:?}: target offset unknown",
            String::from_utf8_lossy(&name)
        ),
    }
    Ok(())
}

/// Byte count with a binary unit, e.g. `1.50 MiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

mod reuse_walk;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod reuse_tests;
