//! `make bench`: end-to-end `proxmox-backup-client backup` and `restore` of a generated mixed
//! data set through TLS to the real daemons on loopback: MB/s, CPU seconds and peak RSS of
//! the client and of the proxy.
//!
//! The data set is ~2 GiB by default (`BENCH_SIZE` in MiB scales it): a third incompressible
//! data, a third compressible text, a third zeros, as files of mixed sizes. Without `--bench`
//! (as `cargo test --all-targets` runs it) a 16 MiB set checks that the benchmark still works.
//! MB/s are 10^6 bytes of source data per second.

#[path = "../tests/common/mod.rs"]
mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use common::{Target, TestServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const STORE: &str = "bench";
const USER: &str = "bench@pbs";
const PASSWORD: &str = "bench-password";

fn client_bin() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no target directory")?;
    let bin = dir.join("proxmox-backup-client");
    if !bin.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "-p",
            "proxmox-backup-client",
            "--bin",
            "proxmox-backup-client",
        ]);
        if dir.file_name() == Some(OsStr::new("release")) {
            build.arg("--release");
        }
        if !build.status()?.success() {
            return Err("building the client failed".into());
        }
    }
    Ok(bin)
}

fn xorshift_fill(out: &mut Vec<u8>, len: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let end = out.len() + len;
    while out.len() < end {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(end);
}

fn text_fill(out: &mut Vec<u8>, len: usize, seed: u64) {
    let words = [
        "backup",
        "chunk",
        "index",
        "archive",
        "restore",
        "datastore",
        "snapshot",
        "\n",
    ];
    let mut i = seed as usize;
    let end = out.len() + len;
    while out.len() < end {
        out.extend_from_slice(words[i % words.len()].as_bytes());
        out.push(b' ');
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    out.truncate(end);
}

/// Writes the data set; returns its size in bytes.
fn generate(root: &Path, total: u64) -> Result<u64, BoxError> {
    let sizes = [
        4 * 1024u64,
        64 * 1024,
        1024 * 1024,
        16 * 1024 * 1024,
        64 * 1024 * 1024,
    ];
    let mut written = 0u64;
    let mut n = 0u64;
    while written < total {
        let size = sizes[(n % sizes.len() as u64) as usize]
            .min(total - written)
            .max(1);
        let dir = root.join(format!("d{}", n % 16));
        std::fs::create_dir_all(&dir)?;
        let mut data = Vec::with_capacity(size as usize);
        match n % 3 {
            0 => xorshift_fill(&mut data, size as usize, n),
            1 => text_fill(&mut data, size as usize, n),
            _ => data.resize(size as usize, 0),
        }
        std::fs::write(dir.join(format!("f{n}")), &data)?;
        written += size;
        n += 1;
    }
    Ok(written)
}

fn rusage_children() -> libc::rusage {
    // SAFETY: getrusage fills the zeroed struct.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    }
}

fn cpu_secs(usage: &libc::rusage) -> f64 {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// utime + stime of a running process from `/proc/<pid>/stat`, in seconds.
fn proc_cpu_secs(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf without side effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

fn proc_status_mib(pid: i32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

struct Measurement {
    seconds: f64,
    client_cpu: f64,
    client_peak_mib: f64,
    proxy_cpu: Option<f64>,
}

fn run_measured(
    server: &TestServer,
    mut command: Command,
    what: &str,
) -> Result<Measurement, BoxError> {
    let proxy = server.child_pid(Target::Proxy);
    let proxy_before = proc_cpu_secs(proxy);
    let before = rusage_children();
    let start = Instant::now();
    let out = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let seconds = start.elapsed().as_secs_f64();
    let after = rusage_children();
    if !out.status.success() {
        return Err(format!("{what} failed:\n{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(Measurement {
        seconds,
        client_cpu: cpu_secs(&after) - cpu_secs(&before),
        // ru_maxrss of waited-for children is the largest of them: here the client.
        client_peak_mib: after.ru_maxrss as f64 / 1024.0,
        proxy_cpu: proxy_before.zip(proc_cpu_secs(proxy)).map(|(a, b)| b - a),
    })
}

fn main() -> Result<(), BoxError> {
    let full = std::env::args().any(|a| a == "--bench");
    let mib: u64 = if full {
        std::env::var("BENCH_SIZE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2048)
    } else {
        16
    };
    let bin = client_bin()?;
    let work = tempfile::Builder::new()
        .prefix("pbs-client-bench")
        .tempdir()?;
    let source = work.path().join("source");
    let size = generate(&source, mib * 1024 * 1024)?;

    let server = TestServer::start();
    let shm = tempfile::Builder::new()
        .prefix("pbs-client-bench")
        .tempdir_in("/dev/shm")?;
    let root = server.client("root@pam");
    let reply = root.post(
        Target::Proxy,
        "config/datastore",
        json!({"name": STORE, "path": shm.path().join("store")}),
    );
    let upid = reply.data().as_str().ok_or("no UPID")?.to_string();
    common::wait_task(&root, &upid);
    root.post(
        Target::Proxy,
        "access/users",
        json!({"userid": USER, "password": PASSWORD}),
    );
    root.put(
        Target::Proxy,
        "access/acl",
        json!({"path": format!("/datastore/{STORE}"), "role": "DatastoreAdmin", "auth-id": USER}),
    );

    let home = work.path().join("home");
    let client = |args: &[&OsStr]| {
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env("PBS_PASSWORD", PASSWORD)
            .env("PBS_FINGERPRINT", &server.fingerprint)
            .env(
                "PBS_REPOSITORY",
                format!("{USER}@127.0.0.1:{}:{STORE}", server.proxy_addr.port()),
            )
            .stdin(Stdio::null());
        cmd
    };
    let mut spec = std::ffi::OsString::from("data.pxar:");
    spec.push(source.as_os_str());

    let backup = run_measured(
        &server,
        client(&[
            OsStr::new("backup"),
            &spec,
            OsStr::new("--backup-id"),
            OsStr::new("bench"),
        ]),
        "backup",
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let incremental = run_measured(
        &server,
        client(&[
            OsStr::new("backup"),
            &spec,
            OsStr::new("--backup-id"),
            OsStr::new("bench"),
        ]),
        "incremental backup",
    )?;
    let target = work.path().join("restored");
    let restore = run_measured(
        &server,
        client(&[
            OsStr::new("restore"),
            OsStr::new("host/bench"),
            OsStr::new("data.pxar"),
            target.as_os_str(),
        ]),
        "restore",
    )?;
    let proxy_peak = proc_status_mib(server.child_pid(Target::Proxy), "VmHWM");

    println!();
    println!("client end-to-end, {:.0} MiB mixed data set (1/3 random, 1/3 text, 1/3 zeros), TLS on loopback", size as f64 / 1048576.0);
    println!();
    println!("| run                  |   MB/s | seconds | client CPU s | client peak RSS MiB | proxy CPU s |");
    println!("|----------------------|-------:|--------:|-------------:|--------------------:|------------:|");
    for (name, m) in [
        ("backup", &backup),
        ("backup (unchanged)", &incremental),
        ("restore", &restore),
    ] {
        println!(
            "| {name:<20} | {:>6.0} | {:>7.2} | {:>12.2} | {:>19.1} | {:>11} |",
            size as f64 / 1e6 / m.seconds.max(1e-9),
            m.seconds,
            m.client_cpu,
            m.client_peak_mib,
            m.proxy_cpu.map_or("n/a".to_string(), |c| format!("{c:.2}")),
        );
    }
    println!();
    match proxy_peak {
        Some(mib) => println!("proxy peak RSS (VmHWM): {mib:.1} MiB"),
        None => println!("proxy peak RSS (VmHWM): not available"),
    }
    Ok(())
}
