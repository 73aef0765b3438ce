//! Entry point for fuzzing: run every reader over arbitrary bytes.

use std::io::Read;

use crate::decoder::Decoder;

/// Decode `data` sequentially and through the accessor, as a unified archive and as a split
/// pair (first two bytes select where the payload stream starts); must never panic.
pub fn fuzz_decode(data: &[u8]) {
    run_decoder(data, None);
    crate::accessor::fuzz_walk(data, None);
    if data.len() >= 2 {
        let split = u16::from_le_bytes([data[0], data[1]]) as usize % (data.len() - 1);
        let (meta, payload) = data[2..].split_at(split.min(data.len() - 2));
        run_decoder(meta, Some(payload));
        crate::accessor::fuzz_walk(meta, Some(payload));
    }
}

fn run_decoder(meta: &[u8], payload: Option<&[u8]>) {
    let Ok(mut decoder) = Decoder::new(meta, payload) else {
        return;
    };
    let mut sink = Vec::new();
    while let Ok(Some(_entry)) = decoder.next_entry() {
        if let Some(mut contents) = decoder.contents() {
            sink.clear();
            if contents.read_to_end(&mut sink).is_err() {
                return;
            }
        }
    }
}
