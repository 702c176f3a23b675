//! Arbitrary bytes from a client to a TLS listener, before its handshake completes: what anyone
//! who reaches an SSL or SASL_SSL port can send. Errors (and the alert sent back) only; no
//! panic, bounded memory. Past the handshake every record is authenticated with keys a fuzzer
//! cannot forge, so the bytes after it are the request path's (the `request` target). Also
//! feeds the bytes to the parser of client certificates' subjects.
#![no_main]

use korvet_runtime_common::tls::{subject_of, ClientAuth, Handshake, TlsAcceptor, TlsFiles};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// A listener asking for client certificates, with a certificate made for this run.
fn acceptor() -> &'static TlsAcceptor {
    static ACCEPTOR: OnceLock<TlsAcceptor> = OnceLock::new();
    ACCEPTOR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("korvet-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let key = rcgen::KeyPair::generate().expect("a key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params").self_signed(&key).expect("a certificate");
        let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem"), client_ca: Some(dir.join("cert.pem")), client_auth: ClientAuth::Requested };
        std::fs::write(&files.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        TlsAcceptor::load(files).expect("the listener's configuration")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = subject_of(data);
    let Ok(mut handshake) = Handshake::new(acceptor()) else { return };
    // The bytes arrive in pieces, as from a socket: each piece's first byte says how long it is.
    let mut rest = data;
    while let Some((&size, tail)) = rest.split_first() {
        let (piece, tail) = tail.split_at((size as usize + 1).min(tail.len()));
        rest = tail;
        if handshake.output().is_err() || handshake.is_done() || handshake.receive(piece).is_err() {
            return;
        }
    }
    let _ = handshake.output();
});
