//! The task lists: `active` (running tasks), `archive` (+ rotations) and the legacy
//! `index`; moving finished tasks to the archive; listing with filters.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, format_err, Context, Error};

use pbs_api_types::UPID;

use crate::state::{TaskState, TaskStateType};
use crate::taskdir::TaskDir;

/// One entry of a task list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskListInfo {
    /// The task.
    pub upid: UPID,
    /// `None` while the task runs.
    pub state: Option<TaskState>,
}

impl TaskListInfo {
    /// `<UPID>` or `<UPID> <ENDTIME %08X> <status>`.
    pub fn to_line(&self) -> String {
        match &self.state {
            None => format!("{}\n", self.upid),
            Some(state) => format!("{} {:08X} {}\n", self.upid, state.endtime(), state),
        }
    }

    /// Parses one list line (without the newline).
    pub fn parse_line(line: &str) -> Result<Self, Error> {
        let mut parts = line.splitn(3, ' ');
        let upid = parts.next().unwrap_or_default();
        let upid: UPID = upid.parse()?;
        let state = match (parts.next(), parts.next()) {
            (None, None) => None,
            (Some(endtime), Some(text)) => {
                let endtime = i64::from_str_radix(endtime, 16)
                    .map_err(|err| format_err!("bad end time '{endtime}': {err}"))?;
                Some(TaskState::from_endtime_and_message(endtime, text)?)
            }
            _ => bail!("missing task status"),
        };
        Ok(Self { upid, state })
    }
}

/// Reads the lines of a list file (plain or zstd compressed); a missing file is empty.
fn read_list_file(path: &Path) -> Result<Vec<TaskListInfo>, Error> {
    let raw = match std::fs::File::open(path) {
        Ok(file) => {
            let mut raw = Vec::new();
            if path.extension().is_some_and(|e| e == "zst") {
                zstd::stream::read::Decoder::new(file)?
                    .read_to_end(&mut raw)
                    .with_context(|| format!("unable to decompress {path:?}"))?;
            } else {
                let mut file = file;
                file.read_to_end(&mut raw)
                    .with_context(|| format!("unable to read {path:?}"))?;
            }
            raw
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("unable to open {path:?}")),
    };
    let text = String::from_utf8_lossy(&raw);
    let mut list = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        match TaskListInfo::parse_line(line) {
            Ok(info) => list.push(info),
            Err(err) => eprintln!("skipping task list line in {path:?} ('{line}'): {err}"),
        }
    }
    Ok(list)
}

/// Rewrites `active` with the running tasks (mode 0660, no fsync).
fn write_active(dir: &TaskDir, running: &[TaskListInfo]) -> Result<(), Error> {
    let path = dir.active_path();
    let tmp = dir.root().join(".active.tmp");
    let data: String = running.iter().map(TaskListInfo::to_line).collect();
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o660)
        .open(&tmp)
        .with_context(|| format!("unable to create {tmp:?}"))?;
    dir.prepare_list_file(&file)?;
    file.write_all(data.as_bytes())
        .with_context(|| format!("unable to write {tmp:?}"))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("unable to replace {path:?}"))
}

/// Appends finished tasks to `archive` (O_APPEND, mode 0660), sorted by end time.
fn append_archive(dir: &TaskDir, finished: &mut [TaskListInfo]) -> Result<(), Error> {
    if finished.is_empty() {
        return Ok(());
    }
    finished.sort_by_key(|info| info.state.as_ref().map_or(0, TaskState::endtime));
    let data: String = finished.iter().map(TaskListInfo::to_line).collect();
    let path = dir.archive_path();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o660)
        .open(&path)
        .with_context(|| format!("unable to open {path:?}"))?;
    dir.prepare_list_file(&file)?;
    file.write_all(data.as_bytes())
        .with_context(|| format!("unable to append to {path:?}"))
}

/// A running entry whose worker is gone gets its state from the log.
fn settle(dir: &TaskDir, info: TaskListInfo) -> TaskListInfo {
    if info.state.is_some() || crate::worker::worker_is_active(&info.upid) {
        return info;
    }
    let state = dir
        .read_task_state(&info.upid)
        .unwrap_or(TaskState::Unknown {
            endtime: info.upid.starttime,
        });
    TaskListInfo {
        upid: info.upid,
        state: Some(state),
    }
}

/// Brings `active` up to date: finished or orphaned tasks move to the archive, the legacy
/// `index` is merged and deleted, and `new_task` (if any) is added as running.
pub fn update_active_list(dir: &TaskDir, new_task: Option<&UPID>) -> Result<(), Error> {
    let _lock = dir.lock_lists()?;

    let mut running = Vec::new();
    let mut finished = Vec::new();
    let index_path = dir.legacy_index_path();
    let legacy = read_list_file(&index_path)?;
    for info in read_list_file(&dir.active_path())?
        .into_iter()
        .chain(legacy)
    {
        let info = settle(dir, info);
        if info.state.is_some() {
            finished.push(info);
        } else if !running.contains(&info) {
            running.push(info);
        }
    }
    if let Some(upid) = new_task {
        running.push(TaskListInfo {
            upid: upid.clone(),
            state: None,
        });
    }
    running.sort_by_key(|info| info.upid.starttime);

    append_archive(dir, &mut finished)?;
    write_active(dir, &running)?;
    match std::fs::remove_file(&index_path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("unable to remove {index_path:?}")),
    }
}

/// The running tasks from `active` (oldest first), after moving stale entries away.
pub fn read_active_tasks(dir: &TaskDir) -> Result<Vec<TaskListInfo>, Error> {
    let list = {
        let _lock = dir.lock_lists()?;
        read_list_file(&dir.active_path())?
    };
    let stale = dir.legacy_index_path().exists()
        || list
            .iter()
            .any(|i| i.state.is_some() || !crate::worker::worker_is_active(&i.upid));
    if !stale {
        return Ok(list);
    }
    update_active_list(dir, None)?;
    let _lock = dir.lock_lists()?;
    read_list_file(&dir.active_path())
}

/// Archive files newest first: `archive`, `archive.1`, `archive.2.zst`, ...
fn archive_files(dir: &TaskDir) -> Vec<std::path::PathBuf> {
    let mut files = vec![dir.archive_path()];
    for n in 1.. {
        let plain = dir.root().join(format!("archive.{n}"));
        let compressed = dir.root().join(format!("archive.{n}.zst"));
        if plain.exists() {
            files.push(plain);
        } else if compressed.exists() {
            files.push(compressed);
        } else {
            break;
        }
    }
    files
}

/// Whether a task belongs to datastore `store` (by worker type and worker id).
pub fn task_matches_store(upid: &UPID, store: &str) -> bool {
    let Some(id) = upid.worker_id.as_deref() else {
        return false;
    };
    match upid.worker_type.as_str() {
        t if t.starts_with("verif") => id.split(':').next() == Some(store),
        "syncjob" => id.split(':').nth(2) == Some(store),
        "backup" | "prune" | "garbage_collection" => {
            id == store || id.strip_prefix(store).is_some_and(|r| r.starts_with(':'))
        }
        _ => false,
    }
}

/// Filters of a task listing (all optional).
#[derive(Clone, Debug, Default)]
pub struct TaskListFilter {
    /// Only running tasks.
    pub running: bool,
    /// Drop tasks that ended OK.
    pub errors: bool,
    /// Substring of the auth id.
    pub userfilter: Option<String>,
    /// Substring of the worker type.
    pub typefilter: Option<String>,
    /// Skip tasks started earlier; stop at the first task that ended earlier.
    pub since: Option<i64>,
    /// Skip tasks started later.
    pub until: Option<i64>,
    /// Only finished tasks with one of these states.
    pub statusfilter: Option<Vec<TaskStateType>>,
    /// Only tasks of this datastore ([`task_matches_store`]).
    pub store: Option<String>,
}

/// Result of [`list_tasks`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskListPage {
    /// The selected tasks, newest first.
    pub tasks: Vec<TaskListInfo>,
    /// `start + tasks.len()`, plus one if the page was full (more may follow).
    pub total: u64,
}

enum Verdict {
    Take,
    Skip,
    Stop,
}

fn judge(info: &TaskListInfo, filter: &TaskListFilter) -> Verdict {
    let upid = &info.upid;
    if filter.until.is_some_and(|until| upid.starttime > until) {
        return Verdict::Skip;
    }
    if let Some(since) = filter.since {
        if info.state.as_ref().is_some_and(|s| s.endtime() < since) {
            return Verdict::Stop;
        }
        if upid.starttime < since {
            return Verdict::Skip;
        }
    }
    if filter.running && info.state.is_some() {
        return Verdict::Skip;
    }
    if let Some(store) = &filter.store {
        if !task_matches_store(upid, store) {
            return Verdict::Skip;
        }
    }
    if let Some(user) = &filter.userfilter {
        if !upid.auth_id.to_string().contains(user.as_str()) {
            return Verdict::Skip;
        }
    }
    if let Some(t) = &filter.typefilter {
        if !upid.worker_type.contains(t.as_str()) {
            return Verdict::Skip;
        }
    }
    if let Some(states) = &filter.statusfilter {
        match &info.state {
            Some(state) if states.contains(&state.state_type()) => {}
            _ => return Verdict::Skip,
        }
    }
    if filter.errors && matches!(info.state, Some(TaskState::Ok { .. })) {
        return Verdict::Skip;
    }
    Verdict::Take
}

/// Lists tasks newest first (running tasks, then the archives read bottom-up), applying
/// `filter` and the caller's `allowed` check, then skipping `start` matches and returning at
/// most `limit` (0 = all).
pub fn list_tasks(
    dir: &TaskDir,
    filter: &TaskListFilter,
    start: u64,
    limit: u64,
    allowed: impl Fn(&TaskListInfo) -> bool,
) -> Result<TaskListPage, Error> {
    let mut tasks = Vec::new();
    let mut matched = 0u64;
    let mut sources = vec![read_active_tasks(dir)?];
    let archives = if filter.running {
        Vec::new()
    } else {
        archive_files(dir)
    };
    let mut archives = archives.into_iter();
    'outer: loop {
        let Some(list) = sources.pop() else {
            match archives.next() {
                Some(path) => {
                    sources.push(read_list_file(&path)?);
                    continue;
                }
                None => break,
            }
        };
        for info in list.into_iter().rev() {
            match judge(&info, filter) {
                Verdict::Stop => break 'outer,
                Verdict::Skip => continue,
                Verdict::Take => {}
            }
            if !allowed(&info) {
                continue;
            }
            matched += 1;
            if matched <= start {
                continue;
            }
            tasks.push(info);
            if limit > 0 && tasks.len() as u64 >= limit {
                break 'outer;
            }
        }
    }
    let full = limit > 0 && tasks.len() as u64 == limit;
    let total = start + tasks.len() as u64 + u64::from(full);
    Ok(TaskListPage { tasks, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upid(task: u64, start: i64, wtype: &str, id: Option<&str>, auth: &str) -> UPID {
        UPID::from_parts(
            "pbs",
            0x7fff_fff0, // no such process
            0xA1B3,
            task,
            start,
            wtype,
            id.map(str::to_string),
            auth.parse().unwrap(),
        )
        .unwrap()
    }

    fn finished(u: UPID, state: TaskState) -> TaskListInfo {
        TaskListInfo {
            upid: u,
            state: Some(state),
        }
    }

    #[test]
    fn list_lines() {
        let u =
            "UPID:pbs:00000F2A:0000A1B3:00000003:66603A80:backup:store1\\x3ahost-elsa:root@pam:";
        let running = TaskListInfo::parse_line(u).unwrap();
        assert_eq!(running.state, None);
        assert_eq!(running.to_line(), format!("{u}\n"));

        for (text, state) in [
            (
                "OK",
                TaskState::Ok {
                    endtime: 0x66603A90,
                },
            ),
            (
                "WARNINGS: 2",
                TaskState::Warning {
                    count: 2,
                    endtime: 0x66603A90,
                },
            ),
            (
                "unknown",
                TaskState::Unknown {
                    endtime: 0x66603A90,
                },
            ),
            (
                "disk full: x",
                TaskState::Error {
                    message: "disk full: x".into(),
                    endtime: 0x66603A90,
                },
            ),
        ] {
            let line = format!("{u} 66603A90 {text}");
            let info = TaskListInfo::parse_line(&line).unwrap();
            assert_eq!(info.state.as_ref(), Some(&state));
            assert_eq!(info.to_line(), format!("{line}\n"));
        }
        let info = TaskListInfo::parse_line(&format!("{u} 66603a90 ERROR: bad")).unwrap();
        assert_eq!(
            info.state,
            Some(TaskState::Error {
                message: "bad".into(),
                endtime: 0x66603A90
            })
        );
        assert!(TaskListInfo::parse_line(&format!("{u} 66603A90")).is_err());
        assert!(TaskListInfo::parse_line(&format!("{u} xyz OK")).is_err());
        assert!(TaskListInfo::parse_line("UPID:garbage").is_err());
    }

    #[test]
    fn store_matching() {
        let m = |t: &str, id: &str, s: &str| {
            task_matches_store(&upid(0, 0, t, Some(id), "root@pam"), s)
        };
        assert!(m("backup", "store1:host/elsa", "store1"));
        assert!(!m("backup", "store10:host/elsa", "store1"));
        assert!(m("garbage_collection", "store1", "store1"));
        assert!(m("prune", "store1::vm/100", "store1"));
        assert!(m("verificationjob", "store1:v-1", "store1"));
        assert!(m("verify", "store1", "store1"));
        assert!(m("verify_group", "store1:/vm/100", "store1"));
        assert!(!m("verify", "store2", "store1"));
        assert!(m("syncjob", "-:src:dst::s-1a2b", "dst"));
        assert!(!m("syncjob", "-:src:dst::s-1a2b", "src"));
        assert!(!m("reader", "store1:vm/100/665F2E00", "store1"));
        assert!(!task_matches_store(
            &upid(0, 0, "backup", None, "root@pam"),
            "store1"
        ));
    }

    /// Archive layout: archive.2.zst (oldest), archive.1, archive (newest).
    fn populated_dir() -> (tempfile::TempDir, TaskDir, Vec<TaskListInfo>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TaskDir::new(tmp.path().join("tasks"));
        dir.create().unwrap();
        let all = vec![
            finished(
                upid(0, 100, "backup", Some("store1:host/a"), "root@pam"),
                TaskState::Ok { endtime: 110 },
            ),
            finished(
                upid(1, 200, "garbage_collection", Some("store2"), "user@pbs"),
                TaskState::Error {
                    message: "boom".into(),
                    endtime: 210,
                },
            ),
            finished(
                upid(2, 300, "prune", Some("store1::vm/100"), "user@pbs!tok"),
                TaskState::Warning {
                    count: 1,
                    endtime: 310,
                },
            ),
            finished(
                upid(3, 400, "backup", Some("store2:vm/1"), "root@pam"),
                TaskState::Unknown { endtime: 410 },
            ),
            finished(
                upid(4, 500, "verify", Some("store1"), "root@pam"),
                TaskState::Ok { endtime: 510 },
            ),
        ];
        let text =
            |items: &[TaskListInfo]| items.iter().map(TaskListInfo::to_line).collect::<String>();
        let compressed = zstd::encode_all(text(&all[0..2]).as_bytes(), 3).unwrap();
        std::fs::write(dir.root().join("archive.2.zst"), compressed).unwrap();
        std::fs::write(dir.root().join("archive.1"), text(&all[2..3])).unwrap();
        std::fs::write(
            dir.archive_path(),
            format!("{}garbage line\n", text(&all[3..5])),
        )
        .unwrap();
        (tmp, dir, all)
    }

    fn ids(page: &TaskListPage) -> Vec<u64> {
        page.tasks.iter().map(|t| t.upid.task_id).collect()
    }

    #[test]
    fn listing_order_and_paging() {
        let (_tmp, dir, all) = populated_dir();
        let none = TaskListFilter::default();
        let page = list_tasks(&dir, &none, 0, 0, |_| true).unwrap();
        assert_eq!(ids(&page), [4, 3, 2, 1, 0]);
        assert_eq!(page.tasks[4], all[0]);
        assert_eq!(page.total, 5);

        let page = list_tasks(&dir, &none, 1, 2, |_| true).unwrap();
        assert_eq!(ids(&page), [3, 2]);
        assert_eq!(page.total, 4); // page full: one more may follow
        let page = list_tasks(&dir, &none, 4, 2, |_| true).unwrap();
        assert_eq!(ids(&page), [0]);
        assert_eq!(page.total, 5);

        let page = list_tasks(&dir, &none, 0, 0, |t| {
            t.upid.auth_id.to_string() == "root@pam"
        })
        .unwrap();
        assert_eq!(ids(&page), [4, 3, 0]);
    }

    #[test]
    fn listing_filters() {
        let (_tmp, dir, _) = populated_dir();
        let list = |f: TaskListFilter| ids(&list_tasks(&dir, &f, 0, 0, |_| true).unwrap());
        assert_eq!(
            list(TaskListFilter {
                typefilter: Some("backup".into()),
                ..Default::default()
            }),
            [3, 0]
        );
        assert_eq!(
            list(TaskListFilter {
                userfilter: Some("user@pbs".into()),
                ..Default::default()
            }),
            [2, 1]
        );
        assert_eq!(
            list(TaskListFilter {
                errors: true,
                ..Default::default()
            }),
            [3, 2, 1]
        );
        assert_eq!(
            list(TaskListFilter {
                statusfilter: Some(vec![TaskStateType::Warning, TaskStateType::Unknown]),
                ..Default::default()
            }),
            [3, 2]
        );
        assert_eq!(
            list(TaskListFilter {
                store: Some("store1".into()),
                ..Default::default()
            }),
            [4, 2, 0]
        );
        assert_eq!(
            list(TaskListFilter {
                until: Some(300),
                ..Default::default()
            }),
            [2, 1, 0]
        );
        // since: tasks started earlier are skipped, the scan stops at one that ended earlier
        assert_eq!(
            list(TaskListFilter {
                since: Some(300),
                ..Default::default()
            }),
            [4, 3, 2]
        );
        assert_eq!(
            list(TaskListFilter {
                since: Some(305),
                ..Default::default()
            }),
            [4, 3]
        );
        assert!(list(TaskListFilter {
            running: true,
            ..Default::default()
        })
        .is_empty());
    }

    #[test]
    fn stale_entries_and_legacy_index_move_to_the_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TaskDir::new(tmp.path().join("tasks"));
        dir.create().unwrap();
        let done = upid(0, 1000, "backup", Some("s:host/a"), "root@pam");
        let crashed = upid(1, 1001, "backup", Some("s:host/b"), "root@pam");
        let no_log = upid(2, 1002, "prune", Some("s"), "root@pam");
        let legacy = upid(3, 900, "garbage_collection", Some("s"), "root@pam");
        for (u, content) in [
            (
                &done,
                "2024-06-05T16:24:30+02:00: start\n2024-06-05T16:24:36+02:00: TASK OK\n",
            ),
            (
                &crashed,
                "2024-06-05T16:24:30+02:00: start\n2024-06-05T16:24:40+02:00: working\n",
            ),
        ] {
            std::fs::create_dir_all(dir.log_path(u).parent().unwrap()).unwrap();
            std::fs::write(dir.log_path(u), content).unwrap();
        }
        std::fs::write(dir.active_path(), format!("{done}\n{crashed}\n{no_log}\n")).unwrap();
        std::fs::write(dir.legacy_index_path(), format!("{legacy} 00000390 OK\n")).unwrap();

        let page = list_tasks(&dir, &TaskListFilter::default(), 0, 0, |_| true).unwrap();
        let t = |s| pbs_api_types::time::parse_rfc3339(s).unwrap();
        let states: Vec<_> = page
            .tasks
            .iter()
            .map(|i| (i.upid.task_id, i.state.clone().unwrap()))
            .collect();
        // one batch sorted by end time, read bottom-up
        assert_eq!(
            states,
            [
                (
                    1,
                    TaskState::Unknown {
                        endtime: t("2024-06-05T16:24:40+02:00")
                    }
                ),
                (
                    0,
                    TaskState::Ok {
                        endtime: t("2024-06-05T16:24:36+02:00")
                    }
                ),
                (2, TaskState::Unknown { endtime: 1002 }),
                (3, TaskState::Ok { endtime: 0x390 }),
            ]
        );
        assert_eq!(std::fs::read_to_string(dir.active_path()).unwrap(), "");
        assert!(!dir.legacy_index_path().exists());
        let archive = std::fs::read_to_string(dir.archive_path()).unwrap();
        assert_eq!(archive.lines().count(), 4);
        assert!(
            archive.starts_with(&format!(
                "{legacy} 00000390 OK\n{no_log} 000003EA unknown\n"
            )),
            "{archive}"
        );
        use std::os::unix::fs::PermissionsExt;
        for p in [dir.active_path(), dir.archive_path(), dir.lock_path()] {
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o660,
                "{p:?}"
            );
        }
    }
}
