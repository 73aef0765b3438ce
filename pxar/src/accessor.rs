//! Random access to an archive through its goodbye tables.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::decoder::check_tail;
use crate::entry::{Entry, EntryKind};
use crate::error::{Error, Result};
use crate::format::{
    self, goodbye::search_tree, hash_filename, GoodbyeItem, Header, GOODBYE_ITEM_SIZE, HEADER_SIZE,
};
use crate::items::{self, read_header, ItemRead};
use crate::metadata::Metadata;

/// Positioned reads without a cursor.
pub trait ReadAt {
    /// Read up to `buf.len()` bytes at `offset`; 0 means end of data.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(available) = self.get(start..) else {
            return Ok(0);
        };
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        Ok(n)
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_slice().read_at(buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }
}

/// Fill `buf` from `offset`, never reading past `end`.
fn read_exact_at(
    input: &(impl ReadAt + ?Sized),
    end: u64,
    buf: &mut [u8],
    offset: u64,
    what: &str,
) -> Result<()> {
    if offset.checked_add(buf.len() as u64).is_none_or(|e| e > end) {
        return Err(Error::Truncated {
            offset,
            what: what.to_string(),
        });
    }
    let mut done = 0;
    while done < buf.len() {
        match input.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                return Err(Error::Truncated {
                    offset: offset + done as u64,
                    what: what.to_string(),
                })
            }
            Ok(n) => done += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(Error::read(offset + done as u64, what, err)),
        }
    }
    Ok(())
}

/// A cursor over a `ReadAt` source limited to its size.
struct Cursor<'a, R: ReadAt + ?Sized> {
    input: &'a R,
    pos: u64,
    end: u64,
}

impl<R: ReadAt + ?Sized> ItemRead for Cursor<'_, R> {
    fn pos(&self) -> u64 {
        self.pos
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        read_exact_at(self.input, self.end, buf, self.pos, what)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        match self.pos.checked_add(n) {
            Some(new) if new <= self.end => {
                self.pos = new;
                Ok(())
            }
            _ => Err(Error::Truncated {
                offset: self.pos,
                what: what.to_string(),
            }),
        }
    }

    fn read_vec(&mut self, n: u64, what: &str) -> Result<Vec<u8>> {
        if self.pos.checked_add(n).is_none_or(|e| e > self.end) {
            return Err(Error::Truncated {
                offset: self.pos,
                what: what.to_string(),
            });
        }
        let mut out = vec![0u8; n as usize];
        self.read_exact(&mut out, what)?;
        Ok(out)
    }
}

/// Location of a directory's ENTRY and goodbye table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DirInfo {
    /// Offset of the directory's ENTRY header (for the root of v2: after version/prelude).
    entry_offset: u64,
    goodbye_start: u64,
    count: u64,
}

/// An entry found through the accessor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// The decoded entry.
    pub entry: Entry,
    dir: Option<DirInfo>,
}

impl FileEntry {
    /// The entry's path.
    pub fn path(&self) -> &Path {
        &self.entry.path
    }

    /// The entry's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.entry.metadata
    }

    /// The entry's kind.
    pub fn kind(&self) -> &EntryKind {
        &self.entry.kind
    }

    /// Number of children for directories.
    pub fn child_count(&self) -> Option<u64> {
        self.dir.map(|d| d.count)
    }
}

/// Random-access reader over a v1 archive or a v2 `.mpxar` with optional `.ppxar`.
pub struct Accessor<R: ReadAt, P: ReadAt = R> {
    input: R,
    size: u64,
    payload: Option<(P, u64)>,
    split: bool,
    prelude: Option<Vec<u8>>,
    root_entry_offset: u64,
}

impl<R: ReadAt> Accessor<R, R> {
    /// Accessor for a unified archive of `size` bytes (or a v2 metadata archive alone).
    pub fn new_unified(input: R, size: u64) -> Result<Self> {
        Self::new(input, size, None)
    }
}

impl<R: ReadAt, P: ReadAt> Accessor<R, P> {
    /// Open an archive of `size` bytes; `payload` is the `.ppxar` source and its size.
    pub fn new(input: R, size: u64, payload: Option<(P, u64)>) -> Result<Self> {
        let mut cursor = Cursor {
            input: &input,
            pos: 0,
            end: size,
        };
        let (mut header, mut offset) = read_header(&mut cursor)?;
        let mut split = false;
        let mut prelude = None;
        if header.htype == format::PXAR_FORMAT_VERSION {
            header.expect_content_size(offset, 8)?;
            let mut bytes = [0u8; 8];
            cursor.read_exact(&mut bytes, "FORMAT_VERSION")?;
            match u64::from_le_bytes(bytes) {
                1 => {}
                2 => split = true,
                other => {
                    return Err(Error::corrupt(
                        offset,
                        format!("unknown format version {other}"),
                    ))
                }
            }
            (header, offset) = read_header(&mut cursor)?;
            if header.htype == format::PXAR_PRELUDE {
                prelude = Some(cursor.read_vec(header.content_size(), "PRELUDE")?);
                (header, offset) = read_header(&mut cursor)?;
            }
        }
        if !matches!(header.htype, format::PXAR_ENTRY | format::PXAR_ENTRY_V1) {
            return Err(items::unexpected(&header, offset, "root ENTRY"));
        }
        if let Some((source, payload_size)) = &payload {
            if !split {
                return Err(Error::invalid(
                    "payload input given for an archive that is not split",
                ));
            }
            let mut bytes = [0u8; 16];
            read_exact_at(
                source,
                *payload_size,
                &mut bytes,
                0,
                "payload stream start marker",
            )?;
            let start = Header::from_bytes(&bytes);
            if start.htype != format::PXAR_PAYLOAD_START_MARKER || start.full_size != 16 {
                return Err(Error::corrupt(
                    0,
                    "payload stream does not start with PAYLOAD_START_MARKER",
                ));
            }
            let tail_offset = payload_size.saturating_sub(16);
            read_exact_at(
                source,
                *payload_size,
                &mut bytes,
                tail_offset,
                "payload tail",
            )?;
            let tail = Header::from_bytes(&bytes);
            if tail.htype != format::PXAR_PAYLOAD_TAIL_MARKER
                || tail.full_size != 16
                || *payload_size < 32
            {
                return Err(Error::corrupt(
                    tail_offset,
                    "payload stream does not end with PAYLOAD_TAIL_MARKER",
                ));
            }
        }
        Ok(Self {
            input,
            size,
            payload,
            split,
            prelude,
            root_entry_offset: offset,
        })
    }

    /// Whether this is a v2 split archive.
    pub fn is_split(&self) -> bool {
        self.split
    }

    /// PRELUDE content of a v2 archive.
    pub fn prelude(&self) -> Option<&[u8]> {
        self.prelude.as_deref()
    }

    fn cursor(&self, pos: u64) -> Cursor<'_, R> {
        Cursor {
            input: &self.input,
            pos,
            end: self.size,
        }
    }

    /// Locate the goodbye table of the directory ending at `end` whose tail refers to
    /// `tail_target`; `entry_offset` is its ENTRY header.
    fn dir_info(&self, end: u64, tail_target: u64, entry_offset: u64) -> Result<DirInfo> {
        let tail_offset = end
            .checked_sub(GOODBYE_ITEM_SIZE)
            .ok_or_else(|| Error::corrupt(end, "directory too short for a goodbye table"))?;
        let mut bytes = [0u8; 24];
        read_exact_at(
            &self.input,
            self.size,
            &mut bytes,
            tail_offset,
            "goodbye tail",
        )?;
        let tail = GoodbyeItem::from_bytes(&bytes);
        if !tail.is_tail() {
            return Err(Error::corrupt(
                tail_offset,
                "directory does not end with a goodbye tail item",
            ));
        }
        let goodbye_start = end
            .checked_sub(tail.size)
            .filter(|start| *start > entry_offset)
            .ok_or_else(|| {
                Error::corrupt(
                    tail_offset,
                    format!("goodbye tail size {} out of range", tail.size),
                )
            })?;
        let (header, _) = read_header(&mut self.cursor(goodbye_start))?;
        if header.htype != format::PXAR_GOODBYE {
            return Err(items::unexpected(&header, goodbye_start, "GOODBYE"));
        }
        let content = header.content_size();
        if !content.is_multiple_of(GOODBYE_ITEM_SIZE) || content < GOODBYE_ITEM_SIZE {
            return Err(Error::corrupt(
                goodbye_start,
                format!("GOODBYE content size {content} is not a positive multiple of 24"),
            ));
        }
        check_tail(&tail, &header, goodbye_start, tail_target)?;
        Ok(DirInfo {
            entry_offset,
            goodbye_start,
            count: content / GOODBYE_ITEM_SIZE - 1,
        })
    }

    /// The root directory.
    pub fn root(&self) -> Result<FileEntry> {
        let dir = self.dir_info(self.size, 0, self.root_entry_offset)?;
        let mut cursor = self.cursor(self.root_entry_offset);
        let (header, offset) = read_header(&mut cursor)?;
        let parsed = items::read_entry(&mut cursor, &header, offset, self.split)?;
        if parsed.kind != EntryKind::Directory {
            return Err(Error::corrupt(offset, "root entry is not a directory"));
        }
        Ok(FileEntry {
            entry: Entry {
                path: PathBuf::from("/"),
                metadata: parsed.metadata,
                kind: EntryKind::Directory,
                filename_offset: None,
            },
            dir: Some(dir),
        })
    }

    fn dir_of(entry: &FileEntry) -> Result<DirInfo> {
        entry
            .dir
            .ok_or_else(|| Error::invalid(format!("{:?} is not a directory", entry.entry.path)))
    }

    fn goodbye_item(&self, dir: &DirInfo, slot: u64) -> Result<GoodbyeItem> {
        let at = dir.goodbye_start + HEADER_SIZE + slot * GOODBYE_ITEM_SIZE;
        let mut bytes = [0u8; 24];
        read_exact_at(&self.input, self.size, &mut bytes, at, "goodbye item")?;
        Ok(GoodbyeItem::from_bytes(&bytes))
    }

    /// FILENAME offset of a table item, checked to lie inside the directory.
    fn child_start(&self, dir: &DirInfo, item: &GoodbyeItem) -> Result<u64> {
        dir.goodbye_start
            .checked_sub(item.offset)
            .filter(|start| *start > dir.entry_offset && *start < dir.goodbye_start)
            .ok_or_else(|| {
                Error::corrupt(
                    dir.goodbye_start,
                    format!("goodbye item offset {} outside the directory", item.offset),
                )
            })
    }

    fn decode_child(&self, parent: &Path, dir: &DirInfo, item: &GoodbyeItem) -> Result<FileEntry> {
        let filename_start = self.child_start(dir, item)?;
        let mut cursor = self.cursor(filename_start);
        let (header, _) = read_header(&mut cursor)?;
        let name = items::read_filename(&mut cursor, &header, filename_start)?;
        if hash_filename(&name) != item.hash {
            return Err(Error::corrupt(
                filename_start,
                "file name does not match its goodbye item hash",
            ));
        }
        let path = parent.join(OsStr::from_bytes(&name));
        let (header, offset) = read_header(&mut cursor)?;
        if header.htype == format::PXAR_HARDLINK {
            let (target, link_offset) =
                items::read_hardlink(&mut cursor, &header, offset, filename_start)?;
            return Ok(FileEntry {
                entry: Entry {
                    path,
                    metadata: Metadata::default(),
                    kind: EntryKind::Hardlink {
                        target,
                        offset: link_offset,
                    },
                    filename_offset: Some(filename_start),
                },
                dir: None,
            });
        }
        let parsed = items::read_entry(&mut cursor, &header, offset, self.split)?;
        let child_dir = if parsed.kind == EntryKind::Directory {
            // Directory sizes are exact, so the table of the child ends at start + size.
            let end = filename_start
                .checked_add(item.size)
                .filter(|end| *end <= dir.goodbye_start)
                .ok_or_else(|| {
                    Error::corrupt(
                        dir.goodbye_start,
                        format!("goodbye item size {} exceeds the directory", item.size),
                    )
                })?;
            Some(self.dir_info(end, offset, offset)?)
        } else {
            None
        };
        Ok(FileEntry {
            entry: Entry {
                path,
                metadata: parsed.metadata,
                kind: parsed.kind,
                filename_offset: Some(filename_start),
            },
            dir: child_dir,
        })
    }

    /// All children of a directory in archive order.
    pub fn read_dir(&self, dir: &FileEntry) -> Result<Vec<FileEntry>> {
        let info = Self::dir_of(dir)?;
        let mut children = Vec::new();
        for slot in 0..info.count {
            let item = self.goodbye_item(&info, slot)?;
            children.push(self.decode_child(&dir.entry.path, &info, &item)?);
        }
        children.sort_by_key(|child| child.entry.filename_offset);
        Ok(children)
    }

    /// The child called `name` of a directory.
    pub fn lookup_child(&self, dir: &FileEntry, name: &[u8]) -> Result<Option<FileEntry>> {
        let info = Self::dir_of(dir)?;
        let found = search_tree(
            usize::try_from(info.count).unwrap_or(usize::MAX),
            hash_filename(name),
            |slot| Ok(self.goodbye_item(&info, slot as u64)?.hash),
            |slot| {
                let item = self.goodbye_item(&info, slot as u64)?;
                let filename_start = self.child_start(&info, &item)?;
                let mut cursor = self.cursor(filename_start);
                let (header, _) = read_header(&mut cursor)?;
                let found = items::read_filename(&mut cursor, &header, filename_start)?;
                Ok((found == name).then_some(item))
            },
        )?;
        match found {
            Some(item) => Ok(Some(self.decode_child(&dir.entry.path, &info, &item)?)),
            None => Ok(None),
        }
    }

    /// Entry at an absolute or root-relative path (`/` is the root).
    pub fn lookup(&self, path: &Path) -> Result<Option<FileEntry>> {
        let mut current = self.root()?;
        for component in path.components() {
            let name = match component {
                Component::RootDir | Component::CurDir => continue,
                Component::Normal(name) => name,
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(Error::invalid(format!(
                        "lookup path {path:?} must not contain '..'"
                    )))
                }
            };
            if current.dir.is_none() {
                return Ok(None);
            }
            match self.lookup_child(&current, name.as_bytes())? {
                Some(child) => current = child,
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }

    /// The regular file a hardlink entry points to.
    pub fn follow_hardlink(&self, link: &FileEntry) -> Result<FileEntry> {
        let EntryKind::Hardlink { target, .. } = &link.entry.kind else {
            return Err(Error::invalid(format!(
                "{:?} is not a hardlink",
                link.entry.path
            )));
        };
        let filename_start = link
            .entry
            .hardlink_target_offset()
            .ok_or_else(|| Error::invalid("hardlink without archive offset"))?;
        let mut cursor = self.cursor(filename_start);
        let (header, _) = read_header(&mut cursor)?;
        items::read_filename(&mut cursor, &header, filename_start)?;
        let (header, offset) = read_header(&mut cursor)?;
        let parsed = items::read_entry(&mut cursor, &header, offset, self.split)?;
        if !matches!(parsed.kind, EntryKind::File { .. }) {
            return Err(Error::corrupt(
                filename_start,
                "hardlink target is not a regular file",
            ));
        }
        Ok(FileEntry {
            entry: Entry {
                path: Path::new("/").join(target),
                metadata: parsed.metadata,
                kind: parsed.kind,
                filename_offset: Some(filename_start),
            },
            dir: None,
        })
    }

    /// Contents of a regular file; for v2 the PAYLOAD header in the payload stream is checked.
    pub fn open_contents(&self, file: &FileEntry) -> Result<FileContents<'_, R, P>> {
        let EntryKind::File {
            size,
            offset,
            payload_offset,
        } = file.entry.kind
        else {
            return Err(Error::invalid(format!(
                "{:?} is not a regular file",
                file.entry.path
            )));
        };
        match (offset, payload_offset) {
            (Some(start), _) => {
                if start.checked_add(size).is_none_or(|end| end > self.size) {
                    return Err(Error::Truncated {
                        offset: start,
                        what: "PAYLOAD content".into(),
                    });
                }
                Ok(FileContents {
                    accessor: self,
                    start,
                    size,
                    in_payload: false,
                })
            }
            (None, Some(header_offset)) => {
                let Some((source, payload_size)) = &self.payload else {
                    return Err(Error::invalid(
                        "file contents of a split archive need the payload input",
                    ));
                };
                let mut bytes = [0u8; 16];
                read_exact_at(
                    source,
                    *payload_size,
                    &mut bytes,
                    header_offset,
                    "payload stream: PAYLOAD header",
                )?;
                let header = Header::from_bytes(&bytes);
                let start = header_offset + HEADER_SIZE;
                if header.htype != format::PXAR_PAYLOAD
                    || header.content_size() != size
                    || header.full_size < HEADER_SIZE
                    || start
                        .checked_add(size)
                        .is_none_or(|end| end > *payload_size)
                {
                    return Err(Error::corrupt(
                        header_offset,
                        format!("payload stream: no PAYLOAD of {size} bytes here"),
                    ));
                }
                Ok(FileContents {
                    accessor: self,
                    start,
                    size,
                    in_payload: true,
                })
            }
            (None, None) => Err(Error::invalid("file entry without content location")),
        }
    }
}

/// Positioned reader over one file's contents.
pub struct FileContents<'a, R: ReadAt, P: ReadAt> {
    accessor: &'a Accessor<R, P>,
    start: u64,
    size: u64,
    in_payload: bool,
}

impl<R: ReadAt, P: ReadAt> FileContents<'_, R, P> {
    /// File size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Read from file offset `offset`; returns 0 at the end of the file.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let len = (buf.len() as u64).min(self.size - offset) as usize;
        let at = self.start + offset;
        if self.in_payload {
            if let Some((source, payload_size)) = &self.accessor.payload {
                read_exact_at(
                    source,
                    *payload_size,
                    &mut buf[..len],
                    at,
                    "PAYLOAD content",
                )?;
            }
        } else {
            let accessor = self.accessor;
            read_exact_at(
                &accessor.input,
                accessor.size,
                &mut buf[..len],
                at,
                "PAYLOAD content",
            )?;
        }
        Ok(len)
    }

    /// The whole contents.
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut offset = 0;
        loop {
            let n = self.read_at(&mut buf, offset)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
            offset += n as u64;
        }
    }
}

impl<R: ReadAt, P: ReadAt> ReadAt for FileContents<'_, R, P> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileContents::read_at(self, buf, offset).map_err(|err| {
            let kind = match err {
                Error::Truncated { .. } => io::ErrorKind::UnexpectedEof,
                _ => io::ErrorKind::InvalidData,
            };
            io::Error::new(kind, err)
        })
    }
}

impl<'a, R: ReadAt, P: ReadAt> FileContents<'a, R, P> {
    /// Sequential reader (with seeking) over the contents.
    pub fn reader(self) -> ContentsReader<'a, R, P> {
        ContentsReader {
            contents: self,
            pos: 0,
        }
    }
}

/// `Read + Seek` view of a file's contents.
pub struct ContentsReader<'a, R: ReadAt, P: ReadAt> {
    contents: FileContents<'a, R, P>,
    pos: u64,
}

impl<R: ReadAt, P: ReadAt> io::Read for ContentsReader<'_, R, P> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = ReadAt::read_at(&self.contents, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: ReadAt, P: ReadAt> io::Seek for ContentsReader<'_, R, P> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let target = match pos {
            io::SeekFrom::Start(offset) => Some(offset),
            io::SeekFrom::End(delta) => self.contents.size.checked_add_signed(delta),
            io::SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        self.pos = target;
        Ok(target)
    }
}

/// Walk everything reachable through the accessor with a work budget (fuzzing helper).
pub(crate) fn fuzz_walk(meta: &[u8], payload: Option<&[u8]>) {
    let Ok(accessor) = Accessor::new(
        meta,
        meta.len() as u64,
        payload.map(|p| (p, p.len() as u64)),
    ) else {
        return;
    };
    let Ok(root) = accessor.root() else {
        return;
    };
    let mut budget = 10_000usize;
    let mut pending = vec![root];
    while let Some(dir) = pending.pop() {
        let Ok(children) = accessor.read_dir(&dir) else {
            continue;
        };
        for child in children {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                return;
            }
            let _ = accessor.lookup(&child.entry.path);
            match &child.entry.kind {
                EntryKind::File { .. } => {
                    if let Ok(contents) = accessor.open_contents(&child) {
                        let mut buf = [0u8; 4096];
                        let _ = contents.read_at(&mut buf, 0);
                    }
                }
                EntryKind::Hardlink { .. } => {
                    let _ = accessor.follow_hardlink(&child);
                }
                EntryKind::Directory => pending.push(child),
                _ => {}
            }
        }
    }
}
