//! `GET|POST /api2/json/nodes/{node}/status`: host resource usage and power management.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, format_err, Context, Error};
use http::Method;
use serde_json::{json, Value};

use pbs_config::privileges::{PRIV_SYS_AUDIT, PRIV_SYS_POWER_MANAGEMENT};
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{
    ApiMethod, HttpError, ObjectSchema, ParamSchema, Permission, Router, StringFormat,
};

use super::status::fs_usage;

/// EFI variable telling whether secure boot is on (4 attribute bytes, then the value).
const SECURE_BOOT_VAR: &str =
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// CPU samples closer together than this reuse the previous result.
const CPU_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Memory figures in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub memtotal: u64,
    /// `MemFree + Buffers + Cached`.
    pub memfree: u64,
    /// `SwapTotal`.
    pub swaptotal: u64,
    /// `SwapFree`.
    pub swapfree: u64,
}

/// Parses `/proc/meminfo` text (values in kB).
pub fn parse_meminfo(text: &str) -> Result<MemInfo, Error> {
    let mut info = MemInfo::default();
    let (mut total, mut free, mut buffers, mut cached) = (None, None, None, None);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let Some(number) = fields.next() else {
            continue;
        };
        let kib: u64 = number
            .parse()
            .map_err(|_| format_err!("meminfo: bad value for {key}: '{number}'"))?;
        let bytes = kib.saturating_mul(1024);
        match key {
            "MemTotal" => total = Some(bytes),
            "MemFree" => free = Some(bytes),
            "Buffers" => buffers = Some(bytes),
            "Cached" => cached = Some(bytes),
            "SwapTotal" => info.swaptotal = bytes,
            "SwapFree" => info.swapfree = bytes,
            _ => {}
        }
    }
    info.memtotal = total.ok_or_else(|| format_err!("meminfo: MemTotal missing"))?;
    info.memfree = free
        .ok_or_else(|| format_err!("meminfo: MemFree missing"))?
        .saturating_add(buffers.unwrap_or(0))
        .saturating_add(cached.unwrap_or(0));
    Ok(info)
}

/// Cumulative CPU times from the `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Sum of all fields.
    pub total: u64,
    /// `idle` + `iowait`.
    pub idle: u64,
    /// `iowait`.
    pub iowait: u64,
}

/// Parses the aggregate `cpu` line of `/proc/stat` text.
pub fn parse_proc_stat(text: &str) -> Result<CpuTimes, Error> {
    let line = text
        .lines()
        .find(|line| line.split_whitespace().next() == Some("cpu"))
        .ok_or_else(|| format_err!("/proc/stat: no 'cpu' line"))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|err| format_err!("/proc/stat: bad cpu line '{line}' - {err}"))?;
    if values.len() < 5 {
        bail!("/proc/stat: cpu line has only {} fields", values.len());
    }
    // guest and guest_nice are already contained in user and nice.
    let counted = values.len().min(8);
    let total = values[..counted].iter().sum();
    Ok(CpuTimes {
        total,
        idle: values[3] + values[4],
        iowait: values[4],
    })
}

/// (cpu, iowait) fractions between two samples.
pub fn cpu_usage(old: &CpuTimes, new: &CpuTimes) -> (f64, f64) {
    let total = new.total.saturating_sub(old.total);
    if total == 0 {
        return (0.0, 0.0);
    }
    let idle = new.idle.saturating_sub(old.idle);
    let iowait = new.iowait.saturating_sub(old.iowait);
    let total = total as f64;
    (
        (1.0 - idle as f64 / total).clamp(0.0, 1.0),
        (iowait as f64 / total).clamp(0.0, 1.0),
    )
}

struct CpuSample {
    taken: Instant,
    times: CpuTimes,
    usage: (f64, f64),
}

/// Current (cpu, iowait); the first call measures since boot.
fn current_cpu_usage() -> Result<(f64, f64), Error> {
    static LAST: Mutex<Option<CpuSample>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(sample) = last.as_ref() {
        if sample.taken.elapsed() < CPU_SAMPLE_INTERVAL {
            return Ok(sample.usage);
        }
    }
    let text = std::fs::read_to_string("/proc/stat").context("unable to read /proc/stat")?;
    let times = parse_proc_stat(&text)?;
    let base = last.as_ref().map(|s| s.times).unwrap_or_default();
    let usage = cpu_usage(&base, &times);
    *last = Some(CpuSample {
        taken: Instant::now(),
        times,
        usage,
    });
    Ok(usage)
}

/// CPU model and counts from `/proc/cpuinfo` text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuInfo {
    /// `model name` of the first processor.
    pub model: String,
    /// Distinct `physical id` values (at least 1 when there are CPUs).
    pub sockets: usize,
    /// Number of `processor` entries.
    pub cpus: usize,
}

/// Parses `/proc/cpuinfo` text.
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    let mut sockets = BTreeSet::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => info.cpus += 1,
            "model name" if info.model.is_empty() => info.model = value.to_string(),
            "physical id" => {
                sockets.insert(value.to_string());
            }
            _ => {}
        }
    }
    info.sockets = sockets.len().max(usize::from(info.cpus > 0));
    info
}

/// `/proc/loadavg` text → the 1, 5 and 15 minute load.
pub fn parse_loadavg(text: &str) -> Result<[f64; 3], Error> {
    let mut fields = text.split_whitespace();
    let mut out = [0.0; 3];
    for value in out.iter_mut() {
        let field = fields
            .next()
            .ok_or_else(|| format_err!("/proc/loadavg: too few fields"))?;
        *value = field
            .parse()
            .map_err(|_| format_err!("/proc/loadavg: bad value '{field}'"))?;
    }
    Ok(out)
}

/// `/proc/uptime` text → whole seconds since boot.
pub fn parse_uptime(text: &str) -> Result<u64, Error> {
    let field = text
        .split_whitespace()
        .next()
        .ok_or_else(|| format_err!("/proc/uptime: empty"))?;
    let secs: f64 = field
        .parse()
        .map_err(|_| format_err!("/proc/uptime: bad value '{field}'"))?;
    Ok(secs as u64)
}

/// `uname` fields: (sysname, release, version, machine).
fn uname() -> Result<[String; 4], Error> {
    // SAFETY: utsname is plain data; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("uname failed");
    }
    let field = |raw: &[libc::c_char]| {
        let bytes: Vec<u8> = raw
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok([
        field(&uts.sysname),
        field(&uts.release),
        field(&uts.version),
        field(&uts.machine),
    ])
}

/// Boot mode and secure boot state.
fn boot_info() -> Value {
    if !Path::new("/sys/firmware/efi").exists() {
        return json!({ "mode": "legacy-bios", "secureboot": false });
    }
    let secureboot = std::fs::read(SECURE_BOOT_VAR)
        .map(|data| data.len() == 5 && data[4] == 1)
        .unwrap_or(false);
    json!({ "mode": "efi", "secureboot": secureboot })
}

fn read_proc(path: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).with_context(|| format!("unable to read {path}"))
}

/// The status object of this node.
pub fn node_status() -> Result<Value, Error> {
    let mem = parse_meminfo(&read_proc("/proc/meminfo")?)?;
    let root = fs_usage(Path::new("/"))?;
    let uptime = parse_uptime(&read_proc("/proc/uptime")?)?;
    let loadavg = parse_loadavg(&read_proc("/proc/loadavg")?)?;
    let (cpu, wait) = current_cpu_usage()?;
    let cpuinfo = parse_cpuinfo(&read_proc("/proc/cpuinfo")?);
    let [sysname, release, version, machine] = uname()?;
    let fingerprint = pbs_auth::tls::cert_file_fingerprint(&pbs_auth::tls::proxy_cert_path())?;
    Ok(json!({
        "memory": {
            "total": mem.memtotal,
            "used": mem.memtotal.saturating_sub(mem.memfree),
            "free": mem.memfree,
        },
        "swap": {
            "total": mem.swaptotal,
            "used": mem.swaptotal.saturating_sub(mem.swapfree),
            "free": mem.swapfree,
        },
        "root": { "total": root.total, "used": root.used, "avail": root.avail },
        "uptime": uptime,
        "loadavg": loadavg,
        "kversion": format!("{sysname} {release} {version}"),
        "current-kernel": {
            "sysname": sysname,
            "release": release,
            "version": version,
            "machine": machine,
        },
        "cpu": cpu,
        "wait": wait,
        "cpuinfo": { "model": cpuinfo.model, "sockets": cpuinfo.sockets, "cpus": cpuinfo.cpus },
        "info": { "fingerprint": fingerprint },
        "boot-info": boot_info(),
    }))
}

/// Node names: `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`.
fn is_node_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn node_param() -> ParamSchema {
    ParamSchema::string("node")
        .format(StringFormat::Pattern(is_node_name))
        .description("Node name (or 'localhost').")
}

fn to_http(err: Error) -> HttpError {
    HttpError::bad_request(format!("{err:#}"))
}

/// Adds `nodes/{node}/status` to `router`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    let get = ApiMethod::new(|_env, _params| async {
        tokio::task::spawn_blocking(node_status)
            .await
            .map_err(|err| HttpError::internal(format!("status task failed - {err}")))?
            .map_err(to_http)
    })
    .permission(Permission::Privilege {
        path: "/system/status",
        privs: PRIV_SYS_AUDIT,
        partial: false,
    })
    .parameters(ObjectSchema::new().param(node_param()))
    .description("Read node memory, CPU and (root) disk usage.");

    let post = ApiMethod::new(|_env, params: Value| async move {
        let action = match params["command"].as_str() {
            Some("reboot") => "reboot",
            Some("shutdown") => "poweroff",
            _ => return Err(HttpError::bad_request("unknown command")),
        };
        let status = tokio::process::Command::new("systemctl")
            .arg(action)
            .status()
            .await
            .map_err(|err| HttpError::bad_request(format!("systemctl {action} failed - {err}")))?;
        if !status.success() {
            return Err(HttpError::bad_request(format!(
                "systemctl {action} failed - {status}"
            )));
        }
        Ok(Value::Null)
    })
    .permission(Permission::Privilege {
        path: "/system/status",
        privs: PRIV_SYS_POWER_MANAGEMENT,
        partial: false,
    })
    .protected(true)
    .parameters(
        ObjectSchema::new().param(node_param()).param(
            ParamSchema::string("command")
                .format(StringFormat::Enum(&["reboot", "shutdown"]))
                .description("What to do."),
        ),
    )
    .description("Reboot or shut down the node.");

    router
        .route("/nodes/{node}/status", Method::GET, get)?
        .route("/nodes/{node}/status", Method::POST, post)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_free_includes_buffers_and_cache() {
        let text = "MemTotal:       16000 kB\nMemFree:         4000 kB\nMemAvailable:    9000 kB\nBuffers:          500 kB\nCached:          2500 kB\nSwapCached:         0 kB\nSwapTotal:       2048 kB\nSwapFree:        1024 kB\n";
        let info = parse_meminfo(text).unwrap();
        assert_eq!(info.memtotal, 16000 * 1024);
        assert_eq!(info.memfree, 7000 * 1024);
        assert_eq!(info.swaptotal, 2048 * 1024);
        assert_eq!(info.swapfree, 1024 * 1024);
        assert!(parse_meminfo("MemFree: 1 kB\n").is_err());
        assert!(parse_meminfo("MemTotal: x kB\n").is_err());
    }

    #[test]
    fn cpu_fractions_from_two_samples() {
        let a = parse_proc_stat("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4 5\n").unwrap();
        assert_eq!(a.total, 1000);
        assert_eq!(a.idle, 800);
        let b = parse_proc_stat("cpu  200 0 200 1400 200 0 0 0 10 0\n").unwrap();
        let (cpu, wait) = cpu_usage(&a, &b);
        assert!((cpu - 0.2).abs() < 1e-9, "{cpu}");
        assert!((wait - 0.1).abs() < 1e-9, "{wait}");
        assert_eq!(cpu_usage(&b, &b), (0.0, 0.0));
        assert!(parse_proc_stat("intr 1 2\n").is_err());
        assert!(parse_proc_stat("cpu 1 2 x 4 5\n").is_err());
    }

    #[test]
    fn cpuinfo_counts_sockets_and_cpus() {
        let text = "processor\t: 0\nmodel name\t: Test CPU @ 2GHz\nphysical id\t: 0\n\nprocessor\t: 1\nmodel name\t: Test CPU @ 2GHz\nphysical id\t: 1\n\nprocessor\t: 2\nphysical id\t: 1\n";
        let info = parse_cpuinfo(text);
        assert_eq!(info.model, "Test CPU @ 2GHz");
        assert_eq!(info.cpus, 3);
        assert_eq!(info.sockets, 2);
        // No physical id (e.g. some ARM systems): one socket.
        assert_eq!(parse_cpuinfo("processor : 0\n").sockets, 1);
    }

    #[test]
    fn loadavg_and_uptime() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/467 12345\n").unwrap(),
            [0.52, 0.58, 0.59]
        );
        assert!(parse_loadavg("0.5 0.4\n").is_err());
        assert_eq!(parse_uptime("350735.47 234388.90\n").unwrap(), 350735);
        assert!(parse_uptime("").is_err());
    }

    #[test]
    fn node_names() {
        assert!(is_node_name("localhost"));
        assert!(is_node_name("pbs-1"));
        assert!(!is_node_name("-pbs"));
        assert!(!is_node_name("pbs.example"));
        assert!(!is_node_name(""));
    }
}
