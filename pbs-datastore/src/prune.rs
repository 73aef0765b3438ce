//! Prune: which snapshots of one backup group the keep options retain.

use std::cmp::Reverse;
use std::collections::HashSet;
use std::fmt;

use anyhow::{Context, Error};

use pbs_api_types::time::{epoch_to_rfc3339_utc, strftime_local, TimeError};
use pbs_api_types::KeepOptions;

use crate::backup_info::BackupInfo;

/// The verdict on one snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PruneMark {
    /// Protected snapshot: never removed, never counted.
    Protected,
    /// Kept by one of the options.
    Keep,
    /// Unfinished newest snapshot (a backup may still be running).
    KeepPartial,
    /// To be removed.
    Remove,
}

impl PruneMark {
    /// Whether the snapshot stays.
    pub fn keep(self) -> bool {
        self != PruneMark::Remove
    }

    /// Log / API name.
    pub fn as_str(self) -> &'static str {
        match self {
            PruneMark::Protected => "protected",
            PruneMark::Keep => "keep",
            PruneMark::KeepPartial => "keep-partial",
            PruneMark::Remove => "remove",
        }
    }
}

impl fmt::Display for PruneMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What prune needs to know about a snapshot.
pub trait PruneItem {
    /// Backup time in epoch seconds.
    fn backup_time(&self) -> i64;
    /// Whether the snapshot has a manifest.
    fn is_finished(&self) -> bool;
    /// Whether the snapshot is protected.
    fn is_protected(&self) -> bool;
}

impl PruneItem for BackupInfo {
    fn backup_time(&self) -> i64 {
        self.backup_dir.time
    }
    fn is_finished(&self) -> bool {
        BackupInfo::is_finished(self)
    }
    fn is_protected(&self) -> bool {
        self.protected
    }
}

/// Period id of a snapshot for one option.
#[derive(Clone, Copy)]
enum Period {
    /// Each snapshot is its own period (keep-last).
    Snapshot,
    /// A `strftime` format naming the period.
    Format(&'static str),
}

/// The options in the order they are applied, with their periods.
fn selections(options: &KeepOptions) -> [(Option<u64>, Period); 6] {
    [
        (options.keep_last, Period::Snapshot),
        (options.keep_hourly, Period::Format("%Y/%m/%d/%H")),
        (options.keep_daily, Period::Format("%Y/%m/%d")),
        (options.keep_weekly, Period::Format("%G/%V")),
        (options.keep_monthly, Period::Format("%Y/%m")),
        (options.keep_yearly, Period::Format("%Y")),
    ]
}

/// Marks the newest snapshot of each of the `keep` newest periods not yet represented by a
/// kept snapshot; older snapshots of a chosen period are marked for removal.
fn mark_selections<T: PruneItem>(
    list: &[T],
    marks: &mut [Option<PruneMark>],
    keep: u64,
    period_of: impl Fn(i64) -> Result<String, TimeError>,
) -> Result<(), Error> {
    let mut already = HashSet::new();
    for (item, mark) in list.iter().zip(marks.iter()) {
        if *mark == Some(PruneMark::Keep) {
            already.insert(period_of(item.backup_time())?);
        }
    }

    let mut chosen = HashSet::new();
    for (item, mark) in list.iter().zip(marks.iter_mut()) {
        if mark.is_some() {
            continue;
        }
        if item.is_protected() {
            *mark = Some(PruneMark::Protected);
            continue;
        }
        let period = period_of(item.backup_time())?;
        if already.contains(&period) {
            continue;
        }
        if chosen.contains(&period) {
            *mark = Some(PruneMark::Remove);
        } else {
            if chosen.len() as u64 >= keep {
                break;
            }
            chosen.insert(period);
            *mark = Some(PruneMark::Keep);
        }
    }
    Ok(())
}

/// Prune verdicts for the snapshots of one group, newest first, with period ids in the local
/// time zone.
pub fn compute_prune_info<T: PruneItem>(
    list: Vec<T>,
    options: &KeepOptions,
) -> Result<Vec<(T, PruneMark)>, Error> {
    compute_prune_info_with(list, options, strftime_local)
}

/// [`compute_prune_info`] with an explicit period formatter (`strftime`-like).
pub fn compute_prune_info_with<T: PruneItem>(
    mut list: Vec<T>,
    options: &KeepOptions,
    strftime: impl Fn(&str, i64) -> Result<String, TimeError>,
) -> Result<Vec<(T, PruneMark)>, Error> {
    list.sort_by_key(|item| Reverse(item.backup_time()));
    let mut marks: Vec<Option<PruneMark>> = vec![None; list.len()];

    // Only an unfinished snapshot newer than everything else may still be in progress.
    let mut keep_unfinished = true;
    for (item, mark) in list.iter().zip(marks.iter_mut()) {
        if !item.is_finished() {
            *mark = Some(if keep_unfinished {
                PruneMark::KeepPartial
            } else {
                PruneMark::Remove
            });
        }
        keep_unfinished = false;
    }

    for (keep, period) in selections(options) {
        let Some(keep) = keep else { continue };
        match period {
            Period::Snapshot => mark_selections(&list, &mut marks, keep, epoch_to_rfc3339_utc),
            Period::Format(format) => {
                mark_selections(&list, &mut marks, keep, |t| strftime(format, t))
            }
        }
        .context("prune: unable to compute period of a snapshot")?;
    }

    Ok(list
        .into_iter()
        .zip(marks)
        .map(|(item, mark)| {
            let mark = if item.is_protected() {
                PruneMark::Protected
            } else {
                mark.unwrap_or(PruneMark::Remove)
            };
            (item, mark)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbs_api_types::time::strftime_utc;

    include!("../tests/prune_vectors/vectors.rs");

    fn run_utc(snaps: Vec<TestSnap>, options: &KeepOptions) -> Vec<(TestSnap, PruneMark)> {
        compute_prune_info_with(snaps, options, strftime_utc).unwrap()
    }

    #[test]
    fn spec_vectors_in_utc() {
        let vectors = prune_vectors();
        assert_eq!(vectors.len(), 23);
        for vector in vectors {
            let result = run_utc(vector.snapshots(), &vector.options);
            vector.check(&result).unwrap();
        }
    }

    #[test]
    fn protected_never_counts_nor_goes() {
        // newest two protected: keep-last=1 keeps the third newest, too
        let snaps = vec![
            TestSnap::at("2020-01-01T00:00:00Z", true, false),
            TestSnap::at("2020-01-02T00:00:00Z", true, false),
            TestSnap::at("2020-01-03T00:00:00Z", true, true),
            TestSnap::at("2020-01-04T00:00:00Z", true, true),
        ];
        let opts = KeepOptions {
            keep_last: Some(1),
            ..Default::default()
        };
        let marks: Vec<PruneMark> = run_utc(snaps.clone(), &opts)
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        assert_eq!(
            marks,
            [
                PruneMark::Protected,
                PruneMark::Protected,
                PruneMark::Keep,
                PruneMark::Remove
            ]
        );

        // nothing to keep at all: protected ones still stay, an unfinished protected newest
        // snapshot is protected rather than keep-partial
        let mut snaps = snaps;
        snaps[3].finished = false;
        let result = run_utc(snaps, &KeepOptions::default());
        let marks: Vec<PruneMark> = result.iter().map(|(_, m)| *m).collect();
        assert_eq!(
            marks,
            [
                PruneMark::Protected,
                PruneMark::Protected,
                PruneMark::Remove,
                PruneMark::Remove
            ]
        );
        assert!(result
            .iter()
            .filter(|(_, m)| m.keep())
            .all(|(s, _)| s.protected));
    }

    #[test]
    fn result_is_newest_first_regardless_of_input_order() {
        let snaps = vec![
            TestSnap::at("2020-01-02T00:00:00Z", true, false),
            TestSnap::at("2020-01-03T00:00:00Z", true, false),
            TestSnap::at("2020-01-01T00:00:00Z", true, false),
        ];
        let opts = KeepOptions {
            keep_last: Some(2),
            ..Default::default()
        };
        let result = run_utc(snaps, &opts);
        let times: Vec<String> = result.iter().map(|(s, _)| s.name()).collect();
        assert_eq!(
            times,
            [
                "2020-01-03T00:00:00Z",
                "2020-01-02T00:00:00Z",
                "2020-01-01T00:00:00Z"
            ]
        );
        assert!(result[0].1.keep() && result[1].1.keep() && !result[2].1.keep());
    }

    #[test]
    fn removal_is_final_across_options() {
        // 2020-01-30 (Thu) and 2020-02-01 (Sat) share ISO week 2020/05 but not the month:
        // weekly removes 01-30, so monthly must fall back to the older 01-10 for January.
        let snaps = vec![
            TestSnap::at("2020-01-10T12:00:00Z", true, false),
            TestSnap::at("2020-01-30T12:00:00Z", true, false),
            TestSnap::at("2020-02-01T12:00:00Z", true, false),
        ];
        let opts = KeepOptions {
            keep_weekly: Some(1),
            keep_monthly: Some(2),
            ..Default::default()
        };
        let marks: Vec<PruneMark> = run_utc(snaps, &opts).into_iter().map(|(_, m)| m).collect();
        assert_eq!(marks, [PruneMark::Keep, PruneMark::Remove, PruneMark::Keep]);
    }

    #[test]
    fn backup_info_is_a_prune_item() {
        let info = BackupInfo {
            ns: Default::default(),
            backup_dir: "vm/1/2020-06-26T13:56:05Z".parse().unwrap(),
            files: vec!["index.json.blob".into()],
            protected: true,
        };
        assert_eq!(info.backup_time(), 1593179765);
        assert!(PruneItem::is_finished(&info));
        assert!(info.is_protected());
        let result = compute_prune_info(vec![info], &KeepOptions::default()).unwrap();
        assert_eq!(result[0].1, PruneMark::Protected);
        assert_eq!(PruneMark::KeepPartial.to_string(), "keep-partial");
        assert!(!PruneMark::Remove.keep());
    }
}
