//! Item-level parsing shared by the sequential decoder and the random-access accessor.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::entry::EntryKind;
use crate::error::{Error, Result};
use crate::format::{
    self, read_u64, AclDefault, AclGroup, AclGroupObject, AclUser, Device, FCaps, Header,
    PayloadRef, QuotaProjectId, Stat, XAttr, HEADER_SIZE,
};
use crate::metadata::Metadata;

/// A positioned byte source: a sequential stream or a window of a random-access file.
pub(crate) trait ItemRead {
    /// Offset of the next byte.
    fn pos(&self) -> u64;
    /// Fill `buf` completely; a short read is `Error::Truncated` naming `what`.
    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()>;
    /// Move `n` bytes forward.
    fn skip(&mut self, n: u64, what: &str) -> Result<()>;
    /// Read `n` bytes into a vector without trusting `n` for the allocation.
    fn read_vec(&mut self, n: u64, what: &str) -> Result<Vec<u8>>;
}

/// Read and check a header; returns it with its offset.
pub(crate) fn read_header(src: &mut dyn ItemRead) -> Result<(Header, u64)> {
    let offset = src.pos();
    let mut bytes = [0u8; 16];
    src.read_exact(&mut bytes, "item header")?;
    let header = Header::from_bytes(&bytes);
    header.check(offset)?;
    Ok((header, offset))
}

fn read_fixed<const N: usize>(
    src: &mut dyn ItemRead,
    header: &Header,
    offset: u64,
) -> Result<[u8; N]> {
    header.expect_content_size(offset, N as u64)?;
    let mut bytes = [0u8; N];
    src.read_exact(&mut bytes, format::type_name(header.htype))?;
    Ok(bytes)
}

/// Content of a NUL-terminated item without the NUL; interior NULs are refused.
fn read_c_string(src: &mut dyn ItemRead, header: &Header, offset: u64) -> Result<Vec<u8>> {
    let what = format::type_name(header.htype);
    let mut content = src.read_vec(header.content_size(), what)?;
    if content.pop() != Some(0) {
        return Err(Error::corrupt(offset, format!("{what} not NUL terminated")));
    }
    if content.contains(&0) {
        return Err(Error::corrupt(
            offset,
            format!("{what} contains a NUL byte"),
        ));
    }
    Ok(content)
}

/// FILENAME content, validated.
pub(crate) fn read_filename(
    src: &mut dyn ItemRead,
    header: &Header,
    offset: u64,
) -> Result<Vec<u8>> {
    if header.htype != format::PXAR_FILENAME {
        return Err(unexpected(header, offset, "FILENAME"));
    }
    let name = read_c_string(src, header, offset)?;
    if !format::is_valid_filename(&name) {
        return Err(Error::corrupt(
            offset,
            format!("invalid file name {:?}", String::from_utf8_lossy(&name)),
        ));
    }
    Ok(name)
}

/// HARDLINK content: `(target path, backwards offset)`, checked against `filename_start`.
pub(crate) fn read_hardlink(
    src: &mut dyn ItemRead,
    header: &Header,
    offset: u64,
    filename_start: u64,
) -> Result<(PathBuf, u64)> {
    if header.content_size() <= 8 {
        return Err(Error::corrupt(offset, "HARDLINK content too short"));
    }
    let mut content = src.read_vec(header.content_size(), "HARDLINK")?;
    let link_offset = read_u64(&content, 0);
    if content.pop() != Some(0) {
        return Err(Error::corrupt(offset, "HARDLINK target not NUL terminated"));
    }
    let target = &content[8..];
    if !format::is_valid_relative_path(target) {
        return Err(Error::corrupt(
            offset,
            format!(
                "HARDLINK target {:?} is not a relative path",
                String::from_utf8_lossy(target)
            ),
        ));
    }
    if link_offset == 0 || link_offset > filename_start {
        return Err(Error::corrupt(
            offset,
            format!("HARDLINK offset {link_offset} does not point to an earlier entry"),
        ));
    }
    Ok((PathBuf::from(OsStr::from_bytes(target)), link_offset))
}

pub(crate) fn unexpected(header: &Header, offset: u64, expected: &str) -> Error {
    Error::corrupt(
        offset,
        format!(
            "unexpected entry type {} ({:#018x}), expected {expected}",
            format::type_name(header.htype),
            header.htype
        ),
    )
}

/// How an entry ended after its metadata.
pub(crate) struct ParsedEntry {
    pub metadata: Metadata,
    pub kind: EntryKind,
    /// For v2 regular files: the payload reference.
    pub payload_ref: Option<PayloadRef>,
    /// Header read after a directory, fifo or socket (first child or goodbye table).
    pub next: Option<(Header, u64)>,
}

/// Parse ENTRY/ENTRY_V1 (header already read) plus attributes and the type-dependent tail.
/// For v1 files the source is left at the first content byte.
pub(crate) fn read_entry(
    src: &mut dyn ItemRead,
    header: &Header,
    offset: u64,
    split: bool,
) -> Result<ParsedEntry> {
    let stat = match header.htype {
        format::PXAR_ENTRY => Stat::from_bytes(&read_fixed::<40>(src, header, offset)?),
        format::PXAR_ENTRY_V1 => Stat::from_v1_bytes(&read_fixed::<32>(src, header, offset)?),
        _ => return Err(unexpected(header, offset, "ENTRY")),
    };
    if !stat.has_known_file_type() {
        return Err(Error::corrupt(
            offset,
            format!("ENTRY with unknown file type in mode {:o}", stat.mode),
        ));
    }
    let mut metadata = Metadata::from_stat(stat);
    loop {
        let (item, item_offset) = read_header(src)?;
        let mismatch = |what: &str| {
            Error::corrupt(
                item_offset,
                format!("{what} item for an entry of mode {:o}", stat.mode),
            )
        };
        let duplicate =
            |what: &str| Error::corrupt(item_offset, format!("second {what} item in one entry"));
        let acl = &mut metadata.acl;
        match item.htype {
            format::PXAR_XATTR => {
                let content = src.read_vec(item.content_size(), "XATTR")?;
                metadata
                    .xattrs
                    .push(XAttr::from_content(&content, item_offset)?);
            }
            format::PXAR_ACL_USER => {
                acl.users
                    .push(AclUser::from_bytes(&read_fixed(src, &item, item_offset)?))
            }
            format::PXAR_ACL_GROUP => {
                acl.groups
                    .push(AclGroup::from_bytes(&read_fixed(src, &item, item_offset)?))
            }
            format::PXAR_ACL_GROUP_OBJ => {
                let bytes = read_fixed::<8>(src, &item, item_offset)?;
                if acl.group_obj.is_some() {
                    return Err(duplicate("ACL_GROUP_OBJ"));
                }
                acl.group_obj = Some(AclGroupObject {
                    permissions: u64::from_le_bytes(bytes),
                });
            }
            format::PXAR_ACL_DEFAULT => {
                let bytes = read_fixed::<32>(src, &item, item_offset)?;
                if acl.default.is_some() {
                    return Err(duplicate("ACL_DEFAULT"));
                }
                acl.default = Some(AclDefault::from_bytes(&bytes));
            }
            format::PXAR_ACL_DEFAULT_USER => acl
                .default_users
                .push(AclUser::from_bytes(&read_fixed(src, &item, item_offset)?)),
            format::PXAR_ACL_DEFAULT_GROUP => acl
                .default_groups
                .push(AclGroup::from_bytes(&read_fixed(src, &item, item_offset)?)),
            format::PXAR_FCAPS => {
                let data = src.read_vec(item.content_size(), "FCAPS")?;
                if metadata.fcaps.is_some() {
                    return Err(duplicate("FCAPS"));
                }
                metadata.fcaps = Some(FCaps { data });
            }
            format::PXAR_QUOTA_PROJID => {
                let bytes = read_fixed::<8>(src, &item, item_offset)?;
                if metadata.quota_project_id.is_some() {
                    return Err(duplicate("QUOTA_PROJID"));
                }
                metadata.quota_project_id = Some(QuotaProjectId {
                    projid: u64::from_le_bytes(bytes),
                });
            }
            format::PXAR_PAYLOAD => {
                if split {
                    return Err(unexpected(
                        &item,
                        item_offset,
                        "PAYLOAD_REF in a split archive",
                    ));
                }
                if !stat.is_regular_file() {
                    return Err(mismatch("PAYLOAD"));
                }
                return Ok(ParsedEntry {
                    metadata,
                    kind: EntryKind::File {
                        size: item.content_size(),
                        offset: Some(item_offset + HEADER_SIZE),
                        payload_offset: None,
                    },
                    payload_ref: None,
                    next: None,
                });
            }
            format::PXAR_PAYLOAD_REF => {
                if !split {
                    return Err(unexpected(
                        &item,
                        item_offset,
                        "PAYLOAD in a unified archive",
                    ));
                }
                if !stat.is_regular_file() {
                    return Err(mismatch("PAYLOAD_REF"));
                }
                let reference = PayloadRef::from_bytes(&read_fixed(src, &item, item_offset)?);
                if reference
                    .offset
                    .checked_add(HEADER_SIZE)
                    .and_then(|v| v.checked_add(reference.size))
                    .is_none()
                {
                    return Err(Error::corrupt(item_offset, "PAYLOAD_REF range overflows"));
                }
                return Ok(ParsedEntry {
                    metadata,
                    kind: EntryKind::File {
                        size: reference.size,
                        offset: None,
                        payload_offset: Some(reference.offset),
                    },
                    payload_ref: Some(reference),
                    next: None,
                });
            }
            format::PXAR_SYMLINK => {
                if !stat.is_symlink() {
                    return Err(mismatch("SYMLINK"));
                }
                let target = read_c_string(src, &item, item_offset)?;
                return Ok(ParsedEntry {
                    metadata,
                    kind: EntryKind::Symlink(PathBuf::from(OsStr::from_bytes(&target))),
                    payload_ref: None,
                    next: None,
                });
            }
            format::PXAR_DEVICE => {
                if !stat.is_device() {
                    return Err(mismatch("DEVICE"));
                }
                let device = Device::from_bytes(&read_fixed(src, &item, item_offset)?);
                return Ok(ParsedEntry {
                    metadata,
                    kind: EntryKind::Device(device),
                    payload_ref: None,
                    next: None,
                });
            }
            format::PXAR_FILENAME | format::PXAR_GOODBYE => {
                let kind = if stat.is_dir() {
                    EntryKind::Directory
                } else if stat.is_fifo() {
                    EntryKind::Fifo
                } else if stat.is_socket() {
                    EntryKind::Socket
                } else {
                    return Err(Error::corrupt(
                        item_offset,
                        format!("entry of mode {:o} ends without its data item", stat.mode),
                    ));
                };
                return Ok(ParsedEntry {
                    metadata,
                    kind,
                    payload_ref: None,
                    next: Some((item, item_offset)),
                });
            }
            _ => {
                return Err(unexpected(
                    &item,
                    item_offset,
                    "an attribute or entry data item",
                ))
            }
        }
    }
}
