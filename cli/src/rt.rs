//! The async runtime the broker runs on, chosen at start (`korvet.server.runtime`): tokio by
//! default, or smol. Everything the binary does besides the broker task (management server,
//! registry heartbeats, Redis health checks, signals) goes through this, so that a smol broker
//! runs entirely on smol.

use futures_util::future::{select, Either};
use futures_util::io::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rt {
    Tokio,
    Smol,
}

/// A listening socket of either runtime.
pub enum Listener {
    Tokio(tokio::net::TcpListener),
    Smol(smol::net::TcpListener),
}

/// An accepted connection, as futures-io streams (tokio's through its compatibility layer).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Listener {
    pub async fn accept(&self) -> std::io::Result<Box<dyn Stream>> {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        match self {
            Listener::Tokio(listener) => Ok(Box::new(listener.accept().await?.0.compat())),
            Listener::Smol(listener) => Ok(Box::new(listener.accept().await?.0)),
        }
    }
}

impl Rt {
    pub fn spawn(self, future: impl Future<Output = ()> + Send + 'static) {
        match self {
            Rt::Tokio => drop(tokio::spawn(future)),
            Rt::Smol => smol::spawn(future).detach(),
        }
    }

    pub fn sleep(self, duration: Duration) -> BoxFuture<()> {
        match self {
            Rt::Tokio => Box::pin(tokio::time::sleep(duration)),
            Rt::Smol => Box::pin(async move {
                smol::Timer::after(duration).await;
            }),
        }
    }

    /// `future`'s output, or `None` if it takes longer than `limit`.
    pub async fn timeout<T>(self, limit: Duration, future: impl Future<Output = T>) -> Option<T> {
        let future = std::pin::pin!(future);
        match select(future, self.sleep(limit)).await {
            Either::Left((output, _)) => Some(output),
            Either::Right(_) => None,
        }
    }

    pub async fn bind(self, address: SocketAddr) -> std::io::Result<Listener> {
        match self {
            Rt::Tokio => Ok(Listener::Tokio(tokio::net::TcpListener::bind(address).await?)),
            Rt::Smol => Ok(Listener::Smol(smol::net::TcpListener::bind(address).await?)),
        }
    }

    /// Resolves `host:port` (a blocking lookup, done once at start).
    pub fn resolve(self, address: &str) -> Option<SocketAddr> {
        std::net::ToSocketAddrs::to_socket_addrs(address).ok().and_then(|mut a| a.next())
    }

    /// SIGTERM and SIGINT from now on, one item each. Listening starts at once, so that no
    /// signal is lost between two waits.
    pub fn signals(self) -> Pin<Box<dyn futures_util::Stream<Item = ()> + Send>> {
        match self {
            Rt::Tokio => tokio_signals(),
            Rt::Smol => smol_signals(),
        }
    }
}

#[cfg(unix)]
fn tokio_signals() -> Pin<Box<dyn futures_util::Stream<Item = ()> + Send>> {
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
fn tokio_signals() -> Pin<Box<dyn futures_util::Stream<Item = ()> + Send>> {
    Box::pin(futures_util::stream::unfold((), |()| async {
        let _ = tokio::signal::ctrl_c().await;
        Some(((), ()))
    }))
}

fn smol_signals() -> Pin<Box<dyn futures_util::Stream<Item = ()> + Send>> {
    use futures_util::StreamExt;
    match async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int]) {
        Ok(signals) => Box::pin(signals.map(|_| ())),
        Err(err) => {
            log::error!("cannot listen for signals: {err}");
            Box::pin(futures_util::stream::pending())
        }
    }
}
