//! korvet-runtime-common: the broker task, shared by the tokio and smol runtimes.
//!
//! One task owns the [`Broker`] and is the only place that touches it. Per connection, a reader
//! task (the runtime's) forwards received bytes as [`Event`]s and a writer task writes what the
//! broker transmits. Storage commands run as futures polled by the broker task itself, in the
//! order the core emitted them, so that commands to one partition reach Redis in order.
//!
//! Everything here is runtime-agnostic: channels and `select!` from tokio's executor-independent
//! `sync` and `macros` parts, and sockets, timers and spawning through the [`Runtime`] trait, so
//! that the accept, read and write loops ([`serve`]) exist once for both runtimes.

mod runtime;
pub mod tls;

pub use runtime::Runtime;
use tls::{TlsAcceptor, TlsSession};

use bytes::Bytes;
use futures_util::future::{select, Either};
use futures_util::stream::{FuturesUnordered, StreamExt};
use korvet_core::cluster::ClusterEvent;
use korvet_core::compute::ComputeResult;
use korvet_core::storage::{StorageDriver, StorageReply};
use korvet_core::{Broker, ConnId, OpId, Output, Time};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};

/// Responses queued for a connection but not yet written: a client that sends requests and
/// never reads the answers is disconnected at this point instead of filling the broker's memory.
pub const MAX_UNWRITTEN_BYTES: usize = 64 * 1024 * 1024;

/// Size of the buffer reader tasks read into while a connection sends a lot.
pub const READ_CHUNK: usize = 64 * 1024;
/// Size of the buffer of a connection that sends little: an idle connection waits in its read
/// with this much memory, not [`READ_CHUNK`].
pub const SMALL_READ: usize = 512;

/// A connection's read buffer: small while reads are small, [`READ_CHUNK`] while they fill it.
pub struct ReadBuffer {
    buf: Vec<u8>,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        ReadBuffer { buf: vec![0; SMALL_READ] }
    }
}

impl ReadBuffer {
    /// Where the next read goes.
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The `n` bytes just read, copied out; the buffer grows after a read that filled it and
    /// shrinks back after one that used a small part of it.
    pub fn take(&mut self, n: usize) -> Bytes {
        let bytes = Bytes::copy_from_slice(&self.buf[..n]);
        if n == self.buf.len() && self.buf.len() < READ_CHUNK {
            self.buf = vec![0; READ_CHUNK];
        } else if n <= SMALL_READ && self.buf.len() > SMALL_READ {
            self.buf = vec![0; SMALL_READ];
        }
        bytes
    }
}

/// What a runtime's connection tasks tell the broker task.
pub enum Event {
    /// A connection on listener `listener` (its TLS handshake done, if it has TLS);
    /// `subject` is the client certificate's subject.
    Connected { conn: ConnId, peer: String, listener: usize, subject: Option<String>, writer: Writer, reader: Cancel, pause: watch::Sender<bool> },
    Received { conn: ConnId, bytes: Bytes },
    Disconnected { conn: ConnId },
    /// A TLS handshake failed (a client certificate refused, a client speaking plaintext).
    TlsFailed { peer: String, reason: String },
}

/// How long a TLS handshake may take before the connection is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listening socket and, for SSL and SASL_SSL listeners, its TLS configuration. Listeners are
/// numbered by their place in the list given to [`serve`] (the core's listener index).
pub struct ListenerSocket<R: Runtime> {
    pub socket: R::Listener,
    pub tls: Option<Arc<TlsAcceptor>>,
}

/// Stops a connection's reader task.
pub type Cancel = Box<dyn FnOnce() + Send>;

/// The sending side of a connection, and how much of what was sent is not written yet.
#[derive(Clone)]
pub struct Writer {
    sender: futures_channel::mpsc::UnboundedSender<Bytes>,
    unwritten: Arc<AtomicUsize>,
}

/// The writer task's side: bytes to write, and the count to lower as they are written.
pub struct Outgoing {
    pub receiver: futures_channel::mpsc::UnboundedReceiver<Bytes>,
    unwritten: Arc<AtomicUsize>,
}

impl Outgoing {
    /// Marks bytes as written (or dropped).
    pub fn written(&self, bytes: usize) {
        self.unwritten.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// A connection's writer and the receiving end for its writer task.
pub fn writer() -> (Writer, Outgoing) {
    // futures' unbounded channel allocates per message; tokio's keeps a block of 32 slots per
    // channel, a kilobyte for every idle connection.
    let (sender, receiver) = futures_channel::mpsc::unbounded();
    let unwritten = Arc::new(AtomicUsize::new(0));
    (Writer { sender, unwritten: unwritten.clone() }, Outgoing { receiver, unwritten })
}

impl Writer {
    /// Queues bytes for the socket; `false` when the client has left too much unread.
    fn send(&self, bytes: Bytes) -> bool {
        let queued = self.unwritten.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
        let _ = self.sender.unbounded_send(bytes);
        queued <= MAX_UNWRITTEN_BYTES
    }
}

/// Waits while the broker has paused reading this connection; `false` once the broker is gone.
/// Reader tasks call it before every read: further requests stay in the socket, and TCP flow
/// control slows the client down.
pub async fn wait_until_readable(paused: &mut watch::Receiver<bool>) -> bool {
    while *paused.borrow_and_update() {
        if paused.changed().await.is_err() {
            return false;
        }
    }
    true
}

/// Work the broker task handed out: a storage command, or a compute job.
type PendingWork = Pin<Box<dyn Future<Output = (OpId, Finished)> + Send>>;

enum Finished {
    Storage(StorageReply),
    Compute(ComputeResult),
}

/// Turns the runtime's clock into the core's [`Time`].
struct Clock {
    start: Instant,
}

impl Clock {
    fn now(&self) -> Time {
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Time { mono_us: self.start.elapsed().as_micros() as u64, wall_ms }
    }

    fn instant(&self, mono_ms: u64) -> Instant {
        self.start + Duration::from_millis(mono_ms)
    }
}

struct Peer {
    writer: Writer,
    reader: Option<Cancel>,
    pause: watch::Sender<bool>,
}

impl Peer {
    fn cancel_reader(&mut self) {
        if let Some(cancel) = self.reader.take() {
            cancel();
        }
    }
}

/// What the broker task needs besides the broker.
pub struct BrokerTask<R> {
    pub storage: Arc<dyn StorageDriver>,
    pub events: mpsc::Receiver<Event>,
    pub cluster: mpsc::UnboundedReceiver<ClusterEvent>,
    pub drain: Duration,
    pub stats: watch::Sender<korvet_core::stats::Stats>,
    pub rt: R,
}

/// Serves Kafka clients on `listeners` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish for at most `drain`, and returns the broker. The broker's counters
/// are published on `stats` about once a second; what the rest of the cluster reports arrives on
/// `cluster` (its sender may simply be dropped when there is no cluster).
pub async fn serve<R: Runtime>(
    rt: R,
    listeners: Vec<ListenerSocket<R>>,
    broker: Broker,
    storage: Arc<dyn StorageDriver>,
    cluster: mpsc::UnboundedReceiver<ClusterEvent>,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
    stats: watch::Sender<korvet_core::stats::Stats>,
) -> Broker {
    let (events_tx, events) = mpsc::channel::<Event>(1024);
    let (stop_accepting, accepting_stopped) = watch::channel(());
    // Connection ids are unique across listeners.
    let next_conn = Arc::new(std::sync::atomic::AtomicU64::new(1));
    for (index, listener) in listeners.into_iter().enumerate() {
        let acceptor = Acceptor { rt, index, tls: listener.tls, events: events_tx.clone(), next_conn: next_conn.clone() };
        rt.spawn(acceptor.run(listener.socket, accepting_stopped.clone()));
    }
    drop(events_tx);
    let broker = run_broker(broker, BrokerTask { storage, events, cluster, drain, stats, rt }, shutdown).await;
    drop(stop_accepting);
    broker
}

/// One listener's accept loop and what its connections need.
struct Acceptor<R: Runtime> {
    rt: R,
    index: usize,
    tls: Option<Arc<TlsAcceptor>>,
    events: mpsc::Sender<Event>,
    next_conn: Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Runtime> Acceptor<R> {
    async fn run(self, listener: R::Listener, mut stopped: watch::Receiver<()>) {
        let this = Arc::new(self);
        loop {
            let accepted = match select(std::pin::pin!(this.rt.accept(&listener)), std::pin::pin!(stopped.changed())).await {
                Either::Left((accepted, _)) => accepted,
                Either::Right(_) => return,
            };
            let (reader, writer, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Typically EMFILE: back off instead of spinning.
                    log::warn!("accept failed: {err}");
                    this.rt.sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match &this.tls {
                None => {
                    if !this.start(reader, writer, peer.to_string(), None, None).await {
                        return;
                    }
                }
                Some(tls) => {
                    // The handshake runs in its own task: a slow client must not hold up accepting.
                    let (this, tls) = (this.clone(), tls.clone());
                    this.rt.spawn(async move { this.clone().handshake(tls, reader, writer, peer.to_string()).await });
                }
            }
        }
    }

    /// Runs a TLS handshake, then starts the connection; a failure is reported and the socket
    /// dropped.
    async fn handshake(self: Arc<Self>, tls: Arc<TlsAcceptor>, mut reader: R::Reader, mut writer: R::Writer, peer: String) {
        let handshake = tls_handshake::<R>(&tls, &mut reader, &mut writer);
        match self.rt.timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
            Some(Ok(connection)) => {
                let subject = tls::certificate_subject(&connection);
                self.start(reader, writer, peer, subject, Some(TlsSession::new(connection))).await;
            }
            Some(Err(err)) => {
                let _ = self.events.send(Event::TlsFailed { peer, reason: err.to_string() }).await;
                R::close(writer).await;
            }
            None => {
                let reason = format!("no TLS handshake within {} s", TLS_HANDSHAKE_TIMEOUT.as_secs());
                let _ = self.events.send(Event::TlsFailed { peer, reason }).await;
            }
        }
    }

    /// Starts a connection's reader and writer and tells the broker; `false` once the broker is
    /// gone.
    async fn start(&self, reader: R::Reader, writer: R::Writer, peer: String, subject: Option<String>, tls: Option<TlsSession>) -> bool {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (sender, outgoing) = self::writer();
        self.rt.spawn(write_loop::<R>(writer, outgoing, tls.clone()));
        // The reader starts paused: the broker lets it read once it has seen `Connected`, so
        // that no bytes of this connection can reach the broker before the connection does.
        let (pause, paused) = watch::channel(true);
        let (cancel, cancelled) = oneshot::channel::<()>();
        let nudge = tls.as_ref().map(|_| sender.clone());
        // Requests that arrived with the end of the handshake are already decrypted.
        let early = tls.as_ref().map(TlsSession::take_plaintext).unwrap_or_default();
        self.rt.spawn(read_loop::<R>(conn, reader, self.events.clone(), paused, cancelled, tls.map(|tls| (tls, nudge)), early));
        let cancel: Cancel = Box::new(move || {
            let _ = cancel.send(());
        });
        let event = Event::Connected { conn, peer, listener: self.index, subject, writer: sender, reader: cancel, pause };
        self.events.send(event).await.is_ok()
    }
}

/// Drives a server TLS handshake over the socket to its end.
async fn tls_handshake<R: Runtime>(tls: &TlsAcceptor, reader: &mut R::Reader, writer: &mut R::Writer) -> io::Result<rustls::ServerConnection> {
    let mut handshake = tls::Handshake::new(tls).map_err(io::Error::other)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let out = handshake.output()?;
        if !out.is_empty() {
            R::write_all(writer, &out).await?;
        }
        if handshake.is_done() {
            return Ok(handshake.into_connection());
        }
        if handshake.wants_read() {
            let n = R::read(reader, &mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the client closed the connection during the TLS handshake"));
            }
            if let Err((err, alert)) = handshake.receive(&buf[..n]) {
                // Tell the client why before giving up.
                if !alert.is_empty() {
                    let _ = R::write_all(writer, &alert).await;
                }
                return Err(err);
            }
        }
    }
}

/// A TLS connection driven by a single task (the management server's), after its handshake:
/// reads decrypt, writes encrypt.
pub struct TlsConnection<R: Runtime> {
    reader: R::Reader,
    writer: R::Writer,
    session: TlsSession,
    /// Decrypted bytes not yet read.
    pending: Vec<u8>,
}

impl<R: Runtime> TlsConnection<R> {
    /// Runs the handshake (bounded by [`TLS_HANDSHAKE_TIMEOUT`] by the caller's timeout).
    pub async fn accept(tls: &TlsAcceptor, mut reader: R::Reader, mut writer: R::Writer) -> io::Result<Self> {
        let connection = tls_handshake::<R>(tls, &mut reader, &mut writer).await?;
        let session = TlsSession::new(connection);
        let pending = session.take_plaintext();
        Ok(TlsConnection { reader, writer, session, pending })
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut chunk = vec![0u8; 16 * 1024];
        while self.pending.is_empty() {
            let n = R::read(&mut self.reader, &mut chunk).await?;
            if n == 0 {
                return Ok(0);
            }
            let (plaintext, wants_write) = self.session.decrypt(&chunk[..n])?;
            if wants_write {
                let out = self.session.encrypt(&[])?;
                R::write_all(&mut self.writer, &out).await?;
            }
            self.pending = plaintext;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let encrypted = self.session.encrypt(bytes)?;
        R::write_all(&mut self.writer, &encrypted).await
    }

    /// Sends close_notify and shuts the socket down.
    pub async fn close(mut self) {
        let _ = R::write_all(&mut self.writer, &self.session.close()).await;
        R::close(self.writer).await;
    }
}

/// A TLS connection's session, and how its reader makes the writer send what TLS itself must
/// (an empty message to the writer drains it).
type ReaderTls = (TlsSession, Option<Writer>);

/// Forwards what the connection receives (decrypted, on a TLS listener) to the broker until it
/// closes (then says so), the broker is gone, or the broker cancels it (it closed the connection
/// itself).
async fn read_loop<R: Runtime>(
    conn: ConnId,
    mut reader: R::Reader,
    events: mpsc::Sender<Event>,
    mut paused: watch::Receiver<bool>,
    mut cancelled: oneshot::Receiver<()>,
    tls: Option<ReaderTls>,
    early: Vec<u8>,
) {
    if !early.is_empty() {
        if !wait_until_readable(&mut paused).await || events.send(Event::Received { conn, bytes: Bytes::from(early) }).await.is_err() {
            return;
        }
    }
    let mut buf = ReadBuffer::default();
    loop {
        let read = async {
            if !wait_until_readable(&mut paused).await {
                return None;
            }
            Some(R::read(&mut reader, buf.space()).await)
        };
        let read = match select(std::pin::pin!(read), &mut cancelled).await {
            Either::Left((Some(read), _)) => read,
            // The broker is gone, or closed the connection and forgot it.
            Either::Left((None, _)) | Either::Right(_) => return,
        };
        let bytes = match (read, &tls) {
            (Ok(0) | Err(_), _) => break,
            (Ok(n), None) => buf.take(n),
            (Ok(n), Some((session, nudge))) => match session.decrypt(&buf.take(n)) {
                Ok((plaintext, wants_write)) => {
                    if wants_write {
                        if let Some(writer) = nudge {
                            writer.send(Bytes::new());
                        }
                    }
                    if plaintext.is_empty() {
                        continue;
                    }
                    Bytes::from(plaintext)
                }
                Err(err) => {
                    log::debug!("connection {conn}: TLS failed: {err}");
                    break;
                }
            },
        };
        if events.send(Event::Received { conn, bytes }).await.is_err() {
            return;
        }
    }
    let _ = events.send(Event::Disconnected { conn }).await;
}

async fn write_loop<R: Runtime>(mut writer: R::Writer, mut outgoing: Outgoing, tls: Option<TlsSession>) {
    while let Some(bytes) = outgoing.receiver.next().await {
        let written = match &tls {
            None => R::write_all(&mut writer, &bytes).await,
            Some(session) => match session.encrypt(&bytes) {
                Ok(encrypted) if encrypted.is_empty() => Ok(()),
                Ok(encrypted) => R::write_all(&mut writer, &encrypted).await,
                Err(err) => Err(err),
            },
        };
        outgoing.written(bytes.len());
        if written.is_err() {
            break;
        }
    }
    if let Some(session) = &tls {
        let _ = R::write_all(&mut writer, &session.close()).await;
    }
    R::close(writer).await;
}

/// Runs the broker until `shutdown` resolves, then stops taking events, lets in-flight requests
/// finish for at most `drain`, and returns the broker. Publishes its counters on `stats` about
/// once a second.
pub async fn run_broker<R: Runtime>(mut broker: Broker, task: BrokerTask<R>, shutdown: impl Future<Output = ()> + Send) -> Broker {
    let BrokerTask { storage, mut events, mut cluster, drain, stats, rt } = task;
    let clock = Clock { start: Instant::now() };
    let mut peers: HashMap<ConnId, Peer> = HashMap::new();
    let mut pending: FuturesUnordered<PendingWork> = FuturesUnordered::new();
    let mut timer: Option<Instant> = None;
    let mut next_stats = Instant::now();
    let mut stopping: Option<Instant> = None;
    let mut shutdown = Box::pin(shutdown);
    // One timer for whatever comes first: the core's timeout, the stats tick, the drain limit.
    // It is armed again only when that moment changes, not on every event.
    let mut sleep: Option<(Instant, Pin<Box<dyn Future<Output = ()> + Send>>)> = None;

    loop {
        let wake_at = [timer, Some(next_stats), stopping].into_iter().flatten().min().unwrap_or(next_stats);
        if sleep.as_ref().is_none_or(|(at, _)| *at != wake_at) {
            sleep = Some((wake_at, Box::pin(rt.sleep_until(wake_at))));
        }
        let Some((_, sleeping)) = sleep.as_mut() else { continue };
        tokio::select! {
            biased;
            Some((op, finished)) = pending.next(), if !pending.is_empty() => match finished {
                Finished::Storage(reply) => broker.handle_storage_reply(op, reply, clock.now()),
                Finished::Compute(result) => broker.handle_compute_result(op, result, clock.now()),
            },
            event = events.recv(), if stopping.is_none() => match event {
                Some(Event::Connected { conn, peer, listener, subject, writer, reader, pause }) => {
                    broker.handle_connect_on(conn, &peer, listener, subject.as_deref(), clock.now());
                    // Readers start paused (see `wait_until_readable`): now this one may read.
                    let _ = pause.send(false);
                    peers.insert(conn, Peer { writer, reader: Some(reader), pause });
                }
                Some(Event::Received { conn, bytes }) => broker.handle_bytes(conn, &bytes, clock.now()),
                Some(Event::Disconnected { conn }) => {
                    peers.remove(&conn);
                    broker.handle_disconnect(conn, clock.now());
                }
                Some(Event::TlsFailed { peer, reason }) => broker.handle_tls_failure(&peer, &reason, clock.now()),
                None => break,
            },
            Some(event) = cluster.recv() => broker.handle_cluster_event(event, clock.now()),
            _ = &mut shutdown, if stopping.is_none() => {
                log::info!("shutting down: finishing {} in-flight requests", broker.in_flight());
                stopping = Some(Instant::now() + drain);
            }
            _ = sleeping => {
                // A finished timer must not be polled again.
                sleep = None;
                let now = Instant::now();
                if timer.is_some_and(|t| t <= now) {
                    timer = None;
                    broker.handle_timeout(clock.now());
                }
                if next_stats <= now {
                    stats.send_replace(broker.stats().clone());
                    next_stats = now + Duration::from_secs(1);
                }
                if stopping.is_some_and(|s| s <= now) {
                    log::warn!("shutdown: giving up on {} in-flight requests", broker.in_flight());
                    break;
                }
            }
        }
        while let Some(output) = broker.poll_output() {
            match output {
                Output::Transmit { conn, bytes } => {
                    let overflowing = peers.get(&conn).is_some_and(|peer| !peer.writer.send(bytes));
                    if overflowing {
                        log::warn!("closing connection {conn}: more than {MAX_UNWRITTEN_BYTES} bytes of responses left unread");
                        if let Some(mut peer) = peers.remove(&conn) {
                            peer.cancel_reader();
                        }
                        broker.handle_disconnect(conn, clock.now());
                    }
                }
                Output::Storage { op, command } => {
                    let future = storage.execute(command);
                    pending.push(Box::pin(async move { (op, Finished::Storage(future.await)) }));
                }
                Output::Compute { op, job } => {
                    // On the runtime's blocking pool, so the broker task serves on meanwhile.
                    let work = rt.unblock(move || job.run());
                    pending.push(Box::pin(async move { (op, Finished::Compute(work.await.unwrap_or(ComputeResult::Lost))) }));
                }
                Output::Close { conn, .. } => {
                    if let Some(mut peer) = peers.remove(&conn) {
                        peer.cancel_reader();
                    }
                }
                Output::Timeout(at) => timer = Some(clock.instant(at)),
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
            }
        }
        if stopping.is_some() && broker.in_flight() == 0 && pending.is_empty() {
            break;
        }
    }
    stats.send_replace(broker.stats().clone());
    broker
}
