//! `pxar create`: archive a directory tree into a v1 archive, or a v2 split pair with
//! `--payload-output`.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, format_err, Context, Result};
use pathpatterns::{MatchEntry, MatchType, PatternFlag};
use pbs_cli::ParsedArgs;
use pbs_client::pxar::{
    create_archive, create_archive_split, Flags, PxarCreateOptions, SourceDir, ENCODER_MAX_ENTRIES,
};

/// Permissions of newly created archive files.
const ARCHIVE_FILE_MODE: u32 = 0o640;

/// Parse `--exclude` values (command-line order, base type Exclude).
pub fn exclude_patterns(values: &[String]) -> Result<Vec<MatchEntry>> {
    values
        .iter()
        .map(|value| {
            MatchEntry::parse_pattern(value.as_bytes(), PatternFlag::PATH_NAME, MatchType::Exclude)
                .map_err(|err| format_err!("error in exclude pattern {value:?}: {err}"))
        })
        .collect()
}

/// `--entries-max`: a non-negative integer, default [`ENCODER_MAX_ENTRIES`].
fn entries_max(args: &ParsedArgs) -> Result<usize> {
    match args.integer("entries-max")? {
        None => Ok(ENCODER_MAX_ENTRIES),
        Some(value) => usize::try_from(value).map_err(|_| {
            format_err!("parameter verification failed - 'entries-max': value must be at least 0")
        }),
    }
}

/// A newly created output file that is removed again unless the run succeeds.
struct OutputFile {
    path: PathBuf,
    keep: bool,
}

impl OutputFile {
    fn create(path: &Path) -> Result<(Self, File)> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(ARCHIVE_FILE_MODE)
            .open(path)
            .with_context(|| format!("failed to create archive file {path:?}"))?;
        let guard = OutputFile {
            path: path.to_path_buf(),
            keep: false,
        };
        Ok((guard, file))
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Run `pxar create` with the parsed arguments.
pub fn create(args: &ParsedArgs, feature_flags: Flags) -> Result<()> {
    let archive = Path::new(args.required("archive")?);
    let source = Path::new(args.required("source")?);
    let payload_output = args.get("payload-output").map(Path::new);
    if payload_output == Some(archive) {
        bail!("archive and payload output must be different files");
    }

    let options = PxarCreateOptions {
        device_set: if args.flag("all-file-systems", false)? {
            None
        } else {
            Some(HashSet::new())
        },
        patterns: exclude_patterns(args.get_all("exclude"))?,
        entries_max: entries_max(args)?,
        verbose: args.flag("verbose", false)?,
        ..Default::default()
    };

    // The source is checked first, so a bad source leaves no empty archive file behind.
    let source_dir = SourceDir::Path(source);
    let metadata = std::fs::symlink_metadata(source)
        .with_context(|| format!("unable to open source directory {source:?}"))?;
    if !metadata.is_dir() {
        bail!("source {source:?} is not a directory");
    }

    let mut print = |message: String| eprintln!("{message}");
    let (mut archive_guard, archive_file) = OutputFile::create(archive)?;
    match payload_output {
        None => create_archive(
            source_dir,
            archive_file,
            feature_flags,
            options,
            None,
            &mut print,
        ),
        Some(payload_path) => {
            let (mut payload_guard, payload_file) = OutputFile::create(payload_path)?;
            let stats = create_archive_split(
                source_dir,
                archive_file,
                payload_file,
                feature_flags,
                options,
                None,
                &mut print,
            );
            payload_guard.keep = stats.is_ok();
            stats
        }
    }
    .with_context(|| format!("error creating archive {archive:?} from {source:?}"))?;
    archive_guard.keep = true;
    Ok(())
}
