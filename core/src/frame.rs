//! Splits a connection's byte stream into Kafka request frames (a big-endian i32 size, then that
//! many bytes), refusing oversized or negative sizes before buffering them.

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The size prefix is negative or larger than the configured maximum.
    BadSize { size: i64, max: usize },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadSize { size, max } => {
                write!(f, "request frame of {size} bytes is outside the allowed 0..={max}")
            }
        }
    }
}

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
            return Err(FrameError::BadSize { size: i64::from(size), max: self.max_frame });
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
