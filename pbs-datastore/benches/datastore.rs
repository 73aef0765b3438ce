//! `make bench`: datastore hot-path throughput, each figure printed beside a reference measured
//! on the same machine in the same run (`openssl speed`, `zstd -b1`).
//!
//! MB/s are 10^6 bytes per second, as `openssl speed` and `zstd -b` count them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pbs_datastore::chunk_store::{ChunkStore, DatastoreFSyncLevel};
use pbs_datastore::{Chunker, CryptConfig, DataBlob};

const CHUNK: usize = 4 * 1024 * 1024;
const MIN_BENCH_TIME: Duration = Duration::from_millis(1500);

/// The xorshift stream of the chunker spec: incompressible, deterministic.
fn xorshift_data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x0123_4567_89ab_cdef;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Log-like text: compresses about as well as real configuration and log files.
fn text_data(len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "backup",
        "chunk",
        "store",
        "error",
        "info",
        "warning",
        "datastore",
        "snapshot",
        "vm",
        "ct",
        "host",
        "index",
        "verify",
        "prune",
        "garbage",
        "collection",
        "started",
        "finished",
        "task",
        "OK",
        "upload",
        "size",
        "bytes",
        "root@pam",
        "2024-05-01T12:00:00Z",
        "pid",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 64);
    let mut line = 0u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        line += 1;
        out.extend_from_slice(format!("{line:08} {:016x} ", x >> 7).as_bytes());
        for i in 0..(4 + (x % 9) as usize) {
            out.extend_from_slice(WORDS[((x >> (i * 5)) % WORDS.len() as u64) as usize].as_bytes());
            out.push(b' ');
        }
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

/// Runs `f` (which processes `bytes_per_run` bytes) repeatedly and returns the best MB/s.
fn measure(bytes_per_run: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up: page faults, lazy allocations
    let full = std::env::args().any(|a| a == "--bench");
    let min_time = if full { MIN_BENCH_TIME } else { Duration::ZERO };
    let start = Instant::now();
    let mut best = f64::MAX;
    let mut runs = 0;
    while start.elapsed() < min_time || runs < 3 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    bytes_per_run as f64 / best / 1e6
}

/// `openssl speed -evp <alg>` on 4 MiB buffers, single core, in MB/s.
fn openssl_speed(alg: &str) -> Option<f64> {
    if !std::env::args().any(|a| a == "--bench") {
        return None;
    }
    let out = Command::new("openssl")
        .args([
            "speed", "-elapsed", "-seconds", "2", "-bytes", "4194304", "-evp", alg,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The result line spells the algorithm its own way (`sha256`, `AES-256-GCM`).
    let wanted = alg.to_ascii_lowercase();
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().to_ascii_lowercase().starts_with(&wanted))?;
    let last = line.split_whitespace().last()?;
    let kbytes: f64 = last.trim_end_matches('k').parse().ok()?;
    Some(kbytes * 1000.0 / 1e6)
}

/// `zstd -b1` on `data` cut into independent 4 MiB blocks (as chunks are): (compress, decompress).
fn zstd_bench(dir: &Path, data: &[u8]) -> Option<(f64, f64)> {
    if !std::env::args().any(|a| a == "--bench") {
        return None;
    }
    let path = dir.join("zstd-bench-input");
    std::fs::write(&path, data).ok()?;
    let out = Command::new("zstd")
        .args(["-b1", "-i3", "-B4194304"])
        .arg(&path)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    // The final report line looks like: " 1#file : 67108864 -> 2193 (x3.06), 512.3 MB/s, 1500.2 MB/s"
    let line = text.rsplit(['\r', '\n']).find(|l| l.contains("MB/s"))?;
    let speeds: Vec<f64> = line
        .split(',')
        .filter_map(|part| part.trim().strip_suffix("MB/s"))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    match speeds.as_slice() {
        [c, d] => Some((*c, *d)),
        _ => None,
    }
}

fn row(name: &str, mbs: f64, reference: &str) {
    println!("| {name:<44} | {mbs:>9.0} | {reference} |");
}

fn ratio(ours: f64, theirs: Option<f64>, label: &str) -> String {
    match theirs {
        Some(t) if t > 0.0 => format!("{label}: {t:.0} MB/s (ours = {:.0}%)", ours * 100.0 / t),
        _ => format!("{label}: not available"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and then a small data set only checks that every benchmark still runs.
    let full = std::env::args().any(|a| a == "--bench");
    let size = if full { 64 * 1024 * 1024 } else { 2 * CHUNK };
    if !full {
        println!("smoke run on {size} bytes; use `make bench` for figures");
    }
    let random = xorshift_data(size);
    let text = text_data(size);
    let scratch = tempfile::tempdir().expect("scratch directory for the benchmark");

    println!("| benchmark (single core) | MB/s | reference measured in this run |");
    println!("|---|---:|---|");

    let chunker_mbs = measure(random.len(), || {
        let mut chunker = Chunker::new(4 * 1024 * 1024);
        let mut rest = &random[..];
        let mut chunks = 0usize;
        loop {
            let k = chunker.scan(rest);
            if k == 0 {
                break;
            }
            chunks += 1;
            rest = &rest[k..];
        }
        std::hint::black_box(chunks);
    });
    row(
        "chunker (buzhash, avg 4 MiB)",
        chunker_mbs,
        "target >= 1200 MB/s",
    );

    let sha_mbs = measure(random.len(), || {
        for chunk in random.chunks(CHUNK) {
            std::hint::black_box(openssl::sha::sha256(chunk));
        }
    });
    row(
        "SHA-256 chunk digest",
        sha_mbs,
        &ratio(
            sha_mbs,
            openssl_speed("sha256"),
            "openssl speed -evp sha256",
        ),
    );

    let config = CryptConfig::new([7u8; 32]).expect("crypt config");
    let mut out = Vec::with_capacity(CHUNK + 64);
    let gcm_mbs = measure(random.len(), || {
        for chunk in random.chunks(CHUNK) {
            out.clear();
            std::hint::black_box(
                config
                    .encrypt_into(&[3u8; 16], chunk, &mut out)
                    .expect("encrypt"),
            );
        }
    });
    row(
        "AES-256-GCM encrypt (16-byte IV)",
        gcm_mbs,
        &ratio(
            gcm_mbs,
            openssl_speed("aes-256-gcm"),
            "openssl speed -evp aes-256-gcm",
        ),
    );

    let zstd_ref = zstd_bench(scratch.path(), &text);
    let encode_mbs = measure(text.len(), || {
        for chunk in text.chunks(CHUNK) {
            std::hint::black_box(DataBlob::encode(chunk, None, true).expect("encode"));
        }
    });
    row(
        "blob encode, zstd level 1 (log-like text)",
        encode_mbs,
        &ratio(
            encode_mbs,
            zstd_ref.map(|r| r.0),
            "zstd -b1 -B4MiB compress",
        ),
    );

    let encoded: Vec<DataBlob> = text
        .chunks(CHUNK)
        .map(|c| DataBlob::encode(c, None, true).expect("encode"))
        .collect();
    let decode_mbs = measure(text.len(), || {
        for blob in &encoded {
            std::hint::black_box(blob.decode(None, None).expect("decode"));
        }
    });
    row(
        "blob decode, zstd level 1 (log-like text)",
        decode_mbs,
        &ratio(
            decode_mbs,
            zstd_ref.map(|r| r.1),
            "zstd -b1 -B4MiB decompress",
        ),
    );

    let enc_mbs = measure(text.len(), || {
        for chunk in text.chunks(CHUNK) {
            std::hint::black_box(DataBlob::encode(chunk, Some(&config), true).expect("encode"));
        }
    });
    row(
        "blob encode, zstd 1 + AES-256-GCM (text)",
        enc_mbs,
        "compress + encrypt, no direct reference",
    );

    let encrypted: Vec<DataBlob> = text
        .chunks(CHUNK)
        .map(|c| DataBlob::encode(c, Some(&config), true).expect("encode"))
        .collect();
    let dec_mbs = measure(text.len(), || {
        for blob in &encrypted {
            std::hint::black_box(blob.decode(Some(&config), None).expect("decode"));
        }
    });
    row(
        "blob decode, AES-256-GCM + zstd 1 (text)",
        dec_mbs,
        "decrypt + decompress, no direct reference",
    );

    let raw_encoded: Vec<(DataBlob, [u8; 32])> = random
        .chunks(CHUNK)
        .map(|c| {
            (
                DataBlob::encode(c, None, true).expect("encode"),
                openssl::sha::sha256(c),
            )
        })
        .collect();
    for level in [DatastoreFSyncLevel::None, DatastoreFSyncLevel::File] {
        let dir = scratch.path().join(format!("store-{level:?}"));
        let store = ChunkStore::create("bench", &dir, level).expect("create chunk store");
        let mut round = 0u32;
        let insert_mbs = measure(random.len(), || {
            // Fresh chunk files every round: re-inserting would only measure the dedup path.
            if round > 0 {
                for (_, digest) in &raw_encoded {
                    let _ = std::fs::remove_file(store.chunk_path(digest));
                }
            }
            round += 1;
            for (blob, digest) in &raw_encoded {
                store
                    .insert_chunk(blob.raw_data(), digest)
                    .expect("insert chunk");
            }
        });
        row(
            &format!("chunk store insert, new chunks, sync-level {level:?}"),
            insert_mbs,
            "bounded by the disk",
        );
        let dedup_mbs = measure(random.len(), || {
            for (blob, digest) in &raw_encoded {
                store
                    .insert_chunk(blob.raw_data(), digest)
                    .expect("insert chunk");
            }
        });
        row(
            &format!("chunk store insert, duplicates, sync-level {level:?}"),
            dedup_mbs,
            "stat + atime touch only",
        );
    }
}
