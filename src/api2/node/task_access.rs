//! Who may see a task: its owner, the owning user of its token, task auditors, or holders of
//! the datastore privilege matching the kind of job.

use pbs_api_types::{Authid, UPID};
use pbs_config::privileges::{
    PRIV_DATASTORE_BACKUP, PRIV_DATASTORE_MODIFY, PRIV_DATASTORE_VERIFY, PRIV_REMOTE_READ,
    PRIV_SYS_AUDIT,
};
use pbs_config::CachedUserInfo;

/// The caller may not see the task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task access not allowed")]
pub struct TaskAccessError;

/// Checks that `auth_id` may read status and log of `upid`.
pub fn check_task_access(
    info: &CachedUserInfo,
    auth_id: &Authid,
    upid: &UPID,
) -> Result<(), TaskAccessError> {
    if info.is_superuser(auth_id) || *auth_id == upid.auth_id {
        return Ok(());
    }
    // A user sees the tasks its own tokens started.
    if !auth_id.is_token() && upid.auth_id.is_token() && upid.auth_id.user() == auth_id.user() {
        return Ok(());
    }
    if info.lookup_privs(auth_id, &["system", "tasks"]) & PRIV_SYS_AUDIT != 0 {
        return Ok(());
    }
    if job_privilege_allows(info, auth_id, upid) {
        return Ok(());
    }
    Err(TaskAccessError)
}

fn has_all(info: &CachedUserInfo, auth_id: &Authid, path: &[&str], privs: u64) -> bool {
    info.lookup_privs(auth_id, path) & privs == privs
}

/// ACL path components of `/datastore/<store>[/<ns…>]`.
fn datastore_path<'a>(store: &'a str, ns: Option<&'a str>) -> Vec<&'a str> {
    let mut path = vec!["datastore", store];
    if let Some(ns) = ns {
        path.extend(ns.split('/').filter(|c| !c.is_empty()));
    }
    path
}

fn job_privilege_allows(info: &CachedUserInfo, auth_id: &Authid, upid: &UPID) -> bool {
    let Some(id) = upid.worker_id.as_deref() else {
        return false;
    };
    let parts: Vec<&str> = id.split(':').collect();
    match upid.worker_type.as_str() {
        "verificationjob" => has_all(
            info,
            auth_id,
            &datastore_path(parts[0], None),
            PRIV_DATASTORE_VERIFY,
        ),
        "garbage_collection" => has_all(
            info,
            auth_id,
            &datastore_path(id, None),
            PRIV_DATASTORE_MODIFY,
        ),
        "prune" | "prunejob" => {
            let ns = parts.get(1).copied().filter(|ns| !ns.is_empty());
            has_all(
                info,
                auth_id,
                &datastore_path(parts[0], ns),
                PRIV_DATASTORE_MODIFY,
            )
        }
        "syncjob" => sync_job_allows(info, auth_id, &parts),
        _ => false,
    }
}

/// The pull privileges of a sync job `<remote or ->:<remote-store>:<store>:<ns>:<job-id>`.
fn sync_job_allows(info: &CachedUserInfo, auth_id: &Authid, parts: &[&str]) -> bool {
    let [remote, remote_store, store, ns, ..] = parts else {
        return false;
    };
    let ns = Some(*ns).filter(|ns| !ns.is_empty());
    if !has_all(
        info,
        auth_id,
        &datastore_path(store, ns),
        PRIV_DATASTORE_BACKUP,
    ) {
        return false;
    }
    let source_ok = if *remote == "-" {
        has_all(
            info,
            auth_id,
            &datastore_path(remote_store, None),
            PRIV_DATASTORE_BACKUP,
        )
    } else {
        has_all(
            info,
            auth_id,
            &["remote", remote, remote_store],
            PRIV_REMOTE_READ,
        )
    };
    // Whether the job removes vanished groups (which also needs Datastore.Prune) is not part
    // of the worker id, so the privileges of a plain pull decide.
    source_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbs_config::acl::AclTree;

    fn info(acl: &str, users: &[&str]) -> CachedUserInfo {
        let mut cfg = String::new();
        for user in users {
            cfg.push_str(&format!("user: {user}\n\n"));
        }
        let user_cfg = pbs_config::user::parse("user.cfg", &cfg).unwrap();
        let tree = AclTree::parse("acl.cfg", acl).unwrap();
        CachedUserInfo::from_parts(user_cfg, tree)
    }

    fn upid(wtype: &str, id: Option<&str>, auth: &str) -> UPID {
        UPID::from_parts(
            "pbs",
            0x1234,
            0xA1B3,
            0,
            0x66603A80,
            wtype,
            id.map(str::to_string),
            auth.parse().unwrap(),
        )
        .unwrap()
    }

    fn id(s: &str) -> Authid {
        s.parse().unwrap()
    }

    #[test]
    fn owner_token_owner_and_auditor() {
        let info = info(
            "acl:1:/system/tasks:auditor@pbs:Audit\n",
            &["u1@pbs", "u2@pbs", "auditor@pbs"],
        );
        let own = upid("backup", Some("store1:host/a"), "u1@pbs");
        assert!(check_task_access(&info, &id("u1@pbs"), &own).is_ok());
        assert!(check_task_access(&info, &id("u2@pbs"), &own).is_err());
        assert!(check_task_access(&info, &id("auditor@pbs"), &own).is_ok());
        assert!(check_task_access(&info, &id("root@pam"), &own).is_ok());

        let by_token = upid("backup", Some("store1:host/a"), "u1@pbs!tok");
        assert!(check_task_access(&info, &id("u1@pbs"), &by_token).is_ok());
        assert!(check_task_access(&info, &id("u1@pbs!tok"), &by_token).is_ok());
        // A token does not see its sibling token's or its user's tasks.
        assert!(check_task_access(&info, &id("u1@pbs!other"), &by_token).is_err());
        assert!(check_task_access(&info, &id("u1@pbs!tok"), &own).is_err());
        assert_eq!(
            check_task_access(&info, &id("u2@pbs"), &own)
                .unwrap_err()
                .to_string(),
            "task access not allowed"
        );
    }

    #[test]
    fn job_privileges() {
        let info = info(
            "acl:1:/datastore/s1:ds@pbs:DatastoreAdmin\n\
             acl:1:/datastore/s2:verifier@pbs:DatastoreReader\n\
             acl:1:/datastore/s1/a:nsadmin@pbs:DatastoreAdmin\n\
             acl:1:/remote/r1/src:ds@pbs:RemoteSyncOperator\n",
            &["ds@pbs", "verifier@pbs", "nsadmin@pbs"],
        );
        let gc = upid("garbage_collection", Some("s1"), "root@pam");
        assert!(check_task_access(&info, &id("ds@pbs"), &gc).is_ok());
        assert!(check_task_access(&info, &id("verifier@pbs"), &gc).is_err());

        let verify_job = upid("verificationjob", Some("s2:v-1"), "root@pam");
        assert!(check_task_access(&info, &id("verifier@pbs"), &verify_job).is_ok());
        assert!(check_task_access(&info, &id("nsadmin@pbs"), &verify_job).is_err());

        let prune_ns = upid("prunejob", Some("s1:a"), "root@pam");
        assert!(check_task_access(&info, &id("nsadmin@pbs"), &prune_ns).is_ok());
        let prune_root = upid("prunejob", Some("s1"), "root@pam");
        assert!(check_task_access(&info, &id("nsadmin@pbs"), &prune_root).is_err());
        assert!(check_task_access(&info, &id("ds@pbs"), &prune_root).is_ok());

        let sync = upid("syncjob", Some("r1:src:s1::s-1"), "root@pam");
        assert!(check_task_access(&info, &id("ds@pbs"), &sync).is_ok());
        let sync_other = upid("syncjob", Some("r2:src:s1::s-1"), "root@pam");
        assert!(check_task_access(&info, &id("ds@pbs"), &sync_other).is_err());

        // Other worker types need an explicit rule.
        let backup = upid("backup", Some("s1:host/a"), "root@pam");
        assert!(check_task_access(&info, &id("ds@pbs"), &backup).is_err());
    }
}
