//! Heap bytes a node spends per known member.
//!
//! A counting global allocator tracks live heap bytes. A node learns 10,000
//! members (16-byte names, no tags) three ways, and the bench prints the
//! heap growth per member, beyond the bytes of the names themselves:
//! - `push-pull`: one push-pull stream carrying all members (the join path);
//! - `alive gossip, queued`: alive datagrams, right after they arrive, while
//!   every claim still waits in the piggyback queue for re-gossip;
//! - `alive gossip, drained`: the same node after its gossip ticks have
//!   retired every queued claim.
//!
//! The target is at most 100 bytes per member beyond name and tags.
//! Run: `cargo bench -p rumor-core --bench membership_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;

use rumor_core::codec;
use rumor_core::message::{Alive, MemberRecord, Message, MessageType, PushPull};
use rumor_core::{Config, Instant, MemberState, Node};

/// The system allocator, counting live bytes and live blocks, with a
/// histogram of live blocks by size.
struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
/// Live blocks by exact size up to 256 bytes, then by power of two.
static BY_SIZE: [AtomicI64; SIZE_SLOTS] = [const { AtomicI64::new(0) }; SIZE_SLOTS];
/// Live bytes in each slot of [`BY_SIZE`].
static BYTES_BY_SIZE: [AtomicI64; SIZE_SLOTS] = [const { AtomicI64::new(0) }; SIZE_SLOTS];
const SIZE_SLOTS: usize = 257 + 64;

fn slot(size: usize) -> usize {
    if size <= 256 {
        size
    } else {
        257 + (usize::BITS - (size - 1).leading_zeros()) as usize
    }
}

fn slot_label(slot: usize) -> String {
    if slot <= 256 {
        format!("{slot} B")
    } else {
        let hi = 1u64 << (slot - 257);
        format!("{}..={} B", hi / 2 + 1, hi)
    }
}

fn track(size: usize, sign: i64) {
    LIVE_BYTES.fetch_add(sign * size as i64, Relaxed);
    LIVE_BLOCKS.fetch_add(sign, Relaxed);
    BY_SIZE[slot(size)].fetch_add(sign, Relaxed);
    BYTES_BY_SIZE[slot(size)].fetch_add(sign * size as i64, Relaxed);
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size(), 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(layout.size(), -1);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(layout.size(), -1);
            track(new_size, 1);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MEMBERS: usize = 10_000;
const NAME_LEN: usize = 16;

fn name(i: usize) -> Arc<str> {
    let n = format!("member-{i:09}");
    debug_assert_eq!(n.len(), NAME_LEN);
    Arc::from(n)
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)),
        7946,
    )
}

fn alive(i: usize) -> Alive {
    Alive {
        incarnation: 1,
        name: name(i),
        addr: addr(i),
        protocol: (codec::PROTOCOL_MIN, codec::PROTOCOL_MAX),
        tags: Arc::default(),
    }
}

fn new_node() -> Node {
    let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 255, 0, 1)), 7946);
    Node::new("member-local-000", a, Config::lan(), 3).expect("valid node")
}

/// Index of alive messages in [`rumor_core::Stats::messages_out`].
const ALIVE: usize = MessageType::Alive as usize - 1;

/// Answer every ping the node sent, as a healthy cluster would.
fn ack_pings(node: &mut Node, now: Instant) {
    let mut acks = Vec::new();
    while let Some(tx) = node.poll_transmit() {
        if let Ok(d) = codec::decode(&tx.payload) {
            for m in d.messages {
                if let Message::Ping { seq, .. } = m {
                    acks.push((tx.to, codec::encode_packet(&Message::Ack { seq })));
                }
            }
        }
    }
    for (from, ack) in acks {
        node.handle_datagram(now, from, &ack);
    }
    drain(node);
}

fn drain(node: &mut Node) {
    while node.poll_event().is_some() {}
    while node.poll_transmit().is_some() {}
}

/// Heap bytes and blocks live now, and the size histogram.
struct Snapshot {
    bytes: i64,
    blocks: i64,
    by_size: Vec<i64>,
    bytes_by_size: Vec<i64>,
}

fn snapshot() -> Snapshot {
    Snapshot {
        bytes: LIVE_BYTES.load(Relaxed),
        blocks: LIVE_BLOCKS.load(Relaxed),
        by_size: BY_SIZE.iter().map(|c| c.load(Relaxed)).collect(),
        bytes_by_size: BYTES_BY_SIZE.iter().map(|c| c.load(Relaxed)).collect(),
    }
}

/// Print the growth from `before` to now, per member, and return the bytes
/// per member beyond the names.
fn report(label: &str, before: &Snapshot, node: &Node) -> f64 {
    let after = snapshot();
    assert_eq!(node.num_members(), MEMBERS + 1, "{label}: members learned");
    let bytes = after.bytes - before.bytes;
    let blocks = after.blocks - before.blocks;
    let per_member = bytes as f64 / MEMBERS as f64;
    let beyond = per_member - NAME_LEN as f64;
    println!(
        "{label}: {bytes} heap bytes in {blocks} blocks for {MEMBERS} members: \
         {per_member:.1} B/member, {beyond:.1} B/member beyond the {NAME_LEN}-byte name \
         (target <= 100)"
    );
    println!("  live blocks added, by size:");
    for s in 0..SIZE_SLOTS {
        let d = after.by_size[s] - before.by_size[s];
        let b = after.bytes_by_size[s] - before.bytes_by_size[s];
        if d == 0 && b == 0 {
            continue;
        }
        println!(
            "    {:>18}: {d:>6} blocks, {b:>8} bytes, {:>6.1} B/member",
            slot_label(s),
            b as f64 / MEMBERS as f64
        );
    }
    beyond
}

fn main() {
    println!(
        "membership memory: {MEMBERS} members, {NAME_LEN}-byte names, no tags, IPv4 addresses"
    );
    println!(
        "  sizes: SocketAddr {} B, Member {} B, Event {} B, Transmit {} B, Message {} B",
        std::mem::size_of::<SocketAddr>(),
        std::mem::size_of::<rumor_core::Member>(),
        std::mem::size_of::<rumor_core::Event>(),
        std::mem::size_of::<rumor_core::Transmit>(),
        std::mem::size_of::<Message>(),
    );

    // 1. One push-pull stream with every member (the join handshake).
    let pp = Message::PushPull(PushPull {
        join: false,
        reply: true,
        events: Vec::new(),
        members: (1..=MEMBERS)
            .map(|i| MemberRecord {
                alive: alive(i),
                state: MemberState::Alive,
            })
            .collect(),
    });
    let stream = codec::encode_packet(&pp);
    drop(pp);
    let mut node = new_node();
    let now = Instant::from_micros(1_000_000);
    // The answer to the node's own join request (a node trusts the members
    // in an answer it asked for).
    node.join(now, &[addr(1)]);
    drain(&mut node);
    let before = snapshot();
    let reply = node.handle_stream(now, addr(1), &stream);
    drop(reply);
    drain(&mut node);
    let push_pull = report("push-pull", &before, &node);
    drop(node);
    drop(stream);

    // 2. Alive datagrams, packed 1400 bytes each, as gossip delivers them.
    let mut packets = Vec::new();
    let mut buf = Vec::new();
    for i in 1..=MEMBERS {
        let mut one = Vec::new();
        codec::encode_message(&Message::Alive(alive(i)), &mut one);
        if buf.is_empty() {
            codec::begin_packet(&mut buf);
        }
        if buf.len() + one.len() > 1400 {
            packets.push(std::mem::take(&mut buf));
            codec::begin_packet(&mut buf);
        }
        buf.extend_from_slice(&one);
    }
    packets.push(buf);
    let mut node = new_node();
    let mut t = 1_000_000u64;
    node.handle_timeout(Instant::from_micros(t));
    drain(&mut node);
    let before = snapshot();
    for p in &packets {
        let now = Instant::from_micros(t);
        node.handle_datagram(now, addr(1), p);
        // Relayed claims are admitted once their members ack a ping.
        ack_pings(&mut node, now);
        drain(&mut node);
    }
    let queued = report("alive gossip, queued", &before, &node);

    // Let gossip and probe ticks retire every queued claim (each is sent
    // 4 * ceil(log10(n + 1)) = 20 times). Every ping is acknowledged at once
    // so that no member is suspected meanwhile. The queue is empty once a
    // few gossip ticks in a row send no alive message.
    let mut ticks = 0;
    let mut quiet = 0;
    let mut last_sent = node.stats().messages_out[ALIVE];
    while quiet < 5 && ticks < 100_000 {
        t += 200_000;
        let now = Instant::from_micros(t);
        node.handle_timeout(now);
        ack_pings(&mut node, now);
        ticks += 1;
        let sent = node.stats().messages_out[ALIVE];
        quiet = if sent == last_sent { quiet + 1 } else { 0 };
        last_sent = sent;
    }
    println!(
        "  ({ticks} ticks of 200 ms, {} alive messages sent, {} suspicions started)",
        node.stats().messages_out[ALIVE],
        node.stats().suspicions,
    );
    let drained = report("alive gossip, drained", &before, &node);
    drop(node);
    // Dropped only now: they were allocated before the baseline.
    drop(packets);

    println!(
        "summary: push-pull {push_pull:.1} B/member, gossip queued {queued:.1} B/member, \
         gossip drained {drained:.1} B/member beyond names (target <= 100)"
    );
}
