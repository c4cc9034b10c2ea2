//! Wire encoding of the aggregation service's messages.
//!
//! Transfer: sender name, epoch, sequence number, then a count of shares,
//! each an aggregate name and six little-endian f64s (`s w c u min max`,
//! finite only). Ack: epoch, sequence number.

use super::{put_str, put_varint, DecodeError, Reader};
use crate::aggregate::Share;
use crate::message::Message;

impl Reader<'_> {
    pub(super) fn aggregate(&mut self) -> Result<Message, DecodeError> {
        let sender = self.name()?;
        let epoch = self.varint()?;
        let seq = self.u32()?;
        let count = self.len()?;
        // Each share takes at least 49 bytes.
        let mut shares = Vec::with_capacity(count.min(self.0.len() / 49));
        for _ in 0..count {
            let name = self.str()?.to_owned();
            let mut f = [0f64; 6];
            for x in &mut f {
                *x = self.f64()?;
            }
            let [s, w, c, u, min, max] = f;
            shares.push((
                name,
                Share {
                    s,
                    w,
                    c,
                    u,
                    min,
                    max,
                },
            ));
        }
        Ok(Message::Aggregate {
            sender,
            epoch,
            seq,
            shares,
        })
    }

    pub(super) fn aggregate_ack(&mut self) -> Result<Message, DecodeError> {
        Ok(Message::AggregateAck {
            epoch: self.varint()?,
            seq: self.u32()?,
        })
    }
}

pub(super) fn put_transfer(
    out: &mut Vec<u8>,
    sender: &str,
    epoch: u64,
    seq: u32,
    shares: &[(String, Share)],
) {
    put_str(out, sender);
    put_varint(out, epoch);
    put_varint(out, u64::from(seq));
    put_varint(out, shares.len() as u64);
    for (name, sh) in shares {
        put_str(out, name);
        for x in [sh.s, sh.w, sh.c, sh.u, sh.min, sh.max] {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

pub(super) fn put_ack(out: &mut Vec<u8>, epoch: u64, seq: u32) {
    put_varint(out, epoch);
    put_varint(out, u64::from(seq));
}
