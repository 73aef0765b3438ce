//! Change-detection mode `metadata`: archive generations of a tree with payload reuse, the
//! payload index rebuilt locally like the upload does, and decode checks against the source.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::Bytes;
use pbs_datastore::DynamicIndexReader;
use pxar::{Decoder, EntryKind};

use super::*;
use crate::backup_writer::{ChunkCutter, StreamPiece};
use crate::inject::{InjectChunks, PayloadHint};
use crate::pxar::reuse::padding_too_large;

/// Average chunk size of the simulated upload (small, so files span several chunks).
const CHUNK_SIZE: usize = 4096;

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

fn write(path: &Path, content: &[u8]) {
    std::fs::write(path, content).unwrap();
}

/// Rewrites a file and moves its mtime on, so the metadata differs from the previous run.
fn change(path: &Path, content: &[u8]) {
    write(path, content);
    let mtime = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

/// Rewrites a file (same size) but restores its mtime: metadata mode must not notice.
fn overwrite_keeping_mtime(path: &Path, content: &[u8]) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), content.len() as u64);
    write(path, content);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

/// A tree with files of assorted sizes in nested directories, an empty file, a symlink, a
/// fifo and a hardlink pair; returns the number of regular files (hardlinks counted once).
fn build_tree(root: &Path) -> u64 {
    let mut files = 0;
    for (dir, count) in [("", 6u32), ("d1", 8), ("d1/sub", 5), ("d2", 7)] {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..count {
            let seed = count * 100 + i;
            let size = 500 + (seed as usize * 7919) % 40_000;
            write(&dir.join(format!("f{i:02}")), &pseudo_random(size, seed));
            files += 1;
        }
    }
    write(&root.join("d1/empty"), b"");
    files += 1;
    symlink("d1/f00", root.join("link")).unwrap();
    let fifo = CString::new(root.join("d2/fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    write(&root.join("d2/hl_a"), &pseudo_random(3000, 77));
    std::fs::hard_link(root.join("d2/hl_a"), root.join("d2/hl_b")).unwrap();
    files += 1;
    files
}

/// One archive run's outputs.
struct Run {
    meta: Vec<u8>,
    /// The bytes the archiver wrote to the payload output (without injected chunks).
    payload: Vec<u8>,
    /// What the archiver told the payload chunker, in order.
    hints: Vec<PayloadHint>,
    /// The injections among the hints.
    injections: Vec<InjectChunks>,
    stats: ArchiveStats,
    messages: Vec<String>,
}

fn archive(root: &Path, reference: Option<PreviousArchiveRef>) -> Run {
    let (sender, receiver) = mpsc::channel();
    let mut meta = Vec::new();
    let mut payload = Vec::new();
    let mut messages = Vec::new();
    let stats = create_archive_split_with_reference(
        root,
        &mut meta,
        &mut payload,
        Flags::DEFAULT,
        PxarCreateOptions::default(),
        reference,
        sender,
        &mut |m| messages.push(m),
    )
    .unwrap();
    let hints: Vec<PayloadHint> = receiver.try_iter().collect();
    let injections = hints
        .iter()
        .filter_map(|hint| match hint {
            PayloadHint::Inject(inject) => Some(inject.clone()),
            _ => None,
        })
        .collect();
    Run {
        meta,
        payload,
        hints,
        injections,
        stats,
        messages,
    }
}

/// A stored snapshot: the metadata archive, the payload stream as a reader would see it,
/// and its payload index file.
struct Generation {
    meta: Vec<u8>,
    payload: Vec<u8>,
    index_path: PathBuf,
    chunks: Vec<(u64, [u8; 32])>,
    /// Bytes of the chunks the store did not have before this upload.
    new_bytes: u64,
}

impl Generation {
    fn reference(&self, cache_size: usize) -> PreviousArchiveRef {
        let index = DynamicIndexReader::open(&self.index_path).unwrap();
        PreviousArchiveRef::new(self.meta.clone(), self.meta.len() as u64, index)
            .unwrap()
            .with_cache_size(cache_size)
    }
}

/// Chunk store of the simulated server.
#[derive(Default)]
struct Store {
    chunks: HashMap<[u8; 32], Vec<u8>>,
}

impl Store {
    /// Does what the upload does with a run: cuts the written bytes with the upload's chunk
    /// cutter and the archiver's hints, appends injected chunks as known chunks, writes the
    /// index.
    fn upload(&mut self, run: &Run, index_path: PathBuf) -> Generation {
        let mut cutter = ChunkCutter::dynamic(CHUNK_SIZE).unwrap();
        for hint in &run.hints {
            cutter.add_hint(hint.clone()).unwrap();
        }
        let mut pieces = Vec::new();
        let mut emit = |piece| {
            pieces.push(piece);
            Ok(())
        };
        // Odd piece sizes: the cuts must not depend on them.
        for piece in run.payload.chunks(1000) {
            cutter
                .push(Bytes::copy_from_slice(piece), &mut emit)
                .unwrap();
        }
        cutter.finish(&mut emit).unwrap();

        let mut payload = Vec::new();
        let mut chunks = Vec::new();
        let mut new_bytes = 0;
        for piece in pieces {
            match piece {
                StreamPiece::Chunk(data) => {
                    let digest = openssl::sha::sha256(&data);
                    if self.chunks.insert(digest, data.to_vec()).is_none() {
                        new_bytes += data.len() as u64;
                    }
                    payload.extend_from_slice(&data);
                    chunks.push((payload.len() as u64, digest));
                }
                StreamPiece::Injected(inject) => {
                    assert_eq!(inject.boundary, payload.len() as u64);
                    for chunk in &inject.chunks {
                        let data = &self.chunks[&chunk.digest];
                        assert_eq!(data.len() as u64, chunk.size);
                        payload.extend_from_slice(data);
                        chunks.push((payload.len() as u64, chunk.digest));
                    }
                }
            }
        }
        assert_eq!(run.stats.payload_size, Some(payload.len() as u64));
        super::super::reuse::tests::write_index(&index_path, &chunks);
        Generation {
            meta: run.meta.clone(),
            payload,
            index_path,
            chunks,
            new_bytes,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    path: PathBuf,
    kind: EntryKind,
    metadata: Metadata,
    contents: Option<Vec<u8>>,
}

/// All entries with file contents; payload offsets are blanked (they legitimately differ).
fn decode(meta: &[u8], payload: &[u8]) -> Vec<Item> {
    let mut decoder = Decoder::new(meta, Some(payload)).unwrap();
    let mut items = Vec::new();
    while let Some(entry) = decoder.next_entry().unwrap() {
        let mut kind = entry.kind.clone();
        let contents = match &mut kind {
            EntryKind::File { payload_offset, .. } => {
                *payload_offset = None;
                let mut data = Vec::new();
                decoder.contents().unwrap().read_to_end(&mut data).unwrap();
                Some(data)
            }
            _ => None,
        };
        items.push(Item {
            path: entry.path.clone(),
            kind,
            metadata: entry.metadata.clone(),
            contents,
        });
    }
    items
}

/// The tree as a plain split archive of it decodes (the reference for "same tree").
fn decode_source(root: &Path) -> Vec<Item> {
    let run = archive(root, None);
    assert!(run.injections.is_empty());
    decode(&run.meta, &run.payload)
}

/// `next` is `previous` again: the same payload stream in the same chunks (the start and tail
/// markers are chunks of their own, everything between is injected).
fn assert_same_generation(previous: &Generation, next: &Generation) {
    assert!(next.payload == previous.payload);
    assert_eq!(next.chunks, previous.chunks);
}

fn contents_of(items: &[Item], path: &str) -> Vec<u8> {
    items
        .iter()
        .find(|item| item.path == Path::new(path))
        .and_then(|item| item.contents.clone())
        .unwrap_or_else(|| panic!("{path} not in archive"))
}

#[test]
fn without_reference_everything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).unwrap();
    let files = build_tree(&root);
    let run = archive(&root, None);
    assert_eq!(run.stats.files_read, files);
    assert_eq!(run.stats.files, files);
    assert_eq!(run.stats.hardlinks, 1);
    assert_eq!(run.stats.reused_files, 0);
    assert_eq!(run.stats.reencoded_files, 0);
    assert!(run.injections.is_empty());
    assert!(run.messages.is_empty(), "{:?}", run.messages);
    // Same bytes as the plain split archiver.
    let mut meta = Vec::new();
    let mut payload = Vec::new();
    create_archive_split(
        root.as_path(),
        &mut meta,
        &mut payload,
        Flags::DEFAULT,
        PxarCreateOptions::default(),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(meta, run.meta);
    assert_eq!(payload, run.payload);
}

#[test]
fn unchanged_tree_reuses_every_file_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).unwrap();
    let files = build_tree(&root);
    let mut store = Store::default();

    let first = store.upload(&archive(&root, None), dir.path().join("1.didx"));
    let first_items = decode(&first.meta, &first.payload);
    assert_eq!(first_items, decode_source(&root));

    // Same size, same mtime, other bytes: only a run that reads the file would see them.
    let old = std::fs::read(root.join("d1/f03")).unwrap();
    let new = pseudo_random(old.len(), 4242);
    overwrite_keeping_mtime(&root.join("d1/f03"), &new);

    let run = archive(&root, Some(first.reference(512)));
    assert_eq!(run.stats.files_read, 0, "{:?}", run.stats);
    assert_eq!(run.stats.reused_files, files);
    assert_eq!(run.stats.files, files);
    assert_eq!(run.stats.reencoded_files, 0);
    assert_eq!(run.stats.reuse_rejected_files, 0);
    assert_eq!(run.stats.hardlinks, 1);
    let reused: u64 = first_items
        .iter()
        .filter_map(|item| item.contents.as_ref())
        .map(|c| c.len() as u64)
        .sum();
    assert_eq!(run.stats.reused_bytes, reused);
    // Only the start and tail markers are written (chunks of their own); every previous
    // chunk between them is injected once, without padding.
    assert_eq!(run.payload.len(), 32);
    assert_eq!(run.stats.injected_bytes, first.payload.len() as u64 - 32);
    assert_eq!(run.stats.injected_chunks, first.chunks.len() as u64 - 2);
    assert_eq!(run.stats.padding_bytes, 0);
    let summary = run
        .messages
        .iter()
        .position(|m| m == "Change detection summary:")
        .unwrap_or_else(|| panic!("{:?}", run.messages));
    assert_eq!(run.messages.len(), summary + 5, "{:?}", run.messages);
    assert!(run.messages[summary + 2].contains(&format!("{files} unchanged")));

    let second = store.upload(&run, dir.path().join("2.didx"));
    let second_items = decode(&second.meta, &second.payload);
    assert_eq!(second_items, first_items);
    assert_eq!(contents_of(&second_items, "/d1/f03"), old);
    assert_same_generation(&first, &second);
}

#[test]
fn changed_new_and_deleted_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).unwrap();
    let files = build_tree(&root);
    let mut store = Store::default();
    let first = store.upload(&archive(&root, None), dir.path().join("1.didx"));
    // A second generation made of injected chunks serves as reference for the third.
    let second = store.upload(
        &archive(&root, Some(first.reference(512))),
        dir.path().join("2.didx"),
    );

    change(&root.join("d1/f04"), &pseudo_random(12_345, 9));
    write(&root.join("d1/f04b"), &pseudo_random(5_000, 10));
    std::fs::remove_file(root.join("d1/empty")).unwrap();

    let run = archive(&root, Some(second.reference(512)));
    assert_eq!(run.stats.files_read, 2, "{:?}", run.stats);
    assert_eq!(run.stats.reencoded_files, 2);
    assert_eq!(run.stats.reencoded_bytes, 12_345 + 5_000);
    assert_eq!(run.stats.reuse_rejected_files, 0);
    assert_eq!(run.stats.reused_files, files - 2);
    assert_eq!(run.stats.files, files);
    // The written payload holds the two fresh PAYLOAD items and the markers.
    assert_eq!(run.payload.len() as u64, 32 + 2 * 16 + 12_345 + 5_000);
    assert!(run.stats.padding_bytes * 10 <= run.stats.injected_bytes);

    let third = store.upload(&run, dir.path().join("3.didx"));
    let items = decode(&third.meta, &third.payload);
    assert_eq!(items, decode_source(&root));
    assert_eq!(contents_of(&items, "/d1/f04"), pseudo_random(12_345, 9));
    assert!(!items.iter().any(|i| i.path == Path::new("/d1/empty")));
}

#[test]
fn metadata_change_alone_forces_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).unwrap();
    let files = build_tree(&root);
    let mut store = Store::default();
    let first = store.upload(&archive(&root, None), dir.path().join("1.didx"));
    std::fs::set_permissions(
        root.join("d2/f01"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let run = archive(&root, Some(first.reference(512)));
    assert_eq!(run.stats.files_read, 1);
    assert_eq!(run.stats.reused_files, files - 1);
    let next = store.upload(&run, dir.path().join("2.didx"));
    assert_eq!(decode(&next.meta, &next.payload), decode_source(&root));
}

#[test]
fn padding_rule_rejects_lonely_small_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).unwrap();
    write(&root.join("a"), &pseudo_random(64_000, 1));
    write(&root.join("b"), &pseudo_random(100, 2));
    write(&root.join("c"), &pseudo_random(64_000, 3));
    let mut store = Store::default();
    let first = store.upload(&archive(&root, None), dir.path().join("1.didx"));

    change(&root.join("a"), &pseudo_random(64_000, 4));
    change(&root.join("c"), &pseudo_random(64_000, 5));
    // `b` is unchanged, but its 116 payload bytes share a chunk of at least 1 KiB with its
    // changed neighbours: more than 10 % padding.
    let run = archive(&root, Some(first.reference(512)));
    assert_eq!(run.stats.reuse_rejected_files, 1, "{:?}", run.stats);
    assert_eq!(run.stats.files_read, 3);
    assert_eq!(run.stats.reused_files, 0);
    assert_eq!(run.stats.injected_bytes, 0);
    assert!(run.injections.is_empty());
    let next = store.upload(&run, dir.path().join("2.didx"));
    assert_eq!(decode(&next.meta, &next.payload), decode_source(&root));
}

#[test]
fn padding_rule_accepts_long_run_with_partial_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).unwrap();
    write(&root.join("a_big"), &pseudo_random(50_000, 1));
    for i in 0..200 {
        write(
            &root.join(format!("m{i:03}")),
            &pseudo_random(2_000, 100 + i),
        );
    }
    write(&root.join("z_big"), &pseudo_random(50_000, 2));
    let mut store = Store::default();
    let first = store.upload(&archive(&root, None), dir.path().join("1.didx"));

    change(&root.join("a_big"), &pseudo_random(50_000, 3));
    change(&root.join("z_big"), &pseudo_random(50_000, 4));
    let run = archive(&root, Some(first.reference(512)));
    assert_eq!(run.stats.reused_files, 200, "{:?}", run.stats);
    assert_eq!(run.stats.files_read, 2);
    assert_eq!(run.stats.reuse_rejected_files, 0);
    // The run starts and ends inside chunks shared with the changed files.
    let range = 200 * (16 + 2_000);
    assert_eq!(
        run.stats.padding_bytes,
        run.stats.injected_bytes - range,
        "{:?}",
        run.stats
    );
    assert!(run.stats.padding_bytes > 0);
    assert!(!padding_too_large(range, run.stats.padding_bytes));
    assert_eq!(run.injections.len(), 1);
    let next = store.upload(&run, dir.path().join("2.didx"));
    assert_eq!(decode(&next.meta, &next.payload), decode_source(&root));
}

/// 400 files of 300 bytes (PAYLOAD items of 316 bytes, four to a chunk); returns the root.
fn small_files_tree(dir: &Path) -> PathBuf {
    let root = dir.join("src");
    std::fs::create_dir(&root).unwrap();
    for i in 0..400 {
        write(&root.join(format!("f{i:03}")), &pseudo_random(300, i));
    }
    root
}

#[test]
fn scattered_small_changes_reuse_the_chunks_around_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = small_files_tree(dir.path());
    let mut store = Store::default();
    let first = store.upload(&archive(&root, None), dir.path().join("1.didx"));
    assert!(first.chunks.len() > 100, "{}", first.chunks.len());

    // Every 20th file changes: every run of 19 unchanged files shares its first and last
    // chunk with a changed file, far more than 10 % padding. The relaxed rule re-uses the
    // runs anyway (those chunks are injected before and after the changed file), so only the
    // changed files are read and stored.
    let changed: Vec<u32> = (10..400).step_by(20).collect();
    for &i in &changed {
        change(
            &root.join(format!("f{i:03}")),
            &pseudo_random(300, 1000 + i),
        );
    }
    let run = archive(&root, Some(first.reference(512)));
    assert_eq!(
        run.stats.files_read,
        changed.len() as u64,
        "{:?}",
        run.stats
    );
    assert_eq!(run.stats.reuse_rejected_files, 0);
    assert!(run.stats.padding_bytes > 0);
    assert!(run.stats.padding_bytes <= first.payload.len() as u64 / 2);
    let next = store.upload(&run, dir.path().join("2.didx"));
    assert!(
        next.new_bytes <= changed.len() as u64 * 316,
        "{} new bytes",
        next.new_bytes
    );
    assert_eq!(decode(&next.meta, &next.payload), decode_source(&root));

    // Unchanged again: the padded generation is kept as it is.
    let run = archive(&root, Some(next.reference(512)));
    assert_eq!(run.stats.files_read, 0, "{:?}", run.stats);
    let again = store.upload(&run, dir.path().join("3.didx"));
    assert_eq!(again.new_bytes, 0);
    assert_same_generation(&next, &again);
}

#[test]
fn padding_budget_limits_the_relaxed_rule() {
    let dir = tempfile::tempdir().unwrap();
    let root = small_files_tree(dir.path());
    let mut store = Store::default();
    let first = store.upload(&archive(&root, None), dir.path().join("1.didx"));

    // Every 3rd file changes: re-using all runs of two files would make padding of about a
    // chunk per change, more than the budget of half the previous stream.
    for i in (1..400).step_by(3) {
        change(
            &root.join(format!("f{i:03}")),
            &pseudo_random(300, 2000 + i),
        );
    }
    let run = archive(&root, Some(first.reference(512)));
    assert!(run.stats.reused_files > 0, "{:?}", run.stats);
    assert!(run.stats.reuse_rejected_files > 0, "{:?}", run.stats);
    assert!(
        run.stats.padding_bytes <= first.payload.len() as u64 / 2,
        "{:?}",
        run.stats
    );
    let next = store.upload(&run, dir.path().join("2.didx"));
    assert_eq!(decode(&next.meta, &next.payload), decode_source(&root));
}

#[test]
fn runs_split_by_a_deleted_file_share_the_held_back_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).unwrap();
    // PAYLOAD items of 416 bytes: a suggested boundary is taken once a chunk holds at least
    // 1 KiB, so every chunk holds three files (f18, f19 and f20 share one).
    for i in 0..40 {
        write(&root.join(format!("f{i:02}")), &pseudo_random(400, i));
    }
    let mut store = Store::default();
    let first = store.upload(&archive(&root, None), dir.path().join("1.didx"));
    let sizes: Vec<u64> = first
        .chunks
        .iter()
        .scan(0, |end, c| {
            let size = c.0 - *end;
            *end = c.0;
            Some(size)
        })
        .collect();
    assert_eq!(sizes[..3], [16, 3 * 416, 3 * 416], "{sizes:?}");

    std::fs::remove_file(root.join("f19")).unwrap();
    let run = archive(&root, Some(first.reference(512)));
    assert_eq!(run.stats.reused_files, 39, "{:?}", run.stats);
    assert_eq!(run.stats.files_read, 0);
    // Both runs live in one injection: the chunk holding f18 and f20 is injected once, so
    // every previous chunk is injected exactly once; f19's item is the only padding.
    assert_eq!(run.injections.len(), 1);
    assert_eq!(run.stats.injected_bytes, first.payload.len() as u64 - 32);
    assert_eq!(run.stats.padding_bytes, 416);
    let next = store.upload(&run, dir.path().join("2.didx"));
    assert_same_generation(&first, &next);
    assert_eq!(decode(&next.meta, &next.payload), decode_source(&root));
}

#[test]
fn cache_limit_flushes_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).unwrap();
    for i in 0..32 {
        write(&root.join(format!("f{i:02}")), &pseudo_random(20_000, i));
    }
    write(&root.join("g"), &pseudo_random(100, 99));
    write(&root.join("h"), &pseudo_random(20_000, 98));
    let mut store = Store::default();
    let first = store.upload(&archive(&root, None), dir.path().join("1.didx"));

    // Runs of 8 files: each flush is followed by a run continuing in its last chunk, so
    // nothing is injected twice.
    let run = archive(&root, Some(first.reference(8)));
    assert_eq!(run.stats.files_read, 0, "{:?}", run.stats);
    assert_eq!(run.stats.reused_files, 34);
    let next = store.upload(&run, dir.path().join("2.didx"));
    assert_same_generation(&first, &next);
    assert_eq!(decode(&next.meta, &next.payload), decode_source(&root));

    // One file per run: `g` (116 bytes) shares its chunk with the start of `h`, but a run
    // flushed by the full cache is not charged for the rest of its last chunk (the next run
    // continues there), so it is re-used too and the generation is the same again.
    let run = archive(&root, Some(first.reference(1)));
    assert_eq!(run.stats.files_read, 0, "{:?}", run.stats);
    assert_eq!(run.stats.reuse_rejected_files, 0);
    let next = store.upload(&run, dir.path().join("3.didx"));
    assert_same_generation(&first, &next);
    assert_eq!(decode(&next.meta, &next.payload), decode_source(&root));
}

#[test]
fn hardlinks_to_cached_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).unwrap();
    write(&root.join("a"), &pseudo_random(30_000, 1));
    std::fs::hard_link(root.join("a"), root.join("b")).unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::hard_link(root.join("a"), root.join("sub/c")).unwrap();
    write(&root.join("z"), &pseudo_random(30_000, 2));
    let mut store = Store::default();
    let first = store.upload(&archive(&root, None), dir.path().join("1.didx"));
    let run = archive(&root, Some(first.reference(512)));
    assert_eq!(run.stats.reused_files, 2, "{:?}", run.stats);
    assert_eq!(run.stats.hardlinks, 2);
    assert_eq!(run.stats.files_read, 0);
    // One run: the hardlinks did not split it.
    assert_eq!(run.injections.len(), 1);
    let next = store.upload(&run, dir.path().join("2.didx"));
    assert_same_generation(&first, &next);
    let items = decode(&next.meta, &next.payload);
    assert_eq!(items, decode_source(&root));
    assert!(items.iter().any(|i| i.path == Path::new("/sub/c")
        && matches!(&i.kind, EntryKind::Hardlink { target, .. } if target == Path::new("a"))));
}

#[test]
fn reference_must_be_a_split_archive() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).unwrap();
    write(&root.join("a"), b"x");
    let mut v1 = Vec::new();
    create_archive(
        root.as_path(),
        &mut v1,
        Flags::DEFAULT,
        PxarCreateOptions::default(),
        None,
        &mut |_| {},
    )
    .unwrap();
    let index_path = dir.path().join("x.didx");
    super::super::reuse::tests::write_index(&index_path, &[(10, [0; 32])]);
    let index = DynamicIndexReader::open(&index_path).unwrap();
    let len = v1.len() as u64;
    let err = PreviousArchiveRef::new(v1, len, index)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not a split"), "{err}");
}
