//! TLS upload benchmark: pipelined `speedtest` POSTs of 4 MiB for a fixed time.

use std::time::{Duration, Instant};

use anyhow::Error;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};

use crate::h2::H2Client;

/// Body size of one speedtest request.
pub const SPEEDTEST_BODY_SIZE: usize = 4 * 1024 * 1024;

/// How long the benchmark uploads.
pub const SPEEDTEST_DURATION: Duration = Duration::from_secs(5);

/// Requests in flight at once.
const SPEEDTEST_PIPELINE: usize = 8;

/// Outcome of the upload benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeedtestResult {
    /// Requests counted: one more than were sent, as the reference client counts.
    pub chunks: u64,
    /// Time from the first request until all answers arrived.
    pub elapsed: Duration,
    /// `chunks * 4 MiB / elapsed` in bytes per second.
    pub speed: f64,
}

impl SpeedtestResult {
    /// The three log lines of the benchmark command.
    pub fn log_lines(&self) -> [String; 3] {
        let micros = self.elapsed.as_micros() as u64 / self.chunks.max(1);
        [
            format!(
                "Uploaded {} chunks in {} seconds.",
                self.chunks,
                self.elapsed.as_secs()
            ),
            format!("Time per request: {micros} microseconds."),
            format!("TLS speed: {:.2} MB/s", self.speed / 1_000_000.0),
        ]
    }
}

/// The speedtest body: the little-endian bytes of a counter 0, 1, 2, ...
pub fn speedtest_body() -> Bytes {
    let mut body = Vec::with_capacity(SPEEDTEST_BODY_SIZE);
    for i in 0..(SPEEDTEST_BODY_SIZE / 4) as u32 {
        body.extend_from_slice(&i.to_le_bytes());
    }
    Bytes::from(body)
}

/// Uploads for `duration`, keeping a few requests in flight.
pub(super) async fn run(h2: &H2Client, duration: Duration) -> Result<SpeedtestResult, Error> {
    let body = speedtest_body();
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut chunks = 0u64;
    loop {
        // Counted before the time check, so the total is one more than the requests sent.
        chunks += 1;
        if start.elapsed() > duration {
            break;
        }
        if in_flight.len() >= SPEEDTEST_PIPELINE {
            if let Some(result) = in_flight.next().await {
                result?;
            }
        }
        let h2 = h2.clone();
        let body = body.clone();
        in_flight.push(async move {
            h2.upload("POST", "speedtest", None, "application/octet-stream", body)
                .await
                .map(drop)
        });
    }
    while let Some(result) = in_flight.next().await {
        result?;
    }
    let elapsed = start.elapsed();
    let speed = (chunks as f64 * SPEEDTEST_BODY_SIZE as f64) / elapsed.as_secs_f64();
    Ok(SpeedtestResult {
        chunks,
        elapsed,
        speed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_a_little_endian_counter() {
        let body = speedtest_body();
        assert_eq!(body.len(), SPEEDTEST_BODY_SIZE);
        assert_eq!(&body[..8], &[0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            &body[4 * 0x0002_0304..4 * 0x0002_0304 + 4],
            &[4, 3, 2, 0][..]
        );
        assert_eq!(&body[body.len() - 4..], &0x000f_ffffu32.to_le_bytes());
    }

    #[test]
    fn log_lines_match_the_reference_format() {
        let result = SpeedtestResult {
            chunks: 301,
            elapsed: Duration::from_millis(5_004),
            speed: 301.0 * 4.0 * 1024.0 * 1024.0 / 5.004,
        };
        let [a, b, c] = result.log_lines();
        assert_eq!(a, "Uploaded 301 chunks in 5 seconds.");
        assert_eq!(b, "Time per request: 16624 microseconds.");
        assert_eq!(c, "TLS speed: 252.30 MB/s");
    }
}
