//! Wire encoding of queries and their responses.
//!
//! Query: ltime, origin, origin address, name, payload, filters (count,
//! then per filter a kind byte, 1 name pattern / 2 tag key and pattern), a
//! flags byte (bit 0: ack), relay factor, timeout in ms. Response: ltime,
//! from, flags (bit 0: ack, bit 1: a relay address follows), payload, then
//! the relay address if flagged.

use super::{put_addr, put_str, put_varint, DecodeError, Reader};
use crate::message::{Query, QueryFilter, QueryResponse};

impl Reader<'_> {
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }

    pub(super) fn query(&mut self) -> Result<Query, DecodeError> {
        let ltime = self.varint()?;
        let origin = self.name()?;
        let origin_addr = self.addr()?;
        let name = self.str()?.to_owned();
        let payload = self.bytes()?;
        let count = self.len()?;
        // Each filter takes at least 2 bytes.
        let mut filters = Vec::with_capacity(count.min(self.0.len() / 2));
        for _ in 0..count {
            filters.push(match self.u8()? {
                1 => QueryFilter::Name(self.str()?.to_owned()),
                2 => QueryFilter::Tag {
                    key: self.str()?.to_owned(),
                    pattern: self.str()?.to_owned(),
                },
                _ => return Err(DecodeError::Malformed("query filter kind")),
            });
        }
        let flags = self.u8()?;
        Ok(Query {
            ltime,
            origin,
            origin_addr,
            name,
            payload,
            filters,
            ack: flags & 1 != 0,
            relay_factor: self.u8()?,
            timeout_ms: self.u32()?,
        })
    }

    pub(super) fn query_response(&mut self) -> Result<QueryResponse, DecodeError> {
        let ltime = self.varint()?;
        let from = self.name()?;
        let flags = self.u8()?;
        let payload = self.bytes()?;
        let relay_to = if flags & 2 != 0 {
            Some(self.addr()?)
        } else {
            None
        };
        Ok(QueryResponse {
            ltime,
            from,
            ack: flags & 1 != 0,
            payload,
            relay_to,
        })
    }
}

pub(super) fn put_query(out: &mut Vec<u8>, q: &Query) {
    put_varint(out, q.ltime);
    put_str(out, &q.origin);
    put_addr(out, q.origin_addr);
    put_str(out, &q.name);
    put_varint(out, q.payload.len() as u64);
    out.extend_from_slice(&q.payload);
    put_varint(out, q.filters.len() as u64);
    for f in &q.filters {
        match f {
            QueryFilter::Name(p) => {
                out.push(1);
                put_str(out, p);
            }
            QueryFilter::Tag { key, pattern } => {
                out.push(2);
                put_str(out, key);
                put_str(out, pattern);
            }
        }
    }
    out.push(u8::from(q.ack));
    out.push(q.relay_factor);
    put_varint(out, u64::from(q.timeout_ms));
}

pub(super) fn put_query_response(out: &mut Vec<u8>, r: &QueryResponse) {
    put_varint(out, r.ltime);
    put_str(out, &r.from);
    out.push(u8::from(r.ack) | if r.relay_to.is_some() { 2 } else { 0 });
    put_varint(out, r.payload.len() as u64);
    out.extend_from_slice(&r.payload);
    if let Some(to) = r.relay_to {
        put_addr(out, to);
    }
}
