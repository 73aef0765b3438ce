//! Garbage collection of a datastore handle (the run itself is in `garbage_collection`).

use anyhow::Error;

use crate::garbage_collection::{garbage_collection, GarbageCollectionStatus};

use super::DataStore;

impl DataStore {
    /// Runs garbage collection over the whole datastore (spec §8).
    pub fn garbage_collection(
        &self,
        upid: Option<String>,
        log: &dyn Fn(&str),
        abort: &dyn Fn() -> Result<(), Error>,
    ) -> Result<GarbageCollectionStatus, Error> {
        garbage_collection(&self.chunk_store, &self.base_path, upid, log, abort)
    }
}
