//! Streaming zip writer: every entry is written once, front to back, so the archive never has
//! to be held in memory. Sizes and CRCs follow each file in a data descriptor and all size
//! fields use the zip64 extension, so files and archives beyond 4 GiB work without seeking.

use std::io::{self, Read, Write};

use flate2::write::DeflateEncoder;
use flate2::Compression;

const LOCAL_HEADER_SIG: u32 = 0x0403_4b50;
const DATA_DESCRIPTOR_SIG: u32 = 0x0807_4b50;
const CENTRAL_HEADER_SIG: u32 = 0x0201_4b50;
const ZIP64_END_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const END_SIG: u32 = 0x0605_4b50;

/// Zip 4.5 (zip64) is needed to read the archives.
const VERSION_NEEDED: u16 = 45;
/// Made by a Unix host (high byte 3), spec version 4.5: readers then apply the mode bits.
const VERSION_MADE_BY: u16 = 0x032d;
/// Sizes follow in a data descriptor (bit 3); names are UTF-8 (bit 11).
const FLAGS: u16 = 0x0808;
const METHOD_STORE: u16 = 0;
const METHOD_DEFLATE: u16 = 8;
const ZIP64_EXTRA_ID: u16 = 0x0001;
/// "UT" extended timestamp: the exact mtime, which DOS dates cannot hold.
const TIMESTAMP_EXTRA_ID: u16 = 0x5455;
/// MS-DOS directory attribute in the low byte of the external attributes.
const DOS_DIRECTORY: u32 = 0x10;

/// What the central directory needs to know about a written entry.
struct CentralRecord {
    name: Vec<u8>,
    method: u16,
    dos_time: u16,
    dos_date: u16,
    mtime: i64,
    external_attributes: u32,
    crc: u32,
    compressed: u64,
    uncompressed: u64,
    offset: u64,
}

/// Counts the bytes passed through to the output (entry offsets and compressed sizes).
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Entry properties shared by files and directories.
pub struct ZipEntry<'a> {
    /// Name inside the archive, `/`-separated, without a leading `/`.
    pub name: &'a [u8],
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
}

/// Writes a zip archive entry by entry into `W`.
pub struct ZipWriter<W: Write> {
    out: Counting<W>,
    central: Vec<CentralRecord>,
}

impl<W: Write> ZipWriter<W> {
    /// Starts an empty archive.
    pub fn new(out: W) -> Self {
        Self {
            out: Counting {
                inner: out,
                written: 0,
            },
            central: Vec::new(),
        }
    }

    /// Adds a directory entry (its name gets a trailing `/`).
    pub fn add_directory(&mut self, entry: &ZipEntry) -> io::Result<()> {
        let mut name = entry.name.to_vec();
        if !name.ends_with(b"/") {
            name.push(b'/');
        }
        let mut record = self.start_entry(name, entry, METHOD_STORE, DOS_DIRECTORY)?;
        self.finish_entry(&mut record, 0, 0, 0)?;
        self.central.push(record);
        Ok(())
    }

    /// Adds a regular file whose contents are read from `contents` and deflated.
    pub fn add_file(&mut self, entry: &ZipEntry, contents: &mut dyn Read) -> io::Result<()> {
        let mut record = self.start_entry(entry.name.to_vec(), entry, METHOD_DEFLATE, 0)?;
        let start = self.out.written;
        let mut crc = crc32fast::Hasher::new();
        let mut uncompressed = 0u64;
        let mut encoder = DeflateEncoder::new(&mut self.out, Compression::fast());
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match contents.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            crc.update(&buf[..n]);
            uncompressed += n as u64;
            encoder.write_all(&buf[..n])?;
        }
        encoder.finish()?;
        let compressed = self.out.written - start;
        self.finish_entry(&mut record, crc.finalize(), compressed, uncompressed)?;
        self.central.push(record);
        Ok(())
    }

    fn start_entry(
        &mut self,
        name: Vec<u8>,
        entry: &ZipEntry,
        method: u16,
        dos_attributes: u32,
    ) -> io::Result<CentralRecord> {
        let name_len = u16::try_from(name.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "zip entry name too long: {:?}",
                    String::from_utf8_lossy(&name)
                ),
            )
        })?;
        let (dos_time, dos_date) = dos_date_time(entry.mtime);
        let record = CentralRecord {
            name,
            method,
            dos_time,
            dos_date,
            mtime: entry.mtime,
            external_attributes: (entry.mode << 16) | dos_attributes,
            crc: 0,
            compressed: 0,
            uncompressed: 0,
            offset: self.out.written,
        };
        let mut header = Vec::with_capacity(30 + record.name.len() + 29);
        put_u32(&mut header, LOCAL_HEADER_SIG);
        put_u16(&mut header, VERSION_NEEDED);
        put_u16(&mut header, FLAGS);
        put_u16(&mut header, method);
        put_u16(&mut header, dos_time);
        put_u16(&mut header, dos_date);
        put_u32(&mut header, 0); // CRC, in the data descriptor
        put_u32(&mut header, u32::MAX); // sizes, in the zip64 field and the data descriptor
        put_u32(&mut header, u32::MAX);
        put_u16(&mut header, name_len);
        put_u16(&mut header, 4 + 16 + 4 + 5);
        header.extend_from_slice(&record.name);
        put_u16(&mut header, ZIP64_EXTRA_ID);
        put_u16(&mut header, 16);
        put_u64(&mut header, 0);
        put_u64(&mut header, 0);
        put_timestamp_extra(&mut header, entry.mtime);
        self.out.write_all(&header)?;
        Ok(record)
    }

    fn finish_entry(
        &mut self,
        record: &mut CentralRecord,
        crc: u32,
        compressed: u64,
        uncompressed: u64,
    ) -> io::Result<()> {
        record.crc = crc;
        record.compressed = compressed;
        record.uncompressed = uncompressed;
        let mut descriptor = Vec::with_capacity(24);
        put_u32(&mut descriptor, DATA_DESCRIPTOR_SIG);
        put_u32(&mut descriptor, crc);
        put_u64(&mut descriptor, compressed);
        put_u64(&mut descriptor, uncompressed);
        self.out.write_all(&descriptor)
    }

    /// Writes the central directory and the end records; returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        let central_start = self.out.written;
        let mut buf = Vec::new();
        for record in &self.central {
            buf.clear();
            put_u32(&mut buf, CENTRAL_HEADER_SIG);
            put_u16(&mut buf, VERSION_MADE_BY);
            put_u16(&mut buf, VERSION_NEEDED);
            put_u16(&mut buf, FLAGS);
            put_u16(&mut buf, record.method);
            put_u16(&mut buf, record.dos_time);
            put_u16(&mut buf, record.dos_date);
            put_u32(&mut buf, record.crc);
            put_u32(&mut buf, u32::MAX);
            put_u32(&mut buf, u32::MAX);
            // The name length was checked when the entry was started.
            put_u16(&mut buf, record.name.len() as u16);
            put_u16(&mut buf, 4 + 24 + 4 + 5);
            put_u16(&mut buf, 0); // comment length
            put_u16(&mut buf, 0); // disk number
            put_u16(&mut buf, 0); // internal attributes
            put_u32(&mut buf, record.external_attributes);
            put_u32(&mut buf, u32::MAX);
            buf.extend_from_slice(&record.name);
            put_u16(&mut buf, ZIP64_EXTRA_ID);
            put_u16(&mut buf, 24);
            put_u64(&mut buf, record.uncompressed);
            put_u64(&mut buf, record.compressed);
            put_u64(&mut buf, record.offset);
            put_timestamp_extra(&mut buf, record.mtime);
            self.out.write_all(&buf)?;
        }
        let central_end = self.out.written;
        let count = self.central.len() as u64;

        buf.clear();
        put_u32(&mut buf, ZIP64_END_SIG);
        put_u64(&mut buf, 44); // size of the rest of this record
        put_u16(&mut buf, VERSION_MADE_BY);
        put_u16(&mut buf, VERSION_NEEDED);
        put_u32(&mut buf, 0); // this disk
        put_u32(&mut buf, 0); // disk of the central directory
        put_u64(&mut buf, count);
        put_u64(&mut buf, count);
        put_u64(&mut buf, central_end - central_start);
        put_u64(&mut buf, central_start);

        put_u32(&mut buf, ZIP64_LOCATOR_SIG);
        put_u32(&mut buf, 0);
        put_u64(&mut buf, central_end);
        put_u32(&mut buf, 1); // total disks

        put_u32(&mut buf, END_SIG);
        put_u16(&mut buf, 0);
        put_u16(&mut buf, 0);
        let short_count = u16::try_from(count).unwrap_or(u16::MAX);
        put_u16(&mut buf, short_count);
        put_u16(&mut buf, short_count);
        put_u32(
            &mut buf,
            u32::try_from(central_end - central_start).unwrap_or(u32::MAX),
        );
        put_u32(&mut buf, u32::MAX); // offset: see the zip64 record
        put_u16(&mut buf, 0); // comment length
        self.out.write_all(&buf)?;
        self.out.flush()?;
        Ok(self.out.inner)
    }
}

fn put_u16(buf: &mut Vec<u8>, value: u16) {
    buf.extend_from_slice(&value.to_le_bytes());
}

fn put_u32(buf: &mut Vec<u8>, value: u32) {
    buf.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(buf: &mut Vec<u8>, value: u64) {
    buf.extend_from_slice(&value.to_le_bytes());
}

/// The "UT" field with the modification time only (clamped to its 32-bit range).
fn put_timestamp_extra(buf: &mut Vec<u8>, mtime: i64) {
    put_u16(buf, TIMESTAMP_EXTRA_ID);
    put_u16(buf, 5);
    buf.push(1); // mtime present
    let clamped = mtime.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    buf.extend_from_slice(&clamped.to_le_bytes());
}

/// MS-DOS time and date of `epoch` in local time, as zip readers interpret them; times
/// outside the DOS range (1980..=2107) are clamped to its ends.
fn dos_date_time(epoch: i64) -> (u16, u16) {
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let time = epoch as libc::time_t;
    // SAFETY: both pointers are valid for the duration of the call.
    if unsafe { libc::localtime_r(&time, &mut tm) }.is_null() {
        return (0, 1 << 5 | 1);
    }
    let year = tm.tm_year + 1900;
    if year < 1980 {
        return (0, 1 << 5 | 1);
    }
    if year > 2107 {
        return (23 << 11 | 59 << 5 | 29, 127 << 9 | 12 << 5 | 31);
    }
    let time = ((tm.tm_hour << 11) | (tm.tm_min << 5) | (tm.tm_sec / 2)) as u16;
    let date = (((year - 1980) << 9) | ((tm.tm_mon + 1) << 5) | tm.tm_mday) as u16;
    (time, date)
}

/// Test-side reader: `(name, external attributes, contents)` of every entry, found through the
/// zip64 end records and the central directory, contents checked against CRC and sizes.
#[cfg(test)]
pub(super) fn read_zip(data: &[u8]) -> Vec<(Vec<u8>, u32, Vec<u8>)> {
    let u16_at = |pos: usize| u16::from_le_bytes([data[pos], data[pos + 1]]);
    let u32_at = |pos: usize| u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap());
    let u64_at = |pos: usize| u64::from_le_bytes(data[pos..pos + 8].try_into().unwrap());

    let end = data.len() - 22;
    assert_eq!(u32_at(end), END_SIG);
    let locator = end - 20;
    assert_eq!(u32_at(locator), ZIP64_LOCATOR_SIG);
    let zip64_end = u64_at(locator + 8) as usize;
    assert_eq!(u32_at(zip64_end), ZIP64_END_SIG);
    let count = u64_at(zip64_end + 32);
    assert_eq!(u64::from(u16_at(end + 10)), count.min(0xffff));
    let mut pos = u64_at(zip64_end + 48) as usize;

    let mut entries = Vec::new();
    for _ in 0..count {
        assert_eq!(u32_at(pos), CENTRAL_HEADER_SIG);
        let method = u16_at(pos + 10);
        let crc = u32_at(pos + 16);
        let name_len = u16_at(pos + 28) as usize;
        let extra_len = u16_at(pos + 30) as usize;
        let attributes = u32_at(pos + 38);
        let name = data[pos + 46..pos + 46 + name_len].to_vec();
        let extra = pos + 46 + name_len;
        assert_eq!(u16_at(extra), ZIP64_EXTRA_ID);
        let uncompressed = u64_at(extra + 4) as usize;
        let compressed = u64_at(extra + 12) as usize;
        let offset = u64_at(extra + 20) as usize;
        assert_eq!(u32_at(offset), LOCAL_HEADER_SIG);
        assert_eq!(&data[offset + 30..offset + 30 + name_len], &name[..]);
        let body = offset + 30 + name_len + u16_at(offset + 28) as usize;
        let stored = &data[body..body + compressed];
        let descriptor = body + compressed;
        assert_eq!(u32_at(descriptor), DATA_DESCRIPTOR_SIG);
        assert_eq!(u32_at(descriptor + 4), crc);
        assert_eq!(u64_at(descriptor + 8) as usize, compressed);
        assert_eq!(u64_at(descriptor + 16) as usize, uncompressed);
        let contents = match method {
            METHOD_STORE => stored.to_vec(),
            METHOD_DEFLATE => {
                let mut inflated = Vec::new();
                flate2::read::DeflateDecoder::new(stored)
                    .read_to_end(&mut inflated)
                    .unwrap();
                inflated
            }
            other => panic!("unexpected method {other}"),
        };
        assert_eq!(contents.len(), uncompressed);
        assert_eq!(crc32fast::hash(&contents), crc);
        entries.push((name, attributes, contents));
        pos = extra + extra_len;
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_layout_and_contents() {
        let mut zip = ZipWriter::new(Vec::new());
        zip.add_directory(&ZipEntry {
            name: b"dir",
            mtime: 1_700_000_000,
            mode: 0o40755,
        })
        .unwrap();
        let content = b"hello zip\n".repeat(1000);
        zip.add_file(
            &ZipEntry {
                name: b"dir/f.txt",
                mtime: 1_700_000_000,
                mode: 0o100644,
            },
            &mut content.as_slice(),
        )
        .unwrap();
        let data = zip.finish().unwrap();
        let entries = read_zip(&data);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, b"dir/");
        assert_eq!(entries[0].1, 0o40755 << 16 | DOS_DIRECTORY);
        assert!(entries[0].2.is_empty());
        assert_eq!(entries[1].0, b"dir/f.txt");
        assert_eq!(entries[1].1, 0o100644 << 16);
        assert_eq!(entries[1].2, content);
        // deflated, not stored
        assert!(data.len() < content.len());
    }

    #[test]
    fn dos_dates_are_clamped_to_their_range() {
        assert_eq!(dos_date_time(0), (0, 1 << 5 | 1));
        let (_, date) = dos_date_time(i64::from(i32::MAX) * 4);
        assert_eq!(date >> 9, 127);
    }
}
