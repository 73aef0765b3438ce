//! Archiving generated trees and comparing the decoded archive with the source tree.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{Cursor, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pbs_datastore::catalog::{CatalogReader, CatalogWriter, DirEntry, DirEntryAttribute};
use pxar::format::{AclDefault, AclGroup, AclGroupObject, AclUser, FCaps, QuotaProjectId, XAttr};
use pxar::{Acl, Decoder, EntryKind};

use super::*;
use crate::pxar::flags::fs_magic as magic;
use crate::pxar::metadata::{acl_xattr_value, AclEntry, AclTag};

// ---------------------------------------------------------------------------------------
// helpers: building trees

fn cpath(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of `value.len()` bytes.
    let ret = unsafe {
        libc::lsetxattr(
            cpath(path).as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn lgetxattr(path: &Path, name: &[u8]) -> Option<Vec<u8>> {
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid strings and a buffer of `buf.len()` bytes.
    let ret = unsafe {
        libc::lgetxattr(
            cpath(path).as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if ret < 0 {
        return None;
    }
    buf.truncate(ret as usize);
    Some(buf)
}

/// xattr names of `path` in kernel order (path based, independent of the archiver's calls).
fn llistxattr(path: &Path) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    // SAFETY: a valid string and a buffer of `buf.len()` bytes.
    let ret = unsafe { libc::llistxattr(cpath(path).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if ret <= 0 {
        return Vec::new();
    }
    buf.truncate(ret as usize);
    buf.split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
    ];
    // SAFETY: valid path and a two-element timespec array.
    let ret = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cpath(path).as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(ret, 0, "utimensat {path:?}: {}", io::Error::last_os_error());
}

fn open_for_ioctl(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

use std::os::unix::fs::OpenOptionsExt;

/// `FS_IOC_SETFLAGS` = `_IOW('f', 2, long)`.
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
/// `FS_IOC_FSSETXATTR` = `_IOW('X', 32, struct fsxattr)`.
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;

/// Adds the chattr bits `add` and removes `remove` (read-modify-write like chattr(1): ext4
/// refuses to clear bits such as EXTENTS_FL).
fn change_chattr(path: &Path, add: libc::c_long, remove: libc::c_long) -> io::Result<()> {
    let file = open_for_ioctl(path)?;
    let flags = (tools::chattr_flags(file.as_raw_fd())? as libc::c_long | add) & !remove;
    // SAFETY: the ioctl reads a `long`.
    let ret = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            FS_IOC_SETFLAGS as _,
            &flags as *const libc::c_long,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_chattr(path: &Path, add: libc::c_long) -> io::Result<()> {
    change_chattr(path, add, 0)
}

fn set_projid(path: &Path, projid: u32) -> io::Result<()> {
    let file = open_for_ioctl(path)?;
    let mut attr = tools::fs_xattr(file.as_raw_fd())?;
    attr.projid = projid;
    // SAFETY: the ioctl reads a `struct fsxattr`.
    let ret = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            FS_IOC_FSSETXATTR as _,
            &attr as *const tools::FsXAttr,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn mknod(path: &Path, mode: libc::mode_t, major: u64, minor: u64) -> io::Result<()> {
    let dev = Device { major, minor }.to_dev_t();
    // SAFETY: valid path.
    let ret = unsafe { libc::mknod(cpath(path).as_ptr(), mode, dev as libc::dev_t) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn mkfifo(path: &Path) {
    // SAFETY: valid path.
    let ret = unsafe { libc::mkfifo(cpath(path).as_ptr(), 0o640) };
    assert_eq!(ret, 0, "mkfifo: {}", io::Error::last_os_error());
}

fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn write(path: &Path, content: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

fn mkdir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn fs_magic_of(path: &Path) -> i64 {
    let file = File::open(path).unwrap();
    tools::fs_magic(file.as_raw_fd()).unwrap()
}

fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 7) as u8
        })
        .collect()
}

/// Expectations the walk of the source tree cannot derive independently.
#[derive(Default)]
struct Expect {
    acls: HashMap<PathBuf, Acl>,
    flags: HashMap<PathBuf, u64>,
    projids: HashMap<PathBuf, u64>,
    /// Files whose chattr flags must be cleared before the tree can be removed.
    chattr_cleanup: Vec<PathBuf>,
}

impl Drop for Expect {
    fn drop(&mut self) {
        for path in &self.chattr_cleanup {
            let _ = change_chattr(path, 0, 0x20);
        }
    }
}

fn acl_entry(tag: AclTag, permissions: u16, id: u32) -> AclEntry {
    AclEntry {
        tag,
        permissions,
        id,
    }
}

/// A tree with every entry type and attribute the file system allows.
fn build_full_tree(root: &Path) -> Expect {
    let mut expect = Expect::default();
    let xattrs_supported = Flags::from_magic(fs_magic_of(root)).contains(Flags::WITH_XATTRS);
    if !xattrs_supported {
        println!("skipping xattr/ACL/fcaps parts: file system has no xattr support flag");
    }

    write(&root.join("empty"), b"");
    write(&root.join("small.txt"), b"hello\n");
    chmod(&root.join("small.txt"), 0o640);
    set_mtime(&root.join("small.txt"), 1_700_000_000, 123_456_789);
    write(
        &root.join("big.bin"),
        &pseudo_random(3 * 1024 * 1024 + 17, 1),
    );
    {
        let file = File::create(root.join("sparse")).unwrap();
        file.set_len(8 * 1024 * 1024 - 4).unwrap();
        drop(file);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(root.join("sparse"))
            .unwrap();
        file.write_all(b"tail").unwrap();
    }
    for name in [
        "-leading-dash",
        ".hidden",
        "0digit",
        "UPPER.txt",
        "Z",
        "_underscore",
        "a",
        "a.b",
        "aa",
        "~tilde",
        "\u{e4}",
    ] {
        write(&root.join(name), name.as_bytes());
    }
    write(
        &root.join(OsStr::from_bytes(b"\xff\xfe-bin")),
        b"binary name",
    );
    write(&root.join("dir/nested/deeper/file"), b"deep");
    mkdir(&root.join("dir/empty"));
    std::os::unix::fs::symlink("small.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/x", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("dir", root.join("dirlink")).unwrap();
    set_mtime(&root.join("link"), 1_600_000_000, 5);

    // hardlinks: first occurrence in archive order is sub/deeper/triple
    write(&root.join("sub/deeper/triple"), b"three links");
    std::fs::hard_link(root.join("sub/deeper/triple"), root.join("sub/triple_2")).unwrap();
    std::fs::hard_link(root.join("sub/deeper/triple"), root.join("triple_1")).unwrap();
    write(&root.join("empty_hl_1"), b"");
    std::fs::hard_link(root.join("empty_hl_1"), root.join("empty_hl_2")).unwrap();

    mkfifo(&root.join("fifo"));
    drop(std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap());

    if is_root() {
        let devices = [
            ("cdev", libc::S_IFCHR | 0o644, 1, 3),
            ("bdev", libc::S_IFBLK | 0o600, 7, 0),
            ("bigdev", libc::S_IFCHR | 0o600, 300, 70000),
        ];
        for (name, mode, major, minor) in devices {
            if let Err(err) = mknod(&root.join(name), mode, major, minor) {
                println!("skipping device node {name}: {err}");
            }
        }
        write(&root.join("owned"), b"owned by someone else");
        lchown(&root.join("owned"), 1234, 2345);
        std::os::unix::fs::symlink("owned", root.join("owned_link")).unwrap();
        lchown(&root.join("owned_link"), 4321, 5432);
    } else {
        println!("skipping device nodes and ownership: not running as root");
    }

    write(&root.join("suid"), b"#!/bin/sh\n");
    chmod(&root.join("suid"), 0o4755);
    mkdir(&root.join("sticky"));
    chmod(&root.join("sticky"), 0o1777);
    write(&root.join("sgid_dir/x"), b"x");
    chmod(&root.join("sgid_dir"), 0o2750);

    write(&root.join("old"), b"before the epoch");
    set_mtime(&root.join("old"), -305_109_000, 500_000_000);

    if xattrs_supported {
        let path = root.join("xattrs.txt");
        write(&path, b"with xattrs");
        lsetxattr(&path, "user.b", b"2").unwrap();
        lsetxattr(&path, "user.a", b"1").unwrap();
        lsetxattr(&path, "user.empty", b"").unwrap();
        lsetxattr(&path, "user.binary", &[0, 1, 2, 255]).unwrap();
        if is_root() {
            lsetxattr(&path, "trusted.t", b"t").unwrap();
            if let Err(err) = lsetxattr(&path, "security.NTACL", b"nt") {
                println!("cannot set security.NTACL: {err}");
            }
            if let Err(err) = lsetxattr(&path, "security.other", b"dropped") {
                println!("cannot set security.other: {err}");
            }
            // trusted xattrs on symlinks exist but are not archived (O_PATH descriptor).
            lsetxattr(&root.join("link"), "trusted.sym", b"s").unwrap();
        }
        lsetxattr(&root.join("dir"), "user.dirattr", b"on a directory").unwrap();

        // ACLs as in pxar.md §14.3
        let file = root.join("acl_file");
        write(&file, b"acl");
        chmod(&file, 0o664); // group bits = mask rw-
        let access = acl_xattr_value(&[
            acl_entry(AclTag::UserObj, 6, 0),
            acl_entry(AclTag::User, 6, 1234),
            acl_entry(AclTag::User, 4, 99),
            acl_entry(AclTag::GroupObj, 4, 0),
            acl_entry(AclTag::Group, 4, 2345),
            acl_entry(AclTag::Mask, 6, 0),
            acl_entry(AclTag::Other, 4, 0),
        ]);
        match lsetxattr(&file, "system.posix_acl_access", &access) {
            Ok(()) => {
                expect.acls.insert(
                    PathBuf::from("/acl_file"),
                    Acl {
                        users: vec![
                            AclUser {
                                uid: 99,
                                permissions: 4,
                            },
                            AclUser {
                                uid: 1234,
                                permissions: 6,
                            },
                        ],
                        groups: vec![AclGroup {
                            gid: 2345,
                            permissions: 4,
                        }],
                        group_obj: Some(AclGroupObject { permissions: 4 }),
                        ..Default::default()
                    },
                );
                let dir = root.join("acl_dir");
                mkdir(&dir);
                chmod(&dir, 0o755);
                let access = acl_xattr_value(&[
                    acl_entry(AclTag::UserObj, 7, 0),
                    acl_entry(AclTag::User, 7, 1234),
                    acl_entry(AclTag::GroupObj, 5, 0),
                    acl_entry(AclTag::Mask, 7, 0),
                    acl_entry(AclTag::Other, 5, 0),
                ]);
                let default = acl_xattr_value(&[
                    acl_entry(AclTag::UserObj, 7, 0),
                    acl_entry(AclTag::User, 5, 1234),
                    acl_entry(AclTag::GroupObj, 5, 0),
                    acl_entry(AclTag::Group, 7, 2345),
                    acl_entry(AclTag::Mask, 7, 0),
                    acl_entry(AclTag::Other, 5, 0),
                ]);
                lsetxattr(&dir, "system.posix_acl_access", &access).unwrap();
                lsetxattr(&dir, "system.posix_acl_default", &default).unwrap();
                expect.acls.insert(
                    PathBuf::from("/acl_dir"),
                    Acl {
                        users: vec![AclUser {
                            uid: 1234,
                            permissions: 7,
                        }],
                        group_obj: Some(AclGroupObject { permissions: 5 }),
                        default: Some(AclDefault {
                            user_obj_permissions: 7,
                            group_obj_permissions: 5,
                            other_permissions: 5,
                            mask_permissions: 7,
                        }),
                        default_users: vec![AclUser {
                            uid: 1234,
                            permissions: 5,
                        }],
                        default_groups: vec![AclGroup {
                            gid: 2345,
                            permissions: 7,
                        }],
                        ..Default::default()
                    },
                );
                // A file created in the directory inherits the default ACL.
                write(&dir.join("inherited"), b"i");
                expect.acls.insert(
                    PathBuf::from("/acl_dir/inherited"),
                    Acl {
                        users: vec![AclUser {
                            uid: 1234,
                            permissions: 5,
                        }],
                        groups: vec![AclGroup {
                            gid: 2345,
                            permissions: 7,
                        }],
                        group_obj: Some(AclGroupObject { permissions: 5 }),
                        ..Default::default()
                    },
                );
                // Only a default ACL: the access ACL equals the mode, nothing is stored.
                let only_default = root.join("acl_default_only");
                mkdir(&only_default);
                lsetxattr(&only_default, "system.posix_acl_default", &default).unwrap();
                expect.acls.insert(
                    PathBuf::from("/acl_default_only"),
                    Acl {
                        default: Some(AclDefault {
                            user_obj_permissions: 7,
                            group_obj_permissions: 5,
                            other_permissions: 5,
                            mask_permissions: 7,
                        }),
                        default_users: vec![AclUser {
                            uid: 1234,
                            permissions: 5,
                        }],
                        default_groups: vec![AclGroup {
                            gid: 2345,
                            permissions: 7,
                        }],
                        ..Default::default()
                    },
                );
            }
            Err(err) => println!("skipping ACLs: {err}"),
        }

        // file capabilities: VFS_CAP_REVISION_2 | EFFECTIVE, permitted = CAP_NET_RAW
        let cap = root.join("capfile");
        write(&cap, b"cap");
        let mut fcaps = Vec::new();
        fcaps.extend_from_slice(&0x0200_0001u32.to_le_bytes());
        fcaps.extend_from_slice(&(1u32 << 13).to_le_bytes());
        fcaps.extend_from_slice(&[0u8; 12]);
        if let Err(err) = lsetxattr(&cap, "security.capability", &fcaps) {
            println!("skipping file capabilities: {err}");
        }
    }

    // chattr flags
    let attr_file = root.join("attr_file");
    write(&attr_file, b"attributes");
    // NODUMP | NOATIME | SYNC
    match set_chattr(&attr_file, 0x40 | 0x80 | 0x8) {
        Ok(()) => {
            expect.flags.insert(
                PathBuf::from("/attr_file"),
                (Flags::WITH_FLAG_NODUMP | Flags::WITH_FLAG_NOATIME | Flags::WITH_FLAG_SYNC).bits(),
            );
        }
        Err(err) => println!("skipping chattr flags: {err}"),
    }
    let append = root.join("append_only");
    write(&append, b"append");
    if is_root() && set_chattr(&append, 0x20).is_ok() {
        expect.chattr_cleanup.push(append);
        expect.flags.insert(
            PathBuf::from("/append_only"),
            Flags::WITH_FLAG_APPEND.bits(),
        );
    }
    let dirsync = root.join("dirsync_dir");
    mkdir(&dirsync);
    if set_chattr(&dirsync, 0x0001_0000).is_ok() {
        expect.flags.insert(
            PathBuf::from("/dirsync_dir"),
            Flags::WITH_FLAG_DIRSYNC.bits(),
        );
    }

    // quota project id, only where the file system has the feature
    let proj = root.join("project_file");
    write(&proj, b"project");
    match set_projid(&proj, 4242) {
        Ok(()) => {
            expect.projids.insert(PathBuf::from("/project_file"), 4242);
        }
        Err(err) => println!("skipping quota project id: {err}"),
    }

    expect
}

// ---------------------------------------------------------------------------------------
// helpers: archiving and decoding

fn archive_v1(root: &Path, options: PxarCreateOptions) -> (Vec<u8>, ArchiveStats, Vec<String>) {
    let mut messages = Vec::new();
    let mut out = Vec::new();
    let stats = create_archive(root, &mut out, Flags::DEFAULT, options, None, &mut |m| {
        messages.push(m)
    })
    .unwrap();
    (out, stats, messages)
}

fn archive_v2(
    root: &Path,
    options: PxarCreateOptions,
) -> (Vec<u8>, Vec<u8>, ArchiveStats, Vec<String>) {
    let mut messages = Vec::new();
    let mut out = Vec::new();
    let mut payload = Vec::new();
    let stats = create_archive_split(
        root,
        &mut out,
        &mut payload,
        Flags::DEFAULT,
        options,
        None,
        &mut |m| messages.push(m),
    )
    .unwrap();
    (out, payload, stats, messages)
}

/// One decoded archive entry with kind-specific data normalized for comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    path: PathBuf,
    kind: Kind,
    metadata: Metadata,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    File(Vec<u8>),
    Directory,
    Symlink(PathBuf),
    Hardlink(PathBuf),
    Device(u64, u64),
    Fifo,
    Socket,
}

fn decode(archive: &[u8], payload: Option<&[u8]>) -> Vec<Item> {
    let mut decoder = Decoder::new(archive, payload).unwrap();
    let mut items = Vec::new();
    while let Some(entry) = decoder.next_entry().unwrap() {
        let kind = match &entry.kind {
            EntryKind::GoodbyeTable => continue,
            EntryKind::File { size, .. } => {
                let mut data = Vec::new();
                decoder.contents().unwrap().read_to_end(&mut data).unwrap();
                assert_eq!(data.len() as u64, *size);
                Kind::File(data)
            }
            EntryKind::Directory => Kind::Directory,
            EntryKind::Symlink(target) => Kind::Symlink(target.clone()),
            EntryKind::Hardlink { target, .. } => Kind::Hardlink(target.clone()),
            EntryKind::Device(dev) => Kind::Device(dev.major, dev.minor),
            EntryKind::Fifo => Kind::Fifo,
            EntryKind::Socket => Kind::Socket,
        };
        items.push(Item {
            path: entry.path.clone(),
            kind,
            metadata: entry.metadata.clone(),
        });
    }
    items
}

fn paths(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|item| item.path.to_string_lossy().into_owned())
        .collect()
}

/// The entries the archive must contain, read from the tree with std and path-based calls.
fn expected_items(root: &Path, expect: &Expect) -> Vec<Item> {
    let mut items = Vec::new();
    let mut links = HashMap::new();
    expected_entry(root, Path::new("/"), expect, &mut links, &mut items);
    items
}

fn expected_entry(
    source: &Path,
    archive_path: &Path,
    expect: &Expect,
    links: &mut HashMap<(u64, u64), PathBuf>,
    items: &mut Vec<Item>,
) {
    let meta = std::fs::symlink_metadata(source).unwrap();
    let file_type = meta.mode() & libc::S_IFMT;
    let relative = archive_path.strip_prefix("/").unwrap().to_path_buf();
    if file_type == libc::S_IFREG && meta.nlink() > 1 {
        if let Some(target) = links.get(&(meta.dev(), meta.ino())) {
            items.push(Item {
                path: archive_path.to_path_buf(),
                kind: Kind::Hardlink(target.clone()),
                metadata: Metadata::default(),
            });
            return;
        }
        links.insert((meta.dev(), meta.ino()), relative);
    }

    let mut metadata = Metadata::from_stat(pxar::format::Stat {
        mode: u64::from(meta.mode()),
        flags: expect.flags.get(archive_path).copied().unwrap_or(0),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: pxar::format::StatxTimestamp::new(meta.mtime(), meta.mtime_nsec() as u32),
    });
    if file_type == libc::S_IFREG || file_type == libc::S_IFDIR {
        for name in llistxattr(source) {
            let keep = name.starts_with(b"user.")
                || name.starts_with(b"trusted.")
                || name == b"security.NTACL";
            if keep {
                let value = lgetxattr(source, &name).unwrap();
                metadata.xattrs.push(XAttr::new(name, value));
            }
        }
        metadata.fcaps = lgetxattr(source, b"security.capability").map(|data| FCaps { data });
        metadata.acl = expect.acls.get(archive_path).cloned().unwrap_or_default();
        metadata.quota_project_id = expect
            .projids
            .get(archive_path)
            .map(|&projid| QuotaProjectId { projid });
    }

    let kind = match file_type {
        libc::S_IFREG => Kind::File(std::fs::read(source).unwrap()),
        libc::S_IFDIR => Kind::Directory,
        libc::S_IFLNK => Kind::Symlink(std::fs::read_link(source).unwrap()),
        libc::S_IFCHR | libc::S_IFBLK => {
            let dev = Device::from_dev_t(meta.rdev());
            Kind::Device(dev.major, dev.minor)
        }
        libc::S_IFIFO => Kind::Fifo,
        libc::S_IFSOCK => Kind::Socket,
        other => panic!("unexpected file type {other:o}"),
    };
    items.push(Item {
        path: archive_path.to_path_buf(),
        kind: kind.clone(),
        metadata,
    });
    if kind == Kind::Directory {
        let mut names: Vec<_> = std::fs::read_dir(source)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            expected_entry(
                &source.join(&name),
                &archive_path.join(&name),
                expect,
                links,
                items,
            );
        }
    }
}

fn assert_items_eq(actual: &[Item], expected: &[Item]) {
    for (a, e) in actual.iter().zip(expected) {
        assert_eq!(a.path, e.path, "entry order");
        assert_eq!(a.kind, e.kind, "kind/content of {:?}", a.path);
        assert_eq!(a.metadata, e.metadata, "metadata of {:?}", a.path);
    }
    assert_eq!(paths(actual), paths(expected));
}

// ---------------------------------------------------------------------------------------
// tests

#[test]
fn full_tree_round_trip_matches_source() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    mkdir(&root);
    let expect = build_full_tree(&root);
    let expected = expected_items(&root, &expect);

    let (archive, stats, messages) = archive_v1(&root, PxarCreateOptions::default());
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(stats.archive_size, archive.len() as u64);
    assert_eq!(stats.warnings, 0);
    assert_eq!(stats.hardlinks, 3);
    let decoded = decode(&archive, None);
    assert_items_eq(&decoded, &expected);

    // spot checks of the generated tree against the spec
    let find = |p: &str| decoded.iter().find(|i| i.path == Path::new(p)).unwrap();
    assert_eq!(
        find("/sub/triple_2").kind,
        Kind::Hardlink(PathBuf::from("sub/deeper/triple"))
    );
    assert_eq!(
        find("/triple_1").kind,
        Kind::Hardlink(PathBuf::from("sub/deeper/triple"))
    );
    assert_eq!(
        find("/empty_hl_2").kind,
        Kind::Hardlink(PathBuf::from("empty_hl_1"))
    );
    assert_eq!(find("/old").metadata.stat.mtime.secs, -305_109_000);
    assert_eq!(find("/old").metadata.stat.mtime.nanos, 500_000_000);
    assert_eq!(find("/small.txt").metadata.stat.mtime.nanos, 123_456_789);
    assert_eq!(find("/link").metadata.stat.mode, 0o120777);
    assert_eq!(find("/suid").metadata.stat.mode, 0o104755);
    assert_eq!(find("/sticky").metadata.stat.mode, 0o41777);
    let root_names: Vec<_> = decoded
        .iter()
        .filter(|i| i.path.parent() == Some(Path::new("/")))
        .map(|i| i.path.file_name().unwrap().as_bytes().to_vec())
        .collect();
    let mut sorted = root_names.clone();
    sorted.sort();
    assert_eq!(root_names, sorted, "root children in byte order");
    assert_eq!(root_names.first().unwrap(), b"-leading-dash");
    assert_eq!(root_names.last().unwrap(), b"\xff\xfe-bin");

    if Flags::from_magic(fs_magic_of(&root)).contains(Flags::WITH_XATTRS) {
        let x = &find("/xattrs.txt").metadata.xattrs;
        let names: Vec<&[u8]> = x.iter().map(|x| x.name.as_slice()).collect();
        assert!(names.contains(&&b"user.a"[..]) && names.contains(&&b"user.empty"[..]));
        assert!(!names.contains(&&b"security.other"[..]));
        assert!(find("/link").metadata.xattrs.is_empty());
        if expect.acls.contains_key(Path::new("/acl_dir")) {
            assert!(find("/acl_dir").metadata.acl.default.is_some());
        }
        if let Some(fcaps) = &find("/capfile").metadata.fcaps {
            assert_eq!(fcaps.data.len(), 20);
        }
    }
    if is_root() && root.join("cdev").exists() {
        assert_eq!(find("/cdev").kind, Kind::Device(1, 3));
        assert_eq!(find("/bigdev").kind, Kind::Device(300, 70000));
        assert_eq!(find("/owned").metadata.stat.uid, 1234);
        assert_eq!(find("/owned_link").metadata.stat.gid, 5432);
    }
}

#[test]
fn same_tree_is_byte_identical_and_v1_v2_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    mkdir(&root);
    let _expect = build_full_tree(&root);

    let (first, _, _) = archive_v1(&root, PxarCreateOptions::default());
    let (second, _, _) = archive_v1(&root, PxarCreateOptions::default());
    assert!(first == second, "v1 archives differ");

    let (meta1, payload1, stats, messages) = archive_v2(&root, PxarCreateOptions::default());
    let (meta2, payload2, _, _) = archive_v2(&root, PxarCreateOptions::default());
    assert!(messages.is_empty(), "{messages:?}");
    assert!(meta1 == meta2 && payload1 == payload2, "v2 archives differ");
    assert_eq!(stats.archive_size, meta1.len() as u64);
    assert_eq!(stats.payload_size, Some(payload1.len() as u64));

    let v1 = decode(&first, None);
    let v2 = decode(&meta1, Some(&payload1));
    assert_items_eq(&v2, &v1);
    // v2 has no prelude without patterns
    assert!(Decoder::new(&meta1[..], Some(&payload1[..]))
        .unwrap()
        .prelude()
        .is_none());
}

#[test]
fn payload_boundaries_point_at_payload_headers() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("a"), b"first");
    write(&tmp.path().join("b/c"), b"");
    write(&tmp.path().join("d"), b"third file");
    let mut hints = Vec::new();
    let mut out = Vec::new();
    let mut payload = Vec::new();
    create_archive_split(
        tmp.path(),
        &mut out,
        &mut payload,
        Flags::DEFAULT,
        PxarCreateOptions::default(),
        Some(&mut |hint| hints.push(hint)),
        &mut |m| panic!("{m}"),
    )
    .unwrap();
    // The start marker (16 bytes) ends a chunk; then PAYLOAD("first") 21, PAYLOAD("") 16,
    // PAYLOAD("third file") 26; the tail marker starts a chunk.
    use crate::inject::PayloadHint;
    assert_eq!(hints[0], PayloadHint::ForcedBoundary(16));
    assert_eq!(
        hints.last(),
        Some(&PayloadHint::ForcedBoundary(16 + 21 + 16 + 26))
    );
    assert_eq!(payload.len(), 16 + 21 + 16 + 26 + 16);
    let boundaries: Vec<u64> = hints[1..hints.len() - 1]
        .iter()
        .map(|hint| match hint {
            PayloadHint::SuggestedBoundary(pos) => *pos,
            other => panic!("unexpected hint {other:?}"),
        })
        .collect();
    assert_eq!(boundaries, [16, 16 + 21, 16 + 21 + 16]);
    for pos in boundaries {
        let header = &payload[pos as usize..pos as usize + 8];
        assert_eq!(header, pxar::format::PXAR_PAYLOAD.to_le_bytes());
    }
}

/// The tree of pxar.md §16: root 0o40755 (mtime 1700000000.0) with `a` (0o100644, "hi\n",
/// mtime 1700000000.5) and `s -> a` (mtime 1700000000.0).
fn spec_example_tree(root: &Path) {
    mkdir(root);
    write(&root.join("a"), b"hi\n");
    chmod(&root.join("a"), 0o644);
    set_mtime(&root.join("a"), 1_700_000_000, 500_000_000);
    std::os::unix::fs::symlink("a", root.join("s")).unwrap();
    set_mtime(&root.join("s"), 1_700_000_000, 0);
    chmod(root, 0o755);
    set_mtime(root, 1_700_000_000, 0);
}

const SPEC_V1: &str = "
ef ac 88 e5 74 64 95 d5 38 00 00 00 00 00 00 00
ed 41 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 f1 53 65 00 00 00 00
00 00 00 00 00 00 00 00 b3 17 39 06 21 11 70 16
12 00 00 00 00 00 00 00 61 00 ef ac 88 e5 74 64
95 d5 38 00 00 00 00 00 00 00 a4 81 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 f1 53 65 00 00 00 00 00 65 cd 1d 00 00
00 00 25 1a 7c 0b 1b 7a 14 28 13 00 00 00 00 00
00 00 68 69 0a b3 17 39 06 21 11 70 16 12 00 00
00 00 00 00 00 73 00 ef ac 88 e5 74 64 95 d5 38
00 00 00 00 00 00 00 ff a1 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
f1 53 65 00 00 00 00 00 00 00 00 00 00 00 00 5f
dc f5 db e7 71 f9 27 12 00 00 00 00 00 00 00 61
00 1d 73 d5 42 a6 4f ec 2f 58 00 00 00 00 00 00
00 61 23 29 9d 8c 54 ae cc 5c 00 00 00 00 00 00
00 5c 00 00 00 00 00 00 00 cf 7b 2c 7c 06 e9 26
0c b9 00 00 00 00 00 00 00 5d 00 00 00 00 00 00
00 55 15 3e 75 5b ed 5e ef f1 00 00 00 00 00 00
00 58 00 00 00 00 00 00 00";

fn unhex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn item(htype: u64, content: &[u8]) -> Vec<u8> {
    let mut out = pxar::format::Header::with_content_size(htype, content.len() as u64)
        .to_bytes()
        .to_vec();
    out.extend_from_slice(content);
    out
}

fn words(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Whether the spec example can be reproduced here: root ownership and a file system that
/// adds no xattrs/ACLs of its own.
fn spec_example_possible(root: &Path) -> bool {
    if !is_root() {
        println!("skipping byte comparison with the spec example: needs uid/gid 0");
        return false;
    }
    if !llistxattr(root).is_empty() {
        println!("skipping byte comparison with the spec example: source dir has xattrs");
        return false;
    }
    true
}

#[test]
fn spec_example_v1_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    spec_example_tree(&root);
    if !spec_example_possible(&root) {
        return;
    }
    let (archive, stats, messages) = archive_v1(&root, PxarCreateOptions::default());
    assert!(messages.is_empty());
    let expected = unhex(SPEC_V1);
    assert_eq!(expected.len(), 329);
    assert_eq!(archive, expected);
    assert_eq!(stats.files, 1);
    assert_eq!(stats.file_bytes, 3);
    assert_eq!(stats.special_files, 1);
}

#[test]
fn spec_example_v2_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    spec_example_tree(&root);
    if !spec_example_possible(&root) {
        return;
    }
    let v1 = unhex(SPEC_V1);
    let (meta, payload, _, _) = archive_v2(&root, PxarCreateOptions::default());

    let mut expected = item(pxar::format::PXAR_FORMAT_VERSION, &words(&[2]));
    expected.extend_from_slice(&v1[0..130]);
    expected.extend(item(pxar::format::PXAR_PAYLOAD_REF, &words(&[16, 3])));
    expected.extend_from_slice(&v1[149..241]);
    let goodbye = words(&[
        pxar::format::hash_filename(b"s"),
        92,
        92,
        pxar::format::hash_filename(b"a"),
        198,
        109,
        pxar::format::PXAR_GOODBYE_TAIL_MARKER,
        278,
        88,
    ]);
    expected.extend(item(pxar::format::PXAR_GOODBYE, &goodbye));
    assert_eq!(expected.len(), 366);
    assert_eq!(meta, expected);

    let mut expected_payload = item(pxar::format::PXAR_PAYLOAD_START_MARKER, b"");
    expected_payload.extend(item(pxar::format::PXAR_PAYLOAD, b"hi\n"));
    expected_payload.extend(item(pxar::format::PXAR_PAYLOAD_TAIL_MARKER, b""));
    assert_eq!(payload, expected_payload);
    assert_eq!(payload.len(), 51);
}

fn cli_options(patterns: &[&str]) -> PxarCreateOptions {
    PxarCreateOptions {
        patterns: pathpatterns::parse_cli_excludes(patterns, false).unwrap(),
        ..Default::default()
    }
}

#[test]
fn cli_patterns_prelude_v2_and_pxarexclude_cli_v1() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    spec_example_tree(&root);
    write(&root.join("x.tmp"), b"excluded");
    // an existing .pxarexclude-cli in the root is never archived
    write(&root.join(".pxarexclude-cli"), b"stale\n");
    set_mtime(&root, 1_700_000_000, 0);

    let (meta, payload, _, _) = archive_v2(&root, cli_options(&["*.tmp"]));
    let prelude = br#"{"exclude-patterns":"*.tmp\n"}"#;
    assert_eq!(prelude.len(), 30);
    assert_eq!(&meta[24..70], item(pxar::format::PXAR_PRELUDE, prelude));
    assert_eq!(&meta[70..78], pxar::format::PXAR_ENTRY.to_le_bytes());
    let decoder = Decoder::new(&meta[..], Some(&payload[..])).unwrap();
    assert_eq!(decoder.prelude(), Some(&prelude[..]));
    let v2 = decode(&meta, Some(&payload));
    assert_eq!(paths(&v2), ["/", "/a", "/s"]);

    let (archive, _, _) = archive_v1(&root, cli_options(&["*.tmp"]));
    let v1 = decode(&archive, None);
    assert_eq!(paths(&v1), ["/", "/a", "/s", "/.pxarexclude-cli"]);
    let cli = &v1[3];
    assert_eq!(cli.kind, Kind::File(b"*.tmp\n".to_vec()));
    assert_eq!(
        cli.metadata,
        Metadata::from_stat(pxar::format::Stat {
            mode: 0o100600,
            ..Default::default()
        })
    );
    if spec_example_possible(&root) {
        // The entries before it are exactly the spec example's.
        let spec = unhex(SPEC_V1);
        assert_eq!(&archive[..241], &spec[..241]);
    }

    // no patterns: no prelude, no .pxarexclude-cli, the stale file is skipped
    let (archive, _, _) = archive_v1(&root, PxarCreateOptions::default());
    assert_eq!(paths(&decode(&archive, None)), ["/", "/a", "/s", "/x.tmp"]);

    // content rules: include marker, directory-only suffix, lost+found last
    let options = PxarCreateOptions {
        patterns: pathpatterns::parse_cli_excludes(["dir/", "!keep.tmp", "/abs//"], true).unwrap(),
        ..Default::default()
    };
    let (archive, _, _) = archive_v1(&root, options.clone());
    let last = decode(&archive, None).pop().unwrap();
    assert_eq!(last.path, Path::new("/.pxarexclude-cli"));
    assert_eq!(
        last.kind,
        Kind::File(b"dir/\n!keep.tmp\n/abs/\nlost+found\n".to_vec())
    );
    // skip_lost_and_found given as an option adds the same line
    let options = PxarCreateOptions {
        patterns: pathpatterns::parse_cli_excludes(["dir/"], false).unwrap(),
        skip_lost_and_found: true,
        ..Default::default()
    };
    let (archive, _, _) = archive_v1(&root, options.clone());
    let last = decode(&archive, None).pop().unwrap();
    assert_eq!(last.kind, Kind::File(b"dir/\nlost+found\n".to_vec()));
    let (meta, payload, _, _) = archive_v2(&root, options);
    let decoder = Decoder::new(&meta[..], Some(&payload[..])).unwrap();
    assert_eq!(
        decoder.prelude(),
        Some(&br#"{"exclude-patterns":"dir/\nlost+found\n"}"#[..])
    );
}

/// Builds the files (`name` or `name/` for directories) below `root`.
fn make_tree(root: &Path, entries: &[&str]) {
    mkdir(root);
    for entry in entries {
        if let Some(dir) = entry.strip_suffix('/') {
            mkdir(&root.join(dir));
        } else {
            write(&root.join(entry), entry.as_bytes());
        }
    }
}

/// Archive `entries` with CLI patterns and `.pxarexclude` files (dir, content); return the
/// archived paths and the messages.
fn archived_paths(
    entries: &[&str],
    cli: &[&str],
    skip_lost_and_found: bool,
    exclude_files: &[(&str, &str)],
) -> (Vec<String>, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(&root, entries);
    for (dir, content) in exclude_files {
        write(&root.join(dir).join(".pxarexclude"), content.as_bytes());
    }
    let options = PxarCreateOptions {
        patterns: pathpatterns::parse_cli_excludes(cli, false).unwrap(),
        skip_lost_and_found,
        ..Default::default()
    };
    let (archive, _, messages) = archive_v1(&root, options);
    let paths = paths(&decode(&archive, None));
    (paths, messages)
}

#[track_caller]
fn check_excludes(
    entries: &[&str],
    cli: &[&str],
    files: &[(&str, &str)],
    kept: &[&str],
    excluded: &[&str],
) {
    let (paths, _) = archived_paths(entries, cli, false, files);
    for path in kept {
        assert!(paths.iter().any(|p| p == path), "{path} missing: {paths:?}");
    }
    for path in excluded {
        assert!(
            !paths.iter().any(|p| p == path),
            "{path} archived: {paths:?}"
        );
    }
}

/// client.md §7.5 (c), command-line patterns.
#[test]
fn spec_cli_exclude_vectors() {
    check_excludes(
        &["a.tmp", "x/y/a.tmp", "x/y/keep", "x.tmp/y", "keep"],
        &["*.tmp"],
        &[],
        &["/x/y/keep", "/keep", "/x/y"],
        &["/a.tmp", "/x/y/a.tmp", "/x.tmp", "/x.tmp/y"],
    );
    check_excludes(
        &["var/cache/", "srv/var/cache/"],
        &["/var/cache"],
        &[],
        &["/var", "/srv/var/cache"],
        &["/var/cache"],
    );
    check_excludes(
        &["var/cache/", "srv/var/cache/"],
        &["var/cache"],
        &[],
        &["/var", "/srv/var"],
        &["/var/cache", "/srv/var/cache"],
    );
    check_excludes(
        &["home/u/cache/", "home/v/cache"],
        &["cache/"],
        &[],
        &["/home/u", "/home/v/cache"],
        &["/home/u/cache"],
    );
    check_excludes(
        &["home/u/cache"],
        &["cache"],
        &[],
        &["/home/u"],
        &["/home/u/cache"],
    );
    check_excludes(&["etc/passwd"], &["/"], &[], &["/etc", "/etc/passwd"], &[]);
    let (paths, _) = archived_paths(&["etc/passwd", "x"], &["*"], false, &[]);
    assert_eq!(paths, ["/", "/.pxarexclude-cli"]);
    check_excludes(
        &["var/log/syslog.log", "a.log", "var/log/keep"],
        &["**/*.log"],
        &[],
        &["/var/log/keep"],
        &["/var/log/syslog.log", "/a.log"],
    );
    check_excludes(
        &["var/log/x", "var/log/sub/y"],
        &["/var/log/**"],
        &[],
        &["/var/log"],
        &["/var/log/x", "/var/log/sub"],
    );
    check_excludes(
        &["var/log/sub/x", "var/log/f"],
        &["/var/log/*"],
        &[],
        &["/var/log"],
        &["/var/log/sub", "/var/log/sub/x", "/var/log/f"],
    );
    check_excludes(
        &["etc/a.conf", "etc/sub/a.conf"],
        &["/etc/*.conf"],
        &[],
        &["/etc/sub/a.conf"],
        &["/etc/a.conf"],
    );
    check_excludes(
        &["x/foo/bar", "foo/bar", "xfoo/bar"],
        &["foo/bar"],
        &[],
        &["/xfoo/bar", "/foo", "/x/foo"],
        &["/x/foo/bar", "/foo/bar"],
    );
    check_excludes(&["abc", "a/c"], &["a?c"], &[], &["/a/c"], &["/abc"]);
    check_excludes(
        &["d/keep.tmp", "d/other.tmp"],
        &["*.tmp", "!keep.tmp"],
        &[],
        &["/d/keep.tmp"],
        &["/d/other.tmp"],
    );
    check_excludes(
        &["d/keep.tmp"],
        &["!keep.tmp", "*.tmp"],
        &[],
        &["/d"],
        &["/d/keep.tmp"],
    );
    check_excludes(
        &["home/alice/x", "home/bob/y"],
        &["/home/*", "!/home/alice"],
        &[],
        &["/home/alice", "/home/alice/x"],
        &["/home/bob"],
    );
    check_excludes(
        &["dir/keep", "other/keep"],
        &["dir/", "!dir/keep"],
        &[],
        &["/other/keep"],
        &["/dir", "/dir/keep"],
    );
    check_excludes(
        &["abc", "!bc", "bcd"],
        &["[!a]*"],
        &[],
        &["/bcd"],
        &["/abc", "/!bc"],
    );
    check_excludes(&["abc", "bcd"], &["[^a]*"], &[], &[], &["/abc", "/bcd"]);

    let (paths, _) = archived_paths(
        &["lost+found/", "home/lost+found/x", "home/keep"],
        &[],
        true,
        &[],
    );
    assert_eq!(
        paths,
        ["/", "/home", "/home/keep", "/.pxarexclude-cli"],
        "--skip-lost-and-found"
    );
}

/// client.md §7.5 (c), `.pxarexclude` files.
#[test]
fn spec_pxarexclude_vectors() {
    check_excludes(
        &["tmp/", "x/tmp/"],
        &[],
        &[("", "/tmp\n")],
        &["/x/tmp"],
        &["/tmp"],
    );
    check_excludes(&["x/tmp/"], &[], &[("", "tmp")], &["/x"], &["/x/tmp"]);
    check_excludes(
        &["src/important.o", "src/a.o"],
        &[],
        &[("", "*.o\n!important.o\n")],
        &["/src/important.o"],
        &["/src/a.o"],
    );
    check_excludes(
        &["a.o", "# comment", "b"],
        &[],
        &[("", "# comment\n  *.o  \n\n")],
        &["/# comment", "/b", "/.pxarexclude"],
        &["/a.o"],
    );
    check_excludes(
        &["build/", "sub/build"],
        &[],
        &[("", "build/\n")],
        &["/sub/build"],
        &["/build"],
    );
    // the later line wins; the exclude file itself is matched by `/*` as well
    check_excludes(
        &["keep", "other"],
        &[],
        &[("", "!/keep\n/*\n")],
        &[],
        &["/keep", "/other", "/.pxarexclude"],
    );
    check_excludes(
        &["keep", "other"],
        &[],
        &[("", "/*\n!/keep\n")],
        &["/keep"],
        &["/other"],
    );
    check_excludes(
        &["a/b/c.bak", "c.bak", "a/b/c.txt"],
        &[],
        &[("", "/**/*.bak\n")],
        &["/a/b/c.txt"],
        &["/a/b/c.bak", "/c.bak"],
    );
    // Nested anchored lines are anchored at their directory (the documented behavior; the
    // 3.2.4 client never matched them).
    check_excludes(
        &["sub/x", "sub/y", "x"],
        &[],
        &[("sub", "/x\n")],
        &["/x", "/sub/y"],
        &["/sub/x"],
    );
    check_excludes(
        &["sub/x", "sub/deeper/x", "other/x"],
        &[],
        &[("sub", "x\n")],
        &["/other/x", "/sub/deeper"],
        &["/sub/x", "/sub/deeper/x"],
    );
    // patterns of a directory stop applying after it
    check_excludes(
        &["a/f.o", "b/f.o"],
        &[],
        &[("a", "*.o\n")],
        &["/b/f.o"],
        &["/a/f.o"],
    );
    // CLI include overridden by a later .pxarexclude exclude
    check_excludes(
        &["d/f.log"],
        &["!*.log"],
        &[("d", "*.log\n")],
        &[],
        &["/d/f.log"],
    );
}

#[test]
fn bad_pxarexclude_lines_are_reported_and_skipped() {
    let (paths, messages) = archived_paths(
        &["a.o", "b.x", "c"],
        &[],
        false,
        &[("", "[[:foo:]]\n*.o\nb\\\n*.x\n")],
    );
    assert_eq!(paths, ["/", "/.pxarexclude", "/c"]);
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages
        .iter()
        .all(|m| m.starts_with("bad pattern in \"\"")));
}

#[test]
fn vanished_file_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(&root, &["a", "b", "c", "d/e", "f/g"]);
    let mut messages = Vec::new();
    let mut out = Vec::new();
    let victim = root.clone();
    let mut hook = |path: &[u8]| match path {
        b"b" => std::fs::remove_file(victim.join("b")).unwrap(),
        b"f" => std::fs::remove_dir_all(victim.join("f")).unwrap(),
        _ => {}
    };
    let stats = run(
        SourceDir::Path(&root),
        Outputs::<&mut Vec<u8>, &mut Vec<u8>>::Unified(&mut out),
        Flags::DEFAULT,
        PxarCreateOptions::default(),
        None,
        Hooks {
            messages: &mut |m| messages.push(m),
            payload_hints: None,
            before_entry: Some(&mut hook),
        },
    )
    .unwrap();
    assert_eq!(
        messages,
        [
            "warning: file vanished while reading: \"b\"",
            "warning: file vanished while reading: \"f\""
        ]
    );
    assert_eq!(stats.warnings, 2);
    assert_eq!(paths(&decode(&out, None)), ["/", "/a", "/c", "/d", "/d/e"]);
}

#[test]
fn file_changing_size_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(&root, &[]);
    write(&root.join("grows"), b"12345");
    write(&root.join("shrinks"), b"abcdefgh");
    let mut messages = Vec::new();
    let mut out = Vec::new();
    let dir = root.clone();
    let mut hook = |path: &[u8]| match path {
        b"grows" => write(&dir.join("grows"), b"1234567890"),
        b"shrinks" => write(&dir.join("shrinks"), b"abc"),
        _ => {}
    };
    run(
        SourceDir::Path(&root),
        Outputs::<&mut Vec<u8>, &mut Vec<u8>>::Unified(&mut out),
        Flags::DEFAULT,
        PxarCreateOptions::default(),
        None,
        Hooks {
            messages: &mut |m| messages.push(m),
            payload_hints: None,
            before_entry: Some(&mut hook),
        },
    )
    .unwrap();
    assert_eq!(
        messages,
        [
            "warning: file size increased while reading: \"grows\"",
            "warning: file size shrunk while reading: \"shrinks\", file will be padded with zeros!"
        ]
    );
    let items = decode(&out, None);
    assert_eq!(items[1].kind, Kind::File(b"12345".to_vec()));
    assert_eq!(items[2].kind, Kind::File(b"abc\0\0\0\0\0".to_vec()));
}

/// Drops DAC_OVERRIDE, DAC_READ_SEARCH and FOWNER from the calling thread's effective
/// capabilities (capabilities are per thread) until dropped, so root sees permission errors.
struct DroppedDacCapabilities {
    header: CapHeader,
    saved: [CapData; 2],
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl DroppedDacCapabilities {
    fn new() -> io::Result<Self> {
        let mut header = CapHeader {
            version: 0x2008_0522,
            pid: 0,
        };
        let mut saved = [CapData::default(); 2];
        // SAFETY: header and a two-element data array as the v3 ABI requires.
        if unsafe { libc::syscall(libc::SYS_capget, &mut header, saved.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reduced = saved;
        reduced[0].effective &= !((1 << 1) | (1 << 2) | (1 << 3));
        // SAFETY: as above; pid 0 changes only the calling thread.
        if unsafe { libc::syscall(libc::SYS_capset, &mut header, reduced.as_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { header, saved })
    }
}

impl Drop for DroppedDacCapabilities {
    fn drop(&mut self) {
        // SAFETY: restores the state read in `new` for this thread.
        unsafe { libc::syscall(libc::SYS_capset, &mut self.header, self.saved.as_ptr()) };
    }
}

#[test]
fn unreadable_file_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(&root, &["a", "other_owner", "secret", "closed/x"]);
    chmod(&root.join("secret"), 0o000);
    chmod(&root.join("closed"), 0o000);
    let _caps = if is_root() {
        // Files of another owner: O_NOATIME is refused (EPERM) and retried without it.
        lchown(&root.join("other_owner"), 1234, 1234);
        lchown(&root.join("secret"), 1234, 1234);
        match DroppedDacCapabilities::new() {
            Ok(caps) => Some(caps),
            Err(err) => {
                println!("skipping: cannot drop capabilities: {err}");
                return;
            }
        }
    } else {
        None
    };
    let (archive, stats, messages) = archive_v1(&root, PxarCreateOptions::default());
    drop(_caps);
    assert_eq!(
        messages,
        [
            "failed to open file: \"closed\": access denied",
            "failed to open file: \"secret\": access denied"
        ]
    );
    assert_eq!(stats.warnings, 2);
    let items = decode(&archive, None);
    assert_eq!(paths(&items), ["/", "/a", "/other_owner"]);
    assert_eq!(items[2].kind, Kind::File(b"other_owner".to_vec()));
}

#[test]
fn entries_max_counts_the_current_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(
        &root,
        &["d1/f1", "d1/f2", "d1/f3", "d2/f1", "d2/f2", "d2/f3"],
    );
    let limit = |entries_max| {
        let mut out = Vec::new();
        create_archive(
            root.as_path(),
            &mut out,
            Flags::DEFAULT,
            PxarCreateOptions {
                entries_max,
                ..Default::default()
            },
            None,
            &mut |_| {},
        )
    };
    // at most 2 (root) + 3 (one subdirectory) entries are listed at a time
    assert!(limit(5).is_ok());
    let err = limit(4).unwrap_err();
    assert_eq!(
        err.to_string(),
        "error at \"d1\": exceeded allowed number of file entries (> 4)"
    );
    assert_eq!(err.downcast_ref::<ArchiveError>().unwrap().path, b"d1");
    let err = limit(1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "exceeded allowed number of file entries (> 1)"
    );
    // excluded entries do not count
    let mut out = Vec::new();
    let options = PxarCreateOptions {
        entries_max: 4,
        patterns: pathpatterns::parse_cli_excludes(["f3"], false).unwrap(),
        ..Default::default()
    };
    create_archive(
        root.as_path(),
        &mut out,
        Flags::DEFAULT,
        options,
        None,
        &mut |_| {},
    )
    .unwrap();
}

/// Flattens a catalog directory into (path, type, size, mtime) rows in table order.
fn catalog_rows(
    reader: &mut CatalogReader<Cursor<Vec<u8>>>,
    dir: &DirEntry,
    prefix: &str,
    rows: &mut Vec<(String, char, Option<u64>, Option<i64>)>,
) {
    for entry in reader.read_dir(dir).unwrap() {
        let path = format!("{prefix}/{}", String::from_utf8_lossy(&entry.name));
        let (size, mtime) = match entry.attr {
            DirEntryAttribute::File { size, mtime } => (Some(size), Some(mtime)),
            _ => (None, None),
        };
        rows.push((path.clone(), entry.attr.entry_type().as_char(), size, mtime));
        if entry.is_directory() {
            catalog_rows(reader, &entry, &path, rows);
        }
    }
}

#[test]
fn catalog_matches_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    mkdir(&root);
    let _expect = build_full_tree(&root);
    write(&root.join("z.tmp"), b"excluded");

    let mut catalog = CatalogWriter::new(Vec::new()).unwrap();
    catalog.start_directory(b"root.pxar.didx").unwrap();
    let mut out = Vec::new();
    create_archive(
        root.as_path(),
        &mut out,
        Flags::DEFAULT,
        cli_options(&["*.tmp"]),
        Some(&mut catalog),
        &mut |m| panic!("{m}"),
    )
    .unwrap();
    catalog.end_directory().unwrap();
    let catalog = catalog.finish().unwrap();

    let mut reader = CatalogReader::new(Cursor::new(catalog));
    let catalog_root = reader.root().unwrap();
    let archives = reader.read_dir(&catalog_root).unwrap();
    assert_eq!(archives.len(), 1);
    assert_eq!(archives[0].name, b"root.pxar.didx");
    let mut rows = Vec::new();
    catalog_rows(&mut reader, &archives[0], "", &mut rows);

    let expected: Vec<_> = decode(&out, None)
        .into_iter()
        .skip(1)
        .map(|item| {
            let path = item.path.to_string_lossy().into_owned();
            let stat = &item.metadata.stat;
            match &item.kind {
                Kind::File(data) => (path, 'f', Some(data.len() as u64), Some(stat.mtime.secs)),
                Kind::Directory => (path, 'd', None, None),
                Kind::Symlink(_) => (path, 'l', None, None),
                Kind::Hardlink(_) => (path, 'h', None, None),
                Kind::Device(..) if stat.file_type() == mode::IFBLK => (path, 'b', None, None),
                Kind::Device(..) => (path, 'c', None, None),
                Kind::Fifo => (path, 'p', None, None),
                Kind::Socket => (path, 's', None, None),
            }
        })
        .collect();
    assert_eq!(rows, expected);
    let last = rows.last().unwrap();
    assert_eq!(
        last,
        &("/.pxarexclude-cli".to_string(), 'f', Some(6), Some(0))
    );
}

#[test]
fn virtual_file_system_root_is_refused() {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        println!("skipping: /proc is not mounted");
        return;
    }
    let err = create_archive(
        proc,
        Vec::new(),
        Flags::DEFAULT,
        PxarCreateOptions::default(),
        None,
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "refusing to backup a virtual file system");
}

#[test]
fn source_given_as_fd_and_symlink_source_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(&root, &["a", "b/c"]);
    let fd: OwnedFd = File::open(&root).unwrap().into();
    let mut out = Vec::new();
    create_archive(
        SourceDir::Fd(fd),
        &mut out,
        Flags::DEFAULT,
        PxarCreateOptions::default(),
        None,
        &mut |_| {},
    )
    .unwrap();
    let (by_path, _, _) = archive_v1(&root, PxarCreateOptions::default());
    assert_eq!(out, by_path);

    std::os::unix::fs::symlink(&root, tmp.path().join("link")).unwrap();
    let link = tmp.path().join("link");
    assert!(create_archive(
        link.as_path(),
        Vec::new(),
        Flags::DEFAULT,
        PxarCreateOptions::default(),
        None,
        &mut |_| {},
    )
    .is_err());
}

#[test]
fn feature_flags_limit_collected_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(&root, &["f"]);
    if !Flags::from_magic(fs_magic_of(&root)).contains(Flags::WITH_XATTRS) {
        println!("skipping: file system without xattr support flag");
        return;
    }
    lsetxattr(&root.join("f"), "user.x", b"1").unwrap();
    let mut out = Vec::new();
    create_archive(
        root.as_path(),
        &mut out,
        Flags::DEFAULT & !Flags::WITH_XATTRS,
        PxarCreateOptions::default(),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert!(decode(&out, None)[1].metadata.xattrs.is_empty());
    let (out, _, _) = archive_v1(&root, PxarCreateOptions::default());
    assert_eq!(
        decode(&out, None)[1].metadata.xattrs,
        [XAttr::new(b"user.x".to_vec(), b"1".to_vec())]
    );
}

#[test]
fn tmpfs_stores_no_xattrs() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() || fs_magic_of(shm) != magic::TMPFS {
        println!("skipping: /dev/shm is not a tmpfs");
        return;
    }
    let Ok(tmp) = tempfile::tempdir_in(shm) else {
        println!("skipping: /dev/shm is not writable");
        return;
    };
    make_tree(tmp.path(), &["f"]);
    if let Err(err) = lsetxattr(&tmp.path().join("f"), "user.x", b"1") {
        println!("tmpfs rejects user xattrs ({err}); checking the plain archive only");
    }
    let (out, _, _) = archive_v1(tmp.path(), PxarCreateOptions::default());
    let items = decode(&out, None);
    assert_eq!(paths(&items), ["/", "/f"]);
    assert!(items[1].metadata.xattrs.is_empty());
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        // SAFETY: valid path.
        unsafe { libc::umount2(cpath(&self.0).as_ptr(), libc::MNT_DETACH) };
    }
}

fn mount_tmpfs(target: &Path) -> Option<Mount> {
    // SAFETY: valid NUL-terminated strings.
    let ret = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            cpath(target).as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret < 0 {
        println!(
            "skipping mount point test: cannot mount tmpfs: {}",
            io::Error::last_os_error()
        );
        return None;
    }
    Some(Mount(target.to_path_buf()))
}

#[test]
fn mount_points_stay_on_one_file_system() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(&root, &["a", "mnt/"]);
    let Some(_mount) = mount_tmpfs(&root.join("mnt")) else {
        return;
    };
    write(&root.join("mnt/inner"), b"on tmpfs");
    let tmpfs_dev = std::fs::metadata(root.join("mnt")).unwrap().dev();

    let (out, _, messages) = archive_v1(&root, PxarCreateOptions::default());
    assert_eq!(messages, ["skipping mount point: \"mnt\""]);
    let items = decode(&out, None);
    assert_eq!(paths(&items), ["/", "/a", "/mnt"]);
    assert_eq!(items[2].kind, Kind::Directory);

    let all = PxarCreateOptions {
        device_set: None,
        ..Default::default()
    };
    let (out, _, messages) = archive_v1(&root, all);
    assert!(messages.is_empty());
    assert_eq!(
        paths(&decode(&out, None)),
        ["/", "/a", "/mnt", "/mnt/inner"]
    );

    let set = include_dev_set(&[root.join("mnt")]).unwrap();
    assert_eq!(set, [tmpfs_dev].into_iter().collect());
    assert!(include_dev_set(&[root.join("missing")]).is_err());
    let include = PxarCreateOptions {
        device_set: Some(set),
        ..Default::default()
    };
    let (out, _, _) = archive_v1(&root, include);
    assert_eq!(
        paths(&decode(&out, None)),
        ["/", "/a", "/mnt", "/mnt/inner"]
    );
}

#[test]
fn verbose_lists_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(&root, &["b", "a/c"]);
    let options = PxarCreateOptions {
        verbose: true,
        ..Default::default()
    };
    let (_, stats, messages) = archive_v1(&root, options);
    assert_eq!(messages, ["\"a\"", "\"a/c\"", "\"b\""]);
    assert_eq!(stats.warnings, 0);
    assert_eq!(stats.directories, 1);
    assert_eq!(stats.files, 2);
}

#[test]
fn deep_and_wide_trees_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    let mut deep = root.clone();
    for i in 0..40 {
        deep.push(format!("level{i}"));
    }
    write(&deep.join("leaf"), b"leaf");
    for i in 0..300 {
        write(
            &root.join(format!("wide/{i:04}")),
            format!("{i}").as_bytes(),
        );
    }
    let expected = expected_items(&root, &Expect::default());
    let (out, _, _) = archive_v1(&root, PxarCreateOptions::default());
    assert_items_eq(&decode(&out, None), &expected);
    let accessor = pxar::Accessor::new_unified(&out[..], out.len() as u64).unwrap();
    assert!(accessor.lookup(Path::new("/wide/0123")).unwrap().is_some());
}

/// client.md §8.2, first example: the catalog of an archive with `a` (3 bytes, mtime
/// 1700000000) and `d/l` (symlink), byte for byte.
#[test]
fn spec_catalog_example_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(&root, &["d/"]);
    write(&root.join("a"), b"abc");
    set_mtime(&root.join("a"), 1_700_000_000, 999_999_999);
    std::os::unix::fs::symlink("a", root.join("d/l")).unwrap();

    let mut catalog = CatalogWriter::new(Vec::new()).unwrap();
    catalog.start_directory(b"root.pxar.didx").unwrap();
    create_archive(
        root.as_path(),
        std::io::sink(),
        Flags::DEFAULT,
        PxarCreateOptions::default(),
        Some(&mut catalog),
        &mut |m| panic!("{m}"),
    )
    .unwrap();
    catalog.end_directory().unwrap();
    let bytes = catalog.finish().unwrap();
    let expected = unhex(
        "91 fd 60 f9 c4 67 58 d5
         04 01 6c 01 6c
         0e 02 66 01 61 03 80 e2 cf aa 06 64 01 64 05
         12 01 64 0e 72 6f 6f 74 2e 70 78 61 72 2e 64 69 64 78 0f
         1c 00 00 00 00 00 00 00",
    );
    assert_eq!(bytes, expected);
}

/// pxar.md §8.2 worked example: seven files named after their content; FILENAME offsets,
/// goodbye position and archive size.
#[test]
fn spec_goodbye_example_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    let names = ["alpha", "beta", "delta", "epsilon", "eta", "gamma", "zeta"];
    make_tree(&root, &names);
    if !llistxattr(&root).is_empty() {
        println!("skipping: source directory carries xattrs");
        return;
    }
    let (archive, _, _) = archive_v1(&root, PxarCreateOptions::default());
    assert_eq!(archive.len(), 953);
    let mut decoder = Decoder::new_unified(&archive[..]).unwrap();
    let mut offsets = Vec::new();
    while let Some(entry) = decoder.next_entry().unwrap() {
        if let Some(offset) = entry.filename_offset {
            offsets.push(offset);
        }
    }
    assert_eq!(offsets, [56, 155, 252, 351, 454, 549, 648]);
    assert_eq!(
        &archive[745..761],
        pxar::format::Header::with_content_size(pxar::format::PXAR_GOODBYE, 208 - 16).to_bytes()
    );
    // slot 0 of the goodbye table is epsilon: offset 394, size 103
    assert_eq!(
        &archive[761..785],
        words(&[0x6b17_7759_641f_f3a2, 394, 103]).as_slice()
    );
}

#[test]
fn hardlinks_point_back_to_the_first_occurrence() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(&root, &["sub/deeper/triple", "x"]);
    std::fs::hard_link(root.join("sub/deeper/triple"), root.join("sub/triple_2")).unwrap();
    std::fs::hard_link(root.join("sub/deeper/triple"), root.join("triple_1")).unwrap();
    // a single link is an ordinary file
    let (archive, stats, _) = archive_v1(&root, PxarCreateOptions::default());
    assert_eq!(stats.hardlinks, 2);
    let mut decoder = Decoder::new_unified(&archive[..]).unwrap();
    let mut filename_offsets = HashMap::new();
    let mut links = Vec::new();
    while let Some(entry) = decoder.next_entry().unwrap() {
        if let Some(offset) = entry.filename_offset {
            filename_offsets.insert(entry.path.clone(), offset);
        }
        if let EntryKind::Hardlink { target, .. } = &entry.kind {
            links.push((
                entry.path.clone(),
                target.clone(),
                entry.hardlink_target_offset().unwrap(),
            ));
        }
    }
    let first = filename_offsets[Path::new("/sub/deeper/triple")];
    assert_eq!(
        links,
        [
            (
                PathBuf::from("/sub/triple_2"),
                PathBuf::from("sub/deeper/triple"),
                first
            ),
            (
                PathBuf::from("/triple_1"),
                PathBuf::from("sub/deeper/triple"),
                first
            ),
        ]
    );
}

#[test]
fn odd_pxarexclude_files_do_not_stop_the_walk() {
    // a fifo named .pxarexclude reads as empty instead of blocking
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(&root, &["a"]);
    mkfifo(&root.join(".pxarexclude"));
    let (archive, _, messages) = archive_v1(&root, PxarCreateOptions::default());
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(paths(&decode(&archive, None)), ["/", "/.pxarexclude", "/a"]);

    // a directory named .pxarexclude cannot be read: warning, no patterns
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    make_tree(&root, &["a", "sub/.pxarexclude/x"]);
    let (archive, stats, messages) = archive_v1(&root, PxarCreateOptions::default());
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with("ignoring .pxarexclude after read error in \"sub\": "),
        "{messages:?}"
    );
    assert_eq!(stats.warnings, 1);
    assert_eq!(
        paths(&decode(&archive, None)),
        [
            "/",
            "/a",
            "/sub",
            "/sub/.pxarexclude",
            "/sub/.pxarexclude/x"
        ]
    );
}
