//! The job state files the configuration API creates, touches and removes
//! (`<state dir>/jobstates/<type>-<id>.json`).

use std::path::PathBuf;

use anyhow::{Context, Error};
use serde_json::{json, Value};

use pbs_config::files::FileOwner;
use pbs_tools::fs::{replace_file, ReplaceOptions};

/// Directory of the job state files.
pub fn jobstate_dir() -> PathBuf {
    pbs_buildcfg::state_dir().join("jobstates")
}

/// Path of the state file of job `job_type`/`id`.
pub fn state_path(job_type: &str, id: &str) -> PathBuf {
    jobstate_dir().join(format!("{job_type}-{id}.json"))
}

fn lock_path(job_type: &str, id: &str) -> PathBuf {
    jobstate_dir().join(format!("{job_type}-{id}.lck"))
}

/// The `finished` state; a struct so that the members keep their order on disk.
#[derive(serde::Serialize, serde::Deserialize)]
struct Finished {
    upid: String,
    state: pbs_tasks::TaskState,
    updated: Option<i64>,
}

#[derive(serde::Serialize)]
struct FinishedState<'a> {
    finished: &'a Finished,
}

fn write_state<T: serde::Serialize>(job_type: &str, id: &str, state: &T) -> Result<(), Error> {
    let dir = jobstate_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("unable to create {dir:?}"))?;
    let path = state_path(job_type, id);
    let options = ReplaceOptions {
        mode: 0o644,
        owner: FileOwner::BackupBackup.current(),
        fsync: false,
    };
    let data = serde_json::to_vec(state)?;
    replace_file(&path, &data, options)
        .with_context(|| format!("unable to write job state {path:?}"))
}

/// Writes the state `created` with the current time (a new job).
pub fn create_state_file(job_type: &str, id: &str) -> Result<(), Error> {
    let now = pbs_api_types::time::epoch_now();
    write_state(job_type, id, &json!({ "created": { "time": now } }))
}

/// Removes the state and lock file of a job; missing files are fine.
pub fn remove_state_file(job_type: &str, id: &str) -> Result<(), Error> {
    for path in [state_path(job_type, id), lock_path(job_type, id)] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("unable to remove {path:?}")),
        }
    }
    Ok(())
}

/// Makes "now" the reference time of the next scheduled run after a schedule change:
/// `created` gets the current time, `finished` gets `updated = now`, a started job is left
/// alone.
pub fn update_job_last_run_time(job_type: &str, id: &str) -> Result<(), Error> {
    let path = state_path(job_type, id);
    let current: Option<Value> = match std::fs::read(&path) {
        Ok(data) => Some(
            serde_json::from_slice(&data)
                .with_context(|| format!("unable to parse job state {path:?}"))?,
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err).with_context(|| format!("unable to read {path:?}")),
    };
    let now = pbs_api_types::time::epoch_now();
    match current {
        None => create_state_file(job_type, id),
        Some(state) if state.get("created").is_some() => create_state_file(job_type, id),
        Some(state) if state.get("finished").is_some() => {
            let mut finished: Finished = serde_json::from_value(state["finished"].clone())
                .with_context(|| format!("job state {path:?}: bad 'finished' member"))?;
            finished.updated = Some(now);
            write_state(
                job_type,
                id,
                &FinishedState {
                    finished: &finished,
                },
            )
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_state_keeps_member_order() {
        let text = r#"{"finished":{"upid":"UPID:x","state":{"Error":{"message":"boom","endtime":5}},"updated":null}}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        let mut finished: Finished = serde_json::from_value(value["finished"].clone()).unwrap();
        finished.updated = Some(7);
        let out = serde_json::to_string(&FinishedState {
            finished: &finished,
        })
        .unwrap();
        assert_eq!(
            out,
            r#"{"finished":{"upid":"UPID:x","state":{"Error":{"message":"boom","endtime":5}},"updated":7}}"#
        );
    }
}
