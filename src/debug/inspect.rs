//! `inspect chunk` and `inspect file`.

use std::path::{Path, PathBuf};

use anyhow::{bail, format_err, Context, Result};
use serde_json::{json, Value};

use pbs_api_types::time::epoch_to_rfc3339_utc;
use pbs_datastore::index::{open_index, IndexFile};
use pbs_datastore::{CryptConfig, DataBlob};

/// Reads a blob file without verifying its CRC (the caller reports the CRC state).
fn read_blob(path: &Path) -> Result<DataBlob> {
    let raw =
        std::fs::read(path).with_context(|| format!("unable to read '{}'", path.display()))?;
    DataBlob::from_raw(raw).with_context(|| format!("'{}' is not a valid blob", path.display()))
}

/// Reports on a chunk file; optionally decodes it and lists referencing indexes.
pub fn inspect_chunk(
    chunk: &Path,
    digest: Option<&str>,
    reference_filter: Option<&Path>,
    use_filename_only: bool,
    decode: Option<&str>,
    crypt_config: Option<&CryptConfig>,
) -> Result<Value> {
    let digest_text = match digest {
        Some(d) => d.to_string(),
        None => chunk
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.split('.').next().unwrap_or(n).to_string())
            .ok_or_else(|| format_err!("unable to take the digest from the chunk file name"))?,
    };
    let mut digest = [0u8; 32];
    hex::decode_to_slice(&digest_text, &mut digest).map_err(|_| {
        format_err!("chunk {digest_text}: not a valid chunk digest (64 hex digits)")
    })?;

    let blob = read_blob(chunk)?;
    let crc_ok = blob.verify_crc().is_ok();
    let mut result = json!({
        "digest": hex::encode(digest),
        "crc_status": if crc_ok { "ok" } else { "bad" },
        "encryption": blob.crypt_mode().as_str(),
        "compressed": blob.is_compressed(),
        "size": blob.raw_size(),
    });

    if !blob.is_encrypted() || crypt_config.is_some() {
        let status = match blob.decode(crypt_config, Some(&digest)) {
            Ok(data) => {
                if let Some(target) = decode {
                    super::write_output(target, &data)?;
                }
                result["decoded-size"] = json!(data.len());
                "ok".to_string()
            }
            Err(err) => {
                if decode.is_some() {
                    bail!("chunk {}: unable to decode - {err}", hex::encode(digest));
                }
                format!("error: {err}")
            }
        };
        result["digest_status"] = json!(status);
    } else if decode.is_some() {
        bail!(
            "chunk {}: encrypted chunk, a --keyfile is needed to decode it",
            hex::encode(digest)
        );
    }

    if let Some(dir) = reference_filter {
        let mut references = Vec::new();
        search_references(dir, &digest, use_filename_only, &mut references)?;
        result["referenced-by"] = json!(references);
    }
    Ok(result)
}

/// Collects the index files below `dir` that contain `digest`.
fn search_references(
    dir: &Path,
    digest: &[u8; 32],
    name_only: bool,
    found: &mut Vec<String>,
) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("unable to read directory '{}'", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if entry.file_name() != ".chunks" {
                search_references(&path, digest, name_only, found)?;
            }
            continue;
        }
        let is_index = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("fidx" | "didx")
        );
        if !file_type.is_file() || !is_index {
            continue;
        }
        // An unreadable or foreign index is not a reference; keep searching.
        let Ok(index) = open_index(&path) else {
            continue;
        };
        if (0..index.index_count()).any(|pos| index.index_digest(pos) == Some(digest)) {
            let shown = if name_only {
                entry.file_name().to_string_lossy().into_owned()
            } else {
                path.display().to_string()
            };
            found.push(shown);
        }
    }
    found.sort();
    Ok(())
}

/// Reports on a blob or index file; `decode` writes a blob's content.
pub fn inspect_file(
    file: &Path,
    decode: Option<&str>,
    crypt_config: Option<&CryptConfig>,
) -> Result<Value> {
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "blob" => {
            let blob = read_blob(file)?;
            let crc_ok = blob.verify_crc().is_ok();
            let mut result = json!({
                "encryption": blob.crypt_mode().as_str(),
                "compressed": blob.is_compressed(),
                "size": blob.raw_size(),
                "crc_status": if crc_ok { "ok" } else { "bad" },
            });
            if let Some(target) = decode {
                if !crc_ok {
                    bail!(
                        "blob '{}': wrong CRC checksum, refusing to decode",
                        file.display()
                    );
                }
                let data = blob
                    .decode(crypt_config, None)
                    .with_context(|| format!("blob '{}': unable to decode", file.display()))?;
                super::write_output(target, &data)?;
                result["decoded-size"] = json!(data.len());
            }
            Ok(result)
        }
        "fidx" | "didx" => {
            if decode.is_some() {
                bail!(
                    "index '{}': decoding needs the chunks, use 'recover index'",
                    file.display()
                );
            }
            let index = open_index(file).with_context(|| format!("index '{}'", file.display()))?;
            index_summary(file, index.as_ref(), ext)
        }
        _ => bail!(
            "'{}': unknown file type, expected .blob, .fidx or .didx",
            file.display()
        ),
    }
}

fn index_summary(file: &Path, index: &dyn IndexFile, ext: &str) -> Result<Value> {
    let (csum, size) = index.compute_csum();
    let mut digests = Vec::with_capacity(index.index_count());
    for pos in 0..index.index_count() {
        let info = index
            .chunk_info(pos)
            .ok_or_else(|| format_err!("index '{}': entry {pos} unreadable", file.display()))?;
        digests.push(if ext == "didx" {
            json!({"end": info.range.end, "digest": hex::encode(info.digest)})
        } else {
            json!(hex::encode(info.digest))
        });
    }
    let ctime = epoch_to_rfc3339_utc(index.index_ctime())
        .unwrap_or_else(|_| index.index_ctime().to_string());
    Ok(json!({
        "type": if ext == "fidx" { "fixed index" } else { "dynamic index" },
        "size": size,
        "ctime": ctime,
        "index-csum": hex::encode(csum),
        "chunk-count": index.index_count(),
        "chunk-digests": digests,
    }))
}

/// Resolves a path argument relative to the working directory.
pub fn path_arg(text: &str) -> PathBuf {
    PathBuf::from(text)
}
