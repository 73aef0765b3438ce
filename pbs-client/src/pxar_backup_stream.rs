//! A pxar archive as an async byte stream: the archiver runs in its own thread and feeds a
//! bounded channel, so the upload side pulls data at its own pace and the archiver blocks
//! (instead of buffering) when the upload falls behind.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::{format_err, Error, Result};
use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::{mpsc, oneshot};

use pbs_datastore::catalog::BackupCatalogWriter;

use crate::pxar::{create_archive, create_archive_split, ArchiveStats, Flags, PxarCreateOptions};

/// Size of the pieces handed to the upload side.
const PIECE_SIZE: usize = 256 * 1024;
/// Pieces buffered per stream before the archiver waits (4 MiB).
const CHANNEL_DEPTH: usize = 16;

/// The receiving end: a `Stream` of archive bytes. Dropping it makes the archiver fail with
/// a broken pipe and stop.
pub struct PxarBackupStream {
    rx: mpsc::Receiver<Result<Bytes>>,
}

impl Stream for PxarBackupStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// A `Write` end that cuts the written bytes into pieces and sends them down the channel.
pub struct StreamWriter {
    tx: mpsc::Sender<Result<Bytes>>,
    buffer: BytesMut,
}

impl StreamWriter {
    fn new(tx: mpsc::Sender<Result<Bytes>>) -> Self {
        Self {
            tx,
            buffer: BytesMut::with_capacity(PIECE_SIZE),
        }
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let piece = self.buffer.split().freeze();
        self.buffer.reserve(PIECE_SIZE);
        self.tx.blocking_send(Ok(piece)).map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "archive stream receiver is gone")
        })
    }

    fn fail(&self, err: Error) {
        // The receiver may already be gone; then nobody cares about the error.
        let _ = self.tx.blocking_send(Err(err));
    }
}

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = PIECE_SIZE - self.buffer.len();
        let take = room.min(buf.len());
        self.buffer.extend_from_slice(&buf[..take]);
        if self.buffer.len() >= PIECE_SIZE {
            self.send_buffer()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

/// Resolves to the archiver's statistics once it has finished (or its error).
pub struct ArchiverHandle {
    result: oneshot::Receiver<Result<ArchiveStats>>,
}

impl ArchiverHandle {
    /// Waits for the archiver thread.
    pub async fn wait(self) -> Result<ArchiveStats> {
        self.result
            .await
            .map_err(|_| format_err!("pxar archiver thread ended unexpectedly"))?
    }
}

/// A `Write` end and the stream of what is written to it (e.g. for the catalog). The writer
/// blocks when the stream is not drained: use it from a blocking context.
pub fn byte_channel() -> (StreamWriter, PxarBackupStream) {
    channel()
}

fn channel() -> (StreamWriter, PxarBackupStream) {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    (StreamWriter::new(tx), PxarBackupStream { rx })
}

/// Runs `archiver` in a new thread with one output stream (`payload: false`) or a metadata
/// and a payload stream. Errors end the streams with an `Err` item and resolve the handle.
pub fn spawn_archiver<F>(
    payload: bool,
    archiver: F,
) -> Result<(PxarBackupStream, Option<PxarBackupStream>, ArchiverHandle)>
where
    F: FnOnce(&mut StreamWriter, Option<&mut StreamWriter>) -> Result<ArchiveStats>
        + Send
        + 'static,
{
    let (mut writer, stream) = channel();
    let (mut payload_writer, payload_stream) = if payload {
        let (w, s) = channel();
        (Some(w), Some(s))
    } else {
        (None, None)
    };
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("pxar-archiver".into())
        .spawn(move || {
            let result = archiver(&mut writer, payload_writer.as_mut()).and_then(|stats| {
                writer.flush()?;
                if let Some(w) = payload_writer.as_mut() {
                    w.flush()?;
                }
                Ok(stats)
            });
            if let Err(err) = &result {
                writer.fail(format_err!("{err:#}"));
                if let Some(w) = &payload_writer {
                    w.fail(format_err!("{err:#}"));
                }
            }
            // Close the streams before reporting, so the upload sees the end first.
            drop(writer);
            drop(payload_writer);
            let _ = done_tx.send(result);
        })
        .map_err(|err| format_err!("unable to start pxar archiver thread - {err}"))?;
    Ok((stream, payload_stream, ArchiverHandle { result: done_rx }))
}

/// A catalog writer shared by the archives of one backup run (each archive fills its own
/// directory in turn).
pub struct SharedCatalog<C>(pub Arc<Mutex<C>>);

impl<C> Clone for SharedCatalog<C> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<C: BackupCatalogWriter> SharedCatalog<C> {
    fn with<T>(&self, f: impl FnOnce(&mut C) -> Result<T>) -> Result<T> {
        let mut guard = self
            .0
            .lock()
            .map_err(|_| format_err!("catalog writer lock poisoned"))?;
        f(&mut guard)
    }
}

impl<C: BackupCatalogWriter> BackupCatalogWriter for SharedCatalog<C> {
    fn start_directory(&mut self, name: &[u8]) -> Result<()> {
        self.with(|c| c.start_directory(name))
    }
    fn end_directory(&mut self) -> Result<()> {
        self.with(|c| c.end_directory())
    }
    fn add_file(&mut self, name: &[u8], size: u64, mtime: i64) -> Result<()> {
        self.with(|c| c.add_file(name, size, mtime))
    }
    fn add_symlink(&mut self, name: &[u8]) -> Result<()> {
        self.with(|c| c.add_symlink(name))
    }
    fn add_hardlink(&mut self, name: &[u8]) -> Result<()> {
        self.with(|c| c.add_hardlink(name))
    }
    fn add_block_device(&mut self, name: &[u8]) -> Result<()> {
        self.with(|c| c.add_block_device(name))
    }
    fn add_char_device(&mut self, name: &[u8]) -> Result<()> {
        self.with(|c| c.add_char_device(name))
    }
    fn add_fifo(&mut self, name: &[u8]) -> Result<()> {
        self.with(|c| c.add_fifo(name))
    }
    fn add_socket(&mut self, name: &[u8]) -> Result<()> {
        self.with(|c| c.add_socket(name))
    }
}

fn print_message(message: String) {
    eprintln!("{message}");
}

/// A v1 archive of `source` as a stream; its entries go into `catalog` wrapped in the
/// directory `catalog_dir` (the server file name, e.g. `root.pxar.didx`).
pub fn pxar_stream<C>(
    source: &Path,
    flags: Flags,
    options: PxarCreateOptions,
    catalog: Option<(SharedCatalog<C>, String)>,
) -> Result<(PxarBackupStream, ArchiverHandle)>
where
    C: BackupCatalogWriter + Send + 'static,
{
    let source: PathBuf = source.to_owned();
    let (stream, _, handle) = spawn_archiver(false, move |writer, _| {
        let mut messages = print_message;
        match catalog {
            Some((mut catalog, dir)) => {
                catalog.start_directory(dir.as_bytes())?;
                let stats = create_archive(
                    source.as_path(),
                    writer,
                    flags,
                    options,
                    Some(&mut catalog),
                    &mut messages,
                )?;
                catalog.end_directory()?;
                Ok(stats)
            }
            None => create_archive(
                source.as_path(),
                writer,
                flags,
                options,
                None,
                &mut messages,
            ),
        }
    })?;
    Ok((stream, handle))
}

/// A v2 split archive of `source` as a metadata and a payload stream (all contents encoded).
pub fn pxar_split_stream(
    source: &Path,
    flags: Flags,
    options: PxarCreateOptions,
) -> Result<(PxarBackupStream, PxarBackupStream, ArchiverHandle)> {
    let source: PathBuf = source.to_owned();
    let (stream, payload, handle) = spawn_archiver(true, move |writer, payload| {
        let payload = payload.ok_or_else(|| format_err!("payload stream missing"))?;
        let mut messages = print_message;
        create_archive_split(
            source.as_path(),
            writer,
            payload,
            flags,
            options,
            None,
            &mut messages,
        )
    })?;
    let payload = payload.ok_or_else(|| format_err!("payload stream missing"))?;
    Ok((stream, payload, handle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use pbs_datastore::catalog::CatalogWriter;

    fn collect(stream: PxarBackupStream) -> Result<Vec<u8>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut out = Vec::new();
            let mut stream = stream;
            while let Some(piece) = stream.next().await {
                out.extend_from_slice(&piece?);
            }
            Ok(out)
        })
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/a"), vec![7u8; 1_000_000]).expect("write");
        std::fs::write(dir.path().join("b"), b"hello").expect("write");
        dir
    }

    #[test]
    fn stream_equals_direct_archive() {
        let dir = tree();
        let mut direct = Vec::new();
        create_archive(
            dir.path(),
            &mut direct,
            Flags::DEFAULT,
            PxarCreateOptions::default(),
            None,
            &mut |_| {},
        )
        .expect("direct");

        let catalog = SharedCatalog(Arc::new(Mutex::new(
            CatalogWriter::new(Vec::new()).expect("catalog"),
        )));
        let (stream, handle) = pxar_stream(
            dir.path(),
            Flags::DEFAULT,
            PxarCreateOptions::default(),
            Some((catalog.clone(), "root.pxar.didx".to_string())),
        )
        .expect("stream");
        let streamed = collect(stream).expect("collect");
        assert_eq!(streamed, direct);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let stats = rt.block_on(handle.wait()).expect("stats");
        assert_eq!(stats.archive_size, direct.len() as u64);
        assert_eq!(stats.files, 2);

        let writer = Arc::try_unwrap(catalog.0)
            .ok()
            .expect("sole owner")
            .into_inner()
            .expect("lock");
        let data = writer.finish().expect("finish");
        let found = data.windows(14).any(|w| w == b"root.pxar.didx");
        assert!(found, "catalog names the archive directory");
    }

    #[test]
    fn split_streams_decode() {
        let dir = tree();
        let (meta, payload, handle) =
            pxar_split_stream(dir.path(), Flags::DEFAULT, PxarCreateOptions::default())
                .expect("stream");
        // Both streams must be drained concurrently: the archiver alternates between them.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (meta, payload) = rt.block_on(async move {
            let drain = |s: PxarBackupStream| async move {
                let mut out = Vec::new();
                let mut s = s;
                while let Some(piece) = s.next().await {
                    out.extend_from_slice(&piece?);
                }
                Ok::<_, Error>(out)
            };
            futures::join!(drain(meta), drain(payload))
        });
        let (meta, payload) = (meta.expect("meta"), payload.expect("payload"));
        assert!(payload.len() > 1_000_000);
        let stats = rt.block_on(handle.wait()).expect("stats");
        assert_eq!(stats.payload_size, Some(payload.len() as u64));
        let accessor = pxar::Accessor::new(
            &meta[..],
            meta.len() as u64,
            Some((&payload[..], payload.len() as u64)),
        )
        .expect("accessor");
        let entry = accessor
            .lookup("/sub/a".as_ref())
            .expect("lookup")
            .expect("present");
        assert_eq!(
            accessor
                .open_contents(&entry)
                .expect("open")
                .read_all()
                .expect("read"),
            vec![7u8; 1_000_000]
        );
    }

    #[test]
    fn archiver_error_ends_the_stream_with_an_error() {
        let (stream, handle) = pxar_stream::<CatalogWriter<Vec<u8>>>(
            Path::new("/nonexistent/source/dir"),
            Flags::DEFAULT,
            PxarCreateOptions::default(),
            None,
        )
        .expect("stream");
        let err = collect(stream).unwrap_err();
        assert!(format!("{err:#}").contains("nonexistent"), "{err:#}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert!(rt.block_on(handle.wait()).is_err());
    }

    #[test]
    fn dropped_receiver_stops_the_archiver() {
        let dir = tree();
        // More than the channel holds, so the archiver must notice the missing receiver.
        std::fs::write(
            dir.path().join("big"),
            vec![1u8; 4 * PIECE_SIZE * CHANNEL_DEPTH],
        )
        .expect("write");
        let (stream, handle) = pxar_stream::<CatalogWriter<Vec<u8>>>(
            dir.path(),
            Flags::DEFAULT,
            PxarCreateOptions::default(),
            None,
        )
        .expect("stream");
        drop(stream);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let err = rt.block_on(handle.wait()).unwrap_err();
        assert!(format!("{err:#}").contains("receiver is gone"), "{err:#}");
    }
}
