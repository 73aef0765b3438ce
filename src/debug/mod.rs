//! `proxmox-backup-debug`: inspect and recover datastore files without a running server.

pub mod inspect;
pub mod recover;

use std::path::Path;

use anyhow::{Context, Result};
use pbs_cli::{Command, CommandTree, Param};
use pbs_datastore::key_config::KeyConfig;
use pbs_datastore::CryptConfig;

/// Environment variable holding the passphrase of an encrypted key file.
pub const ENCRYPTION_PASSWORD_ENV: &str = "PBS_ENCRYPTION_PASSWORD";

/// The command tree of the tool.
pub fn command_tree() -> CommandTree {
    let output_format =
        Param::optional("output-format", "Output format: text, json or json-pretty.");
    let keyfile = Param::optional("keyfile", "Path to the encryption key file.");
    let decode = Param::optional(
        "decode",
        "Write the decoded content to this path ('-' for stdout).",
    );
    CommandTree::Group(vec![
        (
            "inspect",
            CommandTree::Group(vec![
                (
                    "chunk",
                    CommandTree::Leaf(Command {
                        description: "Inspect a chunk file: CRC, encryption, digest, and which index files reference it.",
                        params: vec![
                            Param::required("chunk", "Path to the chunk file."),
                            Param::optional("reference-filter", "Directory to search for index files referencing the chunk."),
                            Param::flag("use-filename-only", "Match index files by file name only (not the full path)."),
                            Param::optional("digest", "Expected chunk digest (default: the chunk's file name)."),
                            decode.clone(),
                            keyfile.clone(),
                            output_format.clone(),
                        ],
                        positionals: vec!["chunk"],
                    }),
                ),
                (
                    "file",
                    CommandTree::Leaf(Command {
                        description: "Inspect a blob, fixed index or dynamic index file.",
                        params: vec![
                            Param::required("file", "Path to the file (.blob, .fidx or .didx)."),
                            decode,
                            keyfile.clone(),
                            output_format,
                        ],
                        positionals: vec!["file"],
                    }),
                ),
            ]),
        ),
        (
            "recover",
            CommandTree::Group(vec![(
                "index",
                CommandTree::Leaf(Command {
                    description: "Restore the data an index file describes, reading chunks from a chunk directory.",
                    params: vec![
                        Param::required("file", "Path to the .fidx or .didx index file."),
                        Param::required("chunks", "Path to the datastore's .chunks directory."),
                        keyfile,
                        Param::flag("skip-crc", "Do not check chunk CRCs."),
                        Param::flag("ignore-missing-chunks", "Write zeros for missing chunks instead of failing."),
                        Param::flag("ignore-corrupt-chunks", "Write corrupt chunks as they decode instead of failing."),
                        Param::optional("output-path", "Where to write the data (default: index name without extension)."),
                    ],
                    positionals: vec!["file", "chunks"],
                }),
            )]),
        ),
    ])
}

/// Loads a key file and derives its crypt config, asking for the passphrase when needed.
pub fn load_crypt_config(keyfile: Option<&str>) -> Result<Option<CryptConfig>> {
    let Some(path) = keyfile else { return Ok(None) };
    let key_config = KeyConfig::load(Path::new(path))
        .with_context(|| format!("unable to load key file '{path}'"))?;
    let password = || pbs_cli::read_password("Encryption Key Password: ", ENCRYPTION_PASSWORD_ENV);
    let (key, _created, _fingerprint) = key_config
        .decrypt(&password)
        .with_context(|| format!("unable to decrypt key file '{path}'"))?;
    Ok(Some(CryptConfig::new(key)?))
}

/// Writes decoded data to `target` (`-` = stdout).
pub fn write_output(target: &str, data: &[u8]) -> Result<()> {
    use std::io::Write;
    if target == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(data)?;
        stdout.flush()?;
    } else {
        std::fs::write(target, data).with_context(|| format!("unable to write '{target}'"))?;
    }
    Ok(())
}
