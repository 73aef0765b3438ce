//! Spec examples reproduced byte for byte, plus decoding of them.

use crate::decoder::Decoder;
use crate::encoder::Encoder;
use crate::entry::EntryKind;
use crate::format::{mode, Stat, StatxTimestamp};
use crate::metadata::Metadata;
use std::io::Read;
use std::path::PathBuf;

/// The v1 archive of §16.1, verbatim.
pub(crate) const EXAMPLE_V1_HEX: &str = "
0000: ef ac 88 e5 74 64 95 d5 38 00 00 00 00 00 00 00
0010: ed 41 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0020: 00 00 00 00 00 00 00 00 00 f1 53 65 00 00 00 00
0030: 00 00 00 00 00 00 00 00 b3 17 39 06 21 11 70 16
0040: 12 00 00 00 00 00 00 00 61 00 ef ac 88 e5 74 64
0050: 95 d5 38 00 00 00 00 00 00 00 a4 81 00 00 00 00
0060: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0070: 00 00 00 f1 53 65 00 00 00 00 00 65 cd 1d 00 00
0080: 00 00 25 1a 7c 0b 1b 7a 14 28 13 00 00 00 00 00
0090: 00 00 68 69 0a b3 17 39 06 21 11 70 16 12 00 00
00a0: 00 00 00 00 00 73 00 ef ac 88 e5 74 64 95 d5 38
00b0: 00 00 00 00 00 00 00 ff a1 00 00 00 00 00 00 00
00c0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00d0: f1 53 65 00 00 00 00 00 00 00 00 00 00 00 00 5f
00e0: dc f5 db e7 71 f9 27 12 00 00 00 00 00 00 00 61
00f0: 00 1d 73 d5 42 a6 4f ec 2f 58 00 00 00 00 00 00
0100: 00 61 23 29 9d 8c 54 ae cc 5c 00 00 00 00 00 00
0110: 00 5c 00 00 00 00 00 00 00 cf 7b 2c 7c 06 e9 26
0120: 0c b9 00 00 00 00 00 00 00 5d 00 00 00 00 00 00
0130: 00 55 15 3e 75 5b ed 5e ef f1 00 00 00 00 00 00
0140: 00 58 00 00 00 00 00 00 00
";

pub(crate) fn parse_hex_dump(dump: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in dump.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (addr, bytes) = line.split_once(':').expect("dump line has an address");
        assert_eq!(usize::from_str_radix(addr, 16).unwrap(), out.len());
        for byte in bytes.split_whitespace() {
            out.push(u8::from_str_radix(byte, 16).unwrap());
        }
    }
    out
}

pub(crate) fn meta(mode_bits: u64, secs: i64, nanos: u32) -> Metadata {
    Metadata::from_stat(Stat {
        mode: mode_bits,
        flags: 0,
        uid: 0,
        gid: 0,
        mtime: StatxTimestamp::new(secs, nanos),
    })
}

/// Encode the §16 example tree; v2 when `split`, optionally with a prelude.
pub(crate) fn encode_example(split: bool, prelude: Option<&[u8]>) -> (Vec<u8>, Option<Vec<u8>>) {
    let root = meta(mode::IFDIR | 0o755, 1_700_000_000, 0);
    let payload = split.then(Vec::new);
    let mut encoder = Encoder::new(Vec::new(), &root, payload, prelude).unwrap();
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

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().unwrap())
}

#[test]
fn example_v1_is_byte_identical() {
    let expected = parse_hex_dump(EXAMPLE_V1_HEX);
    assert_eq!(expected.len(), 329);
    let (archive, payload) = encode_example(false, None);
    assert!(payload.is_none());
    assert_eq!(archive, expected);
}

#[test]
fn example_v1_goodbye_items() {
    let archive = parse_hex_dump(EXAMPLE_V1_HEX);
    let table = &archive[241 + 16..];
    assert_eq!(
        (u64_at(table, 0), u64_at(table, 8), u64_at(table, 16)),
        (0xccae548c9d292361, 92, 92)
    );
    assert_eq!(
        (u64_at(table, 24), u64_at(table, 32), u64_at(table, 40)),
        (0x0c26e9067c2c7bcf, 185, 93)
    );
    assert_eq!(
        (u64_at(table, 48), u64_at(table, 56), u64_at(table, 64)),
        (0xef5eed5b753e1555, 241, 88)
    );
}

#[test]
fn example_v2_layout() {
    let (meta_archive, payload) = encode_example(true, None);
    let payload = payload.unwrap();
    assert_eq!(meta_archive.len(), 366);
    assert_eq!(payload.len(), 51);
    // FORMAT_VERSION(2), then the v1 items shifted by 24 with PAYLOAD_REF instead of PAYLOAD.
    assert_eq!(u64_at(&meta_archive, 0), crate::format::PXAR_FORMAT_VERSION);
    assert_eq!(u64_at(&meta_archive, 8), 24);
    assert_eq!(u64_at(&meta_archive, 16), 2);
    let v1 = parse_hex_dump(EXAMPLE_V1_HEX);
    assert_eq!(&meta_archive[24..24 + 130], &v1[..130]);
    assert_eq!(u64_at(&meta_archive, 154), crate::format::PXAR_PAYLOAD_REF);
    assert_eq!(u64_at(&meta_archive, 162), 32);
    assert_eq!(
        (u64_at(&meta_archive, 170), u64_at(&meta_archive, 178)),
        (16, 3)
    );
    assert_eq!(&meta_archive[186..278], &v1[149..241]);
    let table = &meta_archive[278 + 16..];
    assert_eq!(u64_at(&meta_archive, 278), crate::format::PXAR_GOODBYE);
    assert_eq!(u64_at(&meta_archive, 286), 88);
    assert_eq!(
        (u64_at(table, 0), u64_at(table, 8), u64_at(table, 16)),
        (0xccae548c9d292361, 92, 92)
    );
    assert_eq!(
        (u64_at(table, 24), u64_at(table, 32), u64_at(table, 40)),
        (0x0c26e9067c2c7bcf, 198, 109)
    );
    assert_eq!(
        (u64_at(table, 48), u64_at(table, 56), u64_at(table, 64)),
        (0xef5eed5b753e1555, 278, 88)
    );
    // .ppxar: start marker, PAYLOAD "hi\n", tail marker.
    assert_eq!(
        u64_at(&payload, 0),
        crate::format::PXAR_PAYLOAD_START_MARKER
    );
    assert_eq!(u64_at(&payload, 8), 16);
    assert_eq!(u64_at(&payload, 16), crate::format::PXAR_PAYLOAD);
    assert_eq!(u64_at(&payload, 24), 19);
    assert_eq!(&payload[32..35], b"hi\n");
    assert_eq!(
        u64_at(&payload, 35),
        crate::format::PXAR_PAYLOAD_TAIL_MARKER
    );
    assert_eq!(u64_at(&payload, 43), 16);
}

#[test]
fn example_v2_with_prelude_layout() {
    let prelude = br#"{"exclude-patterns":"*.tmp\n"}"#;
    assert_eq!(prelude.len(), 30);
    let (archive, _) = encode_example(true, Some(prelude));
    assert_eq!(u64_at(&archive, 24), crate::format::PXAR_PRELUDE);
    assert_eq!(u64_at(&archive, 32), 46);
    assert_eq!(&archive[40..70], prelude);
    assert_eq!(u64_at(&archive, 70), crate::format::PXAR_ENTRY);
    // Root tail offset still measured from archive offset 0.
    let goodbye_start = archive.len() - 88;
    assert_eq!(u64_at(&archive, archive.len() - 16), goodbye_start as u64);
    let decoder = Decoder::new_unified(&archive[..]).unwrap();
    assert_eq!(decoder.prelude(), Some(&prelude[..]));
}

#[test]
fn prelude_refused_in_v1() {
    let root = meta(mode::IFDIR | 0o755, 0, 0);
    assert!(Encoder::new(Vec::new(), &root, None::<Vec<u8>>, Some(b"x")).is_err());
}

/// `(path, kind, metadata, contents)` of every decoded entry.
pub(crate) type Decoded = Vec<(PathBuf, EntryKind, Metadata, Option<Vec<u8>>)>;

pub(crate) fn decode_all(archive: &[u8], payload: Option<&[u8]>) -> crate::Result<Decoded> {
    let mut decoder = Decoder::new(archive, payload)?;
    let mut out = Vec::new();
    while let Some(entry) = decoder.next_entry()? {
        let contents = match decoder.contents() {
            Some(mut reader) => {
                let mut data = Vec::new();
                reader
                    .read_to_end(&mut data)
                    .map_err(|e| crate::Error::from_io(e, 0))?;
                Some(data)
            }
            None => None,
        };
        out.push((entry.path, entry.kind, entry.metadata, contents));
    }
    Ok(out)
}

#[test]
fn example_v1_decodes() {
    let archive = parse_hex_dump(EXAMPLE_V1_HEX);
    let entries = decode_all(&archive, None).unwrap();
    let summary: Vec<(String, EntryKind, u64, Option<Vec<u8>>)> = entries
        .into_iter()
        .map(|(p, k, m, c)| (p.display().to_string(), k, m.stat.mode, c))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("/".into(), EntryKind::Directory, 0o40755, None),
            (
                "/a".into(),
                EntryKind::File {
                    size: 3,
                    offset: Some(146),
                    payload_offset: None
                },
                0o100644,
                Some(b"hi\n".to_vec())
            ),
            (
                "/s".into(),
                EntryKind::Symlink(PathBuf::from("a")),
                0o120777,
                None
            ),
            ("/".into(), EntryKind::GoodbyeTable, 0, None),
        ]
    );
}

#[test]
fn example_v2_decodes_like_v1() {
    let (meta_archive, payload) = encode_example(true, None);
    let payload = payload.unwrap();
    let v2 = decode_all(&meta_archive, Some(&payload)).unwrap();
    let v1 = decode_all(&parse_hex_dump(EXAMPLE_V1_HEX), None).unwrap();
    assert_eq!(v1.len(), v2.len());
    for (a, b) in v1.iter().zip(&v2) {
        assert_eq!((&a.0, &a.2, &a.3), (&b.0, &b.2, &b.3));
    }
    assert_eq!(
        v2[1].1,
        EntryKind::File {
            size: 3,
            offset: None,
            payload_offset: Some(16)
        }
    );
    // Without the payload stream the metadata still decodes.
    let meta_only = Decoder::new_unified(&meta_archive[..])
        .unwrap()
        .collect::<crate::Result<Vec<_>>>()
        .unwrap();
    assert_eq!(meta_only.len(), 4);
}

#[test]
fn truncations_of_examples_fail_with_offsets() {
    let v1 = parse_hex_dump(EXAMPLE_V1_HEX);
    for len in 0..v1.len() {
        let err = decode_all(&v1[..len], None).expect_err("truncated v1 must fail");
        assert!(err.offset().is_some(), "len {len}: {err}");
        let truncated = &v1[..len];
        let err = crate::Accessor::new_unified(truncated, len as u64)
            .and_then(|a| a.root())
            .expect_err("accessor on truncated v1 must fail");
        assert!(err.offset().is_some(), "len {len}: {err}");
        crate::fuzz::fuzz_decode(truncated);
    }
    let (meta_archive, payload) = encode_example(true, None);
    let payload = payload.unwrap();
    for len in 0..meta_archive.len() {
        let err = decode_all(&meta_archive[..len], Some(&payload)).expect_err("truncated mpxar");
        assert!(err.offset().is_some(), "len {len}: {err}");
    }
    for len in 0..payload.len() {
        let err = decode_all(&meta_archive, Some(&payload[..len])).expect_err("truncated ppxar");
        assert!(err.offset().is_some(), "len {len}: {err}");
    }
}

#[test]
fn trailing_data_is_rejected() {
    let mut v1 = parse_hex_dump(EXAMPLE_V1_HEX);
    v1.push(0);
    let err = decode_all(&v1, None).unwrap_err();
    assert_eq!(err.offset(), Some(329));
}

#[test]
fn byte_flips_of_examples_never_panic() {
    let v1 = parse_hex_dump(EXAMPLE_V1_HEX);
    let (meta_archive, payload) = encode_example(true, None);
    let payload = payload.unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Every single bit flip of the v1 example: decoding must not panic, and flips in
    // structural bytes must be detected.
    let mut detected = 0;
    for at in 0..v1.len() {
        for bit in 0..8 {
            let mut data = v1.clone();
            data[at] ^= 1 << bit;
            if let Err(err) = decode_all(&data, None) {
                assert!(err.offset().is_some() || matches!(err, crate::Error::InvalidInput(_)));
                detected += 1;
            }
            crate::fuzz::fuzz_decode(&data);
        }
    }
    // Only content bytes of "hi\n", mtime/uid/gid/flags/permission bits and the symlink
    // target may change undetected.
    assert!(
        detected > v1.len() * 8 / 2,
        "only {detected} flips detected"
    );
    for _ in 0..2000 {
        let mut m = meta_archive.clone();
        let mut p = payload.clone();
        for _ in 0..(rand() % 4 + 1) {
            if rand() % 2 == 0 {
                let at = (rand() % m.len() as u64) as usize;
                m[at] = rand() as u8;
            } else {
                let at = (rand() % p.len() as u64) as usize;
                p[at] = rand() as u8;
            }
        }
        let _ = decode_all(&m, Some(&p));
    }
}

/// `(type, offset, content)` of every item, walking headers linearly.
fn items_of(data: &[u8]) -> Vec<(u64, usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let htype = u64_at(data, at);
        let size = u64_at(data, at + 8) as usize;
        out.push((htype, at, data[at + 16..at + size].to_vec()));
        at += size;
    }
    out
}

fn item(htype: u64, content: &[u8]) -> Vec<u8> {
    let mut out = crate::format::Header::with_content_size(htype, content.len() as u64)
        .to_bytes()
        .to_vec();
    out.extend_from_slice(content);
    out
}

fn empty_goodbye(goodbye_start: u64, dir_entry_start: u64) -> Vec<u8> {
    let tail = crate::format::GoodbyeItem {
        hash: crate::format::PXAR_GOODBYE_TAIL_MARKER,
        offset: goodbye_start - dir_entry_start,
        size: 40,
    };
    item(crate::format::PXAR_GOODBYE, &tail.to_bytes())
}

#[test]
fn seven_file_example_offsets() {
    let names: [&[u8]; 7] = [
        b"alpha", b"beta", b"delta", b"epsilon", b"eta", b"gamma", b"zeta",
    ];
    let root = meta(mode::IFDIR | 0o755, 0, 0);
    let mut encoder = Encoder::new_unified(Vec::new(), &root).unwrap();
    let mut offsets = Vec::new();
    for name in names {
        let offset = encoder
            .add_file(
                &meta(mode::IFREG | 0o644, 0, 0),
                name,
                name.len() as u64,
                &mut &name[..],
            )
            .unwrap();
        offsets.push(offset.0);
    }
    assert_eq!(offsets, vec![56, 155, 252, 351, 454, 549, 648]);
    assert_eq!(encoder.position(), 745);
    let (archive, _) = encoder.finish().unwrap();
    assert_eq!(archive.len(), 953);
    assert_eq!(u64_at(&archive, 745), crate::format::PXAR_GOODBYE);
    assert_eq!(u64_at(&archive, 753), 208);
    let expected: [(u64, u64, u64); 8] = [
        (0x6b177759641ff3a2, 394, 103),
        (0x383f061fd51eaed8, 590, 97),
        (0xa226eba48081583c, 97, 97),
        (0x1def65733784215a, 196, 99),
        (0x3e36a5cf02e52d50, 493, 99),
        (0x9b9051e6062ccca4, 291, 95),
        (0xc7e855bd7e1aa5b1, 689, 99),
        (0xef5eed5b753e1555, 745, 208),
    ];
    for (slot, (hash, offset, size)) in expected.iter().enumerate() {
        let at = 745 + 16 + slot * 24;
        assert_eq!(
            (
                u64_at(&archive, at),
                u64_at(&archive, at + 8),
                u64_at(&archive, at + 16)
            ),
            (*hash, *offset, *size),
            "slot {slot}"
        );
    }
    let accessor = crate::Accessor::new_unified(&archive[..], archive.len() as u64).unwrap();
    let root = accessor.root().unwrap();
    for name in names {
        let entry = accessor.lookup_child(&root, name).unwrap().unwrap();
        let data = accessor.open_contents(&entry).unwrap().read_all().unwrap();
        assert_eq!(data, name);
    }
}

#[test]
fn attribute_items_follow_the_spec_order() {
    use crate::format::*;
    use crate::metadata::Acl;
    let mut file = meta(mode::IFREG | 0o640, 0, 0);
    file.xattrs = vec![
        XAttr::new(b"user.z".to_vec(), b"1".to_vec()),
        XAttr::new(b"user.a".to_vec(), b"".to_vec()),
    ];
    file.acl = Acl {
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
    };
    file.fcaps = Some(FCaps { data: vec![1; 20] });
    file.quota_project_id = Some(QuotaProjectId { projid: 7 });
    let mut dir = meta(mode::IFDIR | 0o755, 0, 0);
    dir.acl = Acl {
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
    };
    let mut encoder = Encoder::new_unified(Vec::new(), &dir).unwrap();
    encoder.add_file(&file, b"f", 0, &mut &b""[..]).unwrap();
    let (archive, _) = encoder.finish().unwrap();
    let items = items_of(&archive);
    let words = |c: &[u8]| -> Vec<u64> {
        c.chunks(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
            .collect()
    };
    let summary: Vec<(u64, Vec<u64>)> = items
        .iter()
        .filter(|(t, ..)| {
            matches!(
                *t,
                PXAR_ACL_USER
                    | PXAR_ACL_GROUP
                    | PXAR_ACL_GROUP_OBJ
                    | PXAR_ACL_DEFAULT
                    | PXAR_ACL_DEFAULT_USER
                    | PXAR_ACL_DEFAULT_GROUP
            )
        })
        .map(|(t, _, c)| (*t, words(c)))
        .collect();
    assert_eq!(
        summary,
        vec![
            (PXAR_ACL_USER, vec![1234, 7]),
            (PXAR_ACL_GROUP_OBJ, vec![5]),
            (PXAR_ACL_DEFAULT, vec![7, 5, 5, 7]),
            (PXAR_ACL_DEFAULT_USER, vec![1234, 5]),
            (PXAR_ACL_DEFAULT_GROUP, vec![2345, 7]),
            (PXAR_ACL_USER, vec![99, 4]),
            (PXAR_ACL_USER, vec![1234, 6]),
            (PXAR_ACL_GROUP, vec![2345, 4]),
            (PXAR_ACL_GROUP_OBJ, vec![4]),
        ]
    );
    let file_types: Vec<u64> = items
        .iter()
        .skip_while(|(t, ..)| *t != PXAR_FILENAME)
        .map(|(t, ..)| *t)
        .collect();
    assert_eq!(
        file_types,
        vec![
            PXAR_FILENAME,
            PXAR_ENTRY,
            PXAR_XATTR,
            PXAR_XATTR,
            PXAR_ACL_USER,
            PXAR_ACL_USER,
            PXAR_ACL_GROUP,
            PXAR_ACL_GROUP_OBJ,
            PXAR_FCAPS,
            PXAR_QUOTA_PROJID,
            PXAR_PAYLOAD,
            PXAR_GOODBYE
        ]
    );
    assert_eq!(items[0].2.len(), 40);
    let decoded = decode_all(&archive, None).unwrap();
    assert_eq!(decoded[0].2, dir);
    assert_eq!(decoded[1].2, file);
    let filename = items
        .iter()
        .position(|(t, ..)| *t == PXAR_FILENAME)
        .unwrap();
    let payload = items.iter().position(|(t, ..)| *t == PXAR_PAYLOAD).unwrap();
    assert_eq!(
        file.encoded_size(),
        (items[payload].1 - items[filename + 1].1) as u64
    );
    assert_eq!(dir.encoded_size(), items[filename].1 as u64);
}

#[test]
fn legacy_entry_v1_root_decodes() {
    let mut stat = [0u8; 32];
    stat[0..8].copy_from_slice(&0o40700u64.to_le_bytes());
    stat[24..32].copy_from_slice(&1_500_000_000_250_000_000u64.to_le_bytes());
    let mut archive = item(crate::format::PXAR_ENTRY_V1, &stat);
    archive.extend(empty_goodbye(48, 0));
    let entries = decode_all(&archive, None).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].2.stat.mode, 0o40700);
    assert_eq!(
        entries[0].2.stat.mtime,
        StatxTimestamp::new(1_500_000_000, 250_000_000)
    );
    let accessor = crate::Accessor::new_unified(&archive[..], archive.len() as u64).unwrap();
    assert_eq!(accessor.root().unwrap().metadata().stat.mode, 0o40700);
}

fn dir_entry_item() -> Vec<u8> {
    item(
        crate::format::PXAR_ENTRY,
        &meta(mode::IFDIR | 0o755, 0, 0).stat.to_bytes(),
    )
}

#[test]
fn format_version_values() {
    use crate::format::*;
    for (version, ok) in [(1u64, true), (2, true), (3, false), (0, false)] {
        let mut archive = item(PXAR_FORMAT_VERSION, &version.to_le_bytes());
        archive.extend(dir_entry_item());
        archive.extend(empty_goodbye(80, 0));
        let result = decode_all(&archive, None);
        assert_eq!(result.is_ok(), ok, "version {version}");
        if !ok {
            let err = result.unwrap_err();
            assert_eq!(err.offset(), Some(0));
            assert!(err
                .to_string()
                .contains(&format!("unknown format version {version}")));
        }
    }
}

#[test]
fn structural_violations_are_rejected() {
    use crate::format::*;
    let group_obj = item(PXAR_ACL_GROUP_OBJ, &4u64.to_le_bytes());
    // Duplicate single-valued attribute.
    let mut archive = dir_entry_item();
    archive.extend(&group_obj);
    archive.extend(&group_obj);
    archive.extend(empty_goodbye(56 + 48, 0));
    let err = decode_all(&archive, None).unwrap_err();
    assert_eq!(err.offset(), Some(80), "{err}");
    // Fixed-size item with the wrong size.
    let mut archive = dir_entry_item();
    archive.extend(item(PXAR_QUOTA_PROJID, &[0u8; 4]));
    archive.extend(empty_goodbye(56 + 20, 0));
    assert_eq!(decode_all(&archive, None).unwrap_err().offset(), Some(56));
    // Root that is not a directory.
    let mut archive = item(PXAR_ENTRY, &meta(mode::IFIFO | 0o644, 0, 0).stat.to_bytes());
    archive.extend(empty_goodbye(56, 0));
    assert!(decode_all(&archive, None).is_err());
    // Unknown item type in place of an attribute.
    let mut archive = dir_entry_item();
    archive.extend(item(0x1234, b""));
    archive.extend(empty_goodbye(72, 0));
    let err = decode_all(&archive, None).unwrap_err();
    assert!(err.to_string().contains("unexpected entry type"), "{err}");
    // Wrong tail offset.
    let mut archive = dir_entry_item();
    archive.extend(empty_goodbye(56, 8));
    assert!(decode_all(&archive, None).is_err());
    assert!(
        crate::Accessor::new_unified(&archive[..], archive.len() as u64)
            .unwrap()
            .root()
            .is_err()
    );
    // Invalid file names.
    for bad in [&b"."[..], b"..", b"a/b", b""] {
        let mut archive = dir_entry_item();
        let mut name = bad.to_vec();
        name.push(0);
        archive.extend(item(PXAR_FILENAME, &name));
        archive.extend(item(
            PXAR_ENTRY,
            &meta(mode::IFIFO | 0o644, 0, 0).stat.to_bytes(),
        ));
        let goodbye_start = archive.len() as u64;
        archive.extend(empty_goodbye(goodbye_start, 0));
        let err = decode_all(&archive, None).unwrap_err();
        assert_eq!(err.offset(), Some(56), "{bad:?}: {err}");
    }
    // Goodbye table not matching the children (fifo "p" but no table item).
    let mut archive = dir_entry_item();
    archive.extend(item(PXAR_FILENAME, b"p\0"));
    archive.extend(item(
        PXAR_ENTRY,
        &meta(mode::IFIFO | 0o644, 0, 0).stat.to_bytes(),
    ));
    let goodbye_start = archive.len() as u64;
    archive.extend(empty_goodbye(goodbye_start, 0));
    let err = decode_all(&archive, None).unwrap_err();
    assert_eq!(err.offset(), Some(goodbye_start), "{err}");
}

/// Offsets of all items of type `htype`.
fn find_items(data: &[u8], htype: u64) -> Vec<usize> {
    items_of(data)
        .into_iter()
        .filter(|(t, ..)| *t == htype)
        .map(|(_, at, _)| at)
        .collect()
}

fn two_file_split() -> (Vec<u8>, Vec<u8>) {
    let root = meta(mode::IFDIR | 0o755, 0, 0);
    let mut encoder = Encoder::new(Vec::new(), &root, Some(Vec::new()), None).unwrap();
    let file = meta(mode::IFREG | 0o644, 0, 0);
    encoder.add_file(&file, b"a", 3, &mut &b"one"[..]).unwrap();
    encoder
        .add_file(&file, b"b", 5, &mut &b"three"[..])
        .unwrap();
    let (m, p) = encoder.finish().unwrap();
    (m, p.unwrap())
}

#[test]
fn split_payload_checks() {
    use crate::format::*;
    let (m, p) = two_file_split();
    decode_all(&m, Some(&p)).unwrap();
    let refs = find_items(&m, PXAR_PAYLOAD_REF);
    assert_eq!(refs.len(), 2);
    // Second reference pointing back at the first payload.
    let mut bad = m.clone();
    bad[refs[1] + 16..refs[1] + 24].copy_from_slice(&16u64.to_le_bytes());
    let err = decode_all(&bad, Some(&p)).unwrap_err();
    assert_eq!(err.offset(), Some(refs[1] as u64), "{err}");
    // Size mismatch between reference and PAYLOAD header.
    let mut bad = m.clone();
    bad[refs[0] + 24..refs[0] + 32].copy_from_slice(&4u64.to_le_bytes());
    assert!(decode_all(&bad, Some(&p)).is_err());
    let accessor =
        crate::Accessor::new(&bad[..], bad.len() as u64, Some((&p[..], p.len() as u64))).unwrap();
    let entry = accessor
        .lookup(std::path::Path::new("/a"))
        .unwrap()
        .unwrap();
    assert_eq!(
        accessor
            .open_contents(&entry)
            .err()
            .and_then(|e| e.offset()),
        Some(16)
    );
    // Missing start marker.
    let mut bad = p.clone();
    bad[0] ^= 1;
    assert_eq!(
        Decoder::new(&m[..], Some(&bad[..]))
            .err()
            .and_then(|e| e.offset()),
        Some(0)
    );
    // Missing tail marker.
    let mut bad = p.clone();
    let last = bad.len() - 16;
    bad[last] ^= 1;
    assert!(decode_all(&m, Some(&bad)).is_err());
    assert!(
        crate::Accessor::new(&m[..], m.len() as u64, Some((&bad[..], bad.len() as u64))).is_err()
    );
    // Payload given for a v1 archive.
    let (v1, _) = encode_example(false, None);
    assert!(Decoder::new(&v1[..], Some(&p[..])).is_err());
    // PAYLOAD in a split archive.
    let mut archive = item(PXAR_FORMAT_VERSION, &2u64.to_le_bytes());
    archive.extend(dir_entry_item());
    archive.extend(item(PXAR_FILENAME, b"f\0"));
    archive.extend(item(
        PXAR_ENTRY,
        &meta(mode::IFREG | 0o644, 0, 0).stat.to_bytes(),
    ));
    archive.extend(item(PXAR_PAYLOAD, b""));
    assert!(decode_all(&archive, None)
        .unwrap_err()
        .to_string()
        .contains("unexpected entry type"));
}

#[test]
fn reused_payload_references() {
    let root = meta(mode::IFDIR | 0o755, 0, 0);
    let file = meta(mode::IFREG | 0o644, 0, 0);
    let mut encoder = Encoder::new(Vec::new(), &root, Some(Vec::new()), None).unwrap();
    encoder.add_file(&file, b"a", 3, &mut &b"new"[..]).unwrap();
    assert_eq!(encoder.payload_position(), Some(35));
    // Below the payload position is refused, and the encoder stays usable.
    assert!(encoder.add_payload_ref(&file, b"b", 2, 20).is_err());
    // Reused range: 4 padding bytes, then the PAYLOAD item of "b" from a previous archive.
    encoder.add_payload_ref(&file, b"b", 2, 39).unwrap();
    let mut previous = vec![0xaa; 4];
    previous.extend(item(crate::format::PXAR_PAYLOAD, b"ok"));
    encoder.write_payload_raw(&previous).unwrap();
    // References must not overlap the previous one.
    assert!(encoder.add_payload_ref(&file, b"c", 1, 40).is_err());
    let (m, p) = encoder.finish().unwrap();
    let p = p.unwrap();
    let decoded = decode_all(&m, Some(&p)).unwrap();
    assert_eq!(decoded[1].3.as_deref(), Some(&b"new"[..]));
    assert_eq!(decoded[2].3.as_deref(), Some(&b"ok"[..]));
    // Goodbye sizes: fresh file counts its data (106 + 3), reused one only metadata bytes.
    let goodbye = find_items(&m, crate::format::PXAR_GOODBYE)[0] + 16;
    let sizes: Vec<(u64, u64)> = (0..2)
        .map(|i| {
            (
                u64_at(&m, goodbye + i * 24),
                u64_at(&m, goodbye + i * 24 + 16),
            )
        })
        .collect();
    let hash = crate::format::hash_filename;
    assert!(sizes.contains(&(hash(b"a"), 109)));
    assert!(sizes.contains(&(hash(b"b"), 106)));
    let accessor =
        crate::Accessor::new(&m[..], m.len() as u64, Some((&p[..], p.len() as u64))).unwrap();
    let b = accessor
        .lookup(std::path::Path::new("/b"))
        .unwrap()
        .unwrap();
    assert_eq!(
        accessor.open_contents(&b).unwrap().read_all().unwrap(),
        b"ok"
    );

    // Out-of-band payload bytes only move the position.
    let mut encoder = Encoder::new(Vec::new(), &root, Some(Vec::new()), None).unwrap();
    encoder.add_payload_ref(&file, b"x", 10, 16).unwrap();
    encoder.advance_payload_position(26).unwrap();
    assert_eq!(encoder.payload_position(), Some(42));
    assert!(encoder.add_payload_ref(&file, b"y", 0, 41).is_err());

    // A fresh file may not be written into a referenced range that was not provided.
    let mut encoder = Encoder::new(Vec::new(), &root, Some(Vec::new()), None).unwrap();
    encoder.add_payload_ref(&file, b"x", 10, 16).unwrap();
    assert!(encoder.add_file(&file, b"y", 1, &mut &b"1"[..]).is_err());
    assert!(encoder.finish().is_err());
}

#[test]
fn encoder_refuses_invalid_input() {
    let root = meta(mode::IFDIR | 0o755, 0, 0);
    let file = meta(mode::IFREG | 0o644, 0, 0);
    assert!(Encoder::new_unified(Vec::new(), &file).is_err());
    let mut encoder = Encoder::new_unified(Vec::new(), &root).unwrap();
    encoder.add_file(&file, b"b", 0, &mut &b""[..]).unwrap();
    for bad in [&b"a"[..], b"b", b"", b".", b"..", b"c/d"] {
        assert!(
            encoder.add_fifo(&meta(mode::IFIFO, 0, 0), bad).is_err(),
            "{bad:?}"
        );
    }
    assert!(encoder.add_file(&root, b"c", 0, &mut &b""[..]).is_err());
    assert!(encoder.add_symlink(&file, b"c", b"x").is_err());
    assert!(encoder.add_device(&file, b"c", Default::default()).is_err());
    assert!(encoder
        .add_hardlink(b"c", b"b", crate::LinkOffset(10_000))
        .is_err());
    assert!(encoder
        .add_hardlink(b"c", b"../b", crate::LinkOffset(56))
        .is_err());
    assert!(encoder.add_payload_ref(&file, b"c", 0, 16).is_err());
    assert!(encoder.finish_directory().is_err());
    // None of the refusals wrote anything: the archive is still valid.
    encoder.create_directory(b"d", &root).unwrap();
    encoder
        .add_hardlink(b"link", b"b", crate::LinkOffset(56))
        .unwrap();
    encoder.finish_directory().unwrap();
    // Synthetic entry appended after sorted entries.
    encoder.allow_unsorted_next_entry();
    encoder
        .add_file(&file, b".pxarexclude-cli", 2, &mut &b"x\n"[..])
        .unwrap();
    encoder.allow_unsorted_next_entry();
    assert!(encoder.add_fifo(&meta(mode::IFIFO, 0, 0), b"b").is_err());
    let (archive, _) = encoder.finish().unwrap();
    let entries = decode_all(&archive, None).unwrap();
    let paths: Vec<String> = entries.iter().map(|e| e.0.display().to_string()).collect();
    assert_eq!(
        paths,
        ["/", "/b", "/d", "/d/link", "/d", "/.pxarexclude-cli", "/"]
    );
    let accessor = crate::Accessor::new_unified(&archive[..], archive.len() as u64).unwrap();
    let link = accessor
        .lookup(std::path::Path::new("/d/link"))
        .unwrap()
        .unwrap();
    assert_eq!(
        accessor.follow_hardlink(&link).unwrap().path(),
        std::path::Path::new("/b")
    );
    assert!(accessor
        .lookup(std::path::Path::new("/.pxarexclude-cli"))
        .unwrap()
        .is_some());

    // Unfinished directory at finish.
    let mut encoder = Encoder::new_unified(Vec::new(), &root).unwrap();
    encoder.create_directory(b"d", &root).unwrap();
    assert!(encoder.finish().is_err());

    // Short content poisons the encoder.
    let mut encoder = Encoder::new_unified(Vec::new(), &root).unwrap();
    assert!(encoder.add_file(&file, b"f", 5, &mut &b"abc"[..]).is_err());
    assert!(matches!(
        encoder.add_fifo(&meta(mode::IFIFO, 0, 0), b"g"),
        Err(crate::Error::Poisoned)
    ));

    // A file writer dropped before finishing poisons it as well.
    let mut encoder = Encoder::new_unified(Vec::new(), &root).unwrap();
    let mut writer = encoder.create_file(&file, b"f", 2).unwrap();
    writer.write_content(b"x").unwrap();
    assert!(writer.write_content(b"yz").is_err());
    drop(writer);
    assert!(encoder.finish().is_err());
}

#[test]
fn interesting_words_at_every_offset_never_panic() {
    let v1 = parse_hex_dump(EXAMPLE_V1_HEX);
    let (m, p) = encode_example(true, Some(b"prelude"));
    let p = p.unwrap();
    let values = [
        0u64,
        1,
        8,
        15,
        16,
        24,
        40,
        88,
        329,
        1 << 40,
        u64::MAX - 16,
        u64::MAX,
    ];
    for at in 0..v1.len() - 8 {
        for value in values {
            let mut data = v1.clone();
            data[at..at + 8].copy_from_slice(&value.to_le_bytes());
            let _ = decode_all(&data, None);
            crate::accessor::fuzz_walk(&data, None);
        }
    }
    for at in 0..m.len() - 8 {
        for value in values {
            let mut data = m.clone();
            data[at..at + 8].copy_from_slice(&value.to_le_bytes());
            let _ = decode_all(&data, Some(&p));
            crate::accessor::fuzz_walk(&data, Some(&p));
        }
    }
    for at in 0..p.len() - 8 {
        for value in values {
            let mut data = p.clone();
            data[at..at + 8].copy_from_slice(&value.to_le_bytes());
            let _ = decode_all(&m, Some(&data));
            crate::accessor::fuzz_walk(&m, Some(&data));
        }
    }
}

#[test]
fn item_sizes_match_the_size_table() {
    use crate::format::*;
    let mut file = meta(mode::IFREG | 0o644, 0, 0);
    file.xattrs = vec![XAttr::new(b"user.name".to_vec(), b"value".to_vec())];
    file.fcaps = Some(FCaps { data: vec![0; 20] });
    file.quota_project_id = Some(QuotaProjectId { projid: 3 });
    file.acl.users = vec![AclUser {
        uid: 1,
        permissions: 7,
    }];
    file.acl.groups = vec![AclGroup {
        gid: 1,
        permissions: 7,
    }];
    file.acl.group_obj = Some(AclGroupObject { permissions: 7 });
    let mut dir = meta(mode::IFDIR | 0o755, 0, 0);
    dir.acl.default = Some(AclDefault {
        user_obj_permissions: 7,
        group_obj_permissions: 7,
        other_permissions: 7,
        mask_permissions: ACL_NO_MASK,
    });
    dir.acl.default_users = vec![AclUser {
        uid: 2,
        permissions: 5,
    }];
    dir.acl.default_groups = vec![AclGroup {
        gid: 2,
        permissions: 5,
    }];
    for split in [false, true] {
        let payload = split.then(Vec::new);
        let prelude = split.then_some(&b"12345"[..]);
        let mut encoder = Encoder::new(Vec::new(), &dir, payload, prelude).unwrap();
        encoder
            .add_device(
                &meta(mode::IFCHR | 0o600, 0, 0),
                b"dev",
                Device { major: 1, minor: 3 },
            )
            .unwrap();
        let link = encoder
            .add_file(&file, b"file", 11, &mut &b"hello world"[..])
            .unwrap();
        encoder.add_hardlink(b"link", b"file", link).unwrap();
        encoder
            .add_symlink(&meta(mode::IFLNK | 0o777, 0, 0), b"sym", b"target")
            .unwrap();
        let (m, p) = encoder.finish().unwrap();
        let expected_size = |htype: u64| -> Option<usize> {
            Some(match htype {
                PXAR_ENTRY => 56,
                PXAR_XATTR => 16 + 9 + 1 + 5,
                PXAR_ACL_USER | PXAR_ACL_GROUP | PXAR_ACL_DEFAULT_USER | PXAR_ACL_DEFAULT_GROUP => {
                    32
                }
                PXAR_ACL_GROUP_OBJ | PXAR_QUOTA_PROJID | PXAR_FORMAT_VERSION => 24,
                PXAR_ACL_DEFAULT => 48,
                PXAR_FCAPS => 16 + 20,
                PXAR_DEVICE | PXAR_PAYLOAD_REF => 32,
                PXAR_PAYLOAD => 16 + 11,
                PXAR_SYMLINK => 16 + 6 + 1,
                PXAR_HARDLINK => 16 + 8 + 4 + 1,
                PXAR_GOODBYE => 16 + 24 * 5,
                PXAR_PRELUDE => 16 + 5,
                _ => return None,
            })
        };
        let mut seen = 0;
        for (htype, at, content) in items_of(&m) {
            let full = content.len() + 16;
            if htype == PXAR_FILENAME {
                let name = &content[..content.len() - 1];
                assert_eq!(full, 16 + name.len() + 1);
            } else {
                assert_eq!(
                    Some(full),
                    expected_size(htype),
                    "{} at {at}",
                    type_name(htype)
                );
            }
            seen += 1;
        }
        assert_eq!(seen, if split { 24 } else { 22 });
        if let Some(p) = p {
            let sizes: Vec<(u64, usize)> = items_of(&p)
                .into_iter()
                .map(|(t, _, c)| (t, c.len() + 16))
                .collect();
            assert_eq!(
                sizes,
                vec![
                    (PXAR_PAYLOAD_START_MARKER, 16),
                    (PXAR_PAYLOAD, 27),
                    (PXAR_PAYLOAD_TAIL_MARKER, 16)
                ]
            );
        }
    }
}
