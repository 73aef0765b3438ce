//! The file catalog (`catalog.pcat1.didx` content): a compact directory tree of every pxar
//! archive of a snapshot, with sizes and mtimes of regular files.
//!
//! Layout: magic, directory tables (children before their parents), the root table, and the
//! root table's offset as u64 LE. Integers inside tables are variable-length (see
//! [`catalog_encode_u64`], [`catalog_encode_i64`]).

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::{bail, format_err, Context, Error};
use base64::Engine;
use pathpatterns::{mode, MatchList, MatchType};
use serde::{Deserialize, Serialize};

use crate::file_formats::PROXMOX_CATALOG_FILE_MAGIC_1_0;

/// Names of this length or longer are rejected.
pub const MAX_NAME_LEN: usize = 4096;

const MAGIC_LEN: u64 = PROXMOX_CATALOG_FILE_MAGIC_1_0.len() as u64;

/// Type byte of a catalog entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CatalogEntryType {
    /// `d`
    Directory = b'd',
    /// `f`
    File = b'f',
    /// `l`
    Symlink = b'l',
    /// `h` (second and later occurrence of a hard-linked file)
    Hardlink = b'h',
    /// `b`
    BlockDevice = b'b',
    /// `c`
    CharDevice = b'c',
    /// `p`
    Fifo = b'p',
    /// `s`
    Socket = b's',
}

impl CatalogEntryType {
    /// Parses a type byte.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            b'd' => Self::Directory,
            b'f' => Self::File,
            b'l' => Self::Symlink,
            b'h' => Self::Hardlink,
            b'b' => Self::BlockDevice,
            b'c' => Self::CharDevice,
            b'p' => Self::Fifo,
            b's' => Self::Socket,
            _ => return None,
        })
    }

    /// The type byte as a character (`d`, `f`, ...).
    pub fn as_char(self) -> char {
        self as u8 as char
    }

    /// The `st_mode` file type bits for pattern matching; `None` for hardlinks, whose
    /// target type the catalog does not record.
    pub fn file_mode(self) -> Option<u32> {
        Some(match self {
            Self::Directory => mode::S_IFDIR,
            Self::File => mode::S_IFREG,
            Self::Symlink => mode::S_IFLNK,
            Self::Hardlink => return None,
            Self::BlockDevice => mode::S_IFBLK,
            Self::CharDevice => mode::S_IFCHR,
            Self::Fifo => mode::S_IFIFO,
            Self::Socket => mode::S_IFSOCK,
        })
    }
}

impl fmt::Display for CatalogEntryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// What a catalog entry describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirEntryAttribute {
    /// A directory whose table starts at this absolute file offset.
    Directory {
        start: u64,
    },
    /// A regular file with its size and mtime (epoch seconds).
    File {
        size: u64,
        mtime: i64,
    },
    Symlink,
    Hardlink,
    BlockDevice,
    CharDevice,
    Fifo,
    Socket,
}

impl DirEntryAttribute {
    /// The entry's type byte.
    pub fn entry_type(&self) -> CatalogEntryType {
        match self {
            Self::Directory { .. } => CatalogEntryType::Directory,
            Self::File { .. } => CatalogEntryType::File,
            Self::Symlink => CatalogEntryType::Symlink,
            Self::Hardlink => CatalogEntryType::Hardlink,
            Self::BlockDevice => CatalogEntryType::BlockDevice,
            Self::CharDevice => CatalogEntryType::CharDevice,
            Self::Fifo => CatalogEntryType::Fifo,
            Self::Socket => CatalogEntryType::Socket,
        }
    }
}

/// One named entry of a directory table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Raw name bytes (no `/`, no NUL).
    pub name: Vec<u8>,
    /// Type and type-specific data.
    pub attr: DirEntryAttribute,
}

impl DirEntry {
    /// True for directories.
    pub fn is_directory(&self) -> bool {
        matches!(self.attr, DirEntryAttribute::Directory { .. })
    }

    /// True for symlinks.
    pub fn is_symlink(&self) -> bool {
        matches!(self.attr, DirEntryAttribute::Symlink)
    }
}

/// One item of a catalog directory listing as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveEntry {
    /// Base64 (standard alphabet, padded) of the full path bytes.
    pub filepath: String,
    /// Last path component, lossy UTF-8.
    pub text: String,
    /// Catalog type character, `v` for virtual entries (archives).
    #[serde(rename = "type")]
    pub entry_type: String,
    /// False for directories and virtual entries.
    pub leaf: bool,
    /// File size (regular files only, or archive sizes of virtual entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// File mtime (regular files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
}

impl ArchiveEntry {
    /// Entry for `filepath`; `attr == None` makes a virtual entry (an archive in the root).
    pub fn new(filepath: &[u8], attr: Option<&DirEntryAttribute>) -> Self {
        let size = match attr {
            Some(DirEntryAttribute::File { size, .. }) => Some(*size),
            _ => None,
        };
        Self::new_with_size(filepath, attr, size)
    }

    /// Like [`ArchiveEntry::new`] with an explicit size.
    pub fn new_with_size(
        filepath: &[u8],
        attr: Option<&DirEntryAttribute>,
        size: Option<u64>,
    ) -> Self {
        let text = filepath.rsplit(|b| *b == b'/').next().unwrap_or(filepath);
        Self {
            filepath: base64::engine::general_purpose::STANDARD.encode(filepath),
            text: String::from_utf8_lossy(text).into_owned(),
            entry_type: match attr {
                Some(attr) => attr.entry_type().to_string(),
                None => "v".to_string(),
            },
            leaf: !matches!(attr, None | Some(DirEntryAttribute::Directory { .. })),
            size,
            mtime: match attr {
                Some(DirEntryAttribute::File { mtime, .. }) => Some(*mtime),
                _ => None,
            },
        }
    }
}

/// Appends `value` as a little-endian base-128 varint.
pub fn catalog_encode_u64<W: Write + ?Sized>(writer: &mut W, mut value: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut len = 0;
    while value >= 0x80 {
        buf[len] = 0x80 | (value & 0x7f) as u8;
        value >>= 7;
        len += 1;
    }
    buf[len] = value as u8;
    writer.write_all(&buf[..=len])
}

/// Appends `value` as a signed varint: non-negative values like u64, negative ones as their
/// magnitude with the last byte's high bit set, followed by a `0x00` terminator.
pub fn catalog_encode_i64<W: Write + ?Sized>(writer: &mut W, value: i64) -> io::Result<()> {
    if value >= 0 {
        return catalog_encode_u64(writer, value as u64);
    }
    // -(value + 1) + 1 works for i64::MIN as well.
    let mut magnitude = (-(value + 1)) as u64 + 1;
    let mut buf = [0u8; 11];
    let mut len = 0;
    while magnitude >= 0x80 {
        buf[len] = 0x80 | (magnitude & 0x7f) as u8;
        magnitude >>= 7;
        len += 1;
    }
    buf[len] = 0x80 | magnitude as u8;
    buf[len + 1] = 0;
    writer.write_all(&buf[..len + 2])
}

fn read_byte<R: Read + ?Sized>(reader: &mut R) -> Result<u8, Error> {
    let mut byte = [0u8];
    reader
        .read_exact(&mut byte)
        .map_err(|err| format_err!("unable to read varint - {err}"))?;
    Ok(byte[0])
}

/// ORs the 7 payload bits of byte `index` into `value`, rejecting bits beyond 64.
fn add_varint_bits(value: u64, byte: u8, index: usize) -> Result<u64, Error> {
    let bits = (byte & 0x7f) as u64;
    let shift = index * 7;
    if bits == 0 {
        return Ok(value);
    }
    if shift >= 64 || (bits << shift) >> shift != bits {
        bail!("varint value exceeds 64 bits");
    }
    Ok(value | (bits << shift))
}

/// Reads a varint written by [`catalog_encode_u64`] (at most 10 bytes).
pub fn catalog_decode_u64<R: Read + ?Sized>(reader: &mut R) -> Result<u64, Error> {
    let mut value = 0u64;
    for index in 0..10 {
        let byte = read_byte(reader)?;
        value = add_varint_bits(value, byte, index)?;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    bail!("decode_u64 failed - missing end marker");
}

/// Reads a varint written by [`catalog_encode_i64`] (at most 11 bytes).
pub fn catalog_decode_i64<R: Read + ?Sized>(reader: &mut R) -> Result<i64, Error> {
    let mut value = 0u64;
    for index in 0..11 {
        let byte = read_byte(reader)?;
        if byte == 0 {
            if value == 0 {
                return Ok(0);
            }
            if value > 1u64 << 63 {
                bail!("decode_i64 failed - value out of range");
            }
            // -(value - 1) - 1 works for i64::MIN as well.
            return Ok(-((value - 1) as i64) - 1);
        }
        value = add_varint_bits(value, byte, index)?;
        if byte < 0x80 {
            return i64::try_from(value)
                .map_err(|_| format_err!("decode_i64 failed - value out of range"));
        }
    }
    bail!("decode_i64 failed - missing end marker");
}

fn check_name(name: &[u8]) -> Result<(), Error> {
    if name.is_empty() {
        bail!("catalog entry name must not be empty");
    }
    if name.len() >= MAX_NAME_LEN {
        bail!(
            "catalog entry name too long ({} >= {MAX_NAME_LEN})",
            name.len()
        );
    }
    if name.iter().any(|b| *b == b'/' || *b == 0) {
        bail!(
            "catalog entry name {:?} contains '/' or NUL",
            String::from_utf8_lossy(name)
        );
    }
    Ok(())
}

/// A directory whose table is still being collected.
struct PendingDir {
    name: Vec<u8>,
    entries: Vec<DirEntry>,
}

impl PendingDir {
    /// The encoded block `varu64(table length) || table`, with directory deltas relative to
    /// `start`, the block's own file offset.
    fn encode(&self, start: u64) -> Result<Vec<u8>, Error> {
        let mut table = Vec::new();
        catalog_encode_u64(&mut table, self.entries.len() as u64)?;
        for entry in &self.entries {
            table.push(entry.attr.entry_type() as u8);
            catalog_encode_u64(&mut table, entry.name.len() as u64)?;
            table.extend_from_slice(&entry.name);
            match entry.attr {
                DirEntryAttribute::Directory { start: child } => {
                    catalog_encode_u64(&mut table, start - child)?;
                }
                DirEntryAttribute::File { size, mtime } => {
                    catalog_encode_u64(&mut table, size)?;
                    catalog_encode_i64(&mut table, mtime)?;
                }
                _ => {}
            }
        }
        let mut block = Vec::with_capacity(table.len() + 10);
        catalog_encode_u64(&mut block, table.len() as u64)?;
        block.extend_from_slice(&table);
        Ok(block)
    }
}

/// Writes a catalog; calls must follow the archive's directory structure.
pub struct CatalogWriter<W: Write> {
    writer: W,
    dir_stack: Vec<PendingDir>,
    pos: u64,
}

impl<W: Write> CatalogWriter<W> {
    /// Starts a catalog by writing the magic.
    pub fn new(mut writer: W) -> Result<Self, Error> {
        writer
            .write_all(&PROXMOX_CATALOG_FILE_MAGIC_1_0)
            .context("unable to write catalog magic")?;
        Ok(Self {
            writer,
            dir_stack: vec![PendingDir {
                name: Vec::new(),
                entries: Vec::new(),
            }],
            pos: MAGIC_LEN,
        })
    }

    /// Opens a directory (at top level: an archive, named like `root.pxar.didx`).
    pub fn start_directory(&mut self, name: &[u8]) -> Result<(), Error> {
        check_name(name)?;
        self.dir_stack.push(PendingDir {
            name: name.to_vec(),
            entries: Vec::new(),
        });
        Ok(())
    }

    /// Closes the innermost directory, writing its table.
    pub fn end_directory(&mut self) -> Result<(), Error> {
        if self.dir_stack.len() <= 1 {
            bail!("catalog: end_directory without matching start_directory");
        }
        let dir = self
            .dir_stack
            .pop()
            .ok_or_else(|| format_err!("catalog: empty directory stack"))?;
        let start = self.write_table(&dir)?;
        self.push_entry(dir.name, DirEntryAttribute::Directory { start });
        Ok(())
    }

    /// Adds a regular file with its size and mtime (epoch seconds).
    pub fn add_file(&mut self, name: &[u8], size: u64, mtime: i64) -> Result<(), Error> {
        self.add_entry(name, DirEntryAttribute::File { size, mtime })
    }

    /// Adds a symlink.
    pub fn add_symlink(&mut self, name: &[u8]) -> Result<(), Error> {
        self.add_entry(name, DirEntryAttribute::Symlink)
    }

    /// Adds a hardlink (second or later occurrence of a file).
    pub fn add_hardlink(&mut self, name: &[u8]) -> Result<(), Error> {
        self.add_entry(name, DirEntryAttribute::Hardlink)
    }

    /// Adds a block device.
    pub fn add_block_device(&mut self, name: &[u8]) -> Result<(), Error> {
        self.add_entry(name, DirEntryAttribute::BlockDevice)
    }

    /// Adds a character device.
    pub fn add_char_device(&mut self, name: &[u8]) -> Result<(), Error> {
        self.add_entry(name, DirEntryAttribute::CharDevice)
    }

    /// Adds a FIFO.
    pub fn add_fifo(&mut self, name: &[u8]) -> Result<(), Error> {
        self.add_entry(name, DirEntryAttribute::Fifo)
    }

    /// Adds a socket.
    pub fn add_socket(&mut self, name: &[u8]) -> Result<(), Error> {
        self.add_entry(name, DirEntryAttribute::Socket)
    }

    /// Writes the root table and its offset; all directories must be closed.
    pub fn finish(mut self) -> Result<W, Error> {
        if self.dir_stack.len() != 1 {
            bail!(
                "unable to finish catalog - {} directories still open",
                self.dir_stack.len() - 1
            );
        }
        let root = self
            .dir_stack
            .pop()
            .ok_or_else(|| format_err!("catalog: empty directory stack"))?;
        let start = self.write_table(&root)?;
        self.writer
            .write_all(&start.to_le_bytes())
            .context("unable to write catalog root offset")?;
        self.writer.flush().context("unable to flush catalog")?;
        Ok(self.writer)
    }

    fn add_entry(&mut self, name: &[u8], attr: DirEntryAttribute) -> Result<(), Error> {
        check_name(name)?;
        self.push_entry(name.to_vec(), attr);
        Ok(())
    }

    fn push_entry(&mut self, name: Vec<u8>, attr: DirEntryAttribute) {
        if let Some(top) = self.dir_stack.last_mut() {
            top.entries.push(DirEntry { name, attr });
        }
    }

    /// Writes a directory block at the current position and returns that position.
    fn write_table(&mut self, dir: &PendingDir) -> Result<u64, Error> {
        let start = self.pos;
        let block = dir.encode(start)?;
        self.writer
            .write_all(&block)
            .context("unable to write catalog directory table")?;
        self.pos += block.len() as u64;
        Ok(start)
    }
}

/// The catalog calls an archive encoder makes while walking a directory tree.
pub trait BackupCatalogWriter {
    /// Opens a directory.
    fn start_directory(&mut self, name: &[u8]) -> Result<(), Error>;
    /// Closes the innermost directory.
    fn end_directory(&mut self) -> Result<(), Error>;
    /// Adds a regular file.
    fn add_file(&mut self, name: &[u8], size: u64, mtime: i64) -> Result<(), Error>;
    /// Adds a symlink.
    fn add_symlink(&mut self, name: &[u8]) -> Result<(), Error>;
    /// Adds a hardlink.
    fn add_hardlink(&mut self, name: &[u8]) -> Result<(), Error>;
    /// Adds a block device.
    fn add_block_device(&mut self, name: &[u8]) -> Result<(), Error>;
    /// Adds a character device.
    fn add_char_device(&mut self, name: &[u8]) -> Result<(), Error>;
    /// Adds a FIFO.
    fn add_fifo(&mut self, name: &[u8]) -> Result<(), Error>;
    /// Adds a socket.
    fn add_socket(&mut self, name: &[u8]) -> Result<(), Error>;
}

impl<W: Write> BackupCatalogWriter for CatalogWriter<W> {
    fn start_directory(&mut self, name: &[u8]) -> Result<(), Error> {
        CatalogWriter::start_directory(self, name)
    }
    fn end_directory(&mut self) -> Result<(), Error> {
        CatalogWriter::end_directory(self)
    }
    fn add_file(&mut self, name: &[u8], size: u64, mtime: i64) -> Result<(), Error> {
        CatalogWriter::add_file(self, name, size, mtime)
    }
    fn add_symlink(&mut self, name: &[u8]) -> Result<(), Error> {
        CatalogWriter::add_symlink(self, name)
    }
    fn add_hardlink(&mut self, name: &[u8]) -> Result<(), Error> {
        CatalogWriter::add_hardlink(self, name)
    }
    fn add_block_device(&mut self, name: &[u8]) -> Result<(), Error> {
        CatalogWriter::add_block_device(self, name)
    }
    fn add_char_device(&mut self, name: &[u8]) -> Result<(), Error> {
        CatalogWriter::add_char_device(self, name)
    }
    fn add_fifo(&mut self, name: &[u8]) -> Result<(), Error> {
        CatalogWriter::add_fifo(self, name)
    }
    fn add_socket(&mut self, name: &[u8]) -> Result<(), Error> {
        CatalogWriter::add_socket(self, name)
    }
}

/// An entry as stored in a table: directories carry their raw delta.
struct RawEntry<'a> {
    entry_type: CatalogEntryType,
    name: &'a [u8],
    delta: u64,
    size: u64,
    mtime: i64,
}

impl RawEntry<'_> {
    /// Resolves the entry against its table's offset `start`.
    fn resolve(&self, start: u64) -> Result<DirEntry, Error> {
        let attr = match self.entry_type {
            CatalogEntryType::Directory => DirEntryAttribute::Directory {
                start: child_table_start(start, self.delta)?,
            },
            CatalogEntryType::File => DirEntryAttribute::File {
                size: self.size,
                mtime: self.mtime,
            },
            CatalogEntryType::Symlink => DirEntryAttribute::Symlink,
            CatalogEntryType::Hardlink => DirEntryAttribute::Hardlink,
            CatalogEntryType::BlockDevice => DirEntryAttribute::BlockDevice,
            CatalogEntryType::CharDevice => DirEntryAttribute::CharDevice,
            CatalogEntryType::Fifo => DirEntryAttribute::Fifo,
            CatalogEntryType::Socket => DirEntryAttribute::Socket,
        };
        Ok(DirEntry {
            name: self.name.to_vec(),
            attr,
        })
    }
}

/// Child tables lie strictly before their parent and after the magic.
fn child_table_start(start: u64, delta: u64) -> Result<u64, Error> {
    if delta > start {
        bail!("got wrong directory offset ({delta} > {start})");
    }
    let child = start - delta;
    if delta == 0 || child < MAGIC_LEN {
        bail!("got wrong directory offset ({delta} at {start})");
    }
    Ok(child)
}

/// Parses one table, calling `visit` per entry until it returns false; the whole table must
/// be consumed unless `visit` stopped early.
fn parse_table(
    table: &[u8],
    mut visit: impl FnMut(RawEntry<'_>) -> Result<bool, Error>,
) -> Result<(), Error> {
    let mut cursor = table;
    let count = catalog_decode_u64(&mut cursor)?;
    for _ in 0..count {
        let (&type_byte, rest) = cursor
            .split_first()
            .ok_or_else(|| format_err!("catalog table truncated"))?;
        cursor = rest;
        let entry_type = CatalogEntryType::from_byte(type_byte)
            .ok_or_else(|| format_err!("got unknown catalog entry type {type_byte:#04x}"))?;
        let name_len = catalog_decode_u64(&mut cursor)?;
        if name_len >= MAX_NAME_LEN as u64 {
            bail!("directory entry name too long ({name_len} >= {MAX_NAME_LEN})");
        }
        let name_len = name_len as usize;
        if cursor.len() < name_len {
            bail!("catalog table truncated");
        }
        let (name, rest) = cursor.split_at(name_len);
        cursor = rest;
        let mut entry = RawEntry {
            entry_type,
            name,
            delta: 0,
            size: 0,
            mtime: 0,
        };
        match entry_type {
            CatalogEntryType::Directory => entry.delta = catalog_decode_u64(&mut cursor)?,
            CatalogEntryType::File => {
                entry.size = catalog_decode_u64(&mut cursor)?;
                entry.mtime = catalog_decode_i64(&mut cursor)?;
            }
            _ => {}
        }
        if !visit(entry)? {
            return Ok(());
        }
    }
    if !cursor.is_empty() {
        bail!(
            "unable to parse whole catalog table ({} trailing bytes)",
            cursor.len()
        );
    }
    Ok(())
}

fn mtime_string(mtime: i64) -> String {
    pbs_api_types::time::strftime_local("%FT%TZ", mtime).unwrap_or_else(|_| mtime.to_string())
}

/// Reads a catalog; every structure is validated, corrupt input gives errors.
pub struct CatalogReader<R> {
    reader: R,
    file_size: Option<u64>,
}

impl<R: Read + Seek> CatalogReader<R> {
    /// Wraps a seekable catalog stream.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            file_size: None,
        }
    }

    /// Returns the wrapped stream.
    pub fn into_inner(self) -> R {
        self.reader
    }

    fn file_size(&mut self) -> Result<u64, Error> {
        if let Some(size) = self.file_size {
            return Ok(size);
        }
        let size = self.reader.seek(SeekFrom::End(0))?;
        self.file_size = Some(size);
        Ok(size)
    }

    /// The root directory (its entries are the archives); checks magic and root offset.
    pub fn root(&mut self) -> Result<DirEntry, Error> {
        let file_size = self.file_size()?;
        if file_size < 2 * MAGIC_LEN {
            bail!("catalog too small ({file_size} bytes)");
        }
        self.reader.seek(SeekFrom::Start(0))?;
        let mut magic = [0u8; 8];
        self.reader.read_exact(&mut magic)?;
        if magic != PROXMOX_CATALOG_FILE_MAGIC_1_0 {
            bail!("got unknown catalog magic number");
        }
        self.reader.seek(SeekFrom::Start(file_size - 8))?;
        let mut offset = [0u8; 8];
        self.reader.read_exact(&mut offset)?;
        let start = u64::from_le_bytes(offset);
        if start < MAGIC_LEN || start >= file_size - 8 {
            bail!("got wrong catalog root offset {start}");
        }
        Ok(DirEntry {
            name: Vec::new(),
            attr: DirEntryAttribute::Directory { start },
        })
    }

    /// Reads the raw table starting at `start`.
    fn read_table(&mut self, start: u64) -> Result<Vec<u8>, Error> {
        let file_size = self.file_size()?;
        if start >= file_size {
            bail!("catalog directory offset {start} beyond end of file");
        }
        self.reader.seek(SeekFrom::Start(start))?;
        let len = catalog_decode_u64(&mut self.reader)?;
        if len < 1 {
            bail!("got small directory size {len}");
        }
        let table_start = self.reader.stream_position()?;
        if len > file_size - table_start {
            bail!("catalog directory table at {start} exceeds the file ({len} bytes)");
        }
        let mut table = vec![0u8; len as usize];
        self.reader
            .read_exact(&mut table)
            .with_context(|| format!("unable to read catalog directory table at {start}"))?;
        Ok(table)
    }

    fn dir_start(dir: &DirEntry) -> Result<u64, Error> {
        match dir.attr {
            DirEntryAttribute::Directory { start } => Ok(start),
            _ => bail!(
                "catalog entry {:?} is not a directory",
                String::from_utf8_lossy(&dir.name)
            ),
        }
    }

    /// All entries of a directory, in table order.
    pub fn read_dir(&mut self, parent: &DirEntry) -> Result<Vec<DirEntry>, Error> {
        let start = Self::dir_start(parent)?;
        let table = self.read_table(start)?;
        let mut entries = Vec::new();
        parse_table(&table, |raw| {
            entries.push(raw.resolve(start)?);
            Ok(true)
        })?;
        Ok(entries)
    }

    /// The first entry of `parent` named `filename`, if any.
    pub fn lookup(
        &mut self,
        parent: &DirEntry,
        filename: &[u8],
    ) -> Result<Option<DirEntry>, Error> {
        let start = Self::dir_start(parent)?;
        let table = self.read_table(start)?;
        let mut found = None;
        parse_table(&table, |raw| {
            if raw.name == filename {
                found = Some(raw.resolve(start)?);
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(found)
    }

    /// Resolves an absolute path (`/` is the root, `/root.pxar.didx/etc` an archive's `etc`).
    pub fn lookup_recursive(&mut self, path: &[u8]) -> Result<DirEntry, Error> {
        let mut current = self.root()?;
        if path == b"/" {
            return Ok(current);
        }
        let relative = path.strip_prefix(b"/").unwrap_or(path);
        for component in relative.split(|b| *b == b'/') {
            let next = if current.is_directory() {
                self.lookup(&current, component)?
            } else {
                None
            };
            current = next.ok_or_else(|| {
                format_err!(
                    "path {:?} not found in catalog",
                    String::from_utf8_lossy(path)
                )
            })?;
        }
        Ok(current)
    }

    /// The API listing of directory `path`.
    pub fn list_dir_contents(&mut self, path: &[u8]) -> Result<Vec<ArchiveEntry>, Error> {
        let dir = self.lookup_recursive(path)?;
        let entries = self.read_dir(&dir)?;
        Ok(entries
            .iter()
            .map(|entry| {
                let mut full_path = path.to_vec();
                if path != b"/" {
                    full_path.push(b'/');
                }
                full_path.extend_from_slice(&entry.name);
                ArchiveEntry::new(&full_path, Some(&entry.attr))
            })
            .collect())
    }

    /// Walks the tree below `parent` depth-first in table order and calls `callback` with the
    /// path (`file_path` + `/` + names) of every entry `match_list` includes.
    ///
    /// Modes come from the catalog types; a hardlink has none, so reaching a type-restricted
    /// entry while scanning the list for it counts as no match. Excluded entries are neither
    /// reported nor descended into; included and unmatched directories are descended into.
    /// `file_path` is restored before returning (also on errors).
    pub fn find(
        &mut self,
        parent: &DirEntry,
        file_path: &mut Vec<u8>,
        match_list: &(impl MatchList + ?Sized),
        callback: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let base_len = file_path.len();
        let result = self.find_below(parent, file_path, match_list, callback);
        file_path.truncate(base_len);
        result
    }

    fn find_below(
        &mut self,
        parent: &DirEntry,
        file_path: &mut Vec<u8>,
        match_list: &(impl MatchList + ?Sized),
        callback: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        // Explicit stack: catalogs may be deeper than the thread stack allows recursion.
        let mut stack = vec![(self.read_dir(parent)?.into_iter(), file_path.len())];
        while let Some((entries, prefix_len)) = stack.last_mut() {
            let prefix_len = *prefix_len;
            let Some(entry) = entries.next() else {
                stack.pop();
                continue;
            };
            file_path.truncate(prefix_len);
            file_path.push(b'/');
            file_path.extend_from_slice(&entry.name);
            let file_mode = entry.attr.entry_type().file_mode();
            match match_list.matches(file_path, file_mode) {
                Ok(Some(MatchType::Exclude)) => continue,
                Ok(Some(MatchType::Include)) => callback(file_path)?,
                Ok(None) | Err(_) => {}
            }
            if entry.is_directory() {
                let children = self.read_dir(&entry)?.into_iter();
                stack.push((children, file_path.len()));
            }
        }
        Ok(())
    }

    /// Emits one line per entry, depth-first in table order, paths starting with `./`.
    pub fn dump(&mut self, out: &mut dyn FnMut(String)) -> Result<(), Error> {
        let root = self.root()?;
        let root_start = Self::dir_start(&root)?;
        // Explicit stack: catalogs may be deeper than the thread stack allows recursion.
        let mut stack = vec![DumpLevel {
            prefix: PathBuf::from("./"),
            start: root_start,
            entries: self.read_raw_entries(root_start)?.into_iter(),
        }];
        while let Some(level) = stack.last_mut() {
            let Some(entry) = level.entries.next() else {
                stack.pop();
                continue;
            };
            let path = level.prefix.join(OsStr::from_bytes(&entry.name));
            match entry.entry_type {
                CatalogEntryType::Directory => {
                    out(format!("d {path:?}"));
                    let start = child_table_start(level.start, entry.delta)?;
                    let entries = self.read_raw_entries(start)?.into_iter();
                    stack.push(DumpLevel {
                        prefix: path,
                        start,
                        entries,
                    });
                }
                CatalogEntryType::File => {
                    out(format!(
                        "f {path:?} {} {}",
                        entry.size,
                        mtime_string(entry.mtime)
                    ));
                }
                other => out(format!("{other} {path:?}")),
            }
        }
        Ok(())
    }

    /// All entries of the table at `start`, directory deltas unresolved.
    fn read_raw_entries(&mut self, start: u64) -> Result<Vec<OwnedRawEntry>, Error> {
        let table = self.read_table(start)?;
        let mut entries = Vec::new();
        parse_table(&table, |raw| {
            entries.push(OwnedRawEntry {
                entry_type: raw.entry_type,
                name: raw.name.to_vec(),
                delta: raw.delta,
                size: raw.size,
                mtime: raw.mtime,
            });
            Ok(true)
        })?;
        Ok(entries)
    }
}

/// A table entry detached from its table buffer.
struct OwnedRawEntry {
    entry_type: CatalogEntryType,
    name: Vec<u8>,
    delta: u64,
    size: u64,
    mtime: i64,
}

/// One open directory of a dump walk.
struct DumpLevel {
    prefix: PathBuf,
    start: u64,
    entries: std::vec::IntoIter<OwnedRawEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn u64_bytes(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        catalog_encode_u64(&mut out, value).unwrap();
        out
    }

    fn i64_bytes(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        catalog_encode_i64(&mut out, value).unwrap();
        out
    }

    #[test]
    fn varint_table() {
        let u64_rows: [(u64, &str); 7] = [
            (0, "00"),
            (127, "7f"),
            (128, "8001"),
            (300, "ac02"),
            (16384, "808001"),
            (1 << 63, "80808080808080808001"),
            (u64::MAX, "ffffffffffffffffff01"),
        ];
        for (value, hex_bytes) in u64_rows {
            assert_eq!(hex::encode(u64_bytes(value)), hex_bytes, "{value}");
            let bytes = hex::decode(hex_bytes).unwrap();
            let mut cursor = &bytes[..];
            assert_eq!(catalog_decode_u64(&mut cursor).unwrap(), value);
            assert!(cursor.is_empty());
        }
        let i64_rows: [(i64, &str); 10] = [
            (0, "00"),
            (-1, "8100"),
            (-127, "ff00"),
            (-128, "808100"),
            (-129, "818100"),
            (1700000000, "80e2cfaa06"),
            (-305109000, "88b0be918100"),
            (i64::MIN, "8080808080808080808100"),
            (i64::MAX, "ffffffffffffffff7f"),
            (127, "7f"),
        ];
        for (value, hex_bytes) in i64_rows {
            assert_eq!(hex::encode(i64_bytes(value)), hex_bytes, "{value}");
            let bytes = hex::decode(hex_bytes).unwrap();
            let mut cursor = &bytes[..];
            assert_eq!(catalog_decode_i64(&mut cursor).unwrap(), value);
            assert!(cursor.is_empty());
        }
    }

    #[test]
    fn varint_rejects_bad_input() {
        let bad_u64 = ["", "80", "ffffffffffffffffffff01", "ffffffffffffffffff02"];
        for hex_bytes in bad_u64 {
            let bytes = hex::decode(hex_bytes).unwrap();
            assert!(catalog_decode_u64(&mut &bytes[..]).is_err(), "{hex_bytes}");
        }
        let bad_i64 = [
            "",
            "81",
            "ffffffffffffffffff01",
            "8180808080808080808100",
            "808080808080808080808100",
        ];
        for hex_bytes in bad_i64 {
            let bytes = hex::decode(hex_bytes).unwrap();
            assert!(catalog_decode_i64(&mut &bytes[..]).is_err(), "{hex_bytes}");
        }
        // Round trip over a spread of values.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for shift in [0, 7, 20, 40, 57] {
                let v = x >> shift;
                assert_eq!(catalog_decode_u64(&mut &u64_bytes(v)[..]).unwrap(), v);
                let s = v as i64;
                assert_eq!(catalog_decode_i64(&mut &i64_bytes(s)[..]).unwrap(), s);
            }
        }
    }

    fn first_example() -> Vec<u8> {
        let mut writer = CatalogWriter::new(Vec::new()).unwrap();
        writer.start_directory(b"root.pxar.didx").unwrap();
        writer.add_file(b"a", 3, 1700000000).unwrap();
        writer.start_directory(b"d").unwrap();
        writer.add_symlink(b"l").unwrap();
        writer.end_directory().unwrap();
        writer.end_directory().unwrap();
        writer.finish().unwrap()
    }

    fn second_example() -> Vec<u8> {
        let mut catalog = CatalogWriter::new(Vec::new()).unwrap();
        let writer: &mut dyn BackupCatalogWriter = &mut catalog;
        writer.start_directory(b"root.pxar.didx").unwrap();
        writer.start_directory(b"e").unwrap();
        writer.end_directory().unwrap();
        writer.add_file(b"f", 300, -1).unwrap();
        writer.add_hardlink(b"h").unwrap();
        writer.add_file(b".pxarexclude-cli", 6, 0).unwrap();
        writer.end_directory().unwrap();
        writer.start_directory(b"etc.pxar.didx").unwrap();
        writer.add_fifo(b"p").unwrap();
        writer.end_directory().unwrap();
        catalog.finish().unwrap()
    }

    const FIRST_EXAMPLE: &str = concat!(
        "91fd60f9c46758d5",
        "04016c016c",
        "0e0266016103 80e2cfaa06",
        "64016405",
        "1201640e726f6f742e707861722e646964780f",
        "1c00000000000000",
    );

    const SECOND_EXAMPLE: &str = concat!(
        "91fd60f9c46758d5",
        "0100",
        "2304",
        "64016502",
        "660166ac028100",
        "680168",
        "6610 2e70786172657863 6c7564652d636c69 0600",
        "0401700170",
        "2202",
        "640e726f6f742e707861722e6469647829",
        "640d6574632e707861722e6469647805",
        "3300000000000000",
    );

    fn unhex(text: &str) -> Vec<u8> {
        hex::decode(text.replace(' ', "")).unwrap()
    }

    #[test]
    fn writer_examples_byte_for_byte() {
        let first = first_example();
        assert_eq!(first.len(), 55);
        assert_eq!(hex::encode(&first), hex::encode(unhex(FIRST_EXAMPLE)));
        let second = second_example();
        assert_eq!(second.len(), 94);
        assert_eq!(hex::encode(&second), hex::encode(unhex(SECOND_EXAMPLE)));
    }

    #[test]
    fn writer_rejects_misuse() {
        let mut writer = CatalogWriter::new(Vec::new()).unwrap();
        assert!(writer.end_directory().is_err());
        assert!(writer.add_file(b"", 0, 0).is_err());
        assert!(writer.add_file(b"a/b", 0, 0).is_err());
        assert!(writer.add_file(b"a\0", 0, 0).is_err());
        assert!(writer.add_file(&[b'x'; 4096], 0, 0).is_err());
        writer.add_file(&[b'x'; 4095], 0, 0).unwrap();
        writer.start_directory(b"open.pxar.didx").unwrap();
        assert!(writer.finish().is_err());
    }

    fn reader(bytes: Vec<u8>) -> CatalogReader<Cursor<Vec<u8>>> {
        CatalogReader::new(Cursor::new(bytes))
    }

    fn dump_lines(bytes: Vec<u8>) -> Result<Vec<String>, Error> {
        let mut lines = Vec::new();
        reader(bytes).dump(&mut |line| lines.push(line))?;
        Ok(lines)
    }

    #[test]
    fn dump_second_example() {
        let lines = dump_lines(second_example()).unwrap();
        let expected = vec![
            "d \"./root.pxar.didx\"".to_string(),
            "d \"./root.pxar.didx/e\"".to_string(),
            format!("f \"./root.pxar.didx/f\" 300 {}", mtime_string(-1)),
            "h \"./root.pxar.didx/h\"".to_string(),
            format!(
                "f \"./root.pxar.didx/.pxarexclude-cli\" 6 {}",
                mtime_string(0)
            ),
            "d \"./etc.pxar.didx\"".to_string(),
            "p \"./etc.pxar.didx/p\"".to_string(),
        ];
        assert_eq!(lines, expected);
        // The mtime format is the local time with a literal Z.
        let mtime = mtime_string(1700000000);
        assert_eq!(mtime.len(), 20);
        assert!(mtime.ends_with('Z') && mtime.as_bytes()[10] == b'T');
        assert_eq!(
            pbs_api_types::time::strftime_utc("%FT%TZ", 1700000000).unwrap(),
            "2023-11-14T22:13:20Z"
        );

        let lines = dump_lines(first_example()).unwrap();
        assert_eq!(
            lines,
            vec![
                "d \"./root.pxar.didx\"".to_string(),
                format!("f \"./root.pxar.didx/a\" 3 {}", mtime_string(1700000000)),
                "d \"./root.pxar.didx/d\"".to_string(),
                "l \"./root.pxar.didx/d/l\"".to_string(),
            ]
        );
    }

    #[test]
    fn read_and_lookup() {
        let mut catalog = reader(second_example());
        let root = catalog.root().unwrap();
        assert_eq!(root.attr, DirEntryAttribute::Directory { start: 51 });
        let archives = catalog.read_dir(&root).unwrap();
        let names: Vec<&[u8]> = archives.iter().map(|e| &e.name[..]).collect();
        assert_eq!(names, vec![&b"root.pxar.didx"[..], b"etc.pxar.didx"]);
        assert_eq!(archives[0].attr, DirEntryAttribute::Directory { start: 10 });
        assert_eq!(archives[1].attr, DirEntryAttribute::Directory { start: 46 });

        let entries = catalog.read_dir(&archives[0]).unwrap();
        assert_eq!(
            entries,
            vec![
                DirEntry {
                    name: b"e".to_vec(),
                    attr: DirEntryAttribute::Directory { start: 8 }
                },
                DirEntry {
                    name: b"f".to_vec(),
                    attr: DirEntryAttribute::File {
                        size: 300,
                        mtime: -1
                    }
                },
                DirEntry {
                    name: b"h".to_vec(),
                    attr: DirEntryAttribute::Hardlink
                },
                DirEntry {
                    name: b".pxarexclude-cli".to_vec(),
                    attr: DirEntryAttribute::File { size: 6, mtime: 0 }
                },
            ]
        );
        assert!(catalog.read_dir(&entries[0]).unwrap().is_empty());
        assert!(catalog.read_dir(&entries[1]).is_err());

        assert_eq!(
            catalog.lookup(&archives[0], b"h").unwrap(),
            Some(entries[2].clone())
        );
        assert_eq!(catalog.lookup(&archives[0], b"nope").unwrap(), None);

        assert_eq!(catalog.lookup_recursive(b"/").unwrap(), root);
        assert_eq!(
            catalog.lookup_recursive(b"/root.pxar.didx/f").unwrap(),
            entries[1]
        );
        assert_eq!(
            catalog.lookup_recursive(b"root.pxar.didx/e").unwrap(),
            entries[0]
        );
        for missing in [
            &b""[..],
            b"/root.pxar.didx/",
            b"/x",
            b"/root.pxar.didx/f/g",
            b"//",
        ] {
            let err = catalog.lookup_recursive(missing).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "path {:?} not found in catalog",
                    String::from_utf8_lossy(missing)
                )
            );
        }
    }

    #[test]
    fn list_dir_contents_entries() {
        let mut catalog = reader(second_example());
        let root = catalog.list_dir_contents(b"/").unwrap();
        assert_eq!(root.len(), 2);
        assert_eq!(root[0].filepath, "L3Jvb3QucHhhci5kaWR4"); // "/root.pxar.didx"
        assert_eq!(root[0].text, "root.pxar.didx");
        assert_eq!(root[0].entry_type, "d");
        assert!(!root[0].leaf);

        let list = catalog.list_dir_contents(b"/root.pxar.didx").unwrap();
        let json = serde_json::to_value(&list).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"filepath": "L3Jvb3QucHhhci5kaWR4L2U=", "text": "e", "type": "d", "leaf": false},
                {"filepath": "L3Jvb3QucHhhci5kaWR4L2Y=", "text": "f", "type": "f", "leaf": true, "size": 300, "mtime": -1},
                {"filepath": "L3Jvb3QucHhhci5kaWR4L2g=", "text": "h", "type": "h", "leaf": true},
                {"filepath": "L3Jvb3QucHhhci5kaWR4Ly5weGFyZXhjbHVkZS1jbGk=", "text": ".pxarexclude-cli", "type": "f", "leaf": true, "size": 6, "mtime": 0},
            ])
        );
        assert!(catalog.list_dir_contents(b"/root.pxar.didx/f").is_err());

        let virtual_entry = ArchiveEntry::new_with_size(b"/root.pxar.didx", None, Some(123));
        assert_eq!(virtual_entry.entry_type, "v");
        assert!(!virtual_entry.leaf);
        assert_eq!(virtual_entry.size, Some(123));
    }

    /// Builds a catalog from raw table bytes: magic, tables, root offset.
    fn raw_catalog(tables: &[&[u8]]) -> Vec<u8> {
        let mut bytes = PROXMOX_CATALOG_FILE_MAGIC_1_0.to_vec();
        let mut last_start = 0;
        for table in tables {
            last_start = bytes.len() as u64;
            bytes.extend_from_slice(table);
        }
        bytes.extend_from_slice(&last_start.to_le_bytes());
        bytes
    }

    fn root_error(bytes: Vec<u8>) -> String {
        let mut catalog = reader(bytes);
        let result = catalog.root().and_then(|root| catalog.read_dir(&root));
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn reader_validations() {
        let mut bad_magic = second_example();
        bad_magic[0] ^= 1;
        assert_eq!(root_error(bad_magic), "got unknown catalog magic number");

        assert_eq!(
            root_error(raw_catalog(&[b"\x00"])),
            "got small directory size 0"
        );
        assert_eq!(
            root_error(raw_catalog(&[b"\x03\x01\x78\x00"])),
            "got unknown catalog entry type 0x78"
        );
        assert_eq!(
            root_error(raw_catalog(&[b"\x04\x01\x6c\x00\x99"])),
            "unable to parse whole catalog table (1 trailing bytes)"
        );
        let long_name = [0x04, 0x01, b'l', 0x80, 0x20];
        assert_eq!(
            root_error(raw_catalog(&[&long_name])),
            "directory entry name too long (4096 >= 4096)"
        );
        // A directory delta pointing before the start of the file.
        let err = root_error(raw_catalog(&[b"\x05\x01\x64\x01\x78\x09"]));
        assert_eq!(err, "got wrong directory offset (9 > 8)");
        assert_eq!(
            root_error(raw_catalog(&[b"\x05\x01\x64\x01\x78\x00"])),
            "got wrong directory offset (0 at 8)"
        );

        // dump prints the directory line before checking its offset.
        let mut lines = Vec::new();
        let err = reader(raw_catalog(&[b"\x05\x01\x64\x01\x78\x09"]))
            .dump(&mut |line| lines.push(line))
            .unwrap_err();
        assert_eq!(err.to_string(), "got wrong directory offset (9 > 8)");
        assert_eq!(lines, vec!["d \"./x\"".to_string()]);

        // Root offset outside the file.
        let mut bytes = second_example();
        let len = bytes.len();
        bytes[len - 8..].copy_from_slice(&1000u64.to_le_bytes());
        assert_eq!(root_error(bytes), "got wrong catalog root offset 1000");
        assert_eq!(root_error(vec![0; 7]), "catalog too small (7 bytes)");
    }

    /// Exercises every reader operation; errors are fine, panics are not.
    fn exercise(bytes: Vec<u8>) {
        let mut catalog = reader(bytes);
        let _ = catalog.dump(&mut |_| {});
        let _ = catalog.list_dir_contents(b"/root.pxar.didx");
        let _ = catalog.lookup_recursive(b"/root.pxar.didx/d/l");
        if let Ok(root) = catalog.root() {
            let mut pending = vec![root];
            let mut visited = 0;
            while let Some(dir) = pending.pop() {
                visited += 1;
                if visited > 1000 {
                    break;
                }
                if let Ok(entries) = catalog.read_dir(&dir) {
                    for entry in entries {
                        let _ = catalog.lookup(&dir, &entry.name);
                        if entry.is_directory() {
                            pending.push(entry);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn corrupt_input_never_panics() {
        for example in [first_example(), second_example()] {
            for len in 0..example.len() {
                exercise(example[..len].to_vec());
            }
            for pos in 0..example.len() {
                for flip in [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
                    let mut bytes = example.clone();
                    bytes[pos] ^= flip;
                    exercise(bytes);
                }
                for value in [0x00u8, 0x7f, 0x80, 0xff] {
                    let mut bytes = example.clone();
                    bytes[pos] = value;
                    exercise(bytes);
                }
            }
        }
    }

    #[test]
    fn deep_tree_round_trip() {
        let mut writer = CatalogWriter::new(Vec::new()).unwrap();
        writer.start_directory(b"deep.pxar.didx").unwrap();
        for _ in 0..5000 {
            writer.start_directory(b"d").unwrap();
        }
        writer.add_socket(b"s").unwrap();
        writer.add_block_device(b"b").unwrap();
        writer.add_char_device(b"c").unwrap();
        for _ in 0..5000 {
            writer.end_directory().unwrap();
        }
        writer.end_directory().unwrap();
        let bytes = writer.finish().unwrap();
        let lines = dump_lines(bytes.clone()).unwrap();
        assert_eq!(lines.len(), 5001 + 3);
        let deepest = format!("./deep.pxar.didx{}", "/d".repeat(5000));
        assert_eq!(lines[5001], format!("s {:?}", format!("{deepest}/s")));
        assert_eq!(lines[5003], format!("c {:?}", format!("{deepest}/c")));

        let mut path = b"/deep.pxar.didx".to_vec();
        for _ in 0..5000 {
            path.extend_from_slice(b"/d");
        }
        path.extend_from_slice(b"/b");
        let mut catalog = reader(bytes);
        assert_eq!(
            catalog.lookup_recursive(&path).unwrap().attr,
            DirEntryAttribute::BlockDevice
        );
    }

    #[test]
    fn non_utf8_names() {
        let mut writer = CatalogWriter::new(Vec::new()).unwrap();
        writer.start_directory(b"r.pxar.didx").unwrap();
        writer.add_file(b"caf\xe9", 1, 2).unwrap();
        writer.end_directory().unwrap();
        let bytes = writer.finish().unwrap();
        let lines = dump_lines(bytes.clone()).unwrap();
        assert_eq!(
            lines[1],
            format!("f \"./r.pxar.didx/caf\\xE9\" 1 {}", mtime_string(2))
        );
        let list = reader(bytes).list_dir_contents(b"/r.pxar.didx").unwrap();
        assert_eq!(list[0].text, "caf\u{fffd}");
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&list[0].filepath)
                .unwrap(),
            b"/r.pxar.didx/caf\xe9"
        );
    }

    fn entry(text: &str, ty: pathpatterns::MatchType) -> pathpatterns::MatchEntry {
        pathpatterns::MatchEntry::parse_pattern(text, pathpatterns::PatternFlag::PATH_NAME, ty)
            .unwrap()
    }

    /// Runs `find` below the archive `archive` and returns the reported paths.
    fn find_paths(
        bytes: Vec<u8>,
        archive: &[u8],
        list: &[pathpatterns::MatchEntry],
    ) -> Vec<String> {
        let mut catalog = reader(bytes);
        let root = catalog.root().unwrap();
        let archive_root = catalog.lookup(&root, archive).unwrap().unwrap();
        let mut found = Vec::new();
        let mut file_path = Vec::new();
        catalog
            .find(&archive_root, &mut file_path, list, &mut |path| {
                found.push(String::from_utf8(path.to_vec()).unwrap());
                Ok(())
            })
            .unwrap();
        assert!(file_path.is_empty(), "path prefix restored");
        found
    }

    #[test]
    fn find_hardlink_without_mode() {
        use pathpatterns::MatchType::Include;
        let star_then_dir = [entry("*", Include), entry("foo/", Include)];
        assert_eq!(
            find_paths(second_example(), b"root.pxar.didx", &star_then_dir),
            ["/e", "/f", "/.pxarexclude-cli"]
        );
        let dir_then_star = [entry("foo/", Include), entry("*", Include)];
        assert_eq!(
            find_paths(second_example(), b"root.pxar.didx", &dir_then_star),
            ["/e", "/f", "/h", "/.pxarexclude-cli"]
        );
        assert_eq!(
            find_paths(second_example(), b"root.pxar.didx", &[entry("h", Include)]),
            ["/h"]
        );
    }

    #[test]
    fn find_modes_from_catalog_types() {
        use pathpatterns::MatchType::Include;
        assert_eq!(
            find_paths(second_example(), b"root.pxar.didx", &[entry("*/", Include)]),
            ["/e"]
        );
        let fifos = entry("*", Include).with_file_types(pathpatterns::MatchFlag::MATCH_FIFOS);
        assert_eq!(
            find_paths(second_example(), b"etc.pxar.didx", &[fifos]),
            ["/p"]
        );
        let symlinks = entry("*", Include).with_file_types(pathpatterns::MatchFlag::MATCH_SYMLINKS);
        assert_eq!(
            find_paths(first_example(), b"root.pxar.didx", &[symlinks]),
            ["/d/l"]
        );
        let files =
            entry("*", Include).with_file_types(pathpatterns::MatchFlag::MATCH_REGULAR_FILES);
        assert_eq!(
            find_paths(first_example(), b"root.pxar.didx", &[files]),
            ["/a"]
        );
        assert_eq!(
            CatalogEntryType::Hardlink.file_mode(),
            None,
            "hardlinks carry no type"
        );
    }

    #[test]
    fn find_exclude_skips_subtree_and_no_match_descends() {
        use pathpatterns::MatchType::{Exclude, Include};
        let all = [entry("**", Include)];
        assert_eq!(
            find_paths(first_example(), b"root.pxar.didx", &all),
            ["/a", "/d", "/d/l"]
        );
        let without_d = [entry("**", Include), entry("d", Exclude)];
        assert_eq!(
            find_paths(first_example(), b"root.pxar.didx", &without_d),
            ["/a"]
        );
        // `/d` itself matches nothing but is still walked.
        assert_eq!(
            find_paths(first_example(), b"root.pxar.didx", &[entry("l", Include)]),
            ["/d/l"]
        );
        // An Exclude-only list reports nothing.
        assert!(find_paths(first_example(), b"root.pxar.didx", &[entry("!x", Include)]).is_empty());
        // Anchored at the archive root: `/l` is not `/d/l`.
        assert!(find_paths(first_example(), b"root.pxar.didx", &[entry("/l", Include)]).is_empty());
        assert_eq!(
            find_paths(
                first_example(),
                b"root.pxar.didx",
                &[entry("/d/*", Include)]
            ),
            ["/d/l"]
        );
    }

    #[test]
    fn find_prefix_callback_errors_and_catalog_root() {
        use pathpatterns::MatchType::Include;
        let mut catalog = reader(second_example());
        let root = catalog.root().unwrap();
        let list = [entry("*.didx", Include), entry("/etc.pxar.didx/p", Include)];
        let mut found = Vec::new();
        let mut file_path = b"/base".to_vec();
        catalog
            .find(&root, &mut file_path, &list, &mut |path| {
                found.push(path.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(file_path, b"/base");
        assert_eq!(
            found,
            [
                b"/base/root.pxar.didx".to_vec(),
                b"/base/etc.pxar.didx".to_vec()
            ]
        );

        let mut file_path = Vec::new();
        let err = catalog
            .find(&root, &mut file_path, &[entry("p", Include)], &mut |path| {
                bail!("stop at {:?}", String::from_utf8_lossy(path))
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "stop at \"/etc.pxar.didx/p\"");
        assert!(file_path.is_empty(), "prefix restored after an error");

        let file = DirEntry {
            name: b"f".to_vec(),
            attr: DirEntryAttribute::File { size: 0, mtime: 0 },
        };
        assert!(catalog
            .find(&file, &mut Vec::new(), &[entry("*", Include)], &mut |_| Ok(
                ()
            ))
            .is_err());
    }
}
