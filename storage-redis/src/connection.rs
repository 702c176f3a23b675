//! The main Redis connection (everything but partition reads and pub/sub), replaced when it goes
//! silent.
//!
//! The `redis` crate's `ConnectionManager` reconnects when its connection closes or errors, but
//! not when it stops answering without closing (a dead peer, a dropped route, a hung proxy):
//! every command then times out for as long as the silence lasts. Here a command that times
//! out also replaces the connection with a fresh one (if one can be had; otherwise the next
//! timeout tries again), so the broker recovers within one response timeout plus one connect.
//! TCP keepalive and `TCP_USER_TIMEOUT` (see [`tcp_settings`]) make the kernel close
//! connections to a peer that is gone altogether.

use futures_util::future::{select, Either};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Keepalive probes after 10 s of quiet, every 5 s, 3 of them: a vanished peer is noticed in
/// about 25 s even while nothing is sent; unacknowledged writes give up after 30 s.
pub fn tcp_settings() -> redis::io::tcp::TcpSettings {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    let settings = redis::io::tcp::TcpSettings::default().set_nodelay(true).set_keepalive(keepalive);
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(Duration::from_secs(30));
    settings
}

/// A cheap-to-clone handle on the current main connection.
#[derive(Clone)]
pub struct MainConnection {
    shared: Arc<Shared>,
}

struct Shared {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// How long one attempt to open a replacement may take: a peer that accepts connections and
    /// never answers (a blackholed route) must not hold the replacement up for good.
    attempt_limit: Duration,
    /// The connection in use and how many times it was replaced.
    current: Mutex<(u64, ConnectionManager)>,
    replacing: AtomicBool,
}

impl MainConnection {
    pub async fn connect(client: redis::Client, config: ConnectionManagerConfig, attempt_limit: Duration) -> RedisResult<Self> {
        let manager = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        let shared = Shared { client, config, attempt_limit, current: Mutex::new((0, manager)), replacing: AtomicBool::new(false) };
        Ok(MainConnection { shared: Arc::new(shared) })
    }

    /// How many times the connection was replaced since start (for tests and logs).
    pub fn replacements(&self) -> u64 {
        self.current().0
    }

    fn current(&self) -> (u64, ConnectionManager) {
        let guard = self.shared.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (guard.0, guard.1.clone())
    }

    /// Replaces connection number `silent` (the one a command just timed out on) unless that
    /// was done already or is under way.
    async fn replace(&self, silent: u64) {
        if self.shared.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        // Cleared however this ends: the caller may drop the command (a health check that
        // gave up), and a replacement left marked as under way would never be tried again.
        let _replacing = Replacing(&self.shared.replacing);
        if self.current().0 == silent {
            let attempt = ConnectionManager::new_with_config(self.shared.client.clone(), self.shared.config.clone());
            match within(self.shared.attempt_limit, attempt).await {
                None => log::warn!("the Redis connection stopped answering and a new one could not be opened within {:?}", self.shared.attempt_limit),
                Some(Ok(fresh)) => {
                    let mut guard = self.shared.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if guard.0 == silent {
                        *guard = (silent + 1, fresh);
                        log::warn!("the Redis connection stopped answering; replaced it with a new one");
                    }
                }
                Some(Err(err)) => log::warn!("the Redis connection stopped answering and a new one cannot be opened yet: {err}"),
            }
        }
    }
}

/// Marks a replacement as under way for as long as it lives.
struct Replacing<'a>(&'a AtomicBool);

impl Drop for Replacing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// `future`'s output, or `None` after `limit`. The timer is a thread of its own: this crate
/// serves tokio and smol alike, and replacements are rare.
async fn within<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    let (expire, expired) = futures_channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        let _ = expire.send(());
    });
    match select(std::pin::pin!(future), expired).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

impl ConnectionLike for MainConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (number, mut conn) = self.current();
            let result = conn.req_packed_command(cmd).await;
            if result.as_ref().is_err_and(|err| err.is_timeout()) {
                self.replace(number).await;
            }
            result
        })
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (number, mut conn) = self.current();
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            if result.as_ref().is_err_and(|err| err.is_timeout()) {
                self.replace(number).await;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.current().1.get_db()
    }
}
