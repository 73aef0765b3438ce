//! `make bench-peers`: the project side by side with restic, borg and rustic on the same data
//! set, on the same disk, in the same run, with the machine's ceilings measured beside them.
//!
//! For each tool: first backup, unchanged re-backup, re-backup after changing 5% of the files,
//! full restore (checked identical to the source before its time counts); wall time, MB/s
//! (10^6 bytes of file data per second), CPU seconds, peak RSS and repository size. The
//! project runs its real daemons on 127.0.0.1 over TLS, as users run it.
//!
//! Environment: `BENCH_SIZE` (default 2G; a plain number is MiB), `BENCH_DIR` (scratch directory, default
//! `<target>/bench/peers-work`), `BENCH_TOOLS_DIR` (where rustic was installed), `BENCH_KEEP=1`
//! keeps the scratch directory, `BENCH_PERF=<dir>` profiles the project client's steps,
//! `BENCH_TOOLS=project,restic` runs only the named tools.
//! Results: markdown on stdout, JSON in `<target>/bench/peers.json`.
//! Without `--bench` (as `cargo test --all-targets` runs it) only the data-set generator and the
//! tree check are exercised on a tiny tree.

#[path = "../tests/common/mod.rs"]
mod common;
mod dataset;
mod measure;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, format_err, Context, Result};
use serde_json::{json, Value};

use common::{Target, TestServer};
use dataset::DataSet;
use measure::{process_cpu, process_peak_rss, reset_peak_rss, run_measured, Usage};

const STORE: &str = "bench";
const USER: &str = "bench@pbs";
const PASSWORD: &str = "bench-password-1";
const PEER_PASSWORD: &str = "bench-repository-password";
/// Share of files changed before the third backup.
const CHANGE_PERCENT: u64 = 5;

/// The measured steps, in order.
const STEPS: [&str; 4] = [
    "first backup",
    "unchanged re-backup",
    "re-backup 5% changed",
    "restore",
];

/// One step of one tool.
#[derive(Clone, Debug, Default)]
struct StepResult {
    client: Usage,
    /// Server daemons (the project only): CPU seconds and the proxy's peak RSS.
    server: Option<Usage>,
    /// Why the step has no valid figure.
    failure: Option<String>,
}

impl StepResult {
    fn total_cpu(&self) -> f64 {
        self.client.cpu + self.server.map_or(0.0, |s| s.cpu)
    }
}

/// How one tool is driven.
enum Kind {
    Project {
        server: Box<TestServer>,
        home: PathBuf,
    },
    Restic,
    Borg {
        encryption: &'static str,
    },
    Rustic,
    /// Not installed or not usable: never run.
    Absent,
}

struct Tool {
    name: String,
    binary: PathBuf,
    kind: Kind,
    /// Private directory: repository, caches, restore target.
    dir: PathBuf,
    /// What the tool printed (kept after the run).
    log: PathBuf,
    version: String,
    steps: Vec<StepResult>,
    repo_after_first: Option<u64>,
    repo_after_all: Option<u64>,
    /// Why the tool was not measured at all.
    unavailable: Option<String>,
}

impl Tool {
    fn repo(&self) -> PathBuf {
        self.dir.join("repo")
    }

    fn log(&self) -> PathBuf {
        self.log.clone()
    }

    fn restore_dir(&self) -> PathBuf {
        self.dir.join("restore")
    }

    fn command(&self, work: &Path) -> Command {
        let mut cmd = Command::new(&self.binary);
        let home = self.dir.join("home");
        cmd.current_dir(work)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env("XDG_CONFIG_DIRS", home.join("etc-xdg"))
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        match &self.kind {
            Kind::Project { server, home, .. } => {
                cmd.env("HOME", home)
                    .env("XDG_CONFIG_HOME", home.join("config"))
                    .env("XDG_CACHE_HOME", home.join("cache"))
                    .env("PBS_PASSWORD", PASSWORD)
                    .env("PBS_FINGERPRINT", &server.fingerprint)
                    .env(
                        "PBS_REPOSITORY",
                        format!("{USER}@127.0.0.1:{}:{STORE}", server.proxy_addr.port()),
                    );
            }
            Kind::Restic => {
                cmd.env("RESTIC_REPOSITORY", self.repo())
                    .env("RESTIC_PASSWORD", PEER_PASSWORD)
                    .env("RESTIC_CACHE_DIR", home.join("cache/restic"));
            }
            Kind::Borg { .. } => {
                cmd.env("BORG_BASE_DIR", &home)
                    .env("BORG_PASSPHRASE", PEER_PASSWORD)
                    .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
                    .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes");
            }
            Kind::Rustic => {
                cmd.env("RUSTIC_REPOSITORY", self.repo())
                    .env("RUSTIC_PASSWORD", PEER_PASSWORD)
                    .env("RUSTIC_NO_PROGRESS", "true");
            }
            Kind::Absent => {}
        }
        cmd
    }

    /// Creates the repository (not measured).
    fn init(&mut self, work: &Path) -> Result<()> {
        fs::create_dir_all(self.dir.join("home"))?;
        let repo = self.repo();
        let mut cmd = self.command(work);
        match &self.kind {
            Kind::Project { server, .. } => {
                fs::create_dir_all(&repo)?;
                return setup_project_server(server, &repo);
            }
            Kind::Restic | Kind::Rustic => {
                cmd.arg("init");
            }
            Kind::Borg { encryption } => {
                cmd.args(["init", "-e", encryption]).arg(&repo);
            }
            Kind::Absent => bail!("{}: not available", self.name),
        }
        run_measured(&mut cmd, &self.log()).map(|_| ())
    }

    /// The backup command for backup number `n` (1-based) of `source` (relative to `work`).
    fn backup_command(&self, work: &Path, source: &str, n: usize) -> Command {
        let mut cmd = self.command(work);
        match &self.kind {
            Kind::Project { .. } => {
                cmd.arg("backup")
                    .arg(format!("root.pxar:{}", work.join(source).display()))
                    .args([
                        "--backup-id",
                        "bench",
                        "--change-detection-mode",
                        "metadata",
                    ]);
            }
            Kind::Restic | Kind::Rustic => {
                cmd.arg("backup").arg(work.join(source));
            }
            Kind::Borg { .. } => {
                cmd.arg("create")
                    .arg(format!("{}::backup-{n}", self.repo().display()))
                    .arg(source);
            }
            Kind::Absent => {}
        }
        cmd
    }

    /// The restore command of the last backup into `target` (which exists and is empty).
    fn restore_command(&self, work: &Path, target: &Path, last: usize) -> Command {
        let mut cmd = self.command(work);
        match &self.kind {
            Kind::Project { .. } => {
                cmd.args(["restore", "host/bench", "root.pxar"]).arg(target);
            }
            Kind::Restic => {
                cmd.args(["restore", "latest", "--target"]).arg(target);
            }
            Kind::Rustic => {
                cmd.args(["restore", "latest"]).arg(target);
            }
            Kind::Borg { .. } => {
                cmd.current_dir(target)
                    .arg("extract")
                    .arg(format!("{}::backup-{last}", self.repo().display()));
            }
            Kind::Absent => {}
        }
        cmd
    }

    /// Server daemons whose CPU time and memory count for the tool.
    fn server_pids(&self) -> Vec<i32> {
        match &self.kind {
            Kind::Project { server, .. } => vec![
                server.child_pid(Target::Proxy),
                server.child_pid(Target::Api),
            ],
            _ => Vec::new(),
        }
    }

    /// The repository whose size counts.
    fn repo_for_size(&self) -> PathBuf {
        self.repo()
    }
}

/// Creates the datastore, a user with a password and its permission on the datastore.
fn setup_project_server(server: &TestServer, store: &Path) -> Result<()> {
    let root = server.client("root@pam");
    let reply = root.post(
        Target::Proxy,
        "config/datastore",
        json!({"name": STORE, "path": store.join("store")}),
    );
    if !reply.status.is_success() {
        bail!("create datastore: {}", reply.body);
    }
    let upid = reply.json()["data"]
        .as_str()
        .ok_or_else(|| format_err!("create datastore: no task id in {}", reply.body))?
        .to_string();
    let status = common::wait_task(&root, &upid);
    if status["exitstatus"] != "OK" {
        bail!("create datastore: task ended with {status}");
    }
    let reply = root.post(
        Target::Proxy,
        "access/users",
        json!({"userid": USER, "password": PASSWORD}),
    );
    if !reply.status.is_success() {
        bail!("create user: {}", reply.body);
    }
    let reply = root.put(
        Target::Proxy,
        "access/acl",
        json!({"path": format!("/datastore/{STORE}"), "role": "DatastoreAdmin", "auth-id": USER}),
    );
    if !reply.status.is_success() {
        bail!("grant datastore access: {}", reply.body);
    }
    Ok(())
}

/// Runs one measured step, counting the tool's server daemons too.
fn measure_step(tool: &Tool, cmd: &mut Command) -> StepResult {
    let pids = tool.server_pids();
    for &pid in &pids {
        reset_peak_rss(pid);
    }
    let before: Vec<Option<f64>> = pids.iter().map(|&p| process_cpu(p)).collect();
    drop_dirty_pages();
    let usage = run_measured(cmd, &tool.log());
    let server = (!pids.is_empty()).then(|| {
        let cpu = pids
            .iter()
            .zip(&before)
            .filter_map(|(&p, b)| Some(process_cpu(p)? - (*b)?))
            .sum();
        Usage {
            wall: 0.0,
            cpu,
            peak_rss_kib: process_peak_rss(pids[0]).unwrap_or(0),
        }
    });
    match usage {
        Ok(client) => StepResult {
            client,
            server,
            failure: None,
        },
        Err(err) => StepResult {
            failure: Some(format!("{err:#}")),
            ..Default::default()
        },
    }
}

/// With `BENCH_PERF=<dir>`, wraps the project client in `perf record -g` writing
/// `<dir>/project-<step>.perf`, to find the stage that bounds a missed target. The figures of
/// such a run include the profiler's overhead.
fn profiled(tool: &Tool, cmd: Command, step: usize) -> Command {
    let Some(dir) = std::env::var_os("BENCH_PERF") else {
        return cmd;
    };
    if !matches!(tool.kind, Kind::Project { .. }) {
        return cmd;
    }
    let output = PathBuf::from(dir).join(format!("project-{step}.perf"));
    let mut perf = Command::new("perf");
    perf.args(["record", "-F", "499", "-g", "-o"])
        .arg(output)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .stdin(Stdio::null());
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            perf.env(key, value);
        }
    }
    if let Some(cwd) = cmd.get_current_dir() {
        perf.current_dir(cwd);
    }
    perf
}

/// Writes back dirty pages so one tool's writes are not paid for by the next one.
fn drop_dirty_pages() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

/// Where restic, borg and rustic put the restored tree inside the restore target.
fn restored_root(target: &Path, work: &Path, source: &str, marker: &Path) -> Option<PathBuf> {
    let absolute = work.join(source);
    let relative = absolute.strip_prefix("/").unwrap_or(&absolute);
    [
        target.join(relative),
        target.join(source),
        target.to_path_buf(),
    ]
    .into_iter()
    .find(|candidate| candidate.join(marker).exists())
}

fn tool_version(binary: &Path, arg: &str) -> String {
    Command::new(binary)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

fn find_in_path(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    extra
        .iter()
        .cloned()
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The target directory (`<target>/<profile>/deps/<bench>` → `<target>`), and the profile dir.
fn target_dirs() -> Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().context("benchmark executable path")?;
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format_err!("{exe:?}: not inside a target directory"))?;
    let target = profile
        .parent()
        .ok_or_else(|| format_err!("{exe:?}: not inside a target directory"))?;
    Ok((target.to_path_buf(), profile.to_path_buf()))
}

/// Whether the project client can back up yet (the command exists).
fn project_client_ready(client: &Path) -> Result<(), String> {
    if !client.is_file() {
        return Err(format!("{} not built", client.display()));
    }
    let out = Command::new(client)
        .args(["help", "backup"])
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("{}: {err}", client.display()))?;
    if !out.status.success() {
        return Err("project client not available yet (no `backup` command)".to_string());
    }
    let out = Command::new(client)
        .args(["help", "restore"])
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("{}: {err}", client.display()))?;
    if !out.status.success() {
        return Err("project client not available yet (no `restore` command)".to_string());
    }
    Ok(())
}

fn make_tools(scratch: &Path, logs: &Path, profile_dir: &Path, tools_dir: &Path) -> Vec<Tool> {
    let mut tools = Vec::new();
    let new_tool = |name: &str, binary: Option<PathBuf>, kind: Kind, version_arg: &str| {
        let version = binary
            .as_deref()
            .map(|b| tool_version(b, version_arg))
            .unwrap_or_default();
        Tool {
            name: name.to_string(),
            unavailable: binary
                .is_none()
                .then(|| format!("{name} not installed (see scripts/install-bench-peers.sh)")),
            binary: binary.unwrap_or_default(),
            kind,
            dir: scratch.join(name),
            log: logs.join(format!("{name}.log")),
            version,
            steps: Vec::new(),
            repo_after_first: None,
            repo_after_all: None,
        }
    };

    let client = profile_dir.join("proxmox-backup-client");
    match project_client_ready(&client) {
        Ok(()) => {
            let server = Box::new(TestServer::start());
            let home = scratch.join("project/home");
            let mut tool = new_tool(
                "project",
                Some(client),
                Kind::Project { server, home },
                "version",
            );
            tool.version = format!("proxmox-backup {}", env!("CARGO_PKG_VERSION"));
            tools.push(tool);
        }
        Err(reason) => {
            let mut tool = new_tool("project", None, Kind::Absent, "");
            tool.unavailable = Some(reason);
            tools.push(tool);
        }
    }
    let extra = [tools_dir.join("bin")];
    let restic = find_in_path("restic", &extra);
    tools.push(new_tool("restic", restic, Kind::Restic, "version"));
    let borg = find_in_path("borg", &extra);
    tools.push(new_tool(
        "borg-none",
        borg.clone(),
        Kind::Borg { encryption: "none" },
        "--version",
    ));
    tools.push(new_tool(
        "borg-repokey",
        borg,
        Kind::Borg {
            encryption: "repokey",
        },
        "--version",
    ));
    let rustic = find_in_path("rustic", &extra);
    tools.push(new_tool("rustic", rustic, Kind::Rustic, "--version"));
    tools
}

/// Keeps only the tools named in `BENCH_TOOLS` (comma-separated, e.g. `project,restic`), for
/// quicker runs while working on one figure; all tools when it is unset or empty.
fn select_tools(tools: Vec<Tool>) -> Result<Vec<Tool>> {
    let Ok(list) = std::env::var("BENCH_TOOLS") else {
        return Ok(tools);
    };
    let wanted: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(tools);
    }
    if let Some(unknown) = wanted
        .iter()
        .find(|name| !tools.iter().any(|t| t.name == **name))
    {
        bail!("BENCH_TOOLS: unknown tool {unknown:?} (project, restic, borg-none, borg-repokey, rustic)");
    }
    Ok(tools
        .into_iter()
        .filter(|t| wanted.contains(&t.name.as_str()))
        .collect())
}

/// The machine's ceilings, measured in the same run.
fn ceilings(scratch: &Path, size: u64) -> Value {
    json!({
        "openssl_sha256_MBps": openssl_speed("sha256"),
        "openssl_aes_256_gcm_MBps": openssl_speed("aes-256-gcm"),
        "zstd_b1": zstd_bench(),
        "dd_fdatasync_write_MBps": dd_write(scratch, size),
    })
}

/// `openssl speed -evp <alg>` on 1 MiB buffers, one core, in MB/s.
fn openssl_speed(alg: &str) -> Option<f64> {
    let out = Command::new("openssl")
        .args([
            "speed", "-elapsed", "-seconds", "2", "-bytes", "1048576", "-evp", alg,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let wanted = alg.to_ascii_lowercase();
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().to_ascii_lowercase().starts_with(&wanted))?;
    let last = line.split_whitespace().last()?;
    let kbytes: f64 = last.trim_end_matches('k').parse().ok()?;
    Some(kbytes * 1000.0 / 1e6)
}

/// `zstd -b1`: compression and decompression MB/s of zstd's synthetic sample, one core.
fn zstd_bench() -> Option<Value> {
    let out = Command::new("zstd").args(["-b1", "-i3"]).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // The result line ends like: `-> 3155360 (x3.169), 435.7 MB/s, 1375.1 MB/s`; progress
    // updates share the line through carriage returns.
    let line = text
        .split(['\n', '\r'])
        .rev()
        .find(|l| l.matches("MB/s").count() >= 2)?;
    let speeds: Vec<f64> = line
        .split(',')
        .filter_map(|part| part.trim().strip_suffix("MB/s")?.trim().parse().ok())
        .collect();
    let ratio: Option<f64> = line
        .split("(x")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|r| r.parse().ok());
    Some(json!({
        "ratio": ratio,
        "compress_MBps": speeds.first(),
        "decompress_MBps": speeds.get(1),
    }))
}

/// `dd if=/dev/zero bs=1M conv=fdatasync` into the scratch directory, in MB/s.
fn dd_write(scratch: &Path, size: u64) -> Option<f64> {
    let file = scratch.join("dd-test.tmp");
    let mib = (size >> 20).clamp(64, 1024);
    let start = Instant::now();
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=1M", &format!("count={mib}"), "conv=fdatasync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    let seconds = start.elapsed().as_secs_f64();
    let _ = fs::remove_file(&file);
    status.success().then(|| (mib << 20) as f64 / seconds / 1e6)
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn fmt_opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// A step's figure as "faster by" ratio: peer time / project time (> 1: the project is faster).
fn speed_ratio(project: &StepResult, peer: &StepResult) -> Option<f64> {
    if project.failure.is_some() || peer.failure.is_some() || project.client.wall <= 0.0 {
        return None;
    }
    Some(peer.client.wall / project.client.wall)
}

/// Target ratio per step (project/best peer), from the issue: speed ≥, repository size ≤.
const TARGETS: [(&str, f64); 4] = [
    ("first backup", 1.2),
    ("unchanged re-backup", 1.0),
    ("re-backup 5% changed", 0.0),
    ("restore", 1.5),
];
const REPO_SIZE_TARGET: f64 = 1.05;

fn report(tools: &[Tool], set: &DataSet, ceilings: &Value, loads: (&str, &str)) -> Value {
    let bytes = set.bytes();
    println!();
    println!(
        "## Peer benchmark: {:.0} MiB in {} files ({} small), load average {} at start, {} at end",
        mib(bytes),
        set.files.len(),
        set.count(dataset::Kind::Small).0,
        loads.0,
        loads.1
    );
    println!();
    println!("| tool | step | wall s | MB/s | CPU s | peak RSS MiB | server CPU s | server peak RSS MiB |");
    println!("|------|------|-------:|-----:|------:|-------------:|-------------:|--------------------:|");
    let mut tools_json = Vec::new();
    for tool in tools {
        if let Some(reason) = &tool.unavailable {
            println!("| {} | — | {reason} | | | | | |", tool.name);
            tools_json.push(json!({"name": tool.name, "unavailable": reason}));
            continue;
        }
        let mut steps_json = Vec::new();
        for (step, result) in STEPS.iter().zip(&tool.steps) {
            if let Some(failure) = &result.failure {
                let first = failure.lines().next().unwrap_or("");
                println!("| {} | {step} | failed: {first} | | | | | |", tool.name);
                steps_json.push(json!({"step": step, "failure": failure}));
                continue;
            }
            let u = result.client;
            let (scpu, srss) = match result.server {
                Some(s) => (
                    format!("{:.1}", s.cpu),
                    format!("{:.0}", s.peak_rss_kib as f64 / 1024.0),
                ),
                None => ("—".to_string(), "—".to_string()),
            };
            println!(
                "| {} | {step} | {:.1} | {:.0} | {:.1} | {:.0} | {scpu} | {srss} |",
                tool.name,
                u.wall,
                bytes as f64 / u.wall / 1e6,
                u.cpu,
                u.peak_rss_kib as f64 / 1024.0
            );
            steps_json.push(json!({
                "step": step,
                "wall_s": u.wall,
                "MBps": bytes as f64 / u.wall / 1e6,
                "cpu_s": u.cpu,
                "peak_rss_kib": u.peak_rss_kib,
                "server_cpu_s": result.server.map(|s| s.cpu),
                "server_peak_rss_kib": result.server.map(|s| s.peak_rss_kib),
                "total_cpu_s": result.total_cpu(),
            }));
        }
        tools_json.push(json!({
            "name": tool.name,
            "version": tool.version,
            "steps": steps_json,
            "repo_bytes_after_first": tool.repo_after_first,
            "repo_bytes_after_all": tool.repo_after_all,
        }));
    }

    println!();
    println!("| tool | version | repository MiB after first backup | after all three backups |");
    println!("|------|---------|----------------------------------:|------------------------:|");
    for tool in tools.iter().filter(|t| t.unavailable.is_none()) {
        println!(
            "| {} | {} | {} | {} |",
            tool.name,
            tool.version,
            fmt_opt(tool.repo_after_first.map(mib), 1),
            fmt_opt(tool.repo_after_all.map(mib), 1)
        );
    }

    let project = tools.iter().find(|t| t.name == "project");
    let peers: Vec<&Tool> = tools
        .iter()
        .filter(|t| t.name != "project" && t.unavailable.is_none())
        .collect();
    let mut ratios_json = Vec::new();
    println!();
    match project {
        Some(p) if p.unavailable.is_none() => {
            print!("| ratio project/peer | ");
            for peer in &peers {
                print!("{} | ", peer.name);
            }
            println!("best peer | target | met |");
            println!("|---{}|---|---|---|", "|---".repeat(peers.len()));
            for (i, (step, target)) in TARGETS.iter().enumerate() {
                let ratios: Vec<Option<f64>> = peers
                    .iter()
                    .map(|peer| speed_ratio(p.steps.get(i)?, peer.steps.get(i)?))
                    .collect();
                let best = ratios.iter().flatten().copied().reduce(f64::min);
                print!("| {step} (speed) | ");
                for r in &ratios {
                    print!("{} | ", fmt_opt(*r, 2));
                }
                let (target_text, met) = if *target > 0.0 {
                    (format!("≥ {target:.1}"), best.map(|b| b >= *target))
                } else {
                    ("—".to_string(), None)
                };
                println!(
                    "{} | {target_text} | {} |",
                    fmt_opt(best, 2),
                    met.map_or("—", |m| if m { "yes" } else { "no" })
                );
                ratios_json.push(json!({
                    "step": step, "kind": "speed (peer wall / project wall)",
                    "per_peer": peers
                        .iter()
                        .map(|t| t.name.clone())
                        .zip(ratios.iter().map(|r| json!(r)))
                        .collect::<serde_json::Map<_, _>>(),
                    "best_peer": best, "target": (*target > 0.0).then_some(*target), "met": met,
                }));
            }
            let sizes: Vec<Option<f64>> = peers
                .iter()
                .map(|peer| Some(p.repo_after_all? as f64 / peer.repo_after_all? as f64))
                .collect();
            let best = sizes.iter().flatten().copied().reduce(f64::max);
            print!("| repository size (project/peer) | ");
            for r in &sizes {
                print!("{} | ", fmt_opt(*r, 2));
            }
            let met = best.map(|b| b <= REPO_SIZE_TARGET);
            println!(
                "{} | ≤ {REPO_SIZE_TARGET} | {} |",
                fmt_opt(best, 2),
                met.map_or("—", |m| if m { "yes" } else { "no" })
            );
            ratios_json.push(json!({
                "step": "repository size", "kind": "project bytes / peer bytes",
                "per_peer": peers.iter().map(|t| t.name.clone()).zip(sizes.into_iter().map(|v| json!(v))).collect::<serde_json::Map<_, _>>(),
                "best_peer": best, "target": REPO_SIZE_TARGET, "met": met,
            }));
        }
        _ => println!("ratios: project client not available yet: no project figures in this run"),
    }

    println!();
    println!("| ceiling (same run) | MB/s |");
    println!("|--------------------|-----:|");
    println!(
        "| openssl speed -evp sha256 (1 core) | {} |",
        fmt_opt(ceilings["openssl_sha256_MBps"].as_f64(), 0)
    );
    println!(
        "| openssl speed -evp aes-256-gcm (1 core) | {} |",
        fmt_opt(ceilings["openssl_aes_256_gcm_MBps"].as_f64(), 0)
    );
    println!(
        "| zstd -b1 compress / decompress (1 core, ratio {}) | {} / {} |",
        fmt_opt(ceilings["zstd_b1"]["ratio"].as_f64(), 2),
        fmt_opt(ceilings["zstd_b1"]["compress_MBps"].as_f64(), 0),
        fmt_opt(ceilings["zstd_b1"]["decompress_MBps"].as_f64(), 0)
    );
    println!(
        "| dd bs=1M conv=fdatasync write, same disk | {} |",
        fmt_opt(ceilings["dd_fdatasync_write_MBps"].as_f64(), 0)
    );
    if loads
        .0
        .split_whitespace()
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        .unwrap_or(0.0)
        >= 2.0
    {
        println!();
        println!("warning: load average ≥ 2 at start: the machine was busy, figures are noise");
    }

    let (small_files, small_bytes) = set.count(dataset::Kind::Small);
    let (text_files, text_bytes) = set.count(dataset::Kind::Text);
    let (random_files, random_bytes) = set.count(dataset::Kind::Random);
    let (_, image_bytes) = set.count(dataset::Kind::Image);
    json!({
        "dataset": {
            "bytes": bytes,
            "files": set.files.len(),
            "dirs": set.dirs,
            "symlinks": set.symlinks,
            "small": {"files": small_files, "bytes": small_bytes},
            "text": {"files": text_files, "bytes": text_bytes},
            "random": {"files": random_files, "bytes": random_bytes},
            "sparse_image_apparent_bytes": image_bytes,
            "changed_percent": CHANGE_PERCENT,
        },
        "load_average": {"start": loads.0, "end": loads.1},
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "tools": tools_json,
        "ratios": ratios_json,
        "ceilings": ceilings,
    })
}

/// Runs every step of every available tool, interleaved so all see the same data.
fn run_all(tools: &mut [Tool], set: &DataSet, work: &Path, source: &str) -> Result<()> {
    for tool in tools.iter_mut().filter(|t| t.unavailable.is_none()) {
        eprintln!("{}: init ({})", tool.name, tool.version);
        if let Err(err) = tool.init(work) {
            tool.unavailable = Some(format!("init failed: {err:#}"));
        }
    }
    for n in 1..=3 {
        if n == 3 {
            let (files, written) = dataset::change_files(set, CHANGE_PERCENT)?;
            eprintln!("changed {files} files ({written} bytes)");
        }
        for tool in tools.iter_mut().filter(|t| t.unavailable.is_none()) {
            eprintln!("{}: {}", tool.name, STEPS[n - 1]);
            let mut cmd = profiled(tool, tool.backup_command(work, source, n), n);
            let result = measure_step(tool, &mut cmd);
            if let Some(failure) = &result.failure {
                eprintln!("{}: {failure}", tool.name);
            }
            tool.steps.push(result);
            let size = dataset::allocated_bytes(&tool.repo_for_size()).ok();
            if n == 1 {
                tool.repo_after_first = size;
            }
            tool.repo_after_all = size;
        }
    }
    let marker = set
        .files
        .first()
        .map(|f| f.path.clone())
        .ok_or_else(|| format_err!("empty data set"))?;
    for tool in tools.iter_mut().filter(|t| t.unavailable.is_none()) {
        eprintln!("{}: restore", tool.name);
        let target = tool.restore_dir();
        fs::create_dir_all(&target)?;
        let mut cmd = profiled(tool, tool.restore_command(work, &target, 3), 4);
        let mut result = measure_step(tool, &mut cmd);
        if result.failure.is_none() {
            let checked = match restored_root(&target, work, source, &marker) {
                Some(root) => dataset::compare_trees(&set.root, &root),
                None => Err(format_err!("restored tree not found in {target:?}")),
            };
            if let Err(err) = checked {
                result.failure = Some(format!("restore differs from the source: {err:#}"));
            }
        }
        if let Some(failure) = &result.failure {
            eprintln!("{}: {failure}", tool.name);
        }
        tool.steps.push(result);
        let _ = fs::remove_dir_all(&target);
    }
    Ok(())
}

/// The smoke run of `cargo test`: a tiny data set, its copy by a plain tree copy, the check
/// passing on the copy and failing after the 5% change.
fn smoke(scratch: &Path) -> Result<()> {
    let source = scratch.join("src");
    let set = dataset::generate(&source, 4 << 20)?;
    let copy = scratch.join("copy");
    let status = Command::new("cp")
        .args(["-a", "--sparse=always"])
        .arg(&source)
        .arg(&copy)
        .status()?;
    if !status.success() {
        bail!("cp -a failed");
    }
    let summary = dataset::compare_trees(&source, &copy)?;
    if summary.files as usize != set.files.len() || summary.bytes != set.bytes() {
        bail!(
            "tree check saw {summary:?}, generated {} files",
            set.files.len()
        );
    }
    let again = dataset::generate(&scratch.join("again"), 4 << 20)?;
    dataset::compare_trees(&source, &again.root).context("generator is not deterministic")?;
    let (changed, _) = dataset::change_files(&set, CHANGE_PERCENT)?;
    if changed * 100 / set.files.len() != CHANGE_PERCENT as usize {
        bail!("changed {changed} of {} files", set.files.len());
    }
    if dataset::compare_trees(&source, &copy).is_ok() {
        bail!("tree check missed the changed files");
    }
    for (text, bytes) in [
        ("2G", 2u64 << 30),
        ("256", 256 << 20),
        ("1.5M", 3 << 19),
        ("64k", 64 << 10),
    ] {
        if dataset::parse_size(text)? != bytes {
            bail!("BENCH_SIZE {text:?} not read as {bytes} bytes");
        }
    }
    if dataset::parse_size("-1").is_ok() || dataset::parse_size("lots").is_ok() {
        bail!("BENCH_SIZE: invalid sizes accepted");
    }
    println!(
        "peers smoke run: {} files, {} dirs, {} symlinks, {} bytes; `make bench-peers` runs the comparison",
        set.files.len(),
        set.dirs,
        set.symlinks,
        set.bytes()
    );
    Ok(())
}

fn main() -> Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let (target, profile_dir) = target_dirs()?;
    let bench_dir = target.join("bench");
    fs::create_dir_all(&bench_dir)?;
    if !full {
        let scratch = tempfile::Builder::new()
            .prefix("peers-smoke")
            .tempdir_in(&bench_dir)?;
        return smoke(scratch.path());
    }

    let size = match std::env::var("BENCH_SIZE") {
        Ok(text) if !text.is_empty() => dataset::parse_size(&text)?,
        _ => dataset::DEFAULT_SIZE,
    };
    let scratch = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| bench_dir.join("peers-work"));
    if scratch.exists() {
        fs::remove_dir_all(&scratch).with_context(|| format!("{scratch:?}: remove old run"))?;
    }
    fs::create_dir_all(&scratch)?;
    let scratch = scratch.canonicalize()?;
    let tools_dir = std::env::var_os("BENCH_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| bench_dir.join("tools"));
    let load_start = load_average();

    eprintln!("measuring ceilings");
    let ceilings = ceilings(&scratch, size);
    eprintln!("generating {} MiB data set in {scratch:?}", size >> 20);
    let started = Instant::now();
    let source = "src";
    let set = dataset::generate(&scratch.join(source), size)?;
    eprintln!(
        "generated {} files, {:.0} MiB in {:.1} s",
        set.files.len(),
        mib(set.bytes()),
        started.elapsed().as_secs_f64()
    );

    let logs = bench_dir.join("peers-logs");
    if logs.exists() {
        fs::remove_dir_all(&logs).with_context(|| format!("{logs:?}: remove old logs"))?;
    }
    fs::create_dir_all(&logs)?;
    let mut tools = select_tools(make_tools(&scratch, &logs, &profile_dir, &tools_dir))?;
    run_all(&mut tools, &set, &scratch, source)?;
    let load_end = load_average();
    let result = report(&tools, &set, &ceilings, (&load_start, &load_end));
    let json_path = bench_dir.join("peers.json");
    fs::write(&json_path, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("{json_path:?}: write"))?;
    println!();
    println!("JSON: {}", json_path.display());
    drop(tools);
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = fs::remove_dir_all(&scratch);
    }
    Ok(())
}
