//! Tasks land under `$PBS_BASE_DIR/var/log/proxmox-backup/tasks` (single test: the
//! environment is process-global).

use std::time::{Duration, Instant};

use pbs_api_types::UPID;
use pbs_tasks::{worker_is_active_local, TaskDir, WorkerTask};

#[test]
fn default_task_directory_follows_base_dir() {
    let base = tempfile::tempdir().unwrap();
    std::env::set_var(pbs_buildcfg::BASE_DIR_ENV, base.path());

    let upid: UPID =
        WorkerTask::spawn("logrotate", None, "root@pam".parse().unwrap(), false, |w| {
            w.log_message("rotating");
            Ok(())
        })
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while worker_is_active_local(&upid) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }

    let tasks = base.path().join("var/log/proxmox-backup/tasks");
    assert_eq!(TaskDir::default_location().root(), tasks);
    let log = tasks.join(upid.log_subdir()).join(upid.to_string());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.ends_with(": TASK OK\n"), "{text}");
    let archive = std::fs::read_to_string(tasks.join("archive")).unwrap();
    assert!(archive.starts_with(&format!("{upid} ")), "{archive}");
    assert!(archive.ends_with(" OK\n"), "{archive}");
}
