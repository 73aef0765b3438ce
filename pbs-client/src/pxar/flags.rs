//! Feature flags: which file attributes the archiver collects, which a file system supports,
//! and the `Stat.flags` mapping of chattr and FAT attributes.

use std::fmt;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

/// A set of pxar feature flags (u64 bit set).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u64);

/// File-system magic numbers (`statfs.f_type`) the flag masks and the walk care about.
pub mod fs_magic {
    /// vfat / msdos.
    pub const MSDOS: i64 = 0x4d44;
    /// ext2/3/4.
    pub const EXT4: i64 = 0xEF53;
    /// XFS.
    pub const XFS: i64 = 0x5846_5342;
    /// ZFS.
    pub const ZFS: i64 = 0x2FC1_2FC1;
    /// btrfs.
    pub const BTRFS: i64 = 0x9123_683E;
    /// tmpfs.
    pub const TMPFS: i64 = 0x0102_1994;
    /// FUSE.
    pub const FUSE: i64 = 0x6573_5546;

    /// binfmt_misc.
    pub const BINFMTFS: i64 = 0x4249_4e4d;
    /// cgroup2.
    pub const CGROUP2: i64 = 0x6367_7270;
    /// cgroup v1.
    pub const CGROUP: i64 = 0x0027_e0eb;
    /// configfs.
    pub const CONFIGFS: i64 = 0x6265_6570;
    /// debugfs.
    pub const DEBUGFS: i64 = 0x6462_6720;
    /// devpts.
    pub const DEVPTS: i64 = 0x0000_1cd1;
    /// efivarfs.
    pub const EFIVARFS: i64 = 0xde5e_81e4;
    /// fusectl.
    pub const FUSE_CTL: i64 = 0x6573_5543;
    /// hugetlbfs.
    pub const HUGETLBFS: i64 = 0x9584_58f6;
    /// mqueue.
    pub const MQUEUE: i64 = 0x1980_0202;
    /// nfsd.
    pub const NFSD: i64 = 0x6e66_7364;
    /// proc.
    pub const PROC: i64 = 0x0000_9fa0;
    /// pstore.
    pub const PSTORE: i64 = 0x6165_676C;
    /// rpc_pipefs.
    pub const RPCAUTH: i64 = 0x6759_6969;
    /// securityfs.
    pub const SECURITYFS: i64 = 0x7363_6673;
    /// selinuxfs.
    pub const SELINUX: i64 = 0xf97c_ff8c;
    /// smackfs.
    pub const SMACK: i64 = 0x4341_5d53;
    /// sysfs.
    pub const SYSFS: i64 = 0x6265_6572;

    /// Virtual file systems are never archived: refused as root, skipped as mount points.
    pub fn is_virtual_file_system(magic: i64) -> bool {
        matches!(
            magic,
            BINFMTFS
                | CGROUP2
                | CGROUP
                | CONFIGFS
                | DEBUGFS
                | DEVPTS
                | EFIVARFS
                | FUSE_CTL
                | HUGETLBFS
                | MQUEUE
                | NFSD
                | PROC
                | PSTORE
                | RPCAUTH
                | SECURITYFS
                | SELINUX
                | SMACK
                | SYSFS
        )
    }
}

/// chattr bits (`FS_IOC_GETFLAGS`) paired with the pxar flag they map to.
const CHATTR_MAP: [(i64, Flags); 10] = [
    (0x20, Flags::WITH_FLAG_APPEND),
    (0x80, Flags::WITH_FLAG_NOATIME),
    (0x4, Flags::WITH_FLAG_COMPR),
    (0x0080_0000, Flags::WITH_FLAG_NOCOW),
    (0x40, Flags::WITH_FLAG_NODUMP),
    (0x0001_0000, Flags::WITH_FLAG_DIRSYNC),
    (0x10, Flags::WITH_FLAG_IMMUTABLE),
    (0x8, Flags::WITH_FLAG_SYNC),
    (0x400, Flags::WITH_FLAG_NOCOMP),
    (0x2000_0000, Flags::WITH_FLAG_PROJINHERIT),
];

/// FAT attribute bits (`FAT_IOCTL_GET_ATTRIBUTES`) paired with their pxar flag.
const FAT_ATTR_MAP: [(u32, Flags); 3] = [
    (2, Flags::WITH_FLAG_HIDDEN),
    (4, Flags::WITH_FLAG_SYSTEM),
    (32, Flags::WITH_FLAG_ARCHIVE),
];

impl Flags {
    /// Timestamps have a 2 second granularity.
    pub const WITH_2SEC_TIME: Flags = Flags(0x40);
    /// Only the read-only bit of the permissions exists.
    pub const WITH_READ_ONLY: Flags = Flags(0x80);
    /// Full permission bits.
    pub const WITH_PERMISSIONS: Flags = Flags(0x100);
    /// Symbolic links.
    pub const WITH_SYMLINKS: Flags = Flags(0x200);
    /// Device nodes.
    pub const WITH_DEVICE_NODES: Flags = Flags(0x400);
    /// Named pipes.
    pub const WITH_FIFOS: Flags = Flags(0x800);
    /// Unix sockets.
    pub const WITH_SOCKETS: Flags = Flags(0x1000);
    /// FAT "hidden" attribute.
    pub const WITH_FLAG_HIDDEN: Flags = Flags(0x2000);
    /// FAT "system" attribute.
    pub const WITH_FLAG_SYSTEM: Flags = Flags(0x4000);
    /// FAT "archive" attribute.
    pub const WITH_FLAG_ARCHIVE: Flags = Flags(0x8000);
    /// chattr append-only.
    pub const WITH_FLAG_APPEND: Flags = Flags(0x10000);
    /// chattr no-atime.
    pub const WITH_FLAG_NOATIME: Flags = Flags(0x20000);
    /// chattr compress.
    pub const WITH_FLAG_COMPR: Flags = Flags(0x40000);
    /// chattr no copy-on-write.
    pub const WITH_FLAG_NOCOW: Flags = Flags(0x80000);
    /// chattr no-dump.
    pub const WITH_FLAG_NODUMP: Flags = Flags(0x0010_0000);
    /// chattr synchronous directory updates.
    pub const WITH_FLAG_DIRSYNC: Flags = Flags(0x0020_0000);
    /// chattr immutable.
    pub const WITH_FLAG_IMMUTABLE: Flags = Flags(0x0040_0000);
    /// chattr synchronous updates.
    pub const WITH_FLAG_SYNC: Flags = Flags(0x0080_0000);
    /// chattr no compression.
    pub const WITH_FLAG_NOCOMP: Flags = Flags(0x0100_0000);
    /// chattr project id inheritance.
    pub const WITH_FLAG_PROJINHERIT: Flags = Flags(0x0200_0000);
    /// btrfs subvolume.
    pub const WITH_SUBVOLUME: Flags = Flags(0x0400_0000);
    /// Read-only btrfs subvolume.
    pub const WITH_SUBVOLUME_RO: Flags = Flags(0x0800_0000);
    /// Extended attributes.
    pub const WITH_XATTRS: Flags = Flags(0x1000_0000);
    /// POSIX ACLs.
    pub const WITH_ACL: Flags = Flags(0x2000_0000);
    /// SELinux labels.
    pub const WITH_SELINUX: Flags = Flags(0x4000_0000);
    /// File capabilities.
    pub const WITH_FCAPS: Flags = Flags(0x8000_0000);
    /// Quota project ids.
    pub const WITH_QUOTA_PROJID: Flags = Flags(0x0001_0000_0000);
    /// Owner (uid/gid).
    pub const WITH_OWNER: Flags = Flags(0x0002_0000_0000);
    /// Honor `.pxarexclude` files.
    pub const EXCLUDE_FILE: Flags = Flags(0x1000_0000_0000_0000);
    /// Do not descend into mount points.
    pub const EXCLUDE_SUBMOUNTS: Flags = Flags(0x4000_0000_0000_0000);
    /// Skip files flagged no-dump.
    pub const EXCLUDE_NODUMP: Flags = Flags(0x8000_0000_0000_0000);

    /// All chattr flags.
    pub const WITH_CHATTR: Flags = Flags(
        Self::WITH_FLAG_APPEND.0
            | Self::WITH_FLAG_NOATIME.0
            | Self::WITH_FLAG_COMPR.0
            | Self::WITH_FLAG_NOCOW.0
            | Self::WITH_FLAG_NODUMP.0
            | Self::WITH_FLAG_DIRSYNC.0
            | Self::WITH_FLAG_IMMUTABLE.0
            | Self::WITH_FLAG_SYNC.0
            | Self::WITH_FLAG_NOCOMP.0
            | Self::WITH_FLAG_PROJINHERIT.0,
    );
    /// All FAT attributes.
    pub const WITH_FAT_ATTRS: Flags =
        Flags(Self::WITH_FLAG_HIDDEN.0 | Self::WITH_FLAG_SYSTEM.0 | Self::WITH_FLAG_ARCHIVE.0);
    /// What a FUSE file system may support.
    pub const WITH_FUSE: Flags = Flags(
        Self::WITH_2SEC_TIME.0
            | Self::WITH_READ_ONLY.0
            | Self::WITH_PERMISSIONS.0
            | Self::WITH_OWNER.0
            | Self::WITH_SYMLINKS.0
            | Self::WITH_DEVICE_NODES.0
            | Self::WITH_FIFOS.0
            | Self::WITH_SOCKETS.0
            | Self::WITH_FAT_ATTRS.0
            | Self::WITH_CHATTR.0
            | Self::WITH_XATTRS.0,
    );
    /// The set the backup client always requests.
    pub const DEFAULT: Flags = Flags(
        Self::WITH_SYMLINKS.0
            | Self::WITH_DEVICE_NODES.0
            | Self::WITH_FIFOS.0
            | Self::WITH_SOCKETS.0
            | Self::WITH_FLAG_HIDDEN.0
            | Self::WITH_FLAG_SYSTEM.0
            | Self::WITH_FLAG_ARCHIVE.0
            | Self::WITH_FLAG_APPEND.0
            | Self::WITH_FLAG_NOATIME.0
            | Self::WITH_FLAG_COMPR.0
            | Self::WITH_FLAG_NOCOW.0
            | Self::WITH_FLAG_DIRSYNC.0
            | Self::WITH_FLAG_IMMUTABLE.0
            | Self::WITH_FLAG_SYNC.0
            | Self::WITH_FLAG_NOCOMP.0
            | Self::WITH_FLAG_PROJINHERIT.0
            | Self::WITH_SUBVOLUME.0
            | Self::WITH_SUBVOLUME_RO.0
            | Self::WITH_PERMISSIONS.0
            | Self::WITH_OWNER.0
            | Self::WITH_XATTRS.0
            | Self::WITH_ACL.0
            | Self::WITH_SELINUX.0
            | Self::WITH_FCAPS.0
            | Self::WITH_QUOTA_PROJID.0
            | Self::EXCLUDE_NODUMP.0
            | Self::EXCLUDE_FILE.0,
    );

    /// Flags that chattr can restore right after creating a file or directory.
    pub const INITIAL_CHATTR: Flags = Flags(
        Self::WITH_FLAG_NOATIME.0
            | Self::WITH_FLAG_COMPR.0
            | Self::WITH_FLAG_NOCOW.0
            | Self::WITH_FLAG_NOCOMP.0
            | Self::WITH_FLAG_PROJINHERIT.0,
    );

    /// The empty set.
    pub const fn empty() -> Self {
        Flags(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Flags from raw bits; unknown bits are kept (they are meaningless but harmless).
    pub const fn from_bits_retain(bits: u64) -> Self {
        Flags(bits)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    /// No flag set?
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Set the flags of `other`.
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    /// Clear the flags of `other`.
    pub fn remove(&mut self, other: Flags) {
        self.0 &= !other.0;
    }

    /// What the file system with `statfs.f_type == magic` can store.
    pub fn from_magic(magic: i64) -> Self {
        use fs_magic::*;
        let base = Self::WITH_2SEC_TIME.0
            | Self::WITH_READ_ONLY.0
            | Self::WITH_PERMISSIONS.0
            | Self::WITH_SYMLINKS.0
            | Self::WITH_DEVICE_NODES.0
            | Self::WITH_FIFOS.0
            | Self::WITH_SOCKETS.0;
        let ext4 = base
            | Self::WITH_FLAG_APPEND.0
            | Self::WITH_FLAG_NOATIME.0
            | Self::WITH_FLAG_NODUMP.0
            | Self::WITH_FLAG_DIRSYNC.0
            | Self::WITH_FLAG_IMMUTABLE.0
            | Self::WITH_FLAG_SYNC.0
            | Self::WITH_XATTRS.0
            | Self::WITH_ACL.0
            | Self::WITH_SELINUX.0
            | Self::WITH_FCAPS.0
            | Self::WITH_QUOTA_PROJID.0;
        Flags(match magic {
            MSDOS => Self::WITH_2SEC_TIME.0 | Self::WITH_READ_ONLY.0 | Self::WITH_FAT_ATTRS.0,
            EXT4 | ZFS => ext4,
            XFS => ext4 & !Self::WITH_FLAG_DIRSYNC.0,
            BTRFS => {
                base | Self::WITH_FLAG_APPEND.0
                    | Self::WITH_FLAG_NOATIME.0
                    | Self::WITH_FLAG_COMPR.0
                    | Self::WITH_FLAG_NOCOW.0
                    | Self::WITH_FLAG_NODUMP.0
                    | Self::WITH_FLAG_DIRSYNC.0
                    | Self::WITH_FLAG_IMMUTABLE.0
                    | Self::WITH_FLAG_SYNC.0
                    | Self::WITH_FLAG_NOCOMP.0
                    | Self::WITH_XATTRS.0
                    | Self::WITH_ACL.0
                    | Self::WITH_SELINUX.0
                    | Self::WITH_SUBVOLUME.0
                    | Self::WITH_SUBVOLUME_RO.0
                    | Self::WITH_FCAPS.0
            }
            TMPFS => base | Self::WITH_ACL.0 | Self::WITH_SELINUX.0,
            FUSE => Self::WITH_FUSE.0,
            _ => base | Self::WITH_XATTRS.0 | Self::WITH_ACL.0 | Self::WITH_FCAPS.0,
        })
    }

    /// pxar flags for the chattr bits `attr`; unmapped bits are ignored.
    pub fn from_chattr(attr: i64) -> Self {
        let mut flags = Flags::empty();
        for (bit, flag) in CHATTR_MAP {
            if attr & bit != 0 {
                flags.insert(flag);
            }
        }
        flags
    }

    /// chattr bits for the chattr flags in `self`.
    pub fn to_chattr(self) -> i64 {
        CHATTR_MAP
            .iter()
            .filter(|(_, flag)| self.contains(*flag))
            .fold(0, |acc, (bit, _)| acc | bit)
    }

    /// chattr bits of the flags that can be set right after creation.
    pub fn to_initial_chattr(self) -> i64 {
        (self & Self::INITIAL_CHATTR).to_chattr()
    }

    /// pxar flags for FAT attribute bits.
    pub fn from_fat_attr(attr: u32) -> Self {
        let mut flags = Flags::empty();
        for (bit, flag) in FAT_ATTR_MAP {
            if attr & bit != 0 {
                flags.insert(flag);
            }
        }
        flags
    }

    /// FAT attribute bits for the FAT flags in `self`.
    pub fn to_fat_attr(self) -> u32 {
        FAT_ATTR_MAP
            .iter()
            .filter(|(_, flag)| self.contains(*flag))
            .fold(0, |acc, (bit, _)| acc | bit)
    }
}

impl BitAnd for Flags {
    type Output = Flags;
    fn bitand(self, rhs: Flags) -> Flags {
        Flags(self.0 & rhs.0)
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitAndAssign for Flags {
    fn bitand_assign(&mut self, rhs: Flags) {
        self.0 &= rhs.0;
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl Not for Flags {
    type Output = Flags;
    fn not(self) -> Flags {
        Flags(!self.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({:#x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::fs_magic::*;
    use super::*;

    #[test]
    fn composite_values() {
        assert_eq!(Flags::DEFAULT.bits(), 0x9000_0003_FFEF_FF00);
        assert_eq!(Flags::WITH_CHATTR.bits(), 0x03FF_0000);
        assert_eq!(Flags::WITH_FAT_ATTRS.bits(), 0xE000);
        assert_eq!(Flags::WITH_FUSE.bits(), 0x2_13FF_FFC0);
        assert_eq!(
            (Flags::DEFAULT & Flags::from_magic(EXT4)).bits(),
            0x1_F0E3_1F00
        );
        assert!(!Flags::DEFAULT.contains(Flags::WITH_FLAG_NODUMP));
        assert!(!Flags::DEFAULT.contains(Flags::WITH_2SEC_TIME));
        assert!(!Flags::DEFAULT.contains(Flags::WITH_READ_ONLY));
        assert!(!Flags::DEFAULT.contains(Flags::EXCLUDE_SUBMOUNTS));
    }

    #[test]
    fn single_bits() {
        let table: [(Flags, u64); 33] = [
            (Flags::WITH_2SEC_TIME, 0x40),
            (Flags::WITH_READ_ONLY, 0x80),
            (Flags::WITH_PERMISSIONS, 0x100),
            (Flags::WITH_SYMLINKS, 0x200),
            (Flags::WITH_DEVICE_NODES, 0x400),
            (Flags::WITH_FIFOS, 0x800),
            (Flags::WITH_SOCKETS, 0x1000),
            (Flags::WITH_FLAG_HIDDEN, 0x2000),
            (Flags::WITH_FLAG_SYSTEM, 0x4000),
            (Flags::WITH_FLAG_ARCHIVE, 0x8000),
            (Flags::WITH_FLAG_APPEND, 0x10000),
            (Flags::WITH_FLAG_NOATIME, 0x20000),
            (Flags::WITH_FLAG_COMPR, 0x40000),
            (Flags::WITH_FLAG_NOCOW, 0x80000),
            (Flags::WITH_FLAG_NODUMP, 0x0010_0000),
            (Flags::WITH_FLAG_DIRSYNC, 0x0020_0000),
            (Flags::WITH_FLAG_IMMUTABLE, 0x0040_0000),
            (Flags::WITH_FLAG_SYNC, 0x0080_0000),
            (Flags::WITH_FLAG_NOCOMP, 0x0100_0000),
            (Flags::WITH_FLAG_PROJINHERIT, 0x0200_0000),
            (Flags::WITH_SUBVOLUME, 0x0400_0000),
            (Flags::WITH_SUBVOLUME_RO, 0x0800_0000),
            (Flags::WITH_XATTRS, 0x1000_0000),
            (Flags::WITH_ACL, 0x2000_0000),
            (Flags::WITH_SELINUX, 0x4000_0000),
            (Flags::WITH_FCAPS, 0x8000_0000),
            (Flags::WITH_QUOTA_PROJID, 0x0001_0000_0000),
            (Flags::WITH_OWNER, 0x0002_0000_0000),
            (Flags::EXCLUDE_FILE, 0x1000_0000_0000_0000),
            (Flags::EXCLUDE_SUBMOUNTS, 0x4000_0000_0000_0000),
            (Flags::EXCLUDE_NODUMP, 0x8000_0000_0000_0000),
            (Flags::WITH_FLAG_APPEND, 0x10000),
            (Flags::WITH_FLAG_SYNC, 0x0080_0000),
        ];
        for (flag, bits) in table {
            assert_eq!(flag.bits(), bits);
        }
    }

    #[test]
    fn file_system_masks() {
        let f = |list: &[Flags]| list.iter().fold(Flags::empty(), |acc, f| acc | *f);
        use Flags as F;
        let base = [
            F::WITH_2SEC_TIME,
            F::WITH_READ_ONLY,
            F::WITH_PERMISSIONS,
            F::WITH_SYMLINKS,
            F::WITH_DEVICE_NODES,
            F::WITH_FIFOS,
            F::WITH_SOCKETS,
        ];
        let ext4 = f(&base)
            | f(&[
                F::WITH_FLAG_APPEND,
                F::WITH_FLAG_NOATIME,
                F::WITH_FLAG_NODUMP,
                F::WITH_FLAG_DIRSYNC,
                F::WITH_FLAG_IMMUTABLE,
                F::WITH_FLAG_SYNC,
                F::WITH_XATTRS,
                F::WITH_ACL,
                F::WITH_SELINUX,
                F::WITH_FCAPS,
                F::WITH_QUOTA_PROJID,
            ]);
        assert_eq!(Flags::from_magic(EXT4), ext4);
        assert_eq!(Flags::from_magic(ZFS), ext4);
        assert_eq!(Flags::from_magic(XFS), ext4 & !F::WITH_FLAG_DIRSYNC);
        assert_eq!(
            Flags::from_magic(MSDOS),
            f(&[F::WITH_2SEC_TIME, F::WITH_READ_ONLY, F::WITH_FAT_ATTRS])
        );
        assert_eq!(
            Flags::from_magic(TMPFS),
            f(&base) | F::WITH_ACL | F::WITH_SELINUX
        );
        assert!(!Flags::from_magic(TMPFS).contains(F::WITH_XATTRS));
        assert_eq!(Flags::from_magic(FUSE), F::WITH_FUSE);
        let btrfs = Flags::from_magic(BTRFS);
        assert!(btrfs.contains(F::WITH_SUBVOLUME | F::WITH_FLAG_NOCOW | F::WITH_FLAG_NOCOMP));
        assert!(!btrfs.contains(F::WITH_QUOTA_PROJID));
        assert_eq!(
            Flags::from_magic(0x1234),
            f(&base) | F::WITH_XATTRS | F::WITH_ACL | F::WITH_FCAPS
        );
    }

    #[test]
    fn chattr_mapping() {
        let table: [(i64, Flags); 10] = [
            (0x20, Flags::WITH_FLAG_APPEND),
            (0x80, Flags::WITH_FLAG_NOATIME),
            (0x4, Flags::WITH_FLAG_COMPR),
            (0x0080_0000, Flags::WITH_FLAG_NOCOW),
            (0x40, Flags::WITH_FLAG_NODUMP),
            (0x0001_0000, Flags::WITH_FLAG_DIRSYNC),
            (0x10, Flags::WITH_FLAG_IMMUTABLE),
            (0x8, Flags::WITH_FLAG_SYNC),
            (0x400, Flags::WITH_FLAG_NOCOMP),
            (0x2000_0000, Flags::WITH_FLAG_PROJINHERIT),
        ];
        for (bit, flag) in table {
            assert_eq!(Flags::from_chattr(bit), flag);
            assert_eq!(flag.to_chattr(), bit);
        }
        // ext4 EXTENTS_FL and INDEX_FL are not archived.
        assert_eq!(Flags::from_chattr(0x80000 | 0x1000), Flags::empty());
        assert_eq!(Flags::from_chattr(0x20 | 0x80000), Flags::WITH_FLAG_APPEND);
        assert_eq!(
            Flags::WITH_CHATTR.to_initial_chattr(),
            0x80 | 0x4 | 0x0080_0000 | 0x400 | 0x2000_0000
        );
    }

    #[test]
    fn fat_attr_mapping() {
        assert_eq!(Flags::from_fat_attr(2), Flags::WITH_FLAG_HIDDEN);
        assert_eq!(Flags::from_fat_attr(4), Flags::WITH_FLAG_SYSTEM);
        assert_eq!(Flags::from_fat_attr(32), Flags::WITH_FLAG_ARCHIVE);
        assert_eq!(Flags::from_fat_attr(1 | 8 | 16), Flags::empty());
        assert_eq!(Flags::WITH_FAT_ATTRS.to_fat_attr(), 2 | 4 | 32);
    }

    #[test]
    fn virtual_file_systems() {
        for magic in [
            0x42494e4d, 0x63677270, 0x0027e0eb, 0x62656570, 0x64626720, 0x00001cd1, 0xde5e81e4,
            0x65735543, 0x958458f6, 0x19800202, 0x6e667364, 0x00009fa0, 0x6165676C, 0x67596969,
            0x73636673, 0xf97cff8c, 0x43415d53, 0x62656572,
        ] {
            assert!(is_virtual_file_system(magic), "{magic:#x}");
        }
        for magic in [EXT4, XFS, ZFS, BTRFS, TMPFS, FUSE, MSDOS] {
            assert!(!is_virtual_file_system(magic), "{magic:#x}");
        }
    }
}
