//! What the archiver tells the payload stream's chunker ahead of the bytes: where files start
//! (suggested chunk boundaries), where a chunk must end, and where previous chunks are re-used
//! verbatim (change-detection mode `metadata`).
//!
//! For an unchanged file the archiver does not write the contents again: it asks the upload
//! side to cut a chunk boundary at `boundary` (a payload-stream offset) and to append the
//! previous snapshot's chunks there; the payload stream then continues as if their `size`
//! bytes had been written.
//!
//! Every hint is sent before any payload byte at or behind its offset is written, so the
//! chunker knows all hints for the bytes it is about to cut.

/// One chunk of a previous payload index: its size and digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReusableDynamicEntry {
    /// Size of the chunk's data in bytes.
    pub size: u64,
    /// SHA-256 digest (or keyed digest when encrypted) of the chunk.
    pub digest: [u8; 32],
}

/// A run of previous chunks to insert into the payload index at a stream position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectChunks {
    /// Payload-stream offset at which the chunks are inserted (a forced chunk boundary).
    pub boundary: u64,
    /// The chunks, in stream order.
    pub chunks: Vec<ReusableDynamicEntry>,
    /// Sum of the chunks' sizes.
    pub size: u64,
}

impl InjectChunks {
    /// Builds an injection of `chunks` at `boundary`, computing the total size.
    pub fn new(boundary: u64, chunks: Vec<ReusableDynamicEntry>) -> Self {
        let size = chunks.iter().map(|c| c.size).sum();
        Self {
            boundary,
            chunks,
            size,
        }
    }
}

/// One announcement to the payload chunker, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadHint {
    /// A file's PAYLOAD item starts at this offset: a good place for a chunk boundary, taken
    /// when the chunk would be neither too small nor too large (see the chunk cutter).
    SuggestedBoundary(u64),
    /// A chunk must end at this offset (after the stream's start marker, so the marker is a
    /// chunk of its own and re-used chunks keep their offsets from one backup to the next).
    ForcedBoundary(u64),
    /// Previous chunks to insert at `boundary` (a forced boundary).
    Inject(InjectChunks),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_is_the_sum_of_the_chunks() {
        let chunks = vec![
            ReusableDynamicEntry {
                size: 10,
                digest: [1; 32],
            },
            ReusableDynamicEntry {
                size: 32,
                digest: [2; 32],
            },
        ];
        let inject = InjectChunks::new(4096, chunks);
        assert_eq!(inject.size, 42);
        assert_eq!(inject.boundary, 4096);
    }
}
