//! Asynchronous (tokio) encoder.
//!
//! The synchronous [`crate::Encoder`] writes into small in-memory queues; every async call
//! drains them to the `AsyncWrite` outputs before it returns, and file contents are streamed in
//! 64 KiB steps. The bytes are therefore exactly those of the synchronous encoder, and memory
//! stays bounded by one item (a goodbye table at most) plus one content block.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::encoder::{Encoder as SyncEncoder, LinkOffset};
use crate::format::Device;
use crate::{Error, Metadata, Result};

/// Content block size of [`Encoder::add_file`].
const CONTENT_BLOCK: usize = 64 * 1024;

/// Byte queue between the synchronous encoder and an async output.
#[derive(Clone, Default)]
struct Queue(Arc<Mutex<Vec<u8>>>);

impl Queue {
    fn take(&self) -> Vec<u8> {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::take(&mut *guard)
    }
}

impl Write for Queue {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One async output with its queue and the number of bytes already written to it.
struct Sink<W> {
    queue: Queue,
    writer: W,
    written: u64,
}

impl<W: AsyncWrite + Unpin> Sink<W> {
    async fn drain(&mut self) -> Result<()> {
        let data = self.queue.take();
        if data.is_empty() {
            return Ok(());
        }
        self.writer
            .write_all(&data)
            .await
            .map_err(|source| Error::Io {
                offset: self.written,
                source,
            })?;
        self.written += data.len() as u64;
        Ok(())
    }
}

/// pxar archive writer on tokio `AsyncWrite` outputs: v1 (one output) or v2 (metadata output
/// plus payload output). Same API and rules as the synchronous [`crate::Encoder`].
pub struct Encoder<W: AsyncWrite + Unpin, P: AsyncWrite + Unpin = W> {
    inner: SyncEncoder<Queue, Queue>,
    out: Sink<W>,
    payload: Option<Sink<P>>,
}

impl<W: AsyncWrite + Unpin> Encoder<W, W> {
    /// Start a v1 (unified) archive whose root directory has `root` metadata.
    pub async fn new_unified(output: W, root: &Metadata) -> Result<Self> {
        Self::new(output, root, None, None).await
    }
}

impl<W: AsyncWrite + Unpin, P: AsyncWrite + Unpin> Encoder<W, P> {
    /// Start an archive: v2 split if `payload_output` is given (with an optional prelude).
    pub async fn new(
        output: W,
        root: &Metadata,
        payload_output: Option<P>,
        prelude: Option<&[u8]>,
    ) -> Result<Self> {
        let out = Sink {
            queue: Queue::default(),
            writer: output,
            written: 0,
        };
        let payload = payload_output.map(|writer| Sink {
            queue: Queue::default(),
            writer,
            written: 0,
        });
        let inner = SyncEncoder::new(
            out.queue.clone(),
            root,
            payload.as_ref().map(|p| p.queue.clone()),
            prelude,
        )?;
        let mut encoder = Self {
            inner,
            out,
            payload,
        };
        encoder.drain().await?;
        Ok(encoder)
    }

    async fn drain(&mut self) -> Result<()> {
        self.out.drain().await?;
        if let Some(payload) = self.payload.as_mut() {
            payload.drain().await?;
        }
        Ok(())
    }

    /// Current offset in the (metadata) archive stream.
    pub fn position(&self) -> u64 {
        self.inner.position()
    }

    /// Current offset in the payload stream (v2 only).
    pub fn payload_position(&self) -> Option<u64> {
        self.inner.payload_position()
    }

    /// See [`crate::Encoder::allow_unsorted_next_entry`].
    pub fn allow_unsorted_next_entry(&mut self) {
        self.inner.allow_unsorted_next_entry()
    }

    /// Open a sub-directory; children follow until [`Encoder::finish_directory`].
    pub async fn create_directory(
        &mut self,
        name: &[u8],
        metadata: &Metadata,
    ) -> Result<LinkOffset> {
        let offset = self.inner.create_directory(name, metadata)?;
        self.drain().await?;
        Ok(offset)
    }

    /// Close the innermost open directory (writes its goodbye table).
    pub async fn finish_directory(&mut self) -> Result<()> {
        self.inner.finish_directory()?;
        self.drain().await
    }

    /// Add a regular file of exactly `size` bytes read from `content`.
    pub async fn add_file<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        metadata: &Metadata,
        name: &[u8],
        size: u64,
        content: &mut R,
    ) -> Result<LinkOffset> {
        let Self {
            inner,
            out,
            payload,
        } = self;
        let mut writer = inner.create_file(metadata, name, size)?;
        out.drain().await?;
        if let Some(payload) = payload.as_mut() {
            payload.drain().await?;
        }
        let mut buf = vec![0u8; CONTENT_BLOCK.min(size as usize).max(1)];
        let mut remaining = size;
        while remaining > 0 {
            let want = remaining.min(buf.len() as u64) as usize;
            let got = content.read(&mut buf[..want]).await.map_err(|err| {
                Error::invalid(format!(
                    "{:?}: reading content failed: {err}",
                    String::from_utf8_lossy(name)
                ))
            })?;
            if got == 0 {
                return Err(Error::invalid(format!(
                    "{:?}: content ended {remaining} bytes before the announced size {size}",
                    String::from_utf8_lossy(name)
                )));
            }
            writer.write_content(&buf[..got])?;
            remaining -= got as u64;
            match payload.as_mut() {
                Some(payload) => payload.drain().await?,
                None => out.drain().await?,
            }
        }
        let offset = writer.finish()?;
        self.drain().await?;
        Ok(offset)
    }

    /// Add a v2 file whose payload is already in (or injected into) the payload stream.
    pub async fn add_payload_ref(
        &mut self,
        metadata: &Metadata,
        name: &[u8],
        size: u64,
        payload_offset: u64,
    ) -> Result<LinkOffset> {
        let offset = self
            .inner
            .add_payload_ref(metadata, name, size, payload_offset)?;
        self.drain().await?;
        Ok(offset)
    }

    /// Account for payload bytes injected into the payload stream by other means.
    pub async fn advance_payload_position(&mut self, size: u64) -> Result<()> {
        self.inner.advance_payload_position(size)?;
        self.drain().await
    }

    /// Write raw bytes to the payload stream (re-used payload).
    pub async fn write_payload_raw(&mut self, data: &[u8]) -> Result<()> {
        self.inner.write_payload_raw(data)?;
        self.drain().await
    }

    /// Add a symbolic link.
    pub async fn add_symlink(
        &mut self,
        metadata: &Metadata,
        name: &[u8],
        target: &[u8],
    ) -> Result<()> {
        self.inner.add_symlink(metadata, name, target)?;
        self.drain().await
    }

    /// Add a block or character device.
    pub async fn add_device(
        &mut self,
        metadata: &Metadata,
        name: &[u8],
        device: Device,
    ) -> Result<()> {
        self.inner.add_device(metadata, name, device)?;
        self.drain().await
    }

    /// Add a fifo.
    pub async fn add_fifo(&mut self, metadata: &Metadata, name: &[u8]) -> Result<()> {
        self.inner.add_fifo(metadata, name)?;
        self.drain().await
    }

    /// Add a socket.
    pub async fn add_socket(&mut self, metadata: &Metadata, name: &[u8]) -> Result<()> {
        self.inner.add_socket(metadata, name)?;
        self.drain().await
    }

    /// Add a hardlink to an entry written earlier at `target_offset`.
    pub async fn add_hardlink(
        &mut self,
        name: &[u8],
        target: &[u8],
        target_offset: LinkOffset,
    ) -> Result<()> {
        self.inner.add_hardlink(name, target, target_offset)?;
        self.drain().await
    }

    /// Close the root directory and the payload stream, flush, and return the outputs.
    pub async fn finish(self) -> Result<(W, Option<P>)> {
        let Self {
            inner,
            mut out,
            payload,
        } = self;
        // The queues the synchronous encoder hands back are clones of the sinks' queues.
        inner.finish()?;
        out.drain().await?;
        out.writer.flush().await.map_err(|source| Error::Io {
            offset: out.written,
            source,
        })?;
        let payload = match payload {
            Some(mut payload) => {
                payload.drain().await?;
                payload.writer.flush().await.map_err(|source| Error::Io {
                    offset: payload.written,
                    source,
                })?;
                Some(payload.writer)
            }
            None => None,
        };
        Ok((out.writer, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Stat;

    fn meta(mode: u64) -> Metadata {
        Metadata {
            stat: Stat {
                mode,
                flags: 0,
                uid: 1000,
                gid: 1000,
                mtime: crate::format::StatxTimestamp::from_nanos_since_epoch(
                    1_700_000_000_123_456_789,
                )
                .expect("timestamp in range"),
            },
            ..Default::default()
        }
    }

    fn content(i: usize) -> Vec<u8> {
        (0..i * 7919 % 200_000)
            .map(|n| (n * 31 + i) as u8)
            .collect()
    }

    /// Builds the same tree through the sync encoder and returns (archive, payload).
    fn sync_archive(split: bool) -> (Vec<u8>, Option<Vec<u8>>) {
        let dir = meta(crate::format::mode::IFDIR | 0o755);
        let file = meta(crate::format::mode::IFREG | 0o644);
        let mut enc = SyncEncoder::new(Vec::new(), &dir, split.then(Vec::new), None).unwrap();
        let a = enc
            .add_file(&file, b"a", content(1).len() as u64, &mut &content(1)[..])
            .unwrap();
        enc.create_directory(b"d", &dir).unwrap();
        for i in 2..6 {
            let name = format!("f{i}");
            enc.add_file(
                &file,
                name.as_bytes(),
                content(i).len() as u64,
                &mut &content(i)[..],
            )
            .unwrap();
        }
        enc.add_symlink(&meta(crate::format::mode::IFLNK | 0o777), b"l", b"../a")
            .unwrap();
        enc.finish_directory().unwrap();
        enc.add_fifo(&meta(crate::format::mode::IFIFO | 0o600), b"p")
            .unwrap();
        enc.add_hardlink(b"z", b"a", a).unwrap();
        let (out, payload) = enc.finish().unwrap();
        (out, payload)
    }

    async fn async_archive(split: bool) -> (Vec<u8>, Option<Vec<u8>>) {
        let dir = meta(crate::format::mode::IFDIR | 0o755);
        let file = meta(crate::format::mode::IFREG | 0o644);
        // Small duplex buffers force the encoder to wait for the reader (back-pressure).
        let (out_w, mut out_r) = tokio::io::duplex(1024);
        let (pay_w, mut pay_r) = tokio::io::duplex(1024);
        let out_reader = tokio::spawn(async move {
            let mut v = Vec::new();
            out_r.read_to_end(&mut v).await.map(|_| v)
        });
        let pay_reader = tokio::spawn(async move {
            let mut v = Vec::new();
            pay_r.read_to_end(&mut v).await.map(|_| v)
        });
        let mut enc = Encoder::new(out_w, &dir, split.then_some(pay_w), None)
            .await
            .unwrap();
        let a = enc
            .add_file(&file, b"a", content(1).len() as u64, &mut &content(1)[..])
            .await
            .unwrap();
        enc.create_directory(b"d", &dir).await.unwrap();
        for i in 2..6 {
            let name = format!("f{i}");
            enc.add_file(
                &file,
                name.as_bytes(),
                content(i).len() as u64,
                &mut &content(i)[..],
            )
            .await
            .unwrap();
        }
        enc.add_symlink(&meta(crate::format::mode::IFLNK | 0o777), b"l", b"../a")
            .await
            .unwrap();
        enc.finish_directory().await.unwrap();
        enc.add_fifo(&meta(crate::format::mode::IFIFO | 0o600), b"p")
            .await
            .unwrap();
        enc.add_hardlink(b"z", b"a", a).await.unwrap();
        let (out_w, pay_w) = enc.finish().await.unwrap();
        drop(out_w);
        drop(pay_w);
        let out = out_reader.await.unwrap().unwrap();
        let payload = pay_reader.await.unwrap().unwrap();
        (out, split.then_some(payload))
    }

    #[tokio::test]
    async fn async_output_is_byte_identical_to_sync() {
        for split in [false, true] {
            let expected = sync_archive(split);
            let got = async_archive(split).await;
            assert_eq!(got.0, expected.0, "metadata stream, split={split}");
            assert_eq!(got.1, expected.1, "payload stream, split={split}");
        }
    }

    #[tokio::test]
    async fn short_content_is_an_error() {
        let dir = meta(crate::format::mode::IFDIR | 0o755);
        let file = meta(crate::format::mode::IFREG | 0o644);
        let mut enc = Encoder::new_unified(Vec::new(), &dir).await.unwrap();
        let err = enc
            .add_file(&file, b"x", 10, &mut &b"abc"[..])
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("7 bytes before the announced size 10"),
            "{err}"
        );
    }
}
