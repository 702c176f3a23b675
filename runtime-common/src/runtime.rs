//! What korvet needs of an async runtime, as one small trait (after quinn's `Runtime`): spawning,
//! timers, TCP sockets and termination signals. `korvet-runtime-tokio` and `korvet-runtime-smol`
//! implement it; the accept, read and write loops ([`crate::serve`]) and the rest of the binary
//! are written once against it.

use futures_util::future::{select, Either};
use futures_util::Stream;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

pub trait Runtime: Copy + Send + Sync + 'static {
    /// A listening TCP socket.
    type Listener: Send + Sync + 'static;
    /// The two directions of an accepted connection.
    type Reader: Send + 'static;
    type Writer: Send + 'static;

    /// Runs `future` in the background until it ends.
    fn spawn(self, future: impl Future<Output = ()> + Send + 'static);

    /// Runs `work` (blocking or CPU-heavy) on a thread of its own pool, off the tasks that serve
    /// connections; `None` if the work panicked.
    fn unblock<T: Send + 'static>(self, work: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = Option<T>> + Send + 'static;

    /// Resolves at `at`.
    fn sleep_until(self, at: Instant) -> impl Future<Output = ()> + Send + 'static;

    fn bind(self, address: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// The next connection, with Nagle's algorithm off (responses are written whole).
    fn accept(self, listener: &Self::Listener) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer, SocketAddr)>> + Send;

    fn read(reader: &mut Self::Reader, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;

    fn write_all(writer: &mut Self::Writer, bytes: &[u8]) -> impl Future<Output = io::Result<()>> + Send;

    /// Shuts the connection down after the last write.
    fn close(writer: Self::Writer) -> impl Future<Output = ()> + Send;

    /// SIGTERM and SIGINT from now on, one item each. Listening starts at once, so that no
    /// signal is lost between two waits.
    fn signals(self) -> Pin<Box<dyn Stream<Item = ()> + Send>>;

    fn sleep(self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        self.sleep_until(Instant::now() + duration)
    }

    /// `future`'s output, or `None` if it takes longer than `limit`.
    fn timeout<T, F>(self, limit: Duration, future: F) -> impl Future<Output = Option<T>> + Send
    where
        F: Future<Output = T> + Send,
    {
        let sleep = self.sleep(limit);
        async move {
            match select(std::pin::pin!(future), std::pin::pin!(sleep)).await {
                Either::Left((output, _)) => Some(output),
                Either::Right(_) => None,
            }
        }
    }

    /// Resolves `host:port` (a blocking lookup, done once at start).
    fn resolve(self, address: &str) -> Option<SocketAddr> {
        std::net::ToSocketAddrs::to_socket_addrs(address).ok().and_then(|mut a| a.next())
    }
}
