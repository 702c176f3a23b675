//! Splits a connection's byte stream into Kafka request frames (a big-endian i32 size, then that
//! many bytes), refusing oversized or negative sizes before buffering them, and naming the
//! protocol when the bytes are not Kafka's at all (a TLS client on a plaintext listener, an HTTP
//! request).

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The size prefix is negative or larger than the configured maximum.
    BadSize { size: i64, max: usize },
    /// The connection opened with a TLS record (a client configured for SSL or SASL_SSL).
    TlsHandshake,
    /// The connection opened with an HTTP request line.
    Http,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadSize { size, max } => {
                write!(f, "request frame of {size} bytes is outside the allowed 0..={max}")
            }
            FrameError::TlsHandshake => write!(
                f,
                "the client began a TLS handshake, but this listener speaks PLAINTEXT \
                 (set the client's security.protocol to PLAINTEXT: korvet does not serve TLS yet)"
            ),
            FrameError::Http => write!(f, "the client sent an HTTP request to the Kafka port (health and metrics are on the management port)"),
        }
    }
}

/// What an impossible size prefix says about the protocol the client speaks. Every case is far
/// above any frame size a broker accepts, so a Kafka client never meets them.
fn foreign_protocol(prefix: &[u8]) -> Option<FrameError> {
    match prefix {
        // A TLS record: handshake content type, protocol major version 3 (SSL 3.0 to TLS 1.3).
        [0x16, 0x03, minor, _] if *minor <= 0x04 => Some(FrameError::TlsHandshake),
        [a, b, c, d] if [b"GET ", b"POST", b"PUT ", b"HEAD"].contains(&&[*a, *b, *c, *d]) => Some(FrameError::Http),
        _ => None,
    }
}

/// A fatal TLS alert record (handshake_failure), sent back to a TLS client on a plaintext
/// listener so that its TLS library fails the handshake at once, instead of waiting out a
/// timeout on a connection that says nothing.
pub const TLS_HANDSHAKE_FAILURE_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

/// The receive buffer capacity a connection keeps once it has nothing buffered.
const RETAINED_CAPACITY: usize = 64 * 1024;

pub struct FrameDecoder {
    buffer: BytesMut,
    max_frame: usize,
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder { buffer: BytesMut::new(), max_frame }
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame's body, if one has fully arrived.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buffer.len() < 4 {
            return Ok(None);
        }
        let size = (&self.buffer[..4]).get_i32();
        if size < 0 || size as usize > self.max_frame {
            return Err(foreign_protocol(&self.buffer[..4]).unwrap_or(FrameError::BadSize { size: i64::from(size), max: self.max_frame }));
        }
        let size = size as usize;
        if self.buffer.len() < 4 + size {
            // No reservation of the announced size: the buffer grows with the bytes that arrive,
            // so a length prefix alone costs nothing (the broker bounds large frames in the
            // making across connections, see `Broker::reserve_frame_memory`).
            return Ok(None);
        }
        // Copied out rather than split off: a split-off frame would pin the whole receive buffer
        // (grown to hold many frames) for as long as its request runs, and with several
        // requests in progress the broker's memory would grow many times the data in flight.
        let frame = Bytes::copy_from_slice(&self.buffer[4..4 + size]);
        self.buffer.advance(4 + size);
        if self.buffer.is_empty() && self.buffer.capacity() > RETAINED_CAPACITY {
            // A connection that once sent a large request and then went quiet would otherwise
            // hold a buffer of that size for as long as it stays open.
            self.buffer = BytesMut::new();
        }
        Ok(Some(frame))
    }

    /// Bytes received but not yet part of a complete frame.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The size of the frame under way (prefix included), once its prefix has arrived and while
    /// its body has not fully.
    pub fn incomplete_frame(&self) -> Option<usize> {
        let prefix: [u8; 4] = self.buffer.get(..4)?.try_into().ok()?;
        let size = usize::try_from(i32::from_be_bytes(prefix)).ok()? + 4;
        (self.buffer.len() < size).then_some(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_error(bytes: &[u8]) -> FrameError {
        let mut frames = FrameDecoder::new(100 << 20);
        frames.extend(bytes);
        frames.next_frame().expect_err("refused")
    }

    #[test]
    fn a_tls_client_hello_and_an_http_request_are_named() {
        // The start of a TLS 1.2/1.3 ClientHello record, as OpenSSL and rustls send it.
        assert_eq!(first_error(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), FrameError::TlsHandshake);
        assert_eq!(first_error(b"GET /metrics HTTP/1.1\r\n"), FrameError::Http);
        assert_eq!(first_error(&[0x7f, 0, 0, 0]), FrameError::BadSize { size: 0x7f00_0000, max: 100 << 20 });
    }

    #[test]
    fn kafka_frames_are_not_mistaken_for_another_protocol() {
        let mut frames = FrameDecoder::new(100 << 20);
        frames.extend(&[0, 0, 0, 2, 0x16, 0x03]);
        assert_eq!(frames.next_frame(), Ok(Some(Bytes::from_static(&[0x16, 0x03]))));
    }

    #[test]
    fn a_large_frame_does_not_leave_a_large_buffer_behind() {
        let mut frames = FrameDecoder::new(100 << 20);
        let mut frame = (1_000_000i32).to_be_bytes().to_vec();
        frame.resize(4 + 1_000_000, 7);
        frames.extend(&frame);
        assert_eq!(frames.next_frame().unwrap().map(|f| f.len()), Some(1_000_000));
        assert!(frames.buffer.capacity() <= RETAINED_CAPACITY, "{} bytes kept", frames.buffer.capacity());
    }
}
