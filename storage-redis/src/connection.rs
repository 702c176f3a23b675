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
    /// The connection in use and how many times it was replaced.
    current: Mutex<(u64, ConnectionManager)>,
    replacing: AtomicBool,
}

impl MainConnection {
    pub async fn connect(client: redis::Client, config: ConnectionManagerConfig) -> RedisResult<Self> {
        let manager = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        let shared = Shared { client, config, current: Mutex::new((0, manager)), replacing: AtomicBool::new(false) };
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
        if self.current().0 == silent {
            match ConnectionManager::new_with_config(self.shared.client.clone(), self.shared.config.clone()).await {
                Ok(fresh) => {
                    let mut guard = self.shared.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if guard.0 == silent {
                        *guard = (silent + 1, fresh);
                        log::warn!("the Redis connection stopped answering; replaced it with a new one");
                    }
                }
                Err(err) => log::warn!("the Redis connection stopped answering and a new one cannot be opened yet: {err}"),
            }
        }
        self.shared.replacing.store(false, Ordering::Release);
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
