//! `restore`: write an archive of a snapshot to a file, a directory or stdout.

pub mod archive;
pub mod run;

use anyhow::{format_err, Result};
use serde_json::Value;

use pbs_cli::{Command, CommandTree, Param, ParsedArgs, ValueKind};
use pbs_client::pxar::{Flags, OverwriteFlags};

use crate::crypto;

fn restore_params() -> Vec<Param> {
    let mut params = vec![
        Param::required("snapshot", "Group/Snapshot path."),
        Param::required("archive-name", "Backup archive name."),
        Param::required(
            "target",
            "Target directory path. Use '-' to write to standard output.\n\nWe do not extract '.pxar' archives when writing to standard output.",
        ),
        Param::integer("rate", "Rate limit (for Token bucket filter) in bytes/second."),
        Param::integer("burst", "Size limit (for Token bucket filter) in bytes."),
        Param::flag("allow-existing-dirs", "Do not fail if directories already exists."),
        Param::flag("ignore-acls", "ignore acl settings"),
        Param::flag("ignore-xattrs", "ignore xattr settings"),
        Param::flag("ignore-ownership", "ignore owner settings (no chown)"),
        Param::flag("ignore-permissions", "ignore permission settings (no chmod)"),
        Param::flag("overwrite", "overwrite already existing files"),
        Param::flag("overwrite-files", "overwrite already existing files"),
        Param::flag("overwrite-symlinks", "overwrite already existing entries by archives symlink"),
        Param::flag("overwrite-hardlinks", "overwrite already existing entries by archives hardlink"),
        Param::flag("ignore-extract-device-errors", "ignore errors that occur during device node extraction"),
        Param {
            name: "prelude-target",
            kind: ValueKind::String,
            optional: true,
            description: "Path to restore prelude to, (pxar v2 archives only).",
        },
        Param::flag("verbose", "Verbose output."),
    ];
    params.extend(pbs_client::tools::repository_params());
    params.push(pbs_client::tools::ns_param());
    params.extend(crypto::key_params());
    params
}

/// The top-level entries of this module.
pub fn commands() -> Vec<(&'static str, CommandTree)> {
    vec![(
        "restore",
        CommandTree::Leaf(Command {
            description: "Restore backup repository.",
            params: restore_params(),
            positionals: vec!["snapshot", "archive-name", "target"],
        }),
    )]
}

/// Runs `restore`.
pub async fn run(_path: &[&'static str], args: &ParsedArgs) -> Result<Option<Value>> {
    run::run(args).await.map(|()| None)
}

/// How a pxar archive is extracted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtractSettings {
    pub flags: Flags,
    pub allow_existing_dirs: bool,
    pub overwrite: OverwriteFlags,
    pub ignore_device_errors: bool,
}

/// Reads the extraction options.
pub fn extract_settings(args: &ParsedArgs) -> Result<ExtractSettings> {
    let mut flags = Flags::DEFAULT;
    for (option, flag) in [
        ("ignore-acls", Flags::WITH_ACL),
        ("ignore-xattrs", Flags::WITH_XATTRS),
        ("ignore-ownership", Flags::WITH_OWNER),
        ("ignore-permissions", Flags::WITH_PERMISSIONS),
    ] {
        if args.flag(option, false)? {
            flags.remove(flag);
        }
    }
    let overwrite = if args.flag("overwrite", false)? {
        OverwriteFlags::all()
    } else {
        OverwriteFlags {
            files: args.flag("overwrite-files", false)?,
            symlinks: args.flag("overwrite-symlinks", false)?,
            hardlinks: args.flag("overwrite-hardlinks", false)?,
        }
    };
    Ok(ExtractSettings {
        flags,
        allow_existing_dirs: args.flag("allow-existing-dirs", false)?,
        overwrite,
        ignore_device_errors: args.flag("ignore-extract-device-errors", false)?,
    })
}

/// Errors of device node creation are skipped with `--ignore-extract-device-errors`.
fn is_device_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .to_string()
            .starts_with("failed to create special file")
    })
}

/// The extractor's options for these settings: stop at the first error, except device node
/// errors when they are to be ignored.
pub fn extract_options(
    settings: &ExtractSettings,
    verbose: bool,
) -> pbs_client::pxar::PxarExtractOptions {
    let on_error: Option<pbs_client::pxar::ErrorHandler> = if settings.ignore_device_errors {
        Some(Box::new(|err: anyhow::Error| {
            if is_device_error(&err) {
                eprintln!("ignoring error: {err:#}");
                Ok(())
            } else {
                Err(err)
            }
        }))
    } else {
        Some(Box::new(Err))
    };
    pbs_client::pxar::PxarExtractOptions {
        allow_existing_dirs: settings.allow_existing_dirs,
        overwrite: settings.overwrite,
        strict: false,
        on_error,
        verbose,
    }
}

/// The rate limit options shared with `backup`.
pub fn rate_limit(args: &ParsedArgs) -> Result<(Option<u64>, Option<u64>)> {
    let read = |name: &str, min: i64| -> Result<Option<u64>> {
        match args.integer(name)? {
            Some(v) if v < min => Err(format_err!(
                "parameter verification failed - '{name}': value must have a minimum value of {min} (got {v})"
            )),
            Some(v) => Ok(Some(v as u64)),
            None => Ok(None),
        }
    };
    Ok((read("rate", 100_000)?, read("burst", 1000)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> ParsedArgs {
        let tree = CommandTree::Group(commands());
        let mut full: Vec<String> = ["restore", "host/x", "root.pxar", "/tmp/t"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        full.extend(argv.iter().map(|s| s.to_string()));
        pbs_cli::parse_command_line(&tree, &full)
            .expect("parse")
            .args
    }

    #[test]
    fn extraction_flags() {
        let s = extract_settings(&parse(&[])).expect("settings");
        assert_eq!(s.flags, Flags::DEFAULT);
        assert_eq!(s.overwrite, OverwriteFlags::default());
        let s = extract_settings(&parse(&[
            "--ignore-acls",
            "--ignore-ownership",
            "--overwrite-symlinks",
        ]))
        .expect("settings");
        assert!(!s.flags.contains(Flags::WITH_ACL));
        assert!(!s.flags.contains(Flags::WITH_OWNER));
        assert!(s.flags.contains(Flags::WITH_XATTRS));
        assert!(s.flags.contains(Flags::WITH_PERMISSIONS));
        assert_eq!(
            s.overwrite,
            OverwriteFlags {
                files: false,
                symlinks: true,
                hardlinks: false
            }
        );
        let s = extract_settings(&parse(&[
            "--overwrite",
            "--ignore-xattrs",
            "--ignore-permissions",
            "--allow-existing-dirs",
        ]))
        .expect("settings");
        assert_eq!(s.overwrite, OverwriteFlags::all());
        assert!(!s.flags.contains(Flags::WITH_XATTRS));
        assert!(!s.flags.contains(Flags::WITH_PERMISSIONS));
        assert!(s.allow_existing_dirs);
    }

    #[test]
    fn device_errors() {
        let dev = format_err!("failed to create special file - Operation not permitted")
            .context("entry \"/dev/null\"");
        let other = format_err!("failed to create file - No space left");
        assert!(is_device_error(&dev));
        assert!(!is_device_error(&other));
        let mut options = extract_options(
            &ExtractSettings {
                flags: Flags::DEFAULT,
                allow_existing_dirs: false,
                overwrite: OverwriteFlags::default(),
                ignore_device_errors: true,
            },
            false,
        );
        let handler = options.on_error.as_mut().expect("handler");
        assert!(handler(dev).is_ok());
        assert!(handler(other).is_err());
        assert_eq!(
            rate_limit(&parse(&["--rate", "200000"])).expect("rate"),
            (Some(200_000), None)
        );
        assert!(rate_limit(&parse(&["--burst", "10"])).is_err());
    }
}
