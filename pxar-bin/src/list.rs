//! `pxar list` output: one path per line, or an `ls -l`-like line with `--verbose`.

use anyhow::Result;
use pxar::format::mode;
use pxar::{Entry, EntryKind};

/// `drwxr-xr-x`-style rendering of a file mode.
pub fn mode_string(file_mode: u64) -> String {
    let kind = match file_mode & mode::IFMT {
        mode::IFDIR => 'd',
        mode::IFLNK => 'l',
        mode::IFCHR => 'c',
        mode::IFBLK => 'b',
        mode::IFIFO => 'p',
        mode::IFSOCK => 's',
        mode::IFREG => '-',
        _ => '?',
    };
    let bit = |mask: u64, c: char| if file_mode & mask != 0 { c } else { '-' };
    let special = |exec: u64, special: u64, set: char, unset: char| match (
        file_mode & exec != 0,
        file_mode & special != 0,
    ) {
        (true, true) => set,
        (false, true) => unset,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, mode::ISUID, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, mode::ISGID, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, mode::ISVTX, 't', 'T'),
    ]
    .iter()
    .collect()
}

/// One line of the plain listing: the quoted path.
pub fn plain_line(entry: &Entry) -> String {
    format!("{:?}", entry.path())
}

/// One line of the verbose listing.
pub fn verbose_line(entry: &Entry) -> Result<String> {
    let stat = &entry.metadata.stat;
    let (file_mode, size, suffix) = match &entry.kind {
        EntryKind::Hardlink { target, .. } => (mode::IFREG, 0, format!(" link to {:?}", target)),
        EntryKind::Symlink(target) => (stat.mode, 0, format!(" -> {:?}", target)),
        EntryKind::File { size, .. } => (stat.mode, *size, String::new()),
        EntryKind::Device(device) => (
            stat.mode,
            0,
            format!(" ({}, {})", device.major, device.minor),
        ),
        _ => (stat.mode, 0, String::new()),
    };
    let mtime = pbs_api_types::time::strftime_utc("%Y-%m-%d %H:%M:%S", stat.mtime.secs)?;
    Ok(format!(
        "{} {:>5}/{:<5} {:>10} {} {:?}{}",
        mode_string(file_mode),
        stat.uid,
        stat.gid,
        size,
        mtime,
        entry.path(),
        suffix
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pxar::format::{Stat, StatxTimestamp};
    use pxar::Metadata;
    use std::path::PathBuf;

    #[test]
    fn modes_render_like_ls() {
        assert_eq!(mode_string(mode::IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(mode::IFREG | 0o4644), "-rwSr--r--");
        assert_eq!(mode_string(mode::IFREG | 0o6755), "-rwsr-sr-x");
        assert_eq!(mode_string(mode::IFDIR | 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(mode::IFLNK | 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(mode::IFIFO | 0o600), "prw-------");
    }

    #[test]
    fn verbose_line_shows_metadata() {
        let entry = Entry {
            path: PathBuf::from("/dir/file"),
            metadata: Metadata::from_stat(Stat {
                mode: mode::IFREG | 0o640,
                flags: 0,
                uid: 1000,
                gid: 100,
                mtime: StatxTimestamp::new(86400, 5),
            }),
            kind: EntryKind::File {
                size: 1234,
                offset: Some(0),
                payload_offset: None,
            },
            filename_offset: Some(100),
        };
        assert_eq!(plain_line(&entry), "\"/dir/file\"");
        assert_eq!(
            verbose_line(&entry).unwrap(),
            "-rw-r-----  1000/100         1234 1970-01-02 00:00:00 \"/dir/file\""
        );
    }
}
