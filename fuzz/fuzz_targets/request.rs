//! Arbitrary bytes on a connection: the broker must answer, close the connection, or wait for
//! more, and never panic or abort. Storage commands run against the in-memory store. The same
//! bytes also go to a connection on a SASL listener (with a SCRAM user in the store), so that
//! the SASL exchange and its tokens are fuzzed too.
#![no_main]

use korvet_core::security::{Listener, ScramCredential, ScramMechanism, SecurityProtocol};
use korvet_core::storage::memory::MemoryStore;
use korvet_core::storage::StorageCommand;
use korvet_core::{Broker, BrokerConfig, Output, Time};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sasl = Listener { protocol: SecurityProtocol::SaslPlaintext, advertised_host: "fuzz".into(), advertised_port: 9093 };
    let config = BrokerConfig { max_request_size: 1 << 20, extra_listeners: vec![sasl], ..BrokerConfig::default() };
    let mut broker = Broker::new(config, 1);
    let mut store = MemoryStore::new();
    for mechanism in ScramMechanism::ALL {
        let credential = ScramCredential::from_password("alice", mechanism, "pw", b"salt", 4096);
        store.execute(StorageCommand::SaveCredential { credential });
    }
    let now = Time { mono_us: 0, wall_ms: 0 };
    broker.handle_connect(1, "fuzz", now);
    broker.handle_connect_on(2, "fuzz", 1, None, now);
    // Split the input in two writes so that frames straddling reads are exercised too.
    let (a, b) = data.split_at(data.len() / 2);
    for chunk in [a, b] {
        for conn in [1, 2] {
            broker.handle_bytes(conn, chunk, now);
            while let Some(output) = broker.poll_output() {
                match output {
                    Output::Storage { op, command } => {
                        let reply = store.execute(command);
                        broker.handle_storage_reply(op, reply, now);
                    }
                    Output::Compute { op, job } => broker.handle_compute_result(op, job.run(), now),
                    _ => {}
                }
            }
        }
    }
    broker.handle_timeout(Time { mono_us: u64::MAX / 2, wall_ms: 0 });
    while broker.poll_output().is_some() {}
});
