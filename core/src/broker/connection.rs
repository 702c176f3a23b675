//! Framing and backpressure: a connection's bytes become request frames, at most
//! [`MAX_CONCURRENT_REQUESTS`] (or `max_bytes_in_progress`) of its requests are in progress, and
//! large frames still arriving share one memory budget across connections; the runtime is told
//! to pause and resume reading accordingly.

use super::{Broker, ConnId, Output, TaskId, MAX_CONCURRENT_REQUESTS, UNRESERVED_FRAME_BYTES};
use crate::frame::{FrameDecoder, FrameError, TLS_HANDSHAKE_FAILURE_ALERT};
use crate::handlers::Session;
use crate::security::sasl::SaslState;
use crate::Time;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;

pub(super) struct Connection {
    pub(super) peer: String,
    /// The name of the listener it came through.
    pub(super) listener: &'static str,
    /// Who is on the other end; every request of the connection runs as it.
    pub(super) session: Arc<Session>,
    pub(super) sasl: SaslState,
    pub(super) frames: FrameDecoder,
    /// Responses in request order; `None` until the request's task has finished.
    pub(super) pending: VecDeque<(TaskId, Option<Bytes>)>,
    /// Requests being worked on (including acks=0 produces, which hold no response slot).
    pub(super) active: usize,
    /// What they hold (see `Task::held_bytes`).
    pub(super) active_bytes: usize,
    /// Whether the runtime was told to stop reading.
    pub(super) paused: bool,
    /// Whether it has as many requests in progress as it may.
    pub(super) busy: bool,
    /// Memory for the large frame under way (see [`UNRESERVED_FRAME_BYTES`]).
    pub(super) frame_memory: FrameMemory,
}

/// A connection's share of `max_incoming_frame_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FrameMemory {
    /// No large frame under way (small frames need no reservation).
    None,
    /// Queued for a reservation; the connection is not read meanwhile.
    Waiting,
    /// This many bytes are reserved for the frame under way.
    Reserved(usize),
}

impl Broker {
    /// Starts the connection's buffered requests while fewer than [`MAX_CONCURRENT_REQUESTS`]
    /// and `max_bytes_in_progress` are in progress, reserves memory for a large frame under way,
    /// and tells the runtime to pause or resume reading accordingly.
    pub(super) fn take_frames(&mut self, conn: ConnId, now: Time) {
        let max_bytes = self.config.max_bytes_in_progress;
        loop {
            let Some(connection) = self.conns.get_mut(&conn) else { return };
            connection.busy = connection.active >= MAX_CONCURRENT_REQUESTS || connection.active_bytes >= max_bytes;
            if connection.busy {
                break;
            }
            match connection.frames.next_frame() {
                Ok(Some(frame)) => {
                    self.release_frame_memory(conn);
                    self.handle_frame(conn, frame, now);
                }
                Ok(None) => break,
                Err(err @ (FrameError::TlsHandshake | FrameError::Http)) => {
                    let peer = connection.peer.clone();
                    if err == FrameError::TlsHandshake {
                        self.outputs.push_back(Output::Transmit { conn, bytes: Bytes::from_static(&TLS_HANDSHAKE_FAILURE_ALERT) });
                    }
                    self.warn_foreign_protocol(&peer, &err.to_string(), now);
                    self.close_quietly(conn, err.to_string());
                    return;
                }
                Err(err) => {
                    self.close(conn, err.to_string());
                    return;
                }
            }
        }
        self.reserve_frame_memory(conn);
        self.update_reading(conn);
    }

    /// Tells the runtime to stop reading a connection that is busy or waits for frame memory,
    /// and to read it again once neither holds.
    pub(super) fn update_reading(&mut self, conn: ConnId) {
        let Some(connection) = self.conns.get_mut(&conn) else { return };
        let pause = connection.busy || connection.frame_memory == FrameMemory::Waiting;
        if pause != connection.paused {
            connection.paused = pause;
            self.outputs.push_back(if pause { Output::PauseReading { conn } } else { Output::ResumeReading { conn } });
        }
    }

    /// Reserves the announced size of a large frame under way on the connection from
    /// `max_incoming_frame_bytes`, or queues the connection until others release enough: the
    /// memory that frames in the making hold stays bounded however many connections announce
    /// large frames. Returns whether the connection may read on.
    pub(super) fn reserve_frame_memory(&mut self, conn: ConnId) -> bool {
        let budget = self.config.max_incoming_frame_bytes.max(self.config.max_request_size + 4);
        let Some(connection) = self.conns.get_mut(&conn) else { return false };
        let size = match connection.frames.incomplete_frame() {
            // An oversized frame is refused by the decoder, not queued for memory it may not have.
            Some(size) if size > UNRESERVED_FRAME_BYTES && size <= self.config.max_request_size + 4 => size,
            _ => return true,
        };
        if let FrameMemory::Reserved(_) = connection.frame_memory {
            return true;
        }
        if self.frame_memory + size <= budget {
            self.frame_memory += size;
            connection.frame_memory = FrameMemory::Reserved(size);
            return true;
        }
        if connection.frame_memory == FrameMemory::None {
            connection.frame_memory = FrameMemory::Waiting;
            self.frame_memory_waiters.push_back(conn);
        }
        false
    }

    /// Returns a connection's frame reservation once its frame is complete.
    pub(super) fn release_frame_memory(&mut self, conn: ConnId) {
        let Some(connection) = self.conns.get_mut(&conn) else { return };
        if let FrameMemory::Reserved(size) = std::mem::replace(&mut connection.frame_memory, FrameMemory::None) {
            self.frame_memory -= size;
            self.grant_frame_memory();
        }
    }

    /// Gives waiting connections their reservations, oldest first, while the budget allows.
    pub(super) fn grant_frame_memory(&mut self) {
        while let Some(&conn) = self.frame_memory_waiters.front() {
            if !self.reserve_frame_memory(conn) {
                break;
            }
            self.frame_memory_waiters.pop_front();
            self.update_reading(conn);
        }
    }

    /// Forgets a finished request and, if its connection was paused, starts the next ones.
    pub(super) fn finish_task(&mut self, conn: ConnId, held_bytes: usize, now: Time) {
        let Some(connection) = self.conns.get_mut(&conn) else { return };
        connection.active = connection.active.saturating_sub(1);
        connection.active_bytes = connection.active_bytes.saturating_sub(held_bytes);
        if connection.paused {
            self.take_frames(conn, now);
        }
    }
}
