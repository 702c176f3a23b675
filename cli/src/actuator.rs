//! The management HTTP server: `/actuator/health`, `/actuator/health/liveness`,
//! `/actuator/health/readiness` and `/actuator/prometheus`.
//!
//! `respond` maps a request path to a response without any I/O; `serve` answers on a listener
//! of either runtime. With a [`Login`], every endpoint but the health probes (which Kubernetes
//! and load balancers call without credentials) asks for HTTP basic authentication.

use korvet_runtime_common::tls::TlsAcceptor;
use korvet_runtime_common::{TlsConnection, TLS_HANDSHAKE_TIMEOUT};
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use korvet_runtime_common::Runtime;

/// What the health endpoints report.
#[derive(Default)]
pub struct Health {
    /// Set once the Kafka listener is up; cleared when shutdown starts.
    pub serving: AtomicBool,
    /// Whether the last storage check succeeded.
    pub storage_ok: AtomicBool,
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// The credentials the management endpoints ask for.
pub struct Login {
    /// The `Authorization` header value that carries them.
    expected: Vec<u8>,
    /// When a failed attempt was last logged, and how many were not logged since.
    failures: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Login {
    pub fn new(user: &str, password: &str) -> Self {
        let expected = format!("Basic {}", base64(format!("{user}:{password}").as_bytes())).into_bytes();
        Login { expected, failures: Default::default() }
    }

    /// Logs a failed attempt with the peer's address, at most one line per 10 s: a scraper
    /// with stale credentials retries every few seconds.
    fn log_failure(&self, peer: &str, offered: bool) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, held_back) = &mut *failures;
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(10)) {
            *held_back += 1;
            return;
        }
        *last = Some(std::time::Instant::now());
        let what = if offered { "wrong credentials" } else { "no credentials" };
        let more = std::mem::take(held_back);
        let more = if more > 0 { format!(" ({more} more failures in the last 10 s not shown)") } else { String::new() };
        log::warn!("management request from {peer} refused: {what}{more}");
    }

    /// Whether an `Authorization` header value carries the credentials, compared in time that
    /// does not depend on where they differ.
    fn accepts(&self, header: Option<&[u8]>) -> bool {
        let Some(given) = header else { return false };
        let differences = given.iter().zip(&self.expected).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        given.len() == self.expected.len() && differences == 0
    }
}

/// Standard base64 with padding (RFC 4648), as HTTP basic authentication writes credentials.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Paths served without credentials: the probes.
fn is_health_probe(path: &str) -> bool {
    matches!(path, "/actuator/health" | "/actuator/health/liveness" | "/actuator/health/readiness")
}

fn json(status: u16, body: String) -> Response {
    Response { status, content_type: "application/json", body }
}

pub fn respond(path: &str, health: &Health, metrics: &Metrics) -> Response {
    let ready = health.serving.load(Ordering::Relaxed) && health.storage_ok.load(Ordering::Relaxed);
    let status = |up: bool| if up { (200, "UP") } else { (503, "DOWN") };
    match path.split('?').next().unwrap_or("") {
        "/actuator/health/liveness" => json(200, r#"{"status":"UP"}"#.into()),
        "/actuator/health/readiness" => {
            let (code, word) = status(ready);
            json(code, format!(r#"{{"status":"{word}"}}"#))
        }
        "/actuator/health" => {
            let (code, word) = status(ready);
            let storage = if health.storage_ok.load(Ordering::Relaxed) { "UP" } else { "DOWN" };
            json(code, format!(r#"{{"status":"{word}","components":{{"storage":{{"status":"{storage}"}}}}}}"#))
        }
        "/actuator/prometheus" => Response { status: 200, content_type: "text/plain; version=0.0.4", body: metrics.text() },
        _ => json(404, r#"{"error":"not found"}"#.into()),
    }
}

/// A management connection, plain or TLS.
enum Http<R: Runtime> {
    Plain(R::Reader, R::Writer),
    Tls(TlsConnection<R>),
}

impl<R: Runtime> Http<R> {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Http::Plain(reader, _) => R::read(reader, buf).await,
            Http::Tls(tls) => tls.read(buf).await,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Http::Plain(_, writer) => R::write_all(writer, bytes).await,
            Http::Tls(tls) => tls.write_all(bytes).await,
        }
    }

    async fn close(self) {
        match self {
            Http::Plain(_, writer) => R::close(writer).await,
            Http::Tls(tls) => tls.close().await,
        }
    }
}

/// Serves the endpoints until the process exits; over HTTPS when given `tls`.
pub async fn serve<R: Runtime>(rt: R, listener: R::Listener, health: Arc<Health>, metrics: Arc<Metrics>, login: Option<Login>, tls: Option<Arc<TlsAcceptor>>) {
    let login = Arc::new(login);
    loop {
        let Ok((reader, writer, peer)) = rt.accept(&listener).await else {
            rt.sleep(Duration::from_millis(100)).await;
            continue;
        };
        let health = health.clone();
        let metrics = metrics.clone();
        let login = login.clone();
        let tls = tls.clone();
        rt.spawn(async move {
            let mut http: Http<R> = match tls {
                None => Http::Plain(reader, writer),
                Some(tls) => match rt.timeout(TLS_HANDSHAKE_TIMEOUT, TlsConnection::accept(&tls, reader, writer)).await {
                    Some(Ok(connection)) => Http::Tls(connection),
                    Some(Err(err)) => {
                        log::debug!("management connection from {peer}: TLS failed: {err}");
                        return;
                    }
                    None => return,
                },
            };
            let mut buf = vec![0u8; 8192];
            let mut len = 0;
            let read = rt.timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    let n = http.read(&mut buf[len..]).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        return Some(());
                    }
                }
                None
            });
            if !matches!(read.await, Some(Some(()))) {
                return;
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            let parsed = request.parse(&buf[..len]);
            let path = request.path.unwrap_or("/").split('?').next().unwrap_or("");
            let authorization = request.headers.iter().find(|h| h.name.eq_ignore_ascii_case("authorization")).map(|h| h.value);
            let denied = parsed.is_ok() && !is_health_probe(path) && login.as_ref().as_ref().is_some_and(|login| !login.accepts(authorization));
            if let (true, Some(login)) = (denied, login.as_ref()) {
                metrics.http_basic_failed();
                login.log_failure(&peer.to_string(), authorization.is_some());
            }
            let response = match parsed {
                _ if denied => json(401, r#"{"error":"unauthorized"}"#.into()),
                Ok(_) if request.method == Some("GET") => respond(request.path.unwrap_or("/"), &health, &metrics),
                Ok(_) => json(405, r#"{"error":"method not allowed"}"#.into()),
                Err(_) => json(400, r#"{"error":"bad request"}"#.into()),
            };
            let reason = match response.status {
                200 => "OK",
                401 => "Unauthorized",
                404 => "Not Found",
                405 => "Method Not Allowed",
                503 => "Service Unavailable",
                _ => "Bad Request",
            };
            let challenge = if response.status == 401 { "WWW-Authenticate: Basic realm=\"korvet\", charset=\"UTF-8\"\r\n" } else { "" };
            let head = format!(
                "HTTP/1.1 {} {reason}\r\n{challenge}Content-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                response.status,
                response.content_type,
                response.body.len()
            );
            let _ = http.write_all(head.as_bytes()).await;
            let _ = http.write_all(response.body.as_bytes()).await;
            http.close().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn only_the_right_credentials_are_accepted() {
        let login = Login::new("ops", "s3cret");
        assert!(login.accepts(Some(b"Basic b3BzOnMzY3JldA==")));
        assert!(!login.accepts(Some(b"Basic b3BzOnMzY3JldB==")));
        assert!(!login.accepts(Some(b"Basic b3BzOnMzY3JldA")));
        assert!(!login.accepts(None));
    }
}
