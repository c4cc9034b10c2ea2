//! Wire encoding of the per-node state service's messages.
//!
//! Delta: owner, reset flag, from and through versions, then a count of
//! entries, each a key, a version and a value flag (0 deleted, 1 a value
//! follows). Sync step: sender, phase, mode, complete flag, the 8-byte
//! digest hash, the digest (name and version pairs), then deltas.

use super::{put_str, put_varint, DecodeError, Reader};
use crate::message::{StateSync, SyncMode, SyncPhase};
use crate::state::{Delta, Entry};

impl Reader<'_> {
    pub(super) fn delta(&mut self) -> Result<Delta, DecodeError> {
        let owner = self.name()?;
        let reset = self.u8()? != 0;
        let from = self.varint()?;
        let through = self.varint()?;
        let count = self.len()?;
        // Each entry takes at least 3 bytes.
        let mut entries = Vec::with_capacity(count.min(self.0.len() / 3));
        for _ in 0..count {
            let key = self.str()?.to_owned();
            let version = self.varint()?;
            let value = match self.u8()? {
                0 => None,
                1 => Some(self.str()?.to_owned()),
                _ => return Err(DecodeError::Malformed("state value flag")),
            };
            entries.push((key, Entry { value, version }));
        }
        Ok(Delta {
            owner,
            reset,
            from,
            through,
            entries,
        })
    }

    pub(super) fn state_sync(&mut self) -> Result<StateSync, DecodeError> {
        let sender = self.name()?;
        let phase = match self.u8()? {
            0 => SyncPhase::Syn,
            1 => SyncPhase::SynAck,
            2 => SyncPhase::Ack,
            _ => return Err(DecodeError::Malformed("sync phase")),
        };
        let mode = match self.u8()? {
            0 => SyncMode::Push,
            1 => SyncMode::Pull,
            2 => SyncMode::PushPull,
            _ => return Err(DecodeError::Malformed("sync mode")),
        };
        let complete = self.u8()? != 0;
        let hash = self.take(8)?;
        let mut digest_hash = [0u8; 8];
        digest_hash.copy_from_slice(hash);
        let count = self.len()?;
        // Each digest entry takes at least 2 bytes, each delta 4.
        let mut digest = Vec::with_capacity(count.min(self.0.len() / 2));
        for _ in 0..count {
            digest.push((self.name()?, self.varint()?));
        }
        let count = self.len()?;
        let mut deltas = Vec::with_capacity(count.min(self.0.len() / 4));
        for _ in 0..count {
            deltas.push(self.delta()?);
        }
        Ok(StateSync {
            sender,
            phase,
            mode,
            digest_hash: u64::from_le_bytes(digest_hash),
            complete,
            digest,
            deltas,
        })
    }
}

pub(super) fn put_state_sync(out: &mut Vec<u8>, sync: &StateSync) {
    put_str(out, &sync.sender);
    out.push(sync.phase as u8);
    out.push(sync.mode as u8);
    out.push(u8::from(sync.complete));
    out.extend_from_slice(&sync.digest_hash.to_le_bytes());
    put_varint(out, sync.digest.len() as u64);
    for (name, version) in &sync.digest {
        put_str(out, name);
        put_varint(out, *version);
    }
    put_varint(out, sync.deltas.len() as u64);
    for d in &sync.deltas {
        put_delta(out, d);
    }
}

pub(super) fn put_delta(out: &mut Vec<u8>, d: &Delta) {
    put_str(out, &d.owner);
    out.push(u8::from(d.reset));
    put_varint(out, d.from);
    put_varint(out, d.through);
    put_varint(out, d.entries.len() as u64);
    for (key, e) in &d.entries {
        put_str(out, key);
        put_varint(out, e.version);
        match &e.value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                put_str(out, v);
            }
        }
    }
}
