//! LZ4 compression of stream messages, used only when it shrinks them.
//!
//! A packed message is `[flag u8][data]`: flag 0 means `data` is the
//! message as is; flag 1 means `data` is `[size u32 LE][lz4 block]`. The
//! decompressed size is checked against a limit before anything is
//! allocated, so a small frame cannot claim a huge buffer.

use std::borrow::Cow;

/// Flag of an uncompressed message.
pub const FLAG_RAW: u8 = 0;
/// Flag of an LZ4-compressed message.
pub const FLAG_LZ4: u8 = 1;

/// Messages shorter than this are not worth compressing.
const MIN_COMPRESS: usize = 256;

/// Why a packed message could not be unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnpackError {
    /// Empty input, unknown flag, or a corrupt LZ4 block.
    #[error("corrupt compressed message")]
    Corrupt,
    /// The message claims to decompress to more than the limit.
    #[error("message too large")]
    TooLarge,
}

/// Pack `msg`, compressed if that makes it smaller.
pub fn pack(msg: &[u8]) -> Vec<u8> {
    if msg.len() >= MIN_COMPRESS {
        let compressed = lz4_flex::block::compress_prepend_size(msg);
        if compressed.len() < msg.len() {
            let mut out = Vec::with_capacity(1 + compressed.len());
            out.push(FLAG_LZ4);
            out.extend_from_slice(&compressed);
            return out;
        }
    }
    let mut out = Vec::with_capacity(1 + msg.len());
    out.push(FLAG_RAW);
    out.extend_from_slice(msg);
    out
}

/// Unpack a message packed by [`pack`], refusing to produce more than `max` bytes.
pub fn unpack(packed: &[u8], max: usize) -> Result<Cow<'_, [u8]>, UnpackError> {
    match packed.split_first() {
        Some((&FLAG_RAW, data)) if data.len() <= max => Ok(Cow::Borrowed(data)),
        Some((&FLAG_RAW, _)) => Err(UnpackError::TooLarge),
        Some((&FLAG_LZ4, data)) => {
            let (size, block) = data.split_first_chunk::<4>().ok_or(UnpackError::Corrupt)?;
            let size = u32::from_le_bytes(*size) as usize;
            if size > max {
                return Err(UnpackError::TooLarge);
            }
            let out = lz4_flex::block::decompress(block, size).map_err(|_| UnpackError::Corrupt)?;
            if out.len() != size {
                return Err(UnpackError::Corrupt);
            }
            Ok(Cow::Owned(out))
        }
        _ => Err(UnpackError::Corrupt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_only_when_it_helps() {
        let small = b"hello";
        assert_eq!(pack(small)[0], FLAG_RAW);
        let big = vec![b'a'; 4096];
        let packed = pack(&big);
        assert_eq!(packed[0], FLAG_LZ4);
        assert!(packed.len() < 200);
        assert_eq!(&*unpack(&packed, 4096).unwrap(), &big[..]);
        assert_eq!(unpack(&packed, 4095), Err(UnpackError::TooLarge));
        assert_eq!(&*unpack(&pack(small), 10).unwrap(), small);
    }

    #[test]
    fn garbage_is_rejected_without_panic() {
        assert_eq!(unpack(&[], 10), Err(UnpackError::Corrupt));
        assert_eq!(unpack(&[7, 1], 10), Err(UnpackError::Corrupt));
        assert_eq!(
            unpack(&[FLAG_LZ4, 255, 255, 255, 255, 1], 1 << 20),
            Err(UnpackError::TooLarge)
        );
        assert_eq!(
            unpack(&[FLAG_LZ4, 10, 0, 0, 0, 0xff], 100),
            Err(UnpackError::Corrupt)
        );
    }
}
