//! Cutting a byte stream into chunks (content-defined or fixed-size) with forced boundaries
//! where previous chunks are injected (metadata-mode payload reuse) and file-aligned boundaries
//! where the archiver suggests them (split-archive payload streams).

use std::collections::VecDeque;

use anyhow::{bail, Error};
use bytes::{Buf, Bytes, BytesMut};
use pbs_datastore::Chunker;

use crate::inject::{InjectChunks, PayloadHint};

/// Smallest chunk a suggested boundary may end (with the default 4 MiB average; never more
/// than the content-defined minimum). Upstream takes suggestions from the content-defined
/// minimum (1 MiB) on; smaller file-aligned chunks let a later metadata-mode backup re-use
/// the unchanged files around a changed small file instead of uploading them again, at the
/// cost of more chunk files.
pub const SUGGESTED_CHUNK_MIN: usize = 64 * 1024;

/// One piece of the chunked stream, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamPiece {
    /// The bytes of one new chunk.
    Chunk(Bytes),
    /// Chunks of a previous index re-used verbatim at this position.
    Injected(InjectChunks),
}

/// How chunk boundaries are found.
enum CutMode {
    /// Content-defined chunking with the given average size; suggested boundaries are taken
    /// for chunks of `suggested_min..=average` bytes.
    Dynamic {
        chunker: Chunker,
        average: usize,
        suggested_min: usize,
    },
    /// Chunks of exactly this size (the last one may be shorter).
    Fixed(usize),
    /// Every input piece is one chunk.
    PreCut,
}

/// Incremental chunker: feed it stream pieces of any size, it emits chunks in order.
///
/// The logical stream offset counts real bytes plus the sizes of injected chunks; an
/// injection's `boundary` is such a logical offset.
pub struct ChunkCutter {
    mode: CutMode,
    /// Bytes of the chunk being assembled.
    pending: BytesMut,
    /// Logical offset of the end of the consumed input (including `pending`).
    offset: u64,
    /// Injections and forced boundaries (injections without chunks), in offset order.
    injections: VecDeque<InjectChunks>,
    /// Suggested boundaries not yet passed, in offset order.
    suggested: VecDeque<u64>,
}

impl ChunkCutter {
    /// Content-defined chunking with average `average` (a power of two).
    pub fn dynamic(average: usize) -> Result<Self, Error> {
        let chunker = Chunker::try_new(average)?;
        let suggested_min = SUGGESTED_CHUNK_MIN.min(chunker.chunk_size_min());
        Ok(Self::with_mode(CutMode::Dynamic {
            chunker,
            average,
            suggested_min,
        }))
    }

    /// Fixed chunks of `chunk_size` bytes.
    pub fn fixed(chunk_size: usize) -> Result<Self, Error> {
        if chunk_size == 0 {
            bail!("fixed chunk size must not be zero");
        }
        Ok(Self::with_mode(CutMode::Fixed(chunk_size)))
    }

    /// No chunking: every pushed piece is one chunk (already cut by the producer).
    pub fn pre_cut() -> Self {
        Self::with_mode(CutMode::PreCut)
    }

    fn with_mode(mode: CutMode) -> Self {
        Self {
            mode,
            pending: BytesMut::new(),
            offset: 0,
            injections: VecDeque::new(),
            suggested: VecDeque::new(),
        }
    }

    /// Logical offset of everything consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Takes one hint of the archiver; hints of each kind must arrive in offset order.
    pub fn add_hint(&mut self, hint: PayloadHint) -> Result<(), Error> {
        match hint {
            PayloadHint::Inject(injection) => self.add_injection(injection),
            PayloadHint::ForcedBoundary(offset) => {
                self.add_injection(InjectChunks::new(offset, Vec::new()))
            }
            PayloadHint::SuggestedBoundary(offset) => {
                // Only content-defined chunking takes suggestions; a passed one is moot.
                if matches!(self.mode, CutMode::Dynamic { .. }) && offset >= self.offset {
                    if self.suggested.back().is_some_and(|last| *last > offset) {
                        bail!("suggested chunk boundary at offset {offset} out of order");
                    }
                    self.suggested.push_back(offset);
                }
                Ok(())
            }
        }
    }

    /// Queues an injection; injections must arrive in boundary order.
    pub fn add_injection(&mut self, injection: InjectChunks) -> Result<(), Error> {
        let last = self
            .injections
            .back()
            .map(|last| last.boundary)
            .unwrap_or(0)
            .max(self.offset);
        if injection.boundary < last {
            bail!(
                "chunk injection at offset {} lies behind the current stream position {last}",
                injection.boundary
            );
        }
        self.injections.push_back(injection);
        Ok(())
    }

    /// Consumes `data`, emitting every completed chunk and every injection it passes.
    pub fn push(
        &mut self,
        mut data: Bytes,
        emit: &mut impl FnMut(StreamPiece) -> Result<(), Error>,
    ) -> Result<(), Error> {
        loop {
            self.inject_due(emit)?;
            if data.is_empty() {
                return Ok(());
            }
            let take = match self.injections.front() {
                Some(next) => {
                    let room = next.boundary - self.offset;
                    usize::try_from(room).map_or(data.len(), |room| room.min(data.len()))
                }
                None => data.len(),
            };
            let piece = data.split_to(take);
            self.scan(piece, emit)?;
        }
    }

    /// Ends the stream: emits the injections at the end offset and the last (short) chunk.
    pub fn finish(
        &mut self,
        emit: &mut impl FnMut(StreamPiece) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.inject_due(emit)?;
        self.cut_pending(emit)?;
        if let Some(next) = self.injections.front() {
            bail!(
                "stream ended at offset {} before the chunk injection at offset {}",
                self.offset,
                next.boundary
            );
        }
        Ok(())
    }

    /// Emits the injections whose boundary is the current offset, cutting a chunk first.
    fn inject_due(
        &mut self,
        emit: &mut impl FnMut(StreamPiece) -> Result<(), Error>,
    ) -> Result<(), Error> {
        while let Some(next) = self.injections.front() {
            if next.boundary > self.offset {
                break;
            }
            if next.boundary < self.offset {
                bail!(
                    "chunk injection at offset {} lies behind the current stream position {}",
                    next.boundary,
                    self.offset
                );
            }
            self.cut_pending(emit)?;
            if let Some(injection) = self.injections.pop_front() {
                if injection.chunks.is_empty() {
                    // A forced boundary: the cut is all it asks for.
                    continue;
                }
                self.offset += injection.size;
                emit(StreamPiece::Injected(injection))?;
            }
        }
        Ok(())
    }

    /// Emits the pending bytes as a chunk (a forced boundary) and restarts the chunker.
    fn cut_pending(
        &mut self,
        emit: &mut impl FnMut(StreamPiece) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if let CutMode::Dynamic {
            chunker, average, ..
        } = &mut self.mode
        {
            *chunker = Chunker::try_new(*average)?;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        emit(StreamPiece::Chunk(self.pending.split().freeze()))
    }

    /// The next suggested boundary to cut at, if the chunk ending there would have an allowed
    /// size; drops suggestions that are passed or would end too small a chunk. One that would
    /// end too large a chunk stays queued: a content-defined cut before it may make it fit.
    fn suggested_cut(&mut self) -> Option<u64> {
        let CutMode::Dynamic {
            average,
            suggested_min,
            ..
        } = &self.mode
        else {
            return None;
        };
        let chunk_start = self.offset - self.pending.len() as u64;
        while let Some(&boundary) = self.suggested.front() {
            let size = boundary.saturating_sub(chunk_start);
            if boundary < self.offset || size < *suggested_min as u64 {
                self.suggested.pop_front();
                continue;
            }
            if size > *average as u64 {
                return None;
            }
            return Some(boundary);
        }
        None
    }

    /// Runs `piece` through the boundary search; a chunk lying completely inside `piece` is
    /// emitted as a slice of it, without copying.
    fn scan(
        &mut self,
        mut piece: Bytes,
        emit: &mut impl FnMut(StreamPiece) -> Result<(), Error>,
    ) -> Result<(), Error> {
        while !piece.is_empty() {
            if let Some(boundary) = self.suggested_cut() {
                // Up to a taken suggestion the content-defined search is skipped: the cut
                // does not depend on how the stream was split into pieces.
                let room = usize::try_from(boundary - self.offset).unwrap_or(usize::MAX);
                if room > piece.len() {
                    self.offset += piece.len() as u64;
                    self.pending.extend_from_slice(&piece);
                    return Ok(());
                }
                self.suggested.pop_front();
                self.offset += room as u64;
                if self.pending.is_empty() && room > 0 {
                    emit(StreamPiece::Chunk(piece.split_to(room)))?;
                } else {
                    self.pending.extend_from_slice(&piece[..room]);
                    piece.advance(room);
                }
                // Emits what is pending and restarts the content-defined search.
                self.cut_pending(emit)?;
                continue;
            }
            let cut = match &mut self.mode {
                CutMode::Dynamic { chunker, .. } => chunker.scan(&piece),
                CutMode::PreCut => piece.len(),
                CutMode::Fixed(size) => {
                    let missing = *size - self.pending.len();
                    if missing <= piece.len() {
                        missing
                    } else {
                        0
                    }
                }
            };
            if cut == 0 {
                self.offset += piece.len() as u64;
                self.pending.extend_from_slice(&piece);
                return Ok(());
            }
            self.offset += cut as u64;
            let chunk = if self.pending.is_empty() {
                piece.split_to(cut)
            } else {
                self.pending.extend_from_slice(&piece[..cut]);
                piece.advance(cut);
                self.pending.split().freeze()
            };
            emit(StreamPiece::Chunk(chunk))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::ReusableDynamicEntry;

    fn collect(
        cutter: &mut ChunkCutter,
        pieces: &[&[u8]],
        injections: Vec<InjectChunks>,
    ) -> Result<Vec<StreamPiece>, Error> {
        let mut out = Vec::new();
        let mut emit = |piece| {
            out.push(piece);
            Ok(())
        };
        for injection in injections {
            cutter.add_injection(injection)?;
        }
        for piece in pieces {
            cutter.push(Bytes::copy_from_slice(piece), &mut emit)?;
        }
        cutter.finish(&mut emit)?;
        Ok(out)
    }

    fn chunk_lengths(pieces: &[StreamPiece]) -> Vec<usize> {
        pieces
            .iter()
            .map(|p| match p {
                StreamPiece::Chunk(b) => b.len(),
                StreamPiece::Injected(_) => 0,
            })
            .collect()
    }

    fn injection(boundary: u64, sizes: &[u64]) -> InjectChunks {
        let chunks = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| ReusableDynamicEntry {
                size,
                digest: [i as u8 + 1; 32],
            })
            .collect();
        InjectChunks::new(boundary, chunks)
    }

    #[test]
    fn fixed_chunks_with_short_last_chunk() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut cutter = ChunkCutter::fixed(4096).unwrap();
        let out = collect(
            &mut cutter,
            &[&data[..100], &data[100..9000], &data[9000..]],
            vec![],
        )
        .unwrap();
        assert_eq!(chunk_lengths(&out), vec![4096, 4096, 1808]);
        let joined: Vec<u8> = out
            .iter()
            .flat_map(|p| match p {
                StreamPiece::Chunk(b) => b.to_vec(),
                StreamPiece::Injected(_) => vec![],
            })
            .collect();
        assert_eq!(joined, data);
        assert_eq!(cutter.offset(), 10_000);
    }

    #[test]
    fn pre_cut_pieces_are_chunks_as_they_are() {
        let mut cutter = ChunkCutter::pre_cut();
        let out = collect(
            &mut cutter,
            &[&[1u8; 10], &[], &[2u8; 4096], &[3u8; 1]],
            vec![injection(10, &[7])],
        )
        .unwrap();
        let kinds: Vec<usize> = chunk_lengths(&out);
        assert_eq!(kinds, [10, 0, 4096, 1]);
        assert!(matches!(out[1], StreamPiece::Injected(_)));
    }

    #[test]
    fn fixed_chunks_exact_multiple_has_no_empty_tail() {
        let data = vec![1u8; 8192];
        let mut cutter = ChunkCutter::fixed(4096).unwrap();
        let out = collect(&mut cutter, &[&data], vec![]).unwrap();
        assert_eq!(chunk_lengths(&out), vec![4096, 4096]);
    }

    #[test]
    fn dynamic_cuts_do_not_depend_on_input_piece_sizes() {
        let mut x = 0x9e37_79b9_u32;
        let data: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let whole = collect(
            &mut ChunkCutter::dynamic(16 * 1024).unwrap(),
            &[&data],
            vec![],
        )
        .unwrap();
        let pieces: Vec<&[u8]> = data.chunks(777).collect();
        let split = collect(
            &mut ChunkCutter::dynamic(16 * 1024).unwrap(),
            &pieces,
            vec![],
        )
        .unwrap();
        assert_eq!(whole, split);
        assert!(whole.len() > 3, "expected several chunks");
        let total: usize = chunk_lengths(&whole).iter().sum();
        assert_eq!(total, data.len());
    }

    #[test]
    fn injection_cuts_a_short_chunk_and_shifts_the_offset() {
        let data = vec![7u8; 5000];
        let mut cutter = ChunkCutter::fixed(4096).unwrap();
        // Boundary after 1000 real bytes; the injected 300 bytes count towards the offset.
        let out = collect(
            &mut cutter,
            &[&data[..3000], &data[3000..]],
            vec![injection(1000, &[100, 200])],
        )
        .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], StreamPiece::Chunk(Bytes::from(vec![7u8; 1000])));
        assert_eq!(out[1], StreamPiece::Injected(injection(1000, &[100, 200])));
        // The fixed chunker restarted at the boundary: the remaining 4000 bytes are one chunk.
        assert_eq!(chunk_lengths(&out[2..]), vec![4000]);
        assert_eq!(cutter.offset(), 5300);
    }

    #[test]
    fn injections_sharing_a_boundary_and_at_the_end() {
        let data = vec![1u8; 100];
        let mut cutter = ChunkCutter::dynamic(64 * 1024).unwrap();
        let out = collect(
            &mut cutter,
            &[&data],
            vec![
                injection(0, &[10]),
                injection(10, &[20]),
                injection(80, &[5]),
                injection(135, &[1, 2]),
            ],
        )
        .unwrap();
        let kinds: Vec<String> = out
            .iter()
            .map(|p| match p {
                StreamPiece::Chunk(b) => format!("c{}", b.len()),
                StreamPiece::Injected(i) => format!("i{}@{}", i.size, i.boundary),
            })
            .collect();
        assert_eq!(kinds, ["i10@0", "i20@10", "c50", "i5@80", "c50", "i3@135"]);
        assert_eq!(cutter.offset(), 138);
    }

    #[test]
    fn injection_beyond_the_end_of_the_stream_is_an_error() {
        let mut cutter = ChunkCutter::fixed(4096).unwrap();
        let err = collect(&mut cutter, &[&[0u8; 10]], vec![injection(20, &[5])]).unwrap_err();
        assert!(
            err.to_string().contains("stream ended at offset 10"),
            "{err}"
        );
    }

    #[test]
    fn injection_behind_the_position_is_an_error() {
        let mut cutter = ChunkCutter::fixed(4096).unwrap();
        let mut emit = |_piece| Ok(());
        cutter.push(Bytes::from(vec![0u8; 500]), &mut emit).unwrap();
        let err = cutter.add_injection(injection(100, &[5])).unwrap_err();
        assert!(err.to_string().contains("lies behind"), "{err}");

        let mut cutter = ChunkCutter::fixed(4096).unwrap();
        cutter.add_injection(injection(200, &[5])).unwrap();
        let err = cutter.add_injection(injection(100, &[5])).unwrap_err();
        assert!(err.to_string().contains("lies behind"), "{err}");
    }

    fn xorshift(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn cut_with_hints(
        average: usize,
        data: &[u8],
        piece: usize,
        hints: &[PayloadHint],
    ) -> Vec<usize> {
        let mut cutter = ChunkCutter::dynamic(average).unwrap();
        for hint in hints {
            cutter.add_hint(hint.clone()).unwrap();
        }
        let pieces: Vec<&[u8]> = data.chunks(piece).collect();
        chunk_lengths(&collect(&mut cutter, &pieces, vec![]).unwrap())
    }

    #[test]
    fn suggested_boundaries_inside_the_allowed_sizes_are_taken() {
        // Average 4096: suggestions end chunks of 1024 ..= 4096 bytes.
        let data = xorshift(20_000, 7);
        let hints = [
            PayloadHint::SuggestedBoundary(500), // 500 bytes: too small, dropped
            PayloadHint::SuggestedBoundary(1500), // taken
            PayloadHint::SuggestedBoundary(2600), // 1100 bytes: taken
            PayloadHint::SuggestedBoundary(3000), // 400 bytes: dropped
            PayloadHint::SuggestedBoundary(6696), // exactly 4096: taken
        ];
        for piece in [1, 333, 4096, 20_000] {
            let lengths = cut_with_hints(4096, &data, piece, &hints);
            assert_eq!(lengths[..3], [1500, 1100, 4096], "pieces of {piece}");
            assert_eq!(lengths.iter().sum::<usize>(), data.len());
        }
    }

    #[test]
    fn suggestion_beyond_the_average_waits_for_a_content_defined_cut() {
        let data = xorshift(200_000, 9);
        let plain = cut_with_hints(4096, &data, 1000, &[]);
        assert!(plain.len() > 10);
        let plain_ends: Vec<u64> = plain
            .iter()
            .scan(0u64, |end, len| {
                *end += *len as u64;
                Some(*end)
            })
            .collect();
        // A suggestion 2000 bytes behind a content-defined cut `k` whose chunk is longer than
        // 2200 bytes: too far from every earlier chunk start (more than 4096 bytes), taken
        // once the cut at `k` has been made, before the next content-defined cut.
        let k = (1..plain.len() - 1)
            .find(|&k| plain[k] > 2200 && plain[k + 1] > 2100)
            .expect("a long enough chunk");
        let target = plain_ends[k] + 2000;
        let lengths = cut_with_hints(4096, &data, 1000, &[PayloadHint::SuggestedBoundary(target)]);
        assert_eq!(lengths[..=k], plain[..=k]);
        assert_eq!(lengths[k + 1], 2000, "{lengths:?}");
        assert_eq!(lengths.iter().sum::<usize>(), data.len());
    }

    #[test]
    fn forced_boundary_cuts_without_an_injection() {
        let data = xorshift(3000, 3);
        let mut cutter = ChunkCutter::dynamic(64 * 1024).unwrap();
        cutter.add_hint(PayloadHint::ForcedBoundary(16)).unwrap();
        cutter.add_hint(PayloadHint::ForcedBoundary(2984)).unwrap();
        let out = collect(&mut cutter, &[&data[..1000], &data[1000..]], vec![]).unwrap();
        assert_eq!(chunk_lengths(&out), [16, 2968, 16]);
        assert!(out.iter().all(|p| matches!(p, StreamPiece::Chunk(_))));
    }

    #[test]
    fn fixed_chunks_ignore_suggestions() {
        let data = vec![5u8; 10_000];
        let mut cutter = ChunkCutter::fixed(4096).unwrap();
        cutter
            .add_hint(PayloadHint::SuggestedBoundary(2000))
            .unwrap();
        let out = collect(&mut cutter, &[&data], vec![]).unwrap();
        assert_eq!(chunk_lengths(&out), [4096, 4096, 1808]);
    }

    #[test]
    fn suggestions_out_of_order_are_an_error() {
        let mut cutter = ChunkCutter::dynamic(4096).unwrap();
        cutter
            .add_hint(PayloadHint::SuggestedBoundary(5000))
            .unwrap();
        let err = cutter
            .add_hint(PayloadHint::SuggestedBoundary(4000))
            .unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
    }

    #[test]
    fn default_payload_chunks_may_end_at_64_kib_file_boundaries() {
        // The default average (4 MiB) takes suggestions from 64 KiB on.
        let data = xorshift(300_000, 11);
        let lengths = cut_with_hints(
            4 << 20,
            &data,
            65_536,
            &[
                PayloadHint::SuggestedBoundary(60_000),
                PayloadHint::SuggestedBoundary(70_000),
                PayloadHint::SuggestedBoundary(140_000),
            ],
        );
        assert_eq!(lengths, [70_000, 70_000, 160_000]);
    }
}
