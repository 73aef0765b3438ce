//! Sequential archive reader.
//!
//! Yields entries in archive order (directories before their children, a
//! [`EntryKind::GoodbyeTable`] entry after each directory's children) and validates the
//! structure on the way, including every goodbye table.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::entry::{Entry, EntryKind};
use crate::error::{Error, Result};
use crate::format::{
    self, bst_permutation, hash_filename, GoodbyeItem, Header, PayloadRef, GOODBYE_ITEM_SIZE,
    HEADER_SIZE,
};
use crate::items::{self, read_header, ItemRead};
use crate::metadata::Metadata;

/// A sequential stream with its position.
struct Input<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> ItemRead for Input<R> {
    fn pos(&self) -> u64 {
        self.pos
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(Error::Truncated {
                        offset: self.pos + done as u64,
                        what: what.to_string(),
                    })
                }
                Ok(n) => done += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(Error::read(self.pos + done as u64, what, err)),
            }
        }
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())
            .map_err(|err| Error::read(self.pos, what, err))?;
        self.pos += copied;
        if copied != n {
            return Err(Error::Truncated {
                offset: self.pos,
                what: what.to_string(),
            });
        }
        Ok(())
    }

    fn read_vec(&mut self, n: u64, what: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let got = (&mut self.inner)
            .take(n)
            .read_to_end(&mut out)
            .map_err(|err| Error::read(self.pos, what, err))?;
        self.pos += got as u64;
        if got as u64 != n {
            return Err(Error::Truncated {
                offset: self.pos,
                what: what.to_string(),
            });
        }
        Ok(out)
    }
}

impl<R: Read> Input<R> {
    fn at_eof(&mut self) -> Result<bool> {
        let mut byte = [0u8; 1];
        loop {
            match self.inner.read(&mut byte) {
                Ok(0) => return Ok(true),
                Ok(_) => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(Error::read(self.pos, "end of archive", err)),
            }
        }
    }
}

/// A directory whose children are being decoded.
struct OpenDir {
    path: PathBuf,
    /// Offset its goodbye tail refers to (ENTRY header; 0 for the root).
    entry_start: u64,
    /// `(name hash, FILENAME offset)` of every child so far.
    children: Vec<(u64, u64)>,
}

/// Where the contents of the last yielded regular file are.
enum FileData {
    None,
    /// v1: `remaining` bytes left at the current input position.
    Inline {
        remaining: u64,
    },
    /// v2: the reference, and once the payload header was checked, the bytes left to read.
    Payload {
        reference: PayloadRef,
        remaining: Option<u64>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Root,
    Body,
    Done,
}

/// Sequential reader over a v1 archive or a v2 `.mpxar` (+ optional `.ppxar`) pair.
pub struct Decoder<R: Read, P: Read = R> {
    input: Input<R>,
    payload: Option<Input<P>>,
    split: bool,
    prelude: Option<Vec<u8>>,
    state: State,
    dirs: Vec<OpenDir>,
    pending: Option<(Header, u64)>,
    file: FileData,
    /// Lowest payload offset the next PAYLOAD_REF may use.
    payload_ref_floor: u64,
    failed: bool,
}

impl<R: Read> Decoder<R, R> {
    /// Decoder for a unified (v1) archive, or a v2 metadata archive without payload input.
    pub fn new_unified(input: R) -> Result<Self> {
        Self::new(input, None)
    }
}

impl<R: Read, P: Read> Decoder<R, P> {
    /// Open an archive; `payload` is the `.ppxar` of a split archive. A v2 archive may be
    /// decoded without it (file contents are then unavailable).
    pub fn new(input: R, payload: Option<P>) -> Result<Self> {
        let mut input = Input {
            inner: input,
            pos: 0,
        };
        let (mut header, mut offset) = read_header(&mut input)?;
        let mut split = false;
        let mut prelude = None;
        if header.htype == format::PXAR_FORMAT_VERSION {
            header.expect_content_size(offset, 8)?;
            let mut bytes = [0u8; 8];
            input.read_exact(&mut bytes, "FORMAT_VERSION")?;
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
            (header, offset) = read_header(&mut input)?;
            if header.htype == format::PXAR_PRELUDE {
                prelude = Some(input.read_vec(header.content_size(), "PRELUDE")?);
                (header, offset) = read_header(&mut input)?;
            }
        }
        if !matches!(header.htype, format::PXAR_ENTRY | format::PXAR_ENTRY_V1) {
            return Err(items::unexpected(&header, offset, "root ENTRY"));
        }
        let payload = match payload {
            Some(_) if !split => {
                return Err(Error::invalid(
                    "payload input given for an archive that is not split",
                ))
            }
            Some(inner) => {
                let mut payload = Input { inner, pos: 0 };
                let (marker, marker_offset) = read_header(&mut payload)
                    .map_err(|err| payload_error(err, "payload stream start marker"))?;
                if marker.htype != format::PXAR_PAYLOAD_START_MARKER || marker.full_size != 16 {
                    return Err(Error::corrupt(
                        marker_offset,
                        "payload stream does not start with PAYLOAD_START_MARKER",
                    ));
                }
                Some(payload)
            }
            None => None,
        };
        Ok(Self {
            input,
            payload,
            split,
            prelude,
            state: State::Root,
            dirs: Vec::new(),
            pending: Some((header, offset)),
            file: FileData::None,
            payload_ref_floor: HEADER_SIZE,
            failed: false,
        })
    }

    /// Whether this is a v2 split archive.
    pub fn is_split(&self) -> bool {
        self.split
    }

    /// Offset in the (metadata) archive stream up to which items were consumed.
    pub fn position(&self) -> u64 {
        self.input.pos
    }

    /// The PRELUDE content of a v2 archive, if present.
    pub fn prelude(&self) -> Option<&[u8]> {
        self.prelude.as_deref()
    }

    /// Next entry in archive order; `Ok(None)` after the root's goodbye table (or after an error).
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.failed || self.state == State::Done {
            return Ok(None);
        }
        let result = self.advance();
        if result.is_err() {
            self.failed = true;
        }
        result.map(Some)
    }

    /// Reader for the contents of the regular file yielded last (`None` for other entries).
    pub fn contents(&mut self) -> Option<Contents<'_, R, P>> {
        match self.file {
            _ if self.failed => None,
            FileData::None => None,
            _ => Some(Contents { decoder: self }),
        }
    }

    fn advance(&mut self) -> Result<Entry> {
        if let FileData::Inline { remaining } = self.file {
            self.input.skip(remaining, "PAYLOAD content")?;
        }
        self.file = FileData::None;
        if self.state == State::Root {
            let (header, offset) = self.pending.take().ok_or(Error::Poisoned)?;
            let parsed = items::read_entry(&mut self.input, &header, offset, self.split)?;
            if parsed.kind != EntryKind::Directory {
                return Err(Error::corrupt(offset, "root entry is not a directory"));
            }
            self.pending = parsed.next;
            self.dirs.push(OpenDir {
                path: PathBuf::from("/"),
                entry_start: 0,
                children: Vec::new(),
            });
            self.state = State::Body;
            return Ok(Entry {
                path: PathBuf::from("/"),
                metadata: parsed.metadata,
                kind: EntryKind::Directory,
                filename_offset: None,
            });
        }
        let (header, offset) = match self.pending.take() {
            Some(pending) => pending,
            None => read_header(&mut self.input)?,
        };
        match header.htype {
            format::PXAR_FILENAME => self.read_child(header, offset),
            format::PXAR_GOODBYE => self.read_goodbye(header, offset),
            _ => Err(items::unexpected(&header, offset, "FILENAME or GOODBYE")),
        }
    }

    fn read_child(&mut self, header: Header, filename_start: u64) -> Result<Entry> {
        let name = items::read_filename(&mut self.input, &header, filename_start)?;
        let dir = self.dirs.last_mut().ok_or(Error::Poisoned)?;
        dir.children.push((hash_filename(&name), filename_start));
        let path = dir.path.join(OsStr::from_bytes(&name));
        let (header, offset) = read_header(&mut self.input)?;
        if header.htype == format::PXAR_HARDLINK {
            let (target, link_offset) =
                items::read_hardlink(&mut self.input, &header, offset, filename_start)?;
            return Ok(Entry {
                path,
                metadata: Metadata::default(),
                kind: EntryKind::Hardlink {
                    target,
                    offset: link_offset,
                },
                filename_offset: Some(filename_start),
            });
        }
        let parsed = items::read_entry(&mut self.input, &header, offset, self.split)?;
        match (&parsed.kind, parsed.payload_ref) {
            (EntryKind::File { size, .. }, None) => {
                self.file = FileData::Inline { remaining: *size };
            }
            (_, Some(reference)) => {
                if reference.offset < self.payload_ref_floor {
                    // The PAYLOAD_REF item (32 bytes) was the last one read.
                    return Err(Error::corrupt(
                        self.input.pos - 32,
                        format!(
                            "PAYLOAD_REF offset {} goes backwards (below {})",
                            reference.offset, self.payload_ref_floor
                        ),
                    ));
                }
                self.payload_ref_floor = reference.offset + HEADER_SIZE + reference.size;
                self.file = FileData::Payload {
                    reference,
                    remaining: None,
                };
            }
            (EntryKind::Directory, _) => self.dirs.push(OpenDir {
                path: path.clone(),
                entry_start: offset,
                children: Vec::new(),
            }),
            _ => {}
        }
        self.pending = parsed.next;
        Ok(Entry {
            path,
            metadata: parsed.metadata,
            kind: parsed.kind,
            filename_offset: Some(filename_start),
        })
    }

    fn read_goodbye(&mut self, header: Header, goodbye_start: u64) -> Result<Entry> {
        let dir = self.dirs.pop().ok_or(Error::Poisoned)?;
        let content = header.content_size();
        if !content.is_multiple_of(GOODBYE_ITEM_SIZE) || content < GOODBYE_ITEM_SIZE {
            return Err(Error::corrupt(
                goodbye_start,
                format!("GOODBYE content size {content} is not a positive multiple of 24"),
            ));
        }
        let count = content / GOODBYE_ITEM_SIZE - 1;
        if count != dir.children.len() as u64 {
            return Err(Error::corrupt(
                goodbye_start,
                format!(
                    "GOODBYE of {:?} has {count} items but the directory has {} entries",
                    dir.path,
                    dir.children.len()
                ),
            ));
        }
        let mut table = Vec::with_capacity(dir.children.len());
        for _ in 0..=count {
            let mut bytes = [0u8; 24];
            self.input.read_exact(&mut bytes, "GOODBYE item")?;
            table.push(GoodbyeItem::from_bytes(&bytes));
        }
        let tail = table.pop().ok_or(Error::Poisoned)?;
        check_tail(&tail, &header, goodbye_start, dir.entry_start)?;
        check_goodbye_items(&table, &dir.children, goodbye_start, self.split)?;
        if self.dirs.is_empty() {
            self.finish_archive()?;
        }
        Ok(Entry {
            path: dir.path,
            metadata: Metadata::default(),
            kind: EntryKind::GoodbyeTable,
            filename_offset: None,
        })
    }

    /// After the root goodbye table: the archive must end, the payload stream with its tail.
    fn finish_archive(&mut self) -> Result<()> {
        self.state = State::Done;
        if !self.input.at_eof()? {
            return Err(Error::corrupt(
                self.input.pos,
                "data after the root directory's goodbye table",
            ));
        }
        let Some(payload) = self.payload.as_mut() else {
            return Ok(());
        };
        let floor = self.payload_ref_floor.max(payload.pos);
        if payload.pos < floor {
            payload
                .skip(floor - payload.pos, "payload stream")
                .map_err(|err| payload_error(err, "referenced payload"))?;
        }
        // Keep the last 16 bytes of the remainder: they must be the tail marker.
        let start = payload.pos;
        let mut window = Vec::with_capacity(16);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match payload.inner.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(payload_error(
                        Error::read(payload.pos, "payload stream", err),
                        "payload stream",
                    ))
                }
            };
            payload.pos += n as u64;
            window.extend_from_slice(&buf[..n]);
            if window.len() > 16 {
                window.drain(..window.len() - 16);
            }
        }
        let tail_offset = payload.pos.saturating_sub(16);
        if payload.pos - start < 16 {
            return Err(payload_error(
                Error::Truncated {
                    offset: payload.pos,
                    what: "PAYLOAD_TAIL_MARKER".into(),
                },
                "payload stream",
            ));
        }
        let mut tail = [0u8; 16];
        tail.copy_from_slice(&window);
        let tail = Header::from_bytes(&tail);
        if tail.htype != format::PXAR_PAYLOAD_TAIL_MARKER || tail.full_size != 16 {
            return Err(Error::corrupt(
                tail_offset,
                "payload stream does not end with PAYLOAD_TAIL_MARKER",
            ));
        }
        Ok(())
    }

    /// Position the payload stream at the data of `reference`, checking its PAYLOAD header.
    fn open_payload(&mut self, reference: PayloadRef) -> Result<()> {
        let Some(payload) = self.payload.as_mut() else {
            return Err(Error::invalid(
                "file contents of a split archive need the payload input",
            ));
        };
        if reference.offset < payload.pos {
            return Err(Error::corrupt(
                payload.pos,
                format!(
                    "payload stream: PAYLOAD_REF offset {} lies before the consumed position",
                    reference.offset
                ),
            ));
        }
        payload
            .skip(reference.offset - payload.pos, "payload stream")
            .map_err(|err| payload_error(err, "payload stream"))?;
        let (header, offset) =
            read_header(payload).map_err(|err| payload_error(err, "PAYLOAD header"))?;
        if header.htype != format::PXAR_PAYLOAD || header.content_size() != reference.size {
            return Err(Error::corrupt(
                offset,
                format!(
                    "payload stream: expected PAYLOAD of {} bytes, found {} of {} bytes",
                    reference.size,
                    format::type_name(header.htype),
                    header.content_size()
                ),
            ));
        }
        Ok(())
    }
}

impl<R: Read, P: Read> Iterator for Decoder<R, P> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

fn payload_error(err: Error, what: &str) -> Error {
    match err {
        Error::Truncated { offset, .. } => Error::Truncated {
            offset,
            what: format!("payload stream: {what}"),
        },
        Error::Corrupt { offset, msg } => Error::Corrupt {
            offset,
            msg: format!("payload stream: {msg}"),
        },
        other => other,
    }
}

/// The tail item must carry the marker, point back to the directory ENTRY and hold the size.
pub(crate) fn check_tail(
    tail: &GoodbyeItem,
    header: &Header,
    goodbye_start: u64,
    entry_start: u64,
) -> Result<()> {
    if !tail.is_tail() {
        return Err(Error::corrupt(
            goodbye_start,
            "GOODBYE does not end with the tail marker",
        ));
    }
    if tail.size != header.full_size {
        return Err(Error::corrupt(
            goodbye_start,
            format!(
                "GOODBYE tail size {} differs from the item size {}",
                tail.size, header.full_size
            ),
        ));
    }
    if Some(entry_start) != goodbye_start.checked_sub(tail.offset) {
        return Err(Error::corrupt(
            goodbye_start,
            format!(
                "GOODBYE tail offset {} does not point to the directory entry at {entry_start}",
                tail.offset
            ),
        ));
    }
    Ok(())
}

/// Table items must be exactly the children, in search-tree layout, with plausible sizes.
fn check_goodbye_items(
    table: &[GoodbyeItem],
    children: &[(u64, u64)],
    goodbye_start: u64,
    split: bool,
) -> Result<()> {
    let mut by_hash: Vec<(u64, u64)> = children.to_vec();
    by_hash.sort_unstable();
    for (slot, source) in bst_permutation(table.len()).into_iter().enumerate() {
        if table[slot].hash != by_hash[source].0 {
            return Err(Error::corrupt(
                goodbye_start,
                format!("GOODBYE item {slot} breaks the search-tree order"),
            ));
        }
    }
    let mut listed = Vec::with_capacity(table.len());
    for item in table {
        let start = goodbye_start.checked_sub(item.offset).ok_or_else(|| {
            Error::corrupt(
                goodbye_start,
                "GOODBYE item offset points before the archive",
            )
        })?;
        listed.push((item.hash, start, item.size));
    }
    listed.sort_unstable();
    // Children lie back to back: each one's span ends where the next begins.
    let mut starts: Vec<u64> = children.iter().map(|c| c.1).collect();
    starts.sort_unstable();
    for (hash, start, size) in listed {
        let Ok(index) = starts.binary_search(&start) else {
            return Err(Error::corrupt(
                goodbye_start,
                format!("GOODBYE item offset does not point to an entry (start {start})"),
            ));
        };
        if by_hash.binary_search(&(hash, start)).is_err() {
            return Err(Error::corrupt(
                goodbye_start,
                format!("GOODBYE item for the entry at {start} has the wrong hash"),
            ));
        }
        let end = starts.get(index + 1).copied().unwrap_or(goodbye_start);
        let span = end - start;
        let plausible = if split { size >= span } else { size == span };
        if !plausible {
            return Err(Error::corrupt(
                goodbye_start,
                format!("GOODBYE item size {size} for the entry at {start} spans {span} bytes"),
            ));
        }
    }
    Ok(())
}

/// Reader over the contents of the file the decoder yielded last. Format errors come back as
/// `io::Error`s wrapping an [`Error`]; recover it with [`Error::from_io`].
pub struct Contents<'a, R: Read, P: Read> {
    decoder: &'a mut Decoder<R, P>,
}

impl<R: Read, P: Read> Read for Contents<'_, R, P> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let to_io = |err: Error| {
            let kind = match err {
                Error::Truncated { .. } => io::ErrorKind::UnexpectedEof,
                _ => io::ErrorKind::InvalidData,
            };
            io::Error::new(kind, err)
        };
        let decoder = &mut *self.decoder;
        match decoder.file {
            FileData::None => Ok(0),
            FileData::Inline { remaining } => {
                let want = (buf.len() as u64).min(remaining) as usize;
                if want == 0 {
                    return Ok(0);
                }
                let n = decoder.input.inner.read(&mut buf[..want])?;
                if n == 0 {
                    decoder.failed = true;
                    return Err(to_io(Error::Truncated {
                        offset: decoder.input.pos,
                        what: "PAYLOAD content".into(),
                    }));
                }
                decoder.input.pos += n as u64;
                decoder.file = FileData::Inline {
                    remaining: remaining - n as u64,
                };
                Ok(n)
            }
            FileData::Payload {
                reference,
                remaining,
            } => {
                let remaining = match remaining {
                    Some(remaining) => remaining,
                    None => {
                        if let Err(err) = decoder.open_payload(reference) {
                            decoder.failed = true;
                            return Err(to_io(err));
                        }
                        reference.size
                    }
                };
                let want = (buf.len() as u64).min(remaining) as usize;
                let n = if want == 0 {
                    0
                } else {
                    let Some(payload) = decoder.payload.as_mut() else {
                        return Ok(0);
                    };
                    let n = payload.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        decoder.failed = true;
                        return Err(to_io(Error::Truncated {
                            offset: payload.pos,
                            what: "payload stream: PAYLOAD content".into(),
                        }));
                    }
                    payload.pos += n as u64;
                    n
                };
                decoder.file = FileData::Payload {
                    reference,
                    remaining: Some(remaining - n as u64),
                };
                Ok(n)
            }
        }
    }
}
