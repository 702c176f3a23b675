//! Zig-zag varints as used inside v2 records.

use super::{corrupt, BatchError};
use bytes::{Buf, BufMut};

pub fn read_varlong(buf: &mut impl Buf) -> Result<i64, BatchError> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return Err(corrupt("truncated varint"));
        }
        let byte = buf.get_u8();
        if shift == 63 && byte > 1 {
            return Err(corrupt("varint overflows 64 bits"));
        }
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err(corrupt("varint longer than 10 bytes"))
}

pub fn read_varint(buf: &mut impl Buf) -> Result<i32, BatchError> {
    let value = read_varlong(buf)?;
    i32::try_from(value).map_err(|_| corrupt(format!("varint {value} overflows 32 bits")))
}

pub fn put_varlong(out: &mut impl BufMut, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.put_u8(raw as u8);
}

pub fn put_varint(out: &mut impl BufMut, value: i32) {
    put_varlong(out, i64::from(value));
}
