//! Users and ACLs loaded together: who is active and which privileges an auth id has where.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Error;
use thiserror::Error;

use pbs_api_types::Authid;

use crate::acl::{AclTree, RoleMap};
use crate::privileges::{role_privs, PRIVILEGES};
use crate::section_config::SectionConfigData;
use crate::user::{is_active_at, TOKEN_TYPE, USER_TYPE};

/// A permission check failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("missing permissions '{privileges}' on '/{path}'")]
pub struct PermissionError {
    /// Required privilege names joined with `&` (all of) or `|` (any of).
    pub privileges: String,
    /// The checked path without leading `/`.
    pub path: String,
}

/// Snapshot of `user.cfg` and `acl.cfg`.
#[derive(Clone, Debug)]
pub struct CachedUserInfo {
    user_cfg: Arc<SectionConfigData>,
    acl_tree: Arc<AclTree>,
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

struct CacheEntry {
    dir: PathBuf,
    stamps: [Option<FileStamp>; 2],
    generation: u64,
    info: Arc<CachedUserInfo>,
}

/// Identity of a config file version. Writers replace files by rename, so a new version has a
/// new inode; size and change time catch in-place edits by an administrator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    })
}

fn config_stamps(dir: &Path) -> [Option<FileStamp>; 2] {
    [
        file_stamp(&dir.join(crate::user::USER_CFG.name)),
        file_stamp(&dir.join(crate::acl::ACL_CFG.name)),
    ]
}

static CACHE: Mutex<Option<CacheEntry>> = Mutex::new(None);

/// Makes the next [`CachedUserInfo::new`] in this process reload the files.
pub fn invalidate_cache() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

fn optional_flags(value: &serde_json::Value) -> (Option<bool>, Option<i64>) {
    (
        value.get("enable").and_then(|v| v.as_bool()),
        value.get("expire").and_then(|v| v.as_i64()),
    )
}

impl CachedUserInfo {
    /// Permission data of the configuration directory, reloaded whenever `user.cfg` or
    /// `acl.cfg` changed on disk — also when another process (the other daemon, the manager)
    /// wrote them.
    pub fn new() -> Result<Arc<Self>, Error> {
        let generation = GENERATION.load(Ordering::SeqCst);
        let dir = pbs_buildcfg::config_dir();
        let stamps = config_stamps(&dir);
        let mut cache = CACHE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = cache.as_ref() {
            if entry.generation == generation && entry.dir == dir && entry.stamps == stamps {
                return Ok(Arc::clone(&entry.info));
            }
        }
        let info = Arc::new(Self::load_in(&dir)?);
        *cache = Some(CacheEntry {
            dir,
            stamps,
            generation,
            info: Arc::clone(&info),
        });
        Ok(info)
    }

    /// Loads `user.cfg` and `acl.cfg` from `dir` without caching.
    pub fn load_in(dir: &Path) -> Result<Self, Error> {
        let (user_cfg, _) = crate::user::config_in(dir)?;
        let (acl_tree, _) = crate::acl::config_in(dir)?;
        Ok(Self::from_parts(user_cfg, acl_tree))
    }

    /// Builds from already loaded data.
    pub fn from_parts(user_cfg: SectionConfigData, acl_tree: AclTree) -> Self {
        Self {
            user_cfg: Arc::new(user_cfg),
            acl_tree: Arc::new(acl_tree),
        }
    }

    /// The user configuration.
    pub fn user_cfg(&self) -> &SectionConfigData {
        &self.user_cfg
    }

    /// The ACL tree.
    pub fn acl_tree(&self) -> &AclTree {
        &self.acl_tree
    }

    /// Whether `authid` is the superuser `root@pam` (its tokens are not).
    pub fn is_superuser(&self, authid: &Authid) -> bool {
        !authid.is_token() && authid.user().is_root()
    }

    /// Whether the user (and for tokens also the token) exists, is enabled and not expired.
    pub fn is_active_user(&self, authid: &Authid) -> bool {
        self.is_active_user_at(authid, pbs_api_types::time::epoch_now())
    }

    /// [`Self::is_active_user`] at time `now`.
    pub fn is_active_user_at(&self, authid: &Authid, now: i64) -> bool {
        let user_active = match self.user_cfg.get(authid.user().as_str()) {
            Some((ty, value)) if ty == USER_TYPE => {
                let (enable, expire) = optional_flags(value);
                is_active_at(enable, expire, now)
            }
            _ => false,
        };
        if !user_active || !authid.is_token() {
            return user_active;
        }
        match self.user_cfg.get(&authid.to_string()) {
            Some((ty, value)) if ty == TOKEN_TYPE => {
                let (enable, expire) = optional_flags(value);
                is_active_at(enable, expire, now)
            }
            _ => false,
        }
    }

    /// Effective roles of `authid` on `path` (components may contain `/`).
    pub fn roles(&self, authid: &Authid, path: &[&str]) -> RoleMap {
        self.acl_tree.roles(authid, path)
    }

    /// (privileges, propagated privileges) of `authid` on `path`; tokens are limited to
    /// what their user has.
    pub fn lookup_privs_details(&self, authid: &Authid, path: &[&str]) -> (u64, u64) {
        if self.is_superuser(authid) {
            return (u64::MAX, u64::MAX);
        }
        let mut privs = 0;
        let mut propagated = 0;
        for (role, propagate) in self.acl_tree.roles(authid, path) {
            let role_bits = role_privs(&role).unwrap_or(0);
            privs |= role_bits;
            if propagate {
                propagated |= role_bits;
            }
        }
        if authid.is_token() {
            let user = Authid::from(authid.user().clone());
            let (user_privs, user_propagated) = self.lookup_privs_details(&user, path);
            privs &= user_privs;
            propagated &= user_propagated;
        }
        (privs, propagated)
    }

    /// Privileges of `authid` on `path`.
    pub fn lookup_privs(&self, authid: &Authid, path: &[&str]) -> u64 {
        self.lookup_privs_details(authid, path).0
    }

    /// Requires all of `required` (or any of it when `partial`) on `path`.
    pub fn check_privs(
        &self,
        authid: &Authid,
        path: &[&str],
        required: u64,
        partial: bool,
    ) -> Result<(), PermissionError> {
        if self.is_superuser(authid) {
            return Ok(());
        }
        let privs = self.lookup_privs(authid, path);
        let allowed = if partial {
            privs & required != 0
        } else {
            privs & required == required
        };
        if allowed {
            return Ok(());
        }
        let names: Vec<&str> = PRIVILEGES
            .iter()
            .filter(|(_, bit)| required & bit != 0)
            .map(|(name, _)| *name)
            .collect();
        let path: Vec<&str> = path
            .iter()
            .flat_map(|c| c.split('/'))
            .filter(|c| !c.is_empty())
            .collect();
        Err(PermissionError {
            privileges: names.join(if partial { "|" } else { "&" }),
            path: path.join("/"),
        })
    }

    /// Whether `authid` has any privilege of `mask` propagated at `path` or on any deeper
    /// path where it has entries of its own.
    pub fn any_privs_below(&self, authid: &Authid, path: &[&str], mask: u64) -> bool {
        let (_, propagated) = self.lookup_privs_details(authid, path);
        if propagated & mask != 0 {
            return true;
        }
        self.acl_tree
            .get_child_paths(authid, path)
            .iter()
            .any(|child| self.lookup_privs(authid, &[child.as_str()]) & mask != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privileges::*;

    fn authid(s: &str) -> Authid {
        s.parse().unwrap()
    }

    fn info(users: &str, acl: &str) -> CachedUserInfo {
        CachedUserInfo::from_parts(
            crate::user::parse("user.cfg", users).unwrap(),
            AclTree::parse("acl.cfg", acl).unwrap(),
        )
    }

    const USERS: &str = "user: user1@pbs\n\ntoken: user1@pbs!t\n\ntoken: user1@pbs!off\n\tenable false\n\nuser: old@pbs\n\texpire 1000\n\ntoken: old@pbs!t\n";

    #[test]
    fn token_privileges_are_intersected_with_the_user() {
        let i = info(
            USERS,
            "acl:1:/datastore:user1@pbs:DatastoreAdmin\n\
             acl:1:/datastore/store1:user1@pbs!t:DatastoreAdmin,RemoteAdmin\n",
        );
        let tok = authid("user1@pbs!t");
        assert_eq!(i.lookup_privs(&tok, &["datastore", "store1"]), 0x3E8);
        assert_eq!(i.lookup_privs(&tok, &["datastore"]), 0);

        let i = info(
            USERS,
            "acl:0:/datastore:user1@pbs:DatastoreAdmin\n\
             acl:1:/datastore/store1:user1@pbs!t:DatastoreAdmin,RemoteAdmin\n",
        );
        assert_eq!(
            i.lookup_privs(&authid("user1@pbs"), &["datastore", "store1"]),
            0
        );
        assert_eq!(i.lookup_privs(&tok, &["datastore", "store1"]), 0);
    }

    #[test]
    fn root_has_everything_but_its_tokens_do_not() {
        let i = info("", "acl:1:/:root@pam!t:Audit\n");
        let root = authid("root@pam");
        assert_eq!(i.lookup_privs(&root, &[]), u64::MAX);
        assert_eq!(i.lookup_privs(&root, &["any", "thing"]), u64::MAX);
        assert!(i.check_privs(&root, &["x"], PRIV_SYS_MODIFY, false).is_ok());
        assert_eq!(i.lookup_privs(&authid("root@pam!t"), &["system"]), 0x9);
        assert!(i
            .check_privs(&authid("root@pam!t"), &["system"], PRIV_SYS_MODIFY, false)
            .is_err());
    }

    #[test]
    fn check_privs_messages() {
        let i = info(USERS, "acl:1:/datastore:user1@pbs:DatastoreBackup\n");
        let user = authid("user1@pbs");
        let path = ["datastore", "store1"];
        assert!(i
            .check_privs(&user, &path, PRIV_DATASTORE_BACKUP, false)
            .is_ok());
        let both = PRIV_DATASTORE_AUDIT | PRIV_DATASTORE_BACKUP;
        assert_eq!(
            i.check_privs(&user, &path, both, false)
                .unwrap_err()
                .to_string(),
            "missing permissions 'Datastore.Audit&Datastore.Backup' on '/datastore/store1'"
        );
        assert!(i.check_privs(&user, &path, both, true).is_ok());
        assert_eq!(
            i.check_privs(&user, &["/"], PRIV_SYS_AUDIT | PRIV_SYS_MODIFY, true)
                .unwrap_err()
                .to_string(),
            "missing permissions 'Sys.Audit|Sys.Modify' on '/'"
        );
    }

    #[test]
    fn propagated_details_and_no_access() {
        let i = info(
            USERS,
            "acl:0:/datastore:user1@pbs:DatastoreAudit\n\
             acl:1:/datastore:user1@pbs:DatastoreBackup\n\
             acl:1:/remote:user1@pbs:NoAccess\n",
        );
        let user = authid("user1@pbs");
        assert_eq!(
            i.lookup_privs_details(&user, &["datastore"]),
            (0x108, 0x100)
        );
        assert_eq!(
            i.lookup_privs_details(&user, &["datastore", "s"]),
            (0x100, 0x100)
        );
        assert_eq!(i.lookup_privs_details(&user, &["remote"]), (0, 0));
    }

    #[test]
    fn any_privs_below_paths() {
        let i = info(
            USERS,
            "acl:1:/datastore/store1/ns1:user1@pbs:DatastoreBackup\n\
             acl:0:/remote:user1@pbs:RemoteAudit\n",
        );
        let user = authid("user1@pbs");
        assert!(i.any_privs_below(&user, &["datastore"], PRIV_DATASTORE_BACKUP));
        assert!(i.any_privs_below(&user, &[], PRIV_DATASTORE_BACKUP));
        assert!(!i.any_privs_below(&user, &["datastore"], PRIV_DATASTORE_AUDIT));
        assert!(!i.any_privs_below(&user, &["datastore", "store2"], PRIV_DATASTORE_BACKUP));
        // Not propagated at the path itself and nothing below.
        assert!(!i.any_privs_below(&user, &["remote"], PRIV_REMOTE_AUDIT));
    }

    #[test]
    fn active_users_and_tokens() {
        let i = info(USERS, "");
        let now = 2000;
        assert!(i.is_active_user_at(&authid("user1@pbs"), now));
        assert!(i.is_active_user_at(&authid("user1@pbs!t"), now));
        assert!(!i.is_active_user_at(&authid("user1@pbs!off"), now));
        assert!(!i.is_active_user_at(&authid("user1@pbs!missing"), now));
        assert!(!i.is_active_user_at(&authid("old@pbs"), now));
        assert!(i.is_active_user_at(&authid("old@pbs"), 999));
        assert!(!i.is_active_user_at(&authid("old@pbs!t"), now));
        assert!(!i.is_active_user_at(&authid("nobody@pbs"), now));
        assert!(i.is_active_user_at(&authid("root@pam"), now));
        assert!(i.is_active_user(&authid("user1@pbs")));
    }

    #[test]
    fn load_from_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("user.cfg"), USERS).unwrap();
        std::fs::write(dir.path().join("acl.cfg"), "acl:1:/:user1@pbs:Audit\n").unwrap();
        let i = CachedUserInfo::load_in(dir.path()).unwrap();
        assert_eq!(i.lookup_privs(&authid("user1@pbs"), &["system"]), 0x9);
        std::fs::write(dir.path().join("acl.cfg"), "garbage\n").unwrap();
        assert!(CachedUserInfo::load_in(dir.path()).is_err());
    }
}
