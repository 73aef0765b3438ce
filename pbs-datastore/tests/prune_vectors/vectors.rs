// Prune test vectors (spec section "Prune test vectors"), shared through `include!` by the
// unit tests of `prune.rs` (UTC periods) and `tests/prune_timezones.rs` (local periods).
// The includer brings `KeepOptions`, `PruneItem` and `PruneMark` into scope.

/// A snapshot as prune sees it.
#[derive(Clone, Debug)]
struct TestSnap {
    time: i64,
    finished: bool,
    protected: bool,
}

impl TestSnap {
    fn at(time: &str, finished: bool, protected: bool) -> Self {
        Self {
            time: pbs_api_types::time::parse_rfc3339(time).expect("vector time"),
            finished,
            protected,
        }
    }

    fn name(&self) -> String {
        pbs_api_types::time::epoch_to_rfc3339_utc(self.time).expect("vector time")
    }
}

impl PruneItem for TestSnap {
    fn backup_time(&self) -> i64 {
        self.time
    }
    fn is_finished(&self) -> bool {
        self.finished
    }
    fn is_protected(&self) -> bool {
        self.protected
    }
}

/// What a vector expects, snapshot names in ascending time order.
enum Expect {
    /// Exactly these get a non-keeping mark.
    Removed(&'static [&'static str]),
    /// Exactly these are kept (keep, keep-partial or protected).
    Kept(&'static [&'static str]),
    /// The mark of every snapshot.
    Marks(&'static [(&'static str, PruneMark)]),
}

struct PruneVector {
    name: &'static str,
    /// (time, finished, protected)
    snapshots: Vec<(&'static str, bool, bool)>,
    options: KeepOptions,
    expect: Expect,
}

impl PruneVector {
    fn snapshots(&self) -> Vec<TestSnap> {
        self.snapshots
            .iter()
            .map(|(t, finished, protected)| TestSnap::at(t, *finished, *protected))
            .collect()
    }

    fn check(&self, result: &[(TestSnap, PruneMark)]) -> Result<(), String> {
        if result.len() != self.snapshots.len() {
            return Err(format!(
                "{}: {} results for {} snapshots",
                self.name,
                result.len(),
                self.snapshots.len()
            ));
        }
        let mut ascending: Vec<(String, PruneMark)> =
            result.iter().map(|(s, m)| (s.name(), *m)).collect();
        ascending.sort_by(|a, b| a.0.cmp(&b.0));
        let select = |keep: bool| -> Vec<String> {
            ascending
                .iter()
                .filter(|(_, m)| m.keep() == keep)
                .map(|(n, _)| n.clone())
                .collect()
        };
        let (what, got, want): (&str, Vec<String>, Vec<String>) = match self.expect {
            Expect::Removed(list) => (
                "removed",
                select(false),
                list.iter().map(|s| s.to_string()).collect(),
            ),
            Expect::Kept(list) => (
                "kept",
                select(true),
                list.iter().map(|s| s.to_string()).collect(),
            ),
            Expect::Marks(marks) => (
                "marks",
                ascending.iter().map(|(n, m)| format!("{n} {m}")).collect(),
                marks.iter().map(|(n, m)| format!("{n} {m}")).collect(),
            ),
        };
        if got != want {
            return Err(format!("{}: {what} {got:?}, expected {want:?}", self.name));
        }
        Ok(())
    }
}

fn keep(
    last: Option<u64>,
    hourly: Option<u64>,
    daily: Option<u64>,
    weekly: Option<u64>,
    monthly: Option<u64>,
    yearly: Option<u64>,
) -> KeepOptions {
    KeepOptions {
        keep_last: last,
        keep_hourly: hourly,
        keep_daily: daily,
        keep_weekly: weekly,
        keep_monthly: monthly,
        keep_yearly: yearly,
    }
}

fn prune_vectors() -> Vec<PruneVector> {
    let finished = |list: &[&'static str]| -> Vec<(&'static str, bool, bool)> {
        list.iter().map(|t| (*t, true, false)).collect()
    };
    let protected_group = vec![
        ("2019-11-15T09:39:15Z", true, true),
        ("2019-11-15T10:39:15Z", true, false),
        ("2019-11-15T10:49:15Z", true, false),
        ("2019-11-15T10:59:15Z", true, true),
    ];
    let hourly_group = finished(&[
        "2019-11-15T09:39:15Z",
        "2019-11-15T10:49:15Z",
        "2019-11-15T10:59:15Z",
        "2019-11-15T11:39:15Z",
        "2019-11-15T11:49:15Z",
        "2019-11-15T11:59:15Z",
    ]);
    let simple2_group = finished(&[
        "2018-11-15T11:59:15Z",
        "2019-11-15T11:59:15Z",
        "2019-11-21T11:59:15Z",
        "2019-11-22T11:59:15Z",
        "2019-11-29T11:59:15Z",
        "2019-12-01T11:59:15Z",
        "2019-12-02T11:59:15Z",
        "2019-12-03T11:59:15Z",
        "2019-12-04T11:59:15Z",
    ]);
    let simple_group = finished(&[
        "2019-12-02T11:59:15Z",
        "2019-12-03T11:59:15Z",
        "2019-12-04T11:59:15Z",
        "2019-12-04T12:59:15Z",
    ]);
    const ALL3: &[&str] = &[
        "2019-12-02T11:59:15Z",
        "2019-12-03T11:59:15Z",
        "2019-12-04T11:59:15Z",
    ];
    let v = |name, snapshots: &Vec<(&'static str, bool, bool)>, options, expect| PruneVector {
        name,
        snapshots: snapshots.clone(),
        options,
        expect,
    };
    let n = None;
    let s = Some;
    vec![
        v(
            "P1",
            &protected_group,
            keep(s(1), n, n, n, n, n),
            Expect::Removed(&["2019-11-15T10:39:15Z"]),
        ),
        v(
            "P2",
            &protected_group,
            keep(n, s(1), n, n, n, n),
            Expect::Removed(&["2019-11-15T10:39:15Z"]),
        ),
        v(
            "H1",
            &hourly_group,
            keep(n, s(3), n, n, n, n),
            Expect::Removed(&[
                "2019-11-15T10:49:15Z",
                "2019-11-15T11:39:15Z",
                "2019-11-15T11:49:15Z",
            ]),
        ),
        v(
            "H2",
            &hourly_group,
            keep(n, s(2), n, n, n, n),
            Expect::Kept(&["2019-11-15T10:59:15Z", "2019-11-15T11:59:15Z"]),
        ),
        v(
            "S2-1",
            &simple2_group,
            keep(n, n, s(1), n, n, n),
            Expect::Kept(&["2019-12-04T11:59:15Z"]),
        ),
        v(
            "S2-2",
            &simple2_group,
            keep(s(1), n, s(1), n, n, n),
            Expect::Kept(&["2019-12-03T11:59:15Z", "2019-12-04T11:59:15Z"]),
        ),
        v(
            "S2-3",
            &simple2_group,
            keep(n, n, s(1), s(1), n, n),
            Expect::Kept(&["2019-12-01T11:59:15Z", "2019-12-04T11:59:15Z"]),
        ),
        v(
            "S2-4",
            &simple2_group,
            keep(n, n, s(1), s(1), s(1), n),
            Expect::Kept(&[
                "2019-11-22T11:59:15Z",
                "2019-12-01T11:59:15Z",
                "2019-12-04T11:59:15Z",
            ]),
        ),
        v(
            "S2-5",
            &simple2_group,
            keep(n, n, n, n, s(1), s(1)),
            Expect::Kept(&["2018-11-15T11:59:15Z", "2019-12-04T11:59:15Z"]),
        ),
        v(
            "S1",
            &simple_group,
            keep(s(4), n, n, n, n, n),
            Expect::Removed(&[]),
        ),
        v(
            "S2",
            &simple_group,
            keep(s(3), n, n, n, n, n),
            Expect::Removed(&["2019-12-02T11:59:15Z"]),
        ),
        v(
            "S3",
            &simple_group,
            keep(s(2), n, n, n, n, n),
            Expect::Removed(&["2019-12-02T11:59:15Z", "2019-12-03T11:59:15Z"]),
        ),
        v(
            "S4",
            &simple_group,
            keep(s(1), n, n, n, n, n),
            Expect::Removed(ALL3),
        ),
        v(
            "S5",
            &simple_group,
            keep(s(0), n, n, n, n, n),
            Expect::Removed(&[
                "2019-12-02T11:59:15Z",
                "2019-12-03T11:59:15Z",
                "2019-12-04T11:59:15Z",
                "2019-12-04T12:59:15Z",
            ]),
        ),
        v(
            "S6",
            &simple_group,
            keep(s(2), n, s(2), n, n, n),
            Expect::Removed(&[]),
        ),
        v(
            "S7",
            &simple_group,
            keep(n, n, s(3), n, n, n),
            Expect::Removed(&["2019-12-04T11:59:15Z"]),
        ),
        v(
            "S8",
            &simple_group,
            keep(n, n, s(2), n, n, n),
            Expect::Removed(&["2019-12-02T11:59:15Z", "2019-12-04T11:59:15Z"]),
        ),
        v(
            "S9",
            &simple_group,
            keep(n, n, n, s(5), n, n),
            Expect::Removed(ALL3),
        ),
        v(
            "S10",
            &simple_group,
            keep(n, n, s(1), s(5), n, n),
            Expect::Removed(ALL3),
        ),
        v(
            "S11",
            &simple_group,
            keep(n, n, n, n, s(6), n),
            Expect::Removed(ALL3),
        ),
        v(
            "S12",
            &simple_group,
            keep(n, n, n, n, n, s(7)),
            Expect::Removed(ALL3),
        ),
        v(
            "S13",
            &simple_group,
            keep(n, n, n, s(5), s(6), s(7)),
            Expect::Removed(ALL3),
        ),
        v(
            "D1 unfinished",
            &vec![
                ("2020-01-01T00:00:00Z", true, false),
                ("2020-01-02T00:00:00Z", false, false),
                ("2020-01-03T00:00:00Z", true, false),
                ("2020-01-04T00:00:00Z", false, false),
            ],
            keep(s(1), n, n, n, n, n),
            Expect::Marks(&[
                ("2020-01-01T00:00:00Z", PruneMark::Remove),
                ("2020-01-02T00:00:00Z", PruneMark::Remove),
                ("2020-01-03T00:00:00Z", PruneMark::Keep),
                ("2020-01-04T00:00:00Z", PruneMark::KeepPartial),
            ]),
        ),
    ]
}
