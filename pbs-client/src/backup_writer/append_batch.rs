//! Grouping index entries into append (`PUT *_index`) batches.
//!
//! Two stages use the same rule: entries are collected until at least
//! [`APPEND_BATCH_THRESHOLD`] are buffered. The first stage merges runs of known chunks (a new
//! chunk flushes the run before it); the second merges the ordered upload results, so a batch
//! holds at most `2 * APPEND_BATCH_THRESHOLD - 1` entries.

use serde_json::{json, Value};

/// Buffered entries reaching this count are flushed.
pub const APPEND_BATCH_THRESHOLD: usize = 64;

/// One index entry: stream offset of the chunk's start and its digest.
pub type IndexEntry = (u64, [u8; 32]);

/// Collects entries and hands out batches of at least the threshold size.
#[derive(Default)]
pub struct EntryBatcher {
    buffer: Vec<IndexEntry>,
}

impl EntryBatcher {
    /// Adds `entries`; returns a batch when the buffer reached the threshold.
    pub fn push(&mut self, entries: &[IndexEntry]) -> Option<Vec<IndexEntry>> {
        self.buffer.extend_from_slice(entries);
        if self.buffer.len() >= APPEND_BATCH_THRESHOLD {
            return Some(std::mem::take(&mut self.buffer));
        }
        None
    }

    /// Takes whatever is buffered (`None` if nothing).
    pub fn flush(&mut self) -> Option<Vec<IndexEntry>> {
        if self.buffer.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.buffer))
        }
    }
}

/// The JSON body of an append call.
pub fn append_body(wid: u64, entries: &[IndexEntry]) -> Value {
    let digests: Vec<String> = entries.iter().map(|(_, d)| hex::encode(d)).collect();
    let offsets: Vec<u64> = entries.iter().map(|(o, _)| *o).collect();
    json!({ "wid": wid, "digest-list": digests, "offset-list": offsets })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(range: std::ops::Range<u64>) -> Vec<IndexEntry> {
        range.map(|i| (i * 10, [i as u8; 32])).collect()
    }

    #[test]
    fn first_stage_runs_of_known_chunks_flush_at_64() {
        // Known chunks arrive one at a time: batches of exactly 64.
        let mut batcher = EntryBatcher::default();
        let mut batches = Vec::new();
        for entry in entries(0..150) {
            if let Some(batch) = batcher.push(&[entry]) {
                batches.push(batch);
            }
        }
        batches.extend(batcher.flush());
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [64, 64, 22]);
        let all: Vec<IndexEntry> = batches.concat();
        assert_eq!(all, entries(0..150));
        assert!(batcher.flush().is_none());
    }

    #[test]
    fn second_stage_batches_hold_at_most_127_entries() {
        let mut batcher = EntryBatcher::default();
        let mut batches = Vec::new();
        // 63 single uploads, then a full run of 64 known chunks.
        for entry in entries(0..63) {
            assert!(batcher.push(&[entry]).is_none());
        }
        batches.extend(batcher.push(&entries(63..127)));
        // A run shorter than the threshold is kept for the next batch.
        assert!(batcher.push(&entries(127..130)).is_none());
        batches.extend(batcher.flush());
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [127, 3]);
        assert_eq!(batches.concat(), entries(0..130));
    }

    #[test]
    fn append_body_lists_digests_and_offsets_in_order() {
        let body = append_body(3, &[(0, [0xab; 32]), (4096, [0x01; 32])]);
        assert_eq!(body["wid"], 3);
        assert_eq!(body["offset-list"], json!([0, 4096]));
        assert_eq!(body["digest-list"][0], "ab".repeat(32));
        assert_eq!(body["digest-list"][1], "01".repeat(32));
    }
}
