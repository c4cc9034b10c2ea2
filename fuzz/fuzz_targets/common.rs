//! Helpers shared by the node targets: a node that already knows a few
//! members, and checks that everything a node sends is well formed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use rumor_core::codec;
use rumor_core::message::{Alive, MemberRecord, Message, PushPull};
use rumor_core::{Config, Instant, MemberState, Node};

/// Members the node knows before the fuzz input arrives, so that claims
/// about them reach the merge rules instead of being ignored as unknown.
pub const KNOWN: [&str; 4] = ["a", "b", "c", "d"];

/// The address of member `i`.
pub fn addr(i: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)), 7946)
}

/// A node called "local" at 127.0.0.100 that knows [`KNOWN`], all alive.
pub fn node() -> Node {
    node_named("local", 100)
}

/// A node called `name` at 127.0.0.`host` that knows [`KNOWN`], all alive.
pub fn node_named(name: &str, host: u8) -> Node {
    let mut node = Node::new(name, addr(host), Config::lan(), 1).expect("valid node");
    let members = KNOWN
        .iter()
        .enumerate()
        .map(|(i, name)| MemberRecord {
            alive: Alive {
                incarnation: 1,
                name: Arc::from(*name),
                addr: addr(i as u8 + 1),
                protocol: (codec::PROTOCOL_MIN, codec::PROTOCOL_MAX),
                tags: Arc::default(),
            },
            state: MemberState::Alive,
        })
        .collect();
    let pp = Message::PushPull(PushPull {
        join: false,
        reply: true,
        events: Vec::new(),
        members,
    });
    node.handle_stream(Instant::ZERO, addr(1), &codec::encode_packet(&pp));
    drain(&mut node);
    node
}

/// Take every transmit and event, checking that each packet the node sends
/// decodes and that datagrams respect the packet size.
pub fn drain(node: &mut Node) {
    let packet_size = node.config().packet_size;
    while let Some(t) = node.poll_transmit() {
        if !t.is_stream() {
            assert!(
                t.payload.len() <= packet_size,
                "datagram of {} bytes",
                t.payload.len()
            );
        }
        let decoded = codec::decode(&t.payload);
        assert!(
            decoded.is_ok(),
            "the node sent an undecodable packet: {decoded:?}"
        );
    }
    while node.poll_event().is_some() {}
    assert!(node.num_live() <= node.num_members());
}
