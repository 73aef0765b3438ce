//! The per-archive statistics lines printed after each upload.

use std::time::Duration;

use pbs_cli::format::format_bytes_binary;

/// What one archive upload transferred (a subset of the writer's statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadSummary {
    /// Logical size of the archive.
    pub size: u64,
    /// Bytes in chunks that were already known (not uploaded again).
    pub size_reused: u64,
    /// Compressed (encoded) size of the uploaded chunks.
    pub size_compressed: u64,
    /// Number of chunks.
    pub chunk_count: u64,
    /// Number of chunks reused.
    pub chunk_reused: u64,
    /// Wall-clock time of the upload.
    pub duration: Duration,
}

/// Share of reused bytes in percent.
pub fn reused_percent(summary: &UploadSummary) -> f64 {
    if summary.size == 0 {
        0.0
    } else {
        summary.size_reused as f64 * 100.0 / summary.size as f64
    }
}

/// The statistics lines of one archive.
pub fn summary_lines(archive: &str, summary: &UploadSummary) -> Vec<String> {
    let dirty = summary.size.saturating_sub(summary.size_reused);
    let secs = summary.duration.as_secs_f64();
    let speed = if secs > 0.0 {
        (dirty as f64 / secs) as u64
    } else {
        dirty
    };
    let mut lines = vec![format!(
        "{archive}: had to backup {} of {} (compressed {}) in {secs:.2} s (average {}/s)",
        format_bytes_binary(dirty),
        format_bytes_binary(summary.size),
        format_bytes_binary(summary.size_compressed),
        format_bytes_binary(speed),
    )];
    if summary.size_reused > 0 && summary.size > 0 {
        lines.push(format!(
            "{archive}: backup was done incrementally, reused {} ({:.1}%)",
            format_bytes_binary(summary.size_reused),
            reused_percent(summary),
        ));
    }
    if summary.chunk_count > 0 {
        lines.push(format!(
            "{archive}: {} chunks, {} reused",
            summary.chunk_count, summary.chunk_reused
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let s = UploadSummary {
            size: 1000,
            size_reused: 995,
            size_compressed: 3,
            chunk_count: 10,
            chunk_reused: 9,
            duration: Duration::from_millis(500),
        };
        let lines = summary_lines("root.pxar.didx", &s);
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with(
                "root.pxar.didx: had to backup 5 B of 1000 B (compressed 3 B) in 0.50 s"
            ),
            "{}",
            lines[0]
        );
        assert!(lines[1].ends_with("(99.5%)"), "{}", lines[1]);
        assert_eq!(lines[2], "root.pxar.didx: 10 chunks, 9 reused");
        let fresh = UploadSummary {
            size: 10,
            ..Default::default()
        };
        assert_eq!(summary_lines("a", &fresh).len(), 1);
        assert_eq!(reused_percent(&UploadSummary::default()), 0.0);
    }
}
