//! Arbitrary bytes as a pxar archive (unified, and split into a metadata and a payload
//! stream): the sequential decoder and the random-access accessor must return errors, never
//! panic, loop forever or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pxar::fuzz::fuzz_decode(data);
});
