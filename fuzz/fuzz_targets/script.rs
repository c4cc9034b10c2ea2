//! A fuzz script: a flat byte format for a sequence of inputs to one node
//! (datagrams, streams, timers, unreachable reports and local commands),
//! and the runner that plays it. The node targets all end here, and so does
//! the regression test `crates/rumor-core/tests/fuzz_regressions.rs`, which
//! replays saved scripts through this same file.
//!
//! A script is a list of records `[op u8][advance u8][sender u8][len u16 LE]
//! [len bytes]` (a short last record takes what is left). Before each record
//! the clock moves by `advance * 10 ms`; `sender` picks one of eight loopback
//! addresses (the four known members, strangers, or the node itself); `op`
//! indexes the target's table of [`Op`]s (modulo its length). After each
//! record the node's due timers run and its output is drained and checked;
//! after the last one a minute of timers runs.

#![allow(dead_code)] // each target uses part of the op table

use rumor_core::{codec, Instant, Node};

use crate::common;

/// What one record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `handle_datagram(bytes)`.
    Datagram,
    /// `handle_stream(bytes)`; a reply must decode and a second node must
    /// take it without a decode error.
    Stream,
    /// Only time passes (the timers run as after every record).
    Timers,
    /// `handle_unreachable(sender)`.
    Unreachable,
    /// `send_event("e", bytes)`: ticks the Lamport clock others may have
    /// pushed to its maximum.
    SendEvent,
    /// `state_write(key, value)` with key and value taken from the bytes:
    /// bumps this node's own state version.
    StateWrite,
    /// `kv_put(key, bytes)` (or a delete when the bytes are empty): ticks
    /// the hybrid logical clock.
    KvWrite,
    /// `track_aggregate(name)`: starts push-sum rounds.
    TrackAggregate,
    /// `leave`, or `join` through member `a` when already leaving.
    LeaveOrJoin,
}

/// Every op: the table of targets that drive the node through everything.
pub const ALL_OPS: [Op; 9] = [
    Op::Datagram,
    Op::Stream,
    Op::Timers,
    Op::Unreachable,
    Op::SendEvent,
    Op::StateWrite,
    Op::KvWrite,
    Op::TrackAggregate,
    Op::LeaveOrJoin,
];

/// Streams and timers only.
pub const STREAM_OPS: [Op; 2] = [Op::Stream, Op::Timers];

/// Microseconds of simulated time at the first record.
const START: u64 = 1_000_000;

/// Append one record to `script` (the structured target builds scripts
/// with this). Bytes beyond `u16::MAX` are cut.
pub fn push_record(script: &mut Vec<u8>, op: u8, advance: u8, sender: u8, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(u16::MAX as usize)];
    script.extend_from_slice(&[op, advance, sender]);
    script.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    script.extend_from_slice(bytes);
}

/// Play `script` against a fresh [`common::node`], with `ops` as the table
/// that record op codes index.
pub fn run(script: &[u8], ops: &[Op]) {
    let mut node = common::node();
    let mut peer: Option<Node> = None;
    let mut now = START;
    let mut rest = script;
    while let [op, advance, sender, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(tail.len());
        let (bytes, after) = tail.split_at(len);
        rest = after;
        now += u64::from(*advance) * 10_000;
        let t = Instant::from_micros(now);
        let from = common::addr(sender % 8 + 1);
        let op = ops[usize::from(*op) % ops.len()];
        apply(&mut node, &mut peer, t, from, op, bytes);
        common::drain(&mut node);
        node.handle_timeout(t);
        common::drain(&mut node);
    }
    // Let a minute pass so every timer (probes, suspicions, reaping) runs.
    let end = now + 60_000_000;
    while let Some(at) = node.poll_timeout() {
        if at.as_micros() > end {
            break;
        }
        node.handle_timeout(at);
        common::drain(&mut node);
    }
}

/// One record's input. Local commands may refuse (`Err`): that is fine,
/// only a panic is a finding.
fn apply(
    node: &mut Node,
    peer: &mut Option<Node>,
    t: Instant,
    from: std::net::SocketAddr,
    op: Op,
    bytes: &[u8],
) {
    match op {
        Op::Datagram => node.handle_datagram(t, from, bytes),
        Op::Stream => {
            if let Some(reply) = node.handle_stream(t, from, bytes) {
                assert!(codec::decode(&reply).is_ok(), "undecodable reply");
                let peer = peer.get_or_insert_with(|| common::node_named("peer", 101));
                let errors = peer.stats().decode_errors;
                let _ = peer.handle_stream(t, common::addr(100), &reply);
                assert_eq!(peer.stats().decode_errors, errors, "reply refused");
                common::drain(peer);
            }
        }
        Op::Timers => {}
        Op::Unreachable => node.handle_unreachable(t, from),
        Op::SendEvent => {
            let _ = node.send_event(t, "e", bytes);
        }
        Op::StateWrite => {
            let (key, value) = split_text(bytes);
            let value = (!value.is_empty()).then_some(value.as_str());
            let _ = node.state_write(t, &key, value);
        }
        Op::KvWrite => {
            let (key, value) = split_text(bytes);
            let _ = if value.is_empty() {
                node.kv_delete(t, &key)
            } else {
                node.kv_put(t, &key, value.into_bytes())
            };
        }
        Op::TrackAggregate => {
            let (name, _) = split_text(bytes);
            let _ = node.track_aggregate(t, &name);
        }
        Op::LeaveOrJoin => {
            if node.is_leaving() {
                node.join(t, &[common::addr(1)]);
            } else {
                node.leave(t);
            }
        }
    }
}

/// A key (the bytes before the first 0, at least "k") and a value (the
/// rest), both lossily UTF-8.
fn split_text(bytes: &[u8]) -> (String, String) {
    let (key, value) = match bytes.iter().position(|&b| b == 0) {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[][..]),
    };
    let mut key = String::from_utf8_lossy(key).into_owned();
    if key.is_empty() {
        key.push('k');
    }
    (key, String::from_utf8_lossy(value).into_owned())
}
