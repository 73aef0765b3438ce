use std::io::Read;
use std::path::Path;

use pxar::format::{mode, Device, Stat, StatxTimestamp};
use pxar::{Accessor, Encoder, Metadata};

use super::*;

const MTIME: i64 = 1_690_000_000;

fn meta(mode_bits: u64) -> Metadata {
    Metadata::from_stat(Stat {
        mode: mode_bits,
        flags: 0,
        uid: 1000,
        gid: 100,
        mtime: StatxTimestamp::new(MTIME, 0),
    })
}

fn big() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

/// `/base.txt`, `/data/{a.txt, hl_out1, hl_out2, link, pipe, sock, sub/{b.txt, hl_in}, tty}`:
/// `hl_out*` link to `/base.txt` (outside `data`), `sub/hl_in` to `data/a.txt`.
fn archive(split: bool) -> (Vec<u8>, Option<Vec<u8>>) {
    let file = meta(mode::IFREG | 0o640);
    let dir = meta(mode::IFDIR | 0o750);
    let mut enc = Encoder::new(Vec::new(), &dir, split.then(Vec::new), None).unwrap();
    let base = enc
        .add_file(&file, b"base.txt", 5, &mut &b"base\n"[..])
        .unwrap();
    enc.create_directory(b"data", &dir).unwrap();
    let content = big();
    let a = enc
        .add_file(
            &file,
            b"a.txt",
            content.len() as u64,
            &mut content.as_slice(),
        )
        .unwrap();
    enc.add_hardlink(b"hl_out1", b"base.txt", base).unwrap();
    enc.add_hardlink(b"hl_out2", b"base.txt", base).unwrap();
    enc.add_symlink(&meta(mode::IFLNK | 0o777), b"link", b"a.txt")
        .unwrap();
    enc.add_fifo(&meta(mode::IFIFO | 0o600), b"pipe").unwrap();
    enc.add_socket(&meta(mode::IFSOCK | 0o600), b"sock")
        .unwrap();
    enc.create_directory(b"sub", &dir).unwrap();
    enc.add_file(&file, b"b.txt", 2, &mut &b"b\n"[..]).unwrap();
    enc.add_hardlink(b"hl_in", b"data/a.txt", a).unwrap();
    enc.finish_directory().unwrap();
    enc.add_device(
        &meta(mode::IFCHR | 0o620),
        b"tty",
        Device { major: 4, minor: 1 },
    )
    .unwrap();
    enc.finish_directory().unwrap();
    enc.finish().unwrap()
}

fn download(split: bool, path: &str, format: DirFormat) -> Vec<u8> {
    let (meta_stream, payload) = archive(split);
    let size = meta_stream.len() as u64;
    let payload = payload.map(|p| {
        let len = p.len() as u64;
        (p, len)
    });
    let accessor = Accessor::new(meta_stream, size, payload).unwrap();
    let dir = accessor.lookup(Path::new(path)).unwrap().unwrap();
    write_directory(&accessor, &dir, format, Vec::new()).unwrap()
}

/// `(name, type flag, link target, contents, mode, uid, mtime)` of every tar entry.
type TarItem = (String, u8, String, Vec<u8>, u64, u64, u64);

fn read_tar_zst(data: &[u8]) -> Vec<TarItem> {
    let mut tar = Vec::new();
    zstd::stream::read::Decoder::new(data)
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    let octal = |field: &[u8]| {
        let text = std::str::from_utf8(field).unwrap();
        u64::from_str_radix(text.trim_end_matches('\0').trim(), 8).unwrap()
    };
    let text = |field: &[u8]| {
        let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
        String::from_utf8(field[..end].to_vec()).unwrap()
    };
    let mut items = Vec::new();
    let mut pos = 0;
    let (mut long_name, mut long_link) = (None, None);
    while tar[pos..pos + 512].iter().any(|b| *b != 0) {
        let header = &tar[pos..pos + 512];
        assert_eq!(&header[257..265], b"ustar  \0");
        let size = octal(&header[124..136]) as usize;
        let body = tar[pos + 512..pos + 512 + size].to_vec();
        pos += 512 + size.div_ceil(512) * 512;
        match header[156] {
            b'L' => long_name = Some(text(&body)),
            b'K' => long_link = Some(text(&body)),
            flag => items.push((
                long_name.take().unwrap_or_else(|| text(&header[..100])),
                flag,
                long_link.take().unwrap_or_else(|| text(&header[157..257])),
                body,
                octal(&header[100..108]),
                octal(&header[108..116]),
                octal(&header[136..148]),
            )),
        }
    }
    assert!(tar[pos..].iter().all(|b| *b == 0));
    assert_eq!(tar.len() - pos, 1024);
    items
}

#[test]
fn tar_keeps_special_files_and_links() {
    for split in [false, true] {
        let items = read_tar_zst(&download(split, "/data", DirFormat::TarZstd));
        let summary: Vec<_> = items
            .iter()
            .map(|(name, flag, link, ..)| (name.as_str(), *flag, link.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("data/", b'5', ""),
                ("data/a.txt", b'0', ""),
                ("data/hl_out1", b'0', ""),
                ("data/hl_out2", b'1', "data/hl_out1"),
                ("data/link", b'2', "a.txt"),
                ("data/pipe", b'6', ""),
                ("data/sub/", b'5', ""),
                ("data/sub/b.txt", b'0', ""),
                ("data/sub/hl_in", b'1', "data/a.txt"),
                ("data/tty", b'3', ""),
            ],
            "split: {split}"
        );
        assert_eq!(items[1].3, big());
        assert_eq!(items[2].3, b"base\n");
        assert_eq!(items[7].3, b"b\n");
        let (_, _, _, _, mode, uid, mtime) = &items[1];
        assert_eq!((*mode, *uid, *mtime), (0o640, 1000, MTIME as u64));
        assert_eq!(items[0].4, 0o750);
    }
}

#[test]
fn zip_holds_directories_and_files_only() {
    for split in [false, true] {
        let entries = zip::read_zip(&download(split, "/data/", DirFormat::Zip));
        let names: Vec<_> = entries
            .iter()
            .map(|(name, ..)| String::from_utf8(name.clone()).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "data/",
                "data/a.txt",
                "data/hl_out1",
                "data/hl_out2",
                "data/sub/",
                "data/sub/b.txt",
                "data/sub/hl_in",
            ],
            "split: {split}"
        );
        assert_eq!(entries[0].1 >> 16, (mode::IFDIR | 0o750) as u32);
        assert_eq!(entries[1].1 >> 16, (mode::IFREG | 0o640) as u32);
        assert_eq!(entries[1].2, big());
        assert_eq!(entries[2].2, b"base\n");
        assert_eq!(entries[3].2, b"base\n");
        assert_eq!(entries[6].2, big());
    }
}

#[test]
fn subdirectory_and_root_names() {
    let entries = zip::read_zip(&download(false, "/data/sub", DirFormat::Zip));
    let names: Vec<_> = entries.iter().map(|(name, ..)| name.clone()).collect();
    assert_eq!(names, [&b"sub/"[..], b"sub/b.txt", b"sub/hl_in"]);
    assert_eq!(entries[2].2, big());

    let items = read_tar_zst(&download(false, "/", DirFormat::TarZstd));
    let names: Vec<_> = items.iter().map(|item| item.0.as_str()).collect();
    assert_eq!(names[..3], ["base.txt", "data/", "data/a.txt"]);
    // Inside a whole-archive download every hardlink target is part of it.
    let hl_out1 = items.iter().find(|item| item.0 == "data/hl_out1").unwrap();
    assert_eq!((hl_out1.1, hl_out1.2.as_str()), (b'1', "base.txt"));
}

#[test]
fn long_names_survive_tar() {
    let long = vec![b'n'; 180];
    let dir = meta(mode::IFDIR | 0o755);
    let mut enc = Encoder::new_unified(Vec::new(), &dir).unwrap();
    enc.create_directory(b"d", &dir).unwrap();
    enc.add_file(&meta(mode::IFREG | 0o644), &long, 1, &mut &b"x"[..])
        .unwrap();
    enc.finish_directory().unwrap();
    let (data, _) = enc.finish().unwrap();
    let size = data.len() as u64;
    let accessor = Accessor::new_unified(data, size).unwrap();
    let dir = accessor.lookup(Path::new("/d")).unwrap().unwrap();
    let out = write_directory(&accessor, &dir, DirFormat::TarZstd, Vec::new()).unwrap();
    let items = read_tar_zst(&out);
    assert_eq!(items[1].0, format!("d/{}", "n".repeat(180)));
    assert_eq!(items[1].3, b"x");
}

#[test]
fn channel_writer_sends_bounded_pieces() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut writer = ChannelWriter::new(tx);
    let data = vec![7u8; PIECE_SIZE * 2 + 10];
    writer.write_all(&data[..100]).unwrap();
    writer.write_all(&data[100..]).unwrap();
    writer.flush().unwrap();
    writer.fail("broken".to_string());
    let mut received = Vec::new();
    let mut pieces = 0;
    while let Ok(piece) = rx.try_recv() {
        match piece {
            Ok(frame) => {
                let bytes = frame.into_data().unwrap();
                assert!(bytes.len() <= PIECE_SIZE);
                received.extend_from_slice(&bytes);
                pieces += 1;
            }
            Err(err) => assert_eq!(err.to_string(), "broken"),
        }
    }
    assert_eq!(received, data);
    assert_eq!(pieces, 3);
}
