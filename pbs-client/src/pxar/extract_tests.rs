//! Extraction tests: archives are built with the encoder, extracted into temporary
//! directories and compared entry by entry with what was encoded.

use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::{Arc, Mutex};

use pxar::format::{
    AclDefault, AclGroup, AclGroupObject, AclUser, FCaps, Stat, StatxTimestamp, XAttr,
};
use pxar::Encoder;

use super::*;

/// VFS capability revision 2, effective, CAP_NET_RAW permitted.
const FCAPS: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn meta(file_mode: u64, uid: u32, gid: u32, secs: i64, nanos: u32) -> Metadata {
    Metadata::from_stat(Stat {
        mode: file_mode,
        flags: 0,
        uid,
        gid,
        mtime: StatxTimestamp::new(secs, nanos),
    })
}

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid strings and buffer.
    let n = unsafe {
        libc::lgetxattr(
            c(path).as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).unwrap();
    // SAFETY: valid strings and buffer.
    let ret = unsafe {
        libc::lsetxattr(
            c(path).as_ptr(),
            name.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    };
    cvt(ret).map(drop)
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// What the file system under the test directory supports; reasons are printed.
#[derive(Clone, Copy, Debug)]
struct Support {
    xattrs: bool,
    acls: bool,
    fcaps: bool,
    devices: bool,
}

fn probe(dir: &Path) -> Support {
    let file = dir.join("probe");
    std::fs::write(&file, b"").unwrap();
    let check = |what: &str, result: io::Result<()>| match result {
        Ok(()) => true,
        Err(err) => {
            eprintln!("skipping {what} checks: not supported here ({err})");
            false
        }
    };
    let xattrs = check("xattr", set_xattr(&file, "user.probe", b"1"));
    let acl = access_acl_sample();
    let acls = check(
        "ACL",
        set_xattr(
            &file,
            "system.posix_acl_access",
            &apply::access_acl_xattr(&acl).unwrap().unwrap(),
        ),
    );
    let fcaps = check(
        "file capability",
        set_xattr(&file, "security.capability", &FCAPS),
    );
    let node = c(&dir.join("probe-null"));
    // SAFETY: valid string.
    let ret = unsafe {
        libc::mknod(
            node.as_ptr(),
            libc::S_IFCHR | 0o600,
            Device { major: 1, minor: 3 }.to_dev_t() as libc::dev_t,
        )
    };
    let devices = check("device node", cvt(ret).map(drop));
    std::fs::remove_file(&file).unwrap();
    let _ = std::fs::remove_file(dir.join("probe-null"));
    Support {
        xattrs,
        acls,
        fcaps,
        devices,
    }
}

fn access_acl_sample() -> Metadata {
    let mut m = meta(mode::IFREG | 0o660, 1000, 1001, 1_400_000_000, 123_456_789);
    m.acl.users = vec![
        AclUser {
            uid: 99,
            permissions: 4,
        },
        AclUser {
            uid: 1234,
            permissions: 6,
        },
    ];
    m.acl.groups = vec![AclGroup {
        gid: 2345,
        permissions: 4,
    }];
    m.acl.group_obj = Some(AclGroupObject { permissions: 4 });
    m
}

/// One encoded entry and what must come out of extraction.
#[derive(Clone, Debug)]
struct Expected {
    path: &'static str,
    metadata: Metadata,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(&'static str),
    Hardlink(&'static str),
    Device(Device),
    Fifo,
    Socket,
}

fn file_content() -> Vec<u8> {
    let mut data = b"hello".to_vec();
    data.resize(5 + 3 * 4096, 0);
    data.extend_from_slice(b"world");
    data
}

/// The sample tree in archive order (names sorted within each directory).
fn sample_tree(support: Support) -> (Metadata, Vec<Expected>) {
    let mut root = meta(mode::IFDIR | 0o755, 0, 0, 1_600_000_000, 111);
    let mut dir = meta(mode::IFDIR | 0o2750, 1000, 1001, 1_500_000_000, 222_333_444);
    let mut file = access_acl_sample();
    if !support.acls {
        file.acl = Default::default();
    }
    if support.xattrs {
        root.xattrs = vec![XAttr::new(b"user.root".to_vec(), b"r".to_vec())];
        dir.xattrs = vec![XAttr::new(b"user.dir".to_vec(), b"d".to_vec())];
        file.xattrs = vec![
            XAttr::new(b"user.a".to_vec(), b"b".to_vec()),
            XAttr::new(b"user.empty".to_vec(), Vec::new()),
        ];
    }
    if support.acls {
        dir.acl.users = vec![AclUser {
            uid: 1234,
            permissions: 7,
        }];
        dir.acl.group_obj = Some(AclGroupObject { permissions: 5 });
        dir.acl.default = Some(AclDefault {
            user_obj_permissions: 7,
            group_obj_permissions: 5,
            other_permissions: 5,
            mask_permissions: 7,
        });
        dir.acl.default_users = vec![AclUser {
            uid: 1234,
            permissions: 5,
        }];
        dir.acl.default_groups = vec![AclGroup {
            gid: 2345,
            permissions: 7,
        }];
    }
    if support.fcaps {
        file.fcaps = Some(FCaps {
            data: FCAPS.to_vec(),
        });
    }
    let mut entries = vec![
        Expected {
            path: "dir",
            metadata: dir,
            kind: Kind::Dir,
        },
        Expected {
            path: "dir/file",
            metadata: file,
            kind: Kind::File(file_content()),
        },
        Expected {
            path: "dir/sub",
            metadata: meta(mode::IFDIR | 0o755, 0, 0, 1_300_000_000, 500_000_000),
            kind: Kind::Dir,
        },
        Expected {
            path: "dir/sub/deep",
            metadata: meta(mode::IFREG | 0o600, 1, 2, 1_200_000_000, 1),
            kind: Kind::File(b"deep".to_vec()),
        },
        Expected {
            path: "empty",
            metadata: meta(mode::IFREG | 0o644, 0, 0, -305_109_000, 500_000_000),
            kind: Kind::File(Vec::new()),
        },
        Expected {
            path: "fifo",
            metadata: meta(mode::IFIFO | 0o640, 3, 4, 1000, 100),
            kind: Kind::Fifo,
        },
        Expected {
            path: "hard",
            metadata: Metadata::default(),
            kind: Kind::Hardlink("dir/file"),
        },
        Expected {
            path: "link",
            metadata: meta(mode::IFLNK | 0o777, 1000, 1000, 2000, 200),
            kind: Kind::Symlink("dir/file"),
        },
    ];
    if support.devices {
        entries.push(Expected {
            path: "null",
            metadata: meta(mode::IFCHR | 0o666, 0, 0, 3000, 300),
            kind: Kind::Device(Device { major: 1, minor: 3 }),
        });
    }
    entries.push(Expected {
        path: "sock",
        metadata: meta(mode::IFSOCK | 0o755, 5, 6, 4000, 400),
        kind: Kind::Socket,
    });
    (root, entries)
}

fn encode_entries<W: pxar::SeqWrite, P: pxar::SeqWrite>(
    encoder: &mut Encoder<W, P>,
    entries: &[Expected],
) {
    let mut open: Vec<&str> = Vec::new();
    let mut links = std::collections::HashMap::new();
    for entry in entries {
        let parent = entry.path.rsplit_once('/').map_or("", |(p, _)| p);
        while open.last().is_some_and(|dir| *dir != parent) {
            encoder.finish_directory().unwrap();
            open.pop();
        }
        let name = entry.path.rsplit('/').next().unwrap().as_bytes();
        let m = &entry.metadata;
        match &entry.kind {
            Kind::Dir => {
                encoder.create_directory(name, m).unwrap();
                open.push(entry.path);
            }
            Kind::File(data) => {
                let link = encoder
                    .add_file(m, name, data.len() as u64, &mut &data[..])
                    .unwrap();
                links.insert(entry.path, link);
            }
            Kind::Symlink(target) => encoder.add_symlink(m, name, target.as_bytes()).unwrap(),
            Kind::Hardlink(target) => encoder
                .add_hardlink(name, target.as_bytes(), links[target])
                .unwrap(),
            Kind::Device(device) => encoder.add_device(m, name, *device).unwrap(),
            Kind::Fifo => encoder.add_fifo(m, name).unwrap(),
            Kind::Socket => encoder.add_socket(m, name).unwrap(),
        }
    }
    for _ in open {
        encoder.finish_directory().unwrap();
    }
}

fn build_unified(root: &Metadata, entries: &[Expected]) -> Vec<u8> {
    let mut encoder = Encoder::new_unified(Vec::new(), root).unwrap();
    encode_entries(&mut encoder, entries);
    encoder.finish().unwrap().0
}

fn build_split(root: &Metadata, entries: &[Expected]) -> (Vec<u8>, Vec<u8>) {
    let mut encoder = Encoder::new(Vec::new(), root, Some(Vec::new()), Some(b"prelude")).unwrap();
    encode_entries(&mut encoder, entries);
    let (meta, payload) = encoder.finish().unwrap();
    (meta, payload.unwrap())
}

fn strict() -> PxarExtractOptions {
    PxarExtractOptions {
        strict: true,
        ..Default::default()
    }
}

fn extract(
    archive: &[u8],
    dest: &Path,
    patterns: &[MatchEntry],
    flags: Flags,
    options: PxarExtractOptions,
) -> Result<()> {
    let decoder = Decoder::new_unified(archive).unwrap();
    extract_archive(decoder, dest, patterns, flags, options)
}

fn check_metadata(path: &Path, expected: &Metadata, support: Support, flags: Flags) {
    let st = std::fs::symlink_metadata(path).unwrap();
    let stat = &expected.stat;
    assert_eq!(
        u64::from(st.mode()) & mode::IFMT,
        stat.mode & mode::IFMT,
        "{path:?} type"
    );
    if stat.mode & mode::IFMT != mode::IFLNK {
        assert_eq!(
            u64::from(st.mode()) & 0o7777,
            stat.mode & 0o7777,
            "{path:?} mode"
        );
    }
    if is_root() {
        assert_eq!((st.uid(), st.gid()), (stat.uid, stat.gid), "{path:?} owner");
    }
    assert_eq!(
        (st.mtime(), st.mtime_nsec()),
        (stat.mtime.secs, i64::from(stat.mtime.nanos)),
        "{path:?} mtime"
    );
    if support.xattrs {
        for xattr in &expected.xattrs {
            let name = std::str::from_utf8(&xattr.name).unwrap();
            let value = get_xattr(path, name);
            if flags.contains(Flags::WITH_XATTRS) {
                assert_eq!(
                    value.as_deref(),
                    Some(&xattr.value[..]),
                    "{path:?} xattr {name}"
                );
            } else {
                assert_eq!(
                    value, None,
                    "{path:?} xattr {name} restored despite the mask"
                );
            }
        }
    }
    if support.acls {
        let expect = |value: Option<Vec<u8>>| value.filter(|_| flags.contains(Flags::WITH_ACL));
        assert_eq!(
            get_xattr(path, "system.posix_acl_access"),
            expect(apply::access_acl_xattr(expected).unwrap()),
            "{path:?} access ACL"
        );
        assert_eq!(
            get_xattr(path, "system.posix_acl_default"),
            expect(apply::default_acl_xattr(expected).unwrap()),
            "{path:?} default ACL"
        );
    }
    if support.fcaps && stat.is_regular_file() {
        let want = expected
            .fcaps
            .as_ref()
            .filter(|_| flags.contains(Flags::WITH_FCAPS))
            .map(|f| f.data.clone());
        assert_eq!(
            get_xattr(path, "security.capability"),
            want,
            "{path:?} fcaps"
        );
    }
}

fn check_tree(dest: &Path, root: &Metadata, entries: &[Expected], support: Support, flags: Flags) {
    check_metadata(dest, root, support, flags);
    for entry in entries {
        let path = dest.join(entry.path);
        match &entry.kind {
            Kind::Dir => {}
            Kind::File(data) => assert_eq!(&std::fs::read(&path).unwrap(), data, "{path:?}"),
            Kind::Symlink(target) => {
                assert_eq!(std::fs::read_link(&path).unwrap(), Path::new(target))
            }
            Kind::Hardlink(target) => {
                let a = std::fs::metadata(&path).unwrap();
                let b = std::fs::metadata(dest.join(target)).unwrap();
                assert_eq!(
                    (a.dev(), a.ino()),
                    (b.dev(), b.ino()),
                    "{path:?} not linked"
                );
                continue;
            }
            Kind::Device(device) => {
                let st = std::fs::symlink_metadata(&path).unwrap();
                assert!(st.file_type().is_char_device());
                assert_eq!(st.rdev(), device.to_dev_t());
            }
            Kind::Fifo => assert!(std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_fifo()),
            Kind::Socket => {
                assert!(std::fs::symlink_metadata(&path)
                    .unwrap()
                    .file_type()
                    .is_socket())
            }
        }
        check_metadata(&path, &entry.metadata, support, flags);
    }
}

fn setup() -> (tempfile::TempDir, Support) {
    let tmp = tempfile::tempdir().unwrap();
    let support = probe(tmp.path());
    (tmp, support)
}

#[test]
fn unified_archive_roundtrip_restores_everything() {
    let (tmp, support) = setup();
    let (root, entries) = sample_tree(support);
    let archive = build_unified(&root, &entries);
    let dest = tmp.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    extract(&archive, &dest, &[], Flags::DEFAULT, strict()).unwrap();
    check_tree(&dest, &root, &entries, support, Flags::DEFAULT);
    // The sparse file's zero blocks became a hole.
    let st = std::fs::metadata(dest.join("dir/file")).unwrap();
    assert!(
        st.blocks() * 512 < st.len(),
        "zero blocks were written: {} blocks",
        st.blocks()
    );
}

#[test]
fn split_archive_roundtrip() {
    let (tmp, support) = setup();
    let (root, entries) = sample_tree(support);
    let (meta, payload) = build_split(&root, &entries);
    let decoder = Decoder::new(&meta[..], Some(&payload[..])).unwrap();
    assert_eq!(decoder.prelude(), Some(&b"prelude"[..]));
    extract_archive(decoder, tmp.path(), &[], Flags::DEFAULT, strict()).unwrap();
    check_tree(tmp.path(), &root, &entries, support, Flags::DEFAULT);

    // Without the payload stream the contents are missing: that must be an error.
    let other = tempfile::tempdir().unwrap();
    let decoder = Decoder::<&[u8], &[u8]>::new(&meta[..], None).unwrap();
    let err = extract_archive(decoder, other.path(), &[], Flags::DEFAULT, strict()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("\"/dir/file\"") && msg.contains("payload input"),
        "{msg}"
    );
}

#[test]
fn feature_flags_mask_metadata_and_special_files() {
    let (tmp, support) = setup();
    let (root, entries) = sample_tree(support);
    let archive = build_unified(&root, &entries);
    let flags = Flags::DEFAULT
        & !(Flags::WITH_XATTRS
            | Flags::WITH_ACL
            | Flags::WITH_FCAPS
            | Flags::WITH_FIFOS
            | Flags::WITH_SOCKETS
            | Flags::WITH_DEVICE_NODES);
    extract(&archive, tmp.path(), &[], flags, strict()).unwrap();
    for skipped in ["fifo", "sock", "null"] {
        assert!(!tmp.path().join(skipped).exists(), "{skipped} was created");
    }
    let kept: Vec<Expected> = entries
        .into_iter()
        .filter(|e| !matches!(e.kind, Kind::Fifo | Kind::Socket | Kind::Device(_)))
        .collect();
    check_tree(tmp.path(), &root, &kept, support, flags);

    // Without WITH_PERMISSIONS files keep the creation mode.
    let other = tempfile::tempdir().unwrap();
    extract(
        &archive,
        other.path(),
        &[],
        Flags::DEFAULT & !Flags::WITH_PERMISSIONS,
        strict(),
    )
    .unwrap();
    let st = std::fs::metadata(other.path().join("dir/sub/deep")).unwrap();
    assert_eq!(st.mode() & 0o7777, 0o600);
    let st = std::fs::metadata(other.path().join("empty")).unwrap();
    assert_eq!(
        st.mode() & 0o7777,
        0o600,
        "0o644 from the archive must not be applied"
    );

    // Without WITH_OWNER files belong to the extracting user.
    let other = tempfile::tempdir().unwrap();
    extract(
        &archive,
        other.path(),
        &[],
        Flags::DEFAULT & !Flags::WITH_OWNER,
        strict(),
    )
    .unwrap();
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let st = std::fs::metadata(other.path().join("dir/file")).unwrap();
    assert_eq!((st.uid(), st.gid()), (uid, gid));
}

#[test]
fn existing_directories_and_overwrite() {
    let (tmp, support) = setup();
    let (root, entries) = sample_tree(support);
    let archive = build_unified(&root, &entries);
    let dest = tmp.path();
    extract(&archive, dest, &[], Flags::DEFAULT, strict()).unwrap();

    // Second run: the first existing directory is an error naming its path.
    let err = extract(&archive, dest, &[], Flags::DEFAULT, strict()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("\"/dir\"") && msg.contains("already exists"),
        "{msg}"
    );

    // Existing dirs allowed, but the existing file is not overwritten.
    let options = PxarExtractOptions {
        allow_existing_dirs: true,
        ..strict()
    };
    let err = extract(&archive, dest, &[], Flags::DEFAULT, options).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("\"/dir/file\"") && msg.contains("File exists"),
        "{msg}"
    );

    // Overwriting replaces modified contents and links.
    std::fs::write(dest.join("dir/file"), b"changed").unwrap();
    std::fs::remove_file(dest.join("link")).unwrap();
    std::fs::write(dest.join("link"), b"not a link").unwrap();
    let options = PxarExtractOptions {
        allow_existing_dirs: true,
        overwrite: OverwriteFlags::all(),
        ..strict()
    };
    let result = extract(&archive, dest, &[], Flags::DEFAULT, options);
    // Fifos, sockets and devices are never overwritten.
    let msg = format!("{:#}", result.unwrap_err());
    assert!(msg.contains("\"/fifo\""), "{msg}");

    // Non-strict: every error is reported, everything else is extracted.
    for special in ["fifo", "sock", "null"] {
        let _ = std::fs::remove_file(dest.join(special));
    }
    std::fs::write(dest.join("dir/file"), b"changed again").unwrap();
    std::fs::write(dest.join("fifo"), b"in the way").unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&errors);
    let options = PxarExtractOptions {
        allow_existing_dirs: true,
        overwrite: OverwriteFlags::all(),
        strict: false,
        on_error: Some(Box::new(move |err| {
            sink.lock().unwrap().push(format!("{err:#}"));
            Ok(())
        })),
        verbose: false,
    };
    extract(&archive, dest, &[], Flags::DEFAULT, options).unwrap();
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("\"/fifo\""), "{errors:?}");
    let kept: Vec<Expected> = entries.into_iter().filter(|e| e.path != "fifo").collect();
    check_tree(dest, &root, &kept, support, Flags::DEFAULT);
}

#[test]
fn error_handler_can_abort() {
    let (tmp, support) = setup();
    let (root, entries) = sample_tree(support);
    let archive = build_unified(&root, &entries);
    extract(&archive, tmp.path(), &[], Flags::DEFAULT, strict()).unwrap();
    let options = PxarExtractOptions {
        allow_existing_dirs: true,
        on_error: Some(Box::new(|err| Err(err.context("stop")))),
        ..Default::default()
    };
    let err = extract(&archive, tmp.path(), &[], Flags::DEFAULT, options).unwrap_err();
    assert!(
        format!("{err:#}").starts_with("stop: error extracting \"/dir/file\""),
        "{err:#}"
    );
}

fn include(pattern: &str) -> MatchEntry {
    MatchEntry::parse_pattern(
        pattern,
        pathpatterns::PatternFlag::PATH_NAME,
        MatchType::Include,
    )
    .unwrap()
}

fn exclude(pattern: &str) -> MatchEntry {
    MatchEntry::parse_pattern(
        pattern,
        pathpatterns::PatternFlag::PATH_NAME,
        MatchType::Exclude,
    )
    .unwrap()
}

fn tree_listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                walk(base, &path, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn pattern_extraction_creates_only_matches_and_parents() {
    let (tmp, support) = setup();
    let (root, entries) = sample_tree(support);
    let archive = build_unified(&root, &entries);

    let dest = tmp.path().join("a");
    std::fs::create_dir(&dest).unwrap();
    extract(
        &archive,
        &dest,
        &[include("/dir/sub/deep")],
        Flags::DEFAULT,
        strict(),
    )
    .unwrap();
    assert_eq!(tree_listing(&dest), ["dir", "dir/sub", "dir/sub/deep"]);
    // Parent directories created on demand still get their metadata.
    let by_path = |p: &str| entries.iter().find(|e| e.path == p).unwrap().clone();
    check_metadata(
        &dest.join("dir/sub"),
        &by_path("dir/sub").metadata,
        support,
        Flags::DEFAULT,
    );
    check_metadata(
        &dest.join("dir"),
        &by_path("dir").metadata,
        support,
        Flags::DEFAULT,
    );

    // A matching directory brings its contents; a later exclude removes some of them.
    let dest = tmp.path().join("b");
    std::fs::create_dir(&dest).unwrap();
    let patterns = [include("/dir"), exclude("*/deep"), include("link")];
    extract(&archive, &dest, &patterns, Flags::DEFAULT, strict()).unwrap();
    assert_eq!(tree_listing(&dest), ["dir", "dir/file", "dir/sub", "link"]);

    // Directory-only pattern: matches "sub" but not files.
    let dest = tmp.path().join("c");
    std::fs::create_dir(&dest).unwrap();
    extract(
        &archive,
        &dest,
        &[include("sub/")],
        Flags::DEFAULT,
        strict(),
    )
    .unwrap();
    assert_eq!(tree_listing(&dest), ["dir", "dir/sub", "dir/sub/deep"]);

    // A hardlink whose target was not extracted is an error naming the link.
    let dest = tmp.path().join("d");
    std::fs::create_dir(&dest).unwrap();
    let err = extract(
        &archive,
        &dest,
        &[include("/hard")],
        Flags::DEFAULT,
        strict(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("\"/hard\""), "{err:#}");
}

#[test]
fn hardlink_targets_stay_inside_the_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let root = open_dir_at(None, tmp.path()).unwrap();
    for bad in ["../etc/passwd", "a/../../x", ""] {
        let err = hardlink_target(root.as_fd(), Path::new(bad)).unwrap_err();
        assert!(err.to_string().contains("hardlink target"), "{bad}: {err}");
    }
    std::fs::create_dir(tmp.path().join("real")).unwrap();
    std::os::unix::fs::symlink("/etc", tmp.path().join("sym")).unwrap();
    assert!(hardlink_target(root.as_fd(), Path::new("sym/passwd")).is_err());
    let (_, name) = hardlink_target(root.as_fd(), Path::new("/real/file")).unwrap();
    assert_eq!(name.as_bytes(), b"file");
}

fn extract_quietly(archive: &[u8], dest: &Path) -> Result<()> {
    let decoder = Decoder::new_unified(archive)?;
    let options = PxarExtractOptions {
        allow_existing_dirs: true,
        overwrite: OverwriteFlags::all(),
        on_error: Some(Box::new(|_| Ok(()))),
        ..Default::default()
    };
    // Damaged flags could set immutable/append-only chattr bits the cleanup cannot undo.
    extract_archive(
        decoder,
        dest,
        &[],
        Flags::DEFAULT & !Flags::WITH_CHATTR,
        options,
    )
}

/// Offsets worth damaging: every non-zero byte and its successor, and a sample of the rest
/// (long zero runs are file contents).
fn interesting_offsets(archive: &[u8]) -> Vec<usize> {
    (0..archive.len())
        .filter(|&p| p % 61 == 0 || archive[p] != 0 || archive[p.saturating_sub(1)] != 0)
        .collect()
}

#[test]
fn truncated_archives_fail_with_an_offset() {
    let (tmp, support) = setup();
    let (root, entries) = sample_tree(support);
    let archive = build_unified(&root, &entries);
    for len in interesting_offsets(&archive) {
        let dest = tmp.path().join(format!("t{len}"));
        std::fs::create_dir(&dest).unwrap();
        let Err(err) = extract_quietly(&archive[..len], &dest) else {
            panic!("truncated to {len} bytes but extraction succeeded");
        };
        assert!(format!("{err:#}").contains("offset"), "{len}: {err:#}");
        std::fs::remove_dir_all(&dest).unwrap();
    }
}

#[test]
fn corrupt_archives_never_panic() {
    let (tmp, support) = setup();
    let (root, entries) = sample_tree(support);
    let archive = build_unified(&root, &entries);
    let mut failures = 0;
    let offsets = interesting_offsets(&archive);
    for &pos in &offsets {
        let mut damaged = archive.clone();
        damaged[pos] ^= 0x5a;
        let dest = tmp.path().join(format!("c{pos}"));
        std::fs::create_dir(&dest).unwrap();
        if extract_quietly(&damaged, &dest).is_err() {
            failures += 1;
        }
        // Nothing may escape the destination (e.g. through a damaged hardlink target).
        std::fs::remove_dir_all(&dest).unwrap();
    }
    assert!(
        failures > offsets.len() / 4,
        "only {failures} damaged archives were rejected"
    );
    assert_eq!(tree_listing(tmp.path()), Vec::<String>::new());
}

fn inode_flags(path: &Path) -> io::Result<libc::c_int> {
    let file = File::open(path)?;
    let mut value: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), 0x8008_6601, &mut value) })?;
    Ok(value)
}

fn project_id(path: &Path) -> io::Result<u32> {
    let file = File::open(path)?;
    let mut attr = [0u32; 7];
    // SAFETY: FS_IOC_FSGETXATTR fills a 28-byte struct fsxattr; projid is the 4th word.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), 0x801c_581f, attr.as_mut_ptr()) })?;
    Ok(attr[3])
}

#[test]
fn chattr_flags_and_quota_project_id() {
    const FS_SYNC_FL: libc::c_int = 0x8;
    const FS_NODUMP_FL: libc::c_int = 0x40;
    const FS_NOATIME_FL: libc::c_int = 0x80;
    const FS_DIRSYNC_FL: libc::c_int = 0x0001_0000;
    let tmp = tempfile::tempdir().unwrap();
    if let Err(err) = inode_flags(tmp.path()) {
        eprintln!("skipping chattr test: inode flags not supported here ({err})");
        return;
    }
    let mut dir = meta(mode::IFDIR | 0o755, 0, 0, 10, 0);
    dir.stat.flags = Flags::WITH_FLAG_DIRSYNC.bits();
    let mut file = meta(mode::IFREG | 0o644, 0, 0, 20, 0);
    file.stat.flags =
        (Flags::WITH_FLAG_NOATIME | Flags::WITH_FLAG_SYNC | Flags::WITH_FLAG_NODUMP).bits();
    file.quota_project_id = Some(pxar::format::QuotaProjectId { projid: 42 });
    let entries = [
        Expected {
            path: "d",
            metadata: dir,
            kind: Kind::Dir,
        },
        Expected {
            path: "d/f",
            metadata: file,
            kind: Kind::File(b"data".to_vec()),
        },
    ];
    let archive = build_unified(&meta(mode::IFDIR | 0o755, 0, 0, 0, 0), &entries);

    let cases = [
        ("default", Flags::DEFAULT, FS_NOATIME_FL | FS_SYNC_FL),
        (
            "nodump",
            Flags::DEFAULT | Flags::WITH_FLAG_NODUMP,
            FS_NOATIME_FL | FS_SYNC_FL | FS_NODUMP_FL,
        ),
        ("none", Flags::DEFAULT & !Flags::WITH_CHATTR, 0),
    ];
    for (label, feature_flags, want) in cases {
        let dest = tmp.path().join(label);
        std::fs::create_dir(&dest).unwrap();
        extract(&archive, &dest, &[], feature_flags, strict()).unwrap();
        let mask = FS_NOATIME_FL | FS_SYNC_FL | FS_NODUMP_FL;
        let got = inode_flags(&dest.join("d/f")).unwrap();
        assert_eq!(got & mask, want, "{label}: file flags {got:#x}");
        let dir_flags = inode_flags(&dest.join("d")).unwrap();
        let dir_want = if want == 0 { 0 } else { FS_DIRSYNC_FL };
        assert_eq!(
            dir_flags & FS_DIRSYNC_FL,
            dir_want,
            "{label}: dir flags {dir_flags:#x}"
        );
        // The mtime survives the late flag changes.
        let st = std::fs::metadata(dest.join("d/f")).unwrap();
        assert_eq!(st.mtime(), 20, "{label}");
    }

    // The project id is only restorable where the file system has project quotas enabled.
    let probe = tmp.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    let probe_fd = File::open(&probe).unwrap();
    match apply_quota_probe(&probe_fd) {
        Ok(()) => assert_eq!(project_id(&tmp.path().join("default/d/f")).unwrap(), 42),
        Err(err) => eprintln!("skipping quota project id check: not supported here ({err})"),
    }
}

fn apply_quota_probe(file: &File) -> io::Result<()> {
    let mut attr = [0u32; 7];
    // SAFETY: FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR on a 28-byte struct fsxattr.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), 0x801c_581f, attr.as_mut_ptr()) })?;
    attr[3] = 7;
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), 0x401c_5820, attr.as_ptr()) })?;
    Ok(())
}

#[test]
fn overwrite_replaces_a_symlink_by_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let entries = [Expected {
        path: "f",
        metadata: meta(mode::IFREG | 0o644, 0, 0, 5, 0),
        kind: Kind::File(b"new".to_vec()),
    }];
    let archive = build_unified(&meta(mode::IFDIR | 0o755, 0, 0, 0, 0), &entries);
    let outside = tmp.path().join("outside");
    std::fs::write(&outside, b"keep").unwrap();
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("f")).unwrap();
    assert!(extract(&archive, &dest, &[], Flags::DEFAULT, strict()).is_err());
    let options = PxarExtractOptions {
        overwrite: OverwriteFlags {
            files: true,
            ..Default::default()
        },
        ..strict()
    };
    extract(&archive, &dest, &[], Flags::DEFAULT, options).unwrap();
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
    assert!(std::fs::symlink_metadata(dest.join("f")).unwrap().is_file());
    assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"new");
}

/// Allocated 512-byte sectors of `path`.
fn allocated_blocks(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks()
}

#[test]
fn sparse_copy_leaves_holes_and_sets_the_size() {
    let tmp = tempfile::tempdir().unwrap();
    const B: usize = HOLE_BLOCK;
    let data_block = vec![0xabu8; B];
    let zero_block = vec![0u8; B];
    // (layout of blocks, buffer size): data/holes at buffer boundaries, a trailing hole, a
    // short last block, and an all-zero file.
    let cases: Vec<(Vec<&[u8]>, usize)> = vec![
        (
            vec![&data_block, &zero_block, &zero_block, &data_block],
            2 * B,
        ),
        (vec![&data_block, &data_block, &zero_block], 3 * B),
        (vec![&zero_block, &data_block[..100]], B),
        (vec![&zero_block, &zero_block], B),
        (vec![&data_block[..1]], 1),
        (vec![], 4 * B),
    ];
    for (i, (blocks, buf_len)) in cases.into_iter().enumerate() {
        let content: Vec<u8> = blocks.concat();
        let path = tmp.path().join(format!("f{i}"));
        let file = File::create(&path).unwrap();
        let mut buf = vec![0u8; buf_len];
        let copied = sparse_copy(&mut &content[..], &file, content.len() as u64, &mut buf);
        assert!(copied.is_ok(), "case {i}");
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), content, "case {i}");
        let data_blocks = blocks.iter().filter(|b| b.iter().any(|x| *x != 0)).count();
        assert!(
            allocated_blocks(&path) <= (data_blocks * B / 512) as u64,
            "case {i}: zero blocks were written ({} sectors)",
            allocated_blocks(&path)
        );
    }

    // Too little input is fatal: the archive cannot be read further.
    let file = File::create(tmp.path().join("short")).unwrap();
    let mut buf = vec![0u8; B];
    match sparse_copy(&mut &b"abc"[..], &file, 10, &mut buf) {
        Err(EntryError::Fatal(err)) => assert!(err.to_string().contains("got 3 of 10")),
        _ => panic!("short input accepted"),
    }
}
