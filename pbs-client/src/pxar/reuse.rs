//! Change-detection mode `metadata`: re-using payload chunks of the previous snapshot.
//!
//! Unchanged regular files (same metadata as in the previous `.mpxar`) are not read. Their
//! previous payload items are located in the previous `.ppxar` index; runs of them whose
//! payload ranges are contiguous are collected in a look-ahead cache, and the whole chunks
//! covering such a run are injected into the new payload stream (see [`crate::inject`]) unless
//! too many of the injected bytes would be unreferenced padding.
//!
//! This module holds the reference, the chunk arithmetic, the padding rule and the injection
//! bookkeeping; the walk in [`super::create`] decides what is cached and encodes the entries.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::mpsc::Sender;

use anyhow::{bail, format_err, Context, Result};
use pbs_api_types::CryptMode;
use pbs_datastore::index::IndexFile;
use pbs_datastore::{BackupManifest, DynamicIndexReader};
use pxar::accessor::{Accessor, FileEntry, ReadAt};
use pxar::encoder::{Encoder, LinkOffset, SeqWrite};
use pxar::format::Device;
use pxar::{EntryKind, Metadata};

use crate::inject::{InjectChunks, PayloadHint, ReusableDynamicEntry};

/// Look-ahead cache size (cached files holding an open descriptor) when none is configured.
pub const DEFAULT_CACHE_SIZE: usize = 512;

/// Reuse of a run is rejected when more than this share of the injected bytes is padding
/// (upstream's rule), unless the run passes the relaxed rule below.
pub const CHUNK_PADDING_THRESHOLD: f64 = 0.1;

/// Relaxed rule: a run breaking the 10 % rule is still re-used when its padding is at most
/// this many times its own length and the archive's padding budget allows it.
///
/// Upstream's rule judges each run alone, so a small changed file between unchanged ones
/// makes every file sharing a chunk with it upload again: with files of a few KiB and a 5 %
/// change spread over a tree, nearly all small files are uploaded again. Injecting the shared
/// chunk before and after the changed file instead costs no upload and no storage, only
/// unreferenced bytes in the payload stream (a restore reads them; ours fetches a chunk
/// injected twice in a row once).
pub const RELAXED_PADDING_FACTOR: u64 = 4;

/// The padding budget of the relaxed rule: this fraction (1/n) of the previous payload
/// stream's size, for all padding of the new stream together; past it, runs are re-encoded
/// (which compacts them). With 1/2, the budgeted padding cannot pile up over many backups
/// (`P' <= (C + P) / 2` stays below the referenced bytes `C`), so a restore reads about twice
/// the contents at most, even with a client that fetches a repeated chunk again.
pub const PADDING_BUDGET_DIVISOR: u64 = 2;

/// Size of a PAYLOAD item header in the payload stream.
const PAYLOAD_HEADER_SIZE: u64 = 16;

/// A `ReadAt` source behind a box, so the reference does not carry a type parameter.
struct BoxedReadAt(Box<dyn ReadAt + Send>);

impl ReadAt for BoxedReadAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.0.read_at(buf, offset)
    }
}

/// The previous snapshot's split archive a metadata-mode run compares against.
pub struct PreviousArchiveRef {
    accessor: Accessor<BoxedReadAt>,
    payload_index: DynamicIndexReader,
    max_cache_size: usize,
}

impl PreviousArchiveRef {
    /// Reference from the previous `.mpxar` stream (`metadata_size` bytes, random access) and
    /// the previous `.ppxar` dynamic index.
    pub fn new(
        metadata: impl ReadAt + Send + 'static,
        metadata_size: u64,
        payload_index: DynamicIndexReader,
    ) -> Result<Self> {
        let accessor = Accessor::new(BoxedReadAt(Box::new(metadata)), metadata_size, None)
            .context("previous metadata archive: cannot open")?;
        if !accessor.is_split() {
            bail!("previous metadata archive: not a split (v2) archive");
        }
        Ok(Self {
            accessor,
            payload_index,
            max_cache_size: DEFAULT_CACHE_SIZE,
        })
    }

    /// Sets the look-ahead cache size (see [`raise_open_files_limit`]); at least 1.
    pub fn with_cache_size(mut self, max_cache_size: usize) -> Self {
        self.max_cache_size = max_cache_size.max(1);
        self
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the look-ahead cache size
/// to use: `hard - old_soft / 2` (the cache keeps one descriptor open per cached file).
/// If the limit cannot be raised, the default size is used (and the failure logged).
pub fn raise_open_files_limit(messages: &mut dyn FnMut(String)) -> Result<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid pointer to an rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE) failed");
    }
    let old_soft = limit.rlim_cur;
    let hard = limit.rlim_max;
    if hard <= 4096 {
        messages(format!("resource limit for open file handles low: {hard}"));
    }
    let raised = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: a valid pointer to an rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        // E.g. an unlimited hard limit above the kernel's nr_open.
        let err = std::io::Error::last_os_error();
        messages(format!(
            "unable to raise the open file handle limit to {hard}: {err}"
        ));
        return Ok(DEFAULT_CACHE_SIZE);
    }
    let size = hard.saturating_sub(old_soft / 2).max(1);
    Ok(usize::try_from(size).unwrap_or(usize::MAX))
}

/// Why the previous snapshot cannot serve as metadata-mode reference; `Display` is the
/// log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferenceUnavailable {
    /// No previous manifest, or it lists no metadata archive of this name.
    NoMetadataIndex,
    /// The previous manifest lists no payload archive of this name.
    NoPayloadIndex,
    /// The previous payload archive was written with another crypt mode.
    CryptModeMismatch,
}

impl fmt::Display for ReferenceUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoMetadataIndex => "No previous metadata index, continue without reference",
            Self::NoPayloadIndex => {
                "No previous payload index found in manifest, continue without reference"
            }
            Self::CryptModeMismatch => "Crypt mode mismatch, continue without reference",
        })
    }
}

impl std::error::Error for ReferenceUnavailable {}

/// Server file names of a split archive: `X.pxar` (or `X.mpxar`/`X.ppxar`, with or without
/// `.didx`) gives `("X.mpxar.didx", "X.ppxar.didx")`.
pub fn split_archive_names(archive_name: &str) -> (String, String) {
    let name = archive_name.strip_suffix(".didx").unwrap_or(archive_name);
    let base = [".pxar", ".mpxar", ".ppxar"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name);
    (format!("{base}.mpxar.didx"), format!("{base}.ppxar.didx"))
}

/// Checks that the previous manifest holds both halves of the split archive `archive_name`
/// with the current crypt mode; returns their server file names (metadata, payload).
pub fn previous_reference_files(
    manifest: Option<&BackupManifest>,
    archive_name: &str,
    crypt_mode: CryptMode,
) -> std::result::Result<(String, String), ReferenceUnavailable> {
    let manifest = manifest.ok_or(ReferenceUnavailable::NoMetadataIndex)?;
    let (metadata, payload) = split_archive_names(archive_name);
    manifest
        .lookup_file_info(&metadata)
        .map_err(|_| ReferenceUnavailable::NoMetadataIndex)?;
    let payload_info = manifest
        .lookup_file_info(&payload)
        .map_err(|_| ReferenceUnavailable::NoPayloadIndex)?;
    if payload_info.crypt_mode != crypt_mode {
        return Err(ReferenceUnavailable::CryptModeMismatch);
    }
    Ok((metadata, payload))
}

/// Whether reusing `range_len` referenced bytes at the cost of `padding` unreferenced bytes
/// breaks upstream's padding rule: `padding / (range_len + padding) > CHUNK_PADDING_THRESHOLD`.
pub fn padding_too_large(range_len: u64, padding: u64) -> bool {
    let total = range_len as u128 + padding as u128;
    // Exact form of padding / total > 1/10.
    padding as u128 * 10 > total
}

/// The previous chunks covering a byte range of the previous payload stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkSpan {
    /// Index of the first chunk.
    pub first: usize,
    /// Previous-stream offset where the first chunk starts.
    pub first_start: u64,
    /// Bytes of the first chunk before the range.
    pub start_padding: u64,
    /// Bytes of the last chunk after the range.
    pub end_padding: u64,
    /// The chunks `first..=last`.
    pub chunks: Vec<ReusableDynamicEntry>,
}

impl ChunkSpan {
    /// Index of the last chunk.
    pub fn last(&self) -> usize {
        self.first + self.chunks.len() - 1
    }
}

/// The chunks of `index` covering the non-empty `range`.
pub(crate) fn chunk_span(index: &DynamicIndexReader, range: &Range<u64>) -> Result<ChunkSpan> {
    if range.start >= range.end {
        bail!("empty payload range {range:?}");
    }
    let outside = || {
        format_err!(
            "previous payload index {:?}: range {range:?} beyond its {} bytes",
            index.path(),
            index.index_bytes()
        )
    };
    let (first, start_padding) = index.chunk_from_offset(range.start).ok_or_else(outside)?;
    let (last, _) = index.chunk_from_offset(range.end - 1).ok_or_else(outside)?;
    let mut chunks = Vec::with_capacity(last - first + 1);
    let mut end = 0;
    for pos in first..=last {
        let info = index.chunk_info(pos).ok_or_else(outside)?;
        end = info.range.end;
        chunks.push(ReusableDynamicEntry {
            size: info.size(),
            digest: info.digest,
        });
    }
    Ok(ChunkSpan {
        first,
        first_start: range.start - start_padding,
        start_padding,
        end_padding: end - range.end,
        chunks,
    })
}

/// An unchanged file waiting in the look-ahead cache.
pub(crate) struct CachedFile {
    /// Open file, for encoding it normally if the run's reuse is rejected.
    pub fd: OwnedFd,
    pub name: Vec<u8>,
    /// Path relative to the archive root (messages, hardlink targets).
    pub path: Vec<u8>,
    pub metadata: Metadata,
    pub stat: libc::stat,
    /// The previous PAYLOAD item: `[offset, offset + 16 + size)` of the previous stream.
    pub range: Range<u64>,
    /// Size recorded in the previous archive (reused as is).
    pub previous_size: u64,
}

/// An archive entry whose encoding waits behind cached files (archive order is kept).
pub(crate) enum Deferred {
    File(Box<CachedFile>),
    DirStart {
        name: Vec<u8>,
        metadata: Metadata,
    },
    DirEnd,
    Symlink {
        name: Vec<u8>,
        metadata: Metadata,
        target: Vec<u8>,
    },
    Device {
        name: Vec<u8>,
        metadata: Metadata,
        device: Device,
    },
    Fifo {
        name: Vec<u8>,
        metadata: Metadata,
    },
    Socket {
        name: Vec<u8>,
        metadata: Metadata,
    },
    Hardlink {
        name: Vec<u8>,
        target: Vec<u8>,
        offset: LinkOffset,
    },
    /// A hardlink to a file cached in the same run, by `(st_dev, st_ino)`.
    CachedHardlink {
        name: Vec<u8>,
        key: (u64, u64),
    },
}

/// The cached entries of one contiguous run and the previous payload range they cover.
pub(crate) struct CachedRun {
    pub entries: Vec<Deferred>,
    pub range: Range<u64>,
}

/// Injected chunks whose last chunk is held back: a directly following run may start inside
/// it and share it. The encoder's payload position stands at the start of that last chunk.
struct PendingInjection {
    boundary: u64,
    chunks: Vec<ReusableDynamicEntry>,
    /// Previous-index position of the last chunk.
    last_index: usize,
    /// New-stream offset of the last chunk.
    last_start: u64,
    /// Previous-stream end of the last reused range.
    reused_end: u64,
}

/// Why the look-ahead cache is flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlushCause {
    /// The run ends: a file that is changed, new or not contiguous, or the end of the walk.
    RunEnd,
    /// The cache is full; the next file may well continue the run in its last chunk, so the
    /// bytes of that chunk behind the run are held against the budget only, not against the
    /// run's padding ratio.
    CacheFull,
}

/// How a cached run is encoded.
pub(crate) enum RunDecision {
    /// Reference the previous payload items: a file at previous offset `o` gets
    /// `base + (o - first_start)`, where `base` comes from [`ReuseState::begin_reuse`].
    Reuse { span: ChunkSpan, continuing: bool },
    /// Too much padding: encode the files normally.
    Reject,
}

/// Counters of a metadata-mode run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReuseCounters {
    pub injected_bytes: u64,
    pub injected_chunks: u64,
    /// PAYLOAD items (header and content) of reused files.
    pub reused_item_bytes: u64,
}

/// State of the look-ahead cache and the injections of one run.
pub(crate) struct ReuseState {
    reference: PreviousArchiveRef,
    hints: Sender<PayloadHint>,
    /// Previous-archive directory matching each open directory of the walk (`None` where the
    /// previous archive has no such directory).
    previous_dirs: Vec<Option<FileEntry>>,
    cache: Vec<Deferred>,
    cache_range: Option<Range<u64>>,
    cached_files: usize,
    /// `(st_dev, st_ino)` of cached multiply linked files (their link offsets are not known yet).
    cached_links: HashSet<(u64, u64)>,
    pending: Option<PendingInjection>,
    pub counters: ReuseCounters,
    /// Padding the relaxed rule may let into the new payload stream (all padding counts).
    padding_budget: u64,
}

impl ReuseState {
    /// Starts at the previous archive's root.
    pub fn new(reference: PreviousArchiveRef, hints: Sender<PayloadHint>) -> Result<Self> {
        let root = reference
            .accessor
            .root()
            .context("previous metadata archive: cannot read the root directory")?;
        let padding_budget = reference.payload_index.index_bytes() / PADDING_BUDGET_DIVISOR;
        Ok(Self {
            reference,
            hints,
            previous_dirs: vec![Some(root)],
            cache: Vec::new(),
            cache_range: None,
            cached_files: 0,
            cached_links: HashSet::new(),
            padding_budget,
            pending: None,
            counters: ReuseCounters::default(),
        })
    }

    fn previous_child(&self, name: &[u8]) -> Result<Option<FileEntry>> {
        let Some(Some(dir)) = self.previous_dirs.last() else {
            return Ok(None);
        };
        self.reference
            .accessor
            .lookup_child(dir, name)
            .with_context(|| {
                format!(
                    "previous metadata archive: lookup of {:?} in {:?} failed",
                    String::from_utf8_lossy(name),
                    dir.path()
                )
            })
    }

    /// Descends into the previous archive's directory `name` along with the walk.
    pub fn enter_dir(&mut self, name: &[u8]) -> Result<()> {
        let child = self.previous_child(name)?.filter(|e| e.entry.is_dir());
        self.previous_dirs.push(child);
        Ok(())
    }

    /// Leaves the directory entered last.
    pub fn leave_dir(&mut self) {
        self.previous_dirs.pop();
    }

    /// The previous payload range `[offset, offset + 16 + size)` and size of file `name` if its
    /// previous entry is a regular file with a payload reference and equal metadata.
    pub fn reusable(&self, name: &[u8], metadata: &Metadata) -> Result<Option<(Range<u64>, u64)>> {
        let Some(previous) = self.previous_child(name)? else {
            return Ok(None);
        };
        let EntryKind::File {
            size,
            payload_offset: Some(offset),
            ..
        } = previous.entry.kind
        else {
            return Ok(None);
        };
        if !previous.metadata().matches_for_reuse(metadata) {
            return Ok(None);
        }
        let end = offset
            .checked_add(PAYLOAD_HEADER_SIZE)
            .and_then(|v| v.checked_add(size))
            .filter(|end| *end <= self.reference.payload_index.index_bytes());
        Ok(end.map(|end| (offset..end, size)))
    }

    /// Whether entries currently wait in the cache.
    pub fn is_caching(&self) -> bool {
        !self.cache.is_empty()
    }

    /// Whether the multiply linked file `key` waits in the cache.
    pub fn has_cached_link(&self, key: (u64, u64)) -> bool {
        self.cached_links.contains(&key)
    }

    /// Whether `range` continues the cached run (an empty cache accepts any range).
    pub fn continues_run(&self, range: &Range<u64>) -> bool {
        self.cache_range
            .as_ref()
            .is_none_or(|run| run.end == range.start)
    }

    /// Caches an unchanged file; returns whether the cache reached its size limit.
    pub fn cache_file(&mut self, file: CachedFile) -> bool {
        let range = file.range.clone();
        self.cache_range = Some(match self.cache_range.take() {
            Some(run) => run.start..range.end,
            None => range,
        });
        if file.stat.st_nlink > 1 {
            self.cached_links
                .insert((file.stat.st_dev, file.stat.st_ino));
        }
        self.cache.push(Deferred::File(Box::new(file)));
        self.cached_files += 1;
        self.cached_files >= self.reference.max_cache_size
    }

    /// Queues a non-file entry behind the cached files.
    pub fn defer(&mut self, entry: Deferred) {
        self.cache.push(entry);
    }

    /// Empties the cache.
    pub fn take_run(&mut self) -> Option<CachedRun> {
        let range = self.cache_range.take();
        let entries = std::mem::take(&mut self.cache);
        self.cached_files = 0;
        self.cached_links.clear();
        match range {
            Some(range) => Some(CachedRun { entries, range }),
            // Only non-file entries: cannot happen, a run starts with a file.
            None if entries.is_empty() => None,
            None => Some(CachedRun {
                entries,
                range: 0..0,
            }),
        }
    }

    /// Unreferenced bytes of the chunks injected so far (the held-back one included).
    fn padding_so_far(&self) -> u64 {
        let held: u64 = self.pending.as_ref().map_or(0, |p| {
            p.chunks
                .iter()
                .fold(0u64, |sum, c| sum.saturating_add(c.size))
        });
        self.counters
            .injected_bytes
            .saturating_add(held)
            .saturating_sub(self.counters.reused_item_bytes)
    }

    /// Applies the padding rules to a run covering `range` of the previous payload stream.
    pub fn decide(&self, range: &Range<u64>, cause: FlushCause) -> Result<RunDecision> {
        if range.is_empty() {
            return Ok(RunDecision::Reject);
        }
        let span = chunk_span(&self.reference.payload_index, range)?;
        let continuing = self
            .pending
            .as_ref()
            .is_some_and(|p| p.last_index == span.first && p.reused_end <= range.start);
        let start_padding = match &self.pending {
            // The held-back chunk is paid for already; only the gap inside it is new waste.
            Some(p) if continuing => range.start - p.reused_end,
            _ => span.start_padding,
        };
        let len = range.end - range.start;
        let padding_so_far = self.padding_so_far();
        let within_budget =
            |padding: u64| padding_so_far.saturating_add(padding) <= self.padding_budget;
        let acceptable = |padding: u64| {
            !padding_too_large(len, padding)
                || (padding <= len.saturating_mul(RELAXED_PADDING_FACTOR) && within_budget(padding))
        };
        let worst = start_padding.saturating_add(span.end_padding);
        let reuse = match cause {
            FlushCause::RunEnd => acceptable(worst),
            // The tail of the last chunk is only wasted if the next file does not continue
            // the run; should that happen, the budget must cover it.
            FlushCause::CacheFull => {
                acceptable(worst) || (acceptable(start_padding) && within_budget(worst))
            }
        };
        Ok(if reuse {
            RunDecision::Reuse { span, continuing }
        } else {
            RunDecision::Reject
        })
    }

    /// New-stream offset of the span's first chunk; commits a held-back injection the run
    /// does not continue.
    pub fn begin_reuse<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        continuing: bool,
    ) -> Result<u64> {
        match &self.pending {
            Some(pending) if continuing => Ok(pending.last_start),
            _ => {
                self.commit(encoder)?;
                payload_position(encoder)
            }
        }
    }

    /// Adds the span's chunks after the run's references were written; the last one is held
    /// back for a following run.
    pub fn finish_reuse<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        span: ChunkSpan,
        continuing: bool,
        reused_end: u64,
        reused_item_bytes: u64,
    ) -> Result<()> {
        self.counters.reused_item_bytes += reused_item_bytes;
        let last_index = span.last();
        let mut chunks = span.chunks.into_iter();
        if continuing {
            // The first chunk is the held-back one.
            chunks.next();
        }
        let pending = match self.pending.take() {
            Some(pending) if continuing => pending,
            _ => {
                let start = payload_position(encoder)?;
                let first = chunks
                    .next()
                    .ok_or_else(|| format_err!("reused run without chunks"))?;
                PendingInjection {
                    boundary: start,
                    chunks: vec![first],
                    last_index,
                    last_start: start,
                    reused_end,
                }
            }
        };
        let mut pending = pending;
        for chunk in chunks {
            let held = pending.chunks.last().map_or(0, |c| c.size);
            encoder.advance_payload_position(held)?;
            pending.last_start += held;
            pending.chunks.push(chunk);
        }
        pending.last_index = last_index;
        pending.reused_end = reused_end;
        self.pending = Some(pending);
        Ok(())
    }

    /// Sends the held-back injection and moves the payload position behind it; must happen
    /// before any payload byte is written.
    pub fn commit<W: SeqWrite, P: SeqWrite>(&mut self, encoder: &mut Encoder<W, P>) -> Result<()> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let held = pending.chunks.last().map_or(0, |c| c.size);
        encoder.advance_payload_position(held)?;
        let inject = InjectChunks::new(pending.boundary, pending.chunks);
        self.counters.injected_bytes += inject.size;
        self.counters.injected_chunks += inject.chunks.len() as u64;
        self.hints
            .send(PayloadHint::Inject(inject))
            .map_err(|_| format_err!("payload upload stopped accepting reused chunks"))?;
        Ok(())
    }
}

fn payload_position<W: SeqWrite, P: SeqWrite>(encoder: &Encoder<W, P>) -> Result<u64> {
    encoder
        .payload_position()
        .ok_or_else(|| format_err!("payload reuse requires a split archive"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pbs_datastore::file_formats::DYNAMIC_SIZED_CHUNK_INDEX_1_0;
    use pbs_datastore::index::INDEX_HEADER_SIZE;

    /// A `.didx` file with chunks ending at `ends` (digest byte = position).
    pub(crate) fn write_index(path: &std::path::Path, chunks: &[(u64, [u8; 32])]) {
        let mut data = vec![0u8; INDEX_HEADER_SIZE];
        data[..8].copy_from_slice(&DYNAMIC_SIZED_CHUNK_INDEX_1_0);
        for (end, digest) in chunks {
            data.extend_from_slice(&end.to_le_bytes());
            data.extend_from_slice(digest);
        }
        std::fs::write(path, data).unwrap();
    }

    fn index(ends: &[u64]) -> (tempfile::TempDir, DynamicIndexReader) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ppxar.didx");
        let chunks: Vec<_> = ends
            .iter()
            .enumerate()
            .map(|(pos, end)| (*end, [pos as u8; 32]))
            .collect();
        write_index(&path, &chunks);
        let reader = DynamicIndexReader::open(&path).unwrap();
        (dir, reader)
    }

    #[test]
    fn reference_can_move_to_the_archiver_thread() {
        fn send<T: Send>() {}
        send::<PreviousArchiveRef>();
        send::<ReuseState>();
    }

    #[test]
    fn padding_rule_threshold_is_exclusive() {
        assert_eq!(CHUNK_PADDING_THRESHOLD, 0.1);
        // Exactly 10 % padding is still accepted ...
        assert!(!padding_too_large(90, 10));
        assert!(!padding_too_large(900, 100));
        // ... anything above is rejected.
        assert!(padding_too_large(89, 10));
        assert!(padding_too_large(900, 101));
        assert!(!padding_too_large(1, 0));
        assert!(padding_too_large(0, 1));
        assert!(!padding_too_large(u64::MAX, u64::MAX / 10));
    }

    #[test]
    fn chunk_span_paddings() {
        let (_dir, index) = index(&[100, 250, 400, 1000]);
        // Inside one chunk.
        let span = chunk_span(&index, &(120..200)).unwrap();
        assert_eq!((span.first, span.last()), (1, 1));
        assert_eq!((span.start_padding, span.end_padding), (20, 50));
        assert_eq!(span.first_start, 100);
        assert_eq!(span.chunks[0].size, 150);
        assert_eq!(span.chunks[0].digest, [1; 32]);
        // Aligned to chunk boundaries: no padding.
        let span = chunk_span(&index, &(100..400)).unwrap();
        assert_eq!((span.first, span.last()), (1, 2));
        assert_eq!((span.start_padding, span.end_padding), (0, 0));
        // Across chunks.
        let span = chunk_span(&index, &(50..401)).unwrap();
        assert_eq!((span.first, span.last()), (0, 3));
        assert_eq!((span.start_padding, span.end_padding), (50, 599));
        let sizes: Vec<u64> = span.chunks.iter().map(|c| c.size).collect();
        assert_eq!(sizes, [100, 150, 150, 600]);
        // Beyond the index.
        let err = chunk_span(&index, &(900..1001)).unwrap_err().to_string();
        assert!(err.contains("beyond its 1000 bytes"), "{err}");
        assert!(chunk_span(&index, &(5..5)).is_err());
    }

    #[test]
    fn split_names() {
        for name in ["root.pxar", "root.mpxar", "root.ppxar.didx", "root"] {
            assert_eq!(
                split_archive_names(name),
                ("root.mpxar.didx".to_string(), "root.ppxar.didx".to_string()),
                "{name}"
            );
        }
    }

    #[test]
    fn reference_fallbacks() {
        let mut manifest = BackupManifest::new("host", "h", 1);
        let csum = [0u8; 32];
        assert_eq!(
            previous_reference_files(None, "root.pxar", CryptMode::None),
            Err(ReferenceUnavailable::NoMetadataIndex)
        );
        assert_eq!(
            previous_reference_files(Some(&manifest), "root.pxar", CryptMode::None),
            Err(ReferenceUnavailable::NoMetadataIndex)
        );
        manifest
            .add_file("root.mpxar.didx", 10, csum, CryptMode::Encrypt)
            .unwrap();
        let err =
            previous_reference_files(Some(&manifest), "root.pxar", CryptMode::Encrypt).unwrap_err();
        assert_eq!(err, ReferenceUnavailable::NoPayloadIndex);
        assert_eq!(
            err.to_string(),
            "No previous payload index found in manifest, continue without reference"
        );
        manifest
            .add_file("root.ppxar.didx", 10, csum, CryptMode::Encrypt)
            .unwrap();
        let err =
            previous_reference_files(Some(&manifest), "root.pxar", CryptMode::None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Crypt mode mismatch, continue without reference"
        );
        assert_eq!(
            ReferenceUnavailable::NoMetadataIndex.to_string(),
            "No previous metadata index, continue without reference"
        );
        assert_eq!(
            previous_reference_files(Some(&manifest), "root.pxar", CryptMode::Encrypt).unwrap(),
            ("root.mpxar.didx".to_string(), "root.ppxar.didx".to_string())
        );
    }

    #[test]
    fn open_files_limit_is_raised_to_the_hard_limit() {
        let mut messages = Vec::new();
        let mut before = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid pointer.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut before) },
            0
        );
        let size = raise_open_files_limit(&mut |m| messages.push(m)).unwrap();
        let mut after = before;
        // SAFETY: valid pointer.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut after) },
            0
        );
        assert_eq!(after.rlim_cur, before.rlim_max);
        let expected = before.rlim_max - before.rlim_cur / 2;
        assert_eq!(size as u64, expected.max(1));
        assert_eq!(messages.is_empty(), before.rlim_max > 4096, "{messages:?}");
    }
}
