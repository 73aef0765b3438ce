//! `make bench`: `pxar create` / `pxar extract` against `tar -c` / `tar -x` of the same trees in
//! the same run: many small files and a few large ones.
//!
//! `PXAR_BENCH_FILES` sets the number of small files (default 100000), `PXAR_BENCH_LARGE_MB`
//! the total size of the large files (default 1024). MB/s are 10^6 bytes of file content per
//! second of wall time; each figure is the best of a few runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PXAR: &str = env!("CARGO_BIN_EXE_pxar");

/// Small files per directory.
const FILES_PER_DIR: usize = 1000;

struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// `count` files of 0..8 KiB (about 4 KiB on average) in directories of [`FILES_PER_DIR`];
/// returns the content bytes.
fn small_tree(root: &Path, count: usize) -> u64 {
    let mut rng = Xorshift(0x0123_4567_89ab_cdef);
    let mut buf = vec![0u8; 8192];
    let mut total = 0;
    for i in 0..count {
        let dir = root.join(format!("d{:04}", i / FILES_PER_DIR));
        if i % FILES_PER_DIR == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let len = (rng.next() % 8192) as usize;
        rng.fill(&mut buf[..len]);
        std::fs::write(dir.join(format!("file-{i:07}.dat")), &buf[..len]).unwrap();
        total += len as u64;
    }
    total
}

/// Four files sharing `total_mb` MiB of incompressible content.
fn large_tree(root: &Path, total_mb: u64) -> u64 {
    use std::io::Write;
    std::fs::create_dir_all(root).unwrap();
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; 1 << 20];
    let per_file = total_mb.div_ceil(4);
    for i in 0..4 {
        let mut file = std::fs::File::create(root.join(format!("large-{i}.bin"))).unwrap();
        for _ in 0..per_file {
            rng.fill(&mut buf);
            file.write_all(&buf).unwrap();
        }
    }
    4 * per_file * (1 << 20)
}

fn run(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn remove(path: &Path) {
    if path.is_dir() {
        std::fs::remove_dir_all(path).unwrap();
    } else if path.exists() {
        std::fs::remove_file(path).unwrap();
    }
}

/// One side of a comparison: how to clean up before a run, and the command to time.
struct Step<'a> {
    prepare: Box<dyn Fn() + 'a>,
    command: Box<dyn Fn() -> Command + 'a>,
}

/// Best wall times of `rounds` runs of `pxar` and `tar`, interleaved so that both see the
/// same background load (other processes' disk writes make single runs noisy).
fn best_pair(rounds: usize, pxar: Step<'_>, tar: Step<'_>) -> (Duration, Duration) {
    let mut best = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        for (step, slot) in [(&pxar, &mut best.0), (&tar, &mut best.1)] {
            (step.prepare)();
            // Flush dirty pages of the previous run so they do not land in this run's time.
            unsafe_sync();
            *slot = (*slot).min(run(&mut (step.command)()));
        }
    }
    best
}

fn unsafe_sync() {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
}

struct Case {
    name: String,
    bytes: u64,
    tree: PathBuf,
}

fn mbs(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

fn row(case: &Case, what: &str, pxar: Duration, tar: Duration) {
    println!(
        "| {} | {what} | {:.3} | {:.3} | {:.1} | {:.1} | {:.2} |",
        case.name,
        pxar.as_secs_f64(),
        tar.as_secs_f64(),
        mbs(case.bytes, pxar),
        mbs(case.bytes, tar),
        tar.as_secs_f64() / pxar.as_secs_f64(),
    );
}

fn bench_case(case: &Case, scratch: &Path, rounds: usize) {
    let pxar_archive = scratch.join("bench.pxar");
    let tar_archive = scratch.join("bench.tar");
    let pxar_out = scratch.join("pxar-out");
    let tar_out = scratch.join("tar-out");

    let (pxar_create, tar_create) = best_pair(
        rounds,
        Step {
            prepare: Box::new(|| remove(&pxar_archive)),
            command: Box::new(|| {
                let mut cmd = Command::new(PXAR);
                cmd.arg("create").arg(&pxar_archive).arg(&case.tree);
                cmd
            }),
        },
        Step {
            prepare: Box::new(|| remove(&tar_archive)),
            command: Box::new(|| {
                let mut cmd = Command::new("tar");
                cmd.arg("-cf")
                    .arg(&tar_archive)
                    .arg("-C")
                    .arg(&case.tree)
                    .arg(".");
                cmd
            }),
        },
    );
    row(case, "create", pxar_create, tar_create);

    let (pxar_extract, tar_extract) = best_pair(
        rounds,
        Step {
            prepare: Box::new(|| remove(&pxar_out)),
            command: Box::new(|| {
                let mut cmd = Command::new(PXAR);
                cmd.arg("extract").arg(&pxar_archive).arg(&pxar_out);
                cmd
            }),
        },
        Step {
            prepare: Box::new(|| {
                remove(&tar_out);
                std::fs::create_dir(&tar_out).unwrap();
            }),
            command: Box::new(|| {
                let mut cmd = Command::new("tar");
                cmd.arg("-xf").arg(&tar_archive).arg("-C").arg(&tar_out);
                cmd
            }),
        },
    );
    row(case, "extract", pxar_extract, tar_extract);

    // Both tools restored the same content.
    let listing = |root: &Path| {
        let mut out = Vec::new();
        for dir in std::fs::read_dir(root).unwrap() {
            let dir = dir.unwrap().path();
            if dir.is_dir() {
                for f in std::fs::read_dir(&dir).unwrap() {
                    let f = f.unwrap();
                    out.push((f.file_name(), f.metadata().unwrap().len()));
                }
            } else {
                out.push((
                    dir.file_name().unwrap().into(),
                    dir.metadata().unwrap().len(),
                ));
            }
        }
        out.sort();
        out
    };
    assert_eq!(listing(&pxar_out), listing(&tar_out), "{}", case.name);
    for path in [&pxar_archive, &tar_archive, &pxar_out, &tar_out] {
        remove(path);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and then tiny trees only check that every step still works.
    let full = std::env::args().any(|a| a == "--bench");
    let (files, large_mb, rounds) = if full {
        (
            env_number("PXAR_BENCH_FILES", 100_000) as usize,
            env_number("PXAR_BENCH_LARGE_MB", 1024),
            3,
        )
    } else {
        println!("smoke run on tiny trees; use `make bench` for figures");
        (300, 4, 1)
    };
    let scratch_parent = std::env::var_os("PXAR_BENCH_DIR").map(PathBuf::from);
    let scratch = match &scratch_parent {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("scratch directory for the benchmark");

    let small = Case {
        name: format!("{files} small files"),
        tree: scratch.path().join("small"),
        bytes: 0,
    };
    let small = Case {
        bytes: small_tree(&small.tree, files),
        ..small
    };
    let large = Case {
        name: format!("4 large files, {large_mb} MiB"),
        tree: scratch.path().join("large"),
        bytes: 0,
    };
    let large = Case {
        bytes: large_tree(&large.tree, large_mb),
        ..large
    };

    println!("| tree | step | pxar s | tar s | pxar MB/s | tar MB/s | pxar speed vs tar |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for case in [&small, &large] {
        bench_case(case, scratch.path(), rounds);
    }
}
