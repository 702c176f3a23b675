//! The connection that reads partitions: one Redis connection on a thread of its own, speaking
//! just enough RESP (see [`crate::resp`]) to hand XRANGE replies to the core as slices of the
//! bytes Redis sent.
//!
//! Queries queue on a channel; the thread takes everything queued, writes it in one go, and
//! reads the replies in order, so fetches from many consumers share pipelined round trips. The
//! parsing of a reply runs on this thread too, beside the broker's own. After any I/O error or
//! timeout the connection is dropped (its replies can no longer be matched to queries); the
//! queries in flight get one more try on a fresh connection if the old one had been in use
//! before (it may have died idle, with a Redis restart), and otherwise fail as retriable.

use crate::resp::{self, Scanner};
use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use redis::{ConnectionAddr, ConnectionInfo, RedisError};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::Duration;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub info: ConnectionInfo,
    /// For `rediss://` addresses.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Behind Sentinel, `info`'s address is only a template: each connection goes to the
    /// master Sentinel names when it is opened.
    pub sentinel: Option<crate::sentinel::SentinelSource>,
}

type Done = Box<dyn FnOnce(Result<Vec<Bytes>, RedisError>) + Send>;

struct Query {
    commands: Vec<u8>,
    replies: usize,
    /// About how many bytes the replies take, so that they are read into one buffer instead of
    /// one that grows (and is copied) as they arrive.
    reply_bytes: usize,
    done: Done,
}

/// A handle to the reading thread; the thread ends when the handle is dropped.
pub struct ReadConnection {
    queries: mpsc::Sender<Query>,
}

/// The most queries written in one round trip.
const MAX_ROUND: usize = 256;
/// How much is read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// The most room made ahead for a query's replies. Larger buffers would be fresh memory from the
/// operating system for every read (page faults were a sixth of the read path's time); replies
/// beyond this go into further buffers of the same size.
const MAX_RESERVE: usize = 1024 * 1024;

impl ReadConnection {
    pub fn start(target: Target) -> io::Result<Self> {
        let (queries, incoming) = mpsc::channel();
        std::thread::Builder::new().name("korvet-redis-read".into()).spawn(move || serve(target, incoming))?;
        Ok(ReadConnection { queries })
    }

    /// Sends `commands` (RESP, see [`resp::write_command`]), whose answer is `replies` replies
    /// of about `reply_bytes` in all, and parses those with `parse` on the reading thread.
    pub async fn query<T: Send + 'static>(
        &self,
        commands: Vec<u8>,
        replies: usize,
        reply_bytes: usize,
        parse: impl FnOnce(Vec<Bytes>) -> Result<T, RedisError> + Send + 'static,
    ) -> Result<T, RedisError> {
        self.submit(commands, replies, reply_bytes, parse)
            .await
            .unwrap_or_else(|_| Err(RedisError::from(io::Error::new(io::ErrorKind::BrokenPipe, "the Redis read thread dropped a query"))))
    }

    /// Like [`ReadConnection::query`], but the answer arrives on the returned channel, whether
    /// or not anyone still waits for it (read-ahead).
    pub fn submit<T: Send + 'static>(
        &self,
        commands: Vec<u8>,
        replies: usize,
        reply_bytes: usize,
        parse: impl FnOnce(Vec<Bytes>) -> Result<T, RedisError> + Send + 'static,
    ) -> oneshot::Receiver<Result<T, RedisError>> {
        let (answer, answered) = oneshot::channel();
        let done: Done = Box::new(move |frames| {
            let _ = answer.send(frames.and_then(parse));
        });
        if let Err(mpsc::SendError(query)) = self.queries.send(Query { commands, replies, reply_bytes: reply_bytes.min(MAX_RESERVE), done }) {
            (query.done)(Err(RedisError::from(io::Error::new(io::ErrorKind::BrokenPipe, "the Redis read thread has stopped"))));
        }
        answered
    }
}

fn serve(target: Target, incoming: mpsc::Receiver<Query>) {
    let mut connection: Option<Connection> = None;
    while let Ok(first) = incoming.recv() {
        let mut round = vec![first];
        while round.len() < MAX_ROUND {
            match incoming.try_recv() {
                Ok(query) => round.push(query),
                Err(_) => break,
            }
        }
        let (conn, reused) = match connection.take() {
            Some(conn) => (conn, true),
            None => match Connection::open(&target) {
                Ok(conn) => (conn, false),
                Err(err) => {
                    fail(round, &err);
                    continue;
                }
            },
        };
        connection = match conn.exchange(round) {
            Ok(conn) => Some(conn),
            // A connection that sat idle may have died with a Redis restart or failover: its
            // queries (all reads, safe to repeat) get one more try on a fresh connection.
            Err((unanswered, err)) if reused && !is_timeout(&err) => match Connection::open(&target) {
                Ok(fresh) => fresh.exchange(unanswered).map_err(|(left, err)| fail(left, &err)).ok(),
                Err(err) => {
                    fail(unanswered, &err);
                    None
                }
            },
            Err((unanswered, err)) => {
                fail(unanswered, &err);
                None
            }
        };
    }
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

/// Fails every query of `round` with (a copy of) `err`.
fn fail(round: Vec<Query>, err: &io::Error) {
    for query in round {
        (query.done)(Err(RedisError::from(io::Error::new(err.kind(), err.to_string()))));
    }
}

trait Stream: Read + Write + Send {}
impl Stream for TcpStream {}
impl Stream for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {}
#[cfg(unix)]
impl Stream for std::os::unix::net::UnixStream {}

struct Connection {
    stream: Box<dyn Stream>,
    received: BytesMut,
    scanner: Scanner,
}

/// A TCP connection to the first address of `host` that answers, with korvet's socket settings.
fn connect_tcp(host: &str, port: u16, target: &Target) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}:{port} resolves to no address"));
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, target.connect_timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(target.response_timeout))?;
                stream.set_write_timeout(Some(target.response_timeout))?;
                return Ok(stream);
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}

impl Connection {
    fn open(target: &Target) -> io::Result<Connection> {
        let info = match &target.sentinel {
            Some(sentinel) => sentinel.master_info_blocking().map_err(|err| io::Error::new(io::ErrorKind::NotConnected, err.to_string()))?,
            None => target.info.clone(),
        };
        let stream: Box<dyn Stream> = match info.addr() {
            ConnectionAddr::TcpTls { host, port, .. } => {
                let config = target.tls.clone().ok_or_else(|| io::Error::other("no TLS configuration for a rediss:// address"))?;
                let socket = connect_tcp(host, *port, target)?;
                let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
                let connection = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
                Box::new(rustls::StreamOwned::new(connection, socket))
            }
            ConnectionAddr::Tcp(host, port) => Box::new(connect_tcp(host, *port, target)?),
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                let stream = std::os::unix::net::UnixStream::connect(path)?;
                stream.set_read_timeout(Some(target.response_timeout))?;
                stream.set_write_timeout(Some(target.response_timeout))?;
                Box::new(stream)
            }
            other => return Err(io::Error::new(io::ErrorKind::Unsupported, format!("unsupported Redis address {other}"))),
        };
        let mut conn = Connection { stream, received: BytesMut::new(), scanner: Scanner::default() };
        conn.introduce(target)?;
        Ok(conn)
    }

    /// Authenticates and selects the database the URI names, as the other connections do.
    fn introduce(&mut self, target: &Target) -> io::Result<()> {
        let settings = target.info.redis_settings();
        let mut commands = Vec::new();
        let mut replies = 0;
        if let Some(password) = settings.password() {
            match settings.username() {
                Some(user) => resp::write_command(&mut commands, &[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => resp::write_command(&mut commands, &[b"AUTH", password.as_bytes()]),
            }
            replies += 1;
        }
        if settings.db() != 0 {
            resp::write_command(&mut commands, &[b"SELECT", settings.db().to_string().as_bytes()]);
            replies += 1;
        }
        resp::write_command(&mut commands, &[b"CLIENT", b"SETNAME", b"korvet-reads"]);
        replies += 1;
        // Behind Sentinel, only a master is read from: a restarted old master may hold records
        // the promoted replica never received, and is a master again for a moment before
        // Sentinel makes it a replica.
        let check_role = target.sentinel.is_some();
        if check_role {
            resp::write_command(&mut commands, &[b"ROLE"]);
        }
        self.stream.write_all(&commands)?;
        for _ in 0..replies {
            let reply = self.next_reply()?;
            if let Err(err) = resp::Reply::new(reply).string() {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("redis refused the read connection: {err}")));
            }
        }
        if check_role {
            let mut role = resp::Reply::new(self.next_reply()?);
            let is_master = role.array().ok().flatten().is_some() && role.string().ok().flatten().as_deref() == Some(&b"master"[..]);
            if !is_master {
                return Err(io::Error::new(io::ErrorKind::NotConnected, "the server Sentinel names as the master is not a master (yet)"));
            }
        }
        Ok(())
    }

    /// Writes the round's queries and answers them in order. Returns the connection if it is
    /// still in step with Redis; after an error, the queries not answered yet and the error (the
    /// connection is dropped: its replies can no longer be matched to queries).
    fn exchange(mut self, round: Vec<Query>) -> Result<Connection, (Vec<Query>, io::Error)> {
        let written = if round.len() == 1 {
            self.stream.write_all(&round[0].commands)
        } else {
            let all: Vec<u8> = round.iter().flat_map(|q| q.commands.iter().copied()).collect();
            self.stream.write_all(&all)
        };
        if let Err(err) = written.and_then(|()| self.stream.flush()) {
            return Err((round, err));
        }
        let mut queries = round.into_iter();
        while let Some(query) = queries.next() {
            self.received.reserve(query.reply_bytes);
            let mut frames = Vec::with_capacity(query.replies);
            for _ in 0..query.replies {
                match self.next_reply() {
                    Ok(frame) => frames.push(frame),
                    Err(err) => return Err((std::iter::once(query).chain(queries).collect(), err)),
                }
            }
            (query.done)(Ok(frames));
        }
        Ok(self)
    }

    /// The next complete reply, reading from the socket as needed.
    fn next_reply(&mut self) -> io::Result<Bytes> {
        loop {
            match self.scanner.advance(&self.received) {
                Ok(Some(len)) => return Ok(self.received.split_to(len).freeze()),
                Ok(None) => {}
                Err(err) => return Err(io::Error::new(io::ErrorKind::InvalidData, err.to_string())),
            }
            let filled = self.received.len();
            self.received.reserve(READ_CHUNK);
            self.received.resize(filled + READ_CHUNK, 0);
            let read = self.stream.read(&mut self.received[filled..]);
            self.received.truncate(filled + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "Redis closed the read connection")),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }
}
