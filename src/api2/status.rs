//! `/api2/json/status`: datastore usage for the dashboard.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, format_err, Error};
use http::Method;
use serde_json::{json, Map, Value};

use pbs_api_types::Authid;
use pbs_config::datastore::{DataStoreConfig, Operation, DATASTORE_TYPE};
use pbs_config::privileges::{
    PRIV_DATASTORE_AUDIT, PRIV_DATASTORE_BACKUP, PRIV_DATASTORE_MODIFY, PRIV_DATASTORE_READ,
};
use pbs_config::CachedUserInfo;
use pbs_rest_server::router::RouteError;
use pbs_rest_server::{ApiMethod, HttpError, Permission, Router, RpcEnv};

/// Privileges that give a full usage entry.
const FULL_ENTRY_PRIVS: u64 = PRIV_DATASTORE_AUDIT | PRIV_DATASTORE_BACKUP;

/// Privileges below a datastore (namespaces) that make it show up with its name only.
const NAMESPACE_PRIVS: u64 =
    PRIV_DATASTORE_AUDIT | PRIV_DATASTORE_MODIFY | PRIV_DATASTORE_READ | PRIV_DATASTORE_BACKUP;

/// Space of a file system in bytes, as reported by `statvfs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsUsage {
    /// Size of the file system.
    pub total: u64,
    /// Blocks in use (including the reserved ones).
    pub used: u64,
    /// Space available to unprivileged users.
    pub avail: u64,
}

/// `statvfs` of `path`: `total = blocks·frsize`, `used = (blocks − bfree)·frsize`,
/// `avail = bavail·frsize` (`frsize` falls back to `bsize` when 0).
pub fn fs_usage(path: &Path) -> Result<FsUsage, Error> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format_err!("path {path:?} contains a NUL byte"))?;
    // SAFETY: statvfs is plain data; statvfs() fills it from a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers for the duration of the call.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        let err = std::io::Error::last_os_error();
        bail!("statvfs of {path:?} failed - {err}");
    }
    let frsize = if stat.f_frsize != 0 {
        stat.f_frsize as u64
    } else {
        stat.f_bsize as u64
    };
    let blocks = stat.f_blocks as u64;
    let bfree = stat.f_bfree as u64;
    let bavail = stat.f_bavail as u64;
    Ok(FsUsage {
        total: blocks.saturating_mul(frsize),
        used: blocks.saturating_sub(bfree).saturating_mul(frsize),
        avail: bavail.saturating_mul(frsize),
    })
}

fn internal(err: Error) -> HttpError {
    HttpError::bad_request(format!("{err:#}"))
}

/// The usage entry of one datastore the caller may fully see.
///
/// The month history (`history`, `history-start`, `history-delta`, `estimated-full-date`)
/// comes from the RRD database, which this server does not keep yet: those members are
/// left out, as they are for datastores without RRD data.
fn usage_entry(store: &DataStoreConfig) -> Value {
    let mut entry = Map::new();
    entry.insert("store".into(), Value::from(store.name.clone()));
    let result = (|| -> Result<(FsUsage, Value), Error> {
        store.check_maintenance(Operation::Read)?;
        let base = Path::new(&store.path);
        // Opening checks that the chunk store is there, as a lookup would.
        pbs_datastore::ChunkStore::open(&store.name, base, Default::default())?;
        let usage = fs_usage(base)?;
        let gc_status = pbs_datastore::load_gc_status(base)?;
        Ok((usage, serde_json::to_value(gc_status)?))
    })();
    match result {
        Ok((usage, gc_status)) => {
            entry.insert("total".into(), Value::from(usage.total));
            entry.insert("used".into(), Value::from(usage.used));
            entry.insert("avail".into(), Value::from(usage.avail));
            entry.insert("gc-status".into(), gc_status);
        }
        Err(err) => {
            entry.insert("error".into(), Value::from(format!("{err:#}")));
        }
    }
    Value::Object(entry)
}

/// The `status/datastore-usage` list for `auth_id`.
pub fn datastore_usage(auth_id: &Authid) -> Result<Vec<Value>, Error> {
    let (config, _digest) = pbs_config::datastore::config()?;
    let user_info = CachedUserInfo::new()?;
    let stores: Vec<DataStoreConfig> = config.convert_to_typed_array(DATASTORE_TYPE)?;
    let mut list = Vec::with_capacity(stores.len());
    for store in stores {
        let path = ["datastore", store.name.as_str()];
        let privs = user_info.lookup_privs(auth_id, &path);
        if privs & FULL_ENTRY_PRIVS != 0 {
            list.push(usage_entry(&store));
        } else if user_info.any_privs_below(auth_id, &path, NAMESPACE_PRIVS) {
            list.push(json!({ "store": store.name }));
        }
    }
    Ok(list)
}

/// Adds this module's routes to `router`.
pub fn register(router: Router) -> Result<Router, RouteError> {
    router.route(
        "/status/datastore-usage",
        Method::GET,
        ApiMethod::new(|env: RpcEnv, _params| async move {
            let auth_id = env
                .auth_id()
                .cloned()
                .ok_or_else(|| HttpError::internal("no authenticated user"))?;
            let list = tokio::task::spawn_blocking(move || datastore_usage(&auth_id))
                .await
                .map_err(|err| HttpError::internal(format!("usage task failed - {err}")))?
                .map_err(internal)?;
            Ok(Value::Array(list))
        })
        .permission(Permission::Anybody)
        .description("List datastore usage."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_usage_of_root_is_consistent() {
        let usage = fs_usage(Path::new("/")).unwrap();
        assert!(usage.total > 0);
        assert!(usage.used <= usage.total);
        assert!(usage.avail <= usage.total);
        assert!(fs_usage(Path::new("/nonexistent/dir/for/sure")).is_err());
    }
}
