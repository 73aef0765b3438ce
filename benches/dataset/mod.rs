//! The benchmark data set: a deterministic mixed tree (many small files in a deep tree, large
//! log-like text files, large incompressible files and a sparse VM-like image), the change of
//! a fixed share of its files between backups, and the check that a restored tree is identical
//! to its source.
//!
//! Every byte, name, mode and timestamp derives from the file's index, so two runs of the same
//! size produce the same tree.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, format_err, Context, Result};

/// The default size of the data set: 2 GiB of file data.
pub const DEFAULT_SIZE: u64 = 2 << 30;
/// The number of small files at the default size (scaled with the size).
const SMALL_FILES_AT_DEFAULT: u64 = 100_000;
/// Small files per leaf directory.
const FILES_PER_DIR: u64 = 40;
/// Extent granularity of the sparse image.
const IMAGE_EXTENT: u64 = 4 << 20;
/// Base of all generated modification times (2020-09-13).
const BASE_MTIME: i64 = 1_600_000_000;
/// Modification times of changed files start here (2023-11-14).
const CHANGED_MTIME: i64 = 1_700_000_000;
const WRITE_BUFFER: usize = 1 << 20;

/// Parses a `BENCH_SIZE` such as `2G`, `512M`, `64K` (binary units); a plain number is in MiB,
/// as every `make bench` section reads it.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let (digits, factor) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&text[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&text[..i], 1 << 30),
        Some((i, 'T' | 't')) => (&text[..i], 1 << 40),
        _ => (text, 1 << 20),
    };
    let value: f64 = digits
        .trim()
        .parse()
        .map_err(|_| format_err!("size {text:?}: expected a number with an optional K/M/G/T"))?;
    if !value.is_finite() || value <= 0.0 {
        bail!("size {text:?}: must be positive");
    }
    Ok((value * factor as f64) as u64)
}

/// A deterministic pseudo-random stream (splitmix64).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream for `seed`; distinct seeds give unrelated streams.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// Fills `out` with incompressible bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        let mut pieces = out.chunks_exact_mut(8);
        for piece in &mut pieces {
            piece.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = pieces.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

const WORDS: &[&str] = &[
    "request",
    "completed",
    "connection",
    "accepted",
    "closed",
    "timeout",
    "retry",
    "user",
    "session",
    "started",
    "finished",
    "backup",
    "chunk",
    "index",
    "upload",
    "download",
    "cache",
    "miss",
    "hit",
    "worker",
    "queue",
    "flush",
    "sync",
    "write",
    "read",
    "error",
    "warning",
    "latency",
    "bytes",
    "client",
    "server",
    "handshake",
    "certificate",
    "verified",
    "snapshot",
    "group",
    "namespace",
    "prune",
    "garbage",
    "collection",
    "phase",
    "marked",
    "removed",
];
const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
const SERVICES: &[&str] = &[
    "proxy", "api", "sshd", "cron", "kernel", "nginx", "postgres",
];

/// Appends log-like text lines to `out` until it holds at least `len` bytes, then cuts it to
/// exactly `len`. Compresses about 4:1 with zstd, like real logs.
pub fn fill_text(rng: &mut Rng, line_no: &mut u64, out: &mut Vec<u8>, len: usize) {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(256);
    while out.len() < len {
        *line_no += 1;
        let t = BASE_MTIME as u64 + *line_no / 16;
        line.clear();
        let _ = write!(
            line,
            "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z host{} {}[{}]: {} ",
            t / 2_592_000 % 12 + 1,
            t / 86_400 % 28 + 1,
            t / 3600 % 24,
            t / 60 % 60,
            t % 60,
            rng.below(1000),
            rng.below(4),
            SERVICES[rng.below(SERVICES.len() as u64) as usize],
            1000 + rng.below(30_000),
            LEVELS[rng.below(LEVELS.len() as u64) as usize],
        );
        for _ in 0..4 + rng.below(8) {
            line.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
            line.push(' ');
        }
        let _ = writeln!(
            line,
            "id={:x} took={}ms",
            rng.next_u64() >> 40,
            rng.below(5000)
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
}

/// What kind of content a generated file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Small,
    Text,
    Random,
    Image,
}

/// One generated regular file.
#[derive(Clone, Debug)]
pub struct FileEntry {
    /// Path relative to the data set root.
    pub path: PathBuf,
    pub kind: Kind,
    /// Apparent size in bytes.
    pub size: u64,
}

/// A generated data set.
#[derive(Debug)]
pub struct DataSet {
    pub root: PathBuf,
    /// Every regular file, in generation order.
    pub files: Vec<FileEntry>,
    /// Directories below the root.
    pub dirs: usize,
    /// Symbolic links.
    pub symlinks: usize,
}

impl DataSet {
    /// Apparent bytes of all regular files (what a backup reads).
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Files and bytes of one kind.
    pub fn count(&self, kind: Kind) -> (usize, u64) {
        self.files
            .iter()
            .filter(|f| f.kind == kind)
            .fold((0, 0), |(n, b), f| (n + 1, b + f.size))
    }
}

/// Directory of small file `index`: a tree 5-6 levels deep with a fan-out of 6, plus a narrow
/// chain 24 levels deep for every 50th directory.
fn small_file_dir(index: u64) -> PathBuf {
    let leaf = index / FILES_PER_DIR;
    let mut path = PathBuf::from("tree");
    let mut rest = leaf;
    for level in 0..5 {
        path.push(format!("l{level}-{}", rest % 6));
        rest /= 6;
    }
    path.push(format!("leaf-{leaf}"));
    if leaf % 50 == 49 {
        for depth in 0..24 {
            path.push(format!("deep{depth}"));
        }
    }
    path
}

fn file_mode(index: u64) -> u32 {
    match index % 11 {
        0 => 0o755,
        1 | 2 => 0o600,
        3 => 0o640,
        _ => 0o644,
    }
}

fn set_mtime(path: &Path, secs: i64) -> Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .with_context(|| format!("{path:?}: NUL in path"))?;
    let times = [
        libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid NUL-terminated path and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("{path:?}: setting mtime"));
    }
    Ok(())
}

/// Writes `size` bytes produced by `fill` (called with a buffer to extend) to a new file.
fn write_file(path: &Path, size: u64, mut fill: impl FnMut(&mut Vec<u8>, usize)) -> Result<()> {
    let mut file = File::create(path).with_context(|| format!("{path:?}: create"))?;
    let mut buffer = Vec::with_capacity(WRITE_BUFFER + 4096);
    let mut left = size;
    while left > 0 {
        let piece = left.min(WRITE_BUFFER as u64) as usize;
        buffer.clear();
        fill(&mut buffer, piece);
        file.write_all(&buffer[..piece])
            .with_context(|| format!("{path:?}: write"))?;
        left -= piece as u64;
    }
    Ok(())
}

fn random_fill(rng: &mut Rng) -> impl FnMut(&mut Vec<u8>, usize) + '_ {
    move |buffer, len| {
        buffer.resize(len, 0);
        rng.fill(buffer);
    }
}

/// Generates the data set of about `total` bytes of file data below `root` (which must not
/// exist): 15% in small files (100,000 at 2 GiB), 35% log-like text, 30% incompressible data
/// and 20% data in a sparse image 2.5 times as large.
pub fn generate(root: &Path, total: u64) -> Result<DataSet> {
    fs::create_dir(root).with_context(|| format!("{root:?}: create data set root"))?;
    let mut files = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();

    let small_count = (SMALL_FILES_AT_DEFAULT as f64 * total as f64 / DEFAULT_SIZE as f64)
        .round()
        .max(10.0) as u64;
    // Mean 3 KiB: 15% of the data set at 100,000 files and 2 GiB.
    let small_max = (total as f64 * 0.15 / small_count as f64 * 2.0).max(2.0) as u64;
    let mut symlinks = 0;
    let mut line_no = 0;
    for index in 0..small_count {
        let dir = small_file_dir(index);
        if dirs.insert(dir.clone()) {
            fs::create_dir_all(root.join(&dir))
                .with_context(|| format!("{dir:?}: create directory"))?;
            let mut parent = dir.parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                dirs.insert(p.to_path_buf());
                parent = p.parent();
            }
        }
        let mut rng = Rng::new(index);
        let size = if index % 97 == 0 {
            0
        } else {
            rng.below(small_max)
        };
        let text = index % 2 == 0;
        let name = if text {
            format!("file-{index}.txt")
        } else {
            format!("file-{index}.bin")
        };
        let rel = dir.join(name);
        let path = root.join(&rel);
        if text {
            write_file(&path, size, |buf, len| {
                fill_text(&mut rng, &mut line_no, buf, len)
            })?;
        } else {
            write_file(&path, size, random_fill(&mut rng))?;
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(file_mode(index)))
            .with_context(|| format!("{rel:?}: chmod"))?;
        set_mtime(&path, BASE_MTIME + index as i64)?;
        files.push(FileEntry {
            path: rel.clone(),
            kind: Kind::Small,
            size,
        });
        if index % 1000 == 100 {
            let link = root.join(&dir).join(format!("link-{index}"));
            let target = rel.file_name().map(OsString::from).unwrap_or_default();
            std::os::unix::fs::symlink(&target, &link)
                .with_context(|| format!("{link:?}: symlink"))?;
            symlinks += 1;
        }
    }

    let big = PathBuf::from("big");
    fs::create_dir(root.join(&big)).with_context(|| format!("{big:?}: create directory"))?;
    dirs.insert(big.clone());
    let mut seed = 1_000_000;
    for (kind, share, max_file, prefix) in [
        (Kind::Text, 0.35, 128u64 << 20, "log"),
        (Kind::Random, 0.30, 256 << 20, "blob"),
    ] {
        let bytes = (total as f64 * share) as u64;
        let count = bytes.div_ceil(max_file).max(1);
        for n in 0..count {
            seed += 1;
            let size = bytes / count;
            let rel = big.join(format!("{prefix}-{n}.dat"));
            let path = root.join(&rel);
            let mut rng = Rng::new(seed);
            match kind {
                Kind::Text => write_file(&path, size, |buf, len| {
                    fill_text(&mut rng, &mut line_no, buf, len)
                })?,
                _ => write_file(&path, size, random_fill(&mut rng))?,
            }
            set_mtime(&path, BASE_MTIME - seed as i64)?;
            files.push(FileEntry {
                path: rel,
                kind,
                size,
            });
        }
    }

    let image_data = (total as f64 * 0.20) as u64;
    let extents = image_data.div_ceil(IMAGE_EXTENT).max(1);
    // Two data extents out of five: data 40% of the apparent size.
    let image_size = extents.div_ceil(2) * 5 * IMAGE_EXTENT;
    let rel = big.join("vm-disk.raw");
    let path = root.join(&rel);
    write_image(&path, extents, image_size)?;
    set_mtime(&path, BASE_MTIME - 1)?;
    files.push(FileEntry {
        path: rel,
        kind: Kind::Image,
        size: image_size,
    });

    // Creating entries changed the directories' times: set them last.
    for dir in &dirs {
        set_mtime(&root.join(dir), BASE_MTIME + 7)?;
    }
    Ok(DataSet {
        root: root.to_path_buf(),
        files,
        dirs: dirs.len(),
        symlinks,
    })
}

/// A sparse image: `extents` written 4 MiB extents at positions 0 and 2 of every 5, holding in
/// turn file-system-like text, compressed-looking data and written zeros; the rest are holes.
fn write_image(path: &Path, extents: u64, size: u64) -> Result<()> {
    let file = File::create(path).with_context(|| format!("{path:?}: create"))?;
    file.set_len(size)
        .with_context(|| format!("{path:?}: set length"))?;
    let mut rng = Rng::new(7_000_000);
    let mut line_no = 0;
    let mut buffer = Vec::with_capacity(IMAGE_EXTENT as usize + 4096);
    for n in 0..extents {
        let position = (n / 2) * 5 + (n % 2) * 2;
        buffer.clear();
        match n % 3 {
            0 => fill_text(&mut rng, &mut line_no, &mut buffer, IMAGE_EXTENT as usize),
            1 => {
                buffer.resize(IMAGE_EXTENT as usize, 0);
                rng.fill(&mut buffer);
            }
            _ => buffer.resize(IMAGE_EXTENT as usize, 0),
        }
        file.write_all_at(&buffer, position * IMAGE_EXTENT)
            .with_context(|| format!("{path:?}: write extent {n}"))?;
    }
    Ok(())
}

/// Changes `percent`% of the files (every n-th file, the same ones in every run): small files
/// are rewritten, large ones get 64 KiB of new data in the middle; each gets a new mtime.
/// Returns the number of files changed and the bytes written.
pub fn change_files(set: &DataSet, percent: u64) -> Result<(usize, u64)> {
    let step = (100 / percent.max(1)).max(1) as usize;
    let mut changed = 0;
    let mut written = 0;
    let mut line_no = 0;
    for (index, entry) in set.files.iter().enumerate().skip(step / 2).step_by(step) {
        let path = set.root.join(&entry.path);
        let mut rng = Rng::new(9_000_000 + index as u64);
        let file = File::options()
            .write(true)
            .open(&path)
            .with_context(|| format!("{:?}: open for change", entry.path))?;
        if entry.size <= 65536 {
            let mut data = Vec::with_capacity(entry.size as usize + 256);
            fill_text(&mut rng, &mut line_no, &mut data, entry.size as usize);
            file.write_all_at(&data, 0)
                .with_context(|| format!("{:?}: rewrite", entry.path))?;
            written += entry.size;
        } else {
            let mut data = vec![0u8; 65536];
            rng.fill(&mut data);
            file.write_all_at(&data, entry.size / 2 - 32768)
                .with_context(|| format!("{:?}: change", entry.path))?;
            written += 65536;
        }
        drop(file);
        set_mtime(&path, CHANGED_MTIME + index as i64)?;
        changed += 1;
    }
    Ok((changed, written))
}

/// What a tree comparison saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct TreeSummary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

/// Checks that `copy` is identical to `source`: the same names, entry types, file contents,
/// permission bits and modification times (files and directories below the roots), and symlink
/// targets. Returns the first difference as the error.
pub fn compare_trees(source: &Path, copy: &Path) -> Result<TreeSummary> {
    let mut summary = TreeSummary::default();
    compare_dir(source, copy, Path::new(""), &mut summary)?;
    Ok(summary)
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = fs::read_dir(dir)
        .with_context(|| format!("{dir:?}: read directory"))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("{dir:?}: read directory"))?;
    names.sort();
    Ok(names)
}

fn compare_dir(source: &Path, copy: &Path, rel: &Path, summary: &mut TreeSummary) -> Result<()> {
    let names = sorted_names(&source.join(rel))?;
    let copy_names = sorted_names(&copy.join(rel))?;
    if names != copy_names {
        let extra: Vec<_> = copy_names.iter().filter(|n| !names.contains(n)).collect();
        let missing: Vec<_> = names.iter().filter(|n| !copy_names.contains(n)).collect();
        bail!("{rel:?}: entries differ (missing {missing:?}, extra {extra:?})");
    }
    for name in names {
        let rel = rel.join(&name);
        let a = fs::symlink_metadata(source.join(&rel))
            .with_context(|| format!("{rel:?}: stat source"))?;
        let b =
            fs::symlink_metadata(copy.join(&rel)).with_context(|| format!("{rel:?}: stat copy"))?;
        if a.file_type() != b.file_type() {
            bail!("{rel:?}: entry type differs");
        }
        if a.file_type().is_symlink() {
            let ta = fs::read_link(source.join(&rel))?;
            let tb = fs::read_link(copy.join(&rel))?;
            if ta != tb {
                bail!("{rel:?}: symlink target {tb:?}, expected {ta:?}");
            }
            summary.symlinks += 1;
            continue;
        }
        if a.mode() & 0o7777 != b.mode() & 0o7777 {
            bail!(
                "{rel:?}: mode {:o}, expected {:o}",
                b.mode() & 0o7777,
                a.mode() & 0o7777
            );
        }
        if a.is_dir() {
            compare_dir(source, copy, &rel, summary)?;
            summary.dirs += 1;
        } else {
            if a.len() != b.len() {
                bail!("{rel:?}: size {}, expected {}", b.len(), a.len());
            }
            compare_contents(&source.join(&rel), &copy.join(&rel))
                .with_context(|| format!("{rel:?}"))?;
            summary.files += 1;
            summary.bytes += a.len();
        }
        // Checked after the directory's contents: a restorer sets directory times last.
        if (a.mtime(), a.mtime_nsec()) != (b.mtime(), b.mtime_nsec()) {
            bail!(
                "{rel:?}: mtime {}.{:09}, expected {}.{:09}",
                b.mtime(),
                b.mtime_nsec(),
                a.mtime(),
                a.mtime_nsec()
            );
        }
    }
    Ok(())
}

fn compare_contents(a: &Path, b: &Path) -> Result<()> {
    let mut fa = File::open(a).context("open source")?;
    let mut fb = File::open(b).context("open copy")?;
    let mut ba = vec![0u8; WRITE_BUFFER];
    let mut bb = vec![0u8; WRITE_BUFFER];
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut fa, &mut ba).context("read source")?;
        let m = read_full(&mut fb, &mut bb).context("read copy")?;
        if n != m || ba[..n] != bb[..m] {
            let at = ba[..n]
                .iter()
                .zip(&bb[..m])
                .position(|(x, y)| x != y)
                .unwrap_or(n.min(m));
            bail!("contents differ at byte {}", offset + at as u64);
        }
        if n == 0 {
            return Ok(());
        }
        offset += n as u64;
    }
}

fn read_full(file: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Allocated bytes of all regular files below `dir` (directories are left out: a datastore's
/// 65536 empty chunk directories say nothing about the data it holds).
pub fn allocated_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("{dir:?}: read directory"))? {
            let entry = entry.with_context(|| format!("{dir:?}: read directory"))?;
            let meta = entry
                .metadata()
                .with_context(|| format!("{:?}: stat", entry.path()))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}
