//! The endpoints of a backup session other than chunk uploads: parameter schemas and the
//! blocking handler bodies.

use std::path::Path;

use anyhow::{bail, format_err, Error};
use serde_json::Value;

use pbs_api_types::names::is_safe_id;
use pbs_datastore::{
    open_index, DataBlob, DynamicIndexWriter, FixedIndexReader, FixedIndexWriter, IndexFile,
};
use pbs_rest_server::{ObjectSchema, ParamKind, ParamSchema, StringFormat};

use super::environment::{BackupEnvironment, FIXED_CHUNK_SIZE};

/// Largest encoded blob or chunk (16 MiB payload + encrypted header).
pub const MAX_ENCODED_SIZE: i64 = 16 * 1024 * 1024 + 44;
/// Largest plain chunk.
pub const MAX_CHUNK_SIZE: i64 = 16 * 1024 * 1024;

/// 64 lower-case hex digits.
pub fn is_digest_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses a 64-hex digest (already schema-checked).
pub fn parse_digest(text: &str) -> Result<[u8; 32], Error> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest)
        .map_err(|err| format_err!("invalid digest '{text}' - {err}"))?;
    Ok(digest)
}

fn safe_id(name: &'static str) -> ParamSchema {
    ParamSchema::string(name).format(StringFormat::Pattern(is_safe_id))
}

fn digest(name: &'static str) -> ParamSchema {
    ParamSchema::string(name).format(StringFormat::Pattern(is_digest_hex))
}

fn wid() -> ParamSchema {
    ParamSchema::integer("wid").minimum(1).maximum(256)
}

/// `archive-name`.
pub fn archive_name_schema() -> ObjectSchema {
    ObjectSchema::new().param(safe_id("archive-name"))
}

/// `POST blob`.
pub fn blob_schema() -> ObjectSchema {
    ObjectSchema::new().param(safe_id("file-name")).param(
        ParamSchema::integer("encoded-size")
            .minimum(12)
            .maximum(MAX_ENCODED_SIZE),
    )
}

/// `POST fixed_index`.
pub fn fixed_index_schema() -> ObjectSchema {
    ObjectSchema::new()
        .param(safe_id("archive-name"))
        .param(ParamSchema::integer("size").minimum(1))
        .param(digest("reuse-csum").optional())
}

/// `POST *_chunk`.
pub fn chunk_schema() -> ObjectSchema {
    ObjectSchema::new()
        .param(wid())
        .param(digest("digest"))
        .param(
            ParamSchema::integer("size")
                .minimum(1)
                .maximum(MAX_CHUNK_SIZE),
        )
        .param(
            ParamSchema::integer("encoded-size")
                .minimum(13)
                .maximum(MAX_ENCODED_SIZE),
        )
}

/// `PUT *_index`.
pub fn append_schema() -> ObjectSchema {
    ObjectSchema::new()
        .param(wid())
        .param(ParamSchema::array(
            "digest-list",
            ParamKind::String {
                min_length: None,
                max_length: None,
                format: Some(StringFormat::Pattern(is_digest_hex)),
            },
        ))
        .param(ParamSchema::array(
            "offset-list",
            ParamKind::Integer {
                minimum: Some(0),
                maximum: None,
            },
        ))
}

/// `POST dynamic_close` (`min` 1) / `fixed_close` (`min` 0).
pub fn close_schema(min: i64) -> ObjectSchema {
    ObjectSchema::new()
        .param(wid())
        .param(ParamSchema::integer("chunk-count").minimum(min))
        .param(ParamSchema::integer("size").minimum(min))
        .param(digest("csum"))
}

fn str_param<'a>(params: &'a Value, name: &str) -> Result<&'a str, Error> {
    params[name]
        .as_str()
        .ok_or_else(|| format_err!("missing parameter '{name}'"))
}

fn u64_param(params: &Value, name: &str) -> Result<u64, Error> {
    params[name]
        .as_u64()
        .ok_or_else(|| format_err!("missing parameter '{name}'"))
}

fn wid_param(params: &Value) -> Result<usize, Error> {
    usize::try_from(u64_param(params, "wid")?).map_err(|_| format_err!("wid out of range"))
}

/// The parsed chunk upload parameters.
pub fn chunk_params(params: &Value) -> Result<super::upload_chunk::ChunkUpload, Error> {
    Ok(super::upload_chunk::ChunkUpload {
        wid: wid_param(params)?,
        digest: parse_digest(str_param(params, "digest")?)?,
        size: u32::try_from(u64_param(params, "size")?)
            .map_err(|_| format_err!("chunk size out of range"))?,
        encoded_size: usize::try_from(u64_param(params, "encoded-size")?)
            .map_err(|_| format_err!("encoded size out of range"))?,
    })
}

/// `GET previous_backup_time`.
pub fn previous_backup_time(env: &BackupEnvironment) -> Value {
    match &env.last_backup {
        Some(info) => Value::from(info.backup_dir.time),
        None => Value::Null,
    }
}

/// Why `GET previous` failed: the status matters (`404` for a missing file).
pub enum PreviousError {
    /// `400`
    BadRequest(Error),
    /// `404`
    NotFound(String),
}

impl From<Error> for PreviousError {
    fn from(err: Error) -> Self {
        Self::BadRequest(err)
    }
}

/// `GET previous`: registers the chunks of a previous index and opens the file for download.
pub fn previous(env: &BackupEnvironment, params: &Value) -> Result<std::fs::File, PreviousError> {
    let name = str_param(params, "archive-name")?;
    let Some(base) = &env.last_backup else {
        return Err(format_err!("no valid previous backup").into());
    };
    let extension = Path::new(name).extension().and_then(|e| e.to_str());
    let is_index = match extension {
        Some("didx") | Some("fidx") => true,
        Some("blob") => false,
        _ => return Err(format_err!("unknown archive type: {name:?}").into()),
    };
    let path = env
        .datastore
        .snapshot_path(&env.ns, &base.backup_dir)?
        .join(name);
    if is_index {
        env.ensure_unfinished()?;
        let index = open_index(&path)?;
        env.log(format!("register chunks in '{name}' from previous backup."));
        for pos in 0..index.index_count() {
            let info = index
                .chunk_info(pos)
                .ok_or_else(|| format_err!("index {path:?}: entry {pos} out of range"))?;
            let size = u32::try_from(info.size())
                .map_err(|_| format_err!("index {path:?}: chunk {pos} too large"))?;
            env.register_known_chunk(info.digest, size)?;
        }
    }
    env.log(format!("download '{name}' from previous backup."));
    std::fs::File::open(&path).map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            PreviousError::NotFound(format!("open file {path:?} failed - not found"))
        } else {
            PreviousError::BadRequest(format_err!("open file {path:?} failed - {err}"))
        }
    })
}

/// `POST blob`: checks and stores an uploaded blob file.
pub fn upload_blob(env: &BackupEnvironment, params: &Value, data: Vec<u8>) -> Result<(), Error> {
    let name = str_param(params, "file-name")?;
    let encoded_size = u64_param(params, "encoded-size")?;
    if !name.ends_with(".blob") {
        bail!("wrong blob file extension: '{name}'");
    }
    if encoded_size != data.len() as u64 {
        bail!(
            "got blob with unexpected length ({encoded_size} != {})",
            data.len()
        );
    }
    let blob = DataBlob::from_raw(data).map_err(|err| format_err!("{err}"))?;
    blob.verify_crc().map_err(|err| format_err!("{err}"))?;
    let path = env.snapshot_path.join(name);
    pbs_tools::fs::replace_file(
        &path,
        blob.raw_data(),
        pbs_tools::fs::ReplaceOptions::mode(0o644),
    )
    .map_err(|err| format_err!("unable to write blob {path:?} - {err}"))?;
    env.add_file();
    env.log(format!("add blob {path:?} ({} bytes)", blob.raw_size()));
    Ok(())
}

/// `POST dynamic_index`.
pub fn create_dynamic_index(env: &BackupEnvironment, params: &Value) -> Result<Value, Error> {
    env.ensure_unfinished()?;
    let name = str_param(params, "archive-name")?;
    if !name.ends_with(".didx") {
        bail!("wrong archive extension: '{name}'");
    }
    let path = env.snapshot_path.join(name);
    let index = DynamicIndexWriter::create(env.datastore.chunk_store().clone(), &path)?;
    let wid = env.register_dynamic_writer(index, name.to_string())?;
    env.log(format!(
        "created new dynamic index {wid} ({:?})",
        relative(env, name)
    ));
    Ok(Value::from(wid))
}

fn relative(env: &BackupEnvironment, name: &str) -> String {
    match pbs_api_types::datastore::snapshot_path(&env.ns, &env.backup_dir) {
        Ok(path) => path.join(name).display().to_string(),
        Err(_) => name.to_string(),
    }
}

/// `POST fixed_index`.
pub fn create_fixed_index(env: &BackupEnvironment, params: &Value) -> Result<Value, Error> {
    env.ensure_unfinished()?;
    let name = str_param(params, "archive-name")?;
    if !name.ends_with(".fidx") {
        bail!("wrong archive extension: '{name}'");
    }
    let size = u64_param(params, "size")?;
    let reuse_csum = params["reuse-csum"].as_str();
    let path = env.snapshot_path.join(name);

    let previous = match reuse_csum {
        Some(csum) => {
            let Some(base) = &env.last_backup else {
                bail!("cannot reuse index - no valid previous backup exists");
            };
            let base_path = env
                .datastore
                .snapshot_path(&env.ns, &base.backup_dir)?
                .join(name);
            let reader = FixedIndexReader::open(&base_path).map_err(|_| {
                format_err!("cannot reuse index - no previous backup exists for archive")
            })?;
            let (actual, _) = reader.compute_csum();
            let actual = hex::encode(actual);
            if actual != csum {
                bail!("expected csum ({csum}) doesn't match last backup's ({actual}), cannot do incremental backup");
            }
            Some(reader)
        }
        None => None,
    };

    let mut index = FixedIndexWriter::create(
        env.datastore.chunk_store().clone(),
        &path,
        size,
        FIXED_CHUNK_SIZE,
    )?;
    let incremental = match &previous {
        Some(reader) => {
            if reader.index_count() != index.index_length() {
                bail!("clone_data_from failed - index sizes not equal");
            }
            index
                .clone_data_from(reader)
                .map_err(|err| format_err!("clone_data_from failed - {err}"))?;
            true
        }
        None => false,
    };
    let wid = env.register_fixed_writer(index, name.to_string(), size, incremental)?;
    env.log(format!(
        "created new fixed index {wid} ({:?})",
        relative(env, name)
    ));
    Ok(Value::from(wid))
}

/// Which index kind an append or close is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKind {
    /// `.didx`
    Dynamic,
    /// `.fidx`
    Fixed,
}

/// `PUT *_index`.
pub fn append_index(
    env: &BackupEnvironment,
    kind: IndexKind,
    params: &Value,
) -> Result<Value, Error> {
    env.ensure_unfinished()?;
    let wid = wid_param(params)?;
    let digests = params["digest-list"]
        .as_array()
        .ok_or_else(|| format_err!("missing parameter 'digest-list'"))?;
    let offsets = params["offset-list"]
        .as_array()
        .ok_or_else(|| format_err!("missing parameter 'offset-list'"))?;
    if offsets.len() != digests.len() {
        bail!(
            "offset list has wrong length ({} != {})",
            offsets.len(),
            digests.len()
        );
    }
    for (digest, offset) in digests.iter().zip(offsets) {
        let digest = parse_digest(
            digest
                .as_str()
                .ok_or_else(|| format_err!("digest-list: expected a string"))?,
        )?;
        let offset = offset
            .as_u64()
            .ok_or_else(|| format_err!("offset-list: expected an unsigned integer"))?;
        if env.lookup_chunk(&digest).is_none() {
            env.register_base_snapshot_chunks()?;
        }
        match kind {
            IndexKind::Dynamic => env.dynamic_writer_append_chunk(wid, offset, &digest)?,
            IndexKind::Fixed => env.fixed_writer_append_chunk(wid, offset, &digest)?,
        }
        env.debug(format!(
            "successfully added chunk {} to {} index {wid} (offset {offset})",
            hex::encode(digest),
            if kind == IndexKind::Dynamic {
                "dynamic"
            } else {
                "fixed"
            }
        ));
    }
    Ok(Value::Null)
}

/// `POST *_close`.
pub fn close_index(
    env: &BackupEnvironment,
    kind: IndexKind,
    params: &Value,
) -> Result<Value, Error> {
    let wid = wid_param(params)?;
    let chunk_count = u64_param(params, "chunk-count")?;
    let size = u64_param(params, "size")?;
    let csum = parse_digest(str_param(params, "csum")?)?;
    match kind {
        IndexKind::Dynamic => {
            env.dynamic_writer_close(wid, chunk_count, size, csum)?;
            env.log(format!("successfully closed dynamic index {wid}"));
        }
        IndexKind::Fixed => {
            env.fixed_writer_close(wid, chunk_count, size, csum)?;
            env.log(format!("successfully closed fixed index {wid}"));
        }
    }
    Ok(Value::Null)
}

/// `POST finish`.
pub fn finish(env: &BackupEnvironment) -> Result<Value, Error> {
    env.finish_backup()?;
    env.log("successfully finished backup");
    Ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_hex_is_lower_case_64() {
        assert!(is_digest_hex(&"ab".repeat(32)));
        assert!(!is_digest_hex(&"AB".repeat(32)));
        assert!(!is_digest_hex(&"ab".repeat(31)));
        assert_eq!(parse_digest(&"01".repeat(32)).unwrap(), [1u8; 32]);
    }

    #[test]
    fn close_schema_minimums() {
        let pairs = |count: &str| {
            vec![
                ("wid".to_string(), "1".to_string()),
                ("chunk-count".to_string(), count.to_string()),
                ("size".to_string(), "1".to_string()),
                ("csum".to_string(), "00".repeat(32)),
            ]
        };
        assert!(close_schema(1).parse_strings(&pairs("0")).is_err());
        assert!(close_schema(0).parse_strings(&pairs("0")).is_ok());
    }
}
