//! Restoring index streams: chunk fetches overlap (several requests in flight), output stays
//! in index order.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use anyhow::{bail, format_err, Error};
use futures::future::{BoxFuture, FutureExt, Shared, TryFutureExt};
use futures::stream::{Stream, StreamExt};
use pbs_datastore::index::{ChunkReadInfo, IndexFile};
use pbs_datastore::index_reader::SharedIndexReader;
use pbs_datastore::read_chunk::{AsyncReadChunk, ReadChunk};

/// Chunk requests in flight while restoring.
pub const FETCH_IN_FLIGHT: usize = 12;

/// Decoded chunks buffered ahead of a [`IndexStreamReader`].
const READ_AHEAD_CHUNKS: usize = 4;

/// A shareable index.
pub type SharedIndex = Arc<dyn IndexFile + Send + Sync>;

/// Fetches the chunks of an index in order, `in_flight` at a time.
pub struct ParallelChunkFetcher<R> {
    source: Arc<R>,
    in_flight: usize,
}

impl<R: AsyncReadChunk + 'static> ParallelChunkFetcher<R> {
    /// Fetches through `source` with [`FETCH_IN_FLIGHT`] requests at a time.
    pub fn new(source: Arc<R>) -> Self {
        Self {
            source,
            in_flight: FETCH_IN_FLIGHT,
        }
    }

    /// Changes the number of requests in flight (at least 1).
    pub fn in_flight(mut self, in_flight: usize) -> Self {
        self.in_flight = in_flight.max(1);
        self
    }

    /// The decoded chunks of `index` in index order, each checked against its index size.
    /// A chunk that occurs again shortly after (an image's zero chunk, a payload chunk that a
    /// metadata-mode backup injected before and after a changed file) is fetched once.
    pub fn chunks(&self, index: SharedIndex) -> impl Stream<Item = Result<Vec<u8>, Error>> + Send {
        let source = Arc::clone(&self.source);
        let count = index.index_count();
        let used_again = used_again_soon(&*index, REPEAT_WINDOW_BYTES);
        let mut kept: HashMap<[u8; 32], SharedChunk> = HashMap::new();
        futures::stream::iter(0..count)
            .map(move |pos| {
                let info = index.chunk_info(pos);
                let again = used_again.get(pos).copied().unwrap_or(false);
                let reused = info.as_ref().and_then(|info| {
                    let shared = kept.get(&info.digest).cloned()?;
                    if !again {
                        kept.remove(&info.digest);
                    }
                    Some(shared)
                });
                let fetch = match reused {
                    Some(shared) => shared,
                    None => {
                        let digest = info.as_ref().map(|i| i.digest);
                        let source = Arc::clone(&source);
                        let fetch: BoxFuture<'static, Result<Arc<Vec<u8>>, Arc<Error>>> =
                            async move {
                                let digest = digest
                                    .ok_or_else(|| format_err!("index has no chunk {pos}"))?;
                                Ok(Arc::new(source.read_chunk(&digest).await?))
                            }
                            .map_err(Arc::new)
                            .boxed();
                        let shared = fetch.shared();
                        if let (Some(digest), true) = (digest, again) {
                            kept.insert(digest, shared.clone());
                        }
                        shared
                    }
                };
                async move {
                    let data = match fetch.await {
                        // The last holder gets the buffer itself; earlier ones a copy.
                        Ok(data) => Arc::try_unwrap(data).unwrap_or_else(|data| (*data).clone()),
                        Err(err) => bail!("{err:#}"),
                    };
                    // Every position checks its own index size, shared data or not.
                    let info = info.ok_or_else(|| format_err!("index has no chunk {pos}"))?;
                    check_size(&info, &data)?;
                    Ok(data)
                }
            })
            .buffered(self.in_flight)
    }
}

/// A chunk fetch that several positions of an index wait for.
type SharedChunk = Shared<BoxFuture<'static, Result<Arc<Vec<u8>>, Arc<Error>>>>;

/// How far ahead (in stream bytes between the two occurrences) a fetched chunk is kept for
/// its next use; bounds the memory of kept chunks.
const REPEAT_WINDOW_BYTES: u64 = 64 << 20;

/// For every position of `index`: whether the same digest occurs again at a chunk starting
/// at most `window` bytes after this one ends. Memory stays bounded for huge indexes: only
/// digests seen within the window (and the last few thousand positions) are remembered.
fn used_again_soon(index: &dyn IndexFile, window: u64) -> Vec<bool> {
    const PRUNE_EVERY: usize = 4096;
    let count = index.index_count();
    let mut again = vec![false; count];
    // Digest -> start of its nearest later occurrence.
    let mut seen: HashMap<[u8; 32], u64> = HashMap::new();
    for pos in (0..count).rev() {
        let Some(info) = index.chunk_info(pos) else {
            continue;
        };
        if let Some(&later_start) = seen.get(&info.digest) {
            again[pos] = later_start.saturating_sub(info.range.end) <= window;
        }
        seen.insert(info.digest, info.range.start);
        if pos % PRUNE_EVERY == 0 {
            let end = info.range.end;
            seen.retain(|_, start| start.saturating_sub(end) <= window);
        }
    }
    again
}

fn check_size(info: &ChunkReadInfo, data: &[u8]) -> Result<(), Error> {
    if data.len() as u64 != info.size() {
        bail!(
            "chunk {}: decoded size {} does not match the index ({})",
            hex::encode(info.digest),
            data.len(),
            info.size()
        );
    }
    Ok(())
}

/// The `count` most referenced digests of `index` with their use counts: the cache hint for
/// a [`crate::remote_chunk_reader::RemoteChunkReader`] over a fixed image (zero chunks etc.).
pub fn most_used_chunks(index: &dyn IndexFile, count: usize) -> HashMap<[u8; 32], usize> {
    let mut uses: HashMap<[u8; 32], usize> = HashMap::new();
    for pos in 0..index.index_count() {
        if let Some(digest) = index.index_digest(pos) {
            *uses.entry(*digest).or_default() += 1;
        }
    }
    let mut ranked: Vec<([u8; 32], usize)> = uses.into_iter().filter(|(_, n)| *n > 1).collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(count);
    ranked.into_iter().collect()
}

/// Writes the whole stream/image of `index` to `output`; returns it and the bytes written.
pub async fn restore_index_to_writer<R, W>(
    source: Arc<R>,
    index: SharedIndex,
    mut output: W,
) -> Result<(W, u64), Error>
where
    R: AsyncReadChunk + 'static,
    W: Write + Send,
{
    let expected = index.index_bytes();
    let mut chunks = Box::pin(ParallelChunkFetcher::new(source).chunks(index));
    let mut written = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        output
            .write_all(&chunk)
            .map_err(|err| format_err!("unable to write restored data - {err}"))?;
        written += chunk.len() as u64;
    }
    if written != expected {
        bail!("restored {written} bytes, index says {expected}");
    }
    output.flush()?;
    Ok((output, written))
}

/// Sequential `Read` over an index with chunks fetched ahead in the background (for
/// streaming consumers such as pxar extraction); must be read outside async code.
pub struct IndexStreamReader {
    chunks: Receiver<Result<Vec<u8>, Error>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl IndexStreamReader {
    /// Starts fetching on the current tokio runtime (an error outside of one).
    pub fn new<R: AsyncReadChunk + 'static>(
        source: Arc<R>,
        index: SharedIndex,
    ) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| format_err!("index stream reader needs a tokio runtime"))?;
        let (tx, rx) = sync_channel(READ_AHEAD_CHUNKS);
        let fetcher = ParallelChunkFetcher::new(source);
        let chunks = fetcher.chunks(index);
        runtime.spawn(async move {
            let mut chunks = Box::pin(chunks);
            while let Some(chunk) = chunks.next().await {
                let failed = chunk.is_err();
                let tx = tx.clone();
                // The channel is bounded: hand over on a blocking thread so the runtime
                // keeps running while the reader is slow.
                let sent = tokio::task::spawn_blocking(move || tx.send(chunk).is_ok()).await;
                if failed || !matches!(sent, Ok(true)) {
                    break;
                }
            }
        });
        Ok(Self {
            chunks: rx,
            current: Vec::new(),
            pos: 0,
            done: false,
        })
    }
}

impl Read for IndexStreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(err)) => {
                    self.done = true;
                    return Err(io::Error::other(format!("{err:#}")));
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = (self.current.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// `pxar::accessor::ReadAt` over an index (random access for the catalog shell, FUSE and
/// single-file restore).
pub struct IndexReadAt<S>(pub SharedIndexReader<S>);

impl<S: ReadChunk> pxar::accessor::ReadAt for IndexReadAt<S> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbs_datastore::file_formats::DYNAMIC_SIZED_CHUNK_INDEX_1_0;
    use pbs_datastore::index_reader::BufferedIndexReader;
    use pbs_datastore::read_chunk::{decode_chunk, ChunkFuture};
    use pbs_datastore::{DataBlob, DataChunkBuilder, DynamicIndexReader};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Chunks in memory; async fetches take longer for some chunks and count concurrency.
    #[derive(Default)]
    struct MemorySource {
        chunks: HashMap<[u8; 32], DataBlob>,
        running: AtomicUsize,
        peak: AtomicUsize,
        fetched: AtomicUsize,
    }

    impl ReadChunk for MemorySource {
        fn read_raw_chunk(&self, digest: &[u8; 32]) -> Result<DataBlob, Error> {
            self.chunks
                .get(digest)
                .cloned()
                .ok_or_else(|| format_err!("chunk {} missing", hex::encode(digest)))
        }

        fn read_chunk(&self, digest: &[u8; 32]) -> Result<Vec<u8>, Error> {
            decode_chunk(
                &ReadChunk::read_raw_chunk(self, digest)?,
                None,
                digest,
                None,
            )
        }
    }

    impl AsyncReadChunk for MemorySource {
        fn read_raw_chunk<'a>(&'a self, digest: &'a [u8; 32]) -> ChunkFuture<'a, DataBlob> {
            Box::pin(async move { ReadChunk::read_raw_chunk(self, digest) })
        }

        fn read_chunk<'a>(&'a self, digest: &'a [u8; 32]) -> ChunkFuture<'a, Vec<u8>> {
            Box::pin(async move {
                self.fetched.fetch_add(1, Ordering::SeqCst);
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                let delay = 20 - u64::from(digest[0] % 20);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                self.running.fetch_sub(1, Ordering::SeqCst);
                ReadChunk::read_chunk(self, digest)
            })
        }
    }

    /// A `.didx` over 40 chunks written by hand, the chunks, and the whole stream.
    fn fixture() -> (tempfile::TempDir, MemorySource, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let mut source = MemorySource::default();
        let mut file = vec![0u8; 4096];
        file[..8].copy_from_slice(&DYNAMIC_SIZED_CHUNK_INDEX_1_0);
        let mut whole = Vec::new();
        for i in 0..40u32 {
            let piece: Vec<u8> = (0..1000 + i * 13).map(|n| (n ^ i) as u8).collect();
            let (blob, digest) = DataChunkBuilder::new(&piece).build().unwrap();
            source.chunks.insert(digest, blob);
            whole.extend_from_slice(&piece);
            file.extend_from_slice(&(whole.len() as u64).to_le_bytes());
            file.extend_from_slice(&digest);
        }
        std::fs::write(dir.path().join("s.didx"), file).unwrap();
        (dir, source, whole)
    }

    fn open(dir: &tempfile::TempDir) -> DynamicIndexReader {
        DynamicIndexReader::open(dir.path().join("s.didx")).unwrap()
    }

    #[test]
    fn stream_reader_outside_a_runtime_is_an_error() {
        let (dir, source, _whole) = fixture();
        let err = IndexStreamReader::new(Arc::new(source), Arc::new(open(&dir)))
            .err()
            .unwrap();
        assert!(err.to_string().contains("needs a tokio runtime"), "{err}");
    }

    #[test]
    fn most_used_chunks_ranks_repeated_digests() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = vec![0u8; 4096];
        file[..8].copy_from_slice(&DYNAMIC_SIZED_CHUNK_INDEX_1_0);
        let digests = [
            [1u8; 32], [2; 32], [1; 32], [3; 32], [2; 32], [1; 32], [4; 32], [4; 32],
        ];
        for (i, digest) in digests.iter().enumerate() {
            file.extend_from_slice(&(i as u64 * 10 + 10).to_le_bytes());
            file.extend_from_slice(digest);
        }
        std::fs::write(dir.path().join("s.didx"), file).unwrap();
        let index = open(&dir);
        let top = most_used_chunks(&index, 2);
        assert_eq!(top.len(), 2);
        assert_eq!(top[&[1u8; 32]], 3);
        assert_eq!(top[&[2u8; 32]], 2);
        // Chunks used once are never worth caching.
        assert_eq!(most_used_chunks(&index, 10).len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restore_overlaps_fetches_and_keeps_order() {
        let (dir, source, whole) = fixture();
        let source = Arc::new(source);
        let (out, written) =
            restore_index_to_writer(Arc::clone(&source), Arc::new(open(&dir)), Vec::new())
                .await
                .unwrap();
        assert_eq!(written, whole.len() as u64);
        assert_eq!(out, whole);
        let peak = source.peak.load(Ordering::SeqCst);
        assert!(peak > 1 && peak <= FETCH_IN_FLIGHT, "peak {peak}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stream_reader_and_read_at_return_the_stream() {
        let (dir, source, whole) = fixture();
        let source = Arc::new(source);
        let mut reader = IndexStreamReader::new(Arc::clone(&source), Arc::new(open(&dir))).unwrap();
        let data = tokio::task::spawn_blocking(move || {
            let mut data = Vec::new();
            reader.read_to_end(&mut data).map(|_| data)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(data, whole);

        let buffered = BufferedIndexReader::new(open(&dir), source);
        let read_at = IndexReadAt(SharedIndexReader::new(buffered));
        let mut buf = [0u8; 100];
        let n = pxar::accessor::ReadAt::read_at(&read_at, &mut buf, 5000).unwrap();
        assert!(n > 0);
        assert_eq!(&buf[..n], &whole[5000..5000 + n]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repeated_chunks_are_fetched_once_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = MemorySource::default();
        let pieces: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 1000 + usize::from(i)]).collect();
        let mut digests = Vec::new();
        for piece in &pieces {
            let (blob, digest) = DataChunkBuilder::new(piece).build().unwrap();
            source.chunks.insert(digest, blob);
            digests.push(digest);
        }
        // A chunk injected before and after a changed file, a zero-like chunk many times.
        let order = [0usize, 1, 0, 2, 3, 3, 3, 0, 1];
        let mut file = vec![0u8; 4096];
        file[..8].copy_from_slice(&DYNAMIC_SIZED_CHUNK_INDEX_1_0);
        let mut whole = Vec::new();
        for &i in &order {
            whole.extend_from_slice(&pieces[i]);
            file.extend_from_slice(&(whole.len() as u64).to_le_bytes());
            file.extend_from_slice(&digests[i]);
        }
        std::fs::write(dir.path().join("s.didx"), file).unwrap();
        let index = open(&dir);
        assert_eq!(
            used_again_soon(&index, u64::MAX),
            [true, true, true, false, true, true, false, false, false]
        );
        // With a window of 2000 bytes the last `1` is too far from the first one.
        assert_eq!(
            used_again_soon(&index, 2000),
            [true, false, false, false, true, true, false, false, false]
        );

        let source = Arc::new(source);
        let (out, _) = restore_index_to_writer(Arc::clone(&source), Arc::new(index), Vec::new())
            .await
            .unwrap();
        assert_eq!(out, whole);
        // 0 and 1 are fetched once each, 2 once, 3 once: the last 0 and 1 are within the
        // 64 MiB window too.
        assert_eq!(source.fetched.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repeated_chunk_with_another_index_size_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = MemorySource::default();
        let piece = vec![9u8; 1000];
        let (blob, digest) = DataChunkBuilder::new(&piece).build().unwrap();
        source.chunks.insert(digest, blob);
        // The second entry claims 2000 bytes for the same 1000-byte chunk.
        let mut file = vec![0u8; 4096];
        file[..8].copy_from_slice(&DYNAMIC_SIZED_CHUNK_INDEX_1_0);
        for end in [1000u64, 3000] {
            file.extend_from_slice(&end.to_le_bytes());
            file.extend_from_slice(&digest);
        }
        std::fs::write(dir.path().join("s.didx"), file).unwrap();
        let err = restore_index_to_writer(Arc::new(source), Arc::new(open(&dir)), Vec::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match the index (2000)"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_chunk_fails_the_restore() {
        let (dir, mut source, _whole) = fixture();
        let index = open(&dir);
        let digest = *index.index_digest(3).unwrap();
        let (other, _) = DataChunkBuilder::new(&[1u8; 10]).build().unwrap();
        source.chunks.insert(digest, other);
        let err = restore_index_to_writer(Arc::new(source), Arc::new(index), Vec::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&hex::encode(digest)), "{err}");

        // The streaming reader reports the same failure.
        let (dir, mut source, _whole) = fixture();
        let (other, _) = DataChunkBuilder::new(&[2u8; 10]).build().unwrap();
        source.chunks.insert(digest, other);
        let mut reader = IndexStreamReader::new(Arc::new(source), Arc::new(open(&dir))).unwrap();
        let err = tokio::task::spawn_blocking(move || {
            let mut data = Vec::new();
            reader.read_to_end(&mut data).map(|_| data.len())
        })
        .await
        .unwrap()
        .unwrap_err();
        assert!(err.to_string().contains(&hex::encode(digest)), "{err}");
    }
}
