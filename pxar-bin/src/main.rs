//! `pxar`: create, extract, list and mount pxar archives.

mod create;
mod list;
mod mount;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, format_err, Context, Result};
use pathpatterns::{MatchEntry, MatchType, PatternFlag};
use pbs_cli::{Command, CommandTree, Param};
use pbs_client::pxar::{extract_archive, Flags, OverwriteFlags, PxarExtractOptions};
use pxar::{Decoder, EntryKind};

const ARCHIVE: Param = Param::required("archive", "Archive name.");
const PAYLOAD_INPUT: Param = Param::optional(
    "payload-input",
    "Payload input archive (.ppxar) of a split archive (.mpxar).",
);

/// The `--no-*` options shared by `create` and `extract`, each clearing one feature flag.
const FEATURE_OPTIONS: [(&str, Flags); 6] = [
    ("no-xattrs", Flags::WITH_XATTRS),
    ("no-fcaps", Flags::WITH_FCAPS),
    ("no-acls", Flags::WITH_ACL),
    ("no-device-nodes", Flags::WITH_DEVICE_NODES),
    ("no-fifos", Flags::WITH_FIFOS),
    ("no-sockets", Flags::WITH_SOCKETS),
];

/// [`Flags::DEFAULT`] minus what the `--no-*` options turn off.
fn feature_flags(args: &pbs_cli::ParsedArgs) -> Result<Flags> {
    let mut flags = Flags::DEFAULT;
    for (option, flag) in FEATURE_OPTIONS {
        if args.flag(option, false)? {
            flags.remove(flag);
        }
    }
    Ok(flags)
}

fn command_tree() -> CommandTree {
    let create = Command {
        description: "Create a new .pxar archive.",
        params: vec![
            ARCHIVE,
            Param::required("source", "Source directory."),
            Param::flag("no-xattrs", "Ignore extended file attributes."),
            Param::flag("no-fcaps", "Ignore file capabilities."),
            Param::flag("no-acls", "Ignore access control list entries."),
            Param::flag("all-file-systems", "Include mounted sudirs."),
            Param::flag("no-device-nodes", "Ignore device nodes."),
            Param::flag("no-fifos", "Ignore fifos."),
            Param::flag("no-sockets", "Ignore sockets."),
            Param::array(
                "exclude",
                "List of paths or pattern matching files to exclude.",
            ),
            Param::integer(
                "entries-max",
                "Max number of entries loaded at once into memory (default 1048576).",
            ),
            Param::optional(
                "payload-output",
                "'ppxar' payload output for split archive.",
            ),
            Param::flag("verbose", "Verbose output: print every archived path."),
        ],
        positionals: vec!["archive", "source"],
    };
    let extract = Command {
        description: "Extract an archive.",
        params: vec![
            ARCHIVE,
            Param::optional("target", "Target directory (default: current directory)."),
            Param::array(
                "pattern",
                "List of paths or pattern matching files to restore.",
            ),
            Param::flag("verbose", "Verbose output."),
            Param::flag("no-xattrs", "Ignore extended file attributes."),
            Param::flag("no-fcaps", "Ignore file capabilities."),
            Param::flag("no-acls", "Ignore access control list entries."),
            Param::flag(
                "allow-existing-dirs",
                "Allows directories to already exist on restore.",
            ),
            Param::flag(
                "overwrite",
                "Overwrite existing files, symlinks and hardlinks.",
            ),
            Param::flag("overwrite-files", "Overwrite existing files."),
            Param::flag("overwrite-symlinks", "Overwrite existing symlinks."),
            Param::flag("overwrite-hardlinks", "Overwrite existing hardlinks."),
            Param::optional(
                "files-from",
                "File containing match pattern for files to restore.",
            ),
            Param::flag("no-device-nodes", "Ignore device nodes."),
            Param::flag("no-fifos", "Ignore fifos."),
            Param::flag("no-sockets", "Ignore sockets."),
            Param::flag(
                "strict",
                "Stop on errors. Otherwise most errors will simply warn.",
            ),
            PAYLOAD_INPUT,
            Param::optional(
                "prelude-target",
                "Path to store the prelude of a split archive.",
            ),
        ],
        positionals: vec!["archive", "target"],
    };
    let list = Command {
        description: "List the contents of an archive.",
        params: vec![
            ARCHIVE,
            Param::flag("verbose", "Show metadata of every entry."),
            PAYLOAD_INPUT,
        ],
        positionals: vec!["archive"],
    };
    let mount = Command {
        description: "Mount the archive as a read-only FUSE file system.",
        params: vec![
            ARCHIVE,
            Param::required("mountpoint", "Mountpoint for the file system."),
            Param::flag(
                "verbose",
                "Verbose output, running in the foreground (for debugging).",
            ),
            PAYLOAD_INPUT,
        ],
        positionals: vec!["archive", "mountpoint"],
    };
    CommandTree::Group(vec![
        ("create", CommandTree::Leaf(create)),
        ("extract", CommandTree::Leaf(extract)),
        ("list", CommandTree::Leaf(list)),
        ("mount", CommandTree::Leaf(mount)),
    ])
}

type FileDecoder = Decoder<BufReader<File>, BufReader<File>>;

fn open_file(path: &str) -> Result<File> {
    File::open(path).with_context(|| format!("failed to open archive {path:?}"))
}

fn open_decoder(archive: &str, payload_input: Option<&str>) -> Result<FileDecoder> {
    let input = BufReader::with_capacity(1 << 20, open_file(archive)?);
    let payload = payload_input
        .map(|p| open_file(p).map(|f| BufReader::with_capacity(1 << 20, f)))
        .transpose()?;
    Decoder::new(input, payload).map_err(|err| format_err!("archive {archive:?}: {err}"))
}

fn parse_patterns(patterns: &[String], files_from: Option<&str>) -> Result<Vec<MatchEntry>> {
    let mut texts: Vec<Vec<u8>> = patterns.iter().map(|p| p.as_bytes().to_vec()).collect();
    if let Some(path) = files_from {
        let file = File::open(path).with_context(|| format!("failed to open {path:?}"))?;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.with_context(|| format!("failed to read {path:?}"))?;
            if !line.is_empty() {
                texts.push(line);
            }
        }
    }
    texts
        .iter()
        .map(|text| {
            MatchEntry::parse_pattern(text, PatternFlag::PATH_NAME, MatchType::Include).map_err(
                |err| {
                    format_err!(
                        "invalid match pattern {:?} - {err}",
                        String::from_utf8_lossy(text)
                    )
                },
            )
        })
        .collect()
}

fn extract(args: &pbs_cli::ParsedArgs) -> Result<()> {
    let archive = args.required("archive")?;
    let target = args.get("target").unwrap_or(".");
    let decoder = open_decoder(archive, args.get("payload-input"))?;
    if decoder.is_split() && args.get("payload-input").is_none() {
        bail!("archive {archive:?} is a split metadata archive: --payload-input is required");
    }
    if let Some(prelude_target) = args.get("prelude-target") {
        match decoder.prelude() {
            Some(prelude) => std::fs::write(prelude_target, prelude)
                .with_context(|| format!("failed to write prelude to {prelude_target:?}"))?,
            None => eprintln!("archive has no prelude, not writing {prelude_target:?}"),
        }
    }

    let feature_flags = feature_flags(args)?;
    let all = args.flag("overwrite", false)?;
    let options = PxarExtractOptions {
        allow_existing_dirs: args.flag("allow-existing-dirs", false)?,
        overwrite: OverwriteFlags {
            files: all || args.flag("overwrite-files", false)?,
            symlinks: all || args.flag("overwrite-symlinks", false)?,
            hardlinks: all || args.flag("overwrite-hardlinks", false)?,
        },
        strict: args.flag("strict", false)?,
        on_error: None,
        verbose: args.flag("verbose", false)?,
    };
    let match_list = parse_patterns(args.get_all("pattern"), args.get("files-from"))?;

    std::fs::create_dir_all(target)
        .with_context(|| format!("failed to create target directory {target:?}"))?;
    extract_archive(
        decoder,
        Path::new(target),
        &match_list,
        feature_flags,
        options,
    )
    .with_context(|| format!("error extracting archive {archive:?}"))
}

fn list(args: &pbs_cli::ParsedArgs) -> Result<()> {
    let archive = args.required("archive")?;
    let verbose = args.flag("verbose", false)?;
    let mut decoder = open_decoder(archive, args.get("payload-input"))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(entry) = decoder
        .next_entry()
        .map_err(|err| format_err!("archive {archive:?}: {err}"))?
    {
        if entry.kind == EntryKind::GoodbyeTable {
            continue;
        }
        let line = if verbose {
            list::verbose_line(&entry)?
        } else {
            list::plain_line(&entry)
        };
        std::io::Write::write_all(&mut out, line.as_bytes())?;
        std::io::Write::write_all(&mut out, b"\n")?;
    }
    std::io::Write::flush(&mut out)?;
    Ok(())
}

fn run(args: &[String]) -> Result<()> {
    let tree = command_tree();
    let invocation = pbs_cli::parse_command_line(&tree, args)?;
    let a = &invocation.args;
    match invocation.path.as_slice() {
        ["create"] => create::create(a, feature_flags(a)?),
        ["extract"] => extract(a),
        ["list"] => list(a),
        ["mount"] => mount::mount(
            a.required("archive")?,
            a.required("mountpoint")?,
            a.get("payload-input"),
            a.flag("verbose", false)?,
        ),
        other => bail!("unhandled command {other:?}"),
    }
}

fn print_usage() {
    if let CommandTree::Group(commands) = command_tree() {
        for (name, command) in commands {
            if let CommandTree::Leaf(command) = command {
                eprintln!("{}", pbs_cli::usage_text("pxar", &[name], &command));
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args[0] == "help" || args[0] == "--help" {
        print_usage();
        std::process::exit(if args.is_empty() {
            pbs_cli::ERROR_EXIT_CODE
        } else {
            0
        });
    }
    if let Err(err) = run(&args) {
        eprintln!("Error: {err:#}");
        std::process::exit(pbs_cli::ERROR_EXIT_CODE);
    }
}
