//! Privilege bits and the built-in roles.

/// View system status/config.
pub const PRIV_SYS_AUDIT: u64 = 1 << 0;
/// Modify system config.
pub const PRIV_SYS_MODIFY: u64 = 1 << 1;
/// Reboot/shutdown.
pub const PRIV_SYS_POWER_MANAGEMENT: u64 = 1 << 2;
/// View datastore config and contents.
pub const PRIV_DATASTORE_AUDIT: u64 = 1 << 3;
/// Create/delete datastores.
pub const PRIV_DATASTORE_ALLOCATE: u64 = 1 << 4;
/// Modify datastore and contents (any owner).
pub const PRIV_DATASTORE_MODIFY: u64 = 1 << 5;
/// Read any backup content.
pub const PRIV_DATASTORE_READ: u64 = 1 << 6;
/// Verify backups.
pub const PRIV_DATASTORE_VERIFY: u64 = 1 << 7;
/// Create backups; read/verify/modify own groups.
pub const PRIV_DATASTORE_BACKUP: u64 = 1 << 8;
/// Delete/prune own snapshots.
pub const PRIV_DATASTORE_PRUNE: u64 = 1 << 9;
/// Modify ACLs / users.
pub const PRIV_PERMISSIONS_MODIFY: u64 = 1 << 10;
/// Read remote/sync config.
pub const PRIV_REMOTE_AUDIT: u64 = 1 << 11;
/// Modify remotes.
pub const PRIV_REMOTE_MODIFY: u64 = 1 << 12;
/// Read data from a remote.
pub const PRIV_REMOTE_READ: u64 = 1 << 13;
/// Node console.
pub const PRIV_SYS_CONSOLE: u64 = 1 << 14;
/// Read tape config/status.
pub const PRIV_TAPE_AUDIT: u64 = 1 << 15;
/// Modify tape config.
pub const PRIV_TAPE_MODIFY: u64 = 1 << 16;
/// Write tapes.
pub const PRIV_TAPE_WRITE: u64 = 1 << 17;
/// Read tapes.
pub const PRIV_TAPE_READ: u64 = 1 << 18;
/// Manage realms.
pub const PRIV_REALM_ALLOCATE: u64 = 1 << 19;

/// Named privileges in table order (the order `GET access/roles` lists them).
pub const PRIVILEGES: &[(&str, u64)] = &[
    ("Sys.Audit", PRIV_SYS_AUDIT),
    ("Sys.Modify", PRIV_SYS_MODIFY),
    ("Sys.PowerManagement", PRIV_SYS_POWER_MANAGEMENT),
    ("Datastore.Audit", PRIV_DATASTORE_AUDIT),
    ("Datastore.Allocate", PRIV_DATASTORE_ALLOCATE),
    ("Datastore.Modify", PRIV_DATASTORE_MODIFY),
    ("Datastore.Read", PRIV_DATASTORE_READ),
    ("Datastore.Verify", PRIV_DATASTORE_VERIFY),
    ("Datastore.Backup", PRIV_DATASTORE_BACKUP),
    ("Datastore.Prune", PRIV_DATASTORE_PRUNE),
    ("Permissions.Modify", PRIV_PERMISSIONS_MODIFY),
    ("Remote.Audit", PRIV_REMOTE_AUDIT),
    ("Remote.Modify", PRIV_REMOTE_MODIFY),
    ("Remote.Read", PRIV_REMOTE_READ),
    ("Sys.Console", PRIV_SYS_CONSOLE),
    ("Tape.Audit", PRIV_TAPE_AUDIT),
    ("Tape.Modify", PRIV_TAPE_MODIFY),
    ("Tape.Write", PRIV_TAPE_WRITE),
    ("Tape.Read", PRIV_TAPE_READ),
    ("Realm.Allocate", PRIV_REALM_ALLOCATE),
];

/// The role that overrides every other role of the same ugid at the same node.
pub const ROLE_NO_ACCESS: &str = "NoAccess";
/// The role with all privileges.
pub const ROLE_ADMIN: &str = "Admin";

/// A built-in role: name as persisted, privilege mask, description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Role {
    /// Name as written in `acl.cfg`.
    pub name: &'static str,
    /// Privilege bits.
    pub privs: u64,
    /// Description returned by `GET access/roles`.
    pub comment: &'static str,
}

const fn role(name: &'static str, privs: u64, comment: &'static str) -> Role {
    Role {
        name,
        privs,
        comment,
    }
}

/// All built-in roles.
pub const ROLES: &[Role] = &[
    role(ROLE_ADMIN, u64::MAX, "Administrator"),
    role("Audit", PRIV_SYS_AUDIT | PRIV_DATASTORE_AUDIT, "Auditor"),
    role(ROLE_NO_ACCESS, 0, "Disable Access"),
    role(
        "DatastoreAdmin",
        PRIV_DATASTORE_AUDIT
            | PRIV_DATASTORE_MODIFY
            | PRIV_DATASTORE_READ
            | PRIV_DATASTORE_VERIFY
            | PRIV_DATASTORE_BACKUP
            | PRIV_DATASTORE_PRUNE,
        "Datastore Administrator",
    ),
    role(
        "DatastoreReader",
        PRIV_DATASTORE_AUDIT | PRIV_DATASTORE_VERIFY | PRIV_DATASTORE_READ,
        "Datastore Reader (inspect datastore content and do restores)",
    ),
    role(
        "DatastoreBackup",
        PRIV_DATASTORE_BACKUP,
        "Datastore Backup (backup and restore owned backups)",
    ),
    role(
        "DatastorePowerUser",
        PRIV_DATASTORE_PRUNE | PRIV_DATASTORE_BACKUP,
        "Datastore PowerUser (backup, restore and prune owned backup)",
    ),
    role("DatastoreAudit", PRIV_DATASTORE_AUDIT, "Datastore Auditor"),
    role("RemoteAudit", PRIV_REMOTE_AUDIT, "Remote Auditor"),
    role(
        "RemoteAdmin",
        PRIV_REMOTE_AUDIT | PRIV_REMOTE_MODIFY | PRIV_REMOTE_READ,
        "Remote Administrator",
    ),
    role(
        "RemoteSyncOperator",
        PRIV_REMOTE_AUDIT | PRIV_REMOTE_READ,
        "Syncronisation Opertator",
    ),
    role("TapeAudit", PRIV_TAPE_AUDIT, "Tape Auditor"),
    role(
        "TapeAdmin",
        PRIV_TAPE_AUDIT | PRIV_TAPE_MODIFY | PRIV_TAPE_READ | PRIV_TAPE_WRITE,
        "Tape Administrator",
    ),
    role(
        "TapeOperator",
        PRIV_TAPE_AUDIT | PRIV_TAPE_READ | PRIV_TAPE_WRITE,
        "Tape Operator",
    ),
    role(
        "TapeReader",
        PRIV_TAPE_AUDIT | PRIV_TAPE_READ,
        "Tape Reader",
    ),
];

/// Looks up a built-in role by its exact (case-sensitive) name.
pub fn find_role(name: &str) -> Option<&'static Role> {
    ROLES.iter().find(|r| r.name == name)
}

/// Privilege mask of a role, if the role exists.
pub fn role_privs(name: &str) -> Option<u64> {
    find_role(name).map(|r| r.privs)
}

/// Names of the named privileges set in `privs`, in table order.
pub fn privilege_names(privs: u64) -> Vec<&'static str> {
    PRIVILEGES
        .iter()
        .filter(|(_, bit)| privs & bit != 0)
        .map(|(name, _)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_masks_match_the_table() {
        let expected: &[(&str, u64)] = &[
            ("Admin", 0xFFFF_FFFF_FFFF_FFFF),
            ("Audit", 0x9),
            ("NoAccess", 0x0),
            ("DatastoreAdmin", 0x3E8),
            ("DatastoreReader", 0xC8),
            ("DatastoreBackup", 0x100),
            ("DatastorePowerUser", 0x300),
            ("DatastoreAudit", 0x8),
            ("RemoteAudit", 0x800),
            ("RemoteAdmin", 0x3800),
            ("RemoteSyncOperator", 0x2800),
            ("TapeAudit", 0x8000),
            ("TapeAdmin", 0x78000),
            ("TapeOperator", 0x68000),
            ("TapeReader", 0x48000),
        ];
        assert_eq!(ROLES.len(), expected.len());
        for (name, mask) in expected {
            assert_eq!(role_privs(name), Some(*mask), "{name}");
        }
        assert_eq!(role_privs("admin"), None);
    }

    #[test]
    fn privilege_bits_and_names() {
        for (i, (_, bit)) in PRIVILEGES.iter().enumerate() {
            assert_eq!(*bit, 1u64 << i);
        }
        assert_eq!(privilege_names(u64::MAX).len(), 20);
        assert_eq!(privilege_names(0x9), vec!["Sys.Audit", "Datastore.Audit"]);
    }
}
