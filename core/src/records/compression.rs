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

    /// The codec a topic's `compression.type` names; `None` for `producer` (keep what the
    /// producer chose) or an unknown name.
    pub fn for_topic(name: &str) -> Option<Self> {
        match name.trim() {
            "uncompressed" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "snappy" => Some(Compression::Snappy),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The codec's bits in a batch's attributes.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Compresses `data` as Kafka's clients do, appending the result to `out`: gzip and zstd
    /// streams, an LZ4 frame of independent blocks, snappy in the xerial framing.
    pub fn compress(self, data: &[u8], out: &mut Vec<u8>) {
        use std::io::Write;
        match self {
            Compression::None => out.extend_from_slice(data),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
                // Writing into a Vec cannot fail.
                let _ = encoder.write_all(data);
                let _ = encoder.finish();
            }
            Compression::Lz4 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(out);
                let _ = encoder.write_all(data);
                let _ = encoder.finish();
            }
            Compression::Zstd => {
                let _ = zstd::stream::copy_encode(data, out, 3);
            }
            Compression::Snappy => compress_snappy(data, out),
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

/// Java's xerial framing: the magic, version 1 and compatible version 1, then blocks of at most
/// 32 KiB of input, each raw snappy with a big-endian length before it.
fn compress_snappy(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"\x82SNAPPY\x00");
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for block in data.chunks(32 * 1024) {
        let mut compressed = vec![0; snap::raw::max_compress_len(block.len())];
        let len = encoder.compress(block, &mut compressed).unwrap_or(0);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&compressed[..len]);
    }
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
