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
    assert_eq!((u64_at(&meta_archive, 170), u64_at(&meta_archive, 178)), (16, 3));
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
    assert_eq!(u64_at(&payload, 0), crate::format::PXAR_PAYLOAD_START_MARKER);
    assert_eq!(u64_at(&payload, 8), 16);
    assert_eq!(u64_at(&payload, 16), crate::format::PXAR_PAYLOAD);
    assert_eq!(u64_at(&payload, 24), 19);
    assert_eq!(&payload[32..35], b"hi\n");
    assert_eq!(u64_at(&payload, 35), crate::format::PXAR_PAYLOAD_TAIL_MARKER);
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
    assert!(detected > v1.len() * 8 / 2, "only {detected} flips detected");
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
