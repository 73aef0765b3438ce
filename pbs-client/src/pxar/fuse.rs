//! Read-only FUSE file system over a pxar archive.
//!
//! Inode numbers are the archive offsets of the entries' FILENAME items (the root is inode 1),
//! so a hardlink and its target share an inode. Entries are cached once looked up.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, format_err, Result};
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyXattr, Request, Session,
};
use pxar::accessor::{Accessor, FileEntry, ReadAt};
use pxar::format::{mode, StatxTimestamp};
use pxar::EntryKind;

use super::apply;

/// How long the kernel may cache attributes and lookups (the archive never changes).
const TTL: Duration = Duration::from_secs(3600);

/// Path of the FUSE device.
pub const FUSE_DEVICE: &str = "/dev/fuse";

struct Node {
    entry: FileEntry,
    parent: u64,
    /// Kernel references (lookups not yet forgotten); the node is dropped at zero.
    lookups: u64,
}

/// A directory listing: inode, type and name per entry, starting with `.` and `..`.
type Listing = Arc<Vec<(u64, FileType, Vec<u8>)>>;

/// The file system: an accessor plus the inodes handed out so far.
pub struct PxarFs<R: ReadAt, P: ReadAt> {
    accessor: Accessor<R, P>,
    nodes: Mutex<HashMap<u64, Node>>,
    /// Listings of open directory handles.
    dir_handles: Mutex<HashMap<u64, Listing>>,
    next_handle: AtomicU64,
    verbose: bool,
}

fn to_errno(err: &pxar::Error) -> Errno {
    match err {
        pxar::Error::Io { source, .. } => source.raw_os_error().map_or(Errno::EIO, Errno::from_i32),
        _ => Errno::EIO,
    }
}

fn system_time(ts: StatxTimestamp) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(ts.nanos));
    if ts.secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(ts.secs as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.secs.unsigned_abs()) + nanos
    }
}

fn file_type(file_mode: u64) -> FileType {
    match file_mode & mode::IFMT {
        mode::IFDIR => FileType::Directory,
        mode::IFLNK => FileType::Symlink,
        mode::IFCHR => FileType::CharDevice,
        mode::IFBLK => FileType::BlockDevice,
        mode::IFIFO => FileType::NamedPipe,
        mode::IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn inode_of(entry: &FileEntry) -> u64 {
    entry.entry.filename_offset.unwrap_or(INodeNo::ROOT.0)
}

fn attr_of(ino: u64, entry: &FileEntry) -> FileAttr {
    let stat = &entry.metadata().stat;
    let (size, rdev) = match entry.kind() {
        EntryKind::File { size, .. } => (*size, 0),
        EntryKind::Symlink(target) => (target.as_os_str().len() as u64, 0),
        EntryKind::Device(device) => (0, device.to_dev_t() as u32),
        _ => (0, 0),
    };
    let mtime = system_time(stat.mtime);
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind: file_type(stat.mode),
        perm: (stat.mode & 0o7777) as u16,
        nlink: if stat.is_dir() { 2 } else { 1 },
        uid: stat.uid,
        gid: stat.gid,
        rdev,
        blksize: 4096,
        flags: 0,
    }
}

/// Reply to a getxattr/listxattr request with `data` according to the requested `size`.
fn reply_xattr_data(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl<R: ReadAt, P: ReadAt> PxarFs<R, P> {
    /// A file system serving `accessor`'s archive; `verbose` logs requests to stderr.
    pub fn new(accessor: Accessor<R, P>, verbose: bool) -> Result<Self> {
        let root = accessor.root()?;
        let mut nodes = HashMap::new();
        nodes.insert(
            INodeNo::ROOT.0,
            Node {
                entry: root,
                parent: INodeNo::ROOT.0,
                lookups: 1,
            },
        );
        Ok(Self {
            accessor,
            nodes: Mutex::new(nodes),
            dir_handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            verbose,
        })
    }

    fn node(&self, ino: u64) -> Result<FileEntry, Errno> {
        let nodes = self.nodes.lock().map_err(|_| Errno::EIO)?;
        nodes
            .get(&ino)
            .map(|node| node.entry.clone())
            .ok_or(Errno::ENOENT)
    }

    fn parent_of(&self, ino: u64) -> u64 {
        self.nodes
            .lock()
            .ok()
            .and_then(|nodes| nodes.get(&ino).map(|n| n.parent))
            .unwrap_or(INodeNo::ROOT.0)
    }

    /// Register a directory child (hardlinks resolve to their target) and return its inode.
    fn remember(&self, parent: u64, child: FileEntry) -> Result<(u64, FileEntry), Errno> {
        let child = if let EntryKind::Hardlink { .. } = child.kind() {
            self.accessor
                .follow_hardlink(&child)
                .map_err(|err| to_errno(&err))?
        } else {
            child
        };
        let ino = inode_of(&child);
        let mut nodes = self.nodes.lock().map_err(|_| Errno::EIO)?;
        nodes
            .entry(ino)
            .or_insert_with(|| Node {
                entry: child.clone(),
                parent,
                lookups: 0,
            })
            .lookups += 1;
        Ok((ino, child))
    }

    /// The listing of directory `ino`; hardlinks show their target's inode.
    fn listing(&self, ino: u64) -> Result<Listing, Errno> {
        let dir = self.node(ino)?;
        if !dir.entry.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let children = self.accessor.read_dir(&dir).map_err(|err| to_errno(&err))?;
        let mut listing = Vec::with_capacity(children.len() + 2);
        listing.push((ino, FileType::Directory, b".".to_vec()));
        listing.push((self.parent_of(ino), FileType::Directory, b"..".to_vec()));
        for child in children {
            let name = child.entry.file_name().as_bytes().to_vec();
            let (child_ino, kind) = match child.kind() {
                EntryKind::Hardlink { .. } => (
                    child.entry.hardlink_target_offset().ok_or(Errno::EIO)?,
                    FileType::RegularFile,
                ),
                _ => (inode_of(&child), file_type(child.metadata().stat.mode)),
            };
            listing.push((child_ino, kind, name));
        }
        Ok(Arc::new(listing))
    }

    fn xattrs(&self, entry: &FileEntry) -> Vec<(Vec<u8>, Vec<u8>)> {
        let metadata = entry.metadata();
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = metadata
            .xattrs
            .iter()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        if let Some(fcaps) = &metadata.fcaps {
            out.push((apply::XATTR_FCAPS.to_bytes().to_vec(), fcaps.data.clone()));
        }
        if let Ok(Some(acl)) = apply::access_acl_xattr(metadata) {
            out.push((apply::XATTR_ACL_ACCESS.to_bytes().to_vec(), acl));
        }
        if let Ok(Some(acl)) = apply::default_acl_xattr(metadata) {
            out.push((apply::XATTR_ACL_DEFAULT.to_bytes().to_vec(), acl));
        }
        out
    }

    fn log(&self, what: std::fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("{what}");
        }
    }
}

impl<R, P> Filesystem for PxarFs<R, P>
where
    R: ReadAt + Send + Sync + 'static,
    P: ReadAt + Send + Sync + 'static,
{
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.log(format_args!("lookup({}, {name:?})", parent.0));
        let result = self.node(parent.0).and_then(|dir| {
            if !dir.entry.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            match self.accessor.lookup_child(&dir, name.as_bytes()) {
                Ok(Some(child)) => self.remember(parent.0, child),
                Ok(None) => Err(Errno::ENOENT),
                Err(err) => Err(to_errno(&err)),
            }
        });
        match result {
            Ok((ino, entry)) => reply.entry(&TTL, &attr_of(ino, &entry), Generation(0)),
            Err(errno) => reply.error(errno),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.log(format_args!("getattr({})", ino.0));
        match self.node(ino.0) {
            Ok(entry) => reply.attr(&TTL, &attr_of(ino.0, &entry)),
            Err(errno) => reply.error(errno),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.node(ino.0) {
            Ok(entry) => match entry.kind() {
                EntryKind::Symlink(target) => reply.data(target.as_os_str().as_bytes()),
                _ => reply.error(Errno::EINVAL),
            },
            Err(errno) => reply.error(errno),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.log(format_args!("read({}, {offset}, {size})", ino.0));
        let result = self.node(ino.0).and_then(|entry| {
            if entry.entry.is_dir() {
                return Err(Errno::EISDIR);
            }
            let contents = self
                .accessor
                .open_contents(&entry)
                .map_err(|err| to_errno(&err))?;
            let mut buf = vec![0u8; size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                let n = contents
                    .read_at(&mut buf[filled..], offset + filled as u64)
                    .map_err(|err| to_errno(&err))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            Ok(buf)
        });
        match result {
            Ok(data) => reply.data(&data),
            Err(errno) => reply.error(errno),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if ino == INodeNo::ROOT {
            return;
        }
        if let Ok(mut nodes) = self.nodes.lock() {
            if let Some(node) = nodes.get_mut(&ino.0) {
                node.lookups = node.lookups.saturating_sub(nlookup);
                if node.lookups == 0 {
                    nodes.remove(&ino.0);
                }
            }
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.log(format_args!("opendir({})", ino.0));
        let listing = match self.listing(ino.0) {
            Ok(listing) => listing,
            Err(errno) => return reply.error(errno),
        };
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        match self.dir_handles.lock() {
            Ok(mut handles) => {
                handles.insert(handle, listing);
                reply.opened(FileHandle(handle), FopenFlags::empty());
            }
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.log(format_args!("readdir({}, {offset})", ino.0));
        let cached = self
            .dir_handles
            .lock()
            .ok()
            .and_then(|handles| handles.get(&fh.0).cloned());
        let listing = match cached {
            Some(listing) => listing,
            None => match self.listing(ino.0) {
                Ok(listing) => listing,
                Err(errno) => return reply.error(errno),
            },
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (index, (child_ino, kind, name)) in listing.iter().enumerate().skip(start) {
            let next = index as u64 + 1;
            if reply.add(INodeNo(*child_ino), next, *kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        if let Ok(mut handles) = self.dir_handles.lock() {
            handles.remove(&fh.0);
        }
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.node(ino.0) {
            Ok(entry) => {
                let xattrs = self.xattrs(&entry);
                match xattrs.iter().find(|(n, _)| n.as_slice() == name.as_bytes()) {
                    Some((_, value)) => reply_xattr_data(reply, size, value),
                    None => reply.error(Errno::NO_XATTR),
                }
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.node(ino.0) {
            Ok(entry) => {
                let mut names = Vec::new();
                for (name, _) in self.xattrs(&entry) {
                    names.extend_from_slice(&name);
                    names.push(0);
                }
                reply_xattr_data(reply, size, &names);
            }
            Err(errno) => reply.error(errno),
        }
    }
}

/// Mount `accessor`'s archive read-only at `mountpoint`. The returned session serves requests
/// with `run()` (blocking) or `spawn()` (background thread); dropping it unmounts.
pub fn mount<R, P>(
    accessor: Accessor<R, P>,
    mountpoint: &Path,
    verbose: bool,
) -> Result<Session<PxarFs<R, P>>>
where
    R: ReadAt + Send + Sync + 'static,
    P: ReadAt + Send + Sync + 'static,
{
    if !Path::new(FUSE_DEVICE).exists() {
        bail!("cannot mount: {FUSE_DEVICE} does not exist (FUSE is not available here)");
    }
    let fs = PxarFs::new(accessor, verbose)?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("pxar".into()),
        MountOption::Subtype("pxar".into()),
        MountOption::DefaultPermissions,
    ];
    Session::new(fs, mountpoint, &config)
        .map_err(|err| format_err!("failed to mount {mountpoint:?} - {err}"))
}
