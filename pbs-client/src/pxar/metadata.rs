//! Collecting the metadata of one file system object: stat, xattrs (filtered), POSIX ACLs
//! (parsed from the raw `system.posix_acl_*` xattr values), file capabilities, chattr and FAT
//! attribute flags and the quota project id.

use std::io;
use std::os::fd::RawFd;

use anyhow::{bail, Context, Result};
use pxar::format::{
    AclDefault, AclGroup, AclGroupObject, AclUser, FCaps, QuotaProjectId, StatxTimestamp, XAttr,
    ACL_NO_MASK,
};
use pxar::{Acl, Metadata};

use super::flags::{fs_magic, Flags};
use super::tools::{self, errno, errno_is_unsupported};

/// Name of the file capability xattr.
pub const XATTR_NAME_FCAPS: &[u8] = b"security.capability";
/// Name of the access ACL xattr.
pub const XATTR_NAME_ACL_ACCESS: &[u8] = b"system.posix_acl_access";
/// Name of the default ACL xattr.
pub const XATTR_NAME_ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

/// Whether an xattr with this name is archived as a plain XATTR item: `user.*`, `trusted.*`
/// and `security.NTACL` (samba), at most 255 bytes. The capability xattr is valid too but
/// stored as FCAPS.
pub fn is_valid_xattr_name(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    name.starts_with(b"user.")
        || name.starts_with(b"trusted.")
        || name == b"security.NTACL"
        || name == XATTR_NAME_FCAPS
}

/// The pxar `Stat` of an `lstat` result (chattr flags are added separately).
pub fn pxar_stat(stat: &libc::stat) -> pxar::format::Stat {
    pxar::format::Stat {
        mode: u64::from(stat.st_mode),
        flags: 0,
        uid: stat.st_uid,
        gid: stat.st_gid,
        mtime: StatxTimestamp::new(stat.st_mtime, stat.st_mtime_nsec as u32),
    }
}

/// Collect everything the archive stores about the object open as `fd` with `stat`.
///
/// `flags` are the effective feature flags (requested & file system); `fs_feature_flags`
/// loses XATTRS/ACL/FCAPS when the file system answers `EOPNOTSUPP`.
pub fn get_metadata(
    fd: RawFd,
    stat: &libc::stat,
    flags: Flags,
    fs_magic: i64,
    fs_feature_flags: &mut Flags,
    skip_e2big_xattr: bool,
) -> Result<Metadata> {
    let mut meta = Metadata::from_stat(pxar_stat(stat));
    get_xattr_fcaps_acl(&mut meta, fd, flags, fs_feature_flags, skip_e2big_xattr)?;
    get_chattr(&mut meta, fd)?;
    get_fat_attr(&mut meta, fd, fs_magic)?;
    get_quota_project_id(&mut meta, fd, flags, fs_magic)?;
    Ok(meta)
}

fn e2big_error() -> anyhow::Error {
    anyhow::format_err!("E2BIG: Argument list too long (try --skip-e2big-xattr)")
}

fn get_xattr_fcaps_acl(
    meta: &mut Metadata,
    fd: RawFd,
    flags: Flags,
    fs_feature_flags: &mut Flags,
    skip_e2big_xattr: bool,
) -> Result<()> {
    if !flags.contains(Flags::WITH_XATTRS) {
        return Ok(());
    }
    let names = match tools::flistxattr(fd) {
        Ok(names) => names,
        Err(err) => {
            return match errno(&err) {
                libc::EOPNOTSUPP => {
                    fs_feature_flags.remove(Flags::WITH_XATTRS);
                    Ok(())
                }
                libc::E2BIG if skip_e2big_xattr => Ok(()),
                libc::E2BIG => Err(e2big_error()),
                // O_PATH descriptors (symlinks, devices, fifos, sockets) carry no xattrs here.
                libc::EBADF => Ok(()),
                _ => Err(err).context("failed to read xattrs"),
            };
        }
    };

    for name in &names {
        let bytes = name.to_bytes();
        if bytes == XATTR_NAME_FCAPS {
            get_fcaps(meta, fd, flags, fs_feature_flags)?;
            continue;
        }
        if bytes == XATTR_NAME_ACL_ACCESS || bytes == XATTR_NAME_ACL_DEFAULT {
            get_acl(meta, fd, flags, fs_feature_flags)?;
            continue;
        }
        if !is_valid_xattr_name(bytes) {
            continue;
        }
        match tools::fgetxattr(fd, name) {
            Ok(value) => meta.xattrs.push(XAttr::new(bytes, value)),
            Err(err) => match errno(&err) {
                // Removed meanwhile, or not applicable: nothing to store.
                libc::ENODATA | libc::EOPNOTSUPP | libc::EBADF => (),
                libc::E2BIG if skip_e2big_xattr => return Ok(()),
                libc::E2BIG => return Err(e2big_error()),
                _ => {
                    return Err(err)
                        .with_context(|| format!("error reading extended attribute {name:?}"))
                }
            },
        }
    }
    Ok(())
}

fn get_fcaps(
    meta: &mut Metadata,
    fd: RawFd,
    flags: Flags,
    fs_feature_flags: &mut Flags,
) -> Result<()> {
    if !flags.contains(Flags::WITH_FCAPS) {
        return Ok(());
    }
    let name = c"security.capability";
    match tools::fgetxattr(fd, name) {
        Ok(data) => meta.fcaps = Some(FCaps { data }),
        Err(err) => match errno(&err) {
            libc::ENODATA | libc::EBADF => (),
            libc::EOPNOTSUPP => fs_feature_flags.remove(Flags::WITH_FCAPS),
            _ => return Err(err).context("failed to read file capabilities"),
        },
    }
    Ok(())
}

fn get_acl(
    meta: &mut Metadata,
    fd: RawFd,
    flags: Flags,
    fs_feature_flags: &mut Flags,
) -> Result<()> {
    if !flags.contains(Flags::WITH_ACL) || meta.stat.is_symlink() {
        return Ok(());
    }
    get_acl_do(meta, fd, AclType::Access, fs_feature_flags)?;
    if meta.stat.is_dir() {
        get_acl_do(meta, fd, AclType::Default, fs_feature_flags)?;
    }
    Ok(())
}

fn get_acl_do(
    meta: &mut Metadata,
    fd: RawFd,
    acl_type: AclType,
    fs_feature_flags: &mut Flags,
) -> Result<()> {
    let name = match acl_type {
        AclType::Access => c"system.posix_acl_access",
        AclType::Default => c"system.posix_acl_default",
    };
    let raw = match tools::fgetxattr(fd, name) {
        Ok(raw) => raw,
        Err(err) => {
            return match errno(&err) {
                libc::EOPNOTSUPP => {
                    fs_feature_flags.remove(Flags::WITH_ACL);
                    Ok(())
                }
                // No such ACL: an access ACL then equals the mode, a default ACL is empty.
                libc::EBADF | libc::ENODATA => Ok(()),
                _ => Err(err).context("error while reading ACL"),
            };
        }
    };
    let entries = parse_acl_xattr(&raw)?;
    apply_acl(&mut meta.acl, &entries, acl_type);
    Ok(())
}

/// Which ACL of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclType {
    /// The access ACL (`system.posix_acl_access`).
    Access,
    /// The default ACL of a directory (`system.posix_acl_default`).
    Default,
}

/// Tag of a POSIX ACL entry, with the values of the xattr representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AclTag {
    /// Owner.
    UserObj = 0x01,
    /// Named user.
    User = 0x02,
    /// Owning group.
    GroupObj = 0x04,
    /// Named group.
    Group = 0x08,
    /// Mask.
    Mask = 0x10,
    /// Others.
    Other = 0x20,
}

/// One POSIX ACL entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclEntry {
    /// Entry tag.
    pub tag: AclTag,
    /// Permission bits (read 4, write 2, execute 1).
    pub permissions: u16,
    /// Uid or gid for named entries, `u32::MAX` otherwise.
    pub id: u32,
}

/// Version word of the `system.posix_acl_*` xattr format.
const ACL_XATTR_VERSION: u32 = 2;
/// Qualifier of entries without an id.
const ACL_UNDEFINED_ID: u32 = u32::MAX;

/// Parse the raw value of a `system.posix_acl_access`/`_default` xattr: a `u32` version (2)
/// followed by 8-byte entries `tag: u16, perm: u16, id: u32`, all little endian.
pub fn parse_acl_xattr(raw: &[u8]) -> Result<Vec<AclEntry>> {
    if raw.len() < 4 || !(raw.len() - 4).is_multiple_of(8) {
        bail!("ACL xattr has an invalid size of {} bytes", raw.len());
    }
    let version = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    if version != ACL_XATTR_VERSION {
        bail!("ACL xattr has unsupported version {version}");
    }
    raw[4..]
        .chunks_exact(8)
        .map(|chunk| {
            let tag = u16::from_le_bytes([chunk[0], chunk[1]]);
            let permissions = u16::from_le_bytes([chunk[2], chunk[3]]);
            let id = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            let tag = match tag {
                0x01 => AclTag::UserObj,
                0x02 => AclTag::User,
                0x04 => AclTag::GroupObj,
                0x08 => AclTag::Group,
                0x10 => AclTag::Mask,
                0x20 => AclTag::Other,
                other => bail!("unexpected ACL tag {other:#x} encountered"),
            };
            if permissions & !7 != 0 {
                bail!("ACL entry with invalid permissions {permissions:#o}");
            }
            Ok(AclEntry {
                tag,
                permissions,
                id,
            })
        })
        .collect()
}

/// The raw xattr value for `entries` (sorted by tag, then id, as the kernel requires).
pub fn acl_xattr_value(entries: &[AclEntry]) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|entry| (entry.tag, entry.id));
    let mut out = Vec::with_capacity(4 + 8 * sorted.len());
    out.extend_from_slice(&ACL_XATTR_VERSION.to_le_bytes());
    for entry in sorted {
        out.extend_from_slice(&(entry.tag as u16).to_le_bytes());
        out.extend_from_slice(&entry.permissions.to_le_bytes());
        let id = match entry.tag {
            AclTag::User | AclTag::Group => entry.id,
            _ => ACL_UNDEFINED_ID,
        };
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// Store a parsed ACL in the pxar ACL fields (pxar.md §14.3): named users and groups sorted;
/// for the access ACL the group-object permissions only when a mask exists; for the default
/// ACL the four base permissions when any of them exists.
pub fn apply_acl(acl: &mut Acl, entries: &[AclEntry], acl_type: AclType) {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut user_obj = None;
    let mut group_obj = None;
    let mut other = None;
    let mut mask = None;
    for entry in entries {
        let permissions = u64::from(entry.permissions);
        match entry.tag {
            AclTag::UserObj => user_obj = Some(permissions),
            AclTag::GroupObj => group_obj = Some(permissions),
            AclTag::Other => other = Some(permissions),
            AclTag::Mask => mask = Some(permissions),
            AclTag::User => users.push(AclUser {
                uid: u64::from(entry.id),
                permissions,
            }),
            AclTag::Group => groups.push(AclGroup {
                gid: u64::from(entry.id),
                permissions,
            }),
        }
    }
    users.sort();
    groups.sort();
    match acl_type {
        AclType::Access => {
            acl.users = users;
            acl.groups = groups;
            acl.group_obj = match (group_obj, mask) {
                (Some(permissions), Some(_)) => Some(AclGroupObject { permissions }),
                _ => None,
            };
        }
        AclType::Default => {
            acl.default_users = users;
            acl.default_groups = groups;
            acl.default =
                if user_obj.is_some() || group_obj.is_some() || other.is_some() || mask.is_some() {
                    Some(AclDefault {
                        user_obj_permissions: user_obj.unwrap_or(ACL_NO_MASK),
                        group_obj_permissions: group_obj.unwrap_or(ACL_NO_MASK),
                        other_permissions: other.unwrap_or(ACL_NO_MASK),
                        mask_permissions: mask.unwrap_or(ACL_NO_MASK),
                    })
                } else {
                    None
                };
        }
    }
}

fn unsupported_or(err: io::Error, what: &'static str) -> Result<()> {
    if errno_is_unsupported(&err) {
        Ok(())
    } else {
        Err(err).context(what)
    }
}

fn get_chattr(meta: &mut Metadata, fd: RawFd) -> Result<()> {
    match tools::chattr_flags(fd) {
        Ok(attr) => {
            meta.stat.flags |= Flags::from_chattr(attr).bits();
            Ok(())
        }
        Err(err) => unsupported_or(err, "failed to read file attributes"),
    }
}

fn get_fat_attr(meta: &mut Metadata, fd: RawFd, magic: i64) -> Result<()> {
    if magic != fs_magic::MSDOS && magic != fs_magic::FUSE {
        return Ok(());
    }
    match tools::fat_attributes(fd) {
        Ok(attr) => {
            meta.stat.flags |= Flags::from_fat_attr(attr).bits();
            Ok(())
        }
        Err(err) => unsupported_or(err, "failed to read fat attributes"),
    }
}

fn get_quota_project_id(meta: &mut Metadata, fd: RawFd, flags: Flags, magic: i64) -> Result<()> {
    if !(meta.stat.is_dir() || meta.stat.is_regular_file()) {
        return Ok(());
    }
    if !flags.contains(Flags::WITH_QUOTA_PROJID) {
        return Ok(());
    }
    if !matches!(
        magic,
        fs_magic::EXT4 | fs_magic::XFS | fs_magic::FUSE | fs_magic::ZFS
    ) {
        return Ok(());
    }
    match tools::fs_xattr(fd) {
        Ok(attr) => {
            if attr.projid != 0 {
                meta.quota_project_id = Some(QuotaProjectId {
                    projid: u64::from(attr.projid),
                });
            }
            Ok(())
        }
        Err(err) => unsupported_or(err, "error while reading quota project id"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: AclTag, permissions: u16, id: u32) -> AclEntry {
        AclEntry {
            tag,
            permissions,
            id,
        }
    }

    #[test]
    fn xattr_name_filter() {
        for name in [
            &b"user.x"[..],
            b"trusted.overlay.opaque",
            b"security.NTACL",
            b"security.capability",
        ] {
            assert!(is_valid_xattr_name(name), "{name:?}");
        }
        let long = [b"user.".to_vec(), vec![b'a'; 251]].concat();
        assert!(!is_valid_xattr_name(&long));
        assert!(is_valid_xattr_name(&long[..255]));
        for name in [
            &b""[..],
            b"security.selinux",
            b"security.ima",
            b"system.posix_acl_access",
            b"system.nfs4_acl",
            b"user",
            b"USER.x",
        ] {
            assert!(!is_valid_xattr_name(name), "{name:?}");
        }
    }

    /// `setfacl -m u:1234:rw-,g:2345:r--,u:99:r-- f` on a 0644 file (pxar.md §14.3).
    #[test]
    fn access_acl_spec_example() {
        let entries = [
            entry(AclTag::UserObj, 6, u32::MAX),
            entry(AclTag::User, 6, 1234),
            entry(AclTag::User, 4, 99),
            entry(AclTag::GroupObj, 4, u32::MAX),
            entry(AclTag::Group, 4, 2345),
            entry(AclTag::Mask, 6, u32::MAX),
            entry(AclTag::Other, 4, u32::MAX),
        ];
        let raw = acl_xattr_value(&entries);
        assert_eq!(raw.len(), 4 + 7 * 8);
        let parsed = parse_acl_xattr(&raw).unwrap();
        let mut acl = Acl::default();
        apply_acl(&mut acl, &parsed, AclType::Access);
        assert_eq!(
            acl.users,
            [
                AclUser {
                    uid: 99,
                    permissions: 4
                },
                AclUser {
                    uid: 1234,
                    permissions: 6
                }
            ]
        );
        assert_eq!(
            acl.groups,
            [AclGroup {
                gid: 2345,
                permissions: 4
            }]
        );
        assert_eq!(acl.group_obj, Some(AclGroupObject { permissions: 4 }));
        assert!(acl.default.is_none() && acl.default_users.is_empty());
    }

    #[test]
    fn access_acl_without_mask_has_no_group_obj() {
        let entries = [
            entry(AclTag::UserObj, 7, u32::MAX),
            entry(AclTag::GroupObj, 5, u32::MAX),
            entry(AclTag::Other, 5, u32::MAX),
        ];
        let mut acl = Acl::default();
        apply_acl(&mut acl, &entries, AclType::Access);
        assert!(acl.is_empty());
    }

    /// Directory with `setfacl -d -m u:1234:r-x,g:2345:rwx` (pxar.md §14.3).
    #[test]
    fn default_acl_spec_example() {
        let entries = [
            entry(AclTag::UserObj, 7, u32::MAX),
            entry(AclTag::User, 5, 1234),
            entry(AclTag::GroupObj, 5, u32::MAX),
            entry(AclTag::Group, 7, 2345),
            entry(AclTag::Mask, 7, u32::MAX),
            entry(AclTag::Other, 5, u32::MAX),
        ];
        let mut acl = Acl::default();
        apply_acl(&mut acl, &entries, AclType::Default);
        assert_eq!(
            acl.default,
            Some(AclDefault {
                user_obj_permissions: 7,
                group_obj_permissions: 5,
                other_permissions: 5,
                mask_permissions: 7
            })
        );
        assert_eq!(
            acl.default_users,
            [AclUser {
                uid: 1234,
                permissions: 5
            }]
        );
        assert_eq!(
            acl.default_groups,
            [AclGroup {
                gid: 2345,
                permissions: 7
            }]
        );
        assert!(acl.users.is_empty() && acl.group_obj.is_none());

        // Missing base entries are stored as NO_MASK.
        let mut partial = Acl::default();
        apply_acl(
            &mut partial,
            &[entry(AclTag::Other, 1, u32::MAX)],
            AclType::Default,
        );
        assert_eq!(
            partial.default,
            Some(AclDefault {
                user_obj_permissions: ACL_NO_MASK,
                group_obj_permissions: ACL_NO_MASK,
                other_permissions: 1,
                mask_permissions: ACL_NO_MASK
            })
        );
        let mut empty = Acl::default();
        apply_acl(&mut empty, &[], AclType::Default);
        assert!(empty.default.is_none());
    }

    #[test]
    fn raw_acl_layout_and_errors() {
        let raw = acl_xattr_value(&[
            entry(AclTag::Other, 4, 7),
            entry(AclTag::User, 6, 1000),
            entry(AclTag::UserObj, 7, 0),
        ]);
        assert_eq!(
            raw,
            [
                2, 0, 0, 0, //
                1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff, //
                2, 0, 6, 0, 0xe8, 3, 0, 0, //
                0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
            ]
        );
        assert!(parse_acl_xattr(&raw[..raw.len() - 1]).is_err());
        assert!(parse_acl_xattr(&[]).is_err());
        let mut bad_version = raw.clone();
        bad_version[0] = 1;
        assert!(parse_acl_xattr(&bad_version).is_err());
        let mut bad_tag = raw.clone();
        bad_tag[4] = 0x40;
        assert!(parse_acl_xattr(&bad_tag).is_err());
        let mut bad_perm = raw;
        bad_perm[6] = 8;
        assert!(parse_acl_xattr(&bad_perm).is_err());
        assert_eq!(parse_acl_xattr(&[2, 0, 0, 0]).unwrap(), []);
    }
}
