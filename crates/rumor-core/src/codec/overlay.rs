//! Wire encoding of the partial-membership messages ([`crate::overlay`]):
//! HyParView's (`View`, type 23) and Plumtree's (`Tree`, type 24). Peers
//! are addresses; the sender is the datagram's source.
//!
//! View: a kind byte, then `ForwardJoin`: joiner, ttl u8; `Neighbor`,
//! `NeighborReply`, `Disconnect`: a flag byte; `Shuffle`: origin, ttl u8,
//! peer count and peers; `ShuffleReply`: peer count and peers; the others
//! nothing. Tree: a kind byte, then `Gossip`: id, round, payload length and
//! bytes; `IHave`: count, then (id, round) each; `Graft`: a flag byte and
//! the id if set; `Prune`: nothing.

use std::net::SocketAddr;

use super::{put_addr, put_varint, DecodeError, Reader};
use crate::message::Message;
use crate::overlay::hyparview::ViewMessage;
use crate::overlay::plumtree::TreeMessage;

/// Bytes the smallest address takes (`4`, IPv4, port).
const MIN_ADDR: usize = 7;

impl Reader<'_> {
    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed("flag")),
        }
    }

    fn round(&mut self) -> Result<u16, DecodeError> {
        u16::try_from(self.varint()?).map_err(|_| DecodeError::Malformed("round"))
    }

    fn peers(&mut self) -> Result<Vec<SocketAddr>, DecodeError> {
        let count = self.len()?;
        if count > self.0.len() / MIN_ADDR {
            return Err(DecodeError::Truncated);
        }
        (0..count).map(|_| self.addr()).collect()
    }

    pub(super) fn view(&mut self) -> Result<Message, DecodeError> {
        let msg = match self.u8()? {
            0 => ViewMessage::Join,
            1 => ViewMessage::ForwardJoin {
                joiner: self.addr()?,
                ttl: self.u8()?,
            },
            2 => ViewMessage::Connect,
            3 => ViewMessage::Neighbor { high: self.flag()? },
            4 => ViewMessage::NeighborReply {
                accepted: self.flag()?,
            },
            5 => ViewMessage::Disconnect {
                leaving: self.flag()?,
            },
            6 => ViewMessage::Shuffle {
                origin: self.addr()?,
                ttl: self.u8()?,
                peers: self.peers()?,
            },
            7 => ViewMessage::ShuffleReply {
                peers: self.peers()?,
            },
            8 => ViewMessage::Ping,
            9 => ViewMessage::Pong,
            _ => return Err(DecodeError::Malformed("view message kind")),
        };
        Ok(Message::View(msg))
    }

    pub(super) fn tree(&mut self) -> Result<Message, DecodeError> {
        let msg = match self.u8()? {
            0 => {
                let id = self.varint()?;
                let round = self.round()?;
                let len = self.len()?;
                TreeMessage::Gossip {
                    id,
                    round,
                    payload: self.take(len)?.to_vec(),
                }
            }
            1 => {
                let count = self.len()?;
                // Each announcement takes at least 2 bytes.
                if count > self.0.len() / 2 {
                    return Err(DecodeError::Truncated);
                }
                let ids = (0..count)
                    .map(|_| Ok((self.varint()?, self.round()?)))
                    .collect::<Result<_, DecodeError>>()?;
                TreeMessage::IHave(ids)
            }
            2 => TreeMessage::Graft {
                id: if self.flag()? {
                    Some(self.varint()?)
                } else {
                    None
                },
            },
            3 => TreeMessage::Prune,
            _ => return Err(DecodeError::Malformed("tree message kind")),
        };
        Ok(Message::Tree(msg))
    }
}

fn put_peers(out: &mut Vec<u8>, peers: &[SocketAddr]) {
    put_varint(out, peers.len() as u64);
    for &p in peers {
        put_addr(out, p);
    }
}

pub(super) fn put_view(out: &mut Vec<u8>, msg: &ViewMessage<SocketAddr>) {
    match msg {
        ViewMessage::Join => out.push(0),
        ViewMessage::ForwardJoin { joiner, ttl } => {
            out.push(1);
            put_addr(out, *joiner);
            out.push(*ttl);
        }
        ViewMessage::Connect => out.push(2),
        ViewMessage::Neighbor { high } => out.extend([3, u8::from(*high)]),
        ViewMessage::NeighborReply { accepted } => out.extend([4, u8::from(*accepted)]),
        ViewMessage::Disconnect { leaving } => out.extend([5, u8::from(*leaving)]),
        ViewMessage::Shuffle { origin, ttl, peers } => {
            out.push(6);
            put_addr(out, *origin);
            out.push(*ttl);
            put_peers(out, peers);
        }
        ViewMessage::ShuffleReply { peers } => {
            out.push(7);
            put_peers(out, peers);
        }
        ViewMessage::Ping => out.push(8),
        ViewMessage::Pong => out.push(9),
    }
}

pub(super) fn put_tree(out: &mut Vec<u8>, msg: &TreeMessage<Vec<u8>>) {
    match msg {
        TreeMessage::Gossip { id, round, payload } => {
            out.push(0);
            put_varint(out, *id);
            put_varint(out, u64::from(*round));
            put_varint(out, payload.len() as u64);
            out.extend_from_slice(payload);
        }
        TreeMessage::IHave(ids) => {
            out.push(1);
            put_varint(out, ids.len() as u64);
            for &(id, round) in ids {
                put_varint(out, id);
                put_varint(out, u64::from(round));
            }
        }
        TreeMessage::Graft { id } => {
            out.push(2);
            out.push(u8::from(id.is_some()));
            if let Some(id) = id {
                put_varint(out, *id);
            }
        }
        TreeMessage::Prune => out.push(3),
    }
}
