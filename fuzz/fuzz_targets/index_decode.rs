//! Arbitrary bytes as a `.fidx` or `.didx` file: opening, checksumming and reading every entry
//! must return errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pbs_datastore::index::fuzz_open_index(data);
});
