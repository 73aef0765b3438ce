//! Streams of local data for the upload: image files/devices read in a thread.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{format_err, Result};
use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::mpsc;

/// Size of the pieces an image is read in.
const READ_SIZE: usize = 1024 * 1024;
/// Pieces buffered before the reader waits.
const DEPTH: usize = 8;

/// A stream of an image's bytes, read by a thread.
pub struct ImageStream {
    rx: mpsc::Receiver<Result<Bytes>>,
}

impl Stream for ImageStream {
    type Item = Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Reads `size` bytes of `path` (a regular file or block device); `progress` counts them.
pub fn image_stream(path: &Path, size: u64, progress: Arc<AtomicU64>) -> Result<ImageStream> {
    let mut file = File::open(path)
        .map_err(|err| format_err!("unable to open image '{}' - {err}", path.display()))?;
    let name = path.display().to_string();
    let (tx, rx) = mpsc::channel(DEPTH);
    std::thread::Builder::new()
        .name("image-reader".into())
        .spawn(move || {
            let mut remaining = size;
            while remaining > 0 {
                let want = remaining.min(READ_SIZE as u64) as usize;
                let mut buf = BytesMut::zeroed(want);
                let mut filled = 0;
                while filled < want {
                    match file.read(&mut buf[filled..]) {
                        Ok(0) => {
                            let _ = tx.blocking_send(Err(format_err!(
                                "image '{name}' ended after {} of {size} bytes",
                                size - remaining + filled as u64
                            )));
                            return;
                        }
                        Ok(n) => filled += n,
                        Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(err) => {
                            let _ = tx.blocking_send(Err(format_err!(
                                "unable to read image '{name}' - {err}"
                            )));
                            return;
                        }
                    }
                }
                remaining -= want as u64;
                progress.fetch_add(want as u64, Ordering::Relaxed);
                if tx.blocking_send(Ok(buf.freeze())).is_err() {
                    return;
                }
            }
        })
        .map_err(|err| format_err!("unable to start image reader thread - {err}"))?;
    Ok(ImageStream { rx })
}

/// Counts the bytes passing through a stream (for the progress line).
pub struct Counted<S> {
    inner: S,
    counter: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    /// Wraps `inner`, adding every piece's length to `counter`.
    pub fn new(inner: S, counter: Arc<AtomicU64>) -> Self {
        Self { inner, counter }
    }
}

impl<S: Stream<Item = Result<Bytes>> + Unpin> Stream for Counted<S> {
    type Item = Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let poll = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(piece))) = &poll {
            self.counter
                .fetch_add(piece.len() as u64, Ordering::Relaxed);
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn reads_whole_image_and_reports_short_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("img");
        let data: Vec<u8> = (0..3 * READ_SIZE + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let progress = Arc::new(AtomicU64::new(0));
        let got = rt.block_on(async {
            let mut s = image_stream(&path, data.len() as u64, progress.clone()).expect("stream");
            let mut out = Vec::new();
            while let Some(piece) = s.next().await {
                out.extend_from_slice(&piece.expect("piece"));
            }
            out
        });
        assert_eq!(got, data);
        assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);

        let err = rt.block_on(async {
            let mut s = image_stream(&path, data.len() as u64 + 5, Arc::default()).expect("stream");
            loop {
                match s.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(err)) => break err.to_string(),
                    None => break "no error".into(),
                }
            }
        });
        assert!(err.contains("ended after"), "{err}");
    }
}
