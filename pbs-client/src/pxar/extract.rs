//! Extracting a pxar archive into a directory.
//!
//! Entries are decoded sequentially and created below the destination; a directory's
//! metadata is applied when its goodbye table is reached, so that creating its children does
//! not disturb its mtime. With a match list only matching entries are extracted, plus the
//! directories leading to them (created on demand).

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, format_err, Context, Error, Result};
use pathpatterns::{MatchEntry, MatchList, MatchType};
use pxar::format::{mode, Device};
use pxar::{Decoder, Entry, EntryKind, Metadata};

use super::apply::{self, Target};
use super::flags::Flags;

/// Receives an entry's error (its message names the entry); `Ok` continues, `Err` aborts.
pub type ErrorHandler = Box<dyn FnMut(Error) -> Result<()> + Send>;

/// Which kinds of existing objects may be replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverwriteFlags {
    /// Replace existing regular files (truncated and rewritten).
    pub files: bool,
    /// Replace existing symlinks (or other non-directories) by symlinks.
    pub symlinks: bool,
    /// Replace existing objects by hardlinks.
    pub hardlinks: bool,
}

impl OverwriteFlags {
    /// Overwrite everything.
    pub const fn all() -> Self {
        Self {
            files: true,
            symlinks: true,
            hardlinks: true,
        }
    }
}

/// Options of [`extract_archive`].
#[derive(Default)]
pub struct PxarExtractOptions {
    /// Accept directories that already exist instead of failing.
    pub allow_existing_dirs: bool,
    /// Which existing objects may be replaced.
    pub overwrite: OverwriteFlags,
    /// Abort on the first error. Otherwise each entry error goes to `on_error`
    /// (default: printed to stderr) and extraction continues.
    pub strict: bool,
    /// Handler for entry errors when not strict.
    pub on_error: Option<ErrorHandler>,
    /// Print each extracted path to stdout.
    pub verbose: bool,
}

/// Extract `decoder`'s archive into `destination` (which must exist and is where the root
/// directory's metadata goes). With a non-empty `match_list` only entries whose path (as
/// `/dir/name`) is included are extracted. `feature_flags` selects what gets restored
/// (normally [`Flags::DEFAULT`]).
pub fn extract_archive<R: Read, P: Read>(
    mut decoder: Decoder<R, P>,
    destination: &Path,
    match_list: &[MatchEntry],
    feature_flags: Flags,
    options: PxarExtractOptions,
) -> Result<()> {
    let root = open_dir_at(None, destination)
        .with_context(|| format!("failed to open destination directory {destination:?}"))?;
    let mut extractor = Extractor {
        destination: destination.to_path_buf(),
        root,
        dirs: Vec::new(),
        match_list,
        feature_flags,
        options,
        copy_buffer: Vec::new(),
    };
    let default_match = match_list.is_empty();

    loop {
        let entry = match decoder.next_entry() {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(err) => return Err(format_err!("failed to decode archive - {err}")),
        };
        match entry.kind {
            EntryKind::GoodbyeTable => {
                extractor.finish_directory(&entry.path)?;
                if extractor.dirs.is_empty() {
                    return Ok(());
                }
            }
            EntryKind::Directory if extractor.dirs.is_empty() => {
                let fd = extractor
                    .root
                    .try_clone()
                    .context("failed to duplicate fd")?;
                extractor.dirs.push(DirState {
                    name: CString::default(),
                    metadata: entry.metadata,
                    fd: Some(fd),
                    matched: default_match,
                    failed: false,
                });
            }
            _ => {
                let Entry {
                    path,
                    metadata,
                    kind,
                    ..
                } = entry;
                match extractor.extract_entry(&mut decoder, &path, metadata, kind) {
                    Ok(()) => {}
                    Err(EntryError::Fatal(err)) => return Err(err),
                    Err(EntryError::Entry(err)) => extractor
                        .report(err.context(format!("error extracting {:?}", path.display())))?,
                }
            }
        }
    }
    bail!(
        "archive ended before the root directory was complete (at offset {})",
        decoder.position()
    )
}

/// A directory on the path of the entry being extracted.
struct DirState {
    name: CString,
    metadata: Metadata,
    /// Open once the directory exists.
    fd: Option<OwnedFd>,
    /// Whether the directory itself matched (its children inherit this).
    matched: bool,
    /// Creating it failed: its contents are skipped.
    failed: bool,
}

enum EntryError {
    /// The archive cannot be read further.
    Fatal(Error),
    /// Only this entry failed.
    Entry(Error),
}

impl From<Error> for EntryError {
    fn from(err: Error) -> Self {
        EntryError::Entry(err)
    }
}

struct Extractor<'a> {
    destination: PathBuf,
    root: OwnedFd,
    dirs: Vec<DirState>,
    match_list: &'a [MatchEntry],
    feature_flags: Flags,
    options: PxarExtractOptions,
    /// Reused for every file's contents.
    copy_buffer: Vec<u8>,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| format_err!("name contains a NUL byte"))
}

/// Open a directory (relative to `parent` or absolute/cwd-relative without one).
fn open_dir_at(parent: Option<BorrowedFd<'_>>, path: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let dirfd = parent.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
    // SAFETY: valid fd and NUL-terminated path; the returned fd is owned by us.
    let fd = cvt(unsafe {
        libc::openat(
            dirfd,
            path.as_ptr(),
            libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    })?;
    // SAFETY: `fd` was just opened and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn unlink_at(parent: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: valid fd and NUL-terminated name.
    cvt(unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), 0) }).map(drop)
}

/// Run `create`; if it fails with EEXIST and `replace` is set, unlink the old object and retry.
fn create_replacing(
    parent: BorrowedFd<'_>,
    name: &CStr,
    replace: bool,
    mut create: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    match create() {
        Err(err) if replace && err.raw_os_error() == Some(libc::EEXIST) => {
            unlink_at(parent, name)?;
            create()
        }
        other => other,
    }
}

/// Open the directory containing a hardlink's root-relative `target` without following
/// symlinks (so a link can never point outside the destination); returns it and the last
/// component.
fn hardlink_target(root: BorrowedFd<'_>, target: &Path) -> Result<(OwnedFd, CString)> {
    let mut parts = Vec::new();
    for component in target.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::RootDir | Component::CurDir => {}
            _ => bail!("hardlink target {target:?} leaves the archive root"),
        }
    }
    let Some(last) = parts.pop() else {
        bail!("hardlink target is empty");
    };
    let mut dir = root.try_clone_to_owned()?;
    for part in parts {
        dir = open_dir_at(Some(dir.as_fd()), Path::new(part)).map_err(|err| {
            format_err!("hardlink target {target:?}: cannot open {part:?} - {err}")
        })?;
    }
    Ok((dir, cstring(last.as_bytes())?))
}

/// Size of the buffer file contents are copied through.
const COPY_BUFFER_SIZE: usize = 1024 * 1024;

/// Granularity of hole detection: runs of whole zero blocks are skipped, not written.
const HOLE_BLOCK: usize = 4096;

/// Copy `size` bytes from `input` into `file` through `buf`, leaving holes where whole blocks
/// are zero. Consecutive data blocks go out in one write.
fn sparse_copy(
    input: &mut dyn Read,
    file: &File,
    size: u64,
    buf: &mut [u8],
) -> Result<(), EntryError> {
    let mut pos = 0u64;
    // End of the data written so far: a trailing hole needs an explicit file size.
    let mut written_end = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match input.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(EntryError::Fatal(format_err!(
                        "failed to read file contents from the archive - {err}"
                    )))
                }
            }
        }
        if filled == 0 {
            break;
        }
        let data = &buf[..filled];
        let mut offset = 0;
        while offset < data.len() {
            // Skip a run of zero blocks, then write the run of data blocks after it.
            while offset < data.len() && is_zero_block(&data[offset..]) {
                offset += HOLE_BLOCK.min(data.len() - offset);
            }
            let start = offset;
            while offset < data.len() && !is_zero_block(&data[offset..]) {
                offset += HOLE_BLOCK.min(data.len() - offset);
            }
            if start < offset {
                let at = pos + start as u64;
                file.write_all_at(&data[start..offset], at)
                    .map_err(|err| format_err!("failed to write file contents - {err}"))?;
                written_end = at + (offset - start) as u64;
            }
        }
        pos += filled as u64;
    }
    if pos != size {
        return Err(EntryError::Fatal(format_err!(
            "file contents are incomplete: got {pos} of {size} bytes (split archive without payload input?)"
        )));
    }
    if written_end != size {
        file.set_len(size)
            .map_err(|err| format_err!("failed to set file size {size} - {err}"))?;
    }
    Ok(())
}

/// Whether the block at the start of `data` is all zeros.
fn is_zero_block(data: &[u8]) -> bool {
    data[..HOLE_BLOCK.min(data.len())].iter().all(|b| *b == 0)
}

impl Extractor<'_> {
    fn report(&mut self, err: Error) -> Result<()> {
        if self.options.strict {
            return Err(err);
        }
        match self.options.on_error.as_mut() {
            Some(handler) => handler(err),
            None => {
                eprintln!("error: {err:#}");
                Ok(())
            }
        }
    }

    fn matches(&self, path: &Path, file_mode: u64) -> bool {
        let inherited = self.dirs.last().is_some_and(|dir| dir.matched);
        match self
            .match_list
            .matches(path.as_os_str().as_bytes(), file_mode as u32)
        {
            Ok(Some(MatchType::Include)) => true,
            Ok(Some(MatchType::Exclude)) => false,
            Ok(None) | Err(_) => inherited,
        }
    }

    /// Make sure every directory on the stack exists; `None` if one of them failed.
    fn parent_fd(&mut self) -> Result<Option<BorrowedFd<'_>>> {
        let Some(first_missing) = self.dirs.iter().position(|dir| dir.fd.is_none()) else {
            return Ok(self
                .dirs
                .last()
                .and_then(|d| d.fd.as_ref())
                .map(|fd| fd.as_fd()));
        };
        if self.dirs.iter().any(|dir| dir.failed) {
            return Ok(None);
        }
        for index in first_missing..self.dirs.len() {
            match self.create_dir(index) {
                Ok(fd) => self.dirs[index].fd = Some(fd),
                Err(err) => {
                    self.dirs[index].failed = true;
                    let path = self.dir_path(index);
                    self.report(err.context(format!("error extracting {:?}", path.display())))?;
                    return Ok(None);
                }
            }
        }
        Ok(self
            .dirs
            .last()
            .and_then(|d| d.fd.as_ref())
            .map(|fd| fd.as_fd()))
    }

    fn dir_path(&self, index: usize) -> PathBuf {
        let mut path = PathBuf::from("/");
        for dir in &self.dirs[1..=index] {
            path.push(OsStr::from_bytes(dir.name.as_bytes()));
        }
        path
    }

    fn create_dir(&self, index: usize) -> Result<OwnedFd> {
        let parent = self.dirs[..index]
            .last()
            .and_then(|d| d.fd.as_ref())
            .ok_or_else(|| format_err!("parent directory is not open"))?;
        let dir = &self.dirs[index];
        // SAFETY: valid fd and NUL-terminated name.
        let created = cvt(unsafe { libc::mkdirat(parent.as_raw_fd(), dir.name.as_ptr(), 0o700) });
        match created {
            Ok(_) => {}
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                if !self.options.allow_existing_dirs {
                    bail!("directory already exists (use allow-existing-dirs)");
                }
            }
            Err(err) => bail!("failed to create directory - {err}"),
        }
        let fd = open_dir_at(
            Some(parent.as_fd()),
            Path::new(OsStr::from_bytes(dir.name.as_bytes())),
        )
        .map_err(|err| format_err!("failed to open directory - {err}"))?;
        apply::apply_chattr(
            fd.as_fd(),
            dir.metadata.stat.flags,
            self.feature_flags,
            Flags::INITIAL_CHATTR,
        )?;
        Ok(fd)
    }

    fn finish_directory(&mut self, path: &Path) -> Result<()> {
        let dir = self
            .dirs
            .pop()
            .ok_or_else(|| format_err!("goodbye table of {path:?} without open directory"))?;
        let Some(fd) = dir.fd else {
            return Ok(());
        };
        let feature_flags = self.feature_flags;
        let mut errors = Vec::new();
        apply::apply_metadata(
            Target::Fd(fd.as_fd()),
            &dir.metadata,
            feature_flags,
            &mut |err| {
                errors.push(err);
                Ok(())
            },
        )?;
        for err in errors {
            self.report(err.context(format!("error restoring metadata of {:?}", path.display())))?;
        }
        Ok(())
    }

    fn extract_entry<R: Read, P: Read>(
        &mut self,
        decoder: &mut Decoder<R, P>,
        path: &Path,
        metadata: Metadata,
        kind: EntryKind,
    ) -> Result<(), EntryError> {
        let name = cstring(path.file_name().unwrap_or_default().as_bytes())?;
        let file_mode = match kind {
            EntryKind::Hardlink { .. } => mode::IFREG,
            _ => metadata.stat.mode,
        };
        let matched = self.matches(path, file_mode);
        if let EntryKind::Directory = kind {
            self.dirs.push(DirState {
                name,
                metadata,
                fd: None,
                matched,
                failed: false,
            });
            if matched {
                self.parent_fd().map_err(EntryError::Fatal)?;
            }
            return Ok(());
        }
        if !matched {
            return Ok(());
        }
        let skip = match kind {
            EntryKind::Symlink(_) => !self.feature_flags.contains(Flags::WITH_SYMLINKS),
            EntryKind::Device(_) => !self.feature_flags.contains(Flags::WITH_DEVICE_NODES),
            EntryKind::Fifo => !self.feature_flags.contains(Flags::WITH_FIFOS),
            EntryKind::Socket => !self.feature_flags.contains(Flags::WITH_SOCKETS),
            _ => false,
        };
        if skip {
            return Ok(());
        }
        if self.options.verbose {
            println!("{path:?}");
        }
        // Objects without an open fd get their xattrs through their full path.
        let full_path = match kind {
            EntryKind::File { .. } | EntryKind::Hardlink { .. } => CString::default(),
            _ => cstring(
                self.destination
                    .join(path.strip_prefix("/").unwrap_or(path))
                    .as_os_str()
                    .as_bytes(),
            )?,
        };
        let feature_flags = self.feature_flags;
        let overwrite = self.options.overwrite;
        let root_fd = self.root.as_raw_fd();
        // Lent out while `parent` borrows `self`; an entry failing early drops it and the
        // next file allocates a new one.
        let mut copy_buffer = std::mem::take(&mut self.copy_buffer);
        let Some(parent) = self.parent_fd().map_err(EntryError::Fatal)? else {
            self.copy_buffer = copy_buffer;
            return Ok(());
        };
        let mut errors = Vec::new();
        let mut collect = |err: Error| {
            errors.push(err);
            Ok(())
        };
        match kind {
            EntryKind::File { size, .. } => {
                let mut open_flags =
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
                open_flags |= if overwrite.files {
                    libc::O_TRUNC
                } else {
                    libc::O_EXCL
                };
                let open = |open_flags| {
                    // SAFETY: valid fd and NUL-terminated name; the fd becomes owned below.
                    cvt(unsafe {
                        libc::openat(parent.as_raw_fd(), name.as_ptr(), open_flags, 0o600)
                    })
                };
                let fd = match open(open_flags) {
                    // A symlink in the way is replaced, not followed.
                    Err(err) if overwrite.files && err.raw_os_error() == Some(libc::ELOOP) => {
                        unlink_at(parent, &name).and_then(|()| open(open_flags | libc::O_EXCL))
                    }
                    other => other,
                }
                .map_err(|err| format_err!("failed to create file - {err}"))?;
                // SAFETY: freshly opened fd, owned by nobody else.
                let file = unsafe { File::from_raw_fd(fd) };
                apply::apply_chattr(
                    file.as_fd(),
                    metadata.stat.flags,
                    feature_flags,
                    Flags::INITIAL_CHATTR,
                )?;
                if size > 0 && copy_buffer.is_empty() {
                    copy_buffer.resize(COPY_BUFFER_SIZE, 0);
                }
                // Never read more than the file holds: small files need no big buffer.
                let buf_len = copy_buffer.len().min(size as usize);
                let buf = &mut copy_buffer[..buf_len];
                let copied = match decoder.contents() {
                    Some(mut contents) => sparse_copy(&mut contents, &file, size, buf),
                    None => sparse_copy(&mut io::empty(), &file, size, buf),
                };
                copied.map_err(|err| match err {
                    EntryError::Fatal(err) => EntryError::Fatal(
                        err.context(format!("error extracting {:?}", path.display())),
                    ),
                    other => other,
                })?;
                apply::apply_metadata(
                    Target::Fd(file.as_fd()),
                    &metadata,
                    feature_flags,
                    &mut collect,
                )?;
            }
            EntryKind::Symlink(target) => {
                let target = cstring(target.as_os_str().as_bytes())?;
                create_replacing(parent, &name, overwrite.symlinks, || {
                    // SAFETY: valid fd and NUL-terminated strings.
                    cvt(unsafe {
                        libc::symlinkat(target.as_ptr(), parent.as_raw_fd(), name.as_ptr())
                    })
                    .map(drop)
                })
                .map_err(|err| format_err!("failed to create symlink - {err}"))?;
                let target = Target::At {
                    parent,
                    name: &name,
                    path: &full_path,
                    is_symlink: true,
                };
                apply::apply_metadata(target, &metadata, feature_flags, &mut collect)?;
            }
            EntryKind::Hardlink { target, .. } => {
                // SAFETY: `self.root` stays open for the whole extraction.
                let root = unsafe { BorrowedFd::borrow_raw(root_fd) };
                let (target_dir, target_name) = hardlink_target(root, &target)?;
                create_replacing(parent, &name, overwrite.hardlinks, || {
                    // SAFETY: valid fds and NUL-terminated strings.
                    cvt(unsafe {
                        libc::linkat(
                            target_dir.as_raw_fd(),
                            target_name.as_ptr(),
                            parent.as_raw_fd(),
                            name.as_ptr(),
                            0,
                        )
                    })
                    .map(drop)
                })
                .map_err(|err| format_err!("failed to create hardlink to {target:?} - {err}"))?;
            }
            EntryKind::Device(device) => {
                mknod(parent, &name, metadata.stat.mode, device)?;
                apply_special(
                    parent,
                    &name,
                    &full_path,
                    &metadata,
                    feature_flags,
                    &mut collect,
                )?;
            }
            EntryKind::Fifo | EntryKind::Socket => {
                mknod(parent, &name, metadata.stat.mode, Device::default())?;
                apply_special(
                    parent,
                    &name,
                    &full_path,
                    &metadata,
                    feature_flags,
                    &mut collect,
                )?;
            }
            EntryKind::Directory | EntryKind::GoodbyeTable => {}
        }
        self.copy_buffer = copy_buffer;
        for err in errors {
            self.report(err.context(format!("error restoring metadata of {:?}", path.display())))
                .map_err(EntryError::Fatal)?;
        }
        Ok(())
    }
}

fn mknod(parent: BorrowedFd<'_>, name: &CStr, file_mode: u64, device: Device) -> Result<()> {
    let node_mode = (file_mode & (mode::IFMT | 0o600)) as libc::mode_t;
    // SAFETY: valid fd and NUL-terminated name.
    cvt(unsafe {
        libc::mknodat(
            parent.as_raw_fd(),
            name.as_ptr(),
            node_mode,
            device.to_dev_t() as libc::dev_t,
        )
    })
    .map_err(|err| format_err!("failed to create special file - {err}"))?;
    Ok(())
}

fn apply_special(
    parent: BorrowedFd<'_>,
    name: &CStr,
    path: &CStr,
    metadata: &Metadata,
    feature_flags: Flags,
    on_error: &mut apply::StepErrorHandler<'_>,
) -> Result<()> {
    let target = Target::At {
        parent,
        name,
        path,
        is_symlink: false,
    };
    apply::apply_metadata(target, metadata, feature_flags, on_error)
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
