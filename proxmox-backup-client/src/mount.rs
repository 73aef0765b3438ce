//! `mount` (a pxar archive through FUSE), `map` (an image through FUSE plus a loop device)
//! and `unmap`.
//!
//! Without `--verbose` the command re-runs itself as a detached child (new session, stdio on
//! `/dev/null` once mounted) and returns as soon as the child reports that the mount is up.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, format_err, Context, Result};
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, INodeNo, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, Request, Session,
};
use serde_json::Value;

use pbs_api_types::CryptMode;
use pbs_cli::{Command, CommandTree, Param, ParsedArgs};
use pbs_client::backup_reader::BackupReader;
use pbs_client::remote_chunk_reader::RemoteChunkReader;
use pbs_client::restore::IndexReadAt;
use pbs_datastore::index::IndexFile;
use pbs_datastore::index_reader::{BufferedIndexReader, SharedIndexReader};
use pxar::accessor::{Accessor, ReadAt};

use crate::backup::options::namespace_from_args;
use crate::crypto::{self, KeySource};
use crate::restore::run::resolve_snapshot;

/// Environment variable marking the detached child; its value is the readiness pipe's fd.
const DAEMON_ENV: &str = "PBS_MOUNT_DAEMON_FD";
/// Directory holding the FUSE mount points of mapped images (one per mapping name).
const MAP_RUN_DIR: &str = "/run/pbs-loopdev";
/// Name of the image file inside a mapping's FUSE mount.
const IMAGE_FILE: &str = "image";

fn common_params() -> Vec<Param> {
    let mut params = vec![
        Param::required("snapshot", "Group/Snapshot path."),
        Param::required("archive-name", "Backup archive name."),
        Param::optional("keyfile", "Path to encryption key."),
        Param::flag("verbose", "Verbose output and stay in foreground."),
    ];
    params.extend(pbs_client::tools::repository_params());
    params.push(pbs_client::tools::ns_param());
    params
}

/// The top-level entries of this module.
pub fn commands() -> Vec<(&'static str, CommandTree)> {
    let mut mount_params = common_params();
    mount_params.push(Param::required("target", "Target directory path."));
    vec![
        (
            "mount",
            CommandTree::Leaf(Command {
                description: "Mount pxar archive.",
                params: mount_params,
                positionals: vec!["snapshot", "archive-name", "target"],
            }),
        ),
        (
            "map",
            CommandTree::Leaf(Command {
                description: "Map a drive image from a VM backup to a local loopback device. Use 'unmap' to undo.\nWARNING: Only do this with *trusted* backups!",
                params: common_params(),
                positionals: vec!["snapshot", "archive-name"],
            }),
        ),
        (
            "unmap",
            CommandTree::Leaf(Command {
                description: "Unmap a loop device mapped with 'map' and release all resources.",
                params: vec![Param::optional(
                    "name",
                    "Archive name, path to loopdev (/dev/loopX) or loop device number. Omit to list all current mappings and force cleaning up leftover instances.",
                )],
                positionals: vec!["name"],
            }),
        ),
    ]
}

/// Runs one of the commands.
pub async fn run(path: &[&'static str], args: &ParsedArgs) -> Result<Option<Value>> {
    match path.first().copied() {
        Some("unmap") => unmap(args.get("name")).map(|()| None),
        Some(which) => {
            let verbose = args.flag("verbose", false)?;
            if !verbose && std::env::var_os(DAEMON_ENV).is_none() {
                return detach().map(|()| None);
            }
            mount_or_map(which == "map", args).await.map(|()| None)
        }
        None => bail!("no command"),
    }
}

/// Which index(es) an archive name stands for.
#[derive(Debug, PartialEq, Eq)]
enum MountSource {
    Pxar(String),
    Image(String),
}

fn mount_source(archive_name: &str, map: bool) -> Result<MountSource> {
    let is_pxar = archive_name.ends_with(".pxar") || archive_name.ends_with(".pxar.didx");
    let is_image = archive_name.ends_with(".img") || archive_name.ends_with(".img.fidx");
    match (is_pxar, is_image, map) {
        (true, _, false) => Ok(MountSource::Pxar(
            archive_name
                .strip_suffix(".didx")
                .unwrap_or(archive_name)
                .to_string()
                + ".didx",
        )),
        (_, true, true) => Ok(MountSource::Image(
            archive_name
                .strip_suffix(".fidx")
                .unwrap_or(archive_name)
                .to_string()
                + ".fidx",
        )),
        (true, _, true) => bail!("use the 'mount' command to mount pxar archives"),
        (_, true, false) => bail!("use the 'map' command to map drive images"),
        _ => bail!("Can only mount/map pxar archives and drive images."),
    }
}

/// Re-runs this command as a detached child and waits until it reports readiness.
fn detach() -> Result<()> {
    let mut fds = [0; 2];
    // SAFETY: fds is an array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("unable to create pipe");
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (mut reader, writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let write_fd = writer.as_raw_fd();
    let exe = std::env::current_exe().context("unable to find own executable")?;
    let mut child = std::process::Command::new(exe);
    child
        .args(std::env::args_os().skip(1))
        .env(DAEMON_ENV, write_fd.to_string());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        child.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Keep the readiness pipe open across exec.
            let flags = libc::fcntl(write_fd, libc::F_GETFD);
            libc::fcntl(write_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let _child = child.spawn().context("unable to start mount daemon")?;
    drop(writer);
    let mut status = Vec::new();
    reader
        .read_to_end(&mut status)
        .context("unable to read daemon status")?;
    match status.as_slice() {
        b"OK" => Ok(()),
        [] => bail!("mount daemon exited before it was ready"),
        other => bail!("{}", String::from_utf8_lossy(other)),
    }
}

/// In the detached child: reports readiness (or an error) to the waiting parent and moves
/// stdio to `/dev/null`.
fn report_ready(result: &Result<()>) {
    let Some(fd) = std::env::var(DAEMON_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    // SAFETY: the parent handed this descriptor to us for exactly this message.
    let mut pipe = unsafe { File::from_raw_fd(fd) };
    let message = match result {
        Ok(()) => "OK".to_string(),
        Err(err) => format!("{err:#}"),
    };
    let _ = pipe.write_all(message.as_bytes());
    drop(pipe);
    if result.is_ok() {
        let _ = std::env::set_current_dir("/");
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            for target in 0..3 {
                // SAFETY: dup2 onto the standard descriptors.
                unsafe { libc::dup2(null.as_raw_fd(), target) };
            }
        }
    }
}

async fn mount_or_map(map: bool, args: &ParsedArgs) -> Result<()> {
    let result = prepare_and_serve(map, args).await;
    if let Err(err) = &result {
        report_ready(&Err(format_err!("{err:#}")));
    }
    result
}

async fn prepare_and_serve(map: bool, args: &ParsedArgs) -> Result<()> {
    let repo = pbs_client::tools::extract_repository(args)?;
    let ns = namespace_from_args(args)?;
    let snapshot_arg = args.required("snapshot")?.to_string();
    let archive_name = args.required("archive-name")?.to_string();
    let source = mount_source(&archive_name, map)?;
    let verbose = args.flag("verbose", false)?;

    let key = match args.get("keyfile") {
        Some(path) => {
            let path = PathBuf::from(path);
            eprintln!("Encryption key file: '{path:?}'");
            let data = crypto::load_key(&KeySource::Path(path))?;
            let key = crypto::crypt_config_from_key(
                &data,
                &pbs_client::tools::get_encryption_key_password,
            )?;
            eprintln!("Encryption key fingerprint: '{}'", key.fingerprint);
            Some(key)
        }
        None => None,
    };
    let crypt_config = key.as_ref().map(|k| Arc::clone(&k.crypt_config));

    let client = pbs_client::tools::connect(&repo)?;
    pbs_client::tools::record_repository(&repo);
    let snapshot = resolve_snapshot(&client, repo.store(), &ns, &snapshot_arg).await?;
    let reader = BackupReader::start(
        &client,
        crypt_config.clone(),
        repo.store(),
        &ns,
        &snapshot,
        verbose,
    )
    .await?;
    let (manifest, _) = reader.download_manifest().await?;
    manifest.check_fingerprint(crypt_config.as_deref())?;

    let open = |mode: CryptMode| {
        RemoteChunkReader::new(
            Arc::clone(&reader),
            crypt_config.clone(),
            mode,
            HashMap::new(),
        )
    };
    match source {
        MountSource::Image(name) => {
            let index = reader.download_fixed_index(&manifest, &name).await?;
            let mode = manifest.lookup_file_info(&name)?.chunk_crypt_mode();
            let size = index.index_bytes();
            let image = IndexReadAt(SharedIndexReader::new(BufferedIndexReader::new(
                index,
                open(mode),
            )));
            let mapping = format!("{repo}:{snapshot_arg}/{archive_name}");
            serve_image(image, size, &mapping).await
        }
        MountSource::Pxar(name) => {
            let target = PathBuf::from(args.required("target")?);
            if manifest.lookup_file_info(&name).is_err() {
                let (meta, payload) = pbs_client::pxar::split_archive_names(&name);
                if manifest.lookup_file_info(&meta).is_ok() {
                    return mount_split(
                        &reader, &manifest, &meta, &payload, &target, &open, verbose,
                    )
                    .await;
                }
            }
            let index = reader.download_dynamic_index(&manifest, &name).await?;
            let mode = manifest.lookup_file_info(&name)?.chunk_crypt_mode();
            let size = index.index_bytes();
            let archive = IndexReadAt(SharedIndexReader::new(BufferedIndexReader::new(
                index,
                open(mode),
            )));
            let accessor = Accessor::new(archive, size, None::<(File, u64)>)
                .map_err(|err| format_err!("unable to open archive '{name}' - {err}"))?;
            serve_session(
                pbs_client::pxar::fuse::mount(accessor, &target, verbose)?,
                None,
            )
            .await
        }
    }
}

async fn mount_split(
    reader: &Arc<BackupReader>,
    manifest: &pbs_datastore::BackupManifest,
    meta: &str,
    payload: &str,
    target: &Path,
    open: &dyn Fn(CryptMode) -> RemoteChunkReader,
    verbose: bool,
) -> Result<()> {
    let meta_index = reader.download_dynamic_index(manifest, meta).await?;
    let payload_index = reader.download_dynamic_index(manifest, payload).await?;
    let (meta_size, payload_size) = (meta_index.index_bytes(), payload_index.index_bytes());
    let meta_mode = manifest.lookup_file_info(meta)?.chunk_crypt_mode();
    let payload_mode = manifest.lookup_file_info(payload)?.chunk_crypt_mode();
    let meta_read = IndexReadAt(SharedIndexReader::new(BufferedIndexReader::new(
        meta_index,
        open(meta_mode),
    )));
    let payload_read = IndexReadAt(SharedIndexReader::new(BufferedIndexReader::new(
        payload_index,
        open(payload_mode),
    )));
    let accessor = Accessor::new(meta_read, meta_size, Some((payload_read, payload_size)))
        .map_err(|err| format_err!("unable to open archive '{meta}' - {err}"))?;
    serve_session(
        pbs_client::pxar::fuse::mount(accessor, target, verbose)?,
        None,
    )
    .await
}

/// Serves a FUSE session until it is unmounted or SIGINT/SIGTERM arrives.
async fn serve_session<FS: Filesystem + Send + 'static>(
    mut session: Session<FS>,
    on_ready: Option<Box<dyn FnOnce() -> Result<()> + Send>>,
) -> Result<()> {
    let mut unmounter = session.unmount_callable();
    let mut run = tokio::task::spawn_blocking(move || session.run());
    let ready = match on_ready {
        Some(f) => f(),
        None => Ok(()),
    };
    report_ready(&ready);
    ready?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = &mut run => return result.context("FUSE session failed")?.context("FUSE session failed"),
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    unmounter.unmount().context("unable to unmount")?;
    run.await
        .context("FUSE session failed")?
        .context("FUSE session failed")
}

// ---- map: an image file in a FUSE mount, attached to a loop device ---------------------

/// A read-only FUSE file system with one regular file, the image.
struct ImageFs<R> {
    image: R,
    size: u64,
    created: SystemTime,
}

const IMAGE_INO: u64 = 2;

impl<R: ReadAt> ImageFs<R> {
    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, perm, size, nlink) = if ino == INodeNo::ROOT.0 {
            (FileType::Directory, 0o555, 0, 2)
        } else {
            (FileType::RegularFile, 0o444, self.size, 1)
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.created,
            mtime: self.created,
            ctime: self.created,
            crtime: self.created,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

const ATTR_TTL: Duration = Duration::from_secs(3600);

impl<R: ReadAt + Send + Sync + 'static> Filesystem for ImageFs<R> {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name.as_bytes() == IMAGE_FILE.as_bytes() {
            reply.entry(&ATTR_TTL, &self.attr(IMAGE_INO), fuser::Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            1 | IMAGE_INO => reply.attr(&ATTR_TTL, &self.attr(ino.0)),
            _ => reply.error(Errno::ENOENT),
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
        if ino.0 != IMAGE_INO {
            return reply.error(Errno::EISDIR);
        }
        let len = (size as u64).min(self.size.saturating_sub(offset)) as usize;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match self
                .image
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) => {
                    eprintln!("image read at {offset} failed: {err}");
                    return reply.error(Errno::EIO);
                }
            }
        }
        reply.data(&buf[..filled]);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (1, FileType::Directory, "."),
            (1, FileType::Directory, ".."),
            (IMAGE_INO, FileType::RegularFile, IMAGE_FILE),
        ];
        for (index, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), index as u64 + 1, *kind, OsStr::new(name)) {
                break;
            }
        }
        reply.ok();
    }
}

/// systemd-style escaping of a mapping name (`/` ⇒ `-`, other specials ⇒ `\xNN`).
pub fn systemd_escape(name: &str) -> String {
    let mut out = String::new();
    for (i, byte) in name.bytes().enumerate() {
        match byte {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' | b'_' | b'.' => out.push(byte as char),
            other => out.push_str(&format!("\\x{other:02x}")),
        }
    }
    out
}

/// Inverse of [`systemd_escape`].
pub fn systemd_unescape(escaped: &str) -> Result<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' => {
                out.push(b'/');
                i += 1;
            }
            b'\\' if bytes.get(i + 1) == Some(&b'x') && i + 4 <= bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 2..i + 4])?;
                out.push(
                    u8::from_str_radix(hex, 16)
                        .map_err(|_| format_err!("bad escape in '{escaped}'"))?,
                );
                i += 4;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8(out)?)
}

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LO_FLAGS_READ_ONLY: u32 = 1;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn ioctl_ok(rc: libc::c_int, what: &str) -> Result<libc::c_int> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_string());
    }
    Ok(rc)
}

/// Attaches `backing` read-only to a free loop device; returns its path.
fn attach_loop_device(backing: &Path) -> Result<PathBuf> {
    let control = File::open("/dev/loop-control").context("unable to open /dev/loop-control")?;
    // SAFETY: plain ioctl without argument.
    let number = ioctl_ok(
        unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) },
        "no free loop device",
    )?;
    let device = PathBuf::from(format!("/dev/loop{number}"));
    let loop_file = std::fs::OpenOptions::new()
        .read(true)
        .open(&device)
        .with_context(|| format!("unable to open {device:?}"))?;
    let image = File::open(backing).with_context(|| format!("unable to open {backing:?}"))?;
    // SAFETY: LoopConfig is plain old data.
    let mut config: LoopConfig = unsafe { std::mem::zeroed() };
    config.fd = image.as_raw_fd() as u32;
    // Not auto-clearing: that would detach the device as soon as this function closes it;
    // `unmap` detaches it explicitly and the mapping process then unmounts.
    config.info.lo_flags = LO_FLAGS_READ_ONLY;
    let name = backing.as_os_str().as_bytes();
    let n = name.len().min(63);
    config.info.lo_file_name[..n].copy_from_slice(&name[..n]);
    // SAFETY: pointer to a properly laid out loop_config.
    ioctl_ok(
        unsafe {
            libc::ioctl(
                loop_file.as_raw_fd(),
                LOOP_CONFIGURE as _,
                &config as *const LoopConfig,
            )
        },
        "unable to attach loop device",
    )?;
    Ok(device)
}

/// The backing file of a loop device, if it is attached.
fn loop_backing_file(device: &str) -> Option<PathBuf> {
    let name = device.strip_prefix("/dev/")?;
    let text = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end()))
}

async fn serve_image<R: ReadAt + Send + Sync + 'static>(
    image: R,
    size: u64,
    mapping: &str,
) -> Result<()> {
    let escaped = systemd_escape(mapping);
    let dir = Path::new(MAP_RUN_DIR).join(&escaped);
    std::fs::create_dir_all(&dir).with_context(|| format!("unable to create {dir:?}"))?;
    let fs = ImageFs {
        image,
        size,
        created: SystemTime::now(),
    };
    let mut config = Config::default();
    config.mount_options = vec![MountOption::RO, MountOption::FSName("pbs-image".into())];
    let session = Session::new(fs, &dir, &config)
        .map_err(|err| format_err!("failed to mount image at {dir:?} - {err}"))?;
    let backing = dir.join(IMAGE_FILE);
    let mapping = mapping.to_string();
    let watch_backing = backing.clone();
    let on_ready: Box<dyn FnOnce() -> Result<()> + Send> = Box::new(move || {
        let device = attach_loop_device(&backing)?;
        eprintln!("Image '{mapping}' mapped on {}", device.display());
        let device = device.display().to_string();
        // The mapping ends when the loop device is detached (`unmap`): then unmount.
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            if loop_backing_file(&device).as_deref() != Some(watch_backing.as_path()) {
                // SAFETY: a signal to ourselves ends the session loop like a Ctrl-C.
                unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
                break;
            }
        });
        Ok(())
    });
    let result = serve_session(session, Some(on_ready)).await;
    let _ = std::fs::remove_dir(&dir);
    eprintln!("Image unmapped");
    result
}

/// The current mappings: (loop device or `None`, mapping name).
fn list_mappings() -> Vec<(Option<String>, String)> {
    let mut attached: HashMap<PathBuf, String> = HashMap::new();
    for entry in std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("loop") {
            let device = format!("/dev/{name}");
            if let Some(backing) = loop_backing_file(&device) {
                attached.insert(backing, device);
            }
        }
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(MAP_RUN_DIR)
        .into_iter()
        .flatten()
        .flatten()
    {
        let escaped = entry.file_name().to_string_lossy().into_owned();
        let name = systemd_unescape(&escaped).unwrap_or(escaped);
        let device = attached.get(&entry.path().join(IMAGE_FILE)).cloned();
        out.push((device, name));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

fn detach_loop_device(device: &str) -> Result<()> {
    let file = File::open(device).with_context(|| format!("unable to open {device}"))?;
    // SAFETY: LOOP_CLR_FD takes no argument.
    ioctl_ok(
        unsafe { libc::ioctl(file.as_raw_fd(), LOOP_CLR_FD as _, 0) },
        &format!("unable to detach {device}"),
    )?;
    Ok(())
}

fn unmap(name: Option<&str>) -> Result<()> {
    let Some(name) = name else {
        let mappings = list_mappings();
        // Stale run directories (no loop device, nothing mounted) are removed.
        for (device, name) in &mappings {
            if device.is_none() {
                let _ = std::fs::remove_dir(Path::new(MAP_RUN_DIR).join(systemd_escape(name)));
            }
        }
        let mappings: Vec<_> = list_mappings();
        if mappings.is_empty() {
            println!("Nothing mapped.");
        }
        for (device, name) in mappings {
            println!("{}:\t{name}", device.as_deref().unwrap_or("(unmapped)"));
        }
        return Ok(());
    };
    let device = if let Ok(number) = name.parse::<u8>() {
        format!("/dev/loop{number}")
    } else if name.starts_with("/dev/loop") {
        name.to_string()
    } else {
        let backing = Path::new(MAP_RUN_DIR)
            .join(systemd_escape(name))
            .join(IMAGE_FILE);
        list_mappings()
            .into_iter()
            .find(|(_, n)| n == name)
            .and_then(|(device, _)| device)
            .ok_or_else(|| format_err!("no mapping for {name:?} ({backing:?})"))?
    };
    detach_loop_device(&device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names() {
        assert_eq!(
            mount_source("root.pxar", false).unwrap(),
            MountSource::Pxar("root.pxar.didx".into())
        );
        assert_eq!(
            mount_source("root.pxar.didx", false).unwrap(),
            MountSource::Pxar("root.pxar.didx".into())
        );
        assert_eq!(
            mount_source("disk.img", true).unwrap(),
            MountSource::Image("disk.img.fidx".into())
        );
        let err = |n: &str, map: bool| mount_source(n, map).unwrap_err().to_string();
        assert_eq!(
            err("disk.img", false),
            "use the 'map' command to map drive images"
        );
        assert_eq!(
            err("root.pxar", true),
            "use the 'mount' command to mount pxar archives"
        );
        assert_eq!(
            err("x.conf", false),
            "Can only mount/map pxar archives and drive images."
        );
        assert_eq!(
            err("x.conf", true),
            "Can only mount/map pxar archives and drive images."
        );
    }

    #[test]
    fn escaping() {
        let name = "root@pam@localhost:8007:store:vm/100/2024-01-01T00:00:00Z/drive-scsi0.img";
        let escaped = systemd_escape(name);
        assert!(!escaped.contains('/'));
        assert_eq!(escaped, "root\\x40pam\\x40localhost:8007:store:vm-100-2024\\x2d01\\x2d01T00:00:00Z-drive\\x2dscsi0.img");
        assert_eq!(systemd_unescape(&escaped).unwrap(), name);
        assert_eq!(systemd_escape(".hidden"), "\\x2ehidden");
        assert_eq!(systemd_unescape("\\x2ehidden").unwrap(), ".hidden");
    }
}
