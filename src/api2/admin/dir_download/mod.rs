//! Directory downloads out of pxar archives: the directory and everything below it as a zip
//! archive or a zstd-compressed tar, written front to back into a [`ChannelWriter`] so that
//! only a few pieces of the archive exist in memory at a time.
//!
//! Entries are named relative to the directory's parent, so the directory's own name is the
//! first component (the archive root has no entry of its own). Order is archive order,
//! every directory before its contents. Metadata: mode, mtime (both formats), uid and gid (tar).
//! Special files: zip holds directories and regular files only (symlinks, devices, fifos and
//! sockets are left out); tar holds everything but sockets. A hardlink becomes, in zip, a copy
//! of the file; in tar, a link to the target when the target is part of the download or was
//! already stored under another name, otherwise the file itself (later links point to it).

pub mod tar;
pub mod zip;

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Error};
use bytes::{Bytes, BytesMut};
use hyper::body::Frame;
use pxar::accessor::{Accessor, FileEntry, ReadAt};
use pxar::format::mode;
use pxar::{EntryKind, Metadata};

use self::tar::{TarEntry, TarKind, TarWriter};
use self::zip::{ZipEntry, ZipWriter};
use pbs_rest_server::BoxError;

/// Size of the pieces a download is handed to the connection in.
pub const PIECE_SIZE: usize = 64 * 1024;
/// zstd level of `.tar.zst` downloads.
const ZSTD_LEVEL: i32 = 3;

/// Pieces of a streamed download; an error aborts the body.
pub type PieceSender = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

/// Container format of a directory download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirFormat {
    /// Zip with deflated files.
    Zip,
    /// tar compressed with zstd.
    TarZstd,
}

/// `Write` into a download channel in pieces of [`PIECE_SIZE`] (runs on a blocking thread).
pub struct ChannelWriter {
    sender: PieceSender,
    buf: BytesMut,
}

impl ChannelWriter {
    /// Writes into `sender`.
    pub fn new(sender: PieceSender) -> Self {
        Self {
            sender,
            buf: BytesMut::with_capacity(PIECE_SIZE),
        }
    }

    /// Sends what is buffered, then ends the body with an error so the client sees a broken
    /// download instead of a short one.
    pub fn fail(mut self, message: String) {
        if self.send_buffered().is_ok() {
            let _ = self.sender.blocking_send(Err(message.into()));
        }
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = self.buf.split().freeze();
        self.buf.reserve(PIECE_SIZE);
        self.sender
            .blocking_send(Ok(Frame::data(piece)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "download closed by client"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let taken = data.len().min(PIECE_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..taken]);
        if self.buf.len() >= PIECE_SIZE {
            self.send_buffered()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered()
    }
}

/// One thing to store, in archive order.
enum Item<'a> {
    Directory,
    File {
        size: u64,
        contents: &'a mut dyn io::Read,
    },
    Hardlink(&'a [u8]),
    Symlink(&'a [u8]),
    Device(pxar::format::Device),
    Fifo,
}

/// Where the items go.
trait ArchiveSink {
    /// Whether hardlinks can be stored as links (otherwise they are stored as files).
    fn keeps_links(&self) -> bool;
    fn add(&mut self, name: &[u8], meta: &Metadata, item: Item) -> io::Result<()>;
}

struct ZipSink<W: Write>(ZipWriter<W>);

impl<W: Write> ArchiveSink for ZipSink<W> {
    fn keeps_links(&self) -> bool {
        false
    }

    fn add(&mut self, name: &[u8], meta: &Metadata, item: Item) -> io::Result<()> {
        let entry = ZipEntry {
            name,
            mtime: meta.stat.mtime.secs,
            mode: meta.stat.mode as u32,
        };
        match item {
            Item::Directory => self.0.add_directory(&entry),
            Item::File { contents, .. } => self.0.add_file(&entry, contents),
            Item::Hardlink(_) | Item::Symlink(_) | Item::Device(_) | Item::Fifo => Ok(()),
        }
    }
}

struct TarSink<W: Write>(TarWriter<W>);

impl<W: Write> ArchiveSink for TarSink<W> {
    fn keeps_links(&self) -> bool {
        true
    }

    fn add(&mut self, name: &[u8], meta: &Metadata, item: Item) -> io::Result<()> {
        let mut entry = TarEntry {
            name,
            kind: TarKind::Directory,
            mode: meta.stat.mode,
            uid: u64::from(meta.stat.uid),
            gid: u64::from(meta.stat.gid),
            mtime: meta.stat.mtime.secs,
            link: b"",
            device: (0, 0),
        };
        match item {
            Item::Directory => self.0.add(&entry),
            Item::File { size, contents } => {
                entry.kind = TarKind::File;
                self.0.add_file(&entry, size, contents)
            }
            Item::Hardlink(target) => {
                entry.kind = TarKind::Hardlink;
                entry.link = target;
                self.0.add(&entry)
            }
            Item::Symlink(target) => {
                entry.kind = TarKind::Symlink;
                entry.link = target;
                self.0.add(&entry)
            }
            Item::Device(device) => {
                entry.kind = if meta.stat.file_type() == mode::IFBLK {
                    TarKind::BlockDevice
                } else {
                    TarKind::CharDevice
                };
                entry.device = (device.major, device.minor);
                self.0.add(&entry)
            }
            Item::Fifo => {
                entry.kind = TarKind::Fifo;
                self.0.add(&entry)
            }
        }
    }
}

/// Writes `dir` and everything below it into `out` as `format`.
pub fn write_directory<R: ReadAt, P: ReadAt, W: Write>(
    accessor: &Accessor<R, P>,
    dir: &FileEntry,
    format: DirFormat,
    out: W,
) -> Result<W, Error> {
    match format {
        DirFormat::Zip => {
            let mut sink = ZipSink(ZipWriter::new(out));
            Walk::new(accessor, dir).run(&mut sink)?;
            Ok(sink.0.finish()?)
        }
        DirFormat::TarZstd => {
            let encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)
                .context("unable to start zstd compression")?;
            let mut sink = TarSink(TarWriter::new(encoder));
            Walk::new(accessor, dir).run(&mut sink)?;
            Ok(sink.0.finish()?.finish()?)
        }
    }
}

/// Depth-first walk below one directory.
struct Walk<'a, R: ReadAt, P: ReadAt> {
    accessor: &'a Accessor<R, P>,
    dir: &'a FileEntry,
    /// Entry names are the paths relative to this.
    base: PathBuf,
    /// Hardlink targets outside the download, by archive path: the name their contents were
    /// first stored under.
    stored_links: HashMap<PathBuf, Vec<u8>>,
}

impl<'a, R: ReadAt, P: ReadAt> Walk<'a, R, P> {
    fn new(accessor: &'a Accessor<R, P>, dir: &'a FileEntry) -> Self {
        let base = dir.path().parent().unwrap_or(Path::new("/")).to_path_buf();
        Self {
            accessor,
            dir,
            base,
            stored_links: HashMap::new(),
        }
    }

    fn name_of(&self, path: &Path) -> Vec<u8> {
        let relative = path.strip_prefix(&self.base).unwrap_or(path);
        let bytes = relative.as_os_str().as_bytes();
        bytes.strip_prefix(b"/").unwrap_or(bytes).to_vec()
    }

    fn run(&mut self, sink: &mut dyn ArchiveSink) -> Result<(), Error> {
        let name = self.name_of(self.dir.path());
        if !name.is_empty() {
            sink.add(&name, self.dir.metadata(), Item::Directory)
                .with_context(|| self.describe(self.dir.path()))?;
        }
        let mut stack = vec![self.children(self.dir)?];
        while let Some(level) = stack.last_mut() {
            let Some(entry) = level.next() else {
                stack.pop();
                continue;
            };
            self.add_entry(&entry, sink)
                .with_context(|| self.describe(entry.path()))?;
            if matches!(entry.kind(), EntryKind::Directory) {
                stack.push(self.children(&entry)?);
            }
        }
        Ok(())
    }

    fn describe(&self, path: &Path) -> String {
        format!("unable to add {path:?} to the download")
    }

    fn children(&self, dir: &FileEntry) -> Result<std::vec::IntoIter<FileEntry>, Error> {
        Ok(self
            .accessor
            .read_dir(dir)
            .with_context(|| format!("unable to read directory {:?}", dir.path()))?
            .into_iter())
    }

    fn add_entry(&mut self, entry: &FileEntry, sink: &mut dyn ArchiveSink) -> Result<(), Error> {
        let name = self.name_of(entry.path());
        let meta = entry.metadata();
        match entry.kind() {
            EntryKind::Directory => sink.add(&name, meta, Item::Directory)?,
            EntryKind::File { .. } => self.add_file(&name, entry, sink)?,
            EntryKind::Hardlink { .. } => {
                let target = self.accessor.follow_hardlink(entry)?;
                let link = if sink.keeps_links() {
                    self.link_name(target.path())
                } else {
                    None
                };
                match link {
                    Some(link) => sink.add(&name, target.metadata(), Item::Hardlink(&link))?,
                    None => {
                        self.add_file(&name, &target, sink)?;
                        if sink.keeps_links() {
                            self.stored_links.insert(target.path().to_path_buf(), name);
                        }
                    }
                }
            }
            EntryKind::Symlink(target) => {
                let target = target.as_os_str().as_bytes();
                sink.add(&name, meta, Item::Symlink(target))?
            }
            EntryKind::Device(device) => sink.add(&name, meta, Item::Device(*device))?,
            EntryKind::Fifo => sink.add(&name, meta, Item::Fifo)?,
            EntryKind::Socket | EntryKind::GoodbyeTable => {}
        }
        Ok(())
    }

    /// The name a hardlink to `target` points at, if the target's contents are (or were
    /// already) part of the download.
    fn link_name(&self, target: &Path) -> Option<Vec<u8>> {
        if target.starts_with(self.dir.path()) {
            return Some(self.name_of(target));
        }
        self.stored_links.get(target).cloned()
    }

    fn add_file(
        &self,
        name: &[u8],
        file: &FileEntry,
        sink: &mut dyn ArchiveSink,
    ) -> Result<(), Error> {
        let contents = self.accessor.open_contents(file)?;
        let size = contents.size();
        let mut reader = contents.reader();
        sink.add(
            name,
            file.metadata(),
            Item::File {
                size,
                contents: &mut reader,
            },
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
