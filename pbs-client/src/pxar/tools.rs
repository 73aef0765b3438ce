//! Thin wrappers around the `*at` system calls, directory streams, xattrs and the inode
//! ioctls the archiver needs. Errors are plain `io::Error`s carrying the errno.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// `FS_IOC_GETFLAGS` = `_IOR('f', 1, long)`.
const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
/// `FAT_IOCTL_GET_ATTRIBUTES` = `_IOR('r', 0x10, __u32)`.
const FAT_IOCTL_GET_ATTRIBUTES: libc::c_ulong = 0x8004_7210;
/// `FS_IOC_FSGETXATTR` = `_IOR('X', 31, struct fsxattr)`.
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;

/// `struct fsxattr` of `FS_IOC_FSGETXATTR`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FsXAttr {
    /// `fsx_xflags`.
    pub xflags: u32,
    /// `fsx_extsize`.
    pub extsize: u32,
    /// `fsx_nextents`.
    pub nextents: u32,
    /// `fsx_projid`.
    pub projid: u32,
    /// `fsx_cowextsize`.
    pub cowextsize: u32,
    /// `fsx_pad`.
    pub pad: [u8; 8],
}

/// The errno of `err`, 0 if it has none.
pub fn errno(err: &io::Error) -> i32 {
    err.raw_os_error().unwrap_or(0)
}

/// Errors meaning "this file (system) does not support the ioctl".
pub fn errno_is_unsupported(err: &io::Error) -> bool {
    matches!(
        errno(err),
        libc::ENOTTY | libc::ENOSYS | libc::EBADF | libc::EOPNOTSUPP | libc::EINVAL
    )
}

/// A C string from raw name bytes (which never contain NUL when they come from readdir).
pub fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `openat(dirfd, name, flags)`.
pub fn openat(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL terminated; a successful call returns a fresh fd we own.
    let fd = check(unsafe { libc::openat(dirfd, name.as_ptr(), flags, 0) })?;
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`.
pub fn lstatat(dirfd: RawFd, name: &CStr) -> io::Result<libc::stat> {
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid pointers; the kernel fills `stat` on success.
    check(unsafe {
        libc::fstatat(
            dirfd,
            name.as_ptr(),
            stat.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: initialized by the successful call.
    Ok(unsafe { stat.assume_init() })
}

/// `fstat(fd)`.
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid pointer; the kernel fills `stat` on success.
    check(unsafe { libc::fstat(fd, stat.as_mut_ptr()) })?;
    // SAFETY: initialized by the successful call.
    Ok(unsafe { stat.assume_init() })
}

/// `statfs.f_type` of the file system `fd` lives on, as an unsigned 32-bit magic.
pub fn fs_magic(fd: RawFd) -> io::Result<i64> {
    let mut stat = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: valid pointer; the kernel fills `stat` on success.
    check(unsafe { libc::fstatfs(fd, stat.as_mut_ptr()) })?;
    // SAFETY: initialized by the successful call.
    let stat = unsafe { stat.assume_init() };
    // Magics are 32-bit values; some architectures report them sign-extended.
    Ok(i64::from(stat.f_type as u32))
}

/// Target of the symlink `fd` refers to (`readlinkat(fd, "")`, fd opened with `O_PATH`).
pub fn readlink_fd(fd: RawFd) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: the buffer is valid for `buf.len()` bytes.
        let len = unsafe { libc::readlinkat(fd, c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = len as usize;
        if len < buf.len() {
            buf.truncate(len);
            return Ok(buf);
        }
        // Possibly truncated: retry with a larger buffer.
        let new_len = buf.len() * 2;
        buf.resize(new_len, 0);
    }
}

/// Names from `flistxattr(fd)`, in kernel order.
pub fn flistxattr(fd: RawFd) -> io::Result<Vec<CString>> {
    let mut buf = Vec::new();
    loop {
        // SAFETY: a null buffer with size 0 queries the needed size.
        let size = unsafe { libc::flistxattr(fd, std::ptr::null_mut(), 0) };
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        buf.resize(size as usize, 0);
        // SAFETY: the buffer is valid for `buf.len()` bytes.
        let got = unsafe { libc::flistxattr(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            let err = io::Error::last_os_error();
            if errno(&err) == libc::ERANGE {
                continue; // the list grew in between
            }
            return Err(err);
        }
        buf.truncate(got as usize);
        return Ok(buf
            .split(|b| *b == 0)
            .filter(|name| !name.is_empty())
            .filter_map(|name| CString::new(name).ok())
            .collect());
    }
}

/// Value of the xattr `name` of `fd`.
pub fn fgetxattr(fd: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    loop {
        // SAFETY: a null buffer with size 0 queries the needed size.
        let size = unsafe { libc::fgetxattr(fd, name.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        buf.resize(size as usize, 0);
        // SAFETY: the buffer is valid for `buf.len()` bytes.
        let got = unsafe { libc::fgetxattr(fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            let err = io::Error::last_os_error();
            if errno(&err) == libc::ERANGE {
                continue; // the value grew in between
            }
            return Err(err);
        }
        buf.truncate(got as usize);
        return Ok(buf);
    }
}

/// chattr flags of `fd` (`FS_IOC_GETFLAGS`).
pub fn chattr_flags(fd: RawFd) -> io::Result<i64> {
    let mut attr: libc::c_long = 0;
    // SAFETY: the ioctl writes at most a `long` into `attr`.
    check(unsafe { libc::ioctl(fd, FS_IOC_GETFLAGS as _, &mut attr as *mut libc::c_long) })?;
    Ok(attr as i64)
}

/// FAT attributes of `fd` (`FAT_IOCTL_GET_ATTRIBUTES`).
pub fn fat_attributes(fd: RawFd) -> io::Result<u32> {
    let mut attr: u32 = 0;
    // SAFETY: the ioctl writes a `__u32` into `attr`.
    check(unsafe { libc::ioctl(fd, FAT_IOCTL_GET_ATTRIBUTES as _, &mut attr as *mut u32) })?;
    Ok(attr)
}

/// Extended inode attributes of `fd` (`FS_IOC_FSGETXATTR`).
pub fn fs_xattr(fd: RawFd) -> io::Result<FsXAttr> {
    let mut attr = FsXAttr::default();
    // SAFETY: the ioctl writes a `struct fsxattr` (28 bytes, same layout) into `attr`.
    check(unsafe { libc::ioctl(fd, FS_IOC_FSGETXATTR as _, &mut attr as *mut FsXAttr) })?;
    Ok(attr)
}

/// An open directory stream (`fdopendir`), owning its file descriptor.
pub struct Dir {
    dir: std::ptr::NonNull<libc::DIR>,
}

impl Dir {
    /// Turn an fd opened on a directory into a directory stream.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is an open fd; on success the stream owns it.
        let dir = unsafe { libc::fdopendir(raw) };
        match std::ptr::NonNull::new(dir) {
            Some(dir) => Ok(Self { dir }),
            None => {
                let err = io::Error::last_os_error();
                // SAFETY: fdopendir failed, so `raw` is still ours to close.
                drop(unsafe { OwnedFd::from_raw_fd(raw) });
                Err(err)
            }
        }
    }

    /// Open the directory `name` relative to `dirfd` (`name` may be absolute).
    pub fn openat(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<Self> {
        Self::from_fd(openat(
            dirfd,
            name,
            flags | libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
        )?)
    }

    /// The next entry name (including `.` and `..`), `None` at the end.
    pub fn next_name(&mut self) -> Option<io::Result<CString>> {
        // readdir reports errors only through errno, so clear it first.
        // SAFETY: errno is thread local.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: the stream is open and owned by `self`.
        let entry = unsafe { libc::readdir64(self.dir.as_ptr()) };
        if entry.is_null() {
            let err = io::Error::last_os_error();
            return if errno(&err) == 0 {
                None
            } else {
                Some(Err(err))
            };
        }
        // SAFETY: readdir returned a valid entry whose `d_name` is NUL terminated.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        Some(Ok(name.to_owned()))
    }
}

impl AsRawFd for Dir {
    fn as_raw_fd(&self) -> RawFd {
        // SAFETY: the stream is open.
        unsafe { libc::dirfd(self.dir.as_ptr()) }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: the stream is open and closed exactly once.
        unsafe { libc::closedir(self.dir.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers() {
        // _IOR(type, nr, size) = 2 << 30 | size << 16 | type << 8 | nr
        let ior = |ty: u8, nr: u8, size: usize| {
            ((2u64 << 30) | ((size as u64) << 16) | (u64::from(ty) << 8) | u64::from(nr))
                as libc::c_ulong
        };
        assert_eq!(
            FS_IOC_GETFLAGS,
            ior(b'f', 1, std::mem::size_of::<libc::c_long>())
        );
        assert_eq!(FAT_IOCTL_GET_ATTRIBUTES, ior(b'r', 0x10, 4));
        assert_eq!(
            FS_IOC_FSGETXATTR,
            ior(b'X', 31, std::mem::size_of::<FsXAttr>())
        );
        assert_eq!(std::mem::size_of::<FsXAttr>(), 28);
    }

    #[test]
    fn directory_stream_and_xattrs() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("b"), b"x").unwrap();
        std::fs::create_dir(tmp.path().join("a")).unwrap();
        std::os::unix::fs::symlink("target/x", tmp.path().join("l")).unwrap();
        let path = c_name(tmp.path().as_os_str().as_encoded_bytes()).unwrap();
        let mut dir = Dir::openat(libc::AT_FDCWD, &path, 0).unwrap();
        let mut names = Vec::new();
        while let Some(name) = dir.next_name() {
            names.push(name.unwrap().into_bytes());
        }
        names.sort();
        assert_eq!(names, [&b"."[..], b"..", b"a", b"b", b"l"]);

        let link = openat(
            dir.as_raw_fd(),
            c"l",
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
        .unwrap();
        assert_eq!(readlink_fd(link.as_raw_fd()).unwrap(), b"target/x");
        // xattr calls on O_PATH descriptors fail with EBADF, which the archiver relies on.
        assert_eq!(
            errno(&flistxattr(link.as_raw_fd()).unwrap_err()),
            libc::EBADF
        );

        let file = openat(dir.as_raw_fd(), c"b", libc::O_RDONLY | libc::O_CLOEXEC).unwrap();
        let st = lstatat(dir.as_raw_fd(), c"b").unwrap();
        assert_eq!(st.st_size, 1);
        assert_eq!(fstat(file.as_raw_fd()).unwrap().st_ino, st.st_ino);
        assert_eq!(
            errno(&lstatat(dir.as_raw_fd(), c"missing").unwrap_err()),
            libc::ENOENT
        );
        assert!(fs_magic(file.as_raw_fd()).unwrap() > 0);
        match fgetxattr(file.as_raw_fd(), c"user.none") {
            Err(err) => assert!(matches!(errno(&err), libc::ENODATA | libc::EOPNOTSUPP)),
            Ok(value) => panic!("unexpected xattr value {value:?}"),
        }
    }
}
