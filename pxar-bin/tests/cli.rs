//! End-to-end tests of the `pxar` binary.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pxar::format::{mode, Stat, StatxTimestamp, XAttr};
use pxar::{Encoder, Metadata};

const PXAR: &str = env!("CARGO_BIN_EXE_pxar");

fn meta(file_mode: u64, secs: i64) -> Metadata {
    Metadata::from_stat(Stat {
        mode: file_mode,
        flags: 0,
        uid: 0,
        gid: 0,
        mtime: StatxTimestamp::new(secs, 0),
    })
}

fn encode<W: pxar::SeqWrite, P: pxar::SeqWrite>(encoder: &mut Encoder<W, P>) {
    let mut file = meta(mode::IFREG | 0o644, 1_700_000_000);
    file.xattrs = vec![XAttr::new(b"user.x".to_vec(), b"value".to_vec())];
    encoder
        .create_directory(b"a", &meta(mode::IFDIR | 0o755, 1_700_000_001))
        .unwrap();
    encoder
        .add_file(&file, b"f", 5, &mut &b"hello"[..])
        .unwrap();
    encoder
        .add_file(&meta(mode::IFREG | 0o600, 5), b"g", 3, &mut &b"abc"[..])
        .unwrap();
    encoder.finish_directory().unwrap();
    encoder
        .add_symlink(&meta(mode::IFLNK | 0o777, 7), b"l", b"a/f")
        .unwrap();
}

/// Writes a unified archive of `/a/f`, `/a/g` and the symlink `/l` and returns its path.
fn write_archive(dir: &Path) -> PathBuf {
    let mut encoder = Encoder::new_unified(Vec::new(), &meta(mode::IFDIR | 0o755, 1)).unwrap();
    encode(&mut encoder);
    let path = dir.join("test.pxar");
    std::fs::write(&path, encoder.finish().unwrap().0).unwrap();
    path
}

fn pxar(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(PXAR);
    for arg in args {
        cmd.arg(arg);
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn list_prints_one_quoted_path_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = write_archive(tmp.path());
    let out = pxar(&[&"list", &archive]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "\"/\"\n\"/a\"\n\"/a/f\"\n\"/a/g\"\n\"/l\"\n");

    let out = pxar(&[&"list", &archive, &"--verbose"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[2].starts_with("-rw-r--r-- "), "{}", lines[2]);
    assert!(
        lines[2].contains(" 5 2023-11-14 22:13:20 \"/a/f\""),
        "{}",
        lines[2]
    );
    assert!(lines[4].ends_with("\"/l\" -> \"a/f\""), "{}", lines[4]);
}

#[test]
fn extract_restores_files_and_honours_options() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = write_archive(tmp.path());
    let target = tmp.path().join("new/target");
    let out = pxar(&[&"extract", &archive, &target]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(target.join("a/f")).unwrap(), b"hello");
    assert_eq!(std::fs::read(target.join("a/g")).unwrap(), b"abc");
    assert_eq!(
        std::fs::read_link(target.join("l")).unwrap(),
        Path::new("a/f")
    );

    // Extracting again: the existing directory stops a strict run.
    let out = pxar(&[&"extract", &archive, &target, &"--strict"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr(&out).contains("\"/a\""), "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // Non-strict: errors are printed, the run completes.
    std::fs::write(target.join("a/g"), b"changed").unwrap();
    let out = pxar(&[&"extract", &archive, &target, &"--allow-existing-dirs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("\"/a/f\""), "{}", stderr(&out));
    assert_eq!(std::fs::read(target.join("a/g")).unwrap(), b"changed");

    let out = pxar(&[
        &"extract",
        &archive,
        &target,
        &"--allow-existing-dirs",
        &"--overwrite",
        &"--strict",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(target.join("a/g")).unwrap(), b"abc");
}

#[test]
fn extract_with_patterns_and_files_from() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = write_archive(tmp.path());
    let target = tmp.path().join("p");
    let out = pxar(&[
        &"extract",
        &archive,
        &target,
        &"--pattern",
        &"/a/g",
        &"--verbose",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "\"/a/g\"\n");
    assert!(target.join("a/g").exists());
    assert!(!target.join("a/f").exists());
    assert!(!target.join("l").exists());

    let list = tmp.path().join("list");
    std::fs::write(&list, "l\n/a/f\n").unwrap();
    let target = tmp.path().join("q");
    let out = pxar(&[&"extract", &archive, &target, &"--files-from", &list]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(target.join("a/f").exists() && target.join("l").exists());
    assert!(!target.join("a/g").exists());
}

#[test]
fn split_archives_need_the_payload_input() {
    let tmp = tempfile::tempdir().unwrap();
    let mut encoder = Encoder::new(
        Vec::new(),
        &meta(mode::IFDIR | 0o755, 1),
        Some(Vec::new()),
        Some(&b"the prelude"[..]),
    )
    .unwrap();
    encode(&mut encoder);
    let (meta_bytes, payload) = encoder.finish().unwrap();
    let mpxar = tmp.path().join("x.mpxar");
    let ppxar = tmp.path().join("x.ppxar");
    std::fs::write(&mpxar, meta_bytes).unwrap();
    std::fs::write(&ppxar, payload.unwrap()).unwrap();

    let target = tmp.path().join("t");
    let out = pxar(&[&"extract", &mpxar, &target]);
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr(&out).contains("--payload-input"), "{}", stderr(&out));

    let prelude = tmp.path().join("prelude");
    let out = pxar(&[
        &"extract",
        &mpxar,
        &target,
        &"--payload-input",
        &ppxar,
        &"--prelude-target",
        &prelude,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(target.join("a/f")).unwrap(), b"hello");
    assert_eq!(std::fs::read(prelude).unwrap(), b"the prelude");

    let out = pxar(&[&"list", &mpxar, &"--payload-input", &ppxar]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 5);
}

#[test]
fn damaged_archives_report_the_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = write_archive(tmp.path());
    let bytes = std::fs::read(&archive).unwrap();
    let truncated = tmp.path().join("truncated.pxar");
    std::fs::write(&truncated, &bytes[..bytes.len() - 30]).unwrap();
    for command in ["list", "extract"] {
        let target = tmp.path().join(command);
        let out = match command {
            "list" => pxar(&[&command, &truncated]),
            _ => pxar(&[&command, &truncated, &target]),
        };
        assert_eq!(out.status.code(), Some(255), "{command}");
        assert!(
            stderr(&out).contains("offset"),
            "{command}: {}",
            stderr(&out)
        );
    }
    let out = pxar(&[&"list", &tmp.path().join("missing.pxar")]);
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr(&out).contains("missing.pxar"), "{}", stderr(&out));
}

#[test]
fn unknown_options_are_rejected() {
    let out = pxar(&[&"extract", &"x.pxar", &"--no-such-option"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr(&out).contains("no-such-option"), "{}", stderr(&out));
}

/// Why mounting cannot be tested here, if it cannot.
fn fuse_unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse does not exist".into());
    }
    match Command::new("fusermount3").arg("--version").output() {
        Ok(_) => None,
        Err(err) => Some(format!("fusermount3 is not available ({err})")),
    }
}

fn wait_for(path: &Path) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Unmount, retrying while busy: a process forked concurrently by another test may briefly
/// hold copies of this test's file descriptors until it execs.
fn unmount(mountpoint: &Path) {
    for _ in 0..50 {
        let status = Command::new("fusermount3")
            .arg("-u")
            .arg(mountpoint)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("fusermount3 -u {mountpoint:?} kept failing");
}

/// Lazily unmounts on drop, so a failing assertion does not leave a mount behind.
struct UnmountGuard<'a>(&'a Path);

impl Drop for UnmountGuard<'_> {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(self.0)
            .stderr(Stdio::null())
            .status();
    }
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid strings and buffer.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

fn check_mounted_tree(mountpoint: &Path) {
    assert_eq!(std::fs::read(mountpoint.join("a/f")).unwrap(), b"hello");
    let mut names: Vec<String> = std::fs::read_dir(mountpoint.join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["f", "g"]);
    assert_eq!(
        std::fs::read_link(mountpoint.join("l")).unwrap(),
        Path::new("a/f")
    );
    assert_eq!(std::fs::read(mountpoint.join("l")).unwrap(), b"hello");
    let st = std::fs::metadata(mountpoint.join("a/f")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::mtime(&st), 1_700_000_000);
    assert_eq!(st.len(), 5);
    assert_eq!(
        get_xattr(&mountpoint.join("a/f"), "user.x").as_deref(),
        Some(&b"value"[..])
    );
    assert!(
        std::fs::write(mountpoint.join("a/new"), b"x").is_err(),
        "read-only mount"
    );
}

#[test]
fn mount_serves_the_archive() {
    if let Some(reason) = fuse_unavailable() {
        eprintln!("skipping FUSE mount test: {reason}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let archive = write_archive(tmp.path());
    let mountpoint = tmp.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();

    // Foreground (--verbose): the process serves until unmounted.
    let mut child = Command::new(PXAR)
        .arg("mount")
        .arg(&archive)
        .arg(&mountpoint)
        .arg("--verbose")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if !wait_for(&mountpoint.join("a")) {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "skipping FUSE mount test: mounting failed here: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let guard = UnmountGuard(&mountpoint);
    check_mounted_tree(&mountpoint);
    unmount(&mountpoint);
    drop(guard);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!mountpoint.join("a").exists());

    // Background: the command returns once the mount is up.
    let out = pxar(&[&"mount", &archive, &mountpoint]);
    assert!(out.status.success(), "{}", stderr(&out));
    let _guard = UnmountGuard(&mountpoint);
    check_mounted_tree(&mountpoint);
    unmount(&mountpoint);
}

#[test]
fn mount_reports_a_bad_archive() {
    if let Some(reason) = fuse_unavailable() {
        eprintln!("skipping FUSE mount test: {reason}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.pxar");
    std::fs::write(&bad, b"not an archive at all, definitely not").unwrap();
    let out = pxar(&[&"mount", &bad, &tmp.path()]);
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr(&out).contains("bad.pxar"), "{}", stderr(&out));
}

#[test]
fn mount_lists_large_directories_and_shares_hardlink_inodes() {
    if let Some(reason) = fuse_unavailable() {
        eprintln!("skipping FUSE mount test: {reason}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut encoder = Encoder::new_unified(Vec::new(), &meta(mode::IFDIR | 0o755, 1)).unwrap();
    encoder
        .create_directory(b"many", &meta(mode::IFDIR | 0o755, 2))
        .unwrap();
    let mut names: Vec<String> = (0..500)
        .map(|i| format!("file-with-a-long-name-{i:04}"))
        .collect();
    names.sort();
    let mut first = None;
    for name in &names {
        let link = encoder
            .add_file(
                &meta(mode::IFREG | 0o644, 3),
                name.as_bytes(),
                1,
                &mut &b"x"[..],
            )
            .unwrap();
        first.get_or_insert((name.clone(), link));
    }
    encoder.finish_directory().unwrap();
    let (first_name, link) = first.unwrap();
    encoder
        .add_hardlink(b"zlink", format!("many/{first_name}").as_bytes(), link)
        .unwrap();
    let archive = tmp.path().join("many.pxar");
    std::fs::write(&archive, encoder.finish().unwrap().0).unwrap();
    let mountpoint = tmp.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();

    let out = pxar(&[&"mount", &archive, &mountpoint]);
    if !out.status.success() {
        eprintln!(
            "skipping FUSE mount test: mounting failed here: {}",
            stderr(&out)
        );
        return;
    }
    let _guard = UnmountGuard(&mountpoint);
    let mut listed: Vec<String> = std::fs::read_dir(mountpoint.join("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let link = std::fs::metadata(mountpoint.join("zlink")).unwrap();
    let target = std::fs::metadata(mountpoint.join("many").join(&first_name)).unwrap();
    let link_content = std::fs::read(mountpoint.join("zlink")).unwrap();
    unmount(&mountpoint);
    assert_eq!(listed, names);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(link.ino(), target.ino());
    assert_eq!(link_content, b"x");
}

#[test]
fn extract_defaults_to_the_current_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = write_archive(tmp.path());
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let out = Command::new(PXAR)
        .arg("extract")
        .arg(&archive)
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(cwd.join("a/f")).unwrap(), b"hello");
}
