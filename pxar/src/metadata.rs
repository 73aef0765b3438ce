//! Per-entry metadata: stat plus the optional attribute items, in encoding order.

use crate::format::{
    AclDefault, AclGroup, AclGroupObject, AclUser, FCaps, QuotaProjectId, Stat, XAttr,
};

/// POSIX ACL of an entry as stored in the archive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Acl {
    /// Access ACL named users (written in list order; the client sorts them).
    pub users: Vec<AclUser>,
    /// Access ACL named groups (written in list order; the client sorts them).
    pub groups: Vec<AclGroup>,
    /// Access ACL group-object permissions (only stored when a mask exists).
    pub group_obj: Option<AclGroupObject>,
    /// Default ACL base permissions.
    pub default: Option<AclDefault>,
    /// Default ACL named users.
    pub default_users: Vec<AclUser>,
    /// Default ACL named groups.
    pub default_groups: Vec<AclGroup>,
}

impl Acl {
    /// No ACL item at all.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.groups.is_empty()
            && self.group_obj.is_none()
            && self.default.is_none()
            && self.default_users.is_empty()
            && self.default_groups.is_empty()
    }
}

/// Everything the archive stores about an entry besides its name and contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Metadata {
    /// The `ENTRY` item.
    pub stat: Stat,
    /// Extended attributes in archive order.
    pub xattrs: Vec<XAttr>,
    /// ACL items.
    pub acl: Acl,
    /// File capabilities.
    pub fcaps: Option<FCaps>,
    /// Quota project id.
    pub quota_project_id: Option<QuotaProjectId>,
}

impl Metadata {
    /// Metadata with only a stat.
    pub fn from_stat(stat: Stat) -> Self {
        Self {
            stat,
            ..Default::default()
        }
    }

    /// Equality used to decide whether a file's previous payload can be reused: like `==`
    /// but xattrs are compared by name only (matching the reference client's decisions).
    pub fn matches_for_reuse(&self, other: &Metadata) -> bool {
        self.stat == other.stat
            && self.xattrs.len() == other.xattrs.len()
            && self
                .xattrs
                .iter()
                .zip(&other.xattrs)
                .all(|(a, b)| a.name == b.name)
            && self.acl == other.acl
            && self.fcaps == other.fcaps
            && self.quota_project_id == other.quota_project_id
    }

    /// Number of archive bytes the ENTRY and attribute items of this metadata take.
    pub fn encoded_size(&self) -> u64 {
        let mut size = 56;
        for xattr in &self.xattrs {
            size += 16 + xattr.name.len() as u64 + 1 + xattr.value.len() as u64;
        }
        size += 32 * (self.acl.users.len() + self.acl.groups.len()) as u64;
        size += if self.acl.group_obj.is_some() { 24 } else { 0 };
        size += if self.acl.default.is_some() { 48 } else { 0 };
        size += 32 * (self.acl.default_users.len() + self.acl.default_groups.len()) as u64;
        if let Some(fcaps) = &self.fcaps {
            size += 16 + fcaps.data.len() as u64;
        }
        size += if self.quota_project_id.is_some() {
            24
        } else {
            0
        };
        size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{mode, StatxTimestamp};

    #[test]
    fn reuse_comparison_ignores_xattr_values_only() {
        let mut a = Metadata::from_stat(Stat {
            mode: mode::IFREG | 0o644,
            mtime: StatxTimestamp::new(5, 1),
            ..Default::default()
        });
        a.xattrs.push(XAttr::new(b"user.x".to_vec(), b"1".to_vec()));
        let mut b = a.clone();
        b.xattrs[0].value = b"2".to_vec();
        assert!(a.matches_for_reuse(&b));
        assert_ne!(a, b);
        b.xattrs[0].name = b"user.y".to_vec();
        assert!(!a.matches_for_reuse(&b));
        let mut c = a.clone();
        c.stat.mtime.nanos = 2;
        assert!(!a.matches_for_reuse(&c));
        let mut d = a.clone();
        d.quota_project_id = Some(QuotaProjectId { projid: 1 });
        assert!(!a.matches_for_reuse(&d));
    }
}
