//! The core's randomness: a seeded PRNG (the core never asks the system for entropy).

/// A small deterministic PRNG; the runtime seeds it (from entropy, or from the simulator's seed).
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    /// A random version-4 UUID.
    pub fn uuid(&mut self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        bytes
    }
}

/// Unpredictable bytes for secrets (SCRAM nonces): HMAC-SHA-256 over a counter, keyed with
/// entropy the runtime draws from the operating system once at start (the simulator passes bytes
/// from its seed). Unlike [`SplitMix64`], whose output reveals its state, nothing it produces
/// tells anything about its key or its other outputs.
pub struct SecureRandom {
    key: [u8; 32],
    counter: u64,
}

impl SecureRandom {
    pub fn new(entropy: [u8; 32]) -> Self {
        SecureRandom { key: entropy, counter: 0 }
    }

    /// 32 fresh bytes.
    pub fn next_block(&mut self) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        self.counter += 1;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(&self.counter.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A nonce for SCRAM: 32 letters and digits (160 bits). Only those: librdkafka 2.0 loses
    /// server nonces with `+` or `/` in them (Kafka's own nonces are alphanumeric too).
    pub fn nonce(&mut self) -> String {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        self.next_block().iter().map(|b| ALPHABET[(b & 31) as usize] as char).collect()
    }
}
