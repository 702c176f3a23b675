//! korvet-runtime-smol: drives the sans-IO core with smol (the successor of async-std): smol's
//! executor, networking and timers. Only the I/O lives here; the broker task is
//! `korvet-runtime-common`'s, the same as under tokio.

use korvet_core::cluster::ClusterEvent;
use korvet_core::storage::StorageDriver;
use korvet_core::{Broker, ConnId};
use korvet_runtime_common::{run_broker, wait_until_readable, BrokerTask, Event, Outgoing, ReadBuffer};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Serves Kafka clients on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish for at most `drain`, and returns the broker (see
/// `korvet_runtime_tokio::serve`, which this mirrors).
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    storage: Arc<dyn StorageDriver>,
    cluster: mpsc::UnboundedReceiver<ClusterEvent>,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
    stats: watch::Sender<korvet_core::stats::Stats>,
) -> Broker {
    let (events_tx, events) = mpsc::channel::<Event>(1024);
    let acceptor = smol::spawn(accept_loop(listener, events_tx));
    let sleep_until = |at: std::time::Instant| async move {
        smol::Timer::at(at).await;
    };
    let task = BrokerTask { storage, events, cluster, drain, stats, sleep_until };
    let broker = run_broker(broker, task, shutdown).await;
    drop(acceptor); // cancels it
    broker
}

async fn accept_loop(listener: TcpListener, events: mpsc::Sender<Event>) {
    let mut next_conn: ConnId = 1;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Typically EMFILE: back off instead of spinning.
                log::warn!("accept failed: {err}");
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = next_conn;
        next_conn += 1;
        let (writer, outgoing) = korvet_runtime_common::writer();
        smol::spawn(write_loop(stream.clone(), outgoing)).detach();
        // The reader starts paused: the broker lets it read once it has seen `Connected`, so
        // that no bytes of this connection can reach the broker before the connection does.
        let (pause, paused) = watch::channel(true);
        let reader = smol::spawn(read_loop(conn, stream, events.clone(), paused));
        // Dropping a smol task cancels it.
        let cancel = Box::new(move || drop(reader));
        let event = Event::Connected { conn, peer: peer.to_string(), writer, reader: cancel, pause };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

async fn read_loop(conn: ConnId, mut socket: TcpStream, events: mpsc::Sender<Event>, mut paused: watch::Receiver<bool>) {
    let mut buf = ReadBuffer::default();
    while wait_until_readable(&mut paused).await {
        match socket.read(buf.space()).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let bytes = buf.take(n);
                if events.send(Event::Received { conn, bytes }).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = events.send(Event::Disconnected { conn }).await;
}

async fn write_loop(mut socket: TcpStream, mut outgoing: Outgoing) {
    while let Some(bytes) = outgoing.receiver.recv().await {
        let written = socket.write_all(&bytes).await;
        outgoing.written(bytes.len());
        if written.is_err() {
            break;
        }
    }
    let _ = socket.shutdown(std::net::Shutdown::Both);
}
