//! Arbitrary bytes as a data blob: parsing, CRC check and decoding with and without a key must
//! return errors, never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pbs_datastore::data_blob::blob_decode(data);
});
