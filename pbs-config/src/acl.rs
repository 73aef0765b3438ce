//! `acl.cfg`: the ACL tree (path → ugid → role → propagate flag).
//!
//! Line format `acl:<propagate>:<path>:<ugid-list>:<role-list>`; writing is deterministic
//! (depth-first, children and lines sorted, identical ugid sets merged into one line).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Error;
use thiserror::Error;

use pbs_api_types::names::is_safe_id;
use pbs_api_types::Authid;

use crate::files::{ConfigFile, ConfigLockGuard, FileOwner};
use crate::privileges::{find_role, ROLE_NO_ACCESS};

/// `acl.cfg` in the configuration directory.
pub const ACL_CFG: ConfigFile = ConfigFile {
    name: "acl.cfg",
    lock_name: ".acl.lck",
    mode: 0o640,
    owner: FileOwner::RootBackup,
};

/// Maximum length of an ACL path.
pub const ACL_PATH_MAX_LEN: usize = 128;

/// Maximum number of namespace components below `/datastore/{store}`.
const MAX_NAMESPACE_DEPTH: usize = 7;

/// Role name → propagate flag.
pub type RoleMap = BTreeMap<String, bool>;

/// Error while parsing `acl.cfg`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unable to parse acl config \"{file}\", line {line} - {reason}")]
pub struct AclParseError {
    /// File name used in the message.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// One node of the ACL tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclTreeNode {
    /// Entries of users and API tokens.
    pub users: BTreeMap<Authid, RoleMap>,
    /// Entries of groups (by name, without `@`).
    pub groups: BTreeMap<String, RoleMap>,
    /// Child nodes by path component.
    pub children: BTreeMap<String, AclTreeNode>,
}

/// `NoAccess` replaces all roles; any other role replaces `NoAccess`.
fn insert_role(roles: &mut RoleMap, role: &str, propagate: bool) {
    if role == ROLE_NO_ACCESS {
        roles.clear();
    } else {
        roles.remove(ROLE_NO_ACCESS);
    }
    roles.insert(role.to_string(), propagate);
}

impl AclTreeNode {
    /// The roles of `authid` at this node: only propagating entries unless `leaf`; a selected
    /// `NoAccess` yields just `NoAccess` with propagate reported as false.
    pub fn roles(&self, authid: &Authid, leaf: bool) -> RoleMap {
        // Group membership is not implemented, so only the authid's own entries count.
        let mut result = RoleMap::new();
        let Some(roles) = self.users.get(authid) else {
            return result;
        };
        for (role, propagate) in roles {
            if !(*propagate || leaf) {
                continue;
            }
            if role == ROLE_NO_ACCESS {
                result.clear();
                result.insert(ROLE_NO_ACCESS.to_string(), false);
                return result;
            }
            result.insert(role.clone(), *propagate);
        }
        result
    }

    fn collect_child_paths(&self, path: &str, authid: &Authid, out: &mut Vec<String>) {
        for (name, child) in &self.children {
            let child_path = format!("{path}/{name}");
            if !child.roles(authid, true).is_empty() {
                out.push(child_path.clone());
            }
            child.collect_child_paths(&child_path, authid, out);
        }
    }

    fn delete_authid(&mut self, authid: &Authid) {
        self.users.remove(authid);
        for child in self.children.values_mut() {
            child.delete_authid(authid);
        }
    }

    fn write(&self, path: &str, out: &mut String) {
        // role → sorted ugids, per propagate flag
        let mut by_role: [BTreeMap<&str, BTreeSet<String>>; 2] = Default::default();
        for (authid, roles) in &self.users {
            if !authid.is_token() && authid.user().is_root() {
                continue;
            }
            for (role, propagate) in roles {
                by_role[usize::from(*propagate)]
                    .entry(role)
                    .or_default()
                    .insert(authid.to_string());
            }
        }
        for (group, roles) in &self.groups {
            for (role, propagate) in roles {
                by_role[usize::from(*propagate)]
                    .entry(role)
                    .or_default()
                    .insert(format!("@{group}"));
            }
        }
        let shown_path = if path.is_empty() { "/" } else { path };
        for (propagate, roles) in by_role.iter().enumerate() {
            let mut by_ugids: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
            for (role, ugids) in roles {
                let key = ugids.iter().cloned().collect::<Vec<_>>().join(",");
                by_ugids.entry(key).or_default().insert(role);
            }
            for (ugids, roles) in by_ugids {
                let roles = if roles.contains(ROLE_NO_ACCESS) {
                    ROLE_NO_ACCESS.to_string()
                } else {
                    roles.into_iter().collect::<Vec<_>>().join(",")
                };
                let _ = writeln!(out, "acl:{propagate}:{shown_path}:{ugids}:{roles}");
            }
        }
        for (name, child) in &self.children {
            child.write(&format!("{path}/{name}"), out);
        }
    }
}

/// The whole ACL tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclTree {
    /// The node of path `/`.
    pub root: AclTreeNode,
}

/// Splits an ACL path into its non-empty components.
pub fn split_acl_path(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

/// Components given to lookups may contain `/` themselves.
fn flatten<'a>(path: &[&'a str]) -> Vec<&'a str> {
    path.iter().flat_map(|c| split_acl_path(c)).collect()
}

impl AclTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The node at `path`, if it exists.
    pub fn find_node(&self, path: &str) -> Option<&AclTreeNode> {
        self.find_node_components(&split_acl_path(path))
    }

    fn find_node_components(&self, path: &[&str]) -> Option<&AclTreeNode> {
        let mut node = &self.root;
        for comp in path {
            node = node.children.get(*comp)?;
        }
        Some(node)
    }

    fn node_mut(&mut self, path: &str) -> &mut AclTreeNode {
        let mut node = &mut self.root;
        for comp in split_acl_path(path) {
            node = node.children.entry(comp.to_string()).or_default();
        }
        node
    }

    /// Grants `role` to a user or token at `path`.
    pub fn insert_user_role(&mut self, path: &str, authid: &Authid, role: &str, propagate: bool) {
        let node = self.node_mut(path);
        insert_role(
            node.users.entry(authid.clone()).or_default(),
            role,
            propagate,
        );
    }

    /// Grants `role` to a group (name without `@`) at `path`.
    pub fn insert_group_role(&mut self, path: &str, group: &str, role: &str, propagate: bool) {
        let node = self.node_mut(path);
        insert_role(
            node.groups.entry(group.to_string()).or_default(),
            role,
            propagate,
        );
    }

    /// Removes one role of a user or token at `path`.
    pub fn delete_user_role(&mut self, path: &str, authid: &Authid, role: &str) {
        let node = self.node_mut(path);
        if let Some(roles) = node.users.get_mut(authid) {
            roles.remove(role);
            if roles.is_empty() {
                node.users.remove(authid);
            }
        }
    }

    /// Removes one role of a group at `path`.
    pub fn delete_group_role(&mut self, path: &str, group: &str, role: &str) {
        let node = self.node_mut(path);
        if let Some(roles) = node.groups.get_mut(group) {
            roles.remove(role);
            if roles.is_empty() {
                node.groups.remove(group);
            }
        }
    }

    /// Removes every entry of `authid` in the whole tree.
    pub fn delete_authid(&mut self, authid: &Authid) {
        self.root.delete_authid(authid);
    }

    /// Effective roles of `authid` on `path` (role → propagate), walking from the root; a
    /// deeper level with entries replaces the roles of the levels above.
    pub fn roles(&self, authid: &Authid, path: &[&str]) -> RoleMap {
        let path = flatten(path);
        let mut node = &self.root;
        let mut roles = node.roles(authid, path.is_empty());
        for (pos, comp) in path.iter().enumerate() {
            let Some(child) = node.children.get(*comp) else {
                break;
            };
            node = child;
            let level = node.roles(authid, pos + 1 == path.len());
            if !level.is_empty() {
                roles = level;
            }
        }
        roles
    }

    /// Paths strictly below `path` (joined with `/`, no leading `/` when `path` is not the
    /// root) where `authid` has entries of its own.
    pub fn get_child_paths(&self, authid: &Authid, path: &[&str]) -> Vec<String> {
        let path = flatten(path);
        let mut out = Vec::new();
        if let Some(node) = self.find_node_components(&path) {
            node.collect_child_paths(&path.join("/"), authid, &mut out);
        }
        out
    }

    /// Parses `acl.cfg` content; `file` names the file in error messages.
    pub fn parse(file: &str, content: &str) -> Result<Self, AclParseError> {
        let mut tree = AclTree::new();
        for (index, line) in content.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            tree.parse_line(line).map_err(|reason| AclParseError {
                file: file.to_string(),
                line: index + 1,
                reason,
            })?;
        }
        Ok(tree)
    }

    fn parse_line(&mut self, line: &str) -> Result<(), String> {
        let items: Vec<&str> = line.split(':').collect();
        if items.len() != 5 {
            return Err("wrong number of items.".to_string());
        }
        if items[0] != "acl" {
            return Err("line does not start with 'acl'.".to_string());
        }
        let propagate = match items[1] {
            "0" => false,
            "1" => true,
            _ => return Err("expected '0' or '1' for propagate flag.".to_string()),
        };
        let path = items[2];

        enum Ugid {
            User(Authid),
            Group(String),
        }
        let mut ugids = Vec::new();
        for item in items[3].split(',') {
            let item = item.trim();
            match item.strip_prefix('@') {
                Some(group) => ugids.push(Ugid::Group(group.to_string())),
                None => ugids.push(Ugid::User(
                    item.parse::<Authid>().map_err(|err| err.to_string())?,
                )),
            }
        }
        let mut roles = Vec::new();
        for role in items[4].split(',') {
            let role = role.trim();
            if find_role(role).is_none() {
                return Err(format!("unknown role '{role}'"));
            }
            roles.push(role);
        }
        for ugid in &ugids {
            for role in &roles {
                match ugid {
                    Ugid::User(authid) => self.insert_user_role(path, authid, role, propagate),
                    Ugid::Group(group) => self.insert_group_role(path, group, role, propagate),
                }
            }
        }
        Ok(())
    }

    /// The file content in the deterministic written form.
    pub fn write(&self) -> String {
        let mut out = String::new();
        self.root.write("", &mut out);
        out
    }
}

/// Checks that `path` is one of the ACL paths that may be granted (§ ACL paths).
pub fn check_acl_path(path: &str) -> Result<(), String> {
    let invalid = || format!("invalid acl path '{path}'.");
    let len = path.chars().count();
    if !(1..=ACL_PATH_MAX_LEN).contains(&len) || !path.starts_with('/') {
        return Err(invalid());
    }
    if path != "/" {
        let valid = path[1..].split('/').all(is_safe_id);
        if !valid {
            return Err(invalid());
        }
    }
    let comps = split_acl_path(path);
    let ok = match comps.as_slice() {
        [] => true,
        ["access"] => true,
        ["access", "acl" | "users" | "domains" | "openid"] => true,
        ["access", "openid", _] => true,
        ["datastore"] | ["datastore", _] => true,
        ["datastore", _, ns @ ..] => ns.len() <= MAX_NAMESPACE_DEPTH,
        ["remote"] | ["remote", _] | ["remote", _, _] => true,
        ["system"] => true,
        ["system", "certificates" | "disks" | "log" | "notifications" | "status" | "tasks" | "time"
        | "services" | "network"] => true,
        ["system", "services", _] => true,
        ["system", "network", "dns" | "interfaces"] => true,
        ["system", "network", "interfaces", _] => true,
        ["tape"] => true,
        ["tape", "device" | "pool" | "job"] => true,
        ["tape", "device" | "pool" | "job", _] => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// Reads `acl.cfg` from `dir` (missing = empty tree) with its digest.
pub fn config_in(dir: &Path) -> Result<(AclTree, String), Error> {
    let (content, digest) = ACL_CFG.read_in(dir)?;
    let file = ACL_CFG.path_in(dir);
    let tree = AclTree::parse(&file.to_string_lossy(), &content)?;
    Ok((tree, digest))
}

/// Reads `acl.cfg` with its digest.
pub fn config() -> Result<(AclTree, String), Error> {
    config_in(&pbs_buildcfg::config_dir())
}

/// Atomically writes `acl.cfg` in `dir`.
pub fn save_config_in(dir: &Path, tree: &AclTree) -> Result<(), Error> {
    ACL_CFG.write_in(dir, tree.write().as_bytes())
}

/// Atomically writes `acl.cfg` (`root:backup 0640`).
pub fn save_config(tree: &AclTree) -> Result<(), Error> {
    save_config_in(&pbs_buildcfg::config_dir(), tree)
}

/// Takes the exclusive `.acl.lck` lock in `dir`.
pub fn lock_config_in(dir: &Path) -> Result<ConfigLockGuard, Error> {
    ACL_CFG.lock_in(dir)
}

/// Takes the exclusive `.acl.lck` lock.
pub fn lock_config() -> Result<ConfigLockGuard, Error> {
    lock_config_in(&pbs_buildcfg::config_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authid(s: &str) -> Authid {
        s.parse().unwrap()
    }

    fn tree(content: &str) -> AclTree {
        AclTree::parse("acl.cfg", content).unwrap()
    }

    fn role_list(tree: &AclTree, auth: &str, path: &str) -> String {
        let comps = split_acl_path(path);
        let roles = tree.roles(&authid(auth), &comps);
        roles.keys().cloned().collect::<Vec<_>>().join(",")
    }

    fn node_roles(tree: &AclTree, path: &str, auth: &str) -> String {
        tree.find_node(path)
            .and_then(|n| n.users.get(&authid(auth)))
            .map(|r| r.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    }

    #[test]
    fn line_compression() {
        let t = tree(
            "acl:0:/store/store2:user1@pbs:Admin\n\
             acl:0:/store/store2:user2@pbs:Admin\n\
             acl:0:/store/store2:user1@pbs:DatastoreBackup\n\
             acl:0:/store/store2:user2@pbs:DatastoreBackup\n",
        );
        assert_eq!(
            t.write(),
            "acl:0:/store/store2:user1@pbs,user2@pbs:Admin,DatastoreBackup\n"
        );
    }

    #[test]
    fn no_access_replaces_other_roles() {
        let user1 = authid("user1@pbs");
        let mut t = AclTree::new();
        t.insert_user_role("/", &user1, "Admin", true);
        t.insert_user_role("/", &user1, "Audit", true);
        assert_eq!(node_roles(&t, "/", "user1@pbs"), "Admin,Audit");
        t.insert_user_role("/", &user1, "NoAccess", true);
        assert_eq!(node_roles(&t, "/", "user1@pbs"), "NoAccess");
        assert_eq!(t.write(), "acl:1:/:user1@pbs:NoAccess\n");
    }

    #[test]
    fn other_roles_replace_no_access() {
        let user1 = authid("user1@pbs");
        let mut t = AclTree::new();
        t.insert_user_role("/storage", &user1, "NoAccess", true);
        assert_eq!(node_roles(&t, "/storage", "user1@pbs"), "NoAccess");
        t.insert_user_role("/storage", &user1, "Admin", true);
        t.insert_user_role("/storage", &user1, "Audit", true);
        assert_eq!(node_roles(&t, "/storage", "user1@pbs"), "Admin,Audit");
        t.insert_user_role("/storage", &user1, "NoAccess", true);
        assert_eq!(node_roles(&t, "/storage", "user1@pbs"), "NoAccess");
    }

    #[test]
    fn child_paths() {
        let t = tree(
            "acl:0:/store/store2:user1@pbs:Admin\n\
             acl:1:/store/store2/store31/store4/store6:user2@pbs:DatastoreReader\n\
             acl:0:/store/store2/store3:user1@pbs:Admin\n",
        );
        let user1 = authid("user1@pbs");
        let user2 = authid("user2@pbs");
        assert_eq!(
            t.get_child_paths(&user1, &["store"]),
            vec!["store/store2", "store/store2/store3"]
        );
        assert!(t
            .get_child_paths(&user2, &["store", "store2", "store3"])
            .is_empty());
        assert_eq!(
            t.get_child_paths(&user2, &["store", "store2", "store31"]),
            vec!["store/store2/store31/store4/store6"]
        );
        assert!(t.get_child_paths(&user2, &["store", "nope"]).is_empty());
        assert!(t
            .get_child_paths(&user2, &["store/store2/store31/store4/store6"])
            .is_empty());
    }

    #[test]
    fn effective_roles_replace_per_level() {
        let t = tree(
            "acl:1:/storage:user1@pbs:Admin\n\
             acl:1:/storage/store1:user1@pbs:DatastoreBackup\n\
             acl:1:/storage/store2:user2@pbs:DatastoreBackup\n",
        );
        assert_eq!(role_list(&t, "user1@pbs", "/"), "");
        assert_eq!(role_list(&t, "user1@pbs", "/storage"), "Admin");
        assert_eq!(
            role_list(&t, "user1@pbs", "/storage/store1"),
            "DatastoreBackup"
        );
        assert_eq!(role_list(&t, "user1@pbs", "/storage/store2"), "Admin");

        assert_eq!(role_list(&t, "user2@pbs", "/"), "");
        assert_eq!(role_list(&t, "user2@pbs", "/storage"), "");
        assert_eq!(role_list(&t, "user2@pbs", "/storage/store1"), "");
        assert_eq!(
            role_list(&t, "user2@pbs", "/storage/store2"),
            "DatastoreBackup"
        );
    }

    #[test]
    fn effective_roles_with_propagated_no_access() {
        let t = tree(
            "acl:1:/:user1@pbs:Admin\n\
             acl:1:/storage:user1@pbs:NoAccess\n\
             acl:1:/storage/store1:user1@pbs:DatastoreBackup\n",
        );
        assert_eq!(role_list(&t, "user1@pbs", "/"), "Admin");
        assert_eq!(role_list(&t, "user1@pbs", "/storage"), "NoAccess");
        assert_eq!(
            role_list(&t, "user1@pbs", "/storage/store1"),
            "DatastoreBackup"
        );
        assert_eq!(role_list(&t, "user1@pbs", "/storage/store2"), "NoAccess");
        assert_eq!(role_list(&t, "user1@pbs", "/system"), "Admin");
        // NoAccess is reported as not propagating.
        let roles = t.roles(&authid("user1@pbs"), &["storage"]);
        assert_eq!(roles.get("NoAccess"), Some(&false));
    }

    #[test]
    fn effective_roles_with_local_no_access() {
        let t = tree(
            "acl:1:/:user1@pbs:Admin\n\
             acl:0:/storage:user1@pbs:NoAccess\n\
             acl:1:/storage/store1:user1@pbs:DatastoreBackup\n",
        );
        assert_eq!(role_list(&t, "user1@pbs", "/"), "Admin");
        assert_eq!(role_list(&t, "user1@pbs", "/storage"), "NoAccess");
        assert_eq!(
            role_list(&t, "user1@pbs", "/storage/store1"),
            "DatastoreBackup"
        );
        assert_eq!(role_list(&t, "user1@pbs", "/storage/store2"), "Admin");
        assert_eq!(role_list(&t, "user1@pbs", "/system"), "Admin");
    }

    #[test]
    fn components_with_slashes_are_split() {
        let t = tree("acl:1:/datastore/s1/ns1:user1@pbs:DatastoreAudit\n");
        assert_eq!(
            t.roles(&authid("user1@pbs"), &["datastore", "s1/ns1"])
                .keys()
                .collect::<Vec<_>>(),
            vec!["DatastoreAudit"]
        );
    }

    #[test]
    fn token_and_user_entries_are_separate() {
        let t = tree("acl:1:/:user1@pbs!t:Admin\n");
        assert_eq!(role_list(&t, "user1@pbs", "/"), "");
        assert_eq!(role_list(&t, "user1@pbs!t", "/"), "Admin");
    }

    #[test]
    fn parse_errors() {
        let cases: &[(&str, usize, &str)] = &[
            ("acl:1:/:user1@pbs\n", 1, "wrong number of items."),
            (
                "\n  \nacx:1:/:user1@pbs:Admin\n",
                3,
                "line does not start with 'acl'.",
            ),
            (
                "acl:2:/:user1@pbs:Admin\n",
                1,
                "expected '0' or '1' for propagate flag.",
            ),
            ("acl:1:/:user1@pbs:admin\n", 1, "unknown role 'admin'"),
            ("acl:1:/:user1:Admin\n", 1, "not a valid user id"),
            (
                "acl:1:/:user1@pbs!:Admin\n",
                1,
                "empty token name in userid",
            ),
        ];
        for (input, line, reason) in cases {
            let err = AclTree::parse("/etc/proxmox-backup/acl.cfg", input).unwrap_err();
            assert_eq!(
                (err.line, err.reason.as_str()),
                (*line, *reason),
                "{input:?}"
            );
        }
        let err = AclTree::parse("/x/acl.cfg", "acl:1:/:u@pbs:Bad\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to parse acl config \"/x/acl.cfg\", line 1 - unknown role 'Bad'"
        );
    }

    #[test]
    fn parsing_details() {
        // Items and lines are trimmed, empty path components dropped, later flags win.
        let t = tree(
            "  acl:0://datastore//s1/: user1@pbs , @admins :DatastoreAudit , Audit \n\
             acl:1:/datastore/s1:user1@pbs:Audit\n",
        );
        assert_eq!(
            t.write(),
            "acl:0:/datastore/s1:@admins:Audit\n\
             acl:0:/datastore/s1:@admins,user1@pbs:DatastoreAudit\n\
             acl:1:/datastore/s1:user1@pbs:Audit\n"
        );
    }

    #[test]
    fn writing_order_and_root_user() {
        let t = tree(
            "acl:1:/:root@pam:Admin\n\
             acl:1:/:root@pam!tok:Audit\n\
             acl:1:/datastore:b@pbs:DatastoreAudit\n\
             acl:0:/datastore:c@pbs:DatastoreAudit\n\
             acl:1:/datastore:a@pbs:DatastoreAdmin\n\
             acl:1:/Datastore:a@pbs:Audit\n\
             acl:1:/datastore/x:a@pbs:Audit\n",
        );
        assert_eq!(
            t.write(),
            "acl:1:/:root@pam!tok:Audit\n\
             acl:1:/Datastore:a@pbs:Audit\n\
             acl:0:/datastore:c@pbs:DatastoreAudit\n\
             acl:1:/datastore:a@pbs:DatastoreAdmin\n\
             acl:1:/datastore:b@pbs:DatastoreAudit\n\
             acl:1:/datastore/x:a@pbs:Audit\n"
        );
        // Round trip of the written form is byte-identical.
        assert_eq!(tree(&t.write()).write(), t.write());
    }

    #[test]
    fn delete_entries() {
        let mut t = tree(
            "acl:1:/:user1@pbs:Admin,Audit\n\
             acl:1:/x:user1@pbs:Audit\n\
             acl:1:/x:@g:Audit\n",
        );
        t.delete_user_role("/", &authid("user1@pbs"), "Admin");
        t.delete_group_role("/x", "g", "Audit");
        assert_eq!(
            t.write(),
            "acl:1:/:user1@pbs:Audit\nacl:1:/x:user1@pbs:Audit\n"
        );
        t.delete_authid(&authid("user1@pbs"));
        assert_eq!(t.write(), "");
    }

    #[test]
    fn acl_path_shapes() {
        for ok in [
            "/",
            "/access/openid/r1",
            "/datastore/s1/a/b/c/d/e/f/g",
            "/remote/r/s",
            "/system/network/interfaces/eth0",
            "/system/services/proxy",
            "/tape/pool/p1",
        ] {
            assert_eq!(check_acl_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "datastore",
            "/datastore/s1/a/b/c/d/e/f/g/h",
            "/foo",
            "/remote/r/s/t",
            "/datastore//s1",
            "/datastore/s1/",
            "/system/x",
            "/tape/drive",
        ] {
            assert_eq!(
                check_acl_path(bad),
                Err(format!("invalid acl path '{bad}'.")),
                "{bad}"
            );
        }
    }

    #[test]
    fn file_round_trip_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (empty, _) = config_in(dir.path()).unwrap();
        assert_eq!(empty, AclTree::new());
        let content = "acl:1:/datastore/store1:user1@pbs,user1@pbs!client:DatastoreBackup\n";
        let t = tree(content);
        let _lock = lock_config_in(dir.path()).unwrap();
        save_config_in(dir.path(), &t).unwrap();
        let path = ACL_CFG.path_in(dir.path());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        let (back, digest) = config_in(dir.path()).unwrap();
        assert_eq!(back, t);
        assert_eq!(digest, crate::files::compute_digest(content.as_bytes()));
        assert!(dir.path().join(".acl.lck").exists());
    }
}
