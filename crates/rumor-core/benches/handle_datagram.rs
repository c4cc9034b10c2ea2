//! Cost of receiving one full datagram: a ping plus piggybacked alive,
//! suspect and dead messages filling the 1400-byte packet budget, on a node
//! that knows 100 members.
//!
//! Run: `cargo bench -p rumor-core --bench handle_datagram -- --quick`
//!
//! Benchmarks:
//! - `decode/full_packet`: `codec::decode` alone;
//! - `handle_datagram/redundant`: the node already knows every claim in the
//!   packet (the steady state: each update arrives many times), so the work
//!   is decoding, looking members up, answering the ping;
//! - `handle_datagram/fresh`: every claim is news to the node (higher
//!   incarnations, new suspicions, deaths), so it also changes state, sets
//!   timers, emits events and queues the claims for re-gossip.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rumor_core::codec;
use rumor_core::message::{Alive, MemberRecord, Message, PushPull};
use rumor_core::{Config, Instant, MemberState, Node};

const MEMBERS: usize = 100;
const LOCAL: &str = "member-local-000";

fn member_name(i: usize) -> Arc<str> {
    Arc::from(format!("member-{i:09}"))
}

fn member_addr(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)),
        7946,
    )
}

fn alive(i: usize, incarnation: u64) -> Alive {
    Alive {
        incarnation,
        name: member_name(i),
        addr: member_addr(i),
        protocol: (codec::PROTOCOL_MIN, codec::PROTOCOL_MAX),
        tags: Arc::default(),
    }
}

/// A node that has learned `MEMBERS` other members through the push-pull
/// answering its join.
fn node() -> Node {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)), 7946);
    let mut node = Node::new(LOCAL, addr, Config::lan(), 1).expect("valid node");
    let pp = PushPull {
        join: false,
        reply: true,
        events: Vec::new(),
        members: (1..=MEMBERS)
            .map(|i| MemberRecord {
                alive: alive(i, 1),
                state: MemberState::Alive,
            })
            .collect(),
    };
    let bytes = codec::encode_packet(&Message::PushPull(pp));
    let now = Instant::from_micros(1_000_000);
    // The answer to its own join request: a node trusts the members in it.
    node.join(now, &[member_addr(1)]);
    while node.poll_transmit().is_some() {}
    node.handle_stream(now, member_addr(1), &bytes);
    while node.poll_event().is_some() {}
    while node.poll_transmit().is_some() {}
    assert_eq!(node.num_members(), MEMBERS + 1);
    node
}

/// A ping to the local node followed by claims about distinct members,
/// cycling alive (incarnation 2), suspect (1) and dead (1), up to 1400 bytes.
fn full_packet() -> (Vec<u8>, usize) {
    let mut buf = Vec::with_capacity(1400);
    codec::begin_packet(&mut buf);
    codec::encode_message(
        &Message::Ping {
            seq: 4242,
            target: LOCAL.into(),
        },
        &mut buf,
    );
    let mut count = 1;
    for i in 1..=MEMBERS {
        let msg = match i % 3 {
            0 => Message::Alive(alive(i, 2)),
            1 => Message::Suspect {
                incarnation: 1,
                name: member_name(i),
                from: member_name(i % MEMBERS + 1),
            },
            _ => Message::Dead {
                incarnation: 1,
                name: member_name(i),
                from: member_name(i % MEMBERS + 1),
            },
        };
        let mut one = Vec::new();
        codec::encode_message(&msg, &mut one);
        if buf.len() + one.len() > 1400 {
            break;
        }
        buf.extend_from_slice(&one);
        count += 1;
    }
    (buf, count)
}

fn bench(c: &mut Criterion) {
    let (packet, count) = full_packet();
    eprintln!("packet: {} bytes, {count} messages", packet.len());
    let from = member_addr(7);

    c.bench_function("decode/full_packet", |b| {
        b.iter(|| codec::decode(black_box(&packet)).map(|d| d.messages.len()))
    });

    let mut steady = node();
    let mut t = 2_000_000u64;
    steady.handle_datagram(Instant::from_micros(t), from, &packet);
    c.bench_function("handle_datagram/redundant", |b| {
        b.iter(|| {
            t += 1;
            steady.handle_datagram(Instant::from_micros(t), from, black_box(&packet));
            while let Some(tx) = steady.poll_transmit() {
                black_box(tx);
            }
            while let Some(ev) = steady.poll_event() {
                black_box(ev);
            }
        })
    });

    c.bench_function("handle_datagram/fresh", |b| {
        b.iter_batched(
            node,
            |mut n| {
                n.handle_datagram(Instant::from_micros(2_000_000), from, black_box(&packet));
                while let Some(tx) = n.poll_transmit() {
                    black_box(tx);
                }
                while let Some(ev) = n.poll_event() {
                    black_box(ev);
                }
                n
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
