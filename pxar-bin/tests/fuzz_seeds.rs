//! The committed seeds of the `pxar_decode` fuzz target: the worked examples of the format
//! specification (v1, v2 split, v2 with prelude) and one archive with every item type, all
//! produced by the encoder here. `PXAR_WRITE_FUZZ_SEEDS=1` rewrites the seed files.

use std::path::PathBuf;

use pxar::format::{
    mode, AclDefault, AclGroup, AclGroupObject, AclUser, Device, FCaps, QuotaProjectId, Stat,
    StatxTimestamp, XAttr,
};
use pxar::{Decoder, Encoder, Metadata};

/// The v1 archive of the specification's worked example (329 bytes).
const SPEC_V1: &str = "
ef ac 88 e5 74 64 95 d5 38 00 00 00 00 00 00 00 ed 41 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 f1 53 65 00 00 00 00 00 00 00 00 00 00 00 00 b3 17 39 06 21 11 70 16
12 00 00 00 00 00 00 00 61 00 ef ac 88 e5 74 64 95 d5 38 00 00 00 00 00 00 00 a4 81 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 f1 53 65 00 00 00 00 00 65 cd 1d 00 00
00 00 25 1a 7c 0b 1b 7a 14 28 13 00 00 00 00 00 00 00 68 69 0a b3 17 39 06 21 11 70 16 12 00 00
00 00 00 00 00 73 00 ef ac 88 e5 74 64 95 d5 38 00 00 00 00 00 00 00 ff a1 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 f1 53 65 00 00 00 00 00 00 00 00 00 00 00 00 5f
dc f5 db e7 71 f9 27 12 00 00 00 00 00 00 00 61 00 1d 73 d5 42 a6 4f ec 2f 58 00 00 00 00 00 00
00 61 23 29 9d 8c 54 ae cc 5c 00 00 00 00 00 00 00 5c 00 00 00 00 00 00 00 cf 7b 2c 7c 06 e9 26
0c b9 00 00 00 00 00 00 00 5d 00 00 00 00 00 00 00 55 15 3e 75 5b ed 5e ef f1 00 00 00 00 00 00
00 58 00 00 00 00 00 00 00";

fn unhex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn meta(file_mode: u64, secs: i64, nanos: u32) -> Metadata {
    Metadata::from_stat(Stat {
        mode: file_mode,
        flags: 0,
        uid: 0,
        gid: 0,
        mtime: StatxTimestamp::new(secs, nanos),
    })
}

/// The example tree: `/a` (`hi\n`) and the symlink `/s -> a`.
fn spec_example(prelude: Option<&[u8]>, split: bool) -> (Vec<u8>, Option<Vec<u8>>) {
    let root = meta(mode::IFDIR | 0o755, 1_700_000_000, 0);
    let mut encoder = Encoder::new(Vec::new(), &root, split.then(Vec::new), prelude).unwrap();
    encoder
        .add_file(
            &meta(mode::IFREG | 0o644, 1_700_000_000, 500_000_000),
            b"a",
            3,
            &mut &b"hi\n"[..],
        )
        .unwrap();
    encoder
        .add_symlink(&meta(mode::IFLNK | 0o777, 1_700_000_000, 0), b"s", b"a")
        .unwrap();
    encoder.finish().unwrap()
}

/// A unified archive using every item type the format has.
fn every_item_type() -> Vec<u8> {
    let mut root = meta(mode::IFDIR | 0o755, 1, 0);
    root.acl.default = Some(AclDefault {
        user_obj_permissions: 7,
        group_obj_permissions: 5,
        other_permissions: 5,
        mask_permissions: pxar::format::ACL_NO_MASK,
    });
    root.acl.default_users = vec![AclUser {
        uid: 1000,
        permissions: 5,
    }];
    root.acl.default_groups = vec![AclGroup {
        gid: 2000,
        permissions: 7,
    }];
    let mut encoder = Encoder::new_unified(Vec::new(), &root).unwrap();

    let mut file = meta(mode::IFREG | 0o640, 2, 3);
    file.stat.uid = 1000;
    file.stat.gid = 1000;
    file.stat.flags = 0x20000;
    file.xattrs = vec![XAttr::new(b"user.a".to_vec(), b"1".to_vec())];
    file.acl.users = vec![AclUser {
        uid: 99,
        permissions: 4,
    }];
    file.acl.groups = vec![AclGroup {
        gid: 98,
        permissions: 6,
    }];
    file.acl.group_obj = Some(AclGroupObject { permissions: 4 });
    file.fcaps = Some(FCaps {
        data: vec![
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    });
    file.quota_project_id = Some(QuotaProjectId { projid: 7 });
    encoder
        .add_device(
            &meta(mode::IFBLK | 0o600, 6, 0),
            b"block-dev",
            Device { major: 8, minor: 1 },
        )
        .unwrap();
    encoder
        .add_device(
            &meta(mode::IFCHR | 0o666, 6, 0),
            b"char-dev",
            Device { major: 1, minor: 3 },
        )
        .unwrap();
    encoder
        .create_directory(b"dir", &meta(mode::IFDIR | 0o700, 4, 0))
        .unwrap();
    encoder
        .add_file(&meta(mode::IFREG | 0o600, 5, 0), b"empty", 0, &mut &b""[..])
        .unwrap();
    let link = encoder
        .add_file(&file, b"file", 10, &mut &b"0123456789"[..])
        .unwrap();
    encoder.finish_directory().unwrap();
    encoder
        .add_fifo(&meta(mode::IFIFO | 0o644, 7, 0), b"fifo")
        .unwrap();
    encoder
        .add_hardlink(b"hardlink", b"dir/file", link)
        .unwrap();
    encoder
        .add_socket(&meta(mode::IFSOCK | 0o755, 8, 0), b"socket")
        .unwrap();
    encoder
        .add_symlink(&meta(mode::IFLNK | 0o777, 9, 0), b"symlink", b"dir/file")
        .unwrap();
    encoder.finish().unwrap().0
}

/// A split pair as one fuzz input: the first two bytes (LE) select where the payload starts.
fn split_input(meta: &[u8], payload: &[u8]) -> Vec<u8> {
    let split = u16::try_from(meta.len()).unwrap();
    let mut input = split.to_le_bytes().to_vec();
    input.extend_from_slice(meta);
    input.extend_from_slice(payload);
    // The fuzz entry point must recover the same split from the prefix.
    assert_eq!(split as usize % (input.len() - 1), meta.len());
    input
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let (v1, _) = spec_example(None, false);
    let (v2_meta, v2_payload) = spec_example(None, true);
    let v2_payload = v2_payload.unwrap();
    let prelude = br#"{"exclude-patterns":"*.tmp\n"}"#;
    let (p_meta, p_payload) = spec_example(Some(prelude), true);
    let p_meta_len = p_meta.len();
    assert_eq!(prelude.len(), 30);
    // §16.3: FORMAT_VERSION (24) + PRELUDE (16 + 30) put the root ENTRY at offset 70.
    assert_eq!(&p_meta[70..78], &v1[0..8]);
    assert_eq!(p_meta_len, 366 + 46);
    assert_eq!((v2_meta.len(), v2_payload.len()), (366, 51));
    vec![
        ("spec-v1.pxar", v1),
        ("spec-v2-split.bin", split_input(&v2_meta, &v2_payload)),
        (
            "spec-v2-prelude-split.bin",
            split_input(&p_meta, &p_payload.unwrap()),
        ),
        ("every-item-type.pxar", every_item_type()),
    ]
}

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/pxar_decode")
}

#[test]
fn seeds_are_the_spec_examples_and_decode_cleanly() {
    let expected_v1 = unhex(SPEC_V1);
    assert_eq!(expected_v1.len(), 329);
    let seeds = seeds();
    assert_eq!(seeds[0].1, expected_v1, "encoder output differs from §16.1");

    let write = std::env::var_os("PXAR_WRITE_FUZZ_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(seed_dir()).unwrap();
    }
    for (name, bytes) in &seeds {
        let path = seed_dir().join(name);
        if write {
            std::fs::write(&path, bytes).unwrap();
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|err| panic!("{path:?}: {err} (PXAR_WRITE_FUZZ_SEEDS=1 writes it)"));
        assert!(&committed == bytes, "{path:?} is out of date");
        assert!(
            bytes.len() <= 65536,
            "{name}: beyond the fuzz run's -max_len"
        );

        // Each seed is a valid archive in the form the fuzz target reads it.
        let (meta, payload) = if name.ends_with(".bin") {
            let split = u16::from_le_bytes([bytes[0], bytes[1]]) as usize;
            let (meta, payload) = bytes[2..].split_at(split);
            (meta, Some(payload))
        } else {
            (&bytes[..], None)
        };
        let mut decoder = Decoder::new(meta, payload).unwrap();
        let mut entries = 0;
        while let Some(_entry) = decoder.next_entry().unwrap() {
            entries += 1;
        }
        assert!(entries >= 3, "{name}: {entries} entries");
        pxar::fuzz::fuzz_decode(bytes);
    }
}
