//! The snapshot manifest (`index.json.blob` content): list of archives with sizes and
//! checksums, an optional HMAC signature and a free-form unprotected part.
//!
//! This module works on the decoded JSON text; wrapping it into a blob happens elsewhere.

use std::path::Path;

use anyhow::{bail, format_err, Context, Error};
use pbs_api_types::{CryptMode, Fingerprint};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::canonical_json::to_canonical_json;
use crate::crypt_config::CryptConfig;

/// File name of the manifest inside a snapshot directory.
pub const MANIFEST_BLOB_NAME: &str = "index.json.blob";
/// File name of the file catalog archive.
pub const CATALOG_NAME: &str = "catalog.pcat1.didx";
/// File name of the client task log uploaded after a backup.
pub const CLIENT_LOG_BLOB_NAME: &str = "client.log.blob";
/// File name of the encryption key wrapped with the master RSA key.
pub const ENCRYPTED_KEY_BLOB_NAME: &str = "rsa-encrypted.key.blob";

const KEY_FINGERPRINT: &str = "key-fingerprint";
const VERIFY_STATE: &str = "verify_state";
const NOTES: &str = "notes";

/// Kind of a snapshot file, decided by its last extension only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArchiveType {
    /// `.fidx`
    FixedIndex,
    /// `.didx`
    DynamicIndex,
    /// `.blob`
    Blob,
}

impl ArchiveType {
    /// Classifies an archive name by its extension (`.didx`, `.fidx`, `.blob`).
    pub fn from_path(archive_name: impl AsRef<Path>) -> Result<Self, Error> {
        let archive_name = archive_name.as_ref();
        match archive_name.extension().and_then(|ext| ext.to_str()) {
            Some("didx") => Ok(ArchiveType::DynamicIndex),
            Some("fidx") => Ok(ArchiveType::FixedIndex),
            Some("blob") => Ok(ArchiveType::Blob),
            _ => bail!("unknown archive type: {archive_name:?}"),
        }
    }
}

/// One archive listed in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileInfo {
    /// Archive file name, e.g. `root.pxar.didx`.
    pub filename: String,
    /// Crypt mode of the archive (absent in old manifests: `none`).
    #[serde(default)]
    pub crypt_mode: CryptMode,
    /// Stream/image size for indexes, encoded file size for blobs.
    pub size: u64,
    /// Index checksum for indexes, SHA-256 of the encoded file for blobs.
    #[serde(with = "hex_csum")]
    pub csum: [u8; 32],
}

impl FileInfo {
    /// Crypt mode the referenced chunks must have: only `encrypt` means encrypted chunks.
    pub fn chunk_crypt_mode(&self) -> CryptMode {
        match self.crypt_mode {
            CryptMode::Encrypt => CryptMode::Encrypt,
            CryptMode::None | CryptMode::SignOnly => CryptMode::None,
        }
    }
}

mod hex_csum {
    use super::*;

    pub fn serialize<S: Serializer>(csum: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(csum))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut csum = [0u8; 32];
        hex::decode_to_slice(&text, &mut csum)
            .map_err(|err| serde::de::Error::custom(format!("invalid csum '{text}' - {err}")))?;
        Ok(csum)
    }
}

/// Result of the last verification of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyState {
    /// All checks passed.
    Ok,
    /// At least one check failed.
    Failed,
}

/// `unprotected.verify_state` of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotVerifyState {
    /// Outcome of the verification.
    pub state: VerifyState,
    /// UPID of the verify task.
    pub upid: String,
}

/// The manifest of one backup snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackupManifest {
    /// `vm`, `ct` or `host`.
    pub backup_type: String,
    /// Backup ID.
    pub backup_id: String,
    /// Snapshot time, epoch seconds.
    pub backup_time: i64,
    /// Archives in upload order.
    pub files: Vec<FileInfo>,
    /// Data not covered by the signature; always a JSON object.
    #[serde(default = "empty_object", deserialize_with = "object_or_null")]
    pub unprotected: Value,
    /// Lowercase hex HMAC over the protected part, if signed.
    #[serde(default)]
    pub signature: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn object_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(empty_object()),
        value @ Value::Object(_) => Ok(value),
        _ => Err(serde::de::Error::custom("'unprotected' is not an object")),
    }
}

/// Rebuilds every object with keys in byte-wise order, whatever map type serde_json uses.
fn sort_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(String, Value)> = map.into_iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Value::Object(
                members
                    .into_iter()
                    .map(|(key, item)| (key, sort_keys(item)))
                    .collect(),
            )
        }
        Value::Array(list) => Value::Array(list.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

impl BackupManifest {
    /// An empty, unsigned manifest for one snapshot.
    pub fn new(
        backup_type: impl Into<String>,
        backup_id: impl Into<String>,
        backup_time: i64,
    ) -> Self {
        Self {
            backup_type: backup_type.into(),
            backup_id: backup_id.into(),
            backup_time,
            files: Vec::new(),
            unprotected: empty_object(),
            signature: None,
        }
    }

    /// Appends an archive; its name must end in `.didx`, `.fidx` or `.blob`.
    pub fn add_file(
        &mut self,
        filename: impl Into<String>,
        size: u64,
        csum: [u8; 32],
        crypt_mode: CryptMode,
    ) -> Result<(), Error> {
        let filename = filename.into();
        ArchiveType::from_path(&filename)?;
        self.files.push(FileInfo {
            filename,
            crypt_mode,
            size,
            csum,
        });
        Ok(())
    }

    /// The archives listed in the manifest.
    pub fn files(&self) -> &[FileInfo] {
        &self.files
    }

    /// Finds an archive by file name.
    pub fn lookup_file_info(&self, name: &str) -> Result<&FileInfo, Error> {
        self.files
            .iter()
            .find(|info| info.filename == name)
            .ok_or_else(|| format_err!("manifest does not contain file '{name}'"))
    }

    /// Checks an archive's size and checksum against the manifest entry.
    pub fn verify_file(&self, name: &str, csum: &[u8; 32], size: u64) -> Result<(), Error> {
        let info = self.lookup_file_info(name)?;
        if size != info.size {
            bail!("wrong size for file '{name}' ({} != {size})", info.size);
        }
        if csum != &info.csum {
            bail!("wrong checksum for file '{name}'");
        }
        Ok(())
    }

    /// The manifest as a JSON value with keys sorted.
    pub fn to_value(&self) -> Result<Value, Error> {
        Ok(sort_keys(serde_json::to_value(self)?))
    }

    /// HMAC-SHA256 over the canonical JSON of a manifest without `unprotected` and `signature`.
    pub fn json_signature(json: &Value, crypt_config: &CryptConfig) -> Result<[u8; 32], Error> {
        let Value::Object(map) = json else {
            bail!("manifest is not a JSON object");
        };
        let mut protected = map.clone();
        protected.remove("unprotected");
        protected.remove("signature");
        let canonical = to_canonical_json(&Value::Object(protected))?;
        Ok(crypt_config.compute_auth_tag(&canonical)?)
    }

    /// The signature this manifest gets with `crypt_config`.
    pub fn signature(&self, crypt_config: &CryptConfig) -> Result<[u8; 32], Error> {
        Self::json_signature(&self.to_value()?, crypt_config)
    }

    /// Pretty JSON with sorted keys and no trailing newline; with a key, the manifest is signed
    /// and the key fingerprint recorded in `unprotected`.
    pub fn to_string(&self, crypt_config: Option<&CryptConfig>) -> Result<String, Error> {
        let mut value = self.to_value()?;
        if let Some(crypt_config) = crypt_config {
            let signature = hex::encode(Self::json_signature(&value, crypt_config)?);
            let Value::Object(map) = &mut value else {
                bail!("manifest is not a JSON object");
            };
            map.insert("signature".to_string(), Value::String(signature));
            let unprotected = map
                .entry("unprotected")
                .or_insert_with(empty_object)
                .as_object_mut()
                .ok_or_else(|| format_err!("manifest: 'unprotected' is not an object"))?;
            unprotected.insert(
                KEY_FINGERPRINT.to_string(),
                Value::String(crypt_config.fingerprint().full()),
            );
            value = sort_keys(value);
        }
        Ok(serde_json::to_string_pretty(&value)?)
    }

    /// Parses decoded manifest JSON without checking a signature.
    pub fn from_data(data: &[u8]) -> Result<Self, Error> {
        let json: Value = serde_json::from_slice(data).context("unable to parse manifest")?;
        Self::from_value(json)
    }

    /// Parses decoded manifest JSON and, given a key, checks its signature first.
    pub fn from_data_verified(
        data: &[u8],
        crypt_config: Option<&CryptConfig>,
    ) -> Result<Self, Error> {
        let json: Value = serde_json::from_slice(data).context("unable to parse manifest")?;
        Self::check_signature(&json, crypt_config)?;
        Self::from_value(json)
    }

    /// Converts a parsed manifest JSON value; unknown top-level keys are dropped.
    pub fn from_value(json: Value) -> Result<Self, Error> {
        let manifest: Self = serde_json::from_value(json).context("unable to parse manifest")?;
        match manifest.backup_type.as_str() {
            "vm" | "ct" | "host" => Ok(manifest),
            other => bail!("unable to parse manifest - unknown backup type '{other}'"),
        }
    }

    /// Checks the signature of manifest JSON as read; unsigned manifests and a missing key pass.
    pub fn check_signature(json: &Value, crypt_config: Option<&CryptConfig>) -> Result<(), Error> {
        let Some(crypt_config) = crypt_config else {
            return Ok(());
        };
        let Some(signature) = json.get("signature").and_then(Value::as_str) else {
            return Ok(());
        };
        let expected = hex::encode(Self::json_signature(json, crypt_config)?);
        if let Some(fingerprint) = json_fingerprint(json)? {
            let key_fingerprint = crypt_config.fingerprint();
            if fingerprint != key_fingerprint {
                bail!(
                    "wrong key - unable to verify signature since manifest's key {fingerprint} \
                     does not match provided key {key_fingerprint}"
                );
            }
        }
        if signature != expected {
            bail!("wrong signature in manifest");
        }
        Ok(())
    }

    /// Checks this manifest's signature (if it has one) with `crypt_config`.
    pub fn verify_signature(&self, crypt_config: &CryptConfig) -> Result<(), Error> {
        Self::check_signature(&self.to_value()?, Some(crypt_config))
    }

    /// The key fingerprint recorded in `unprotected`, if any.
    pub fn fingerprint(&self) -> Result<Option<Fingerprint>, Error> {
        json_fingerprint(&self.to_value()?)
    }

    /// A manifest created with a key can only be used with that same key.
    pub fn check_fingerprint(&self, crypt_config: Option<&CryptConfig>) -> Result<(), Error> {
        let Some(fingerprint) = self.fingerprint()? else {
            return Ok(());
        };
        match crypt_config {
            None => bail!("missing key - manifest was created with key {fingerprint}"),
            Some(crypt_config) => {
                let key_fingerprint = crypt_config.fingerprint();
                if fingerprint != key_fingerprint {
                    bail!(
                        "wrong key - manifest's key {fingerprint} does not match provided key \
                         {key_fingerprint}"
                    );
                }
            }
        }
        Ok(())
    }

    /// `unprotected` as a mutable object (a non-object value is replaced by `{}`).
    pub fn unprotected_mut(&mut self) -> &mut Map<String, Value> {
        if !self.unprotected.is_object() {
            self.unprotected = empty_object();
        }
        match &mut self.unprotected {
            Value::Object(map) => map,
            _ => unreachable!("unprotected was just made an object"),
        }
    }

    /// `unprotected.verify_state`, if present.
    pub fn verify_state(&self) -> Result<Option<SnapshotVerifyState>, Error> {
        match self.unprotected.get(VERIFY_STATE) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => Ok(Some(
                SnapshotVerifyState::deserialize(value)
                    .context("invalid verify_state in manifest")?,
            )),
        }
    }

    /// Records the result of a verification in `unprotected.verify_state`.
    pub fn set_verify_state(&mut self, state: &SnapshotVerifyState) -> Result<(), Error> {
        let value = serde_json::to_value(state)?;
        self.unprotected_mut()
            .insert(VERIFY_STATE.to_string(), value);
        Ok(())
    }

    /// `unprotected.notes`, if present and a string.
    pub fn notes(&self) -> Option<&str> {
        self.unprotected.get(NOTES).and_then(Value::as_str)
    }

    /// Sets `unprotected.notes`.
    pub fn set_notes(&mut self, notes: impl Into<String>) {
        self.unprotected_mut()
            .insert(NOTES.to_string(), Value::String(notes.into()));
    }
}

fn json_fingerprint(json: &Value) -> Result<Option<Fingerprint>, Error> {
    match json.get("unprotected").and_then(|u| u.get(KEY_FINGERPRINT)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(
            text.parse()
                .context("invalid key-fingerprint in manifest")?,
        )),
        Some(_) => bail!("invalid key-fingerprint in manifest - not a string"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SIGNED_PART: &str = r#"{"backup-id":"elsa","backup-time":1593179765,"backup-type":"host","files":[{"crypt-mode":"encrypt","csum":"0101010101010101010101010101010101010101010101010101010101010101","filename":"test1.img.fidx","size":200},{"crypt-mode":"none","csum":"0202020202020202020202020202020202020202020202020202020202020202","filename":"abc.blob","size":200}]}"#;
    const SIGNATURE: &str = "d7b446fb7db081662081d4b40fedd858a1d6307a5aff4ecff7d5bf4fd35679e9";
    const SCRYPT_KEY_FINGERPRINT: &str = "12:b9:b7:74:bb:3d:89:95:2b:97:cb:c2:82:f0:0c:14:2b:83:ba:7f:96:62:6a:a1:5a:44:9a:63:e8:91:fe:25";

    fn scrypt_test_key() -> CryptConfig {
        let mut key = [0u8; 32];
        openssl::pkcs5::scrypt(b"test", b"", 65536, 8, 1, 1025 * 1024 * 1024, &mut key).unwrap();
        assert_eq!(
            hex::encode(key),
            "28cdb1a3bef39396c3860e00d448fe7a0efd8244486ab6feb30457681d31597e"
        );
        CryptConfig::new(key).unwrap()
    }

    fn counting_key() -> CryptConfig {
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = i as u8;
        }
        CryptConfig::new(key).unwrap()
    }

    fn signature_test_manifest() -> BackupManifest {
        let mut manifest = BackupManifest::new("host", "elsa", 1593179765);
        manifest
            .add_file("test1.img.fidx", 200, [1u8; 32], CryptMode::Encrypt)
            .unwrap();
        manifest
            .add_file("abc.blob", 200, [2u8; 32], CryptMode::None)
            .unwrap();
        manifest.unprotected_mut().insert(
            "note".to_string(),
            json!("This is not protected by the signature."),
        );
        manifest
    }

    fn error_of<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn signature_vector() {
        let crypt_config = scrypt_test_key();
        assert_eq!(crypt_config.fingerprint().full(), SCRYPT_KEY_FINGERPRINT);

        let manifest = signature_test_manifest();
        let mut protected = manifest.to_value().unwrap();
        let map = protected.as_object_mut().unwrap();
        map.remove("unprotected");
        map.remove("signature");
        assert_eq!(
            String::from_utf8(to_canonical_json(&protected).unwrap()).unwrap(),
            SIGNED_PART
        );
        assert_eq!(
            hex::encode(manifest.signature(&crypt_config).unwrap()),
            SIGNATURE
        );

        let text = manifest.to_string(Some(&crypt_config)).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["signature"], SIGNATURE);
        assert_eq!(
            json["unprotected"]["key-fingerprint"],
            SCRYPT_KEY_FINGERPRINT
        );
        assert_eq!(
            json["unprotected"]["note"],
            "This is not protected by the signature."
        );

        let parsed =
            BackupManifest::from_data_verified(text.as_bytes(), Some(&crypt_config)).unwrap();
        assert_eq!(parsed.signature.as_deref(), Some(SIGNATURE));
        parsed.verify_signature(&crypt_config).unwrap();
        assert_eq!(
            parsed.fingerprint().unwrap().unwrap().full(),
            SCRYPT_KEY_FINGERPRINT
        );
        parsed.check_fingerprint(Some(&crypt_config)).unwrap();

        // The unprotected part may change without breaking the signature.
        let mut changed = json.clone();
        changed["unprotected"]["note"] = json!("changed");
        BackupManifest::check_signature(&changed, Some(&crypt_config)).unwrap();

        // Wrong signature.
        let mut tampered = json.clone();
        tampered["files"][1]["size"] = json!(201);
        assert_eq!(
            error_of(BackupManifest::check_signature(
                &tampered,
                Some(&crypt_config)
            )),
            "wrong signature in manifest"
        );
        let upper = text.replace(SIGNATURE, &SIGNATURE.to_uppercase());
        assert_eq!(
            error_of(BackupManifest::from_data_verified(
                upper.as_bytes(),
                Some(&crypt_config)
            )),
            "wrong signature in manifest"
        );

        // Wrong key.
        let other = counting_key();
        assert_eq!(
            error_of(BackupManifest::from_data_verified(
                text.as_bytes(),
                Some(&other)
            )),
            "wrong key - unable to verify signature since manifest's key 12:b9:b7:74:bb:3d:89:95 \
             does not match provided key 0e:ab:d4:46:0b:6e:b9:ca"
        );
        assert_eq!(
            error_of(parsed.check_fingerprint(Some(&other))),
            "wrong key - manifest's key 12:b9:b7:74:bb:3d:89:95 does not match provided key \
             0e:ab:d4:46:0b:6e:b9:ca"
        );
        assert_eq!(
            error_of(parsed.check_fingerprint(None)),
            "missing key - manifest was created with key 12:b9:b7:74:bb:3d:89:95"
        );

        // Without a key nothing is checked; an unsigned manifest passes with any key.
        BackupManifest::from_data_verified(upper.as_bytes(), None).unwrap();
        let unsigned = manifest.to_string(None).unwrap();
        BackupManifest::from_data_verified(unsigned.as_bytes(), Some(&other)).unwrap();
        let unsigned = BackupManifest::from_data(unsigned.as_bytes()).unwrap();
        assert_eq!(unsigned.fingerprint().unwrap(), None);
        unsigned.check_fingerprint(None).unwrap();
        unsigned.check_fingerprint(Some(&other)).unwrap();
    }

    const EXAMPLE: &str = r#"{
  "backup-id": "100",
  "backup-time": 1593179765,
  "backup-type": "vm",
  "files": [
    {
      "crypt-mode": "none",
      "csum": "3a2f8ea965be93bc60b1fd9d576b8becb5fafedb352c3bddf01c0d2fcdf760be",
      "filename": "qemu-server.conf.blob",
      "size": 22
    },
    {
      "crypt-mode": "none",
      "csum": "f8bd3b7fc59d52351f1518fcecab6a686585ff0a707e9da79d717a1ed108ea2a",
      "filename": "drive-scsi0.img.fidx",
      "size": 5242880
    }
  ],
  "signature": null,
  "unprotected": {
    "chunk_upload_stats": {
      "compressed_size": 1234,
      "count": 2,
      "duplicates": 0,
      "size": 5243343
    },
    "verify_state": {
      "state": "ok",
      "upid": "<UPID string of the verify task>"
    }
  }
}"#;

    fn csum(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    }

    fn example_manifest() -> BackupManifest {
        let mut manifest = BackupManifest::new("vm", "100", 1593179765);
        manifest
            .add_file(
                "qemu-server.conf.blob",
                22,
                csum("3a2f8ea965be93bc60b1fd9d576b8becb5fafedb352c3bddf01c0d2fcdf760be"),
                CryptMode::None,
            )
            .unwrap();
        manifest
            .add_file(
                "drive-scsi0.img.fidx",
                5242880,
                csum("f8bd3b7fc59d52351f1518fcecab6a686585ff0a707e9da79d717a1ed108ea2a"),
                CryptMode::None,
            )
            .unwrap();
        manifest
            .set_verify_state(&SnapshotVerifyState {
                state: VerifyState::Ok,
                upid: "<UPID string of the verify task>".to_string(),
            })
            .unwrap();
        manifest.unprotected_mut().insert(
            "chunk_upload_stats".to_string(),
            json!({"count": 2, "size": 5243343, "compressed_size": 1234, "duplicates": 0}),
        );
        manifest
    }

    #[test]
    fn pretty_json_matches_example() {
        let manifest = example_manifest();
        assert_eq!(manifest.to_string(None).unwrap(), EXAMPLE);
        let parsed = BackupManifest::from_data(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(parsed, manifest);
        assert_eq!(parsed.to_string(None).unwrap(), EXAMPLE);
        assert_eq!(
            parsed.verify_state().unwrap(),
            Some(SnapshotVerifyState {
                state: VerifyState::Ok,
                upid: "<UPID string of the verify task>".to_string()
            })
        );
    }

    #[test]
    fn round_trip_signed_and_unsigned() {
        let mut manifest = signature_test_manifest();
        manifest.set_notes("first line\nsecond line");
        let text = manifest.to_string(None).unwrap();
        assert!(!text.ends_with('\n'));
        assert_eq!(
            BackupManifest::from_data(text.as_bytes()).unwrap(),
            manifest
        );

        let crypt_config = counting_key();
        let signed = manifest.to_string(Some(&crypt_config)).unwrap();
        let parsed = BackupManifest::from_data(signed.as_bytes()).unwrap();
        assert_eq!(parsed.files, manifest.files);
        assert_eq!(parsed.notes(), Some("first line\nsecond line"));
        assert_eq!(
            parsed.signature,
            Some(hex::encode(manifest.signature(&crypt_config).unwrap()))
        );
        // Re-serializing a parsed signed manifest without a key keeps signature and fingerprint.
        assert_eq!(parsed.to_string(None).unwrap(), signed);
    }

    #[test]
    fn tolerant_parsing() {
        let compact = r#"{"files":[{"size":5,"filename":"a.blob","csum":"3A2F8EA965BE93BC60B1FD9D576B8BECB5FAFEDB352C3BDDF01C0D2FCDF760BE"}],"backup-time":1,"extra":{"x":1},"backup-id":"x","backup-type":"ct"}"#;
        let manifest = BackupManifest::from_data(compact.as_bytes()).unwrap();
        assert_eq!(manifest.backup_type, "ct");
        assert_eq!(manifest.signature, None);
        assert_eq!(manifest.unprotected, json!({}));
        assert_eq!(manifest.files[0].crypt_mode, CryptMode::None);
        assert_eq!(
            manifest.files[0].csum,
            csum("3a2f8ea965be93bc60b1fd9d576b8becb5fafedb352c3bddf01c0d2fcdf760be")
        );
        // Unknown top-level keys are dropped on rewrite; unknown unprotected keys survive.
        assert!(!manifest.to_string(None).unwrap().contains("extra"));

        let with_nulls = r#"{"backup-type":"host","backup-id":"h","backup-time":-5,"files":[],"signature":null,"unprotected":null}"#;
        let manifest = BackupManifest::from_data(with_nulls.as_bytes()).unwrap();
        assert_eq!(manifest.backup_time, -5);
        assert_eq!(manifest.unprotected, json!({}));

        let kept = r#"{"backup-type":"host","backup-id":"h","backup-time":1,"files":[],"unprotected":{"custom":[1,2]}}"#;
        let manifest = BackupManifest::from_data(kept.as_bytes()).unwrap();
        assert!(manifest.to_string(None).unwrap().contains("\"custom\": ["));
    }

    #[test]
    fn rejects_invalid_manifests() {
        for bad in [
            "not json",
            r#"[]"#,
            r#"{"backup-type":"host","backup-id":"h","files":[]}"#,
            r#"{"backup-type":"vm","backup-id":"h","backup-time":"1","files":[]}"#,
            r#"{"backup-type":"nas","backup-id":"h","backup-time":1,"files":[]}"#,
            r#"{"backup-type":"vm","backup-id":"h","backup-time":1,"files":[],"unprotected":"x"}"#,
            r#"{"backup-type":"vm","backup-id":"h","backup-time":1,"files":[{"filename":"a.blob","size":1,"csum":"00"}]}"#,
            r#"{"backup-type":"vm","backup-id":"h","backup-time":1,"files":[{"filename":"a.blob","size":1.5,"csum":"0000000000000000000000000000000000000000000000000000000000000000"}]}"#,
            r#"{"backup-type":"vm","backup-id":"h","backup-time":1,"files":[{"filename":"a.blob","size":1,"crypt-mode":"other","csum":"0000000000000000000000000000000000000000000000000000000000000000"}]}"#,
        ] {
            assert!(BackupManifest::from_data(bad.as_bytes()).is_err(), "{bad}");
        }
        let bad_fp = r#"{"backup-type":"vm","backup-id":"h","backup-time":1,"files":[],"unprotected":{"key-fingerprint":"zz"}}"#;
        let manifest = BackupManifest::from_data(bad_fp.as_bytes()).unwrap();
        assert!(manifest.fingerprint().is_err());
        assert!(manifest.check_fingerprint(None).is_err());
    }

    #[test]
    fn file_lookup_and_verification() {
        let mut manifest = example_manifest();
        assert_eq!(
            error_of(manifest.add_file("foo.img", 1, [0; 32], CryptMode::None)),
            "unknown archive type: \"foo.img\""
        );
        assert_eq!(manifest.files().len(), 2);
        let info = manifest.lookup_file_info("drive-scsi0.img.fidx").unwrap();
        assert_eq!(info.size, 5242880);
        assert_eq!(
            error_of(manifest.lookup_file_info("missing.blob")),
            "manifest does not contain file 'missing.blob'"
        );
        let good = csum("f8bd3b7fc59d52351f1518fcecab6a686585ff0a707e9da79d717a1ed108ea2a");
        manifest
            .verify_file("drive-scsi0.img.fidx", &good, 5242880)
            .unwrap();
        assert_eq!(
            error_of(manifest.verify_file("drive-scsi0.img.fidx", &good, 5)),
            "wrong size for file 'drive-scsi0.img.fidx' (5242880 != 5)"
        );
        assert_eq!(
            error_of(manifest.verify_file("drive-scsi0.img.fidx", &[0; 32], 5242880)),
            "wrong checksum for file 'drive-scsi0.img.fidx'"
        );
    }

    #[test]
    fn archive_types() {
        assert_eq!(
            ArchiveType::from_path("root.pxar.didx").unwrap(),
            ArchiveType::DynamicIndex
        );
        assert_eq!(
            ArchiveType::from_path("drive-scsi0.img.fidx").unwrap(),
            ArchiveType::FixedIndex
        );
        assert_eq!(
            ArchiveType::from_path(MANIFEST_BLOB_NAME).unwrap(),
            ArchiveType::Blob
        );
        for bad in ["root.pxar", "didx", ".didx", "a.didx.tmp", "a.DIDX"] {
            assert_eq!(
                error_of(ArchiveType::from_path(bad)),
                format!("unknown archive type: {bad:?}")
            );
        }
    }

    #[test]
    fn unprotected_helpers() {
        let mut manifest = BackupManifest::new("ct", "101", 0);
        assert_eq!(manifest.verify_state().unwrap(), None);
        assert_eq!(manifest.notes(), None);
        let state = SnapshotVerifyState {
            state: VerifyState::Failed,
            upid: "UPID:x".to_string(),
        };
        manifest.set_verify_state(&state).unwrap();
        manifest.set_notes("hello");
        assert_eq!(
            manifest.unprotected,
            json!({"verify_state": {"state": "failed", "upid": "UPID:x"}, "notes": "hello"})
        );
        assert_eq!(manifest.verify_state().unwrap(), Some(state));
        assert_eq!(manifest.notes(), Some("hello"));

        manifest
            .unprotected_mut()
            .insert(VERIFY_STATE.into(), json!({"state": "maybe"}));
        assert!(manifest.verify_state().is_err());

        manifest.unprotected = json!(7);
        manifest.set_notes("again");
        assert_eq!(manifest.unprotected, json!({"notes": "again"}));

        let file = FileInfo {
            filename: "a.blob".into(),
            crypt_mode: CryptMode::SignOnly,
            size: 0,
            csum: [0; 32],
        };
        assert_eq!(file.chunk_crypt_mode(), CryptMode::None);
    }
}
