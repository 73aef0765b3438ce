//! Sequential archive writer.
//!
//! Entries are added depth-first in archive order; children of a directory must come in
//! ascending byte order of their names. The encoder tracks every offset needed for hardlinks
//! and goodbye tables itself.

use std::io::{self, Read, Write};

use crate::error::{Error, Result};
use crate::format::{
    self, hash_filename, layout_goodbye_items, mode, Device, GoodbyeItem, Header, PayloadRef,
    HEADER_SIZE, MAX_PATH_LEN, MAX_XATTR_NAME_LEN, MAX_XATTR_VALUE_LEN,
};
use crate::metadata::Metadata;

/// Byte sink the encoder writes to; implemented for every `std::io::Write`.
///
/// Kept separate from `Write` so that non-blocking or chunking sinks can be plugged in.
pub trait SeqWrite {
    /// Write the whole buffer.
    fn seq_write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Flush buffered data.
    fn seq_flush(&mut self) -> io::Result<()>;
}

impl<W: Write> SeqWrite for W {
    fn seq_write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_all(buf)
    }

    fn seq_flush(&mut self) -> io::Result<()> {
        self.flush()
    }
}

/// Archive offset of an entry's FILENAME header: what a later hardlink to it refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkOffset(pub u64);

/// A stream with its current write position.
struct Output<W> {
    inner: W,
    pos: u64,
}

impl<W: SeqWrite> Output<W> {
    fn write(&mut self, buf: &[u8]) -> Result<()> {
        self.inner.seq_write_all(buf).map_err(|source| Error::Io {
            offset: self.pos,
            source,
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn write_item(&mut self, htype: u64, content: &[u8]) -> Result<()> {
        self.write(&Header::with_content_size(htype, content.len() as u64).to_bytes())?;
        self.write(content)
    }

    fn flush(&mut self) -> Result<()> {
        self.inner.seq_flush().map_err(|source| Error::Io {
            offset: self.pos,
            source,
        })
    }
}

/// Goodbye bookkeeping of one open directory.
struct DirState {
    /// Offset of the directory's ENTRY header (0 for the root, even in v2).
    entry_start: u64,
    /// Offset of the directory's FILENAME header (its own goodbye item in the parent).
    filename_start: u64,
    name: Vec<u8>,
    /// Children so far, `offset` holding the absolute FILENAME offset until the table is built.
    items: Vec<GoodbyeItem>,
    last_name: Option<Vec<u8>>,
}

/// Archive writer for v1 (one output) or v2 (metadata output plus payload output).
pub struct Encoder<W: SeqWrite, P: SeqWrite = W> {
    out: Output<W>,
    payload: Option<Output<P>>,
    dirs: Vec<DirState>,
    /// End of the last referenced payload range; references must not go below it.
    payload_ref_floor: u64,
    allow_unsorted_next: bool,
    poisoned: bool,
}

impl<W: SeqWrite> Encoder<W, W> {
    /// Start a v1 (unified) archive whose root directory has `root` metadata.
    pub fn new_unified(output: W, root: &Metadata) -> Result<Self> {
        Self::new(output, root, None, None)
    }
}

impl<W: SeqWrite, P: SeqWrite> Encoder<W, P> {
    /// Start an archive: v2 split if `payload_output` is given (with an optional prelude),
    /// v1 otherwise (a prelude is refused there).
    pub fn new(
        output: W,
        root: &Metadata,
        payload_output: Option<P>,
        prelude: Option<&[u8]>,
    ) -> Result<Self> {
        if !root.stat.is_dir() {
            return Err(Error::invalid(format!(
                "archive root must be a directory (mode {:o})",
                root.stat.mode
            )));
        }
        check_metadata(root)?;
        let mut out = Output {
            inner: output,
            pos: 0,
        };
        let payload = match payload_output {
            Some(inner) => {
                out.write_item(
                    format::PXAR_FORMAT_VERSION,
                    &format::FORMAT_VERSION_SPLIT.to_le_bytes(),
                )?;
                if let Some(prelude) = prelude {
                    out.write_item(format::PXAR_PRELUDE, prelude)?;
                }
                let mut payload = Output { inner, pos: 0 };
                payload.write(
                    &Header::with_content_size(format::PXAR_PAYLOAD_START_MARKER, 0).to_bytes(),
                )?;
                Some(payload)
            }
            None if prelude.is_some() => {
                return Err(Error::invalid("a prelude requires a split (v2) archive"));
            }
            None => None,
        };
        let mut encoder = Self {
            out,
            payload,
            dirs: vec![DirState {
                entry_start: 0,
                filename_start: 0,
                name: Vec::new(),
                items: Vec::new(),
                last_name: None,
            }],
            payload_ref_floor: HEADER_SIZE,
            allow_unsorted_next: false,
            poisoned: false,
        };
        encoder.guarded(|e| e.write_metadata(root))?;
        Ok(encoder)
    }

    /// Current offset in the (metadata) archive stream.
    pub fn position(&self) -> u64 {
        self.out.pos
    }

    /// Current offset in the payload stream (v2 only).
    pub fn payload_position(&self) -> Option<u64> {
        self.payload.as_ref().map(|p| p.pos)
    }

    /// Whether this is a v2 split archive.
    pub fn is_split(&self) -> bool {
        self.payload.is_some()
    }

    /// Path (relative to the root, `/`-joined) of the innermost open directory.
    pub fn current_dir_path(&self) -> Vec<u8> {
        let names: Vec<&[u8]> = self.dirs[1..].iter().map(|d| d.name.as_slice()).collect();
        names.join(&b'/')
    }

    /// Let the next child skip the sort-order check (e.g. a synthetic file appended after the
    /// sorted entries); it must still not repeat an earlier name's hash.
    pub fn allow_unsorted_next_entry(&mut self) {
        self.allow_unsorted_next = true;
    }

    /// Run `op`, poisoning the encoder on failure since a partial item may have been written.
    fn guarded<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let result = op(self);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn check_usable(&self) -> Result<()> {
        if self.poisoned {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Validate a child name against the current directory (before anything is written).
    fn check_child_name(&self, name: &[u8]) -> Result<()> {
        self.check_usable()?;
        if !format::is_valid_filename(name) {
            return Err(Error::invalid(format!(
                "invalid file name {:?}",
                String::from_utf8_lossy(name)
            )));
        }
        let dir = self.current_dir();
        if self.allow_unsorted_next {
            let hash = hash_filename(name);
            if dir.items.iter().any(|item| item.hash == hash) {
                return Err(Error::invalid(format!(
                    "duplicate file name {:?} in {:?}",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(&self.current_dir_path())
                )));
            }
        } else if let Some(last) = &dir.last_name {
            if name <= last.as_slice() {
                return Err(Error::invalid(format!(
                    "file name {:?} in {:?} not after {:?}: entries must be added sorted by name",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(&self.current_dir_path()),
                    String::from_utf8_lossy(last)
                )));
            }
        }
        Ok(())
    }

    fn current_dir(&self) -> &DirState {
        // The root stays on the stack until `finish`, which consumes the encoder.
        &self.dirs[self.dirs.len() - 1]
    }

    fn current_dir_mut(&mut self) -> &mut DirState {
        let last = self.dirs.len() - 1;
        &mut self.dirs[last]
    }

    /// Write the FILENAME item; returns its offset.
    fn begin_child(&mut self, name: &[u8]) -> Result<u64> {
        let start = self.out.pos;
        let mut content = Vec::with_capacity(name.len() + 1);
        content.extend_from_slice(name);
        content.push(0);
        self.out.write_item(format::PXAR_FILENAME, &content)?;
        Ok(start)
    }

    /// Record the finished child in the current directory's goodbye list.
    fn end_child(&mut self, name: &[u8], filename_start: u64, extra_size: u64) {
        let size = self.out.pos - filename_start + extra_size;
        let sorted = !self.allow_unsorted_next;
        self.allow_unsorted_next = false;
        let dir = self.current_dir_mut();
        dir.items.push(GoodbyeItem::new(name, filename_start, size));
        if sorted {
            dir.last_name = Some(name.to_vec());
        }
    }

    fn write_metadata(&mut self, metadata: &Metadata) -> Result<()> {
        let out = &mut self.out;
        out.write_item(format::PXAR_ENTRY, &metadata.stat.to_bytes())?;
        for xattr in &metadata.xattrs {
            out.write_item(format::PXAR_XATTR, &xattr.to_content())?;
        }
        for user in &metadata.acl.users {
            out.write_item(format::PXAR_ACL_USER, &user.to_bytes())?;
        }
        for group in &metadata.acl.groups {
            out.write_item(format::PXAR_ACL_GROUP, &group.to_bytes())?;
        }
        if let Some(group_obj) = &metadata.acl.group_obj {
            out.write_item(
                format::PXAR_ACL_GROUP_OBJ,
                &group_obj.permissions.to_le_bytes(),
            )?;
        }
        if let Some(default) = &metadata.acl.default {
            out.write_item(format::PXAR_ACL_DEFAULT, &default.to_bytes())?;
        }
        for user in &metadata.acl.default_users {
            out.write_item(format::PXAR_ACL_DEFAULT_USER, &user.to_bytes())?;
        }
        for group in &metadata.acl.default_groups {
            out.write_item(format::PXAR_ACL_DEFAULT_GROUP, &group.to_bytes())?;
        }
        if let Some(fcaps) = &metadata.fcaps {
            out.write_item(format::PXAR_FCAPS, &fcaps.data)?;
        }
        if let Some(projid) = &metadata.quota_project_id {
            out.write_item(format::PXAR_QUOTA_PROJID, &projid.projid.to_le_bytes())?;
        }
        Ok(())
    }

    /// Checks shared by every entry with metadata, before any byte is written.
    fn check_entry(&self, metadata: &Metadata, name: &[u8], file_type: &[u64]) -> Result<()> {
        self.check_child_name(name)?;
        if !file_type.contains(&metadata.stat.file_type()) {
            return Err(Error::invalid(format!(
                "{:?}: mode {:o} does not match the entry kind",
                String::from_utf8_lossy(name),
                metadata.stat.mode
            )));
        }
        check_metadata(metadata)
    }

    /// Open a subdirectory; its children follow, then [`Encoder::finish_directory`].
    pub fn create_directory(&mut self, name: &[u8], metadata: &Metadata) -> Result<LinkOffset> {
        self.check_entry(metadata, name, &[mode::IFDIR])?;
        self.guarded(|e| {
            let filename_start = e.begin_child(name)?;
            let entry_start = e.out.pos;
            e.write_metadata(metadata)?;
            e.dirs.push(DirState {
                entry_start,
                filename_start,
                name: name.to_vec(),
                items: Vec::new(),
                last_name: None,
            });
            Ok(LinkOffset(filename_start))
        })
    }

    /// Write the goodbye table of the innermost directory.
    fn write_goodbye(&mut self, dir: DirState) -> Result<()> {
        let goodbye_start = self.out.pos;
        let count = dir.items.len() as u64;
        let full_size = HEADER_SIZE + format::GOODBYE_ITEM_SIZE * (count + 1);
        let items = dir
            .items
            .into_iter()
            .map(|item| GoodbyeItem {
                offset: goodbye_start - item.offset,
                ..item
            })
            .collect();
        let mut content = Vec::with_capacity((full_size - HEADER_SIZE) as usize);
        for item in layout_goodbye_items(items) {
            content.extend_from_slice(&item.to_bytes());
        }
        let tail = GoodbyeItem {
            hash: format::PXAR_GOODBYE_TAIL_MARKER,
            offset: goodbye_start - dir.entry_start,
            size: full_size,
        };
        content.extend_from_slice(&tail.to_bytes());
        self.out.write_item(format::PXAR_GOODBYE, &content)
    }

    /// Close the innermost subdirectory (not the root; use [`Encoder::finish`]).
    pub fn finish_directory(&mut self) -> Result<()> {
        self.check_usable()?;
        if self.dirs.len() < 2 {
            return Err(Error::invalid(
                "finish_directory without an open subdirectory",
            ));
        }
        self.guarded(|e| {
            let Some(dir) = e.dirs.pop() else {
                return Err(Error::invalid("no open directory"));
            };
            let name = dir.name.clone();
            let filename_start = dir.filename_start;
            e.write_goodbye(dir)?;
            e.end_child(&name, filename_start, 0);
            Ok(())
        })
    }

    /// Add a regular file whose `size` bytes are read from `content`.
    pub fn add_file(
        &mut self,
        metadata: &Metadata,
        name: &[u8],
        size: u64,
        content: &mut dyn Read,
    ) -> Result<LinkOffset> {
        let mut writer = self.create_file(metadata, name, size)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut remaining = size;
        while remaining > 0 {
            let want = remaining.min(buf.len() as u64) as usize;
            let got = match content.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(Error::invalid(format!(
                        "{:?}: content ended {remaining} bytes before the announced size {size}",
                        String::from_utf8_lossy(name)
                    )))
                }
                Ok(got) => got,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(Error::invalid(format!(
                        "{:?}: reading content failed: {err}",
                        String::from_utf8_lossy(name)
                    )))
                }
            };
            writer.write_content(&buf[..got])?;
            remaining -= got as u64;
        }
        writer.finish()
    }

    /// Start a regular file of exactly `size` bytes to be streamed through the returned writer.
    pub fn create_file(
        &mut self,
        metadata: &Metadata,
        name: &[u8],
        size: u64,
    ) -> Result<FileWriter<'_, W, P>> {
        self.check_entry(metadata, name, &[mode::IFREG])?;
        self.check_payload_caught_up()?;
        let filename_start = self.guarded(|e| {
            let filename_start = e.begin_child(name)?;
            e.write_metadata(metadata)?;
            let header = Header::with_content_size(format::PXAR_PAYLOAD, size).to_bytes();
            match e.payload.as_mut() {
                Some(payload) => {
                    let reference = PayloadRef {
                        offset: payload.pos,
                        size,
                    };
                    e.out
                        .write_item(format::PXAR_PAYLOAD_REF, &reference.to_bytes())?;
                    payload.write(&header)?;
                }
                None => e.out.write(&header)?,
            }
            Ok(filename_start)
        })?;
        // An unfinished writer leaves a partial entry behind; `finish` clears this again.
        self.poisoned = true;
        Ok(FileWriter {
            encoder: self,
            name: name.to_vec(),
            filename_start,
            size,
            remaining: size,
            failed: false,
        })
    }

    /// Add a v2 file whose PAYLOAD item already sits (or will be injected) at `payload_offset`
    /// of the payload stream, e.g. reused from a previous archive.
    pub fn add_payload_ref(
        &mut self,
        metadata: &Metadata,
        name: &[u8],
        size: u64,
        payload_offset: u64,
    ) -> Result<LinkOffset> {
        self.check_entry(metadata, name, &[mode::IFREG])?;
        let Some(payload_pos) = self.payload_position() else {
            return Err(Error::invalid("payload references require a split archive"));
        };
        let floor = self.payload_ref_floor.max(payload_pos);
        if payload_offset < floor {
            return Err(Error::invalid(format!(
                "{:?}: payload offset {payload_offset} below the current payload position {floor}",
                String::from_utf8_lossy(name)
            )));
        }
        let end = payload_offset
            .checked_add(HEADER_SIZE)
            .and_then(|v| v.checked_add(size))
            .ok_or_else(|| Error::invalid("payload reference range overflows"))?;
        self.guarded(|e| {
            let filename_start = e.begin_child(name)?;
            e.write_metadata(metadata)?;
            let reference = PayloadRef {
                offset: payload_offset,
                size,
            };
            e.out
                .write_item(format::PXAR_PAYLOAD_REF, &reference.to_bytes())?;
            e.payload_ref_floor = end;
            e.end_child(name, filename_start, 0);
            Ok(LinkOffset(filename_start))
        })
    }

    /// Fresh payload must not land inside a range referenced earlier but not yet written.
    fn check_payload_caught_up(&self) -> Result<()> {
        match self.payload_position() {
            Some(pos) if pos < self.payload_ref_floor => Err(Error::invalid(format!(
                "payload position {pos} is below the end {} of the last payload reference; \
                 write or advance over the referenced range first",
                self.payload_ref_floor
            ))),
            _ => Ok(()),
        }
    }

    /// Account for `size` payload-stream bytes that the caller inserts out of band (reused
    /// chunks); later references must lie behind them.
    pub fn advance_payload_position(&mut self, size: u64) -> Result<()> {
        self.check_usable()?;
        let Some(payload) = self.payload.as_mut() else {
            return Err(Error::invalid("payload stream requires a split archive"));
        };
        payload.pos = payload
            .pos
            .checked_add(size)
            .ok_or_else(|| Error::invalid("payload position overflows"))?;
        Ok(())
    }

    /// Copy raw bytes (e.g. PAYLOAD items of a previous payload stream) into the payload stream.
    pub fn write_payload_raw(&mut self, data: &[u8]) -> Result<()> {
        self.check_usable()?;
        if self.payload.is_none() {
            return Err(Error::invalid("payload stream requires a split archive"));
        }
        self.guarded(|e| match e.payload.as_mut() {
            Some(payload) => payload.write(data),
            None => Ok(()),
        })
    }

    /// Add a symlink pointing to `target`.
    pub fn add_symlink(&mut self, metadata: &Metadata, name: &[u8], target: &[u8]) -> Result<()> {
        self.check_entry(metadata, name, &[mode::IFLNK])?;
        if target.len() as u64 > MAX_PATH_LEN || target.contains(&0) {
            return Err(Error::invalid(format!(
                "{:?}: symlink target too long or contains NUL",
                String::from_utf8_lossy(name)
            )));
        }
        self.guarded(|e| {
            let filename_start = e.begin_child(name)?;
            e.write_metadata(metadata)?;
            let mut content = Vec::with_capacity(target.len() + 1);
            content.extend_from_slice(target);
            content.push(0);
            e.out.write_item(format::PXAR_SYMLINK, &content)?;
            e.end_child(name, filename_start, 0);
            Ok(())
        })
    }

    /// Add a character or block device.
    pub fn add_device(&mut self, metadata: &Metadata, name: &[u8], device: Device) -> Result<()> {
        self.check_entry(metadata, name, &[mode::IFCHR, mode::IFBLK])?;
        self.guarded(|e| {
            let filename_start = e.begin_child(name)?;
            e.write_metadata(metadata)?;
            e.out.write_item(format::PXAR_DEVICE, &device.to_bytes())?;
            e.end_child(name, filename_start, 0);
            Ok(())
        })
    }

    fn add_tailless(&mut self, metadata: &Metadata, name: &[u8], file_type: u64) -> Result<()> {
        self.check_entry(metadata, name, &[file_type])?;
        self.guarded(|e| {
            let filename_start = e.begin_child(name)?;
            e.write_metadata(metadata)?;
            e.end_child(name, filename_start, 0);
            Ok(())
        })
    }

    /// Add a fifo.
    pub fn add_fifo(&mut self, metadata: &Metadata, name: &[u8]) -> Result<()> {
        self.add_tailless(metadata, name, mode::IFIFO)
    }

    /// Add a socket.
    pub fn add_socket(&mut self, metadata: &Metadata, name: &[u8]) -> Result<()> {
        self.add_tailless(metadata, name, mode::IFSOCK)
    }

    /// Add a hardlink to the earlier file at `target_offset` whose root-relative path is `target`.
    pub fn add_hardlink(
        &mut self,
        name: &[u8],
        target: &[u8],
        target_offset: LinkOffset,
    ) -> Result<()> {
        self.check_child_name(name)?;
        if !format::is_valid_relative_path(target) {
            return Err(Error::invalid(format!(
                "{:?}: hardlink target {:?} is not a relative path",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(target)
            )));
        }
        let here = self.out.pos;
        if target_offset.0 >= here {
            return Err(Error::invalid(format!(
                "{:?}: hardlink target offset {} does not point backwards (now at {here})",
                String::from_utf8_lossy(name),
                target_offset.0
            )));
        }
        self.guarded(|e| {
            let filename_start = e.begin_child(name)?;
            let mut content = Vec::with_capacity(8 + target.len() + 1);
            content.extend_from_slice(&(filename_start - target_offset.0).to_le_bytes());
            content.extend_from_slice(target);
            content.push(0);
            e.out.write_item(format::PXAR_HARDLINK, &content)?;
            e.end_child(name, filename_start, 0);
            Ok(())
        })
    }

    /// Close the root directory and the payload stream; returns the outputs.
    pub fn finish(mut self) -> Result<(W, Option<P>)> {
        self.check_usable()?;
        if self.dirs.len() != 1 {
            return Err(Error::invalid(format!(
                "{} directories still open at finish",
                self.dirs.len() - 1
            )));
        }
        self.check_payload_caught_up()?;
        let root = self.dirs.pop().ok_or(Error::Poisoned)?;
        self.write_goodbye(root)?;
        self.out.flush()?;
        if let Some(payload) = self.payload.as_mut() {
            payload.write(
                &Header::with_content_size(format::PXAR_PAYLOAD_TAIL_MARKER, 0).to_bytes(),
            )?;
            payload.flush()?;
        }
        Ok((self.out.inner, self.payload.map(|p| p.inner)))
    }
}

/// Streaming writer for the contents of one regular file; call [`FileWriter::finish`].
pub struct FileWriter<'a, W: SeqWrite, P: SeqWrite> {
    encoder: &'a mut Encoder<W, P>,
    name: Vec<u8>,
    filename_start: u64,
    size: u64,
    remaining: u64,
    failed: bool,
}

impl<W: SeqWrite, P: SeqWrite> FileWriter<'_, W, P> {
    /// Write the next content bytes; more than the announced size is refused.
    pub fn write_content(&mut self, data: &[u8]) -> Result<()> {
        if data.len() as u64 > self.remaining {
            return Err(Error::invalid(format!(
                "{:?}: more content than the announced size {}",
                String::from_utf8_lossy(&self.name),
                self.size
            )));
        }
        if self.failed {
            return Err(Error::Poisoned);
        }
        let encoder = &mut *self.encoder;
        let result = match encoder.payload.as_mut() {
            Some(payload) => payload.write(data),
            None => encoder.out.write(data),
        };
        if result.is_err() {
            self.failed = true;
        }
        result?;
        self.remaining -= data.len() as u64;
        Ok(())
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Complete the file; fails unless exactly the announced size was written.
    pub fn finish(self) -> Result<LinkOffset> {
        if self.failed {
            return Err(Error::Poisoned);
        }
        if self.remaining != 0 {
            return Err(Error::invalid(format!(
                "{:?}: {} of {} content bytes missing",
                String::from_utf8_lossy(&self.name),
                self.remaining,
                self.size
            )));
        }
        let encoder = self.encoder;
        encoder.poisoned = false;
        // In a split archive the goodbye size counts the file size although the data lives in
        // the payload stream (format quirk kept for byte compatibility).
        let extra = if encoder.payload.is_some() {
            self.size
        } else {
            0
        };
        encoder.end_child(&self.name, self.filename_start, extra);
        Ok(LinkOffset(self.filename_start))
    }
}

impl<W: SeqWrite, P: SeqWrite> Write for FileWriter<'_, W, P> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = (buf.len() as u64).min(self.remaining) as usize;
        if len == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "file content exceeds the announced size",
            ));
        }
        self.write_content(&buf[..len])
            .map_err(|err| io::Error::other(err.to_string()))?;
        Ok(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn check_metadata(metadata: &Metadata) -> Result<()> {
    for xattr in &metadata.xattrs {
        xattr.check()?;
    }
    if let Some(fcaps) = &metadata.fcaps {
        if fcaps.data.len() as u64 > MAX_XATTR_NAME_LEN + MAX_XATTR_VALUE_LEN {
            return Err(Error::invalid("file capabilities too long"));
        }
    }
    Ok(())
}
