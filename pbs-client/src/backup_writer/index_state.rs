//! The client's view of the index being written: offsets, checksum, statistics and the
//! decision which chunks must be uploaded.

use anyhow::{bail, format_err, Error};
use openssl::sha::Sha256;
use pbs_datastore::DataBlob;

use super::append_batch::{EntryBatcher, IndexEntry};
use super::encode::{EncodedChunk, KnownChunks};
use crate::inject::InjectChunks;

/// Kind of index being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKind {
    /// `.didx`: csum over (end offset LE, digest) pairs.
    Dynamic,
    /// `.fidx`: csum over the digests.
    Fixed,
}

impl IndexKind {
    /// Endpoint prefix of the backup protocol (`dynamic_index`, `fixed_chunk`, ...).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Dynamic => "dynamic",
            Self::Fixed => "fixed",
        }
    }
}

/// Work for the upload/append side, in stream order.
pub enum QueueItem {
    /// Chunks the server already has: only appended.
    Known(Vec<IndexEntry>),
    /// A chunk to upload, then append.
    New {
        entry: IndexEntry,
        size: u64,
        blob: DataBlob,
    },
}

/// Totals of an index once the stream ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexTotals {
    pub size: u64,
    pub csum: [u8; 32],
    pub chunk_count: u64,
    pub chunk_reused: u64,
    pub size_reused: u64,
    pub size_compressed: u64,
}

/// Sequential bookkeeping of one index upload.
pub struct IndexState {
    kind: IndexKind,
    csum: Sha256,
    known: KnownChunks,
    run: EntryBatcher,
    totals: IndexTotals,
}

impl IndexState {
    /// Starts at offset 0; `known` holds the digests that need no upload.
    pub fn new(kind: IndexKind, known: KnownChunks) -> Self {
        Self {
            kind,
            csum: Sha256::new(),
            known,
            run: EntryBatcher::default(),
            totals: IndexTotals::default(),
        }
    }

    /// Stream offset reached so far.
    pub fn offset(&self) -> u64 {
        self.totals.size
    }

    /// Records one entry and returns its start offset.
    fn record(&mut self, digest: &[u8; 32], size: u64) -> Result<u64, Error> {
        let start = self.totals.size;
        let end = start
            .checked_add(size)
            .ok_or_else(|| format_err!("index size overflows at offset {start}"))?;
        if self.kind == IndexKind::Dynamic {
            self.csum.update(&end.to_le_bytes());
        }
        self.csum.update(digest);
        self.totals.size = end;
        self.totals.chunk_count += 1;
        Ok(start)
    }

    fn known_entry(&mut self, entry: IndexEntry, size: u64, out: &mut Vec<QueueItem>) {
        self.totals.chunk_reused += 1;
        self.totals.size_reused += size;
        if let Some(batch) = self.run.push(&[entry]) {
            out.push(QueueItem::Known(batch));
        }
    }

    /// Accounts a hashed chunk: known digests become appends, others uploads.
    pub fn add_chunk(
        &mut self,
        chunk: EncodedChunk,
        out: &mut Vec<QueueItem>,
    ) -> Result<(), Error> {
        let start = self.record(&chunk.digest, chunk.size)?;
        let entry = (start, chunk.digest);
        let newly_inserted = self
            .known
            .lock()
            .map_err(|_| format_err!("known chunk set lock poisoned"))?
            .insert(chunk.digest);
        if !newly_inserted {
            self.known_entry(entry, chunk.size, out);
            return Ok(());
        }
        let Some(blob) = chunk.blob else {
            bail!(
                "chunk {} was skipped as known but is not",
                hex::encode(chunk.digest)
            );
        };
        self.totals.size_compressed += blob.raw_size();
        out.extend(self.run.flush().map(QueueItem::Known));
        out.push(QueueItem::New {
            entry,
            size: chunk.size,
            blob,
        });
        Ok(())
    }

    /// Accounts chunks injected from a previous index (the server knows them already).
    pub fn add_injected(
        &mut self,
        injection: &InjectChunks,
        out: &mut Vec<QueueItem>,
    ) -> Result<(), Error> {
        if self.kind != IndexKind::Dynamic {
            bail!("chunk injection is only possible into dynamic indexes");
        }
        if injection.boundary != self.totals.size {
            bail!(
                "chunk injection at offset {} does not match the index offset {}",
                injection.boundary,
                self.totals.size
            );
        }
        for chunk in &injection.chunks {
            let start = self.record(&chunk.digest, chunk.size)?;
            if let Ok(mut known) = self.known.lock() {
                known.insert(chunk.digest);
            }
            self.known_entry((start, chunk.digest), chunk.size, out);
        }
        Ok(())
    }

    /// Ends the stream: the last run of known chunks and the totals.
    pub fn finish(mut self, out: &mut Vec<QueueItem>) -> IndexTotals {
        out.extend(self.run.flush().map(QueueItem::Known));
        self.totals.csum = self.csum.finish();
        self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::ReusableDynamicEntry;
    use pbs_datastore::DataChunkBuilder;

    fn chunk(data: &[u8]) -> EncodedChunk {
        let (blob, digest) = DataChunkBuilder::new(data).build().unwrap();
        EncodedChunk {
            digest,
            size: data.len() as u64,
            blob: Some(blob),
        }
    }

    fn describe(items: &[QueueItem]) -> Vec<String> {
        items
            .iter()
            .map(|item| match item {
                QueueItem::Known(list) => format!("K{}", list.len()),
                QueueItem::New { entry, .. } => format!("N@{}", entry.0),
            })
            .collect()
    }

    #[test]
    fn dynamic_csum_offsets_and_merging_of_known_runs() {
        let known: KnownChunks = Default::default();
        let a = chunk(&[1u8; 100]);
        let b = chunk(&[2u8; 50]);
        known.lock().unwrap().insert(a.digest);
        let (da, db) = (a.digest, b.digest);

        let mut state = IndexState::new(IndexKind::Dynamic, known);
        let mut out = Vec::new();
        for _ in 0..70 {
            state.add_chunk(chunk(&[1u8; 100]), &mut out).unwrap();
        }
        state.add_chunk(b, &mut out).unwrap();
        // The same new chunk again is deduplicated within the stream.
        state.add_chunk(chunk(&[2u8; 50]), &mut out).unwrap();
        let totals = state.finish(&mut out);
        assert_eq!(describe(&out), ["K64", "K6", "N@7000", "K1"]);
        let QueueItem::Known(last) = &out[3] else {
            unreachable!()
        };
        assert_eq!(last[0], (7050, db));

        let mut expected = Sha256::new();
        for i in 1..=70u64 {
            expected.update(&(i * 100).to_le_bytes());
            expected.update(&da);
        }
        expected.update(&7050u64.to_le_bytes());
        expected.update(&db);
        expected.update(&7100u64.to_le_bytes());
        expected.update(&db);
        assert_eq!(totals.csum, expected.finish());
        assert_eq!(totals.size, 7100);
        assert_eq!(totals.chunk_count, 72);
        assert_eq!(totals.chunk_reused, 71);
        assert_eq!(totals.size_reused, 7050);
        assert!(totals.size_compressed > 0);
    }

    #[test]
    fn fixed_csum_is_over_digests_only() {
        let mut state = IndexState::new(IndexKind::Fixed, Default::default());
        let mut out = Vec::new();
        let a = chunk(&[1u8; 4096]);
        let b = chunk(&[2u8; 10]);
        let (da, db) = (a.digest, b.digest);
        state.add_chunk(a, &mut out).unwrap();
        state.add_chunk(b, &mut out).unwrap();
        let totals = state.finish(&mut out);
        let mut expected = Sha256::new();
        expected.update(&da);
        expected.update(&db);
        assert_eq!(totals.csum, expected.finish());
        assert_eq!(totals.size, 4106);
        assert_eq!(describe(&out), ["N@0", "N@4096"]);
    }

    #[test]
    fn injected_chunks_become_known_appends_at_their_offsets() {
        let mut state = IndexState::new(IndexKind::Dynamic, Default::default());
        let mut out = Vec::new();
        state.add_chunk(chunk(&[5u8; 30]), &mut out).unwrap();
        let injection = InjectChunks::new(
            30,
            vec![
                ReusableDynamicEntry {
                    size: 10,
                    digest: [7; 32],
                },
                ReusableDynamicEntry {
                    size: 20,
                    digest: [8; 32],
                },
            ],
        );
        state.add_injected(&injection, &mut out).unwrap();
        assert_eq!(state.offset(), 60);
        let totals = state.finish(&mut out);
        assert_eq!(describe(&out), ["N@0", "K2"]);
        let QueueItem::Known(list) = &out[1] else {
            unreachable!()
        };
        assert_eq!(list, &vec![(30, [7; 32]), (40, [8; 32])]);
        assert_eq!(totals.chunk_reused, 2);
        assert_eq!(totals.size_reused, 30);

        let mut state = IndexState::new(IndexKind::Dynamic, Default::default());
        let err = state.add_injected(&injection, &mut out).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        let mut state = IndexState::new(IndexKind::Fixed, Default::default());
        assert!(state.add_injected(&injection, &mut out).is_err());
    }
}
