//! The management HTTP server: `/actuator/health`, `/actuator/health/liveness`,
//! `/actuator/health/readiness` and `/actuator/prometheus`.
//!
//! `respond` maps a request path to a response without any I/O; `serve` answers on a listener
//! of either runtime.

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

/// Serves the endpoints until the process exits.
pub async fn serve<R: Runtime>(rt: R, listener: R::Listener, health: Arc<Health>, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut reader, mut writer, _)) = rt.accept(&listener).await else {
            rt.sleep(Duration::from_millis(100)).await;
            continue;
        };
        let health = health.clone();
        let metrics = metrics.clone();
        rt.spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut len = 0;
            let read = rt.timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    let n = R::read(&mut reader, &mut buf[len..]).await.ok()?;
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
            let response = match request.parse(&buf[..len]) {
                Ok(_) if request.method == Some("GET") => respond(request.path.unwrap_or("/"), &health, &metrics),
                Ok(_) => json(405, r#"{"error":"method not allowed"}"#.into()),
                Err(_) => json(400, r#"{"error":"bad request"}"#.into()),
            };
            let reason = match response.status {
                200 => "OK",
                404 => "Not Found",
                405 => "Method Not Allowed",
                503 => "Service Unavailable",
                _ => "Bad Request",
            };
            let head = format!(
                "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                response.status,
                response.content_type,
                response.body.len()
            );
            let _ = R::write_all(&mut writer, head.as_bytes()).await;
            let _ = R::write_all(&mut writer, response.body.as_bytes()).await;
            R::close(writer).await;
        });
    }
}
