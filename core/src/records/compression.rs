//! The four codecs Kafka producers use, decompressed with a hard bound on the output so that a
//! small malicious batch cannot expand into gigabytes.

use super::BatchError;
use bytes::Bytes;
use std::io::Read;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn from_attributes(attributes: i16) -> Option<Self> {
        match attributes & 0x07 {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Decompresses `data`, failing once the output would pass `limit` bytes.
    pub fn decompress(self, data: Bytes, limit: usize) -> Result<Bytes, BatchError> {
        match self {
            Compression::None => Ok(data),
            Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(&data[..]), limit),
            Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(&data[..]), limit),
            Compression::Zstd => {
                let decoder = zstd::stream::read::Decoder::new(&data[..]).map_err(codec_error)?;
                read_bounded(decoder, limit)
            }
            Compression::Snappy => decompress_snappy(&data, limit),
        }
    }
}

fn codec_error(err: impl std::fmt::Display) -> BatchError {
    BatchError::Corrupt(format!("cannot decompress: {err}"))
}

fn read_bounded(reader: impl Read, limit: usize) -> Result<Bytes, BatchError> {
    let mut out = Vec::new();
    let read = reader.take(limit as u64 + 1).read_to_end(&mut out).map_err(codec_error)?;
    if read > limit {
        return Err(BatchError::TooLarge(limit));
    }
    Ok(Bytes::from(out))
}

/// Java clients and librdkafka wrap snappy in the xerial framing (a magic header followed by
/// length-prefixed raw snappy blocks); some clients send a bare raw snappy block.
fn decompress_snappy(data: &[u8], limit: usize) -> Result<Bytes, BatchError> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    if !data.starts_with(XERIAL_MAGIC) {
        let mut out = Vec::new();
        decompress_snappy_block(data, limit, &mut out)?;
        return Ok(Bytes::from(out));
    }
    if data.len() < 16 {
        return Err(codec_error("truncated xerial snappy header"));
    }
    let mut rest = &data[16..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(codec_error("truncated xerial snappy block length"));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        if len > rest.len() {
            return Err(codec_error("xerial snappy block runs past the data"));
        }
        let remaining = limit.saturating_sub(out.len());
        decompress_snappy_block(&rest[..len], remaining, &mut out)?;
        rest = &rest[len..];
    }
    Ok(Bytes::from(out))
}

/// Appends one raw snappy block to `out`, refusing to grow it by more than `limit` bytes.
fn decompress_snappy_block(block: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let len = snap::raw::decompress_len(block).map_err(codec_error)?;
    if len > limit {
        return Err(BatchError::TooLarge(limit));
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(codec_error)?;
    Ok(())
}
