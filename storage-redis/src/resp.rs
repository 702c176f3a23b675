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

/// The length in a `$<n>\r\n` or `*<n>\r\n` line at `start`, and where the line ends; `None`
/// while the line is incomplete. One pass over the digits: every string and array of a read
/// starts with such a line.
fn length_line(buf: &[u8], start: usize) -> Result<Option<(i64, usize)>, RedisError> {
    let bad = || {
        let line = &buf[start..buf.len().min(start + 24)];
        protocol_error(format!("bad length line {:?}", String::from_utf8_lossy(line)))
    };
    let negative = buf.get(start + 1) == Some(&b'-');
    let digits_start = start + 1 + usize::from(negative);
    let mut pos = digits_start;
    let mut value: i64 = 0;
    loop {
        let Some(&byte) = buf.get(pos) else { return Ok(None) };
        match byte {
            b'0'..=b'9' => {
                value = value.checked_mul(10).and_then(|v| v.checked_add(i64::from(byte - b'0'))).ok_or_else(bad)?;
                pos += 1;
            }
            b'\r' if pos > digits_start => {
                return match buf.get(pos + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((if negative { -value } else { value }, pos + 2))),
                    Some(_) => Err(bad()),
                };
            }
            _ => return Err(bad()),
        }
    }
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
            let Some(&kind) = buf.get(self.pos) else { return Ok(None) };
            match kind {
                b'+' | b'-' | b':' => {
                    let Some(end) = line_end(buf, self.pos) else { return Ok(None) };
                    self.pos = end;
                }
                b'$' => {
                    let Some((len, end)) = length_line(buf, self.pos)? else { return Ok(None) };
                    let after = usize::try_from(len).map_or(end, |len| end.saturating_add(len).saturating_add(2));
                    if after > buf.len() {
                        return Ok(None);
                    }
                    self.pos = after;
                }
                b'*' => {
                    let Some((len, end)) = length_line(buf, self.pos)? else { return Ok(None) };
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

    /// The next element's type byte, turning an error reply into `Err`.
    fn kind(&mut self) -> Result<u8, RedisError> {
        let kind = *self.buf.get(self.pos).ok_or_else(|| protocol_error("reply ends early"))?;
        if kind == b'-' {
            let end = line_end(&self.buf, self.pos).unwrap_or(self.buf.len());
            let line = &self.buf[self.pos..end];
            self.pos = end;
            // The redis crate knows how to turn an error line into the right error kind.
            return Err(redis::parse_redis_value(line)
                .and_then(|value| value.extract_error())
                .err()
                .unwrap_or_else(|| protocol_error(String::from_utf8_lossy(line).into_owned())));
        }
        Ok(kind)
    }

    /// The length line at the cursor, which the reply, being complete, must hold.
    fn length(&mut self) -> Result<i64, RedisError> {
        let (len, end) = length_line(&self.buf, self.pos)?.ok_or_else(|| protocol_error("reply ends early"))?;
        self.pos = end;
        Ok(len)
    }

    /// The line at the cursor (a simple string or integer), without its type byte and `\r\n`.
    fn line(&mut self) -> Result<Bytes, RedisError> {
        let end = line_end(&self.buf, self.pos).ok_or_else(|| protocol_error("reply ends early"))?;
        let text = self.buf.slice(self.pos + 1..end.saturating_sub(2).max(self.pos + 1));
        self.pos = end;
        Ok(text)
    }

    /// An array's length; `None` for a null array.
    pub fn array(&mut self) -> Result<Option<usize>, RedisError> {
        match self.kind()? {
            b'*' => Ok(usize::try_from(self.length()?).ok()),
            other => Err(protocol_error(format!("expected an array, got type {other:#04x}"))),
        }
    }

    /// A bulk or simple string as a slice of the reply; `None` for a null bulk string.
    pub fn string(&mut self) -> Result<Option<Bytes>, RedisError> {
        match self.kind()? {
            b'$' => {
                let Ok(len) = usize::try_from(self.length()?) else { return Ok(None) };
                let start = self.pos;
                if start.saturating_add(len).saturating_add(2) > self.buf.len() {
                    return Err(protocol_error("bulk string runs past the reply"));
                }
                self.pos = start + len + 2;
                Ok(Some(self.buf.slice(start..start + len)))
            }
            b'+' => self.line().map(Some),
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
        match self.kind()? {
            b'$' => {
                let body = usize::try_from(self.length()?).map_or(0, |len| len.saturating_add(2));
                self.pos = self.pos.saturating_add(body).min(self.buf.len());
            }
            b'*' => {
                for _ in 0..self.length()?.max(0) {
                    self.skip()?;
                }
            }
            _ => {
                self.line()?;
            }
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
