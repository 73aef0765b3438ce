//! Final task states: as written in task logs (`TASK ...`), in task lists and in job state
//! files.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How a finished task ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// The end could not be determined (e.g. the process died).
    Unknown { endtime: i64 },
    /// Success.
    #[serde(rename = "OK")]
    Ok { endtime: i64 },
    /// Success with warnings.
    Warning { count: u64, endtime: i64 },
    /// Failure.
    Error { message: String, endtime: i64 },
}

/// The kind of a [`TaskState`], as used by status filters (`ok`, `warning`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStateType {
    Ok,
    Warning,
    Error,
    Unknown,
}

/// A task list status text that is none of the known forms.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unable to parse task status '{0}'")]
pub struct TaskStatusParseError(pub String);

impl TaskState {
    /// When the task ended.
    pub fn endtime(&self) -> i64 {
        match self {
            Self::Unknown { endtime }
            | Self::Ok { endtime }
            | Self::Warning { endtime, .. }
            | Self::Error { endtime, .. } => *endtime,
        }
    }

    /// The kind of state.
    pub fn state_type(&self) -> TaskStateType {
        match self {
            Self::Unknown { .. } => TaskStateType::Unknown,
            Self::Ok { .. } => TaskStateType::Ok,
            Self::Warning { .. } => TaskStateType::Warning,
            Self::Error { .. } => TaskStateType::Error,
        }
    }

    /// Parses a task list status text: `OK`, `WARNINGS: <n>`, `unknown`, `ERROR: <msg>` or a
    /// bare error message.
    pub fn from_endtime_and_message(
        endtime: i64,
        text: &str,
    ) -> Result<Self, TaskStatusParseError> {
        if text == "unknown" {
            Ok(Self::Unknown { endtime })
        } else if text == "OK" {
            Ok(Self::Ok { endtime })
        } else if let Some(count) = text.strip_prefix("WARNINGS: ") {
            let count = count
                .parse()
                .map_err(|_| TaskStatusParseError(text.to_string()))?;
            Ok(Self::Warning { count, endtime })
        } else if !text.is_empty() {
            let message = text.strip_prefix("ERROR: ").unwrap_or(text).to_string();
            Ok(Self::Error { message, endtime })
        } else {
            Err(TaskStatusParseError(text.to_string()))
        }
    }

    /// The text after `TASK ` in the last line of a task log.
    pub fn log_text(&self) -> String {
        match self {
            Self::Unknown { .. } => "unknown".to_string(),
            Self::Ok { .. } => "OK".to_string(),
            Self::Warning { count, .. } => format!("WARNINGS: {count}"),
            Self::Error { message, .. } => format!("ERROR: {message}"),
        }
    }

    /// Derives the state from the last line of a task log; `starttime` is the fallback end
    /// time when the line carries no usable time stamp.
    pub fn from_last_log_line(line: &str, starttime: i64) -> Self {
        let Some((time, rest)) = line.split_once(": ") else {
            return Self::Unknown { endtime: starttime };
        };
        let Ok(endtime) = pbs_api_types::time::parse_rfc3339(time) else {
            return Self::Unknown { endtime: starttime };
        };
        let Some(status) = rest.strip_prefix("TASK ") else {
            return Self::Unknown { endtime };
        };
        if status == "OK" {
            Self::Ok { endtime }
        } else if let Some(count) = status.strip_prefix("WARNINGS: ") {
            match count.parse() {
                Ok(count) => Self::Warning { count, endtime },
                Err(_) => Self::Unknown { endtime },
            }
        } else if let Some(message) = status.strip_prefix("ERROR: ") {
            Self::Error {
                message: message.to_string(),
                endtime,
            }
        } else if !status.is_empty() {
            Self::Error {
                message: status.to_string(),
                endtime,
            }
        } else {
            Self::Unknown { endtime }
        }
    }
}

/// The status text of task lists and job states: `OK`, `WARNINGS: <n>`, the error message,
/// or `unknown`.
impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown { .. } => f.write_str("unknown"),
            Self::Ok { .. } => f.write_str("OK"),
            Self::Warning { count, .. } => write!(f, "WARNINGS: {count}"),
            Self::Error { message, .. } => f.write_str(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_state_json_forms() {
        let cases = [
            (
                TaskState::Unknown { endtime: 5 },
                r#"{"Unknown":{"endtime":5}}"#,
            ),
            (
                TaskState::Ok {
                    endtime: 1717582700,
                },
                r#"{"OK":{"endtime":1717582700}}"#,
            ),
            (
                TaskState::Warning {
                    count: 2,
                    endtime: 7,
                },
                r#"{"Warning":{"count":2,"endtime":7}}"#,
            ),
            (
                TaskState::Error {
                    message: "boom".into(),
                    endtime: 8,
                },
                r#"{"Error":{"message":"boom","endtime":8}}"#,
            ),
        ];
        for (state, json) in cases {
            assert_eq!(serde_json::to_string(&state).unwrap(), json);
            assert_eq!(serde_json::from_str::<TaskState>(json).unwrap(), state);
        }
        assert_eq!(
            serde_json::to_string(&[TaskStateType::Ok, TaskStateType::Warning]).unwrap(),
            r#"["ok","warning"]"#
        );
    }

    #[test]
    fn list_status_text() {
        let parse = |s| TaskState::from_endtime_and_message(9, s);
        assert_eq!(parse("OK"), Ok(TaskState::Ok { endtime: 9 }));
        assert_eq!(parse("unknown"), Ok(TaskState::Unknown { endtime: 9 }));
        assert_eq!(
            parse("WARNINGS: 3"),
            Ok(TaskState::Warning {
                count: 3,
                endtime: 9
            })
        );
        let err = |m: &str| TaskState::Error {
            message: m.into(),
            endtime: 9,
        };
        assert_eq!(parse("ERROR: x y"), Ok(err("x y")));
        assert_eq!(parse("x y"), Ok(err("x y")));
        assert!(parse("").is_err());
        assert!(parse("WARNINGS: many").is_err());
        for s in ["OK", "unknown", "WARNINGS: 3", "x y"] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
        assert_eq!(err("x").log_text(), "ERROR: x");
        assert_eq!(
            TaskState::Warning {
                count: 1,
                endtime: 0
            }
            .log_text(),
            "WARNINGS: 1"
        );
    }

    #[test]
    fn last_log_lines() {
        let t = pbs_api_types::time::parse_rfc3339("2024-06-05T16:24:36+02:00").unwrap();
        let line =
            |s: &str| TaskState::from_last_log_line(&format!("2024-06-05T16:24:36+02:00: {s}"), 1);
        assert_eq!(line("TASK OK"), TaskState::Ok { endtime: t });
        assert_eq!(
            line("TASK WARNINGS: 4"),
            TaskState::Warning {
                count: 4,
                endtime: t
            }
        );
        assert_eq!(
            line("TASK ERROR: disk full: really"),
            TaskState::Error {
                message: "disk full: really".into(),
                endtime: t
            }
        );
        assert_eq!(
            line("TASK strange"),
            TaskState::Error {
                message: "strange".into(),
                endtime: t
            }
        );
        assert_eq!(line("TASK "), TaskState::Unknown { endtime: t });
        assert_eq!(line("some progress"), TaskState::Unknown { endtime: t });
        assert_eq!(line("TASK WARNINGS: x"), TaskState::Unknown { endtime: t });
        assert_eq!(
            TaskState::from_last_log_line("continuation line", 1),
            TaskState::Unknown { endtime: 1 }
        );
        assert_eq!(
            TaskState::from_last_log_line("notatime: TASK OK", 1),
            TaskState::Unknown { endtime: 1 }
        );
    }
}
