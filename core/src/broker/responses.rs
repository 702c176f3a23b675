//! Responses leave a connection in request order, whatever order their requests finish in.

use super::{Broker, ConnId, Output, TaskId};
use crate::handlers::{api_name, RequestMeta};
use crate::Time;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

impl Broker {
    /// Encodes a finished request's response into its slot, then releases every response at the
    /// head of the connection's queue that is ready, preserving request order.
    pub(super) fn complete(&mut self, conn: ConnId, task_id: TaskId, meta: &RequestMeta, response: Option<ResponseKind>, elapsed_us: u64) {
        self.stats.api(api_name(meta.api_key)).latency.record(elapsed_us);
        let encoded = match response.map(|r| encode_response(meta, &r)) {
            Some(Ok(bytes)) => Some(bytes),
            Some(Err(err)) => {
                let client = meta.client_id.as_deref().unwrap_or("-");
                self.close(conn, format!("cannot encode {:?} v{} response for client {client}: {err}", meta.api_key, meta.version));
                return;
            }
            None => None,
        };
        let Some(connection) = self.conns.get_mut(&conn) else { return };
        if let Some(slot) = connection.pending.iter_mut().find(|(id, _)| *id == task_id) {
            slot.1 = Some(encoded.unwrap_or_default());
        }
        let mut ready = BytesMut::new();
        while connection.pending.front().is_some_and(|(_, r)| r.is_some()) {
            if let Some((_, Some(bytes))) = connection.pending.pop_front() {
                ready.extend_from_slice(&bytes);
            }
        }
        if !ready.is_empty() {
            self.outputs.push_back(Output::Transmit { conn, bytes: ready.freeze() });
        }
    }

    pub(super) fn close(&mut self, conn: ConnId, reason: String) {
        if let Some(connection) = self.conns.get(&conn) {
            log::warn!("closing connection {conn} from {}: {reason}", connection.peer);
        }
        self.close_quietly(conn, reason);
    }

    /// Closes a connection whose reason the caller has logged (or rate-limited) itself.
    pub(super) fn close_quietly(&mut self, conn: ConnId, reason: String) {
        if self.conns.contains_key(&conn) {
            self.outputs.push_back(Output::Close { conn, reason });
        }
        self.handle_disconnect(conn, Time { mono_us: 0, wall_ms: 0 });
    }
}

/// Frames a response: size, header (v0 for ApiVersions at every version, as clients expect,
/// since they cannot know the flexible header before versions are negotiated), body.
pub(super) fn encode_response(meta: &RequestMeta, response: &ResponseKind) -> anyhow::Result<Bytes> {
    let header_version = match meta.api_key {
        ApiKey::ApiVersions => 0,
        key => key.response_header_version(meta.version),
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default().with_correlation_id(meta.correlation_id).encode(&mut buf, header_version)?;
    response.encode(&mut buf, meta.version)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}
