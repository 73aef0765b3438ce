//! Which server file(s) an `archive-name` argument stands for.

use anyhow::{bail, Result};

use pbs_datastore::BackupManifest;

/// The manifest's name of the manifest blob.
pub const MANIFEST_BLOB_NAME: &str = "index.json.blob";
/// The blob holding the data key wrapped with the master key.
pub const ENCRYPTED_KEY_BLOB_NAME: &str = "rsa-encrypted.key.blob";

/// What is restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreSource {
    /// The manifest itself (written raw).
    Manifest,
    /// A blob (`*.blob`), decoded.
    Blob(String),
    /// An image (`*.fidx`).
    Image(String),
    /// A v1 pxar archive (`*.pxar.didx`) or another dynamic index.
    Pxar(String),
    /// A split pxar archive: metadata and payload index.
    SplitPxar { metadata: String, payload: String },
}

/// Maps an archive name to a server file name: `.didx`/`.fidx`/`.blob` as is, `.pxar` ⇒
/// `.pxar.didx`, `.img` ⇒ `.img.fidx`, anything else gets `.blob` appended.
pub fn server_archive_name(archive_name: &str) -> String {
    if archive_name.ends_with(".didx")
        || archive_name.ends_with(".fidx")
        || archive_name.ends_with(".blob")
    {
        archive_name.to_string()
    } else if archive_name.ends_with(".pxar") {
        format!("{archive_name}.didx")
    } else if archive_name.ends_with(".img") {
        format!("{archive_name}.fidx")
    } else {
        format!("{archive_name}.blob")
    }
}

/// For `label.pxar.didx`, `label.mpxar.didx` or `label.ppxar.didx`: the split pair.
fn split_pair(server_name: &str) -> Option<(String, String)> {
    let label = server_name
        .strip_suffix(".pxar.didx")
        .or_else(|| server_name.strip_suffix(".mpxar.didx"))
        .or_else(|| server_name.strip_suffix(".ppxar.didx"))?;
    Some((format!("{label}.mpxar.didx"), format!("{label}.ppxar.didx")))
}

fn has_file(manifest: &BackupManifest, name: &str) -> bool {
    manifest.files().iter().any(|f| f.filename == name)
}

/// Resolves the archive name against the manifest (split pxar fallback included).
pub fn resolve_restore_source(
    manifest: &BackupManifest,
    archive_name: &str,
) -> Result<RestoreSource> {
    let name = server_archive_name(archive_name);
    if name == MANIFEST_BLOB_NAME {
        return Ok(RestoreSource::Manifest);
    }
    if name.ends_with(".didx") {
        let is_pxar_name = name.ends_with(".pxar.didx")
            || name.ends_with(".mpxar.didx")
            || name.ends_with(".ppxar.didx");
        if is_pxar_name && !(name.ends_with(".pxar.didx") && has_file(manifest, &name)) {
            if let Some((metadata, payload)) = split_pair(&name) {
                if has_file(manifest, &metadata) {
                    if !has_file(manifest, &payload) {
                        bail!("payload archive '{payload}' missing in manifest");
                    }
                    return Ok(RestoreSource::SplitPxar { metadata, payload });
                }
            }
        }
        manifest.lookup_file_info(&name)?;
        return Ok(RestoreSource::Pxar(name));
    }
    manifest.lookup_file_info(&name)?;
    if name.ends_with(".fidx") {
        Ok(RestoreSource::Image(name))
    } else {
        Ok(RestoreSource::Blob(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbs_api_types::CryptMode;

    #[test]
    fn name_mapping() {
        assert_eq!(server_archive_name("root.pxar"), "root.pxar.didx");
        assert_eq!(server_archive_name("disk.img"), "disk.img.fidx");
        assert_eq!(server_archive_name("x.conf"), "x.conf.blob");
        assert_eq!(server_archive_name("index.json"), "index.json.blob");
        assert_eq!(
            server_archive_name("catalog.pcat1.didx"),
            "catalog.pcat1.didx"
        );
        assert_eq!(server_archive_name("a.img.fidx"), "a.img.fidx");
        assert_eq!(server_archive_name("a.log.blob"), "a.log.blob");
        assert_eq!(server_archive_name("root.mpxar.didx"), "root.mpxar.didx");
    }

    fn manifest(files: &[&str]) -> BackupManifest {
        let mut m = BackupManifest::new("host", "h", 1_700_000_000);
        for f in files {
            m.add_file(f.to_string(), 1, [0; 32], CryptMode::None)
                .expect("add");
        }
        m
    }

    #[test]
    fn resolves_against_manifest() {
        let m = manifest(&[
            "root.pxar.didx",
            "data.mpxar.didx",
            "data.ppxar.didx",
            "d.img.fidx",
            "x.conf.blob",
            "half.mpxar.didx",
        ]);
        assert_eq!(
            resolve_restore_source(&m, "root.pxar").expect("v1"),
            RestoreSource::Pxar("root.pxar.didx".into())
        );
        let split = RestoreSource::SplitPxar {
            metadata: "data.mpxar.didx".into(),
            payload: "data.ppxar.didx".into(),
        };
        assert_eq!(
            resolve_restore_source(&m, "data.pxar").expect("split"),
            split
        );
        assert_eq!(
            resolve_restore_source(&m, "data.mpxar.didx").expect("split"),
            split
        );
        assert_eq!(
            resolve_restore_source(&m, "d.img").expect("img"),
            RestoreSource::Image("d.img.fidx".into())
        );
        assert_eq!(
            resolve_restore_source(&m, "x.conf").expect("blob"),
            RestoreSource::Blob("x.conf.blob".into())
        );
        assert_eq!(
            resolve_restore_source(&m, "index.json").expect("manifest"),
            RestoreSource::Manifest
        );
        assert!(resolve_restore_source(&m, "missing.pxar").is_err());
        assert!(resolve_restore_source(&m, "half.pxar").is_err());
        assert!(resolve_restore_source(&m, "y.conf").is_err());
    }
}
