//! The `stat` block of the catalog shell.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;

use pxar::format::mode;
use pxar::{EntryKind, Metadata};

/// Type names as printed after `Type:` (the character-device spelling is intentional).
fn type_name(kind: &EntryKind, file_mode: u64) -> &'static str {
    match kind {
        EntryKind::File { .. } => "file",
        EntryKind::Symlink(_) | EntryKind::Hardlink { .. } => "symlink",
        EntryKind::Device(_) => match file_mode & mode::IFMT {
            mode::IFCHR => "characters pecial file",
            mode::IFBLK => "block special file",
            _ => "device",
        },
        EntryKind::Socket => "socket",
        EntryKind::Fifo => "fifo",
        EntryKind::Directory => "directory",
        EntryKind::GoodbyeTable => "bad entry",
    }
}

fn type_char(kind: &EntryKind, file_mode: u64) -> char {
    if let EntryKind::Hardlink { .. } = kind {
        return 'L';
    }
    match file_mode & mode::IFMT {
        mode::IFREG => '-',
        mode::IFDIR => 'd',
        mode::IFLNK => 'l',
        mode::IFBLK => 'b',
        mode::IFCHR => 'c',
        mode::IFIFO => 'p',
        mode::IFSOCK => 's',
        _ => '?',
    }
}

/// `ls -l` style mode string: type, three `rwx` triplets with set-id/sticky letters, then
/// `+` or space for ACLs and for xattrs.
pub fn mode_string(kind: &EntryKind, metadata: &Metadata) -> String {
    let m = metadata.stat.mode;
    let bit = |mask: u64, c: char| if m & mask != 0 { c } else { '-' };
    let special =
        |exec: u64, special: u64, set: char, unset: char| match (m & exec != 0, m & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        };
    let mut out = String::with_capacity(12);
    out.push(type_char(kind, m));
    out.push(bit(0o400, 'r'));
    out.push(bit(0o200, 'w'));
    out.push(special(0o100, mode::ISUID, 's', 'S'));
    out.push(bit(0o040, 'r'));
    out.push(bit(0o020, 'w'));
    out.push(special(0o010, mode::ISGID, 's', 'S'));
    out.push(bit(0o004, 'r'));
    out.push(bit(0o002, 'w'));
    out.push(special(0o001, mode::ISVTX, 't', 'T'));
    out.push(if metadata.acl.is_empty() { ' ' } else { '+' });
    out.push(if metadata.xattrs.is_empty() { ' ' } else { '+' });
    out
}

/// Bytes printed raw when they are UTF-8, else Rust-debug-quoted.
fn display_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => format!("{:?}", OsStr::from_bytes(bytes)),
    }
}

/// The four-line `stat` block for the entry at archive path `path`.
pub fn format_stat(path: &[u8], kind: &EntryKind, metadata: &Metadata) -> String {
    let link = match kind {
        EntryKind::Symlink(target) => format!(" -> {target:?}"),
        EntryKind::Hardlink { target, .. } => format!(" -> {target:?}"),
        _ => String::new(),
    };
    let size = match kind {
        EntryKind::File { size, .. } => size.to_string(),
        EntryKind::Device(device) => format!("{},{}", device.major, device.minor),
        _ => "0".to_string(),
    };
    let stat = &metadata.stat;
    let mtime = pbs_api_types::time::strftime_local("%Y-%m-%d %H:%M:%S", stat.mtime.secs)
        .unwrap_or_else(|_| format!("{}.{}", stat.mtime.secs, stat.mtime.nanos));
    let mut out = String::new();
    let _ = writeln!(out, "  File: {}{link}", display_bytes(path));
    let _ = writeln!(
        out,
        "  Size: {size:<13} Type: {}",
        type_name(kind, stat.mode)
    );
    let _ = writeln!(
        out,
        "Access: ({:o}/{})  Uid: {:<5} Gid: {:<5}",
        stat.mode & !mode::IFMT,
        mode_string(kind, metadata),
        stat.uid,
        stat.gid
    );
    let _ = writeln!(out, "Modify: {mtime}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pxar::format::{Device, Stat, StatxTimestamp, XAttr};

    fn metadata(file_mode: u64) -> Metadata {
        Metadata::from_stat(Stat {
            mode: file_mode,
            flags: 0,
            uid: 1000,
            gid: 33,
            mtime: StatxTimestamp {
                secs: 1_700_000_000,
                nanos: 5,
            },
        })
    }

    #[test]
    fn mode_strings() {
        let file = EntryKind::File {
            size: 3,
            offset: None,
            payload_offset: None,
        };
        assert_eq!(
            mode_string(&file, &metadata(mode::IFREG | 0o644)),
            "-rw-r--r--  "
        );
        assert_eq!(
            mode_string(&file, &metadata(mode::IFREG | 0o4755)),
            "-rwsr-xr-x  "
        );
        assert_eq!(
            mode_string(&file, &metadata(mode::IFREG | 0o2644)),
            "-rw-r-Sr--  "
        );
        assert_eq!(
            mode_string(&EntryKind::Directory, &metadata(mode::IFDIR | 0o1777)),
            "drwxrwxrwt  "
        );
        assert_eq!(
            mode_string(&EntryKind::Directory, &metadata(mode::IFDIR | 0o1770)),
            "drwxrwx--T  "
        );
        let mut with_xattr = metadata(mode::IFREG | 0o600);
        with_xattr
            .xattrs
            .push(XAttr::new(&b"user.a"[..], &b"1"[..]));
        assert_eq!(mode_string(&file, &with_xattr), "-rw------- +");
        let hardlink = EntryKind::Hardlink {
            target: "a".into(),
            offset: 1,
        };
        assert_eq!(mode_string(&hardlink, &metadata(0)), "L---------  ");
    }

    #[test]
    fn stat_block() {
        let file = EntryKind::File {
            size: 3,
            offset: None,
            payload_offset: None,
        };
        let text = format_stat(b"/etc/hosts", &file, &metadata(mode::IFREG | 0o4755));
        // Local time, whatever the test environment's zone is.
        let modify =
            pbs_api_types::time::strftime_local("%Y-%m-%d %H:%M:%S", 1_700_000_000).unwrap();
        assert_eq!(
            text,
            format!(
                "  File: /etc/hosts\n  Size: 3             Type: file\n\
                 Access: (4755/-rwsr-xr-x  )  Uid: 1000  Gid: 33   \n\
                 Modify: {modify}\n"
            )
        );
        let link = EntryKind::Symlink("../x".into());
        let text = format_stat(b"/l", &link, &metadata(mode::IFLNK | 0o777));
        assert!(
            text.starts_with("  File: /l -> \"../x\"\n  Size: 0             Type: symlink\n"),
            "{text}"
        );
        let dev = EntryKind::Device(Device { major: 8, minor: 1 });
        let text = format_stat(b"/dev/sda1", &dev, &metadata(mode::IFBLK | 0o660));
        assert!(
            text.contains("  Size: 8,1           Type: block special file\n"),
            "{text}"
        );
        let text = format_stat(b"/c", &dev, &metadata(mode::IFCHR | 0o660));
        assert!(text.contains("Type: characters pecial file\n"), "{text}");
        let text = format_stat(b"/\xff", &EntryKind::Fifo, &metadata(mode::IFIFO | 0o600));
        assert!(text.starts_with("  File: \"/\\xFF\"\n"), "{text}");
    }
}
