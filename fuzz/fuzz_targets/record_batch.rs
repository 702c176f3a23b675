//! Arbitrary bytes as a Produce request's record set: parse errors only, bounded memory. What
//! parses is then stored as the batch layout stores it (encoded again with a topic's codec, with
//! LogAppendTime written in), which must parse again to the same records.
#![no_main]

use korvet_core::records::{decode_batches, for_storage, Compression};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batches) = decode_batches(bytes::Bytes::copy_from_slice(data), 1 << 20) else { return };
    let codec = data.first().and_then(|b| Compression::from_attributes(i16::from(*b % 5)));
    for batch in &batches {
        let stored = for_storage(batch, codec, data.len().is_multiple_of(2).then_some(1_800_000_000_000));
        let again = decode_batches(stored, 1 << 20).expect("a stored batch parses");
        assert_eq!(again[0].records.len(), batch.records.len());
    }
});
