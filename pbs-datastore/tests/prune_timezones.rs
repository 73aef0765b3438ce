//! Prune period ids use the local time zone: the spec vectors must hold in several zones.
//!
//! `TZ` is process-global, so all zones run inside one test, one after the other.

use pbs_api_types::time::{reload_timezone, strftime_local};
use pbs_api_types::KeepOptions;
use pbs_datastore::prune::{compute_prune_info, PruneItem, PruneMark};

include!("prune_vectors/vectors.rs");

#[test]
fn prune_vectors_in_several_time_zones() {
    // (zone, UTC offset at epoch 0 as printed by %z) proves the zone really took effect
    let zones = [
        ("UTC", "+0000"),
        ("Europe/Vienna", "+0100"),
        ("America/New_York", "-0500"),
        ("Asia/Tokyo", "+0900"),
    ];
    for (zone, offset) in zones {
        // SAFETY (edition 2021: safe fn): this test is the only one in this process.
        std::env::set_var("TZ", zone);
        reload_timezone();
        assert_eq!(
            strftime_local("%z", 0).unwrap(),
            offset,
            "zone {zone} not active"
        );

        let vectors = prune_vectors();
        assert_eq!(vectors.len(), 23);
        for vector in vectors {
            let result = compute_prune_info(vector.snapshots(), &vector.options)
                .unwrap_or_else(|err| panic!("{zone}: {}: {err:#}", vector.name));
            if let Err(msg) = vector.check(&result) {
                panic!("{zone}: {msg}");
            }
        }
    }
}
