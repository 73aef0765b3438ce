//! Streaming tar writer (GNU format): names and link targets longer than the header fields
//! get a preceding `././@LongLink` entry, numbers too large for octal use base-256.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;
const NAME_FIELD: usize = 100;
const LONG_LINK_NAME: &[u8] = b"././@LongLink";

/// The entry types written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TarKind {
    /// Regular file with contents.
    File,
    /// Hardlink to an earlier entry.
    Hardlink,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Directory.
    Directory,
    /// Named pipe.
    Fifo,
}

impl TarKind {
    fn flag(self) -> u8 {
        match self {
            TarKind::File => b'0',
            TarKind::Hardlink => b'1',
            TarKind::Symlink => b'2',
            TarKind::CharDevice => b'3',
            TarKind::BlockDevice => b'4',
            TarKind::Directory => b'5',
            TarKind::Fifo => b'6',
        }
    }
}

/// One entry's header fields.
pub struct TarEntry<'a> {
    /// Path inside the archive, without a leading `/`.
    pub name: &'a [u8],
    /// What the entry is.
    pub kind: TarKind,
    /// Permission bits (the type bits are dropped).
    pub mode: u64,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch (negative times are written as 0).
    pub mtime: i64,
    /// Link target for hardlinks and symlinks.
    pub link: &'a [u8],
    /// Device numbers for devices.
    pub device: (u64, u64),
}

/// Writes a tar stream entry by entry into `W`.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    /// Starts an empty archive.
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Adds an entry without contents.
    pub fn add(&mut self, entry: &TarEntry) -> io::Result<()> {
        self.write_header(entry, 0)
    }

    /// Adds a regular file of `size` bytes read from `contents`; fails if it yields another
    /// amount.
    pub fn add_file(
        &mut self,
        entry: &TarEntry,
        size: u64,
        contents: &mut dyn Read,
    ) -> io::Result<()> {
        self.write_header(entry, size)?;
        let copied = io::copy(&mut contents.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{:?}: file ends after {copied} of {size} bytes",
                    String::from_utf8_lossy(entry.name)
                ),
            ));
        }
        self.pad(size)
    }

    /// Writes the two zero blocks that end an archive; returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rest = (size % BLOCK as u64) as usize;
        if rest != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rest])?;
        }
        Ok(())
    }

    fn write_header(&mut self, entry: &TarEntry, size: u64) -> io::Result<()> {
        let mut name = entry.name.to_vec();
        if entry.kind == TarKind::Directory && !name.ends_with(b"/") {
            name.push(b'/');
        }
        if name.len() > NAME_FIELD {
            self.write_long_name(b'L', &name)?;
        }
        if entry.link.len() > NAME_FIELD {
            self.write_long_name(b'K', entry.link)?;
        }
        let mut header = [0u8; BLOCK];
        put_bytes(&mut header[0..100], &name);
        put_number(&mut header[100..108], entry.mode & 0o7777);
        put_number(&mut header[108..116], entry.uid);
        put_number(&mut header[116..124], entry.gid);
        put_number(&mut header[124..136], size);
        put_number(&mut header[136..148], entry.mtime.max(0) as u64);
        header[156] = entry.kind.flag();
        put_bytes(&mut header[157..257], entry.link);
        header[257..265].copy_from_slice(b"ustar  \0");
        if matches!(entry.kind, TarKind::CharDevice | TarKind::BlockDevice) {
            put_number(&mut header[329..337], entry.device.0);
            put_number(&mut header[337..345], entry.device.1);
        }
        set_checksum(&mut header);
        self.out.write_all(&header)
    }

    fn write_long_name(&mut self, flag: u8, name: &[u8]) -> io::Result<()> {
        let size = name.len() as u64 + 1;
        let mut header = [0u8; BLOCK];
        put_bytes(&mut header[0..100], LONG_LINK_NAME);
        put_number(&mut header[100..108], 0o644);
        put_number(&mut header[108..116], 0);
        put_number(&mut header[116..124], 0);
        put_number(&mut header[124..136], size);
        put_number(&mut header[136..148], 0);
        header[156] = flag;
        header[257..265].copy_from_slice(b"ustar  \0");
        set_checksum(&mut header);
        self.out.write_all(&header)?;
        self.out.write_all(name)?;
        self.out.write_all(&[0])?;
        self.pad(size)
    }
}

/// Copies as much of `value` as fits (long values were sent in a `@LongLink` entry before).
fn put_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Zero-padded octal with a terminating NUL, or GNU base-256 when the value does not fit.
fn put_number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if digits >= 22 || value < 1u64 << (3 * digits) {
        let text = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        let bytes = value.to_be_bytes();
        let len = field.len();
        field[len - 8..].copy_from_slice(&bytes);
        field[0] |= 0x80;
    }
}

fn set_checksum(header: &mut [u8; BLOCK]) {
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(name: &'a [u8], kind: TarKind, link: &'a [u8]) -> TarEntry<'a> {
        TarEntry {
            name,
            kind,
            mode: 0o100640,
            uid: 1000,
            gid: 100,
            mtime: 1_700_000_000,
            link,
            device: (0, 0),
        }
    }

    fn octal(field: &[u8]) -> u64 {
        let text = std::str::from_utf8(field).unwrap();
        u64::from_str_radix(text.trim_end_matches('\0').trim(), 8).unwrap()
    }

    #[test]
    fn headers_long_names_and_padding() {
        let mut tar = TarWriter::new(Vec::new());
        tar.add(&entry(b"d", TarKind::Directory, b"")).unwrap();
        tar.add_file(&entry(b"d/f", TarKind::File, b""), 3, &mut &b"abc"[..])
            .unwrap();
        let long = [b'x'; 150];
        tar.add(&entry(b"d/l", TarKind::Symlink, &long)).unwrap();
        let data = tar.finish().unwrap();
        // dir, file + 1 data block, long link + 1 name block, symlink, 2 end blocks
        assert_eq!(data.len(), 8 * BLOCK);

        let dir = &data[..BLOCK];
        assert_eq!(&dir[..2], b"d/");
        assert_eq!(dir[156], b'5');
        assert_eq!(octal(&dir[100..108]), 0o640);
        assert_eq!(octal(&dir[108..116]), 1000);
        assert_eq!(octal(&dir[136..148]), 1_700_000_000);
        let sum: u32 = dir
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(*b)
                }
            })
            .sum();
        assert_eq!(octal(&dir[148..155]), u64::from(sum));

        let file = &data[BLOCK..2 * BLOCK];
        assert_eq!(file[156], b'0');
        assert_eq!(octal(&file[124..136]), 3);
        assert_eq!(&data[2 * BLOCK..2 * BLOCK + 4], b"abc\0");

        let long_link = &data[3 * BLOCK..4 * BLOCK];
        assert_eq!(&long_link[..13], LONG_LINK_NAME);
        assert_eq!(long_link[156], b'K');
        assert_eq!(octal(&long_link[124..136]), 151);
        assert_eq!(&data[4 * BLOCK..4 * BLOCK + 150], &long[..]);
        let symlink = &data[5 * BLOCK..6 * BLOCK];
        assert_eq!(symlink[156], b'2');
        assert!(data[6 * BLOCK..].iter().all(|b| *b == 0));
    }

    #[test]
    fn large_numbers_use_base_256() {
        let mut field = [0u8; 12];
        put_number(&mut field, 0o77_777_777_777);
        assert_eq!(&field, b"77777777777\0");
        put_number(&mut field, 1 << 40);
        assert_eq!(field[0], 0x80);
        assert_eq!(u64::from_be_bytes(field[4..].try_into().unwrap()), 1 << 40);
    }

    #[test]
    fn short_file_contents_are_an_error() {
        let mut tar = TarWriter::new(Vec::new());
        let err = tar
            .add_file(&entry(b"f", TarKind::File, b""), 10, &mut &b"abc"[..])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
