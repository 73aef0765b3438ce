//! Unique process/task ids (`UPID:node:pid:pstart:taskid:starttime:type:id:authid:`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::userid::Authid;

/// Shortest possible UPID string.
pub const UPID_MIN_LEN: usize = 36;

/// Why a UPID or worker id could not be parsed or created.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UpidError {
    #[error("unable to parse UPID '{0}'")]
    Malformed(String),
    #[error("unable to parse UPID '{upid}' - {reason}")]
    InvalidField { upid: String, reason: String },
    #[error("invalid worker type '{0}'")]
    InvalidWorkerType(String),
    #[error("invalid node name '{0}'")]
    InvalidNode(String),
    #[error("invalid escape sequence in worker id '{0}'")]
    InvalidEscape(String),
    #[error("worker id '{0}' is not valid UTF-8 after unescaping")]
    NotUtf8(String),
}

/// A task id as it appears in task lists, log file names and API results.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UPID {
    /// Host name up to the first `.`.
    pub node: String,
    /// Process id of the process running the task.
    pub pid: u32,
    /// Process start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub pstart: u64,
    /// Per-process task counter.
    pub task_id: u64,
    /// Task start time (epoch).
    pub starttime: i64,
    /// Kind of task, e.g. `backup` or `garbage_collection`.
    pub worker_type: String,
    /// Unescaped worker id (e.g. `store1:host/elsa`), if any.
    pub worker_id: Option<String>,
    /// User or token that started the task.
    pub auth_id: Authid,
}

/// A node name: `[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?`.
fn is_node_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        }
        _ => false,
    }
}

/// Worker types are created without `/`, `:` and spaces (and must not be empty).
fn is_creatable_worker_type(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', ':', ' ']) && !s.chars().any(char::is_whitespace)
}

/// Field content accepted by the parser: `[^:\s]`.
fn is_plain_field(s: &str) -> bool {
    !s.chars().any(|c| c == ':' || c.is_whitespace())
}

fn parse_hex_field(
    upid: &str,
    name: &str,
    s: &str,
    digits: std::ops::RangeInclusive<usize>,
) -> Result<u64, UpidError> {
    if !digits.contains(&s.len()) || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(UpidError::InvalidField {
            upid: upid.to_string(),
            reason: format!("bad {name} '{s}'"),
        });
    }
    u64::from_str_radix(s, 16).map_err(|err| UpidError::InvalidField {
        upid: upid.to_string(),
        reason: format!("bad {name} '{s}': {err}"),
    })
}

impl UPID {
    /// Assembles a UPID from its parts, checking the node name and worker type.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        node: &str,
        pid: u32,
        pstart: u64,
        task_id: u64,
        starttime: i64,
        worker_type: &str,
        worker_id: Option<String>,
        auth_id: Authid,
    ) -> Result<Self, UpidError> {
        if !is_creatable_worker_type(worker_type) {
            return Err(UpidError::InvalidWorkerType(worker_type.to_string()));
        }
        if !is_node_name(node) {
            return Err(UpidError::InvalidNode(node.to_string()));
        }
        Ok(Self {
            node: node.to_string(),
            pid,
            pstart,
            task_id,
            starttime,
            worker_type: worker_type.to_string(),
            worker_id,
            auth_id,
        })
    }

    /// Name of the task log subdirectory: `%02X` of the low byte of `pstart`.
    pub fn log_subdir(&self) -> String {
        format!("{:02X}", self.pstart & 0xff)
    }

    /// Path of the task log relative to the task directory: `<XX>/<UPID>`.
    pub fn log_path_relative(&self) -> String {
        format!("{}/{}", self.log_subdir(), self)
    }
}

impl fmt::Display for UPID {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let worker_id = match &self.worker_id {
            Some(id) => escape_worker_id(id),
            None => String::new(),
        };
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node,
            self.pid,
            self.pstart,
            self.task_id,
            self.starttime,
            self.worker_type,
            worker_id,
            self.auth_id
        )
    }
}

impl FromStr for UPID {
    type Err = UpidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || UpidError::Malformed(s.to_string());
        let invalid = |reason: String| UpidError::InvalidField {
            upid: s.to_string(),
            reason,
        };
        if s.len() < UPID_MIN_LEN {
            return Err(malformed());
        }
        // No field may contain ':', so a well-formed UPID splits into exactly ten parts, the
        // last one empty (the mandatory trailing colon).
        let parts: Vec<&str> = s.split(':').collect();
        let [magic, node, pid, pstart, task_id, starttime, worker_type, worker_id, auth_id, tail] =
            parts.as_slice()
        else {
            return Err(malformed());
        };
        if *magic != "UPID" || !tail.is_empty() {
            return Err(malformed());
        }
        if !is_node_name(node) {
            return Err(invalid(format!("bad node name '{node}'")));
        }
        let pid = parse_hex_field(s, "pid", pid, 8..=8)?;
        let pstart = parse_hex_field(s, "process start time", pstart, 8..=9)?;
        let task_id = parse_hex_field(s, "task id", task_id, 8..=16)?;
        let starttime = parse_hex_field(s, "start time", starttime, 8..=8)?;
        if worker_type.is_empty() || !is_plain_field(worker_type) {
            return Err(invalid(format!("bad worker type '{worker_type}'")));
        }
        if !is_plain_field(worker_id) {
            return Err(invalid(format!("bad worker id '{worker_id}'")));
        }
        if auth_id.is_empty() || !is_plain_field(auth_id) {
            return Err(invalid(format!("bad auth id '{auth_id}'")));
        }
        let auth_id: Authid = auth_id
            .parse()
            .map_err(|err| invalid(format!("bad auth id '{auth_id}': {err}")))?;
        let worker_id = if worker_id.is_empty() {
            None
        } else {
            Some(unescape_worker_id(worker_id)?)
        };
        Ok(Self {
            node: node.to_string(),
            pid: pid as u32, // exactly 8 hex digits always fit
            pstart,
            task_id,
            starttime: starttime as i64, // exactly 8 hex digits always fit
            worker_type: worker_type.to_string(),
            worker_id,
            auth_id,
        })
    }
}

impl Serialize for UPID {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UPID {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Escapes a worker id systemd-unit style: `/` → `-`, bytes outside `[A-Za-z0-9_.]` (and a
/// leading `.`) → `\xhh`.
pub fn escape_worker_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for (i, &b) in id.as_bytes().iter().enumerate() {
        if b == b'/' {
            out.push('-');
        } else if (i == 0 && b == b'.') || !(b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
            out.push_str(&format!("\\x{b:02x}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Reverses [`escape_worker_id`]: `\xHH` → byte, `-` → `/`.
pub fn unescape_worker_id(escaped: &str) -> Result<String, UpidError> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let hex = bytes
                    .get(i + 1..i + 4)
                    .filter(|seq| seq[0] == b'x')
                    .and_then(|seq| std::str::from_utf8(&seq[1..]).ok())
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| UpidError::InvalidEscape(escaped.to_string()))?;
                out.push(hex);
                i += 4;
            }
            b'-' => {
                out.push(b'/');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| UpidError::NotUtf8(escaped.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(s: &str) -> Authid {
        s.parse().unwrap()
    }

    struct Vector {
        upid: &'static str,
        pid: u32,
        pstart: u64,
        task_id: u64,
        worker_type: &'static str,
        worker_id: Option<&'static str>,
        auth_id: &'static str,
        log_dir: &'static str,
    }

    const VECTORS: &[Vector] = &[
        Vector {
            upid: "UPID:pbs:00000F2A:0000A1B3:00000003:66603A80:backup:store1\\x3ahost-elsa:root@pam:",
            pid: 0xF2A,
            pstart: 0xA1B3,
            task_id: 3,
            worker_type: "backup",
            worker_id: Some("store1:host/elsa"),
            auth_id: "root@pam",
            log_dir: "B3",
        },
        Vector {
            upid: "UPID:pbs:00003039:100000000:0000001F:66603A80:reader:store1\\x3avm-100-665F2E00:user1@pbs!client:",
            pid: 0x3039,
            pstart: 0x1_0000_0000,
            task_id: 0x1F,
            worker_type: "reader",
            worker_id: Some("store1:vm/100/665F2E00"),
            auth_id: "user1@pbs!client",
            log_dir: "00",
        },
        Vector {
            upid: "UPID:pbs:00003039:000F1206:00000000:66603A80:verify_snapshot:store1\\x3ans-a-ns-b-vm-100-665F2E00:root@pam:",
            pid: 0x3039,
            pstart: 0xF1206,
            task_id: 0,
            worker_type: "verify_snapshot",
            worker_id: Some("store1:ns/a/ns/b/vm/100/665F2E00"),
            auth_id: "root@pam",
            log_dir: "06",
        },
        Vector {
            upid: "UPID:pbs:00003039:000F1206:00000001:66603A80:verify_group:store1\\x3a-vm-100:root@pam:",
            pid: 0x3039,
            pstart: 0xF1206,
            task_id: 1,
            worker_type: "verify_group",
            worker_id: Some("store1:/vm/100"),
            auth_id: "root@pam",
            log_dir: "06",
        },
        Vector {
            upid: "UPID:pbs:00003039:000F1206:00000002:66603A80:prune:store1\\x3a\\x3avm-100:root@pam:",
            pid: 0x3039,
            pstart: 0xF1206,
            task_id: 2,
            worker_type: "prune",
            worker_id: Some("store1::vm/100"),
            auth_id: "root@pam",
            log_dir: "06",
        },
        Vector {
            upid: "UPID:pbs:00003039:000F1206:00000007:66603A80:syncjob:\\x2d\\x3asrc\\x3adst\\x3a\\x3as\\x2d1a2b:root@pam:",
            pid: 0x3039,
            pstart: 0xF1206,
            task_id: 7,
            worker_type: "syncjob",
            worker_id: Some("-:src:dst::s-1a2b"),
            auth_id: "root@pam",
            log_dir: "06",
        },
    ];

    #[test]
    fn parses_upstream_doc_example() {
        let s = "UPID:elsa:00004F37:0039E469:00000000:5CA78B83:garbage_collection::root@pam:";
        let upid: UPID = s.parse().unwrap();
        assert_eq!(upid.node, "elsa");
        assert_eq!(upid.pid, 20279);
        assert_eq!(upid.pstart, 3794025);
        assert_eq!(upid.task_id, 0);
        assert_eq!(upid.starttime, 1554484099);
        assert_eq!(upid.worker_type, "garbage_collection");
        assert_eq!(upid.worker_id, None);
        assert_eq!(upid.auth_id, auth("root@pam"));
        assert_eq!(upid.log_subdir(), "69");
        assert_eq!(upid.to_string(), s);
        assert_eq!(upid.log_path_relative(), format!("69/{s}"));
    }

    #[test]
    fn vectors_parse_and_format_round_trip() {
        for v in VECTORS {
            let upid: UPID = v.upid.parse().unwrap_or_else(|e| panic!("{}: {e}", v.upid));
            assert_eq!(upid.node, "pbs");
            assert_eq!(upid.pid, v.pid, "{}", v.upid);
            assert_eq!(upid.pstart, v.pstart, "{}", v.upid);
            assert_eq!(upid.task_id, v.task_id, "{}", v.upid);
            assert_eq!(upid.starttime, 0x66603A80);
            assert_eq!(upid.worker_type, v.worker_type);
            assert_eq!(upid.worker_id.as_deref(), v.worker_id);
            assert_eq!(upid.auth_id, auth(v.auth_id));
            assert_eq!(upid.log_subdir(), v.log_dir, "{}", v.upid);
            assert_eq!(upid.to_string(), v.upid);

            let built = UPID::from_parts(
                "pbs",
                v.pid,
                v.pstart,
                v.task_id,
                0x66603A80,
                v.worker_type,
                v.worker_id.map(str::to_string),
                auth(v.auth_id),
            )
            .unwrap();
            assert_eq!(built.to_string(), v.upid);
        }
    }

    #[test]
    fn escaping_vectors() {
        assert_eq!(escape_worker_id(".hidden"), "\\x2ehidden");
        assert_eq!(escape_worker_id("a.b"), "a.b");
        assert_eq!(escape_worker_id("ct/dätä"), "ct-d\\xc3\\xa4t\\xc3\\xa4");
        assert_eq!(escape_worker_id("s-1"), "s\\x2d1");
        assert_eq!(
            unescape_worker_id("ct-d\\xC3\\xA4t\\xc3\\xa4").unwrap(),
            "ct/dätä"
        );
        assert_eq!(unescape_worker_id("\\x2ehidden").unwrap(), ".hidden");
        for bad in ["a\\x2", "a\\y20", "\\", "a\\xg0"] {
            assert!(unescape_worker_id(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            unescape_worker_id("\\xff"),
            Err(UpidError::NotUtf8(_))
        ));
    }

    #[test]
    fn rejects_malformed_upids() {
        let good = "UPID:elsa:00004F37:0039E469:00000000:5CA78B83:garbage_collection::root@pam:";
        assert!(good.parse::<UPID>().is_ok());
        let bad = [
            // missing trailing colon
            "UPID:elsa:00004F37:0039E469:00000000:5CA78B83:garbage_collection::root@pam",
            // wrong magic
            "UPIX:elsa:00004F37:0039E469:00000000:5CA78B83:garbage_collection::root@pam:",
            // pid with 7 digits
            "UPID:elsa:0004F37:0039E469:00000000:5CA78B83:garbage_collection::root@pam:",
            // pstart with 10 digits
            "UPID:elsa:00004F37:000039E469:00000000:5CA78B83:garbage_collection::root@pam:",
            // task id with 17 digits
            "UPID:elsa:00004F37:0039E469:00000000000000000:5CA78B83:garbage_collection::root@pam:",
            // start time with 9 digits
            "UPID:elsa:00004F37:0039E469:00000000:05CA78B83:garbage_collection::root@pam:",
            // non-hex digit
            "UPID:elsa:00004F3G:0039E469:00000000:5CA78B83:garbage_collection::root@pam:",
            // node ending in '-'
            "UPID:elsa-:00004F37:0039E469:00000000:5CA78B83:garbage_collection::root@pam:",
            // empty worker type
            "UPID:elsa:00004F37:0039E469:00000000:5CA78B83:::root@pam:",
            // whitespace in worker type
            "UPID:elsa:00004F37:0039E469:00000000:5CA78B83:garbage collection::root@pam:",
            // missing auth id
            "UPID:elsa:00004F37:0039E469:00000000:5CA78B83:garbage_collection:::",
            // extra field
            "UPID:elsa:00004F37:0039E469:00000000:5CA78B83:garbage_collection:x:root@pam::",
            // bad escape in worker id
            "UPID:elsa:00004F37:0039E469:00000000:5CA78B83:garbage_collection:a\\q:root@pam:",
            "UPID:e:0:0:0:0:g::r@pam:",
        ];
        for s in bad {
            assert!(s.parse::<UPID>().is_err(), "{s}");
        }
        // lower-case hex is accepted
        let lower: UPID = "UPID:elsa:00004f37:0039e469:0000000a:5ca78b83:gc::root@pam:"
            .parse()
            .unwrap();
        assert_eq!(lower.pid, 0x4f37);
        assert_eq!(lower.task_id, 10);
    }

    #[test]
    fn creation_rejects_bad_worker_types() {
        for wt in ["", "a/b", "a:b", "a b"] {
            assert!(
                UPID::from_parts("pbs", 1, 1, 0, 0, wt, None, auth("root@pam")).is_err(),
                "{wt:?}"
            );
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let s = VECTORS[0].upid;
        let upid: UPID = serde_json::from_str(&format!("{:?}", s)).unwrap();
        assert_eq!(serde_json::to_string(&upid).unwrap(), format!("{:?}", s));
    }
}
