//! Wire-format tests: round trips of every message type, robustness of the
//! decoder against arbitrary and damaged input, forward compatibility
//! (unknown message types, unsupported versions), the node's counters for
//! undecodable input, and the encoded sizes of the common messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use rumor_core::aggregate::Share;
use rumor_core::codec::{self, DecodeError, Decoded, PROTOCOL_MAX, PROTOCOL_MIN};
use rumor_core::kv::{
    Dot, Entry, LwwEntry, Record, Refusal, Sibling, SiblingSet, SyncRequest, SyncResponse,
    Timestamp, VersionVector,
};
use rumor_core::message::{
    Alive, MemberRecord, Message, MessageType, PushPull, StateSync, SyncMode, SyncPhase, UserEvent,
};
use rumor_core::overlay::hyparview::ViewMessage;
use rumor_core::overlay::plumtree::TreeMessage;
use rumor_core::state::{Delta, Entry as StateEntry};
use rumor_core::{Config, Instant, MemberState, Node, Tags};

// ----- strategies -----

/// Member names up to the 128-byte limit: plain ASCII, or any printable
/// Unicode (at most 32 chars of at most 4 bytes each).
fn name() -> impl Strategy<Value = Arc<str>> {
    prop_oneof!["[a-zA-Z0-9._-]{0,128}", "\\PC{0,32}"].prop_map(|s: String| Arc::from(s))
}

/// IPv4 and IPv6 socket addresses. The wire carries ip and port only, so
/// IPv6 flow info and scope id are left zero (see the report on scope ids).
fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<u128>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn tags() -> impl Strategy<Value = Arc<Tags>> {
    btree_map("\\PC{0,12}", "\\PC{0,24}", 0..6).prop_map(Arc::new)
}

fn alive() -> impl Strategy<Value = Alive> {
    (any::<u64>(), name(), addr(), any::<(u8, u8)>(), tags()).prop_map(
        |(incarnation, name, addr, protocol, tags)| Alive {
            incarnation,
            name,
            addr,
            protocol,
            tags,
        },
    )
}

fn member_state() -> impl Strategy<Value = MemberState> {
    prop_oneof![
        Just(MemberState::Alive),
        Just(MemberState::Suspect),
        Just(MemberState::Dead),
        Just(MemberState::Left),
    ]
}

fn push_pull() -> impl Strategy<Value = PushPull> {
    (
        any::<bool>(),
        any::<bool>(),
        vec(
            (alive(), member_state()).prop_map(|(alive, state)| MemberRecord { alive, state }),
            0..12,
        ),
        vec(user_event(), 0..3),
    )
        .prop_map(|(join, reply, members, events)| PushPull {
            join,
            reply,
            members,
            events,
        })
}

fn user_event() -> impl Strategy<Value = UserEvent> {
    (any::<u64>(), name(), "\\PC{0,16}", vec(any::<u8>(), 0..64)).prop_map(
        |(ltime, origin, name, payload)| UserEvent {
            ltime,
            origin,
            name,
            payload,
        },
    )
}

fn delta() -> impl Strategy<Value = Delta> {
    (
        name(),
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        vec(
            (
                "\\PC{0,16}",
                any::<u64>(),
                proptest::option::of("\\PC{0,24}"),
            ),
            0..5,
        ),
    )
        .prop_map(|(owner, reset, from, through, entries)| Delta {
            owner,
            reset,
            from,
            through,
            entries: entries
                .into_iter()
                .map(|(k, version, value)| (k, StateEntry { value, version }))
                .collect(),
        })
}

fn state_sync() -> impl Strategy<Value = StateSync> {
    (
        name(),
        prop_oneof![
            Just(SyncPhase::Syn),
            Just(SyncPhase::SynAck),
            Just(SyncPhase::Ack)
        ],
        prop_oneof![
            Just(SyncMode::Push),
            Just(SyncMode::Pull),
            Just(SyncMode::PushPull)
        ],
        any::<u64>(),
        any::<bool>(),
        vec((name(), any::<u64>()), 0..6),
        vec(delta(), 0..3),
    )
        .prop_map(
            |(sender, phase, mode, digest_hash, complete, digest, deltas)| StateSync {
                sender,
                phase,
                mode,
                digest_hash,
                complete,
                digest,
                deltas,
            },
        )
}

/// Finite numbers only: the decoder refuses NaN and infinities.
fn share() -> impl Strategy<Value = Share> {
    let f = || -1e12f64..1e12;
    (f(), f(), f(), f(), f(), f()).prop_map(|(s, w, c, u, min, max)| Share {
        s,
        w,
        c,
        u,
        min,
        max,
    })
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (any::<u64>(), any::<u32>(), name()).prop_map(|(w, l, n)| Timestamp::new(w, l, n))
}

fn kv_entry() -> impl Strategy<Value = Entry> {
    let value = || proptest::option::of(vec(any::<u8>(), 0..40));
    prop_oneof![
        (timestamp(), value()).prop_map(|(ts, value)| Entry::Lww(LwwEntry { value, ts })),
        (
            vec((name(), any::<u64>()), 0..4),
            vec((name(), any::<u64>(), timestamp(), value()), 0..4),
        )
            .prop_map(|(ctx, sibs)| {
                let mut context = VersionVector::new();
                for (n, c) in ctx {
                    context.observe(&n, c);
                }
                let siblings = sibs
                    .into_iter()
                    .map(|(node, counter, ts, value)| {
                        (Dot { node, counter }, Sibling { ts, value })
                    })
                    .collect();
                Entry::Siblings(SiblingSet::from_parts(siblings, context))
            }),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    ("\\PC{0,24}", kv_entry()).prop_map(|(key, entry)| Record { key, entry })
}

fn sync_request() -> impl Strategy<Value = SyncRequest> {
    prop_oneof![
        (any::<u8>(), any::<u64>()).prop_map(|(depth, root)| SyncRequest::Root { depth, root }),
        (any::<u8>(), vec(any::<u32>(), 0..20))
            .prop_map(|(level, nodes)| SyncRequest::Children { level, nodes }),
        (vec(any::<u32>(), 0..10), vec(any::<(u64, u64)>(), 0..10))
            .prop_map(|(buckets, items)| SyncRequest::Buckets { buckets, items }),
    ]
}

fn sync_response() -> impl Strategy<Value = SyncResponse> {
    prop_oneof![
        Just(SyncResponse::InSync),
        any::<u8>().prop_map(|depth| SyncResponse::Refused(Refusal::DepthMismatch { depth })),
        Just(SyncResponse::Refused(Refusal::Malformed)),
        (any::<u8>(), vec(any::<u64>(), 0..33))
            .prop_map(|(level, hashes)| SyncResponse::Children { level, hashes }),
        (vec(record(), 0..4), vec(any::<u64>(), 0..8))
            .prop_map(|(records, want)| SyncResponse::Buckets { records, want }),
    ]
}

/// Any message, every type equally likely.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        user_event().prop_map(Message::UserEvent),
        state_sync().prop_map(Message::StateSync),
        delta().prop_map(Message::StateDelta),
        (
            name(),
            any::<u64>(),
            any::<u32>(),
            vec(("\\PC{0,16}", share()), 0..4)
        )
            .prop_map(|(sender, epoch, seq, shares)| Message::Aggregate {
                sender,
                epoch,
                seq,
                shares,
            }),
        (any::<u64>(), any::<u32>()).prop_map(|(epoch, seq)| Message::AggregateAck { epoch, seq }),
        vec(record(), 0..4).prop_map(Message::KvRecords),
        (any::<u32>(), sync_request())
            .prop_map(|(session, request)| Message::KvSyncRequest { session, request }),
        (any::<u32>(), sync_response())
            .prop_map(|(session, response)| Message::KvSyncResponse { session, response }),
        (alive(), vec(any::<u32>(), 0..20))
            .prop_map(|(alive, digest)| Message::Pull { alive, digest }),
        (any::<u32>(), name()).prop_map(|(seq, target)| Message::Ping { seq, target }),
        any::<u32>().prop_map(|seq| Message::Ack { seq }),
        (any::<u32>(), any::<bool>()).prop_map(|(seq, refused)| Message::Nack { seq, refused }),
        (any::<u32>(), name(), addr()).prop_map(|(seq, target, target_addr)| {
            Message::PingReq {
                seq,
                target,
                target_addr,
            }
        }),
        alive().prop_map(Message::Alive),
        (any::<u64>(), name(), name()).prop_map(|(incarnation, name, from)| Message::Suspect {
            incarnation,
            name,
            from,
        }),
        (any::<u64>(), name(), name()).prop_map(|(incarnation, name, from)| Message::Dead {
            incarnation,
            name,
            from,
        }),
        push_pull().prop_map(Message::PushPull),
        (any::<u64>(), name()).prop_map(|(incarnation, name)| Message::Reap { incarnation, name }),
        (any::<u32>(), any::<u64>(), any::<Option<u64>>()).prop_map(|(session, t0, t1)| {
            Message::KvClock(rumor_core::kv::ClockProbe { session, t0, t1 })
        }),
        proptest::collection::btree_set(any::<u32>(), 0..40).prop_map(|set| Message::Lacking {
            positions: set.into_iter().collect(),
        }),
        view().prop_map(Message::View),
        tree().prop_map(Message::Tree),
        any::<bool>().prop_map(|p| Message::Membership(if p {
            rumor_core::Membership::Partial
        } else {
            rumor_core::Membership::Full
        })),
    ]
}

fn view() -> impl Strategy<Value = ViewMessage<SocketAddr>> {
    let peers = || proptest::collection::vec(addr(), 0..8);
    prop_oneof![
        Just(ViewMessage::Join),
        (addr(), any::<u8>()).prop_map(|(joiner, ttl)| ViewMessage::ForwardJoin { joiner, ttl }),
        Just(ViewMessage::Connect),
        any::<bool>().prop_map(|high| ViewMessage::Neighbor { high }),
        any::<bool>().prop_map(|accepted| ViewMessage::NeighborReply { accepted }),
        any::<bool>().prop_map(|leaving| ViewMessage::Disconnect { leaving }),
        (addr(), any::<u8>(), peers()).prop_map(|(origin, ttl, peers)| ViewMessage::Shuffle {
            origin,
            ttl,
            peers
        }),
        peers().prop_map(|peers| ViewMessage::ShuffleReply { peers }),
        Just(ViewMessage::Ping),
        Just(ViewMessage::Pong),
    ]
}

fn tree() -> impl Strategy<Value = TreeMessage<Vec<u8>>> {
    prop_oneof![
        (
            any::<u64>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(id, round, payload)| TreeMessage::Gossip { id, round, payload }),
        proptest::collection::vec((any::<u64>(), any::<u16>()), 0..16).prop_map(TreeMessage::IHave),
        any::<Option<u64>>().prop_map(|id| TreeMessage::Graft { id }),
        Just(TreeMessage::Prune),
    ]
}

/// A compound packet of `msgs`, framed the way the node frames them.
fn compound(msgs: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    codec::begin_packet(&mut out);
    for m in msgs {
        codec::encode_message(m, &mut out);
    }
    out
}

/// Decode `bytes`; when that works, re-encoding what came out must decode to
/// the same messages and take no more bytes than the input did.
fn check_decode(bytes: &[u8]) {
    if let Ok(d) = codec::decode(bytes) {
        let again = compound(&d.messages);
        assert!(again.len() <= bytes.len(), "decoding made bytes up");
        if d.messages.is_empty() {
            return; // only unknown messages: nothing to re-encode
        }
        let d2 = codec::decode(&again).expect("re-encoded packet decodes");
        assert_eq!(d2.messages, d.messages);
        assert_eq!(d2.unknown, 0);
    }
}

fn addr4(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), port)
}

// ----- round trips -----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every message type survives encode then decode, alone.
    #[test]
    fn single_message_round_trips(msg in message()) {
        let bytes = codec::encode_packet(&msg);
        prop_assert_eq!(bytes[0], PROTOCOL_MAX);
        let d = codec::decode(&bytes).expect("decodes");
        prop_assert_eq!(d.unknown, 0);
        prop_assert_eq!(d.messages, vec![msg]);
    }

    /// Compound packets of several messages keep every message and their order.
    #[test]
    fn compound_packet_round_trips(msgs in vec(message(), 1..10)) {
        let bytes = compound(&msgs);
        let d = codec::decode(&bytes).expect("decodes");
        prop_assert_eq!(d.unknown, 0);
        prop_assert_eq!(d.messages, msgs);
    }

    /// `encode_packet` and `begin_packet` + `encode_message` agree.
    #[test]
    fn encode_packet_matches_framing(msg in message()) {
        prop_assert_eq!(codec::encode_packet(&msg), compound(std::slice::from_ref(&msg)));
    }
}

#[test]
fn every_message_type_is_covered() {
    // A fixed instance of each type, IPv4 and IPv6, with and without tags,
    // so a new variant added to `Message` without a test is noticed here.
    let mut tags = Tags::new();
    tags.insert("role".into(), "db".into());
    tags.insert("dc".into(), "eu-west-1".into());
    let a4 = Alive {
        incarnation: 7,
        name: "node-a".into(),
        addr: addr4(1, 7946),
        protocol: (PROTOCOL_MIN, PROTOCOL_MAX),
        tags: Arc::new(tags),
    };
    let a6 = Alive {
        incarnation: u64::MAX,
        name: "node-β".into(),
        addr: "[2001:db8::1]:7946".parse().unwrap(),
        protocol: (1, 3),
        tags: Arc::default(),
    };
    let msgs = vec![
        Message::Ping {
            seq: 1,
            target: "node-a".into(),
        },
        Message::Ping {
            seq: 2,
            target: "".into(),
        },
        Message::Ack { seq: u32::MAX },
        Message::Nack {
            seq: 0,
            refused: false,
        },
        Message::PingReq {
            seq: 300,
            target: "node-b".into(),
            target_addr: "[::1]:1".parse().unwrap(),
        },
        Message::Alive(a4.clone()),
        Message::Alive(a6.clone()),
        Message::Suspect {
            incarnation: 3,
            name: "node-b".into(),
            from: "node-a".into(),
        },
        Message::Dead {
            incarnation: 4,
            name: "node-b".into(),
            from: "node-b".into(),
        },
        Message::PushPull(PushPull {
            join: true,
            reply: false,
            events: Vec::new(),
            members: vec![
                MemberRecord {
                    alive: a4,
                    state: MemberState::Alive,
                },
                MemberRecord {
                    alive: a6,
                    state: MemberState::Left,
                },
            ],
        }),
    ];
    let mut msgs = msgs;
    let record = Record {
        key: "config/db".into(),
        entry: Entry::Lww(LwwEntry {
            value: Some(b"primary".to_vec()),
            ts: Timestamp::new(1_700_000_000_000_000, 2, "node-a"),
        }),
    };
    msgs.extend([
        Message::UserEvent(UserEvent {
            ltime: 9,
            origin: "node-a".into(),
            name: "deploy".into(),
            payload: b"v2".to_vec(),
        }),
        Message::StateSync(StateSync {
            sender: "node-a".into(),
            phase: SyncPhase::SynAck,
            mode: SyncMode::PushPull,
            digest_hash: 0xdead_beef,
            complete: true,
            digest: vec![("node-a".into(), 3)],
            deltas: vec![],
        }),
        Message::StateDelta(Delta {
            owner: "node-a".into(),
            reset: false,
            from: 0,
            through: 1,
            entries: vec![(
                "load".into(),
                StateEntry {
                    value: Some("0.5".into()),
                    version: 1,
                },
            )],
        }),
        Message::Aggregate {
            sender: "node-a".into(),
            epoch: 2,
            seq: 7,
            shares: vec![("load".into(), Share::initial(Some(1.5), true))],
        },
        Message::AggregateAck { epoch: 2, seq: 7 },
        Message::KvRecords(vec![record.clone()]),
        Message::KvSyncRequest {
            session: 1,
            request: SyncRequest::Root { depth: 4, root: 42 },
        },
        Message::KvSyncResponse {
            session: 1,
            response: SyncResponse::Buckets {
                records: vec![record],
                want: vec![5],
            },
        },
        Message::Pull {
            alive: Alive {
                incarnation: 2,
                name: "node-b".into(),
                addr: "10.0.0.2:7946".parse().unwrap(),
                protocol: (1, 1),
                tags: Arc::new(Tags::new()),
            },
            digest: vec![7, u32::MAX],
        },
        Message::Query(rumor_core::message::Query {
            ltime: 9,
            origin: "node-a".into(),
            origin_addr: "[::1]:7946".parse().unwrap(),
            name: "uptime".into(),
            payload: b"?".to_vec(),
            filters: vec![
                rumor_core::message::QueryFilter::Name("web-.*".into()),
                rumor_core::message::QueryFilter::Tag {
                    key: "dc".into(),
                    pattern: "eu|us".into(),
                },
            ],
            ack: true,
            relay_factor: 2,
            timeout_ms: 6400,
        }),
        Message::QueryResponse(rumor_core::message::QueryResponse {
            ltime: 9,
            from: "node-b".into(),
            ack: false,
            payload: vec![0, 1, 2],
            relay_to: Some("127.0.0.1:7946".parse().unwrap()),
        }),
        Message::Reap {
            incarnation: 9,
            name: "node-b".into(),
        },
        Message::KvClock(rumor_core::kv::ClockProbe {
            session: 3,
            t0: 1_700_000_000_000_000,
            t1: Some(1_700_000_000_500_000),
        }),
        Message::Lacking {
            positions: vec![0, 1, 7, 300, u32::MAX],
        },
        Message::View(ViewMessage::Shuffle {
            origin: "127.0.0.1:7946".parse().unwrap(),
            ttl: 6,
            peers: vec![
                "127.0.0.2:7946".parse().unwrap(),
                "[::1]:7947".parse().unwrap(),
            ],
        }),
        Message::Tree(TreeMessage::Gossip {
            id: u64::MAX,
            round: u16::MAX,
            payload: b"hello".to_vec(),
        }),
        Message::Membership(rumor_core::Membership::Partial),
    ]);
    let mut kinds: Vec<MessageType> = msgs.iter().map(Message::kind).collect();
    kinds.dedup();
    assert_eq!(kinds, MessageType::ALL.to_vec());
    for m in &msgs {
        let d = codec::decode(&codec::encode_packet(m)).unwrap();
        assert_eq!(d.messages, vec![m.clone()]);
    }
    let d = codec::decode(&compound(&msgs)).unwrap();
    assert_eq!(d.messages, msgs);
}

#[test]
fn long_bodies_use_multi_byte_lengths() {
    // A body over 127 bytes needs a two-byte length; one over 16383 three.
    for n in [1usize, 5, 50, 600] {
        let members = (0..n)
            .map(|i| MemberRecord {
                alive: Alive {
                    incarnation: i as u64,
                    name: format!("member-{i:05}").into(),
                    addr: addr4((i % 250) as u8, 7946),
                    protocol: (1, 1),
                    tags: Arc::default(),
                },
                state: MemberState::Alive,
            })
            .collect();
        let msg = Message::PushPull(PushPull {
            join: false,
            reply: true,
            events: Vec::new(),
            members,
        });
        let bytes = codec::encode_packet(&msg);
        assert_eq!(codec::decode(&bytes).unwrap().messages, vec![msg]);
    }
}

// ----- robustness -----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Arbitrary bytes never make the decoder panic.
    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..1500)) {
        check_decode(&bytes);
    }

    /// The same with a valid version byte, so the message framing and bodies
    /// get exercised rather than the version check.
    #[test]
    fn random_bodies_never_panic(
        code in 0u8..=17,
        body in vec(any::<u8>(), 0..600),
        tail in vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![PROTOCOL_MAX, code];
        bytes.push(body.len().min(127) as u8);
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&tail);
        check_decode(&bytes);
        // And with a correct length for the body, whatever its size.
        let mut framed = vec![PROTOCOL_MAX, code];
        let mut len = body.len();
        while len >= 0x80 {
            framed.push((len as u8) | 0x80);
            len >>= 7;
        }
        framed.push(len as u8);
        framed.extend_from_slice(&body);
        check_decode(&framed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every strict prefix of a one-message packet is an error, never a panic.
    #[test]
    fn truncations_are_errors(msg in message()) {
        let bytes = codec::encode_packet(&msg);
        for cut in 0..bytes.len() {
            let r = codec::decode(&bytes[..cut]);
            prop_assert!(r.is_err(), "prefix of {} bytes decoded: {:?}", cut, r);
        }
    }

    /// Truncated compound packets decode to a prefix of the messages or fail.
    #[test]
    fn truncated_compounds_yield_prefixes(msgs in vec(message(), 1..6), frac in 0.0f64..1.0) {
        let bytes = compound(&msgs);
        let cut = ((bytes.len() as f64) * frac) as usize;
        if let Ok(d) = codec::decode(&bytes[..cut]) {
            prop_assert!(d.messages.len() < msgs.len());
            prop_assert_eq!(&d.messages[..], &msgs[..d.messages.len()]);
        }
    }

    /// Bit flips and byte overwrites of valid packets never panic; whatever
    /// still decodes re-encodes consistently.
    #[test]
    fn bit_flips_never_panic(
        msgs in vec(message(), 1..5),
        flips in vec((any::<prop::sample::Index>(), 0u8..8), 1..8),
        overwrite in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
    ) {
        let mut bytes = compound(&msgs);
        for (at, bit) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        if let Some((at, b)) = overwrite {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        check_decode(&bytes);
    }
}

#[test]
fn every_single_bit_flip_of_a_packet_is_handled() {
    let msgs = vec![
        Message::Ping {
            seq: 9,
            target: "target-name-0016".into(),
        },
        Message::Alive(Alive {
            incarnation: 1000,
            name: "member-x".into(),
            addr: "[fe80::1]:7946".parse().unwrap(),
            protocol: (1, 1),
            tags: Arc::new(Tags::from([("k".to_string(), "v".to_string())])),
        }),
        Message::Dead {
            incarnation: 2,
            name: "member-y".into(),
            from: "member-z".into(),
        },
    ];
    let bytes = compound(&msgs);
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        check_decode(&b);
    }
}

#[test]
fn hostile_lengths_fail_without_allocating() {
    // A push-pull claiming 2^60 members, a string claiming 2^62 bytes, and a
    // varint that never ends: each must fail quickly (no huge reservation).
    let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10];
    let mut pp = vec![PROTOCOL_MAX, MessageType::PushPull as u8, 10, 0];
    pp.extend_from_slice(&huge);
    pp[2] = (pp.len() - 3) as u8;
    assert!(codec::decode(&pp).is_err());

    let mut ping = vec![PROTOCOL_MAX, MessageType::Ping as u8, 0, 1];
    ping.extend_from_slice(&huge);
    ping[2] = (ping.len() - 3) as u8;
    assert_eq!(codec::decode(&ping), Err(DecodeError::Truncated));

    let mut endless = vec![PROTOCOL_MAX, MessageType::Ack as u8];
    endless.extend_from_slice(&[0xff; 40]);
    assert!(codec::decode(&endless).is_err());

    // A message length larger than the packet.
    let mut long = vec![PROTOCOL_MAX, MessageType::Ack as u8];
    long.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1]);
    assert_eq!(codec::decode(&long), Err(DecodeError::Truncated));
}

#[test]
fn malformed_fields_are_errors() {
    let p = |body: &[u8], kind: MessageType| {
        let mut v = vec![PROTOCOL_MAX, kind as u8, body.len() as u8];
        v.extend_from_slice(body);
        codec::decode(&v)
    };
    // Trailing bytes inside a message body.
    assert!(matches!(
        p(&[1, 2], MessageType::Ack),
        Err(DecodeError::Malformed(_))
    ));
    // A seq that overflows u32.
    assert!(matches!(
        p(&[0xff, 0xff, 0xff, 0xff, 0x7f], MessageType::Ack),
        Err(DecodeError::Malformed(_))
    ));
    // Invalid UTF-8 in a name.
    assert!(matches!(
        p(&[1, 2, 0xff, 0xfe], MessageType::Ping),
        Err(DecodeError::Malformed(_))
    ));
    // A name over 128 bytes.
    let mut body = vec![1, 0x81, 0x01]; // seq 1, length 129 as a varint
    body.extend_from_slice(&[b'a'; 129]);
    let mut v = vec![PROTOCOL_MAX, MessageType::Ping as u8];
    v.extend_from_slice(&[(body.len() as u8) | 0x80, 1]);
    v.extend_from_slice(&body);
    assert_eq!(
        codec::decode(&v),
        Err(DecodeError::Malformed("name too long"))
    );
    // An unknown address family.
    assert!(matches!(
        p(&[1, 1, b'x', 5, 1, 2, 3, 4, 0, 1], MessageType::PingReq),
        Err(DecodeError::Malformed(_))
    ));
    // An unknown member state in a push-pull.
    assert!(matches!(
        p(&[0, 1, 9], MessageType::PushPull),
        Err(DecodeError::Malformed(_))
    ));
}

// ----- forward compatibility -----

#[test]
fn unknown_message_types_are_skipped_and_counted() {
    let ping = Message::Ping {
        seq: 5,
        target: "b".into(),
    };
    let alive = Message::Alive(Alive {
        incarnation: 3,
        name: "c".into(),
        addr: "[2001:db8::7]:7946".parse().unwrap(),
        protocol: (1, 2),
        tags: Arc::default(),
    });
    let ack = Message::Ack { seq: 6 };
    let mut bytes = vec![PROTOCOL_MAX];
    codec::encode_message(&ping, &mut bytes);
    // A future type with a 3-byte body.
    bytes.extend_from_slice(&[99, 3, 0xaa, 0xbb, 0xcc]);
    codec::encode_message(&alive, &mut bytes);
    // Code 0 and code 255 with empty bodies, and one with a 200-byte body
    // (two-byte length).
    bytes.extend_from_slice(&[0, 0, 255, 0]);
    bytes.extend_from_slice(&[42, 0xc8, 0x01]);
    bytes.extend_from_slice(&[0x5a; 200]);
    codec::encode_message(&ack, &mut bytes);
    let d = codec::decode(&bytes).unwrap();
    assert_eq!(
        d,
        Decoded {
            messages: vec![ping, alive, ack],
            unknown: 4,
        }
    );
    // A packet of unknown messages only decodes to nothing, counted.
    let d = codec::decode(&[PROTOCOL_MAX, 77, 1, 0]).unwrap();
    assert_eq!((d.messages.len(), d.unknown), (0, 1));
    // A truncated unknown message is still an error.
    assert_eq!(
        codec::decode(&[PROTOCOL_MAX, 77, 5, 0]),
        Err(DecodeError::Truncated)
    );
}

#[test]
fn unsupported_versions_are_rejected() {
    let good = codec::encode_packet(&Message::Ack { seq: 1 });
    for v in [0u8, PROTOCOL_MAX + 1, 0x7f, 0xff] {
        if (PROTOCOL_MIN..=PROTOCOL_MAX).contains(&v) {
            continue;
        }
        let mut b = good.clone();
        b[0] = v;
        assert_eq!(codec::decode(&b), Err(DecodeError::UnsupportedVersion(v)));
        assert_eq!(codec::decode(&[v]), Err(DecodeError::UnsupportedVersion(v)));
    }
    assert_eq!(codec::decode(&[]), Err(DecodeError::Empty));
    assert_eq!(codec::decode(&[PROTOCOL_MAX]), Err(DecodeError::Empty));
}

// ----- the node and bad input -----

fn node() -> Node {
    Node::new("local-node", addr4(1, 7946), Config::lan(), 7).unwrap()
}

#[test]
fn node_counts_undecodable_datagrams() {
    let mut n = node();
    let from = addr4(2, 7946);
    let t = Instant::from_micros(1_000);
    n.handle_datagram(t, from, &[]);
    n.handle_datagram(t, from, &[PROTOCOL_MAX]);
    n.handle_datagram(t, from, &[PROTOCOL_MAX, 2, 9]);
    n.handle_datagram(t, from, &[PROTOCOL_MAX, 1, 3, 0xff, 0xff, 0xff]);
    assert_eq!(n.stats().decode_errors, 4);
    assert_eq!(n.stats().unsupported_version, 0);
    n.handle_datagram(t, from, &[PROTOCOL_MAX + 1, 2, 1, 1]);
    n.handle_datagram(t, from, &[0, 2, 1, 1]);
    assert_eq!(n.stats().unsupported_version, 2);
    assert_eq!(n.stats().decode_errors, 4);
    assert_eq!(n.stats().packets_in, 6);
    // Unknown types alongside a known one: counted, and the ping answered.
    let mut b = vec![PROTOCOL_MAX, 99, 0];
    codec::encode_message(
        &Message::Ping {
            seq: 11,
            target: "local-node".into(),
        },
        &mut b,
    );
    n.handle_datagram(t, from, &b);
    assert_eq!(n.stats().unknown_messages, 1);
    let mut acked = false;
    while let Some(tx) = n.poll_transmit() {
        if tx.to == from && !tx.is_stream() {
            let d = codec::decode(&tx.payload).unwrap();
            acked |= d.messages.contains(&Message::Ack { seq: 11 });
        }
    }
    assert!(acked, "the ping beside an unknown message is answered");
    // Streams count too.
    assert_eq!(n.handle_stream(t, from, &[PROTOCOL_MAX, 8, 1]), None);
    assert_eq!(n.handle_stream(t, from, &[3, 8, 0]), None);
    assert_eq!(n.stats().decode_errors, 5);
    assert_eq!(n.stats().unsupported_version, 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A node fed garbage, damaged packets and timeouts never panics, and
    /// counts every datagram it could not decode.
    #[test]
    fn node_survives_garbage(
        inputs in vec(
            prop_oneof![
                vec(any::<u8>(), 0..300),
                vec(message(), 1..4).prop_map(|m| compound(&m)),
                (vec(message(), 1..4), any::<prop::sample::Index>(), 0u8..8).prop_map(
                    |(m, at, bit)| {
                        let mut b = compound(&m);
                        let i = at.index(b.len());
                        b[i] ^= 1 << bit;
                        b
                    }
                ),
            ],
            1..24,
        ),
    ) {
        let mut n = node();
        let from = addr4(2, 7946);
        let mut now = 0u64;
        let mut bad = 0u64;
        for (i, bytes) in inputs.iter().enumerate() {
            now += 150_000;
            let t = Instant::from_micros(now);
            let version_ok = bytes
                .first()
                .is_some_and(|v| (PROTOCOL_MIN..=PROTOCOL_MAX).contains(v));
            if codec::decode(bytes).is_err() && (version_ok || bytes.is_empty()) {
                bad += 1;
            }
            n.handle_datagram(t, from, bytes);
            if i % 3 == 0 {
                let _ = n.handle_stream(t, from, bytes);
                if codec::decode(bytes).is_err() && (version_ok || bytes.is_empty()) {
                    bad += 1;
                }
            }
            n.handle_timeout(t);
            while n.poll_transmit().is_some() {}
            while n.poll_event().is_some() {}
        }
        prop_assert_eq!(n.stats().decode_errors, bad);
    }
}

// ----- encoded sizes -----

/// A 16-byte member name.
const NAME16: &str = "node-0123456789a";

#[test]
fn encoded_sizes_beat_memberlist() {
    assert_eq!(NAME16.len(), 16);
    let ping = |seq| Message::Ping {
        seq,
        target: NAME16.into(),
    };
    let ack = |seq| Message::Ack { seq };
    let alive = |incarnation| {
        Message::Alive(Alive {
            incarnation,
            name: NAME16.into(),
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 100, 200)), 7946),
            protocol: (PROTOCOL_MIN, PROTOCOL_MAX),
            tags: Arc::default(),
        })
    };
    // Typical: sequence numbers and incarnations below 128 (one varint byte);
    // worst: u32::MAX (five varint bytes).
    let sizes = [
        (
            "ping",
            codec::encode_packet(&ping(1)).len(),
            codec::encode_packet(&ping(u32::MAX)).len(),
            63,
        ),
        (
            "ack",
            codec::encode_packet(&ack(1)).len(),
            codec::encode_packet(&ack(u32::MAX)).len(),
            32,
        ),
        (
            "alive",
            codec::encode_packet(&alive(1)).len(),
            codec::encode_packet(&alive(u64::from(u32::MAX))).len(),
            77,
        ),
    ];
    for (what, typical, worst, limit) in sizes {
        println!(
            "encoded {what:>5}: {typical} B typical, {worst} B worst case (memberlist bound {limit} B)"
        );
        assert!(typical <= worst);
        assert!(worst <= limit, "{what} takes {worst} B, over {limit} B");
    }
    // The exact numbers, so a format change is a conscious one.
    let exact: Vec<(usize, usize)> = sizes.iter().map(|s| (s.1, s.2)).collect();
    assert_eq!(exact, vec![(21, 25), (4, 8), (31, 35)]);
}

// ----- regressions: core bugs these tests found -----

/// An alive claim too large for any packet (here: a joiner's 3000-byte tags,
/// which the decoder accepts although `MAX_TAGS_BYTES` is 512) is queued for
/// piggybacking but never fits, so it is never sent nor retired; meanwhile
/// every gossip tick sends a version-byte-only datagram that receivers
/// count as a decode error.
#[test]
fn oversized_claims_do_not_produce_empty_datagrams() {
    let mut n = node();
    let mut tags = Tags::new();
    tags.insert("k".into(), "v".repeat(3000));
    let joiner = Alive {
        incarnation: 1,
        name: "big".into(),
        addr: addr4(2, 7946),
        protocol: (1, 1),
        tags: Arc::new(tags),
    };
    let pp = Message::PushPull(PushPull {
        join: true,
        reply: false,
        events: Vec::new(),
        members: vec![MemberRecord {
            alive: joiner,
            state: MemberState::Alive,
        }],
    });
    let mut t = 1_000u64;
    let _ = n.handle_stream(
        Instant::from_micros(t),
        addr4(2, 7946),
        &codec::encode_packet(&pp),
    );
    for _ in 0..100 {
        t += 100_000;
        n.handle_timeout(Instant::from_micros(t));
        while let Some(tx) = n.poll_transmit() {
            if !tx.is_stream() {
                assert!(codec::decode(&tx.payload).is_ok(), "sent {:?}", tx.payload);
            }
        }
        while n.poll_event().is_some() {}
    }
}

/// Member names must be non-empty (`member::validate_name`), but an alive
/// claim with an empty name decodes and the node adds a member called "".
#[test]
fn empty_member_names_are_rejected() {
    let mut n = node();
    let a = Message::Alive(Alive {
        incarnation: 1,
        name: "".into(),
        addr: addr4(2, 7946),
        protocol: (1, 1),
        tags: Arc::default(),
    });
    n.handle_datagram(
        Instant::from_micros(5),
        addr4(2, 7946),
        &codec::encode_packet(&a),
    );
    assert!(n.member("").is_none());
}
