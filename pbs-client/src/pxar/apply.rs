//! Restoring the metadata stored in a pxar entry onto an extracted file system object.
//!
//! Order matters: ownership first (a `chown` clears set-id bits and file capabilities), then
//! xattrs, ACLs, capabilities, project id and permissions, then the modification time, and
//! the chattr flags last (an immutable or append-only file rejects later changes).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::{format_err, Error, Result};
use pxar::format::{AclGroup, AclUser, ACL_NO_MASK};
use pxar::Metadata;

use super::flags::Flags;

const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;

/// `struct fsxattr` of the `FS_IOC_FS[GS]ETXATTR` ioctls.
#[repr(C)]
#[derive(Default)]
struct FsXAttr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

/// Name of the xattr holding file capabilities.
pub const XATTR_FCAPS: &CStr = c"security.capability";
/// Name of the xattr holding the access ACL.
pub const XATTR_ACL_ACCESS: &CStr = c"system.posix_acl_access";
/// Name of the xattr holding the default ACL.
pub const XATTR_ACL_DEFAULT: &CStr = c"system.posix_acl_default";

/// The object metadata is restored onto.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// An open regular file or directory.
    Fd(BorrowedFd<'a>),
    /// A symlink, device, fifo or socket: `name` inside the open directory `parent`;
    /// `path` is its full path (xattr calls have no `*at` variant).
    At {
        /// Containing directory.
        parent: BorrowedFd<'a>,
        /// Name inside `parent`.
        name: &'a CStr,
        /// Full path of the object.
        path: &'a CStr,
        /// Whether the object is a symlink (its permission bits cannot be changed).
        is_symlink: bool,
    },
}

/// Receives a per-step failure; returning an error aborts, `Ok` continues with the next step.
pub type StepErrorHandler<'a> = dyn FnMut(Error) -> Result<()> + 'a;

fn cvt(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether an errno means "this file system or object does not support the operation".
fn is_unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOTTY | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL | libc::EBADF)
    )
}

/// Set the chattr flags of `flag_mask` that `stat_flags` (the entry's `Stat.flags`) contains,
/// masked by the feature flags. Flags are only ever added; unsupported file systems are
/// silently skipped.
pub fn apply_chattr(
    fd: BorrowedFd<'_>,
    stat_flags: u64,
    feature_flags: Flags,
    flag_mask: Flags,
) -> Result<()> {
    let wanted = (Flags::from_bits_retain(stat_flags) & feature_flags & flag_mask).to_chattr();
    // Every chattr bit the archive format maps fits the ioctl's int.
    let wanted = wanted as libc::c_int;
    if wanted == 0 {
        return Ok(());
    }
    let mut current: libc::c_int = 0;
    // SAFETY: the ioctl writes one int into `current`.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_GETFLAGS, &mut current) };
    if let Err(err) = cvt(ret) {
        return if is_unsupported(&err) {
            Ok(())
        } else {
            Err(format_err!("failed to read chattr flags - {err}"))
        };
    }
    if current & wanted == wanted {
        return Ok(());
    }
    let new = current | wanted;
    // SAFETY: the ioctl reads one int from `new`.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_SETFLAGS, &new) };
    match cvt(ret) {
        Err(err) if !is_unsupported(&err) => Err(format_err!("failed to set chattr flags - {err}")),
        _ => Ok(()),
    }
}

fn apply_quota_project_id(fd: BorrowedFd<'_>, projid: u64) -> Result<()> {
    let projid =
        u32::try_from(projid).map_err(|_| format_err!("quota project id {projid} out of range"))?;
    let mut attr = FsXAttr::default();
    // SAFETY: the ioctl fills a `struct fsxattr`, which `FsXAttr` mirrors.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSGETXATTR, &mut attr) };
    if let Err(err) = cvt(ret) {
        return if is_unsupported(&err) {
            Ok(())
        } else {
            Err(format_err!("failed to read quota project id - {err}"))
        };
    }
    if attr.projid == projid {
        return Ok(());
    }
    attr.projid = projid;
    // SAFETY: the ioctl reads a `struct fsxattr`.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSSETXATTR, &attr) };
    match cvt(ret) {
        Err(err) if !is_unsupported(&err) => Err(format_err!(
            "failed to set quota project id {projid} - {err}"
        )),
        _ => Ok(()),
    }
}

fn set_xattr(target: Target<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    let ptr = value.as_ptr() as *const libc::c_void;
    // SAFETY: name is NUL-terminated, value points to value.len() readable bytes.
    let ret = unsafe {
        match target {
            Target::Fd(fd) => libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), ptr, value.len(), 0),
            Target::At { path, .. } => {
                libc::lsetxattr(path.as_ptr(), name.as_ptr(), ptr, value.len(), 0)
            }
        }
    };
    cvt(ret)
}

/// Tags and layout of the kernel's `system.posix_acl_*` xattr value.
mod acl_xattr {
    pub const VERSION: u32 = 2;
    pub const USER_OBJ: u16 = 0x01;
    pub const USER: u16 = 0x02;
    pub const GROUP_OBJ: u16 = 0x04;
    pub const GROUP: u16 = 0x08;
    pub const MASK: u16 = 0x10;
    pub const OTHER: u16 = 0x20;
    pub const UNDEFINED_ID: u32 = u32::MAX;
}

/// Builds `system.posix_acl_*` xattr values.
struct AclBuilder {
    bytes: Vec<u8>,
}

impl AclBuilder {
    fn new() -> Self {
        Self {
            bytes: acl_xattr::VERSION.to_le_bytes().to_vec(),
        }
    }

    fn add(&mut self, tag: u16, perms: u64, id: u32) -> Result<()> {
        let perms = u16::try_from(perms)
            .ok()
            .filter(|p| *p <= 7)
            .ok_or_else(|| format_err!("invalid ACL permissions {perms:#x}"))?;
        self.bytes.extend_from_slice(&tag.to_le_bytes());
        self.bytes.extend_from_slice(&perms.to_le_bytes());
        self.bytes.extend_from_slice(&id.to_le_bytes());
        Ok(())
    }

    fn add_users(&mut self, users: &[AclUser]) -> Result<()> {
        let mut users = users.to_vec();
        users.sort();
        for user in users {
            let id = u32::try_from(user.uid)
                .map_err(|_| format_err!("ACL user id {} out of range", user.uid))?;
            self.add(acl_xattr::USER, user.permissions, id)?;
        }
        Ok(())
    }

    fn add_groups(&mut self, groups: &[AclGroup]) -> Result<()> {
        let mut groups = groups.to_vec();
        groups.sort();
        for group in groups {
            let id = u32::try_from(group.gid)
                .map_err(|_| format_err!("ACL group id {} out of range", group.gid))?;
            self.add(acl_xattr::GROUP, group.permissions, id)?;
        }
        Ok(())
    }
}

/// The access ACL xattr value, or `None` if the entry has no extended access ACL. The
/// owner/other entries and the mask come from `mode` (the archive stores them only there).
pub fn access_acl_xattr(metadata: &Metadata) -> Result<Option<Vec<u8>>> {
    let acl = &metadata.acl;
    if acl.users.is_empty() && acl.groups.is_empty() && acl.group_obj.is_none() {
        return Ok(None);
    }
    let mode = metadata.stat.mode;
    let mut builder = AclBuilder::new();
    builder.add(
        acl_xattr::USER_OBJ,
        (mode >> 6) & 7,
        acl_xattr::UNDEFINED_ID,
    )?;
    builder.add_users(&acl.users)?;
    let group_obj = match acl.group_obj {
        Some(group_obj) => group_obj.permissions,
        None => (mode >> 3) & 7,
    };
    builder.add(acl_xattr::GROUP_OBJ, group_obj, acl_xattr::UNDEFINED_ID)?;
    builder.add_groups(&acl.groups)?;
    builder.add(acl_xattr::MASK, (mode >> 3) & 7, acl_xattr::UNDEFINED_ID)?;
    builder.add(acl_xattr::OTHER, mode & 7, acl_xattr::UNDEFINED_ID)?;
    Ok(Some(builder.bytes))
}

/// The default ACL xattr value of a directory, or `None` if it has none.
pub fn default_acl_xattr(metadata: &Metadata) -> Result<Option<Vec<u8>>> {
    let acl = &metadata.acl;
    if acl.default.is_none() && acl.default_users.is_empty() && acl.default_groups.is_empty() {
        return Ok(None);
    }
    let base = acl.default;
    let perm = |value: Option<u64>| value.filter(|v| *v != ACL_NO_MASK);
    let mut builder = AclBuilder::new();
    if let Some(p) = perm(base.map(|d| d.user_obj_permissions)) {
        builder.add(acl_xattr::USER_OBJ, p, acl_xattr::UNDEFINED_ID)?;
    }
    builder.add_users(&acl.default_users)?;
    if let Some(p) = perm(base.map(|d| d.group_obj_permissions)) {
        builder.add(acl_xattr::GROUP_OBJ, p, acl_xattr::UNDEFINED_ID)?;
    }
    builder.add_groups(&acl.default_groups)?;
    if let Some(p) = perm(base.map(|d| d.mask_permissions)) {
        builder.add(acl_xattr::MASK, p, acl_xattr::UNDEFINED_ID)?;
    }
    if let Some(p) = perm(base.map(|d| d.other_permissions)) {
        builder.add(acl_xattr::OTHER, p, acl_xattr::UNDEFINED_ID)?;
    }
    Ok(Some(builder.bytes))
}

/// Whether the process runs as root (asked once: extraction calls this for every entry).
fn is_root() -> bool {
    static IS_ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: geteuid has no preconditions.
    *IS_ROOT.get_or_init(|| unsafe { libc::geteuid() == 0 })
}

fn chown(target: Target<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscalls on valid fds and NUL-terminated names.
    let ret = unsafe {
        match target {
            Target::Fd(fd) => libc::fchown(fd.as_raw_fd(), uid, gid),
            Target::At { parent, name, .. } => libc::fchownat(
                parent.as_raw_fd(),
                name.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            ),
        }
    };
    cvt(ret)
}

fn chmod(target: Target<'_>, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: plain syscalls on valid fds and NUL-terminated names.
    let ret = unsafe {
        match target {
            Target::Fd(fd) => libc::fchmod(fd.as_raw_fd(), mode),
            Target::At {
                is_symlink: true, ..
            } => return Ok(()),
            Target::At { parent, name, .. } => {
                libc::fchmodat(parent.as_raw_fd(), name.as_ptr(), mode, 0)
            }
        }
    };
    cvt(ret)
}

fn set_mtime(target: Target<'_>, secs: i64, nanos: u32) -> io::Result<()> {
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: nanos as libc::c_long,
        },
    ];
    // SAFETY: `times` holds two timespecs as the syscalls require.
    let ret = unsafe {
        match target {
            Target::Fd(fd) => libc::futimens(fd.as_raw_fd(), times.as_ptr()),
            Target::At { parent, name, .. } => libc::utimensat(
                parent.as_raw_fd(),
                name.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            ),
        }
    };
    cvt(ret)
}

fn xattr_name(name: &[u8]) -> Result<CString> {
    CString::new(name).map_err(|_| format_err!("xattr name {:?} contains NUL", lossy(name)))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Restore everything `feature_flags` allows from `metadata` onto `target`. Each failed step
/// goes to `on_error`; the remaining steps still run unless it returns an error.
pub fn apply_metadata(
    target: Target<'_>,
    metadata: &Metadata,
    feature_flags: Flags,
    on_error: &mut StepErrorHandler<'_>,
) -> Result<()> {
    let stat = &metadata.stat;

    if feature_flags.contains(Flags::WITH_OWNER) && is_root() {
        if let Err(err) = chown(target, stat.uid, stat.gid) {
            on_error(format_err!(
                "failed to set ownership {}:{} - {err}",
                stat.uid,
                stat.gid
            ))?;
        }
    }

    if feature_flags.contains(Flags::WITH_XATTRS) {
        for xattr in &metadata.xattrs {
            let result = xattr_name(&xattr.name).and_then(|name| {
                match set_xattr(target, &name, &xattr.value) {
                    Err(err) if err.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
                    other => other.map_err(Error::from),
                }
            });
            if let Err(err) = result {
                on_error(format_err!(
                    "failed to set xattr {:?} - {err}",
                    lossy(&xattr.name)
                ))?;
            }
        }
    }

    if feature_flags.contains(Flags::WITH_ACL) {
        let acls = [
            (XATTR_ACL_ACCESS, access_acl_xattr(metadata)),
            (XATTR_ACL_DEFAULT, default_acl_xattr(metadata)),
        ];
        for (name, value) in acls {
            let result = match value {
                Ok(Some(value)) => match set_xattr(target, name, &value) {
                    Err(err) if err.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
                    other => other.map_err(Error::from),
                },
                Ok(None) => Ok(()),
                Err(err) => Err(err),
            };
            if let Err(err) = result {
                on_error(format_err!("failed to restore ACL {name:?} - {err}"))?;
            }
        }
    }

    if feature_flags.contains(Flags::WITH_FCAPS) {
        if let Some(fcaps) = &metadata.fcaps {
            match set_xattr(target, XATTR_FCAPS, &fcaps.data) {
                Err(err) if err.raw_os_error() != Some(libc::EOPNOTSUPP) => {
                    on_error(format_err!("failed to restore file capabilities - {err}"))?;
                }
                _ => {}
            }
        }
    }

    if feature_flags.contains(Flags::WITH_QUOTA_PROJID) {
        if let (Some(projid), Target::Fd(fd)) = (metadata.quota_project_id, target) {
            if let Err(err) = apply_quota_project_id(fd, projid.projid) {
                on_error(err)?;
            }
        }
    }

    if feature_flags.contains(Flags::WITH_PERMISSIONS) {
        let mode = (stat.mode & 0o7777) as libc::mode_t;
        if let Err(err) = chmod(target, mode) {
            on_error(format_err!("failed to set permissions {mode:o} - {err}"))?;
        }
    }

    if let Err(err) = set_mtime(target, stat.mtime.secs, stat.mtime.nanos) {
        on_error(format_err!(
            "failed to set mtime {}.{:09} - {err}",
            stat.mtime.secs,
            stat.mtime.nanos
        ))?;
    }

    if let Target::Fd(fd) = target {
        if let Err(err) = apply_chattr(fd, stat.flags, feature_flags, Flags::WITH_CHATTR) {
            on_error(err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pxar::format::{AclDefault, AclGroupObject, Stat};

    fn entries(bytes: &[u8]) -> Vec<(u16, u16, u32)> {
        assert_eq!(&bytes[..4], &2u32.to_le_bytes());
        bytes[4..]
            .chunks(8)
            .map(|c| {
                (
                    u16::from_le_bytes([c[0], c[1]]),
                    u16::from_le_bytes([c[2], c[3]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect()
    }

    const U: u32 = u32::MAX;

    #[test]
    fn access_acl_from_spec_example() {
        // setfacl -m u:1234:rw-,g:2345:r--,u:99:r-- on a 0o664 file: mask = group bits (rw-).
        let mut metadata = Metadata::from_stat(Stat {
            mode: 0o100664,
            ..Default::default()
        });
        metadata.acl.users = vec![
            AclUser {
                uid: 1234,
                permissions: 6,
            },
            AclUser {
                uid: 99,
                permissions: 4,
            },
        ];
        metadata.acl.groups = vec![AclGroup {
            gid: 2345,
            permissions: 4,
        }];
        metadata.acl.group_obj = Some(AclGroupObject { permissions: 4 });
        let value = access_acl_xattr(&metadata).unwrap().unwrap();
        assert_eq!(
            entries(&value),
            vec![
                (0x01, 6, U),
                (0x02, 4, 99),
                (0x02, 6, 1234),
                (0x04, 4, U),
                (0x08, 4, 2345),
                (0x10, 6, U),
                (0x20, 4, U),
            ]
        );
        assert_eq!(default_acl_xattr(&metadata).unwrap(), None);
    }

    #[test]
    fn default_acl_skips_unset_entries() {
        let mut metadata = Metadata::from_stat(Stat {
            mode: 0o40755,
            ..Default::default()
        });
        metadata.acl.default = Some(AclDefault {
            user_obj_permissions: 7,
            group_obj_permissions: 5,
            other_permissions: 5,
            mask_permissions: ACL_NO_MASK,
        });
        metadata.acl.default_groups = vec![AclGroup {
            gid: 2345,
            permissions: 7,
        }];
        assert_eq!(access_acl_xattr(&metadata).unwrap(), None);
        let value = default_acl_xattr(&metadata).unwrap().unwrap();
        assert_eq!(
            entries(&value),
            vec![(0x01, 7, U), (0x04, 5, U), (0x08, 7, 2345), (0x20, 5, U)]
        );
    }

    #[test]
    fn acl_rejects_invalid_permissions() {
        let mut metadata = Metadata::from_stat(Stat {
            mode: 0o100644,
            ..Default::default()
        });
        metadata.acl.users = vec![AclUser {
            uid: 1,
            permissions: 8,
        }];
        let err = access_acl_xattr(&metadata).unwrap_err();
        assert!(err.to_string().contains("invalid ACL permissions"), "{err}");
    }
}
