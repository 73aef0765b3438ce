//! Worker tasks: per-task log files under `<log dir>/tasks/<XX>/<UPID>`, the `active` and
//! `archive` task lists, abort requests and final task states.

pub mod list;
pub mod procfs;
pub mod state;
pub mod taskdir;
pub mod worker;

pub use list::{list_tasks, update_active_list, TaskListFilter, TaskListInfo, TaskListPage};
pub use state::{TaskState, TaskStateType};
pub use taskdir::{TaskDir, TaskLogPage};
pub use worker::{
    abort_local_worker, new_upid, worker_is_active, worker_is_active_local, WorkerTask,
};
