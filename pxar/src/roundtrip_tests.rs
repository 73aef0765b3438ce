//! Generated trees with every entry and metadata kind: encode, decode, access.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::accessor::Accessor;
use crate::encoder::{Encoder, LinkOffset};
use crate::entry::EntryKind;
use crate::format::{
    mode, AclDefault, AclGroup, AclGroupObject, AclUser, Device, FCaps, QuotaProjectId, Stat,
    StatxTimestamp, XAttr, ACL_NO_MASK,
};
use crate::metadata::{Acl, Metadata};
use crate::tests::{decode_all, Decoded};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Debug)]
enum Node {
    Dir(Metadata, BTreeMap<Vec<u8>, Node>),
    File(Metadata, Vec<u8>),
    Symlink(Metadata, Vec<u8>),
    Device(Metadata, Device),
    Fifo(Metadata),
    Socket(Metadata),
    /// Hardlink to the file at this root-relative path.
    Hardlink(Vec<u8>),
}

fn random_metadata(rng: &mut Rng, file_type: u64) -> Metadata {
    let mut metadata = Metadata::from_stat(Stat {
        mode: file_type | (rng.below(0o7777 + 1)),
        flags: if rng.chance(20) { 0x20 | 0x80 } else { 0 },
        uid: rng.below(70000) as u32,
        gid: rng.below(70000) as u32,
        mtime: StatxTimestamp::new(
            rng.next() as i64 % 4_000_000_000,
            rng.below(1_000_000_000) as u32,
        ),
    });
    if rng.chance(40) {
        for i in 0..rng.below(3) + 1 {
            let value: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
            metadata
                .xattrs
                .push(XAttr::new(format!("user.attr{i}").into_bytes(), value));
        }
    }
    if rng.chance(40) {
        let mut acl = Acl::default();
        for _ in 0..rng.below(3) {
            acl.users.push(AclUser {
                uid: rng.below(5000),
                permissions: rng.below(8),
            });
        }
        for _ in 0..rng.below(3) {
            acl.groups.push(AclGroup {
                gid: rng.below(5000),
                permissions: rng.below(8),
            });
        }
        acl.users.sort();
        acl.groups.sort();
        if rng.chance(50) {
            acl.group_obj = Some(AclGroupObject {
                permissions: rng.below(8),
            });
        }
        if file_type == mode::IFDIR && rng.chance(60) {
            acl.default = Some(AclDefault {
                user_obj_permissions: 7,
                group_obj_permissions: rng.below(8),
                other_permissions: rng.below(8),
                mask_permissions: if rng.chance(50) { ACL_NO_MASK } else { 7 },
            });
            acl.default_users.push(AclUser {
                uid: rng.below(5000),
                permissions: 5,
            });
            acl.default_groups.push(AclGroup {
                gid: rng.below(5000),
                permissions: 7,
            });
        }
        metadata.acl = acl;
    }
    if rng.chance(15) {
        metadata.fcaps = Some(FCaps {
            data: (0..20).map(|_| rng.next() as u8).collect(),
        });
    }
    if rng.chance(15) {
        metadata.quota_project_id = Some(QuotaProjectId {
            projid: rng.below(1000) + 1,
        });
    }
    metadata
}

const NAME_POOL: &[&[u8]] = &[
    b"a",
    b"b",
    b"-dash",
    b".hidden",
    b"0digit",
    b"UPPER.txt",
    b"_under",
    b"a.b",
    b"aa",
    b"~tilde",
    b"with space",
    b"\x80\xffraw",
    b"z",
    b"file.txt",
    b"dir",
    b"x.tmp",
];

/// Random tree; regular files are recorded in `files` (archive order) for hardlinks.
fn random_dir(rng: &mut Rng, depth: u32, path: &[u8], files: &mut Vec<Vec<u8>>) -> Node {
    let mut children = BTreeMap::new();
    let count = if depth == 0 { 12 } else { rng.below(7) };
    let mut names: Vec<Vec<u8>> = Vec::new();
    for i in 0..count {
        let mut name = NAME_POOL[rng.below(NAME_POOL.len() as u64) as usize].to_vec();
        if depth == 0 || rng.chance(50) {
            name.extend_from_slice(format!("{i}").as_bytes());
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.sort();
    for (i, name) in names.into_iter().enumerate() {
        let child_path = if path.is_empty() {
            name.clone()
        } else {
            [path, b"/", &name].concat()
        };
        // At the root, guarantee one of each kind.
        let kind = if depth == 0 {
            i as u64 % 7
        } else {
            rng.below(7)
        };
        let node = match kind {
            0 if depth < 3 => random_dir(rng, depth + 1, &child_path, files),
            0 | 1 => {
                let size = match rng.below(4) {
                    0 => 0,
                    1 => rng.below(10),
                    2 => rng.below(5000),
                    _ => 70_000 + rng.below(10_000),
                };
                let data = (0..size).map(|_| rng.next() as u8).collect();
                files.push(child_path.clone());
                Node::File(random_metadata(rng, mode::IFREG), data)
            }
            2 => {
                let target: Vec<u8> = if rng.chance(50) {
                    b"../some/where".to_vec()
                } else {
                    b"/abs/target with space".to_vec()
                };
                Node::Symlink(random_metadata(rng, mode::IFLNK), target)
            }
            3 => {
                let file_type = if rng.chance(50) {
                    mode::IFCHR
                } else {
                    mode::IFBLK
                };
                Node::Device(
                    random_metadata(rng, file_type),
                    Device {
                        major: rng.below(5000),
                        minor: rng.below(1 << 20),
                    },
                )
            }
            4 => Node::Fifo(random_metadata(rng, mode::IFIFO)),
            5 => Node::Socket(random_metadata(rng, mode::IFSOCK)),
            _ if !files.is_empty() => {
                let target = files[rng.below(files.len() as u64) as usize].clone();
                Node::Hardlink(target)
            }
            _ => Node::Fifo(random_metadata(rng, mode::IFIFO)),
        };
        children.insert(name, node);
    }
    Node::Dir(random_metadata(rng, mode::IFDIR), children)
}

fn random_tree(seed: u64) -> Node {
    let mut rng = Rng(seed);
    random_dir(&mut rng, 0, b"", &mut Vec::new())
}

fn encode_children<W: crate::SeqWrite, P: crate::SeqWrite>(
    encoder: &mut Encoder<W, P>,
    children: &BTreeMap<Vec<u8>, Node>,
    path: &[u8],
    links: &mut BTreeMap<Vec<u8>, LinkOffset>,
) {
    for (name, node) in children {
        let child_path = if path.is_empty() {
            name.clone()
        } else {
            [path, b"/", name].concat()
        };
        match node {
            Node::Dir(metadata, grandchildren) => {
                encoder.create_directory(name, metadata).unwrap();
                encode_children(encoder, grandchildren, &child_path, links);
                encoder.finish_directory().unwrap();
            }
            Node::File(metadata, data) => {
                let offset = if data.len() > 50_000 {
                    // Exercise the streaming writer with odd chunk sizes.
                    let mut writer = encoder
                        .create_file(metadata, name, data.len() as u64)
                        .unwrap();
                    for chunk in data.chunks(7777) {
                        writer.write_content(chunk).unwrap();
                    }
                    writer.finish().unwrap()
                } else {
                    encoder
                        .add_file(metadata, name, data.len() as u64, &mut &data[..])
                        .unwrap()
                };
                links.insert(child_path, offset);
            }
            Node::Symlink(metadata, target) => encoder.add_symlink(metadata, name, target).unwrap(),
            Node::Device(metadata, device) => encoder.add_device(metadata, name, *device).unwrap(),
            Node::Fifo(metadata) => encoder.add_fifo(metadata, name).unwrap(),
            Node::Socket(metadata) => encoder.add_socket(metadata, name).unwrap(),
            Node::Hardlink(target) => {
                let offset = links[target];
                encoder.add_hardlink(name, target, offset).unwrap();
            }
        }
    }
}

fn encode_tree(tree: &Node, split: bool) -> (Vec<u8>, Option<Vec<u8>>) {
    let Node::Dir(root, children) = tree else {
        panic!("tree root must be a directory");
    };
    let mut encoder = Encoder::new(Vec::new(), root, split.then(Vec::new), None).unwrap();
    encode_children(&mut encoder, children, b"", &mut BTreeMap::new());
    encoder.finish().unwrap()
}

fn to_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// Expected `(path, kind without offsets, metadata, contents)` in archive order.
fn expected_entries(
    name: &Path,
    node: &Node,
    out: &mut Vec<(PathBuf, String, Metadata, Option<Vec<u8>>)>,
) {
    match node {
        Node::Dir(metadata, children) => {
            out.push((name.to_path_buf(), "dir".into(), metadata.clone(), None));
            for (child, node) in children {
                expected_entries(&name.join(OsStr::from_bytes(child)), node, out);
            }
            out.push((
                name.to_path_buf(),
                "goodbye".into(),
                Metadata::default(),
                None,
            ));
        }
        Node::File(metadata, data) => out.push((
            name.to_path_buf(),
            format!("file {}", data.len()),
            metadata.clone(),
            Some(data.clone()),
        )),
        Node::Symlink(metadata, target) => out.push((
            name.to_path_buf(),
            format!("symlink {:?}", to_path(target)),
            metadata.clone(),
            None,
        )),
        Node::Device(metadata, device) => out.push((
            name.to_path_buf(),
            format!("device {device:?}"),
            metadata.clone(),
            None,
        )),
        Node::Fifo(metadata) => {
            out.push((name.to_path_buf(), "fifo".into(), metadata.clone(), None))
        }
        Node::Socket(metadata) => {
            out.push((name.to_path_buf(), "socket".into(), metadata.clone(), None))
        }
        Node::Hardlink(target) => out.push((
            name.to_path_buf(),
            format!("hardlink {:?}", to_path(target)),
            Metadata::default(),
            None,
        )),
    }
}

fn kind_summary(kind: &EntryKind) -> String {
    match kind {
        EntryKind::File { size, .. } => format!("file {size}"),
        EntryKind::Directory => "dir".into(),
        EntryKind::Symlink(target) => format!("symlink {target:?}"),
        EntryKind::Hardlink { target, .. } => format!("hardlink {target:?}"),
        EntryKind::Device(device) => format!("device {device:?}"),
        EntryKind::Fifo => "fifo".into(),
        EntryKind::Socket => "socket".into(),
        EntryKind::GoodbyeTable => "goodbye".into(),
    }
}

fn summarize(decoded: Decoded) -> Vec<(PathBuf, String, Metadata, Option<Vec<u8>>)> {
    decoded
        .into_iter()
        .map(|(path, kind, metadata, contents)| (path, kind_summary(&kind), metadata, contents))
        .collect()
}

#[test]
fn generated_trees_round_trip_v1_and_v2() {
    let mut kinds_seen = std::collections::BTreeSet::new();
    for seed in 1..=12u64 {
        let tree = random_tree(seed.wrapping_mul(0x2545F4914F6CDD1D));
        let mut expected = Vec::new();
        expected_entries(Path::new("/"), &tree, &mut expected);

        let (v1, _) = encode_tree(&tree, false);
        let (mpxar, ppxar) = encode_tree(&tree, true);
        let ppxar = ppxar.unwrap();

        for (_, kind, ..) in &expected {
            kinds_seen.insert(kind.split(' ').next().unwrap_or_default().to_string());
        }
        let decoded_v1 = summarize(decode_all(&v1, None).unwrap());
        let decoded_v2 = summarize(decode_all(&mpxar, Some(&ppxar)).unwrap());
        assert_eq!(decoded_v1, expected, "seed {seed} v1");
        assert_eq!(decoded_v2, expected, "seed {seed} v2");

        // Deterministic output.
        assert_eq!(encode_tree(&tree, false).0, v1);
        let again = encode_tree(&tree, true);
        assert_eq!((again.0, again.1.unwrap()), (mpxar.clone(), ppxar.clone()));
    }
    let all = [
        "device", "dir", "fifo", "file", "goodbye", "hardlink", "socket", "symlink",
    ];
    assert_eq!(kinds_seen.into_iter().collect::<Vec<_>>(), all);
}

#[test]
fn hardlinks_resolve_to_their_targets() {
    for seed in 1..=6u64 {
        let tree = random_tree(seed * 77);
        for split in [false, true] {
            let (meta, payload) = encode_tree(&tree, split);
            let mut decoder = crate::Decoder::new(&meta[..], payload.as_deref()).unwrap();
            let mut offsets = BTreeMap::new();
            while let Some(entry) = decoder.next_entry().unwrap() {
                match &entry.kind {
                    EntryKind::File { .. } => {
                        offsets.insert(entry.path.clone(), entry.filename_offset.unwrap());
                    }
                    EntryKind::Hardlink { target, .. } => {
                        let target_path = Path::new("/").join(target);
                        assert_eq!(
                            entry.hardlink_target_offset(),
                            offsets.get(&target_path).copied(),
                            "{:?}",
                            entry.path
                        );
                    }
                    _ => {}
                }
            }
        }
    }
}

fn check_accessor(meta: &[u8], payload: Option<&[u8]>, tree: &Node) {
    let accessor = Accessor::new(
        meta,
        meta.len() as u64,
        payload.map(|p| (p, p.len() as u64)),
    )
    .unwrap();
    let mut expected = Vec::new();
    expected_entries(Path::new("/"), tree, &mut expected);
    let mut checked = 0;
    for (path, kind, metadata, contents) in &expected {
        if kind == "goodbye" {
            continue;
        }
        let entry = accessor
            .lookup(path)
            .unwrap()
            .unwrap_or_else(|| panic!("{path:?} not found"));
        assert_eq!(entry.path(), path.as_path());
        assert_eq!(&kind_summary(entry.kind()), kind, "{path:?}");
        assert_eq!(entry.metadata(), metadata, "{path:?}");
        if let Some(contents) = contents {
            let reader = accessor.open_contents(&entry).unwrap();
            assert_eq!(&reader.read_all().unwrap(), contents, "{path:?}");
            if contents.len() > 10 {
                let mut buf = [0u8; 7];
                assert_eq!(reader.read_at(&mut buf, 3).unwrap(), 7);
                assert_eq!(&buf, &contents[3..10]);
            }
            let mut buf = [0u8; 4];
            assert_eq!(reader.read_at(&mut buf, contents.len() as u64).unwrap(), 0);
            let mut stream = reader.reader();
            if contents.len() > 4 {
                use std::io::{Read, Seek};
                stream.seek(std::io::SeekFrom::End(-4)).unwrap();
                let mut tail = Vec::new();
                stream.read_to_end(&mut tail).unwrap();
                assert_eq!(tail, &contents[contents.len() - 4..]);
            }
        }
        if let EntryKind::Hardlink { target, .. } = entry.kind() {
            let resolved = accessor.follow_hardlink(&entry).unwrap();
            let direct = accessor
                .lookup(&Path::new("/").join(target))
                .unwrap()
                .unwrap();
            assert_eq!(resolved.entry, direct.entry);
        }
        if entry.entry.is_dir() {
            let listed: Vec<PathBuf> = accessor
                .read_dir(&entry)
                .unwrap()
                .into_iter()
                .map(|child| child.entry.path)
                .collect();
            let mut names: Vec<PathBuf> = expected
                .iter()
                .filter(|(p, k, ..)| {
                    k != "goodbye" && p.parent() == Some(path.as_path()) && p != path
                })
                .map(|(p, ..)| p.clone())
                .collect();
            names.dedup();
            assert_eq!(listed, names, "{path:?}");
        }
        checked += 1;
    }
    assert!(checked > 12);
    assert!(accessor
        .lookup(Path::new("/does/not/exist"))
        .unwrap()
        .is_none());
    assert!(accessor
        .lookup(Path::new("/nonexistent"))
        .unwrap()
        .is_none());
}

#[test]
fn accessor_finds_every_path() {
    for seed in 1..=8u64 {
        let tree = random_tree(seed.wrapping_mul(0x5851F42D4C957F2D));
        let (v1, _) = encode_tree(&tree, false);
        check_accessor(&v1, None, &tree);
        let (mpxar, ppxar) = encode_tree(&tree, true);
        check_accessor(&mpxar, ppxar.as_deref(), &tree);
    }
}

#[test]
fn accessor_reads_from_files() {
    let tree = random_tree(4242);
    let (mpxar, ppxar) = encode_tree(&tree, true);
    let dir = tempfile::tempdir().unwrap();
    let meta_path = dir.path().join("x.mpxar");
    let payload_path = dir.path().join("x.ppxar");
    std::fs::write(&meta_path, &mpxar).unwrap();
    std::fs::write(&payload_path, ppxar.as_ref().unwrap()).unwrap();
    let meta_file = std::fs::File::open(&meta_path).unwrap();
    let payload_file = std::fs::File::open(&payload_path).unwrap();
    let accessor = Accessor::new(
        meta_file,
        mpxar.len() as u64,
        Some((payload_file, ppxar.as_ref().unwrap().len() as u64)),
    )
    .unwrap();
    let root = accessor.root().unwrap();
    assert_eq!(root.child_count(), Some(12));
    let Node::Dir(_, children) = &tree else {
        unreachable!()
    };
    for (name, node) in children {
        let entry = accessor.lookup_child(&root, name).unwrap().unwrap();
        if let Node::File(_, data) = node {
            assert_eq!(
                &accessor.open_contents(&entry).unwrap().read_all().unwrap(),
                data
            );
        }
    }
}

#[test]
fn generated_archives_survive_corruption() {
    let tree = random_tree(99);
    let (v1, _) = encode_tree(&tree, false);
    let (mpxar, ppxar) = encode_tree(&tree, true);
    let ppxar = ppxar.unwrap();
    let mut rng = Rng(12345);
    for round in 0..300 {
        let mut a = v1.clone();
        let mut m = mpxar.clone();
        let mut p = ppxar.clone();
        for _ in 0..rng.below(3) + 1 {
            let at = rng.below(a.len() as u64) as usize;
            a[at] ^= 1 << rng.below(8);
            let at = rng.below(m.len() as u64) as usize;
            m[at] = rng.next() as u8;
            let at = rng.below(p.len() as u64) as usize;
            p[at] = rng.next() as u8;
        }
        let cut = rng.below(a.len() as u64) as usize;
        if round % 3 == 0 {
            a.truncate(cut);
            assert!(decode_all(&a, None).is_err());
        }
        let _ = decode_all(&a, None);
        let _ = decode_all(&m, Some(&p));
        crate::accessor::fuzz_walk(&a, None);
        crate::accessor::fuzz_walk(&m, Some(&p));
    }
}

#[test]
fn fuzz_decode_accepts_arbitrary_bytes() {
    let mut rng = Rng(777);
    for len in 0..400 {
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        crate::fuzz::fuzz_decode(&data);
    }
    let (mpxar, ppxar) = encode_tree(&random_tree(5), true);
    // A split pair laid out the way fuzz_decode expects: 2-byte split point, meta, payload.
    let mut joined = (mpxar.len() as u16).to_le_bytes().to_vec();
    joined.extend_from_slice(&mpxar);
    joined.extend_from_slice(&ppxar.unwrap());
    crate::fuzz::fuzz_decode(&joined);
    for len in (0..joined.len()).step_by(97) {
        crate::fuzz::fuzz_decode(&joined[..len]);
    }
}
