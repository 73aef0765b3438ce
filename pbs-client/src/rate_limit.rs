//! Token-bucket rate limiting of a byte stream, separately for each direction.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A token bucket: `rate` bytes per second, holding at most `burst` bytes of credit.
///
/// Transfers are never split: a transfer may overdraw the bucket, and the next one waits until
/// the debt is paid back. Over time this gives exactly `rate` bytes per second.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket; `burst` defaults to `rate` and is at least 1.
    pub fn new(rate: u64, burst: Option<u64>) -> Self {
        let rate = rate.max(1) as f64;
        let burst = burst.map_or(rate, |b| b.max(1) as f64);
        Self {
            rate,
            burst,
            tokens: burst,
            updated: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
    }

    /// How long to wait before the next transfer may start (zero if credit is left).
    pub fn delay(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens > 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate + 1e-3)
        }
    }

    /// Accounts `bytes` transferred at `now`.
    pub fn consume(&mut self, bytes: usize, now: Instant) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }
}

/// A shared bucket (all connections of one client share the limit).
pub type SharedBucket = Arc<Mutex<TokenBucket>>;

/// The read and write limits of a client.
#[derive(Clone, Debug, Default)]
pub struct RateLimits {
    pub read: Option<SharedBucket>,
    pub write: Option<SharedBucket>,
}

impl RateLimits {
    /// Both directions limited to `rate` bytes/s with `burst` bytes of credit.
    pub fn new(rate: Option<u64>, burst: Option<u64>) -> Self {
        match rate {
            None => Self::default(),
            Some(rate) => Self {
                read: Some(Arc::new(Mutex::new(TokenBucket::new(rate, burst)))),
                write: Some(Arc::new(Mutex::new(TokenBucket::new(rate, burst)))),
            },
        }
    }
}

/// One direction of a [`RateLimitedStream`].
#[derive(Default)]
struct Limiter {
    bucket: Option<SharedBucket>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Limiter {
    /// Ready when the bucket has credit; otherwise registers a timer.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(bucket) = &self.bucket else {
            return Poll::Ready(());
        };
        loop {
            if let Some(sleep) = &mut self.sleep {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            let delay = match bucket.lock() {
                Ok(mut bucket) => bucket.delay(Instant::now()),
                Err(_) => Duration::ZERO,
            };
            if delay.is_zero() {
                return Poll::Ready(());
            }
            self.sleep = Some(Box::pin(tokio::time::sleep(delay)));
        }
    }

    fn consume(&self, bytes: usize) {
        if let Some(bucket) = &self.bucket {
            if let Ok(mut bucket) = bucket.lock() {
                bucket.consume(bytes, Instant::now());
            }
        }
    }
}

/// A stream whose reads and writes are limited by token buckets.
pub struct RateLimitedStream<S> {
    inner: S,
    read: Limiter,
    write: Limiter,
}

impl<S> RateLimitedStream<S> {
    /// Wraps `inner`; directions without a bucket are not limited.
    pub fn new(inner: S, limits: &RateLimits) -> Self {
        Self {
            inner,
            read: Limiter {
                bucket: limits.read.clone(),
                sleep: None,
            },
            write: Limiter {
                bucket: limits.write.clone(),
                sleep: None,
            },
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RateLimitedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.poll_ready(cx).is_pending() {
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            this.read.consume(buf.filled().len() - before);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RateLimitedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write.poll_ready(cx).is_pending() {
            return Poll::Pending;
        }
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(written)) = &result {
            this.write.consume(*written);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn bucket_accounting() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, Some(500));
        bucket.updated = start;
        assert_eq!(bucket.delay(start), Duration::ZERO);
        bucket.consume(1500, start);
        // 1000 bytes of debt at 1000 bytes/s: about one second.
        let delay = bucket.delay(start);
        assert!(delay >= Duration::from_millis(1000) && delay < Duration::from_millis(1010));
        // Credit never exceeds the burst.
        let later = start + Duration::from_secs(100);
        assert_eq!(bucket.delay(later), Duration::ZERO);
        assert_eq!(bucket.tokens, 500.0);
    }

    #[tokio::test]
    async fn limits_write_throughput() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let limits = RateLimits::new(Some(100_000), Some(10_000));
        let mut limited = RateLimitedStream::new(client, &limits);
        let reader = tokio::spawn(async move {
            let mut data = Vec::new();
            server.read_to_end(&mut data).await.map(|_| data.len())
        });
        let start = Instant::now();
        let block = vec![0u8; 10_000];
        for _ in 0..4 {
            limited.write_all(&block).await.unwrap();
        }
        limited.shutdown().await.unwrap();
        drop(limited);
        assert_eq!(reader.await.unwrap().unwrap(), 40_000);
        // The burst covers the first write, the second one overdraws the bucket, and the
        // last two each wait for 10 000 bytes of debt at 100 000 bytes/s: ~0.2 s.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(180), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }
}
