//! On-disk format: item types, header, fixed item layouts and their byte (de)serialization.

pub mod goodbye;
pub mod hash;

pub use goodbye::{bst_permutation, layout_goodbye_items, GoodbyeItem, GOODBYE_ITEM_SIZE};
pub use hash::{hash_filename, siphash24, PXAR_HASH_KEY_1, PXAR_HASH_KEY_2};

use crate::error::{Error, Result};

/// Format version item (v2 split archives only; absent means v1).
pub const PXAR_FORMAT_VERSION: u64 = 0x730f6c75df16a40d;
/// Opaque prelude bytes directly after the format version.
pub const PXAR_PRELUDE: u64 = 0xe309d79d9f7b771b;
/// `Stat` of an entry (40 bytes).
pub const PXAR_ENTRY: u64 = 0xd5956474e588acef;
/// Legacy 32-byte stat, decode only.
pub const PXAR_ENTRY_V1: u64 = 0x11da850a1c1cceff;
/// File name of a directory child, NUL terminated.
pub const PXAR_FILENAME: u64 = 0x16701121063917b3;
/// Symlink target, NUL terminated.
pub const PXAR_SYMLINK: u64 = 0x27f971e7dbf5dc5f;
/// Device major/minor.
pub const PXAR_DEVICE: u64 = 0x9fc9e906586d5ce9;
/// Extended attribute `name NUL value`.
pub const PXAR_XATTR: u64 = 0x0dab0229b57dcd03;
/// Access ACL user entry.
pub const PXAR_ACL_USER: u64 = 0x2ce8540a457d55b8;
/// Access ACL group entry.
pub const PXAR_ACL_GROUP: u64 = 0x136e3eceb04c03ab;
/// Access ACL group-object permissions.
pub const PXAR_ACL_GROUP_OBJ: u64 = 0x10868031e9582876;
/// Default ACL base permissions.
pub const PXAR_ACL_DEFAULT: u64 = 0xbbbb13415a6896f5;
/// Default ACL user entry.
pub const PXAR_ACL_DEFAULT_USER: u64 = 0xc89357b40532cd1f;
/// Default ACL group entry.
pub const PXAR_ACL_DEFAULT_GROUP: u64 = 0xf90a8a5816038ffe;
/// Raw `security.capability` value.
pub const PXAR_FCAPS: u64 = 0x2da9dd9db5f7fb67;
/// Quota project id.
pub const PXAR_QUOTA_PROJID: u64 = 0xe07540e82f7d1cbb;
/// Hardlink: backwards offset plus target path.
pub const PXAR_HARDLINK: u64 = 0x51269c8422bd7275;
/// File contents.
pub const PXAR_PAYLOAD: u64 = 0x28147a1b0b7c1a25;
/// Reference to a PAYLOAD item in the payload stream (v2).
pub const PXAR_PAYLOAD_REF: u64 = 0x419d3d6bc4ba977e;
/// Goodbye table of a directory.
pub const PXAR_GOODBYE: u64 = 0x2fec4fa642d5731d;
/// Hash value of the last goodbye item (not an item type).
pub const PXAR_GOODBYE_TAIL_MARKER: u64 = 0xef5eed5b753e1555;
/// First item of a payload stream.
pub const PXAR_PAYLOAD_START_MARKER: u64 = 0x834c68c2194a4ed2;
/// Last item of a payload stream.
pub const PXAR_PAYLOAD_TAIL_MARKER: u64 = 0x6c72b78b984c81b5;

/// Size of an item header.
pub const HEADER_SIZE: u64 = 16;
/// Content size of `ENTRY`.
pub const STAT_SIZE: u64 = 40;
/// Content size of `ENTRY_V1`.
pub const STAT_V1_SIZE: u64 = 32;
/// Longest file name, symlink target or hardlink path (without NUL).
pub const MAX_PATH_LEN: u64 = 4096;
/// Longest xattr name.
pub const MAX_XATTR_NAME_LEN: u64 = 255;
/// Longest xattr value.
pub const MAX_XATTR_VALUE_LEN: u64 = 65536;
/// Content-size limit for types without a specific one.
pub const UNLIMITED: u64 = u64::MAX - HEADER_SIZE;
/// Format version written for split archives.
pub const FORMAT_VERSION_SPLIT: u64 = 2;

/// ACL permission value meaning "not set".
pub const ACL_NO_MASK: u64 = u64::MAX;
/// ACL read permission bit.
pub const ACL_READ: u64 = 4;
/// ACL write permission bit.
pub const ACL_WRITE: u64 = 2;
/// ACL execute permission bit.
pub const ACL_EXECUTE: u64 = 1;

/// `st_mode` constants fixed by the format (identical to Linux).
pub mod mode {
    /// File type mask.
    pub const IFMT: u64 = 0o170000;
    /// Socket.
    pub const IFSOCK: u64 = 0o140000;
    /// Symlink.
    pub const IFLNK: u64 = 0o120000;
    /// Regular file.
    pub const IFREG: u64 = 0o100000;
    /// Block device.
    pub const IFBLK: u64 = 0o060000;
    /// Directory.
    pub const IFDIR: u64 = 0o040000;
    /// Character device.
    pub const IFCHR: u64 = 0o020000;
    /// Fifo.
    pub const IFIFO: u64 = 0o010000;
    /// Set-user-id bit.
    pub const ISUID: u64 = 0o004000;
    /// Set-group-id bit.
    pub const ISGID: u64 = 0o002000;
    /// Sticky bit.
    pub const ISVTX: u64 = 0o001000;
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Human-readable name of an item type for messages.
pub fn type_name(htype: u64) -> &'static str {
    match htype {
        PXAR_FORMAT_VERSION => "FORMAT_VERSION",
        PXAR_PRELUDE => "PRELUDE",
        PXAR_ENTRY => "ENTRY",
        PXAR_ENTRY_V1 => "ENTRY_V1",
        PXAR_FILENAME => "FILENAME",
        PXAR_SYMLINK => "SYMLINK",
        PXAR_DEVICE => "DEVICE",
        PXAR_XATTR => "XATTR",
        PXAR_ACL_USER => "ACL_USER",
        PXAR_ACL_GROUP => "ACL_GROUP",
        PXAR_ACL_GROUP_OBJ => "ACL_GROUP_OBJ",
        PXAR_ACL_DEFAULT => "ACL_DEFAULT",
        PXAR_ACL_DEFAULT_USER => "ACL_DEFAULT_USER",
        PXAR_ACL_DEFAULT_GROUP => "ACL_DEFAULT_GROUP",
        PXAR_FCAPS => "FCAPS",
        PXAR_QUOTA_PROJID => "QUOTA_PROJID",
        PXAR_HARDLINK => "HARDLINK",
        PXAR_PAYLOAD => "PAYLOAD",
        PXAR_PAYLOAD_REF => "PAYLOAD_REF",
        PXAR_GOODBYE => "GOODBYE",
        PXAR_PAYLOAD_START_MARKER => "PAYLOAD_START_MARKER",
        PXAR_PAYLOAD_TAIL_MARKER => "PAYLOAD_TAIL_MARKER",
        _ => "unknown item",
    }
}

/// Largest content size a decoder accepts for an item type.
pub fn max_content_size(htype: u64) -> u64 {
    match htype {
        PXAR_ENTRY => STAT_SIZE,
        PXAR_FILENAME | PXAR_SYMLINK => MAX_PATH_LEN + 1,
        PXAR_DEVICE => 16,
        PXAR_XATTR | PXAR_FCAPS => MAX_XATTR_NAME_LEN + MAX_XATTR_VALUE_LEN,
        PXAR_ACL_USER | PXAR_ACL_GROUP | PXAR_ACL_DEFAULT_USER | PXAR_ACL_DEFAULT_GROUP => 16,
        PXAR_ACL_GROUP_OBJ | PXAR_QUOTA_PROJID => 8,
        PXAR_ACL_DEFAULT => 32,
        PXAR_HARDLINK => 8 + MAX_PATH_LEN + 1,
        PXAR_PAYLOAD_REF => 16,
        PXAR_PAYLOAD_TAIL_MARKER => 16,
        _ => UNLIMITED,
    }
}

/// 16-byte item header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Item type constant.
    pub htype: u64,
    /// Size of the whole item including this header.
    pub full_size: u64,
}

impl Header {
    /// Header of an item with `content_size` content bytes.
    pub fn with_content_size(htype: u64, content_size: u64) -> Self {
        Self {
            htype,
            full_size: content_size + HEADER_SIZE,
        }
    }

    /// Little-endian on-disk form.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..8].copy_from_slice(&self.htype.to_le_bytes());
        out[8..16].copy_from_slice(&self.full_size.to_le_bytes());
        out
    }

    /// Parse without validation.
    pub fn from_bytes(bytes: &[u8; 16]) -> Self {
        Self {
            htype: read_u64(bytes, 0),
            full_size: read_u64(bytes, 8),
        }
    }

    /// Content bytes after the header (saturating for invalid headers).
    pub fn content_size(&self) -> u64 {
        self.full_size.saturating_sub(HEADER_SIZE)
    }

    /// Size checks of §2/§3.1; `offset` is where the header was read.
    pub fn check(&self, offset: u64) -> Result<()> {
        if self.full_size < HEADER_SIZE {
            return Err(Error::corrupt(
                offset,
                format!(
                    "{} header with full size {} below 16",
                    type_name(self.htype),
                    self.full_size
                ),
            ));
        }
        let max = max_content_size(self.htype);
        if self.content_size() > max {
            return Err(Error::corrupt(
                offset,
                format!(
                    "{} content size {} exceeds maximum {}",
                    type_name(self.htype),
                    self.content_size(),
                    max
                ),
            ));
        }
        Ok(())
    }

    /// Require an exact content size (fixed-size items).
    pub fn expect_content_size(&self, offset: u64, size: u64) -> Result<()> {
        if self.content_size() != size {
            return Err(Error::corrupt(
                offset,
                format!(
                    "{} has content size {}, expected {}",
                    type_name(self.htype),
                    self.content_size(),
                    size
                ),
            ));
        }
        Ok(())
    }
}

/// Modification time as `struct stat` stores it: seconds (may be negative) plus nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatxTimestamp {
    /// Seconds since the epoch.
    pub secs: i64,
    /// Nanoseconds, 0..=999_999_999.
    pub nanos: u32,
}

impl StatxTimestamp {
    /// Timestamp from seconds and nanoseconds.
    pub const fn new(secs: i64, nanos: u32) -> Self {
        Self { secs, nanos }
    }

    /// Split signed nanoseconds since the epoch so that `nanos` stays non-negative
    /// (`None` if the seconds do not fit an `i64`).
    pub fn from_nanos_since_epoch(nanos: i128) -> Option<Self> {
        Some(Self {
            secs: i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?,
            nanos: nanos.rem_euclid(1_000_000_000) as u32,
        })
    }

    /// Signed nanoseconds since the epoch.
    pub fn as_nanos_since_epoch(&self) -> i128 {
        self.secs as i128 * 1_000_000_000 + self.nanos as i128
    }
}

/// Content of `ENTRY`: the inode metadata of an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stat {
    /// Full `st_mode` (type and permission bits).
    pub mode: u64,
    /// pxar feature-flag bits for chattr/FAT attributes.
    pub flags: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: StatxTimestamp,
}

impl Stat {
    /// File type bits of `mode`.
    pub fn file_type(&self) -> u64 {
        self.mode & mode::IFMT
    }

    /// Directory?
    pub fn is_dir(&self) -> bool {
        self.file_type() == mode::IFDIR
    }

    /// Regular file?
    pub fn is_regular_file(&self) -> bool {
        self.file_type() == mode::IFREG
    }

    /// Symlink?
    pub fn is_symlink(&self) -> bool {
        self.file_type() == mode::IFLNK
    }

    /// Character or block device?
    pub fn is_device(&self) -> bool {
        matches!(self.file_type(), mode::IFCHR | mode::IFBLK)
    }

    /// Fifo?
    pub fn is_fifo(&self) -> bool {
        self.file_type() == mode::IFIFO
    }

    /// Socket?
    pub fn is_socket(&self) -> bool {
        self.file_type() == mode::IFSOCK
    }

    /// Whether the file type bits name one of the seven known types.
    pub fn has_known_file_type(&self) -> bool {
        matches!(
            self.file_type(),
            mode::IFSOCK
                | mode::IFLNK
                | mode::IFREG
                | mode::IFBLK
                | mode::IFDIR
                | mode::IFCHR
                | mode::IFIFO
        )
    }

    /// 40-byte on-disk form.
    pub fn to_bytes(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[0..8].copy_from_slice(&self.mode.to_le_bytes());
        out[8..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..20].copy_from_slice(&self.uid.to_le_bytes());
        out[20..24].copy_from_slice(&self.gid.to_le_bytes());
        out[24..32].copy_from_slice(&self.mtime.secs.to_le_bytes());
        out[32..36].copy_from_slice(&self.mtime.nanos.to_le_bytes());
        out
    }

    /// Parse the 40-byte form (the padding word is ignored).
    pub fn from_bytes(bytes: &[u8; 40]) -> Self {
        Self {
            mode: read_u64(bytes, 0),
            flags: read_u64(bytes, 8),
            uid: read_u32(bytes, 16),
            gid: read_u32(bytes, 20),
            mtime: StatxTimestamp {
                secs: read_u64(bytes, 24) as i64,
                nanos: read_u32(bytes, 32),
            },
        }
    }

    /// Parse the legacy 32-byte form whose mtime is unsigned nanoseconds since the epoch.
    pub fn from_v1_bytes(bytes: &[u8; 32]) -> Self {
        let mtime = read_u64(bytes, 24);
        Self {
            mode: read_u64(bytes, 0),
            flags: read_u64(bytes, 8),
            uid: read_u32(bytes, 16),
            gid: read_u32(bytes, 20),
            mtime: StatxTimestamp {
                secs: (mtime / 1_000_000_000) as i64,
                nanos: (mtime % 1_000_000_000) as u32,
            },
        }
    }
}

/// Device numbers of a character or block device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Device {
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
}

impl Device {
    /// Split a Linux `dev_t` (glibc encoding).
    pub fn from_dev_t(dev: u64) -> Self {
        Self {
            major: ((dev >> 8) & 0x0000_0fff) | ((dev >> 32) & 0xffff_f000),
            minor: (dev & 0x0000_00ff) | ((dev >> 12) & 0xffff_ff00),
        }
    }

    /// Combine into a Linux `dev_t` (glibc encoding).
    pub fn to_dev_t(&self) -> u64 {
        ((self.major & 0x0000_0fff) << 8)
            | ((self.major & 0xffff_f000) << 32)
            | (self.minor & 0x0000_00ff)
            | ((self.minor & 0xffff_ff00) << 12)
    }

    /// 16-byte on-disk form.
    pub fn to_bytes(&self) -> [u8; 16] {
        two_words(self.major, self.minor)
    }

    /// Parse the 16-byte form.
    pub fn from_bytes(bytes: &[u8; 16]) -> Self {
        Self {
            major: read_u64(bytes, 0),
            minor: read_u64(bytes, 8),
        }
    }
}

fn two_words(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0..8].copy_from_slice(&a.to_le_bytes());
    out[8..16].copy_from_slice(&b.to_le_bytes());
    out
}

/// `ACL_USER` / `ACL_DEFAULT_USER` content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclUser {
    /// User id.
    pub uid: u64,
    /// Permission bits.
    pub permissions: u64,
}

impl AclUser {
    /// 16-byte on-disk form.
    pub fn to_bytes(&self) -> [u8; 16] {
        two_words(self.uid, self.permissions)
    }

    /// Parse the 16-byte form.
    pub fn from_bytes(bytes: &[u8; 16]) -> Self {
        Self {
            uid: read_u64(bytes, 0),
            permissions: read_u64(bytes, 8),
        }
    }
}

/// `ACL_GROUP` / `ACL_DEFAULT_GROUP` content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclGroup {
    /// Group id.
    pub gid: u64,
    /// Permission bits.
    pub permissions: u64,
}

impl AclGroup {
    /// 16-byte on-disk form.
    pub fn to_bytes(&self) -> [u8; 16] {
        two_words(self.gid, self.permissions)
    }

    /// Parse the 16-byte form.
    pub fn from_bytes(bytes: &[u8; 16]) -> Self {
        Self {
            gid: read_u64(bytes, 0),
            permissions: read_u64(bytes, 8),
        }
    }
}

/// `ACL_GROUP_OBJ` content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AclGroupObject {
    /// Permission bits.
    pub permissions: u64,
}

/// `ACL_DEFAULT` content; `ACL_NO_MASK` marks unset values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AclDefault {
    /// Default USER_OBJ permissions.
    pub user_obj_permissions: u64,
    /// Default GROUP_OBJ permissions.
    pub group_obj_permissions: u64,
    /// Default OTHER permissions.
    pub other_permissions: u64,
    /// Default MASK permissions.
    pub mask_permissions: u64,
}

impl AclDefault {
    /// 32-byte on-disk form.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[0..8].copy_from_slice(&self.user_obj_permissions.to_le_bytes());
        out[8..16].copy_from_slice(&self.group_obj_permissions.to_le_bytes());
        out[16..24].copy_from_slice(&self.other_permissions.to_le_bytes());
        out[24..32].copy_from_slice(&self.mask_permissions.to_le_bytes());
        out
    }

    /// Parse the 32-byte form.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self {
            user_obj_permissions: read_u64(bytes, 0),
            group_obj_permissions: read_u64(bytes, 8),
            other_permissions: read_u64(bytes, 16),
            mask_permissions: read_u64(bytes, 24),
        }
    }
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct XAttr {
    /// Attribute name (no NUL).
    pub name: Vec<u8>,
    /// Attribute value (may be empty).
    pub value: Vec<u8>,
}

impl XAttr {
    /// Attribute from name and value.
    pub fn new(name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Encoder-side validation of name and value lengths.
    pub fn check(&self) -> Result<()> {
        if self.name.is_empty() || self.name.contains(&0) {
            return Err(Error::invalid(format!(
                "xattr name {:?} is empty or contains NUL",
                String::from_utf8_lossy(&self.name)
            )));
        }
        if self.name.len() as u64 > MAX_XATTR_NAME_LEN
            || self.value.len() as u64 > MAX_XATTR_VALUE_LEN
        {
            return Err(Error::invalid(format!(
                "xattr {:?}: name or value too long",
                String::from_utf8_lossy(&self.name)
            )));
        }
        Ok(())
    }

    /// On-disk content `name NUL value`.
    pub fn to_content(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.name.len() + 1 + self.value.len());
        out.extend_from_slice(&self.name);
        out.push(0);
        out.extend_from_slice(&self.value);
        out
    }

    /// Split content at the first NUL; `offset` is the item offset for errors.
    pub fn from_content(content: &[u8], offset: u64) -> Result<Self> {
        let nul = content
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| Error::corrupt(offset, "XATTR without NUL after the name"))?;
        if nul == 0 {
            return Err(Error::corrupt(offset, "XATTR with empty name"));
        }
        Ok(Self {
            name: content[..nul].to_vec(),
            value: content[nul + 1..].to_vec(),
        })
    }
}

/// Raw `security.capability` value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FCaps {
    /// The capability xattr bytes.
    pub data: Vec<u8>,
}

/// Quota project id of a file or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuotaProjectId {
    /// The project id.
    pub projid: u64,
}

/// `PAYLOAD_REF` content: where a file's PAYLOAD item sits in the payload stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PayloadRef {
    /// Offset of the PAYLOAD header in the payload stream.
    pub offset: u64,
    /// File size (content size of that PAYLOAD item).
    pub size: u64,
}

impl PayloadRef {
    /// 16-byte on-disk form.
    pub fn to_bytes(&self) -> [u8; 16] {
        two_words(self.offset, self.size)
    }

    /// Parse the 16-byte form.
    pub fn from_bytes(bytes: &[u8; 16]) -> Self {
        Self {
            offset: read_u64(bytes, 0),
            size: read_u64(bytes, 8),
        }
    }
}

/// Whether `name` is a valid FILENAME: non-empty, no `/` or NUL, not `.`/`..`, at most 4096 bytes.
pub fn is_valid_filename(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() as u64 <= MAX_PATH_LEN
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// Whether `path` is a valid relative hardlink target: normal components joined by `/`.
pub fn is_valid_relative_path(path: &[u8]) -> bool {
    path.len() as u64 <= MAX_PATH_LEN && path.split(|&b| b == b'/').all(is_valid_filename)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_constants_are_siphash_of_their_names() {
        let table: &[(u64, &str)] = &[
            (PXAR_FORMAT_VERSION, "__PROXMOX_FORMAT_VERSION__"),
            (PXAR_PRELUDE, "__PROXMOX_FORMAT_PRELUDE__"),
            (PXAR_ENTRY, "__PROXMOX_FORMAT_ENTRY_V2__"),
            (PXAR_ENTRY_V1, "__PROXMOX_FORMAT_ENTRY__"),
            (PXAR_FILENAME, "__PROXMOX_FORMAT_FILENAME__"),
            (PXAR_SYMLINK, "__PROXMOX_FORMAT_SYMLINK__"),
            (PXAR_DEVICE, "__PROXMOX_FORMAT_DEVICE__"),
            (PXAR_XATTR, "__PROXMOX_FORMAT_XATTR__"),
            (PXAR_ACL_USER, "__PROXMOX_FORMAT_ACL_USER__"),
            (PXAR_ACL_GROUP, "__PROXMOX_FORMAT_ACL_GROUP__"),
            (PXAR_ACL_GROUP_OBJ, "__PROXMOX_FORMAT_ACL_GROUP_OBJ__"),
            (PXAR_ACL_DEFAULT, "__PROXMOX_FORMAT_ACL_DEFAULT__"),
            (PXAR_ACL_DEFAULT_USER, "__PROXMOX_FORMAT_ACL_DEFAULT_USER__"),
            (
                PXAR_ACL_DEFAULT_GROUP,
                "__PROXMOX_FORMAT_ACL_DEFAULT_GROUP__",
            ),
            (PXAR_FCAPS, "__PROXMOX_FORMAT_FCAPS__"),
            (PXAR_QUOTA_PROJID, "__PROXMOX_FORMAT_QUOTA_PROJID__"),
            (PXAR_HARDLINK, "__PROXMOX_FORMAT_HARDLINK__"),
            (PXAR_PAYLOAD, "__PROXMOX_FORMAT_PXAR_PAYLOAD__"),
            (PXAR_PAYLOAD_REF, "__PROXMOX_FORMAT_PXAR_PAYLOAD_REF__"),
            (PXAR_GOODBYE, "__PROXMOX_FORMAT_GOODBYE__"),
            (
                PXAR_GOODBYE_TAIL_MARKER,
                "__PROXMOX_FORMAT_PXAR_GOODBYE_TAIL_MARKER__",
            ),
            (
                PXAR_PAYLOAD_START_MARKER,
                "__PROXMOX_FORMAT_PXAR_PAYLOAD_START_MARKER__",
            ),
            (
                PXAR_PAYLOAD_TAIL_MARKER,
                "__PROXMOX_FORMAT_PXAR_PAYLOAD_TAIL_MARKER__",
            ),
        ];
        assert_eq!(table.len(), 23);
        for (value, name) in table {
            assert_eq!(hash_filename(name.as_bytes()), *value, "{name}");
        }
        // Literal values from the spec table, guarding against a typo in the constants above.
        assert_eq!(PXAR_ENTRY_V1, 0x11da850a1c1cceff);
        assert_eq!(PXAR_HARDLINK, 0x51269c8422bd7275);
        assert_eq!(PXAR_PAYLOAD_START_MARKER, 0x834c68c2194a4ed2);
    }

    #[test]
    fn mode_constants() {
        assert_eq!(mode::IFMT, 0xf000);
        assert_eq!(mode::IFSOCK, 0xc000);
        assert_eq!(mode::IFLNK, 0xa000);
        assert_eq!(mode::IFREG, 0x8000);
        assert_eq!(mode::IFBLK, 0x6000);
        assert_eq!(mode::IFDIR, 0x4000);
        assert_eq!(mode::IFCHR, 0x2000);
        assert_eq!(mode::IFIFO, 0x1000);
        assert_eq!(mode::ISUID | mode::ISGID | mode::ISVTX, 0o7000);
    }

    #[test]
    fn header_checks() {
        let header = Header::with_content_size(PXAR_ENTRY, 40);
        assert_eq!(header.full_size, 56);
        assert_eq!(Header::from_bytes(&header.to_bytes()), header);
        header.check(0).unwrap();
        let short = Header {
            htype: PXAR_PAYLOAD,
            full_size: 15,
        };
        assert_eq!(short.check(7).unwrap_err().offset(), Some(7));
        let long_name = Header::with_content_size(PXAR_FILENAME, 4098);
        assert!(long_name.check(0).is_err());
        Header::with_content_size(PXAR_FILENAME, 4097)
            .check(0)
            .unwrap();
        Header::with_content_size(PXAR_XATTR, 65791)
            .check(0)
            .unwrap();
        assert!(Header::with_content_size(PXAR_XATTR, 65792)
            .check(0)
            .is_err());
        assert!(Header::with_content_size(PXAR_HARDLINK, 4106)
            .check(0)
            .is_err());
        assert!(Header::with_content_size(PXAR_ENTRY, 41).check(0).is_err());
        Header::with_content_size(PXAR_PAYLOAD, UNLIMITED)
            .check(0)
            .unwrap();
    }

    #[test]
    fn stat_layout() {
        let stat = Stat {
            mode: mode::IFREG | 0o644,
            flags: 0x20,
            uid: 1000,
            gid: 100,
            mtime: StatxTimestamp::new(-305109000, 500_000_000),
        };
        let bytes = stat.to_bytes();
        assert_eq!(&bytes[0..8], &0o100644u64.to_le_bytes());
        assert_eq!(&bytes[16..20], &1000u32.to_le_bytes());
        assert_eq!(&bytes[24..32], &(-305109000i64).to_le_bytes());
        assert_eq!(&bytes[32..36], &500_000_000u32.to_le_bytes());
        assert_eq!(&bytes[36..40], &[0, 0, 0, 0]);
        assert_eq!(Stat::from_bytes(&bytes), stat);
    }

    #[test]
    fn timestamps_before_the_epoch() {
        // 1960-05-01T15:30:00.5Z
        let ts = StatxTimestamp::from_nanos_since_epoch(-305_108_999_500_000_000).unwrap();
        assert_eq!(ts, StatxTimestamp::new(-305109000, 500_000_000));
        assert_eq!(ts.as_nanos_since_epoch(), -305_108_999_500_000_000);
        let ts = StatxTimestamp::from_nanos_since_epoch(1_700_000_000_500_000_000).unwrap();
        assert_eq!(ts, StatxTimestamp::new(1_700_000_000, 500_000_000));
        assert_eq!(StatxTimestamp::from_nanos_since_epoch(i128::MAX), None);
    }

    #[test]
    fn stat_v1_converts_nanosecond_mtime() {
        let mut bytes = [0u8; 32];
        bytes[0..8].copy_from_slice(&0o40755u64.to_le_bytes());
        bytes[16..20].copy_from_slice(&5u32.to_le_bytes());
        bytes[20..24].copy_from_slice(&6u32.to_le_bytes());
        bytes[24..32].copy_from_slice(&1_700_000_000_500_000_000u64.to_le_bytes());
        let stat = Stat::from_v1_bytes(&bytes);
        assert_eq!(stat.mode, 0o40755);
        assert_eq!((stat.uid, stat.gid), (5, 6));
        assert_eq!(stat.mtime, StatxTimestamp::new(1_700_000_000, 500_000_000));
    }

    #[test]
    fn device_dev_t_conversion() {
        let dev = Device {
            major: 0x12345,
            minor: 0x6789a,
        };
        let raw = dev.to_dev_t();
        assert_eq!(
            raw,
            ((0x345u64) << 8) | (0x12000u64 << 32) | 0x9a | (0x67800u64 << 12)
        );
        assert_eq!(Device::from_dev_t(raw), dev);
        // /dev/null is 1:3, dev_t 0x103.
        assert_eq!(Device::from_dev_t(0x103), Device { major: 1, minor: 3 });
        assert_eq!(Device::from_bytes(&dev.to_bytes()), dev);
    }

    #[test]
    fn acl_and_ref_layouts() {
        let user = AclUser {
            uid: 99,
            permissions: ACL_READ,
        };
        assert_eq!(&user.to_bytes()[..8], &99u64.to_le_bytes());
        assert_eq!(AclUser::from_bytes(&user.to_bytes()), user);
        let group = AclGroup {
            gid: 2345,
            permissions: ACL_READ | ACL_WRITE | ACL_EXECUTE,
        };
        assert_eq!(AclGroup::from_bytes(&group.to_bytes()), group);
        let default = AclDefault {
            user_obj_permissions: 7,
            group_obj_permissions: 5,
            other_permissions: 5,
            mask_permissions: ACL_NO_MASK,
        };
        let bytes = default.to_bytes();
        assert_eq!(&bytes[24..32], &[0xff; 8]);
        assert_eq!(AclDefault::from_bytes(&bytes), default);
        let pref = PayloadRef {
            offset: 16,
            size: 3,
        };
        assert_eq!(PayloadRef::from_bytes(&pref.to_bytes()), pref);
    }

    #[test]
    fn xattr_content() {
        let xattr = XAttr::new(b"user.a".to_vec(), b"v\0x".to_vec());
        let content = xattr.to_content();
        assert_eq!(content, b"user.a\0v\0x");
        assert_eq!(XAttr::from_content(&content, 0).unwrap(), xattr);
        assert!(XAttr::from_content(b"no-nul", 5).is_err());
        assert!(XAttr::from_content(b"\0value", 5).is_err());
        assert_eq!(
            XAttr::from_content(b"user.e\0", 0).unwrap().value,
            Vec::<u8>::new()
        );
    }

    #[test]
    fn filename_validation() {
        assert!(is_valid_filename(b"a"));
        assert!(is_valid_filename(b"..."));
        assert!(!is_valid_filename(b""));
        assert!(!is_valid_filename(b"."));
        assert!(!is_valid_filename(b".."));
        assert!(!is_valid_filename(b"a/b"));
        assert!(!is_valid_filename(b"a\0b"));
        assert!(is_valid_filename(&[b'x'; 4096]));
        assert!(!is_valid_filename(&[b'x'; 4097]));
        assert!(is_valid_relative_path(b"sub/deeper/triple"));
        assert!(!is_valid_relative_path(b"/abs"));
        assert!(!is_valid_relative_path(b"a/../b"));
        assert!(!is_valid_relative_path(b"a//b"));
    }
}
