//! The upload pipeline of one index:
//!
//! input stream → chunking (blocking thread) → hashing/encoding (all cores, ordered) →
//! known-chunk decision (sequential) → chunk uploads (many in flight) → ordered appends.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use anyhow::{bail, format_err, Error};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use super::append_batch::{append_body, EntryBatcher, IndexEntry};
use super::chunk_cutter::{ChunkCutter, StreamPiece};
use super::encode::{ordered_parallel, worker_count, ChunkEncoder, EncodedChunk, KnownChunks};
use super::index_state::{IndexKind, IndexState, IndexTotals, QueueItem};
use crate::h2::H2Client;
use crate::inject::{InjectChunks, PayloadHint};

/// Upload requests (and merged known runs) queued ahead of the appends.
const UPLOAD_QUEUE_DEPTH: usize = 64;

/// Encoded chunk bytes (KiB) that may be on their way to the server at once. With large
/// incompressible chunks the request count alone would let 64 × 4 MiB wait in memory here
/// and on the server; this keeps both at a fraction of that without starving the link.
const UPLOAD_KIB_IN_FLIGHT: u32 = 48 * 1024;

/// Input pieces buffered between the stream and the chunker thread.
const INPUT_QUEUE_DEPTH: usize = 16;

/// Chunks buffered between the chunker thread and the encoders.
const CHUNK_QUEUE_DEPTH: usize = 8;

/// Everything one index upload needs.
pub(super) struct IndexUpload {
    pub h2: H2Client,
    pub wid: u64,
    pub kind: IndexKind,
    pub stream: Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>,
    pub cutter: ChunkCutter,
    pub hints: Option<Receiver<PayloadHint>>,
    pub encoder: ChunkEncoder,
    pub known: KnownChunks,
    pub canceled: Arc<AtomicBool>,
}

/// A hashed piece of the stream.
enum EncodedPiece {
    Chunk(EncodedChunk),
    Injected(InjectChunks),
}

/// An append waiting for its chunk upload (if any).
enum PendingAppend {
    Known(Vec<IndexEntry>),
    Uploaded(IndexEntry, JoinHandle<Result<(), Error>>),
}

/// Runs the whole pipeline; returns the totals once every append was acknowledged.
pub(super) async fn upload_index(upload: IndexUpload) -> Result<IndexTotals, Error> {
    let IndexUpload {
        h2,
        wid,
        kind,
        mut stream,
        cutter,
        hints,
        encoder,
        known,
        canceled,
    } = upload;

    let (input_tx, input_rx) = mpsc::channel::<Result<Bytes, Error>>(INPUT_QUEUE_DEPTH);
    let forwarder = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            if input_tx.send(item).await.is_err() {
                break;
            }
        }
    });

    let (piece_tx, piece_rx) = mpsc::channel::<StreamPiece>(CHUNK_QUEUE_DEPTH);
    let chunker =
        tokio::task::spawn_blocking(move || run_chunker(cutter, input_rx, hints, piece_tx));

    let pieces = futures::stream::unfold(piece_rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    let mut encoded = Box::pin(ordered_parallel(
        pieces,
        worker_count(),
        move |piece| match piece {
            StreamPiece::Chunk(data) => encoder.encode(&data).map(EncodedPiece::Chunk),
            StreamPiece::Injected(injection) => Ok(EncodedPiece::Injected(injection)),
        },
    ));

    let (queue_tx, queue_rx) = mpsc::channel::<PendingAppend>(UPLOAD_QUEUE_DEPTH);
    let appender = tokio::spawn(run_appender(h2.clone(), wid, kind, queue_rx));

    let mut state = IndexState::new(kind, known);
    let in_flight = Arc::new(Semaphore::new(UPLOAD_KIB_IN_FLIGHT as usize));
    let produced: Result<(), Error> = async {
        let mut items = Vec::new();
        while let Some(piece) = encoded.next().await {
            if canceled.load(Ordering::Relaxed) {
                bail!("backup canceled");
            }
            match piece? {
                EncodedPiece::Chunk(chunk) => state.add_chunk(chunk, &mut items)?,
                EncodedPiece::Injected(injection) => state.add_injected(&injection, &mut items)?,
            }
            for item in items.drain(..) {
                queue_item(&h2, wid, kind, item, &queue_tx, &in_flight).await?;
            }
        }
        Ok(())
    }
    .await;
    drop(encoded);

    let mut items = Vec::new();
    let totals = state.finish(&mut items);
    let produced = match produced {
        Ok(()) => {
            let mut result = Ok(());
            for item in items {
                result = queue_item(&h2, wid, kind, item, &queue_tx, &in_flight).await;
                if result.is_err() {
                    break;
                }
            }
            result
        }
        Err(err) => Err(err),
    };
    drop(queue_tx);

    let appended = appender
        .await
        .map_err(|err| format_err!("append task failed - {err}"))?;
    let chunked = chunker
        .await
        .map_err(|err| format_err!("chunker thread failed - {err}"))?;
    forwarder.abort();

    // The first failure in stream order explains the others best: input before chunking
    // before uploads.
    chunked?;
    appended?;
    produced?;
    Ok(totals)
}

/// Hands an item to the appender; new chunks start uploading as soon as the bytes in flight
/// allow.
async fn queue_item(
    h2: &H2Client,
    wid: u64,
    kind: IndexKind,
    item: QueueItem,
    queue: &mpsc::Sender<PendingAppend>,
    in_flight: &Arc<Semaphore>,
) -> Result<(), Error> {
    let pending = match item {
        QueueItem::Known(list) => PendingAppend::Known(list),
        QueueItem::New { entry, size, blob } => {
            let params = json!({
                "wid": wid,
                "digest": hex::encode(entry.1),
                "size": size,
                "encoded-size": blob.raw_size(),
            });
            let kib = u32::try_from(blob.raw_size().div_ceil(1024))
                .unwrap_or(u32::MAX)
                .clamp(1, UPLOAD_KIB_IN_FLIGHT);
            let permit = Arc::clone(in_flight)
                .acquire_many_owned(kib)
                .await
                .map_err(|_| format_err!("upload limiter closed"))?;
            let body = Bytes::from(blob.into_inner());
            let h2 = h2.clone();
            let path = format!("{}_chunk", kind.prefix());
            let upload = tokio::spawn(async move {
                let result = h2
                    .upload(
                        "POST",
                        &path,
                        Some(params),
                        "application/octet-stream",
                        body,
                    )
                    .await
                    .map(drop);
                drop(permit);
                result
            });
            PendingAppend::Uploaded(entry, upload)
        }
    };
    queue
        .send(pending)
        .await
        .map_err(|_| format_err!("append queue closed"))
}

/// Waits for the uploads in stream order and sends the appends, one at a time.
async fn run_appender(
    h2: H2Client,
    wid: u64,
    kind: IndexKind,
    mut queue: mpsc::Receiver<PendingAppend>,
) -> Result<(), Error> {
    let path = format!("{}_index", kind.prefix());
    let mut batcher = EntryBatcher::default();
    while let Some(pending) = queue.recv().await {
        let entries = match pending {
            PendingAppend::Known(list) => list,
            PendingAppend::Uploaded(entry, upload) => {
                upload
                    .await
                    .map_err(|err| format_err!("pipelined request failed: {err}"))?
                    .map_err(|err| format_err!("pipelined request failed: {err:#}"))?;
                vec![entry]
            }
        };
        if let Some(batch) = batcher.push(&entries) {
            h2.put(&path, Some(append_body(wid, &batch))).await?;
        }
    }
    if let Some(batch) = batcher.flush() {
        h2.put(&path, Some(append_body(wid, &batch))).await?;
    }
    Ok(())
}

/// The chunker thread: pulls input pieces, cuts chunks, honours the archiver's hints.
fn run_chunker(
    mut cutter: ChunkCutter,
    mut input: mpsc::Receiver<Result<Bytes, Error>>,
    hints: Option<Receiver<PayloadHint>>,
    output: mpsc::Sender<StreamPiece>,
) -> Result<(), Error> {
    // When the consumer stops, it reports why; the chunker just ends.
    let consumer_gone = std::cell::Cell::new(false);
    let mut emit = |piece: StreamPiece| {
        output.blocking_send(piece).map_err(|_| {
            consumer_gone.set(true);
            format_err!("chunk consumer stopped")
        })
    };
    let take_hints = |cutter: &mut ChunkCutter| -> Result<(), Error> {
        if let Some(rx) = &hints {
            // The archiver sends a hint before writing any byte behind its offset, so
            // everything relevant for the next piece is already queued.
            while let Ok(hint) = rx.try_recv() {
                cutter.add_hint(hint)?;
            }
        }
        Ok(())
    };
    let result = (|| {
        while let Some(data) = input.blocking_recv() {
            let data = data.map_err(|err| format_err!("input stream failed: {err:#}"))?;
            take_hints(&mut cutter)?;
            cutter.push(data, &mut emit)?;
        }
        take_hints(&mut cutter)?;
        cutter.finish(&mut emit)
    })();
    if consumer_gone.get() {
        return Ok(());
    }
    result
}
