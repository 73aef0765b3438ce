//! The archiver's side of change-detection mode `metadata`: files whose metadata matches the
//! previous archive wait in a look-ahead cache; a run of them is either re-used (their
//! previous payload chunks are injected) or re-encoded, and other entries queue behind them.

use anyhow::{format_err, Result};
use pxar::encoder::{Encoder, SeqWrite};

use super::{encode_entry, human_bytes, ArchiveError, Archiver};
use crate::pxar::reuse::{Deferred, FlushCause, RunDecision};

impl Archiver<'_> {
    /// Encode a non-file entry now, or queue it behind the cached files.
    pub(super) fn emit<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        entry: Deferred,
    ) -> Result<()> {
        match self.reuse.as_mut() {
            Some(reuse) if reuse.is_caching() => {
                reuse.defer(entry);
                Ok(())
            }
            _ => encode_entry(encoder, entry),
        }
    }

    /// Encode the cached run: as references into reused chunks, or normally if the padding
    /// rules reject reuse.
    pub(super) fn flush_reuse_cache<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        cause: FlushCause,
    ) -> Result<()> {
        let Some(reuse) = self.reuse.as_mut() else {
            return Ok(());
        };
        let Some(run) = reuse.take_run() else {
            return Ok(());
        };
        match reuse.decide(&run.range, cause)? {
            RunDecision::Reuse { span, continuing } => {
                let base = reuse.begin_reuse(encoder, continuing)?;
                let mut item_bytes = 0;
                for entry in run.entries {
                    let Deferred::File(file) = entry else {
                        self.encode_deferred(encoder, entry)?;
                        continue;
                    };
                    let offset = base + (file.range.start - span.first_start);
                    let link = encoder
                        .add_payload_ref(&file.metadata, &file.name, file.previous_size, offset)
                        .map_err(|error| ArchiveError {
                            path: file.path.clone(),
                            error: error.into(),
                        })?;
                    item_bytes += file.range.end - file.range.start;
                    self.stats.files += 1;
                    self.stats.file_bytes += file.previous_size;
                    self.stats.reused_files += 1;
                    self.stats.reused_bytes += file.previous_size;
                    if file.stat.st_nlink > 1 {
                        self.hardlinks
                            .insert((file.stat.st_dev, file.stat.st_ino), (file.path, link));
                    }
                }
                if let Some(reuse) = self.reuse.as_mut() {
                    reuse.finish_reuse(encoder, span, continuing, run.range.end, item_bytes)?;
                }
            }
            RunDecision::Reject => {
                reuse.commit(encoder)?;
                let walk_path = std::mem::take(&mut self.path);
                let mut result = Ok(());
                for entry in run.entries {
                    let Deferred::File(file) = entry else {
                        result = self.encode_deferred(encoder, entry);
                        if result.is_err() {
                            break;
                        }
                        continue;
                    };
                    let file = *file;
                    self.path = file.path;
                    result =
                        self.encode_file(encoder, file.fd, &file.name, &file.metadata, &file.stat);
                    if result.is_err() {
                        result = result.map_err(|error| self.wrap_error(error));
                        break;
                    }
                    self.stats.reuse_rejected_files += 1;
                }
                self.path = walk_path;
                result?;
            }
        }
        Ok(())
    }

    /// Encode a cached non-file entry; hardlinks to cached files resolve their target now.
    pub(super) fn encode_deferred<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
        entry: Deferred,
    ) -> Result<()> {
        let Deferred::CachedHardlink { name, key } = entry else {
            return encode_entry(encoder, entry);
        };
        let (target, offset) = self.hardlinks.get(&key).ok_or_else(|| {
            format_err!(
                "hardlink {:?}: target not encoded",
                String::from_utf8_lossy(&name)
            )
        })?;
        encoder.add_hardlink(&name, target, *offset)?;
        Ok(())
    }

    /// End of the walk: encode what is cached, send the last injection, log the summary.
    pub(super) fn finish_reuse<W: SeqWrite, P: SeqWrite>(
        &mut self,
        encoder: &mut Encoder<W, P>,
    ) -> Result<()> {
        self.flush_reuse_cache(encoder, FlushCause::RunEnd)?;
        let Some(reuse) = self.reuse.as_mut() else {
            return Ok(());
        };
        reuse.commit(encoder)?;
        let counters = reuse.counters.clone();
        self.stats.injected_bytes = counters.injected_bytes;
        self.stats.injected_chunks = counters.injected_chunks;
        self.stats.padding_bytes = counters
            .injected_bytes
            .saturating_sub(counters.reused_item_bytes);
        let stats = self.stats.clone();
        self.log("Change detection summary:".to_string());
        self.log(format!(
            " - {} total files ({} hardlinks)",
            stats.reused_files + stats.reencoded_files + stats.hardlinks,
            stats.hardlinks
        ));
        self.log(format!(
            " - {} unchanged files reused, {} of content",
            stats.reused_files,
            human_bytes(stats.reused_bytes)
        ));
        self.log(format!(
            " - {} new, changed or not reusable files re-encoded, {} of content",
            stats.reencoded_files,
            human_bytes(stats.reencoded_bytes)
        ));
        self.log(format!(
            " - {} padding in {} reused chunks ({} injected)",
            human_bytes(stats.padding_bytes),
            stats.injected_chunks,
            human_bytes(stats.injected_bytes)
        ));
        Ok(())
    }
}
