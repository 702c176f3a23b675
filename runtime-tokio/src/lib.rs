//! korvet-runtime-tokio: the [`Runtime`] of korvet on tokio (sockets, timers, spawning,
//! signals). The accept, read and write loops and the broker task are `korvet-runtime-common`'s.

use futures_util::Stream;
use korvet_runtime_common::Runtime;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;

/// tokio, as the runtime korvet runs on (the current tokio runtime when called).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    type Listener = TcpListener;
    type Reader = OwnedReadHalf;
    type Writer = OwnedWriteHalf;

    fn spawn(self, future: impl Future<Output = ()> + Send + 'static) {
        drop(tokio::spawn(future));
    }

    fn unblock<T: Send + 'static>(self, work: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = Option<T>> + Send + 'static {
        let handle = tokio::task::spawn_blocking(work);
        async move { handle.await.ok() }
    }

    fn sleep_until(self, at: Instant) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at))
    }

    async fn bind(self, address: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(address).await
    }

    async fn accept(self, listener: &TcpListener) -> io::Result<(OwnedReadHalf, OwnedWriteHalf, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        Ok((reader, writer, peer))
    }

    async fn read(reader: &mut OwnedReadHalf, buf: &mut [u8]) -> io::Result<usize> {
        reader.read(buf).await
    }

    async fn write_all(writer: &mut OwnedWriteHalf, bytes: &[u8]) -> io::Result<()> {
        writer.write_all(bytes).await
    }

    async fn close(mut writer: OwnedWriteHalf) {
        let _ = writer.shutdown().await;
    }

    fn signals(self) -> Pin<Box<dyn Stream<Item = ()> + Send>> {
        signals()
    }
}

#[cfg(unix)]
fn signals() -> Pin<Box<dyn Stream<Item = ()> + Send>> {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => Box::pin(futures_util::stream::unfold((term, int), |(mut term, mut int)| async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            Some(((), (term, int)))
        })),
        _ => {
            log::error!("cannot listen for signals");
            Box::pin(futures_util::stream::pending())
        }
    }
}

#[cfg(not(unix))]
fn signals() -> Pin<Box<dyn Stream<Item = ()> + Send>> {
    Box::pin(futures_util::stream::unfold((), |()| async {
        let _ = tokio::signal::ctrl_c().await;
        Some(((), ()))
    }))
}
