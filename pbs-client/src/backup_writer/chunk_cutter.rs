//! Cutting a byte stream into chunks (content-defined or fixed-size) with forced boundaries
//! where previous chunks are injected (metadata-mode payload reuse).

use std::collections::VecDeque;

use anyhow::{bail, Error};
use bytes::{Buf, Bytes, BytesMut};
use pbs_datastore::Chunker;

use crate::inject::InjectChunks;

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
    /// Content-defined chunking with the given average size.
    Dynamic { chunker: Chunker, average: usize },
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
    injections: VecDeque<InjectChunks>,
}

impl ChunkCutter {
    /// Content-defined chunking with average `average` (a power of two).
    pub fn dynamic(average: usize) -> Result<Self, Error> {
        let chunker = Chunker::try_new(average)?;
        Ok(Self::with_mode(CutMode::Dynamic { chunker, average }))
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
        }
    }

    /// Logical offset of everything consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
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
        if let CutMode::Dynamic { chunker, average } = &mut self.mode {
            *chunker = Chunker::try_new(*average)?;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        emit(StreamPiece::Chunk(self.pending.split().freeze()))
    }

    /// Runs `piece` through the boundary search; a chunk lying completely inside `piece` is
    /// emitted as a slice of it, without copying.
    fn scan(
        &mut self,
        mut piece: Bytes,
        emit: &mut impl FnMut(StreamPiece) -> Result<(), Error>,
    ) -> Result<(), Error> {
        while !piece.is_empty() {
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
}
