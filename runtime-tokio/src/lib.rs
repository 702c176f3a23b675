//! korvet-runtime-tokio: drives the sans-IO core with tokio.
//!
//! One task owns the [`Broker`] and is the only place that touches it. Per connection, a reader
//! task forwards received bytes to it and a writer task writes what it transmits. Storage
//! commands run as futures polled by the broker task itself, in the order the core emitted them,
//! so that commands to one partition reach Redis in order.

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use korvet_core::cluster::ClusterEvent;
use korvet_core::storage::{StorageDriver, StorageReply};
use korvet_core::{Broker, ConnId, OpId, Output, Time};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

/// Snapshot of the broker's counters, refreshed by the broker task for metrics endpoints.
pub type StatsWatch = watch::Receiver<korvet_core::stats::Stats>;

/// Responses queued for a connection but not yet written: a client that sends requests and
/// never reads the answers is disconnected at this point instead of filling the broker's memory.
const MAX_UNWRITTEN_BYTES: usize = 64 * 1024 * 1024;

enum Event {
    Connected { conn: ConnId, peer: String, writer: Writer, reader: AbortHandle, pause: watch::Sender<bool> },
    Received { conn: ConnId, bytes: Bytes },
    Disconnected { conn: ConnId },
}

type StorageFuture = Pin<Box<dyn Future<Output = (OpId, StorageReply)> + Send>>;

/// A clock that turns tokio's time into the core's [`Time`].
struct Clock {
    start: Instant,
}

impl Clock {
    fn now(&self) -> Time {
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Time { mono_us: self.start.elapsed().as_micros() as u64, wall_ms }
    }

    fn instant(&self, mono_ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.start + Duration::from_millis(mono_ms))
    }
}

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
    let broker = run_broker(broker, storage, events, cluster, shutdown, drain, stats).await;
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
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let unwritten = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write_loop(write_half, writer_rx, unwritten.clone()));
        let (pause, paused) = watch::channel(false);
        let reader = tokio::spawn(read_loop(conn, read_half, events.clone(), paused));
        let writer = Writer { sender: writer_tx, unwritten };
        let event = Event::Connected { conn, peer: peer.to_string(), writer, reader: reader.abort_handle(), pause };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

async fn read_loop(conn: ConnId, mut socket: tokio::net::tcp::OwnedReadHalf, events: mpsc::Sender<Event>, mut paused: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // While the broker works on as many of this connection's requests as it takes at once,
        // further requests stay in the socket: TCP flow control slows the client down.
        while *paused.borrow_and_update() {
            if paused.changed().await.is_err() {
                return;
            }
        }
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let bytes = Bytes::copy_from_slice(&buf[..n]);
                if events.send(Event::Received { conn, bytes }).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = events.send(Event::Disconnected { conn }).await;
}

async fn write_loop(mut socket: tokio::net::tcp::OwnedWriteHalf, mut outgoing: mpsc::UnboundedReceiver<Bytes>, unwritten: Arc<AtomicUsize>) {
    while let Some(bytes) = outgoing.recv().await {
        let written = socket.write_all(&bytes).await;
        unwritten.fetch_sub(bytes.len(), Ordering::Relaxed);
        if written.is_err() {
            break;
        }
    }
    let _ = socket.shutdown().await;
}

/// The sending side of a connection, and how much of what was sent is not written yet.
struct Writer {
    sender: mpsc::UnboundedSender<Bytes>,
    unwritten: Arc<AtomicUsize>,
}

impl Writer {
    /// Queues bytes for the socket; `false` when the client has left too much unread.
    fn send(&self, bytes: Bytes) -> bool {
        let queued = self.unwritten.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
        let _ = self.sender.send(bytes);
        queued <= MAX_UNWRITTEN_BYTES
    }
}

struct Peer {
    writer: Writer,
    reader: AbortHandle,
    pause: watch::Sender<bool>,
}

async fn run_broker(
    mut broker: Broker,
    storage: Arc<dyn StorageDriver>,
    mut events: mpsc::Receiver<Event>,
    mut cluster: mpsc::UnboundedReceiver<ClusterEvent>,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
    stats: watch::Sender<korvet_core::stats::Stats>,
) -> Broker {
    let clock = Clock { start: Instant::now() };
    let mut peers: HashMap<ConnId, Peer> = HashMap::new();
    let mut pending: FuturesUnordered<StorageFuture> = FuturesUnordered::new();
    let mut timer: Option<tokio::time::Instant> = None;
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    let mut stopping: Option<tokio::time::Instant> = None;

    loop {
        let sleep_until = timer.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            Some((op, reply)) = pending.next(), if !pending.is_empty() => {
                broker.handle_storage_reply(op, reply, clock.now());
            }
            event = events.recv(), if stopping.is_none() => match event {
                Some(Event::Connected { conn, peer, writer, reader, pause }) => {
                    peers.insert(conn, Peer { writer, reader, pause });
                    broker.handle_connect(conn, &peer, clock.now());
                }
                Some(Event::Received { conn, bytes }) => broker.handle_bytes(conn, &bytes, clock.now()),
                Some(Event::Disconnected { conn }) => {
                    peers.remove(&conn);
                    broker.handle_disconnect(conn, clock.now());
                }
                None => break,
            },
            Some(event) = cluster.recv() => broker.handle_cluster_event(event, clock.now()),
            _ = tokio::time::sleep_until(sleep_until), if timer.is_some() => {
                timer = None;
                broker.handle_timeout(clock.now());
            }
            _ = stats_tick.tick() => {
                stats.send_replace(broker.stats().clone());
            }
            _ = &mut shutdown, if stopping.is_none() => {
                log::info!("shutting down: finishing {} in-flight requests", broker.in_flight());
                stopping = Some(tokio::time::Instant::now() + drain);
            }
            _ = tokio::time::sleep_until(stopping.unwrap_or_else(tokio::time::Instant::now)), if stopping.is_some() => {
                log::warn!("shutdown: giving up on {} in-flight requests", broker.in_flight());
                break;
            }
        }
        while let Some(output) = broker.poll_output() {
            match output {
                Output::Transmit { conn, bytes } => {
                    let overflowing = peers.get(&conn).is_some_and(|peer| !peer.writer.send(bytes));
                    if overflowing {
                        log::warn!("closing connection {conn}: more than {MAX_UNWRITTEN_BYTES} bytes of responses left unread");
                        if let Some(peer) = peers.remove(&conn) {
                            peer.reader.abort();
                        }
                        broker.handle_disconnect(conn, clock.now());
                    }
                }
                Output::PauseReading { conn } => {
                    if let Some(peer) = peers.get(&conn) {
                        let _ = peer.pause.send(true);
                    }
                }
                Output::ResumeReading { conn } => {
                    if let Some(peer) = peers.get(&conn) {
                        let _ = peer.pause.send(false);
                    }
                }
                Output::Storage { op, command } => {
                    let future = storage.execute(command);
                    pending.push(Box::pin(async move { (op, future.await) }));
                }
                Output::Close { conn, .. } => {
                    if let Some(peer) = peers.remove(&conn) {
                        peer.reader.abort();
                    }
                }
                Output::Timeout(at) => timer = Some(clock.instant(at)),
            }
        }
        if stopping.is_some() && broker.in_flight() == 0 && pending.is_empty() {
            break;
        }
    }
    stats.send_replace(broker.stats().clone());
    broker
}
