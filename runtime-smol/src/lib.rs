//! korvet-runtime-smol: the [`Runtime`] of korvet on smol, the successor of async-std (smol's
//! executor, networking, timers; async-signal for signals). The accept, read and write loops and
//! the broker task are `korvet-runtime-common`'s, the same as under tokio.

use futures_util::{Stream, StreamExt};
use korvet_runtime_common::Runtime;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

/// smol, as the runtime korvet runs on (its global executor).
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

impl Runtime for Smol {
    type Listener = TcpListener;
    /// Both directions are clones of one stream.
    type Reader = TcpStream;
    type Writer = TcpStream;

    fn spawn(self, future: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(future).detach();
    }

    fn unblock<T: Send + 'static>(self, work: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = Option<T>> + Send + 'static {
        // smol's pool hands a panic on to whoever awaits the task: caught here instead.
        smol::unblock(move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).ok())
    }

    fn sleep_until(self, at: Instant) -> impl Future<Output = ()> + Send + 'static {
        async move {
            smol::Timer::at(at).await;
        }
    }

    async fn bind(self, address: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(address).await
    }

    async fn accept(self, listener: &TcpListener) -> io::Result<(TcpStream, TcpStream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((stream.clone(), stream, peer))
    }

    async fn read(reader: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        reader.read(buf).await
    }

    async fn write_all(writer: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
        writer.write_all(bytes).await
    }

    async fn close(writer: TcpStream) {
        let _ = writer.shutdown(std::net::Shutdown::Both);
    }

    fn signals(self) -> Pin<Box<dyn Stream<Item = ()> + Send>> {
        match async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int]) {
            Ok(signals) => Box::pin(signals.map(|_| ())),
            Err(err) => {
                log::error!("cannot listen for signals: {err}");
                Box::pin(futures_util::stream::pending())
            }
        }
    }
}
