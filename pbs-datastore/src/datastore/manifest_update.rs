//! Reading and rewriting snapshot manifests under the manifest lock.

use anyhow::{Context, Error};

use pbs_api_types::{BackupDir, BackupNamespace};

use crate::backup_info::MANIFEST_BLOB_NAME;
use crate::manifest::BackupManifest;
use crate::DataBlob;

use super::DataStore;

impl DataStore {
    /// Loads and parses a snapshot's manifest (CRC checked); also returns its encoded size.
    pub fn load_manifest(
        &self,
        ns: &BackupNamespace,
        dir: &BackupDir,
    ) -> Result<(BackupManifest, u64), Error> {
        let path = self.snapshot_path(ns, dir)?.join(MANIFEST_BLOB_NAME);
        let mut file = std::fs::File::open(&path)
            .with_context(|| format!("unable to open manifest {path:?}"))?;
        let blob = DataBlob::load_from_reader(&mut file)
            .with_context(|| format!("unable to load manifest {path:?}"))?;
        let raw_size = blob.raw_size();
        let data = blob
            .decode(None, None)
            .with_context(|| format!("unable to decode manifest {path:?}"))?;
        let manifest = BackupManifest::from_data(&data)
            .with_context(|| format!("unable to parse manifest {path:?}"))?;
        Ok((manifest, raw_size))
    }

    /// Rewrites a snapshot's manifest under the manifest lock: load, modify, encode, replace.
    pub fn update_manifest(
        &self,
        ns: &BackupNamespace,
        dir: &BackupDir,
        update: impl FnOnce(&mut BackupManifest),
    ) -> Result<(), Error> {
        let _guard = self.lock_manifest(ns, dir)?;
        let (mut manifest, _) = self.load_manifest(ns, dir)?;
        update(&mut manifest);
        let json = manifest.to_string(None)?;
        let blob = DataBlob::encode(json.as_bytes(), None, true)?;
        let path = self.snapshot_path(ns, dir)?.join(MANIFEST_BLOB_NAME);
        pbs_tools::fs::replace_file(
            &path,
            blob.raw_data(),
            pbs_tools::fs::ReplaceOptions::mode(0o644),
        )
        .with_context(|| format!("unable to replace manifest {path:?}"))?;
        Ok(())
    }
}
