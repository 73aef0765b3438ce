//! `proxmox-backup-debug`: inspect and recover datastore files.

use std::path::Path;

use anyhow::Result;
use proxmox_backup::debug::{self, inspect, recover};

fn run(args: &[String]) -> Result<()> {
    let tree = debug::command_tree();
    let invocation = match pbs_cli::parse_command_line(&tree, args) {
        Ok(inv) => inv,
        Err(err) => {
            eprintln!("Error: {err}");
            std::process::exit(pbs_cli::ERROR_EXIT_CODE);
        }
    };
    let a = &invocation.args;
    match invocation.path.as_slice() {
        ["inspect", "chunk"] => {
            let format = pbs_cli::OutputFormat::from_args(a)?;
            let crypt = debug::load_crypt_config(a.get("keyfile"))?;
            let value = inspect::inspect_chunk(
                Path::new(a.required("chunk")?),
                a.get("digest"),
                a.get("reference-filter").map(Path::new),
                a.flag("use-filename-only", false)?,
                a.get("decode"),
                crypt.as_ref(),
            )?;
            if a.get("decode") != Some("-") {
                format.print(&value)?;
            }
        }
        ["inspect", "file"] => {
            let format = pbs_cli::OutputFormat::from_args(a)?;
            let crypt = debug::load_crypt_config(a.get("keyfile"))?;
            let value = inspect::inspect_file(
                Path::new(a.required("file")?),
                a.get("decode"),
                crypt.as_ref(),
            )?;
            if a.get("decode") != Some("-") {
                format.print(&value)?;
            }
        }
        ["recover", "index"] => {
            let file = Path::new(a.required("file")?);
            let crypt = debug::load_crypt_config(a.get("keyfile"))?;
            let output = match a.get("output-path") {
                Some(p) => p.into(),
                None => recover::default_output_path(file)?,
            };
            let options = recover::RecoverOptions {
                skip_crc: a.flag("skip-crc", false)?,
                ignore_missing_chunks: a.flag("ignore-missing-chunks", false)?,
                ignore_corrupt_chunks: a.flag("ignore-corrupt-chunks", false)?,
            };
            let bytes = recover::recover_index(
                file,
                Path::new(a.required("chunks")?),
                &output,
                crypt.as_ref(),
                options,
            )?;
            eprintln!("recovered {bytes} bytes to '{}'", output.display());
        }
        other => anyhow::bail!("unhandled command {other:?}"),
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(err) = run(&args) {
        eprintln!("Error: {err:#}");
        std::process::exit(pbs_cli::ERROR_EXIT_CODE);
    }
}
