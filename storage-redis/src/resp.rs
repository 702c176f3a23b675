//! Just enough of RESP2 for the read connection: writing commands, finding where a reply ends
//! in a stream of bytes, and walking a complete reply without copying its strings.
//!
//! The redis crate's general parser builds a `Value` (one allocation per string and per array)
//! for every field of every stream entry; on the fetch path that cost several times what Redis
//! itself spends on XRANGE. Here a reply stays one buffer, and its strings are `Bytes` slices of
//! it that go as they are into the records handed to the core.

use bytes::Bytes;
use redis::{ErrorKind, RedisError};
use std::io::Write;

/// Appends one command in RESP2 (an array of bulk strings) to `out`.
pub fn write_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let _ = write!(out, "${}\r\n", arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

pub fn protocol_error(what: impl Into<String>) -> RedisError {
    RedisError::from((ErrorKind::Parse, "unreadable reply from Redis", what.into()))
}

/// The position just past the `\r\n` that ends the line starting at `start`, if it is complete.
fn line_end(buf: &[u8], start: usize) -> Option<usize> {
    let newline = memchr::memchr(b'\n', buf.get(start..)?)?;
    Some(start + newline + 1)
}

/// The integer of a header line `<type><digits>\r\n` that ends at `end`.
fn header_number(buf: &[u8], start: usize, end: usize) -> Result<i64, RedisError> {
    let digits = buf.get(start + 1..end.saturating_sub(2)).unwrap_or_default();
    decimal(digits).ok_or_else(|| protocol_error(format!("bad length line {:?}", String::from_utf8_lossy(digits))))
}

/// A decimal integer, optionally negative; `None` if `text` is anything else or overflows.
/// (Hot: every header line and every entry ID of a read goes through here.)
pub fn decimal(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(digit - b'0'))?;
    }
    Some(if negative { -value } else { value })
}

/// Finds the end of one reply in bytes that arrive in pieces. It remembers how far it got, so
/// a reply of many megabytes is scanned once, not once per arriving piece.
#[derive(Default)]
pub struct Scanner {
    /// Where the next element header starts.
    pos: usize,
    /// Elements still missing from each array opened so far, innermost last.
    open: Vec<i64>,
}

/// Deeper nesting than any reply korvet asks for (EXEC of XRANGE is four levels).
const MAX_DEPTH: usize = 16;

impl Scanner {
    /// Scans `buf` (which always starts with the reply) as far as it goes. `Some(len)` once the
    /// reply is complete and `len` bytes long; the scanner is then ready for the next reply.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, RedisError> {
        loop {
            let Some(end) = line_end(buf, self.pos) else { return Ok(None) };
            match buf[self.pos] {
                b'+' | b'-' | b':' => self.pos = end,
                b'$' => {
                    let len = header_number(buf, self.pos, end)?;
                    if let Ok(len) = usize::try_from(len) {
                        let after = end.saturating_add(len).saturating_add(2);
                        if after > buf.len() {
                            return Ok(None);
                        }
                        self.pos = after;
                    } else {
                        self.pos = end;
                    }
                }
                b'*' => {
                    let len = header_number(buf, self.pos, end)?;
                    self.pos = end;
                    if len > 0 {
                        if self.open.len() == MAX_DEPTH {
                            return Err(protocol_error("reply nested too deeply"));
                        }
                        self.open.push(len);
                        continue;
                    }
                }
                other => return Err(protocol_error(format!("unexpected reply type byte {other:#04x}"))),
            }
            // One element is complete: it may complete the arrays around it.
            loop {
                match self.open.last_mut() {
                    None => {
                        let len = self.pos;
                        self.pos = 0;
                        return Ok(Some(len));
                    }
                    Some(missing) => {
                        *missing -= 1;
                        if *missing > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// A cursor over one complete reply (as found by [`Scanner`]), read element by element.
pub struct Reply {
    buf: Bytes,
    pos: usize,
}

impl Reply {
    pub fn new(buf: Bytes) -> Self {
        Reply { buf, pos: 0 }
    }

    /// The next element's type byte and header line end, turning an error reply into `Err`.
    fn header(&mut self) -> Result<(u8, usize), RedisError> {
        let end = line_end(&self.buf, self.pos).ok_or_else(|| protocol_error("reply ends early"))?;
        let kind = self.buf[self.pos];
        if kind == b'-' {
            let line = &self.buf[self.pos..end];
            self.pos = end;
            // The redis crate knows how to turn an error line into the right error kind.
            return Err(redis::parse_redis_value(line)
                .and_then(|value| value.extract_error())
                .err()
                .unwrap_or_else(|| protocol_error(String::from_utf8_lossy(line).into_owned())));
        }
        Ok((kind, end))
    }

    /// An array's length; `None` for a null array.
    pub fn array(&mut self) -> Result<Option<usize>, RedisError> {
        let (kind, end) = self.header()?;
        if kind != b'*' {
            return Err(protocol_error(format!("expected an array, got type {kind:#04x}")));
        }
        let len = header_number(&self.buf, self.pos, end)?;
        self.pos = end;
        Ok(usize::try_from(len).ok())
    }

    /// A bulk or simple string as a slice of the reply; `None` for a null bulk string.
    pub fn string(&mut self) -> Result<Option<Bytes>, RedisError> {
        let (kind, end) = self.header()?;
        match kind {
            b'$' => {
                let len = header_number(&self.buf, self.pos, end)?;
                self.pos = end;
                let Ok(len) = usize::try_from(len) else { return Ok(None) };
                if end.saturating_add(len).saturating_add(2) > self.buf.len() {
                    return Err(protocol_error("bulk string runs past the reply"));
                }
                self.pos = end + len + 2;
                Ok(Some(self.buf.slice(end..end + len)))
            }
            b'+' => {
                let text = self.buf.slice(self.pos + 1..end - 2);
                self.pos = end;
                Ok(Some(text))
            }
            other => Err(protocol_error(format!("expected a string, got type {other:#04x}"))),
        }
    }

    /// A string holding a decimal integer; `None` for a null bulk string.
    pub fn decimal(&mut self) -> Result<Option<i64>, RedisError> {
        match self.string()? {
            None => Ok(None),
            Some(text) => decimal(&text)
                .map(Some)
                .ok_or_else(|| protocol_error(format!("not an integer: {:?}", String::from_utf8_lossy(&text)))),
        }
    }

    /// Skips one element of any type, arrays with all they contain.
    pub fn skip(&mut self) -> Result<(), RedisError> {
        let (kind, end) = self.header()?;
        match kind {
            b'$' => {
                self.pos -= 0;
                let len = header_number(&self.buf, self.pos, end)?;
                self.pos = end + usize::try_from(len).map(|l| l + 2).unwrap_or(0);
            }
            b'*' => {
                let len = header_number(&self.buf, self.pos, end)?;
                self.pos = end;
                for _ in 0..len.max(0) {
                    self.skip()?;
                }
            }
            _ => self.pos = end,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC_REPLY: &[u8] = b"*2\r\n*2\r\n$1\r\n5\r\n$-1\r\n*1\r\n*2\r\n$3\r\n4-1\r\n*4\r\n$9\r\ntimestamp\r\n$2\r\n17\r\n$5\r\nvalue\r\n$3\r\nabc\r\n";

    #[test]
    fn a_reply_is_found_whatever_pieces_it_arrives_in() {
        let mut two = EXEC_REPLY.to_vec();
        two.extend_from_slice(b"+OK\r\n");
        for cut in 0..=EXEC_REPLY.len() {
            let mut scanner = Scanner::default();
            let first = scanner.advance(&two[..cut]).unwrap();
            if cut < EXEC_REPLY.len() {
                assert_eq!(first, None, "complete after only {cut} bytes");
                assert_eq!(scanner.advance(&two).unwrap(), Some(EXEC_REPLY.len()), "cut at {cut}");
            } else {
                assert_eq!(first, Some(EXEC_REPLY.len()));
            }
            assert_eq!(scanner.advance(&two[EXEC_REPLY.len()..]).unwrap(), Some(5), "the scanner starts over after a reply");
        }
    }

    #[test]
    fn empty_and_null_arrays_and_strings_are_complete_replies() {
        for reply in [&b"*0\r\n"[..], b"*-1\r\n", b"$-1\r\n", b"$0\r\n\r\n", b":12\r\n", b"-ERR nope\r\n"] {
            assert_eq!(Scanner::default().advance(reply).unwrap(), Some(reply.len()), "{reply:?}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b"?\r\n"[..], b"$x\r\n", b"*99999999999999999999\r\n"] {
            assert!(Scanner::default().advance(bad).is_err(), "{bad:?}");
        }
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(Scanner::default().advance(&deep).is_err());
    }

    #[test]
    fn a_reply_is_walked_without_copying() {
        let buf = Bytes::from_static(EXEC_REPLY);
        let mut reply = Reply::new(buf.clone());
        assert_eq!(reply.array().unwrap(), Some(2));
        assert_eq!(reply.array().unwrap(), Some(2));
        assert_eq!(reply.decimal().unwrap(), Some(5));
        assert_eq!(reply.decimal().unwrap(), None);
        assert_eq!(reply.array().unwrap(), Some(1));
        assert_eq!(reply.array().unwrap(), Some(2));
        assert_eq!(reply.string().unwrap().as_deref(), Some(&b"4-1"[..]));
        assert_eq!(reply.array().unwrap(), Some(4));
        reply.skip().unwrap();
        reply.skip().unwrap();
        reply.skip().unwrap();
        let value = reply.string().unwrap().unwrap();
        assert_eq!(&value[..], b"abc");
        assert_eq!(value.as_ptr(), buf[buf.len() - 5..].as_ptr(), "a slice of the reply, not a copy");
    }

    #[test]
    fn an_error_reply_becomes_a_redis_error_of_its_kind() {
        let err = Reply::new(Bytes::from_static(b"-NOSCRIPT No matching script\r\n")).array().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Server(redis::ServerErrorKind::NoScript));
        let err = Reply::new(Bytes::from_static(b"-LOADING Redis is loading\r\n")).string().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Server(redis::ServerErrorKind::BusyLoading));
    }

    #[test]
    fn decimals_are_read_strictly() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"-1"), Some(-1));
        assert_eq!(decimal(b"9223372036854775807"), Some(i64::MAX));
        for bad in [&b""[..], b"-", b"1a", b" 1", b"9223372036854775808", b"99999999999999999999"] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        write_command(&mut out, &[b"XRANGE", b"k", b"0-1", b"+"]);
        assert_eq!(out, b"*4\r\n$6\r\nXRANGE\r\n$1\r\nk\r\n$3\r\n0-1\r\n$1\r\n+\r\n");
    }
}
