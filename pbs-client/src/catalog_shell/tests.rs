//! Shell tests against a real archive and catalog built from a temporary directory.

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use pbs_datastore::catalog::{BackupCatalogWriter, CatalogReader, CatalogWriter};

use super::*;
use crate::pxar::{create_archive, Flags, PxarCreateOptions};

struct Fixture {
    _dir: tempfile::TempDir,
    archive: fs::File,
    archive_size: u64,
    catalog: Vec<u8>,
}

/// root/ with etc/{hosts, passwd, hosts.link (hardlink), sub/deep.txt}, data.bin,
/// abs -> /etc, rel -> ../etc, self -> self, file-link -> /data.bin.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("etc/sub")).unwrap();
    fs::write(src.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::write(src.join("etc/passwd"), "root:x:0:0\n").unwrap();
    fs::hard_link(src.join("etc/hosts"), src.join("etc/hosts.link")).unwrap();
    fs::write(src.join("etc/sub/deep.txt"), "deep").unwrap();
    fs::write(src.join("data.bin"), vec![7u8; 5000]).unwrap();
    fs::set_permissions(src.join("data.bin"), fs::Permissions::from_mode(0o4750)).unwrap();
    symlink("/etc", src.join("abs")).unwrap();
    symlink("../etc", src.join("rel")).unwrap();
    symlink("self", src.join("self")).unwrap();
    symlink("/data.bin", src.join("file-link")).unwrap();

    let archive_path = dir.path().join("root.pxar");
    let mut catalog = CatalogWriter::new(Vec::new()).unwrap();
    catalog.start_directory(b"root.pxar.didx").unwrap();
    create_archive(
        src.as_path(),
        fs::File::create(&archive_path).unwrap(),
        Flags::DEFAULT,
        PxarCreateOptions::default(),
        Some(&mut catalog as &mut dyn BackupCatalogWriter),
        &mut |_| {},
    )
    .unwrap();
    BackupCatalogWriter::end_directory(&mut catalog).unwrap();
    let catalog = catalog.finish().unwrap();
    let archive = fs::File::open(&archive_path).unwrap();
    let archive_size = archive.metadata().unwrap().len();
    Fixture {
        _dir: dir,
        archive,
        archive_size,
        catalog,
    }
}

fn shell(fixture: &Fixture) -> Shell<Cursor<Vec<u8>>, fs::File> {
    let catalog = CatalogReader::new(Cursor::new(fixture.catalog.clone()));
    Shell::for_archive(
        catalog,
        "root.pxar.didx",
        fixture.archive.try_clone().unwrap(),
        fixture.archive_size,
    )
    .unwrap()
}

/// Runs `lines`; returns (stdout, stderr).
fn run(shell: &mut Shell<Cursor<Vec<u8>>, fs::File>, lines: &[&str]) -> (String, String) {
    let mut source = lines
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .into_iter();
    let mut out = Vec::new();
    let mut err = Vec::new();
    shell.run(&mut source, &mut out, &mut err).unwrap();
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn navigation_and_listing() {
    let fixture = fixture();
    let mut shell = shell(&fixture);
    assert_eq!(shell.prompt(), "pxar:/ > ");
    let (out, err) = run(
        &mut shell,
        &[
            "pwd", "cd etc", "pwd", "ls", "cd sub", "pwd", "cd ../..", "pwd",
        ],
    );
    assert_eq!(err, "");
    assert_eq!(
        out,
        "\"/\"\n\"/etc\"\nhosts\nhosts.link\npasswd\nsub\n\"/etc/sub\"\n\"/\"\n"
    );

    let (out, err) = run(
        &mut shell,
        &[
            "cd /etc/sub",
            "cd ../../../..",
            "pwd",
            "cd etc/sub",
            "cd",
            "pwd",
        ],
    );
    assert_eq!((out.as_str(), err.as_str()), ("\"/\"\n\"/\"\n", ""));

    let (out, _) = run(&mut shell, &["cd etc/sub"]);
    assert_eq!(out, "");
    assert_eq!(shell.prompt(), "pxar:/etc/sub > ");
    run(&mut shell, &["cd /"]);

    let (out, err) = run(
        &mut shell,
        &[
            "ls",
            "ls etc/hosts",
            "ls abs",
            "ls abs/",
            "ls abs/.",
            "ls rel/sub",
        ],
    );
    assert_eq!(err, "");
    assert_eq!(
        root_listing(&mut shell),
        "abs\ndata.bin\netc\nfile-link\nrel\nself\n"
    );
    assert_eq!(
        out,
        "abs\ndata.bin\netc\nfile-link\nrel\nself\nhosts\nabs\nabs\nhosts\nhosts.link\npasswd\nsub\ndeep.txt\n"
    );

    let (out, err) = run(
        &mut shell,
        &[
            "cd nothing",
            "cd data.bin",
            "cd abs",
            "cd abs/sub",
            "ls missing",
            "ls self/.",
            "ls rel/x",
        ],
    );
    assert_eq!(out, "");
    assert_eq!(
        err,
        "Error: no such file or directory: \"nothing\"\n\
         Error: not a directory\n\
         Error: not a directory\n\
         Error: target is a symlink\n\
         Error: no such file or directory: \"missing\"\n\
         Error: too many levels of symbolic links\n\
         Error: no such file or directory: \"x\"\n"
    );
    let (_, err) = run(&mut shell, &["bogus", "stat", "ls 'unbalanced"]);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with("Error: no such command 'bogus'"),
        "{err}"
    );
    assert!(lines[1].contains("'path': missing argument"), "{err}");
    assert_eq!(
        lines[2], "Error: unterminated single quote in 'ls 'unbalanced'",
        "{err}"
    );
}

/// The archive root's listing in catalog (archive) order.
fn root_listing(shell: &mut Shell<Cursor<Vec<u8>>, fs::File>) -> String {
    let root = shell.position[0].clone();
    let mut out = String::new();
    for entry in shell.catalog.read_dir(&root).unwrap() {
        out.push_str(std::str::from_utf8(&entry.name).unwrap());
        out.push('\n');
    }
    out
}

#[test]
fn stat_output() {
    let fixture = fixture();
    let mut shell = shell(&fixture);
    let (out, err) = run(
        &mut shell,
        &[
            "stat data.bin",
            "stat abs",
            "stat etc",
            "stat file-link/.",
            "stat etc/hosts.link",
        ],
    );
    assert_eq!(err, "");
    let blocks: Vec<&str> = out.split_inclusive("\nModify: ").collect();
    assert!(out.starts_with("  File: /data.bin\n  Size: 5000          Type: file\nAccess: (4750/-rwsr-x---  )  Uid: "), "{out}");
    assert!(blocks.len() >= 5, "{out}");
    assert!(out.contains("  File: /abs -> \"/etc\"\n  Size: 0             Type: symlink\nAccess: (777/lrwxrwxrwx  )"), "{out}");
    assert!(
        out.contains("  File: /etc\n  Size: 0             Type: directory\nAccess: ("),
        "{out}"
    );
    assert!(out.contains("  File: /data.bin\n  Size: 5000 "), "{out}");
    assert!(out.contains("  File: /etc/hosts.link -> \"etc/hosts\"\n  Size: 0             Type: symlink\nAccess: (0/L---------  )"), "{out}");
    let uid = unsafe { libc::getuid() };
    assert!(out.contains(&format!("Uid: {uid:<5} Gid: ")), "{out}");
    let mtime = fs::metadata(fixture._dir.path().join("src/data.bin")).unwrap();
    let expected = pbs_api_types::time::strftime_local(
        "%Y-%m-%d %H:%M:%S",
        std::os::unix::fs::MetadataExt::mtime(&mtime),
    )
    .unwrap();
    assert!(out.contains(&format!("Modify: {expected}\n")), "{out}");
}

#[test]
fn selection_and_find() {
    let fixture = fixture();
    let mut shell = shell(&fixture);
    let (out, err) = run(
        &mut shell,
        &[
            "select etc/hosts",
            "select /etc/hosts",
            "cd etc",
            "select ../abs/passwd",
            "select sub",
            "list-selected --patterns",
            "list-selected",
            "deselect sub",
            "deselect sub",
            "list-selected",
            "clear-selected",
            "list-selected --patterns",
            "restore-selected /nonexistent",
        ],
    );
    assert_eq!(
        out,
        "added path: \"/etc/hosts\"\n\
         path already selected: \"/etc/hosts\"\n\
         added path: \"/etc/passwd\"\n\
         added path: \"/etc/sub\"\n\
         \"/etc/hosts\"\n\"/etc/passwd\"\n\"/etc/sub\"\n\
         /etc/hosts\n/etc/passwd\n/etc/sub\n\
         removed path from selection: \"/etc/sub\"\n\
         path not selected: \"/etc/sub\"\n\
         /etc/hosts\n/etc/passwd\n\
         cleared selection\n"
    );
    assert_eq!(err, "Error: no entries selected\n");

    let (out, err) = run(
        &mut shell,
        &[
            "find '*.txt'",
            "find etc/ --select",
            "find '!*'",
            "find nothing-matches --select",
            "list-selected --patterns",
            "find 'a['",
        ],
    );
    assert_eq!(out, "/etc/sub/deep.txt\n/etc\n\"etc/\"\n");
    assert!(
        err.starts_with("Error: invalid match pattern \"a[\""),
        "{err}"
    );
    let (out, _) = run(&mut shell, &["list-selected"]);
    assert_eq!(out, "/etc\n");
}

fn read_tree(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let file_type = entry.file_type().unwrap();
            if file_type.is_dir() {
                found.push(format!("{rel}/"));
                pending.push(path);
            } else if file_type.is_symlink() {
                found.push(format!(
                    "{rel} -> {}",
                    fs::read_link(&path).unwrap().display()
                ));
            } else {
                found.push(format!(
                    "{rel} ({} bytes)",
                    fs::metadata(&path).unwrap().len()
                ));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn restores() {
    let fixture = fixture();
    let out_dir = tempfile::tempdir().unwrap();
    let target = |name: &str| out_dir.path().join(name);
    let mut shell = shell(&fixture);

    // A selected directory restores only itself (entries below it are not selected).
    let (_, err) = run(
        &mut shell,
        &[
            "select etc/sub",
            "select /etc/hosts",
            "select abs",
            &format!("restore-selected {}", target("sel").display()),
        ],
    );
    assert_eq!(err, "");
    assert_eq!(
        read_tree(&target("sel")),
        ["abs -> /etc", "etc/", "etc/hosts (20 bytes)", "etc/sub/"]
    );

    // find --select with a recursive pattern restores the whole subtree.
    let (_, err) = run(
        &mut shell,
        &[
            "clear-selected",
            "find '/etc/**' --select",
            &format!("restore-selected {}", target("glob").display()),
        ],
    );
    assert_eq!(err, "");
    assert_eq!(
        read_tree(&target("glob")),
        [
            "etc/",
            "etc/hosts (20 bytes)",
            "etc/hosts.link (20 bytes)",
            "etc/passwd (11 bytes)",
            "etc/sub/",
            "etc/sub/deep.txt (4 bytes)"
        ]
    );

    // restore of everything, and limited by a pattern; always from the archive root.
    let (_, err) = run(
        &mut shell,
        &[
            "cd etc",
            &format!("restore {}", target("all/nested").display()),
            &format!("restore {} --pattern '*.txt'", target("txt").display()),
        ],
    );
    assert_eq!(err, "");
    let all = read_tree(&target("all/nested"));
    assert_eq!(
        all,
        [
            "abs -> /etc",
            "data.bin (5000 bytes)",
            "etc/",
            "etc/hosts (20 bytes)",
            "etc/hosts.link (20 bytes)",
            "etc/passwd (11 bytes)",
            "etc/sub/",
            "etc/sub/deep.txt (4 bytes)",
            "file-link -> /data.bin",
            "rel -> ../etc",
            "self -> self",
        ]
    );
    assert_eq!(
        fs::read(target("all/nested/data.bin")).unwrap(),
        vec![7u8; 5000]
    );
    assert_eq!(
        read_tree(&target("txt")),
        ["etc/", "etc/sub/", "etc/sub/deep.txt (4 bytes)"]
    );

    fs::write(target("file"), "x").unwrap();
    let (_, err) = run(
        &mut shell,
        &[&format!("restore {}/sub", target("file").display())],
    );
    assert!(err.starts_with("Error: error creating directory "), "{err}");
}

#[test]
fn plan_reproduces_directory_quirk() {
    let fixture = fixture();
    let mut shell = shell(&fixture);
    let list = [MatchEntry::include(MatchPattern::literal(b"/etc".to_vec()))];
    let plan = shell.plan_restore(&list).unwrap();
    assert_eq!(plan.chosen, [b"/etc".to_vec()]);
    let mut excluded = plan.excluded.clone();
    excluded.sort();
    assert_eq!(
        excluded,
        [
            b"/etc/hosts".to_vec(),
            b"/etc/hosts.link".to_vec(),
            b"/etc/passwd".to_vec(),
            b"/etc/sub".to_vec()
        ]
    );
}

#[test]
fn help_and_exit() {
    let fixture = fixture();
    let mut shell = shell(&fixture);
    let (out, err) = run(&mut shell, &["help", "help stat", "exit", "pwd"]);
    assert_eq!(err, "");
    assert!(out.contains("restore-selected"), "{out}");
    assert!(
        out.starts_with("Usage:\n\ncd <path>\nclear-selected\n"),
        "{out}"
    );
    assert!(
        out.contains("\nUsage: stat <path>\n\nRead the metadata"),
        "{out}"
    );
    assert!(!out.contains("\"/\""), "exit must end the shell: {out}");
    let (out, _) = run(&mut shell, &[" exit", "pwd"]);
    assert_eq!(out, "\"/\"\n");
}

#[test]
fn completion() {
    let fixture = fixture();
    let mut shell = shell(&fixture);
    assert_eq!(shell.complete("li"), ["list-selected"]);
    assert_eq!(shell.complete("res"), ["restore", "restore-selected"]);
    assert_eq!(shell.complete("ls e"), ["etc/"]);
    assert_eq!(shell.complete("ls etc/h"), ["etc/hosts", "etc/hosts.link"]);
    assert_eq!(shell.complete("cd abs/s"), ["abs/sub/"]);
    assert_eq!(shell.complete("cd /etc/sub/"), ["/etc/sub/deep.txt"]);
    assert!(shell.complete("ls missing/").is_empty());
}
