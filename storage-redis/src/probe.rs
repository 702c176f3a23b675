//! Probing peer brokers' Kafka ports, so that a crashed broker is noticed in about a second
//! instead of when its registry entry expires (the deployment guide's 30 s TTL).
//!
//! Only a refused connection counts against a peer: the process is gone and its port closed (a
//! crash, kill -9, a container that exited). A probe that times out says nothing (a slow network,
//! a firewall, an address this broker cannot reach) and the registry's TTL decides as before.
//! A wrongly suspected broker costs nothing but a moment of disagreement about who leads and
//! coordinates what: storage is shared, and a group's generations are claimed in storage, so two
//! brokers that both believe they coordinate a group never both hand out one generation.

use futures_channel::oneshot;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// What a peer's port said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It accepted the connection: the broker process is there.
    Open,
    /// It refused the connection: nothing listens there.
    Refused,
    /// No answer in time, or the address cannot be resolved: no evidence either way.
    Unknown,
}

/// Connects to each `(id, host, port)` at once, each on a thread of its own (this crate serves
/// tokio and smol alike), and answers with what each port said within `timeout`.
pub fn probe(peers: Vec<(i32, String, u16)>, timeout: Duration) -> oneshot::Receiver<Vec<(i32, Answer)>> {
    let (answer, answered) = oneshot::channel();
    std::thread::spawn(move || {
        let handles: Vec<_> = peers.into_iter().map(|(id, host, port)| (id, std::thread::spawn(move || knock(&host, port, timeout)))).collect();
        let answers = handles.into_iter().map(|(id, handle)| (id, handle.join().unwrap_or(Answer::Unknown))).collect();
        let _ = answer.send(answers);
    });
    answered
}

fn knock(host: &str, port: u16, timeout: Duration) -> Answer {
    let Ok(mut addresses) = (host, port).to_socket_addrs() else { return Answer::Unknown };
    let Some(address) = addresses.next() else { return Answer::Unknown };
    match TcpStream::connect_timeout(&address, timeout) {
        Ok(_) => Answer::Open,
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => Answer::Refused,
        Err(_) => Answer::Unknown,
    }
}

/// Which peers are taken for gone: those whose port refused `REFUSALS` probes in a row.
#[derive(Debug, Default)]
pub struct Suspicions {
    refusals: std::collections::BTreeMap<i32, u32>,
}

/// Refusals in a row before a peer is taken for gone: one could be a restart in progress.
pub const REFUSALS: u32 = 2;

impl Suspicions {
    /// Takes in one round of answers; returns the peers newly taken for gone and those no longer.
    pub fn update(&mut self, answers: &[(i32, Answer)]) -> (Vec<i32>, Vec<i32>) {
        let mut gone = Vec::new();
        let mut back = Vec::new();
        for &(id, answer) in answers {
            match answer {
                Answer::Refused => {
                    let count = self.refusals.entry(id).or_default();
                    *count += 1;
                    if *count == REFUSALS {
                        gone.push(id);
                    }
                }
                Answer::Open => {
                    if self.refusals.remove(&id).is_some_and(|count| count >= REFUSALS) {
                        back.push(id);
                    }
                }
                Answer::Unknown => {}
            }
        }
        (gone, back)
    }

    /// Forgets peers no longer registered.
    pub fn retain(&mut self, registered: impl Fn(i32) -> bool) {
        self.refusals.retain(|id, _| registered(*id));
    }

    pub fn is_suspected(&self, id: i32) -> bool {
        self.refusals.get(&id).is_some_and(|count| *count >= REFUSALS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_refusals_in_a_row_make_a_suspect_and_an_open_port_clears_it() {
        let mut suspicions = Suspicions::default();
        assert_eq!(suspicions.update(&[(1, Answer::Refused), (2, Answer::Open)]), (vec![], vec![]));
        assert!(!suspicions.is_suspected(1));
        // A probe that says nothing neither counts nor clears.
        assert_eq!(suspicions.update(&[(1, Answer::Unknown)]), (vec![], vec![]));
        assert_eq!(suspicions.update(&[(1, Answer::Refused)]), (vec![1], vec![]));
        assert!(suspicions.is_suspected(1));
        assert_eq!(suspicions.update(&[(1, Answer::Refused)]), (vec![], vec![]));
        assert_eq!(suspicions.update(&[(1, Answer::Open)]), (vec![], vec![1]));
        assert!(!suspicions.is_suspected(1));
    }

    #[test]
    fn a_closed_port_is_refused_and_a_listening_one_open() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            gone.local_addr().unwrap().port()
        };
        let receiver = probe(vec![(1, "127.0.0.1".into(), open), (2, "127.0.0.1".into(), closed)], Duration::from_secs(2));
        let answers = wait_for_answer(receiver);
        assert_eq!(answers, vec![(1, Answer::Open), (2, Answer::Refused)]);
    }

    /// Waits for the probe's answer (it comes from its threads) without a runtime.
    fn wait_for_answer<T>(mut receiver: oneshot::Receiver<T>) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(value)) = receiver.try_recv() {
                return value;
            }
            assert!(std::time::Instant::now() < deadline, "the probe did not answer");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
