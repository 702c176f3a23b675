//! korvet-runtime-tokio: drives the sans-IO core with tokio. Only the I/O lives here (accepting,
//! reading and writing sockets, timers); the broker task is `korvet-runtime-common`'s.

use korvet_core::cluster::ClusterEvent;
use korvet_core::storage::StorageDriver;
use korvet_core::{Broker, ConnId};
use korvet_runtime_common::{run_broker, wait_until_readable, BrokerTask, Event, Outgoing, ReadBuffer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Serves Kafka clients on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish for at most `drain`, and returns the broker. The broker's counters
/// are published on `stats` about once a second; what the rest of the cluster reports arrives on
/// `cluster` (its sender may simply be dropped when there is no cluster).
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
    let acceptor = tokio::spawn(accept_loop(listener, events_tx));
    let sleep_until = |at: std::time::Instant| tokio::time::sleep_until(tokio::time::Instant::from_std(at));
    let task = BrokerTask { storage, events, cluster, drain, stats, sleep_until };
    let broker = run_broker(broker, task, shutdown).await;
    acceptor.abort();
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
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = next_conn;
        next_conn += 1;
        let (read_half, write_half) = stream.into_split();
        let (writer, outgoing) = korvet_runtime_common::writer();
        tokio::spawn(write_loop(write_half, outgoing));
        // The reader starts paused: the broker lets it read once it has seen `Connected`, so
        // that no bytes of this connection can reach the broker before the connection does.
        let (pause, paused) = watch::channel(true);
        let reader = tokio::spawn(read_loop(conn, read_half, events.clone(), paused)).abort_handle();
        let cancel = Box::new(move || reader.abort());
        let event = Event::Connected { conn, peer: peer.to_string(), writer, reader: cancel, pause };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

async fn read_loop(conn: ConnId, mut socket: tokio::net::tcp::OwnedReadHalf, events: mpsc::Sender<Event>, mut paused: watch::Receiver<bool>) {
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

async fn write_loop(mut socket: tokio::net::tcp::OwnedWriteHalf, mut outgoing: Outgoing) {
    while let Some(bytes) = outgoing.receiver.recv().await {
        let written = socket.write_all(&bytes).await;
        outgoing.written(bytes.len());
        if written.is_err() {
            break;
        }
    }
    let _ = socket.shutdown().await;
}
