//! `make bench`: end-to-end `proxmox-backup-client backup` and `restore` of a generated mixed
//! data set through TLS to the real daemons on loopback: MB/s, CPU seconds and peak RSS of
//! the client and of the proxy.
//!
//! The data set is the one `make bench-peers` uses (`benches/dataset`): ~2 GiB by default
//! (`BENCH_SIZE` scales it) of small files in a deep tree, log-like text, incompressible files
//! and a sparse image. Without `--bench` (as `cargo test --all-targets` runs it) a 16 MiB set
//! checks that the benchmark still works. The restore is compared with the source before its
//! figures are printed. MB/s are 10^6 bytes of source data per second.

#[path = "../tests/common/mod.rs"]
mod common;
mod dataset;
mod measure;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Target, TestServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const STORE: &str = "bench";
const USER: &str = "bench@pbs";
const PASSWORD: &str = "bench-password";

struct Measurement {
    seconds: f64,
    client_cpu: f64,
    client_peak_mib: f64,
    proxy_cpu: Option<f64>,
}

/// Runs one client command; its output goes to `log`.
fn run_step(
    server: &TestServer,
    mut command: Command,
    log: &Path,
) -> Result<Measurement, BoxError> {
    let proxy = server.child_pid(Target::Proxy);
    let proxy_before = measure::process_cpu(proxy);
    let usage = measure::run_measured(command.stdin(Stdio::null()), log)?;
    Ok(Measurement {
        seconds: usage.wall,
        client_cpu: usage.cpu,
        client_peak_mib: usage.peak_rss_kib as f64 / 1024.0,
        proxy_cpu: proxy_before
            .zip(measure::process_cpu(proxy))
            .map(|(a, b)| b - a),
    })
}

fn main() -> Result<(), BoxError> {
    let full = std::env::args().any(|a| a == "--bench");
    let size = if full {
        match std::env::var("BENCH_SIZE") {
            Ok(text) => dataset::parse_size(&text)?,
            Err(_) => dataset::DEFAULT_SIZE,
        }
    } else {
        16 << 20
    };
    let work = tempfile::Builder::new()
        .prefix("pbs-client-bench")
        .tempdir()?;
    let source = work.path().join("source");
    let size = dataset::generate(&source, size)?.bytes();

    let server = TestServer::start();
    let shm = tempfile::Builder::new()
        .prefix("pbs-client-bench")
        .tempdir_in("/dev/shm")?;
    let root = server.client("root@pam");
    common::create_datastore(&root, STORE, &shm.path().join("store"));
    common::create_user(&root, USER, Some(PASSWORD));
    common::grant(
        &root,
        &format!("/datastore/{STORE}"),
        "DatastoreAdmin",
        USER,
    );

    let home = common::ClientHome::new();
    let client = |args: &[&OsStr]| {
        let mut cmd = home.command(&server, PASSWORD);
        cmd.args(args)
            .env(
                "PBS_REPOSITORY",
                format!("{USER}@127.0.0.1:{}:{STORE}", server.proxy_addr.port()),
            )
            .stdin(Stdio::null());
        cmd
    };
    let mut spec = std::ffi::OsString::from("data.pxar:");
    spec.push(source.as_os_str());

    let log = work.path().join("client.log");
    let backup_args = [
        OsStr::new("backup"),
        &spec,
        OsStr::new("--backup-id"),
        OsStr::new("bench"),
    ];
    let backup = run_step(&server, client(&backup_args), &log)?;
    std::thread::sleep(Duration::from_secs(1));
    let incremental = run_step(&server, client(&backup_args), &log)?;
    let target = work.path().join("restored");
    let restore = run_step(
        &server,
        client(&[
            OsStr::new("restore"),
            OsStr::new("host/bench"),
            OsStr::new("data.pxar"),
            target.as_os_str(),
        ]),
        &log,
    )?;
    let proxy_peak =
        measure::process_peak_rss(server.child_pid(Target::Proxy)).map(|kib| kib as f64 / 1024.0);
    dataset::compare_trees(&source, &target)
        .map_err(|err| format!("restored tree differs from the source: {err:#}"))?;

    println!();
    println!(
        "client end-to-end, {:.0} MiB mixed data set, TLS on loopback (restore checked identical)",
        size as f64 / 1048576.0
    );
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
