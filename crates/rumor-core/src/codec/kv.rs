//! Wire encoding of the replicated key space: records (entries with their
//! hybrid-logical-clock timestamps, sibling sets with version vectors) and
//! the Merkle sync requests and responses, and the clock probes that ride
//! with them.

use std::collections::BTreeMap;

use super::{put_str, put_varint, DecodeError, Reader};
use crate::kv::{
    ClockProbe, Dot, Entry, LwwEntry, Record, Refusal, Sibling, SiblingSet, SyncRequest,
    SyncResponse, Timestamp, VersionVector,
};

impl Reader<'_> {
    fn u64_le(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn timestamp(&mut self) -> Result<Timestamp, DecodeError> {
        let wall = self.varint()?;
        let logical = self.u32()?;
        Ok(Timestamp::new(wall, logical, self.name()?))
    }

    fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => {
                let n = self.len()?;
                Ok(Some(self.take(n)?.to_vec()))
            }
            _ => Err(DecodeError::Malformed("value flag")),
        }
    }

    fn entry(&mut self) -> Result<Entry, DecodeError> {
        match self.u8()? {
            1 => {
                let ts = self.timestamp()?;
                let value = self.opt_bytes()?;
                Ok(Entry::Lww(LwwEntry { value, ts }))
            }
            2 => {
                let mut context = VersionVector::new();
                for _ in 0..self.len()? {
                    let node = self.name()?;
                    let counter = self.varint()?;
                    context.observe(&node, counter);
                }
                let mut siblings = BTreeMap::new();
                for _ in 0..self.len()? {
                    let node = self.name()?;
                    let counter = self.varint()?;
                    let ts = self.timestamp()?;
                    let value = self.opt_bytes()?;
                    siblings.insert(Dot { node, counter }, Sibling { ts, value });
                }
                Ok(Entry::Siblings(SiblingSet::from_parts(siblings, context)))
            }
            _ => Err(DecodeError::Malformed("entry kind")),
        }
    }

    /// A record: key and entry.
    pub(super) fn record(&mut self) -> Result<Record, DecodeError> {
        let key = self.str()?.to_owned();
        Ok(Record {
            key,
            entry: self.entry()?,
        })
    }

    /// A vector of records.
    pub(super) fn records(&mut self) -> Result<Vec<Record>, DecodeError> {
        let count = self.len()?;
        let mut out = Vec::with_capacity(count.min(self.0.len() / 8));
        for _ in 0..count {
            out.push(self.record()?);
        }
        Ok(out)
    }

    fn hashes(&mut self) -> Result<Vec<u64>, DecodeError> {
        let count = self.len()?;
        let mut out = Vec::with_capacity(count.min(self.0.len() / 8));
        for _ in 0..count {
            out.push(self.u64_le()?);
        }
        Ok(out)
    }

    /// A Merkle sync request.
    pub(super) fn sync_request(&mut self) -> Result<SyncRequest, DecodeError> {
        Ok(match self.u8()? {
            0 => SyncRequest::Root {
                depth: self.u8()?,
                root: self.u64_le()?,
            },
            1 => {
                let level = self.u8()?;
                let count = self.len()?;
                let mut nodes = Vec::with_capacity(count.min(self.0.len()));
                for _ in 0..count {
                    nodes.push(self.u32()?);
                }
                SyncRequest::Children { level, nodes }
            }
            2 => {
                let count = self.len()?;
                let mut buckets = Vec::with_capacity(count.min(self.0.len()));
                for _ in 0..count {
                    buckets.push(self.u32()?);
                }
                let count = self.len()?;
                let mut items = Vec::with_capacity(count.min(self.0.len() / 16));
                for _ in 0..count {
                    items.push((self.u64_le()?, self.u64_le()?));
                }
                SyncRequest::Buckets { buckets, items }
            }
            _ => return Err(DecodeError::Malformed("sync request kind")),
        })
    }

    /// A clock probe: `[session][t0][0]` or `[session][t0][1][t1]`.
    pub(super) fn clock_probe(&mut self) -> Result<ClockProbe, DecodeError> {
        let session = self.u32()?;
        let t0 = self.varint()?;
        let t1 = match self.u8()? {
            0 => None,
            1 => Some(self.varint()?),
            _ => return Err(DecodeError::Malformed("clock probe flag")),
        };
        Ok(ClockProbe { session, t0, t1 })
    }

    /// A Merkle sync response.
    pub(super) fn sync_response(&mut self) -> Result<SyncResponse, DecodeError> {
        Ok(match self.u8()? {
            0 => SyncResponse::InSync,
            1 => SyncResponse::Refused(match self.u8()? {
                0 => Refusal::DepthMismatch { depth: self.u8()? },
                1 => Refusal::Malformed,
                _ => return Err(DecodeError::Malformed("refusal kind")),
            }),
            2 => SyncResponse::Children {
                level: self.u8()?,
                hashes: self.hashes()?,
            },
            3 => SyncResponse::Buckets {
                records: self.records()?,
                want: self.hashes()?,
            },
            _ => return Err(DecodeError::Malformed("sync response kind")),
        })
    }
}

fn put_timestamp(out: &mut Vec<u8>, ts: &Timestamp) {
    put_varint(out, ts.wall);
    put_varint(out, u64::from(ts.logical));
    put_str(out, &ts.node);
}

fn put_opt_bytes(out: &mut Vec<u8>, v: &Option<Vec<u8>>) {
    match v {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
    }
}

fn put_entry(out: &mut Vec<u8>, e: &Entry) {
    match e {
        Entry::Lww(l) => {
            out.push(1);
            put_timestamp(out, &l.ts);
            put_opt_bytes(out, &l.value);
        }
        Entry::Siblings(s) => {
            out.push(2);
            put_varint(out, s.context().len() as u64);
            for (node, counter) in s.context().iter() {
                put_str(out, node);
                put_varint(out, counter);
            }
            put_varint(out, s.len() as u64);
            for (dot, sib) in s.siblings() {
                put_str(out, &dot.node);
                put_varint(out, dot.counter);
                put_timestamp(out, &sib.ts);
                put_opt_bytes(out, &sib.value);
            }
        }
    }
}

/// Append records.
pub(super) fn put_records(out: &mut Vec<u8>, records: &[Record]) {
    put_varint(out, records.len() as u64);
    for r in records {
        put_str(out, &r.key);
        put_entry(out, &r.entry);
    }
}

fn put_hashes(out: &mut Vec<u8>, hashes: &[u64]) {
    put_varint(out, hashes.len() as u64);
    for h in hashes {
        out.extend_from_slice(&h.to_le_bytes());
    }
}

/// Append a Merkle sync request.
pub(super) fn put_sync_request(out: &mut Vec<u8>, req: &SyncRequest) {
    match req {
        SyncRequest::Root { depth, root } => {
            out.push(0);
            out.push(*depth);
            out.extend_from_slice(&root.to_le_bytes());
        }
        SyncRequest::Children { level, nodes } => {
            out.push(1);
            out.push(*level);
            put_varint(out, nodes.len() as u64);
            for n in nodes {
                put_varint(out, u64::from(*n));
            }
        }
        SyncRequest::Buckets { buckets, items } => {
            out.push(2);
            put_varint(out, buckets.len() as u64);
            for b in buckets {
                put_varint(out, u64::from(*b));
            }
            put_varint(out, items.len() as u64);
            for (k, d) in items {
                out.extend_from_slice(&k.to_le_bytes());
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
    }
}

/// Append a Merkle sync response.
pub(super) fn put_sync_response(out: &mut Vec<u8>, resp: &SyncResponse) {
    match resp {
        SyncResponse::InSync => out.push(0),
        SyncResponse::Refused(r) => {
            out.push(1);
            match r {
                Refusal::DepthMismatch { depth } => {
                    out.push(0);
                    out.push(*depth);
                }
                Refusal::Malformed => out.push(1),
            }
        }
        SyncResponse::Children { level, hashes } => {
            out.push(2);
            out.push(*level);
            put_hashes(out, hashes);
        }
        SyncResponse::Buckets { records, want } => {
            out.push(3);
            put_records(out, records);
            put_hashes(out, want);
        }
    }
}

/// One key's entry on its own, in the wire's encoding: how a data dir
/// keeps entries, so what it reads back passes the same checks as what
/// arrives from peers.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.wire_size() + 8);
    put_entry(&mut out, entry);
    out
}

/// Read what [`encode_entry`] wrote; anything short, long or malformed
/// is an error, never a panic.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, DecodeError> {
    let mut r = Reader(bytes);
    let entry = r.entry()?;
    if !r.0.is_empty() {
        return Err(DecodeError::Malformed("entry with trailing bytes"));
    }
    Ok(entry)
}

/// Append a clock probe.
pub(super) fn put_clock_probe(out: &mut Vec<u8>, p: &ClockProbe) {
    put_varint(out, u64::from(p.session));
    put_varint(out, p.t0);
    match p.t1 {
        None => out.push(0),
        Some(t1) => {
            out.push(1);
            put_varint(out, t1);
        }
    }
}

#[cfg(test)]
mod entry_tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_an_error() {
        let mut set = SiblingSet::new();
        set.write(
            Timestamp::new(5, 1, "a"),
            &VersionVector::new(),
            Some(b"x".to_vec()),
        );
        let entries = [
            Entry::Lww(LwwEntry {
                value: Some(b"hello".to_vec()),
                ts: Timestamp::new(1_700_000_000_000_000, 3, "node-1"),
            }),
            Entry::Lww(LwwEntry {
                value: None,
                ts: Timestamp::new(9, 0, "b"),
            }),
            Entry::Siblings(set),
        ];
        for e in entries {
            let bytes = encode_entry(&e);
            assert_eq!(decode_entry(&bytes).as_ref(), Ok(&e));
            for cut in 0..bytes.len() {
                assert!(decode_entry(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(decode_entry(&long).is_err());
        }
    }
}
