//! Prune retention options.

use serde::{Deserialize, Serialize};

/// How many snapshots of which periods a prune run keeps; `None` = option not applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KeepOptions {
    /// Number of most recent snapshots to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u64>,
    /// Number of hourly periods to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u64>,
    /// Number of daily periods to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u64>,
    /// Number of weekly periods to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u64>,
    /// Number of monthly periods to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u64>,
    /// Number of yearly periods to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u64>,
}

impl KeepOptions {
    /// Whether any option keeps at least one snapshot; if not, prune keeps everything.
    pub fn keeps_something(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .flatten()
        .any(|n| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_something() {
        assert!(!KeepOptions::default().keeps_something());
        let zero = KeepOptions {
            keep_last: Some(0),
            keep_yearly: Some(0),
            ..Default::default()
        };
        assert!(!zero.keeps_something());
        let weekly = KeepOptions {
            keep_weekly: Some(1),
            ..Default::default()
        };
        assert!(weekly.keeps_something());
    }

    #[test]
    fn serde_kebab_case_skips_none() {
        let opts = KeepOptions {
            keep_last: Some(3),
            keep_monthly: Some(1),
            ..Default::default()
        };
        let json = serde_json::to_string(&opts).unwrap();
        assert_eq!(json, r#"{"keep-last":3,"keep-monthly":1}"#);
        assert_eq!(serde_json::from_str::<KeepOptions>(&json).unwrap(), opts);
        assert_eq!(
            serde_json::to_string(&KeepOptions::default()).unwrap(),
            "{}"
        );
        assert_eq!(
            serde_json::from_str::<KeepOptions>("{}").unwrap(),
            KeepOptions::default()
        );
    }
}
