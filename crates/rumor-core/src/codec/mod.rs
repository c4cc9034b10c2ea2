//! The binary wire format.
//!
//! A datagram is `[version u8]` followed by one or more messages; a stream is
//! the same with exactly one message. Each message is
//! `[type u8][body length varint][body]`, so a receiver skips (and counts)
//! types it does not know: newer nodes can add messages during a rolling
//! upgrade. Integers are LEB128 varints, strings are a varint length and
//! UTF-8 bytes, an address is `[4|6][ip][port u16 BE]`.
//!
//! Decoding never panics and never allocates more than the input justifies:
//! every length is checked against the bytes that remain before use.

mod aggregate;
mod kv;
mod overlay;
mod query;
mod state;

pub use kv::{decode_entry, encode_entry};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use crate::member::{no_tags, MemberState, Tags, MAX_NAME_LEN};
use crate::message::{Alive, MemberRecord, Message, MessageType, PushPull, UserEvent};

/// Oldest protocol version this build decodes.
pub const PROTOCOL_MIN: u8 = 1;
/// Newest protocol version this build decodes (and the one it sends).
pub const PROTOCOL_MAX: u8 = 1;

/// Why a packet or stream could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated input")]
    Truncated,
    /// A packet with no bytes, or a stream with no message.
    #[error("empty input")]
    Empty,
    /// A protocol version outside [`PROTOCOL_MIN`]..=[`PROTOCOL_MAX`].
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A malformed field.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// A decoded packet: the messages this build understands, and how many it skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    /// Messages in the order they came.
    pub messages: Vec<Message>,
    /// Messages of types this build does not know.
    pub unknown: u32,
}

/// Decode a datagram or a stream message.
pub fn decode(input: &[u8]) -> Result<Decoded, DecodeError> {
    let (&version, mut rest) = input.split_first().ok_or(DecodeError::Empty)?;
    if !(PROTOCOL_MIN..=PROTOCOL_MAX).contains(&version) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    if rest.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut out = Decoded::default();
    while !rest.is_empty() {
        let mut r = Reader(rest);
        let code = r.u8()?;
        let len = r.len()?;
        let body = r.take(len)?;
        rest = r.0;
        match MessageType::from_code(code) {
            Some(kind) => {
                let mut b = Reader(body);
                out.messages.push(decode_body(kind, &mut b)?);
                if !b.0.is_empty() {
                    return Err(DecodeError::Malformed("message with trailing bytes"));
                }
            }
            None => out.unknown += 1,
        }
    }
    Ok(out)
}

fn decode_body(kind: MessageType, r: &mut Reader) -> Result<Message, DecodeError> {
    Ok(match kind {
        MessageType::Ping => Message::Ping {
            seq: r.u32()?,
            target: r.name()?,
        },
        MessageType::Ack => Message::Ack { seq: r.u32()? },
        MessageType::Nack => Message::Nack {
            seq: r.u32()?,
            // An optional flags byte (older nacks end after the sequence).
            refused: if r.0.is_empty() {
                false
            } else {
                r.u8()? & 1 == 1
            },
        },
        MessageType::PingReq => Message::PingReq {
            seq: r.u32()?,
            target: r.name()?,
            target_addr: r.addr()?,
        },
        MessageType::Alive => Message::Alive(r.alive()?),
        MessageType::Suspect => Message::Suspect {
            incarnation: r.varint()?,
            name: r.name()?,
            from: r.name()?,
        },
        MessageType::Dead => Message::Dead {
            incarnation: r.varint()?,
            name: r.name()?,
            from: r.name()?,
        },
        MessageType::PushPull => {
            let flags = r.u8()?;
            let count = r.len()?;
            // Each record takes at least 12 bytes: never reserve more than that justifies.
            let mut members = Vec::with_capacity(count.min(r.0.len() / 12));
            for _ in 0..count {
                let state = MemberState::from_code(r.u8()?)
                    .ok_or(DecodeError::Malformed("member state"))?;
                members.push(MemberRecord {
                    state,
                    alive: r.alive()?,
                });
            }
            // Optional: a push-pull without events ends after the members.
            let mut events = Vec::new();
            if !r.0.is_empty() {
                let count = r.len()?;
                // Each event takes at least 4 bytes.
                events.reserve(count.min(r.0.len() / 4));
                for _ in 0..count {
                    events.push(r.user_event()?);
                }
            }
            Message::PushPull(PushPull {
                join: flags & 1 != 0,
                reply: flags & 2 != 0,
                members,
                events,
            })
        }
        MessageType::UserEvent => Message::UserEvent(r.user_event()?),
        MessageType::StateSync => Message::StateSync(r.state_sync()?),
        MessageType::StateDelta => Message::StateDelta(r.delta()?),
        MessageType::Aggregate => r.aggregate()?,
        MessageType::AggregateAck => r.aggregate_ack()?,
        MessageType::Query => Message::Query(r.query()?),
        MessageType::QueryResponse => Message::QueryResponse(r.query_response()?),
        MessageType::KvRecords => Message::KvRecords(r.records()?),
        MessageType::KvSyncRequest => Message::KvSyncRequest {
            session: r.u32()?,
            request: r.sync_request()?,
        },
        MessageType::KvSyncResponse => Message::KvSyncResponse {
            session: r.u32()?,
            response: r.sync_response()?,
        },
        MessageType::Pull => {
            let alive = r.alive()?;
            let count = r.len()?;
            if count > r.0.len() / 4 {
                return Err(DecodeError::Truncated);
            }
            let mut digest = Vec::with_capacity(count);
            for _ in 0..count {
                let b: [u8; 4] = r.take(4)?.try_into().map_err(|_| DecodeError::Truncated)?;
                digest.push(u32::from_le_bytes(b));
            }
            Message::Pull { alive, digest }
        }
        MessageType::KvClock => Message::KvClock(r.clock_probe()?),
        MessageType::Lacking => {
            // Ascending positions, each sent as its distance from the one
            // before (the first from -1), at least 1 byte each.
            let count = r.len()?;
            if count > r.0.len() {
                return Err(DecodeError::Truncated);
            }
            let mut positions = Vec::with_capacity(count);
            let mut next = 0u32;
            for _ in 0..count {
                let position = next
                    .checked_add(r.u32()?)
                    .ok_or(DecodeError::Malformed("position"))?;
                positions.push(position);
                next = position.saturating_add(1);
            }
            Message::Lacking { positions }
        }
        MessageType::View => r.view()?,
        MessageType::Tree => r.tree()?,
        MessageType::Membership => Message::Membership(match r.u8()? {
            0 => crate::config::Membership::Full,
            1 => crate::config::Membership::Partial,
            _ => return Err(DecodeError::Malformed("membership")),
        }),
        MessageType::Reap => Message::Reap {
            incarnation: r.varint()?,
            name: r.name()?,
        },
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.0.split_first().ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed("varint"))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::Malformed("u32"))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.varint()?).map_err(|_| DecodeError::Malformed("length"))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::Malformed("utf-8 string"))
    }

    fn user_event(&mut self) -> Result<UserEvent, DecodeError> {
        Ok(UserEvent {
            ltime: self.varint()?,
            origin: self.name()?,
            name: self.str()?.to_owned(),
            payload: {
                let n = self.len()?;
                self.take(n)?.to_vec()
            },
        })
    }

    fn name(&mut self) -> Result<Arc<str>, DecodeError> {
        let s = self.str()?;
        if s.len() > MAX_NAME_LEN {
            return Err(DecodeError::Malformed("name too long"));
        }
        Ok(Arc::from(s))
    }

    fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8()? {
            4 => {
                let b: [u8; 4] = self
                    .take(4)?
                    .try_into()
                    .map_err(|_| DecodeError::Truncated)?;
                IpAddr::V4(Ipv4Addr::from(b))
            }
            6 => {
                let b: [u8; 16] = self
                    .take(16)?
                    .try_into()
                    .map_err(|_| DecodeError::Truncated)?;
                IpAddr::V6(Ipv6Addr::from(b))
            }
            _ => return Err(DecodeError::Malformed("address family")),
        };
        let p = self.take(2)?;
        Ok(SocketAddr::new(ip, u16::from_be_bytes([p[0], p[1]])))
    }

    /// A finite little-endian f64 (NaN and infinities are refused).
    fn f64(&mut self) -> Result<f64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(f64::from_le_bytes(a))
            .filter(|v| v.is_finite())
            .ok_or(DecodeError::Malformed("non-finite number"))
    }

    fn alive(&mut self) -> Result<Alive, DecodeError> {
        let incarnation = self.varint()?;
        let name = self.name()?;
        let addr = self.addr()?;
        let protocol = (self.u8()?, self.u8()?);
        let count = self.len()?;
        let tags = if count == 0 {
            no_tags()
        } else {
            let mut tags = Tags::new();
            for _ in 0..count {
                let k = self.str()?;
                let v = self.str()?;
                tags.insert(k.to_owned(), v.to_owned());
            }
            Arc::new(tags)
        };
        Ok(Alive {
            incarnation,
            name,
            addr,
            protocol,
            tags,
        })
    }
}

/// Start a datagram or stream: the version byte.
pub fn begin_packet(out: &mut Vec<u8>) {
    out.push(PROTOCOL_MAX);
}

/// A whole datagram or stream holding one message.
pub fn encode_packet(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    begin_packet(&mut out);
    encode_message(msg, &mut out);
    out
}

/// Append one framed message (`[type][len][body]`) to `out`.
pub fn encode_message(msg: &Message, out: &mut Vec<u8>) {
    out.push(msg.kind() as u8);
    let len_at = out.len();
    out.push(0); // one-byte length placeholder, widened below if needed
    let body_at = out.len();
    encode_body(msg, out);
    let body_len = out.len() - body_at;
    if body_len < 0x80 {
        out[len_at] = body_len as u8;
    } else {
        let mut len = Vec::with_capacity(5);
        put_varint(&mut len, body_len as u64);
        out.splice(len_at..body_at, len);
    }
}

fn encode_body(msg: &Message, out: &mut Vec<u8>) {
    match msg {
        Message::Ping { seq, target } => {
            put_varint(out, u64::from(*seq));
            put_str(out, target);
        }
        Message::Ack { seq } => put_varint(out, u64::from(*seq)),
        Message::Nack { seq, refused } => {
            put_varint(out, u64::from(*seq));
            if *refused {
                out.push(1);
            }
        }
        Message::PingReq {
            seq,
            target,
            target_addr,
        } => {
            put_varint(out, u64::from(*seq));
            put_str(out, target);
            put_addr(out, *target_addr);
        }
        Message::Alive(a) => put_alive(out, a),
        Message::Suspect {
            incarnation,
            name,
            from,
        }
        | Message::Dead {
            incarnation,
            name,
            from,
        } => {
            put_varint(out, *incarnation);
            put_str(out, name);
            put_str(out, from);
        }
        Message::PushPull(pp) => {
            out.push(u8::from(pp.join) | (u8::from(pp.reply) << 1));
            put_varint(out, pp.members.len() as u64);
            for m in &pp.members {
                out.push(m.state.code());
                put_alive(out, &m.alive);
            }
            if !pp.events.is_empty() {
                put_varint(out, pp.events.len() as u64);
                for ev in &pp.events {
                    put_user_event(out, ev);
                }
            }
        }
        Message::StateSync(sync) => state::put_state_sync(out, sync),
        Message::StateDelta(d) => state::put_delta(out, d),
        Message::Aggregate {
            sender,
            epoch,
            seq,
            shares,
        } => aggregate::put_transfer(out, sender, *epoch, *seq, shares),
        Message::AggregateAck { epoch, seq } => aggregate::put_ack(out, *epoch, *seq),
        Message::KvRecords(records) => kv::put_records(out, records),
        Message::KvSyncRequest { session, request } => {
            put_varint(out, u64::from(*session));
            kv::put_sync_request(out, request);
        }
        Message::KvSyncResponse { session, response } => {
            put_varint(out, u64::from(*session));
            kv::put_sync_response(out, response);
        }
        Message::UserEvent(ev) => put_user_event(out, ev),
        Message::Query(q) => query::put_query(out, q),
        Message::QueryResponse(r) => query::put_query_response(out, r),
        Message::Pull { alive, digest } => {
            put_alive(out, alive);
            put_varint(out, digest.len() as u64);
            for d in digest {
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
        Message::KvClock(p) => kv::put_clock_probe(out, p),
        Message::Lacking { positions } => {
            put_varint(out, positions.len() as u64);
            let mut next = 0u32;
            for &p in positions {
                put_varint(out, u64::from(p.saturating_sub(next)));
                next = p.saturating_add(1);
            }
        }
        Message::Reap { incarnation, name } => {
            put_varint(out, *incarnation);
            put_str(out, name);
        }
        Message::View(m) => overlay::put_view(out, m),
        Message::Tree(m) => overlay::put_tree(out, m),
        Message::Membership(m) => out.push(match m {
            crate::config::Membership::Full => 0,
            crate::config::Membership::Partial => 1,
        }),
    }
}

fn put_user_event(out: &mut Vec<u8>, ev: &UserEvent) {
    put_varint(out, ev.ltime);
    put_str(out, &ev.origin);
    put_str(out, &ev.name);
    put_varint(out, ev.payload.len() as u64);
    out.extend_from_slice(&ev.payload);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn put_alive(out: &mut Vec<u8>, a: &Alive) {
    put_varint(out, a.incarnation);
    put_str(out, &a.name);
    put_addr(out, a.addr);
    out.push(a.protocol.0);
    out.push(a.protocol.1);
    put_tags(out, &a.tags);
}

fn put_tags(out: &mut Vec<u8>, tags: &Tags) {
    put_varint(out, tags.len() as u64);
    for (k, v) in tags {
        put_str(out, k);
        put_str(out, v);
    }
}

/// Bytes `tags` take on the wire.
pub fn tags_encoded_len(tags: &Tags) -> usize {
    let mut out = Vec::new();
    put_tags(&mut out, tags);
    out.len()
}
