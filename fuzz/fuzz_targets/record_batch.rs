//! Arbitrary bytes as a Produce request's record set: parse errors only, bounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = korvet_core::records::decode_batches(bytes::Bytes::copy_from_slice(data), 1 << 20);
});
