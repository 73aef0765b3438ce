//! Worker tasks: a task log, an entry in the active list, an abort flag, and the final
//! status line.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use anyhow::{bail, Context, Error};

use pbs_api_types::{Authid, UPID};

use crate::procfs;
use crate::state::TaskState;
use crate::taskdir::TaskDir;

/// Error of a task that noticed an abort request.
pub const ABORT_MESSAGE: &str = "abort requested - aborting task";

/// Workers of this process that have not finished yet, by UPID string.
fn registry() -> MutexGuard<'static, HashMap<String, Arc<WorkerTask>>> {
    static WORKERS: OnceLock<Mutex<HashMap<String, Arc<WorkerTask>>>> = OnceLock::new();
    WORKERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn next_task_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

fn is_own_process(upid: &UPID) -> bool {
    procfs::self_pid_pstart().is_ok_and(|(pid, pstart)| upid.pid == pid && upid.pstart == pstart)
}

/// Whether the task runs in this process.
pub fn worker_is_active_local(upid: &UPID) -> bool {
    is_own_process(upid) && registry().contains_key(&upid.to_string())
}

/// Whether the task still runs: in this process per the worker list, otherwise as long as
/// its process (pid + start time) exists.
pub fn worker_is_active(upid: &UPID) -> bool {
    if is_own_process(upid) {
        registry().contains_key(&upid.to_string())
    } else {
        procfs::process_is_running(upid.pid, upid.pstart)
    }
}

/// Asks a worker of this process to abort; returns false if it is not running here.
pub fn abort_local_worker(upid: &UPID) -> bool {
    let worker = registry().get(&upid.to_string()).cloned();
    match worker {
        Some(worker) if is_own_process(upid) => {
            worker.request_abort();
            true
        }
        _ => false,
    }
}

/// Asks every worker of this process to abort (shutdown).
pub fn abort_local_workers() {
    let workers: Vec<_> = registry().values().cloned().collect();
    for worker in workers {
        worker.request_abort();
    }
}

/// Number of workers of this process that are still running.
pub fn running_worker_count() -> usize {
    registry().len()
}

/// Creates a UPID for a new task of this process.
pub fn new_upid(
    worker_type: &str,
    worker_id: Option<String>,
    auth_id: Authid,
) -> Result<UPID, Error> {
    let (pid, pstart) = procfs::self_pid_pstart()?;
    let node = procfs::nodename()?;
    Ok(UPID::from_parts(
        &node,
        pid,
        pstart,
        next_task_id(),
        pbs_api_types::time::epoch_now(),
        worker_type,
        worker_id,
        auth_id,
    )?)
}

struct LogState {
    file: File,
    warnings: u64,
}

/// A running task of this process.
pub struct WorkerTask {
    upid: UPID,
    dir: TaskDir,
    to_stdout: bool,
    abort_requested: AtomicBool,
    abort_notify: tokio::sync::Notify,
    finished: AtomicBool,
    log: Mutex<LogState>,
}

impl std::fmt::Debug for WorkerTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WorkerTask({})", self.upid)
    }
}

impl WorkerTask {
    /// Starts a task in the default task directory: creates its log, registers it and adds
    /// it to the active list. The caller must end it with [`Self::log_result`].
    pub fn new(
        worker_type: &str,
        worker_id: Option<String>,
        auth_id: Authid,
        to_stdout: bool,
    ) -> Result<Arc<Self>, Error> {
        Self::new_in(
            &TaskDir::default_location(),
            worker_type,
            worker_id,
            auth_id,
            to_stdout,
        )
    }

    /// [`Self::new`] in an explicit task directory.
    pub fn new_in(
        dir: &TaskDir,
        worker_type: &str,
        worker_id: Option<String>,
        auth_id: Authid,
        to_stdout: bool,
    ) -> Result<Arc<Self>, Error> {
        let upid = new_upid(worker_type, worker_id, auth_id)?;
        dir.create()?;
        let path = dir.log_path(&upid);
        if let Some(subdir) = path.parent() {
            dir.create_dir(subdir)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("unable to create task log {path:?}"))?;
        dir.chown(&file)?;

        let worker = Arc::new(Self {
            upid,
            dir: dir.clone(),
            to_stdout,
            abort_requested: AtomicBool::new(false),
            abort_notify: tokio::sync::Notify::new(),
            finished: AtomicBool::new(false),
            log: Mutex::new(LogState { file, warnings: 0 }),
        });
        registry().insert(worker.upid.to_string(), Arc::clone(&worker));
        if let Err(err) = crate::list::update_active_list(dir, Some(&worker.upid)) {
            registry().remove(&worker.upid.to_string());
            return Err(err);
        }
        Ok(worker)
    }

    /// Runs `f` on a new thread as task `worker_type`/`worker_id` and returns the UPID
    /// string right away; the task ends with the closure's result.
    pub fn spawn<F>(
        worker_type: &str,
        worker_id: Option<String>,
        auth_id: Authid,
        to_stdout: bool,
        f: F,
    ) -> Result<String, Error>
    where
        F: FnOnce(Arc<WorkerTask>) -> Result<(), Error> + Send + 'static,
    {
        Self::spawn_in(
            &TaskDir::default_location(),
            worker_type,
            worker_id,
            auth_id,
            to_stdout,
            f,
        )
    }

    /// [`Self::spawn`] in an explicit task directory.
    pub fn spawn_in<F>(
        dir: &TaskDir,
        worker_type: &str,
        worker_id: Option<String>,
        auth_id: Authid,
        to_stdout: bool,
        f: F,
    ) -> Result<String, Error>
    where
        F: FnOnce(Arc<WorkerTask>) -> Result<(), Error> + Send + 'static,
    {
        let worker = Self::new_in(dir, worker_type, worker_id, auth_id, to_stdout)?;
        let upid = worker.upid.to_string();
        let task = Arc::clone(&worker);
        let spawned = std::thread::Builder::new()
            .name(format!("worker-{}", worker.upid.task_id))
            .spawn(move || {
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(Arc::clone(&task))))
                        .unwrap_or_else(|panic| Err(panic_error(panic)));
                task.log_result(&result);
            });
        if let Err(err) = spawned {
            let err = Error::from(err).context("unable to start worker thread");
            worker.log_result(&Err(anyhow::format_err!("{err:#}")));
            return Err(err);
        }
        Ok(upid)
    }

    /// Like [`Self::spawn`] for async work: the future runs on the current tokio runtime.
    pub fn spawn_async<F, Fut>(
        worker_type: &str,
        worker_id: Option<String>,
        auth_id: Authid,
        to_stdout: bool,
        f: F,
    ) -> Result<String, Error>
    where
        F: FnOnce(Arc<WorkerTask>) -> Fut,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        Self::spawn_async_in(
            &TaskDir::default_location(),
            worker_type,
            worker_id,
            auth_id,
            to_stdout,
            f,
        )
    }

    /// [`Self::spawn_async`] in an explicit task directory.
    pub fn spawn_async_in<F, Fut>(
        dir: &TaskDir,
        worker_type: &str,
        worker_id: Option<String>,
        auth_id: Authid,
        to_stdout: bool,
        f: F,
    ) -> Result<String, Error>
    where
        F: FnOnce(Arc<WorkerTask>) -> Fut,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let runtime =
            tokio::runtime::Handle::try_current().context("spawn_async needs a tokio runtime")?;
        let worker = Self::new_in(dir, worker_type, worker_id, auth_id, to_stdout)?;
        let upid = worker.upid.to_string();
        let future = f(Arc::clone(&worker));
        runtime.spawn(async move {
            let result = match tokio::spawn(future).await {
                Ok(result) => result,
                Err(join_error) if join_error.is_panic() => {
                    Err(panic_error(join_error.into_panic()))
                }
                Err(join_error) => Err(Error::from(join_error)),
            };
            worker.log_result(&result);
        });
        Ok(upid)
    }

    /// The task's id.
    pub fn upid(&self) -> &UPID {
        &self.upid
    }

    /// Appends `<local RFC 3339 time>: <msg>` to the log (and echoes it if requested).
    pub fn log_message(&self, msg: impl AsRef<str>) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        self.write_line(&mut log, msg.as_ref());
    }

    /// Logs `WARN: <msg>` and counts it.
    pub fn log_warning(&self, msg: impl AsRef<str>) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.warnings += 1;
        self.write_line(&mut log, &format!("WARN: {}", msg.as_ref()));
    }

    fn write_line(&self, log: &mut LogState, msg: &str) {
        let now = pbs_api_types::time::epoch_now();
        let stamp = pbs_api_types::time::epoch_to_rfc3339(now)
            .unwrap_or_else(|_| "1970-01-01T00:00:00+00:00".to_string());
        let line = format!("{stamp}: {msg}\n");
        // A failing log write must not kill the task; report it where someone may see it.
        if let Err(err) = log.file.write_all(line.as_bytes()) {
            eprintln!("unable to write task log of {}: {err}", self.upid);
        }
        if self.to_stdout {
            println!("{msg}");
        }
    }

    /// Number of warnings logged so far.
    pub fn warning_count(&self) -> u64 {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).warnings
    }

    /// Whether an abort was requested.
    pub fn abort_requested(&self) -> bool {
        self.abort_requested.load(Ordering::SeqCst)
    }

    /// Requests the task to abort (it must check [`Self::abort_requested`] or
    /// [`Self::fail_on_abort`], or await [`Self::abort_future`]).
    pub fn request_abort(&self) {
        if !self.abort_requested.swap(true, Ordering::SeqCst) {
            self.log_message("received abort request ...");
        }
        self.abort_notify.notify_waiters();
    }

    /// Fails with [`ABORT_MESSAGE`] once an abort was requested.
    pub fn fail_on_abort(&self) -> Result<(), Error> {
        if self.abort_requested() {
            bail!(ABORT_MESSAGE);
        }
        Ok(())
    }

    /// Resolves once an abort is requested.
    pub async fn abort_future(&self) {
        loop {
            let notified = self.abort_notify.notified();
            if self.abort_requested() {
                return;
            }
            notified.await;
        }
    }

    /// The final state for `result` (errors win over warnings).
    pub fn create_state(&self, result: &Result<(), Error>) -> TaskState {
        let endtime = pbs_api_types::time::epoch_now();
        match result {
            Err(err) => TaskState::Error {
                message: err.to_string(),
                endtime,
            },
            Ok(()) => match self.warning_count() {
                0 => TaskState::Ok { endtime },
                count => TaskState::Warning { count, endtime },
            },
        }
    }

    /// Ends the task: writes `TASK OK` / `TASK WARNINGS: n` / `TASK ERROR: ...`, leaves the
    /// worker list and moves the task to the archive. Only the first call has an effect.
    pub fn log_result(&self, result: &Result<(), Error>) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        let state = self.create_state(result);
        self.log_message(format!("TASK {}", state.log_text()));
        {
            let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            let _ = log.file.sync_data();
        }
        registry().remove(&self.upid.to_string());
        if let Err(err) = crate::list::update_active_list(&self.dir, None) {
            eprintln!(
                "unable to update the task list after {}: {err:#}",
                self.upid
            );
        }
    }
}

fn panic_error(panic: Box<dyn std::any::Any + Send>) -> Error {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    anyhow::format_err!("worker panicked: {msg}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::{list_tasks, TaskListFilter};
    use std::time::{Duration, Instant};

    fn root() -> Authid {
        "root@pam".parse().unwrap()
    }

    fn wait_done(upid: &UPID) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while worker_is_active_local(upid) {
            assert!(Instant::now() < deadline, "task {upid} did not finish");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn temp_dir() -> (tempfile::TempDir, TaskDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TaskDir::new(tmp.path().join("log/tasks"));
        (tmp, dir)
    }

    fn log_lines(dir: &TaskDir, upid: &UPID) -> Vec<String> {
        let text = std::fs::read_to_string(dir.log_path(upid)).unwrap();
        text.lines().map(str::to_string).collect()
    }

    /// Checks the time stamp prefix and returns the message part.
    fn message(line: &str) -> &str {
        assert_eq!(&line[25..27], ": ", "{line}");
        pbs_api_types::time::parse_rfc3339(&line[..25]).unwrap();
        &line[27..]
    }

    #[test]
    fn life_cycle_with_warnings() {
        let (_tmp, dir) = temp_dir();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let upid: UPID = WorkerTask::spawn_in(
            &dir,
            "backup",
            Some("store1:host/elsa".into()),
            root(),
            false,
            move |worker| {
                worker.log_message("first line");
                worker.log_warning("something odd");
                worker.log_message("multi\nline");
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                Ok(())
            },
        )
        .unwrap()
        .parse()
        .unwrap();
        assert!(upid
            .to_string()
            .contains(":backup:store1\\x3ahost-elsa:root@pam:"));
        started_rx.recv().unwrap();

        // while running
        assert!(worker_is_active(&upid));
        assert_eq!(
            std::fs::read_to_string(dir.active_path()).unwrap(),
            format!("{upid}\n")
        );
        let running = list_tasks(
            &dir,
            &TaskListFilter {
                running: true,
                ..Default::default()
            },
            0,
            0,
            |_| true,
        )
        .unwrap();
        assert_eq!(running.tasks.len(), 1);
        assert_eq!(running.tasks[0].upid, upid);
        assert_eq!(running.tasks[0].state, None);
        let page = dir.read_task_log(&upid, 2, 2).unwrap();
        assert_eq!(page.total, 4);
        assert_eq!(page.lines.len(), 2);
        assert_eq!(page.lines[0].0, 2);
        assert_eq!(message(&page.lines[0].1), "WARN: something odd");
        assert_eq!(page.lines[1], (3, page.lines[1].1.clone()));
        assert_eq!(message(&page.lines[1].1), "multi");

        go_tx.send(()).unwrap();
        wait_done(&upid);
        assert!(!worker_is_active(&upid));

        let lines = log_lines(&dir, &upid);
        assert_eq!(lines.len(), 5);
        assert_eq!(message(&lines[0]), "first line");
        assert_eq!(lines[3], "line");
        assert_eq!(message(&lines[4]), "TASK WARNINGS: 1");
        let all = dir.read_task_log(&upid, 0, 0).unwrap();
        assert_eq!(all.total, 5);
        assert_eq!(all.lines.len(), 5);
        assert_eq!(all.lines[0].0, 1);

        assert_eq!(std::fs::read_to_string(dir.active_path()).unwrap(), "");
        let archive = std::fs::read_to_string(dir.archive_path()).unwrap();
        let state = dir.read_task_state(&upid).unwrap();
        assert!(matches!(state, TaskState::Warning { count: 1, .. }));
        assert_eq!(
            archive,
            format!("{upid} {:08X} WARNINGS: 1\n", state.endtime())
        );
        assert!(dir
            .log_path(&upid)
            .starts_with(dir.root().join(upid.log_subdir())));
    }

    #[test]
    fn ok_and_error_results_and_restart() {
        let (_tmp, dir) = temp_dir();
        let ok: UPID = WorkerTask::spawn_in(
            &dir,
            "garbage_collection",
            Some("store1".into()),
            root(),
            false,
            |w| {
                w.log_message("collecting");
                Ok(())
            },
        )
        .unwrap()
        .parse()
        .unwrap();
        wait_done(&ok);
        let failed: UPID = WorkerTask::spawn_in(&dir, "prune", None, root(), false, |w| {
            w.log_warning("ignored because of the error");
            anyhow::bail!("datastore 'store1' is read-only")
        })
        .unwrap()
        .parse()
        .unwrap();
        wait_done(&failed);
        let panicked: UPID =
            WorkerTask::spawn_in(&dir, "verify", None, root(), false, |_| panic!("bug"))
                .unwrap()
                .parse()
                .unwrap();
        wait_done(&panicked);

        assert_eq!(message(log_lines(&dir, &ok).last().unwrap()), "TASK OK");
        assert_eq!(
            message(log_lines(&dir, &failed).last().unwrap()),
            "TASK ERROR: datastore 'store1' is read-only"
        );
        assert_eq!(
            message(log_lines(&dir, &panicked).last().unwrap()),
            "TASK ERROR: worker panicked: bug"
        );

        // "restart": a fresh view built from the files only
        let fresh = TaskDir::new(dir.root());
        let page = list_tasks(&fresh, &TaskListFilter::default(), 0, 0, |_| true).unwrap();
        let got: Vec<(UPID, String)> = page
            .tasks
            .iter()
            .map(|t| (t.upid.clone(), t.state.as_ref().unwrap().to_string()))
            .collect();
        assert_eq!(got.len(), 3);
        for (upid, text) in [
            (&ok, "OK"),
            (&failed, "datastore 'store1' is read-only"),
            (&panicked, "worker panicked: bug"),
        ] {
            assert!(got.contains(&(upid.clone(), text.to_string())), "{got:?}");
            let state = fresh.read_task_state(upid).unwrap();
            assert_eq!(state.to_string(), text);
            assert!(state.endtime() >= upid.starttime);
        }
        assert!(matches!(
            fresh.read_task_state(&failed).unwrap(),
            TaskState::Error { .. }
        ));
        let errors = list_tasks(
            &fresh,
            &TaskListFilter {
                errors: true,
                ..Default::default()
            },
            0,
            0,
            |_| true,
        )
        .unwrap();
        assert_eq!(errors.tasks.len(), 2);
    }

    #[test]
    fn abort_request() {
        let (_tmp, dir) = temp_dir();
        let upid: UPID =
            WorkerTask::spawn_in(&dir, "verify", Some("store1".into()), root(), false, |w| {
                loop {
                    w.fail_on_abort()?;
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .unwrap()
            .parse()
            .unwrap();
        assert!(worker_is_active_local(&upid));
        let mut other = upid.clone();
        other.task_id += 1000;
        assert!(!abort_local_worker(&other));
        assert!(abort_local_worker(&upid));
        wait_done(&upid);
        assert_eq!(
            message(log_lines(&dir, &upid).last().unwrap()),
            format!("TASK ERROR: {ABORT_MESSAGE}")
        );
        assert!(!abort_local_worker(&upid));
        assert_eq!(
            dir.read_task_state(&upid).unwrap().to_string(),
            ABORT_MESSAGE
        );
    }

    #[test]
    fn async_task_with_abort_future() {
        let (_tmp, dir) = temp_dir();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let upid: UPID = rt
            .block_on(async {
                WorkerTask::spawn_async_in(
                    &dir,
                    "sync",
                    Some("store1".into()),
                    root(),
                    false,
                    |w| async move {
                        w.log_message("waiting");
                        w.abort_future().await;
                        w.fail_on_abort()
                    },
                )
            })
            .unwrap()
            .parse()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(worker_is_active_local(&upid));
        assert!(abort_local_worker(&upid));
        wait_done(&upid);
        assert_eq!(
            message(log_lines(&dir, &upid).last().unwrap()),
            format!("TASK ERROR: {ABORT_MESSAGE}")
        );
        assert!(
            WorkerTask::spawn_async_in(&dir, "sync", None, root(), false, |_| async { Ok(()) })
                .is_err()
        );
    }

    #[test]
    fn upids_of_this_process() {
        let a = new_upid("backup", None, root()).unwrap();
        let b = new_upid("backup", None, root()).unwrap();
        assert_eq!(a.pid, std::process::id());
        assert!(b.task_id > a.task_id);
        assert_eq!(a.to_string().parse::<UPID>().unwrap(), a);
        assert!(new_upid("bad type", None, root()).is_err());
    }
}
