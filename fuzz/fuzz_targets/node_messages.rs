//! A node driven through a sequence of well-formed messages built with the
//! project's codec, whose network counters (incarnations, state versions,
//! Lamport times, epochs, sequence numbers, HLC timestamps) lean to the
//! extremes: 0, 1, `MAX - n`, `MAX`. Interleaved with timers and local
//! commands, so that a forged maximum meets the code that increments it.
//!
//! The structured input is turned into a script (see `script.rs`) and
//! played by the same runner as `node_datagram`. With
//! `RUMOR_FUZZ_SCRIPT_OUT=<file>` set, the script is also written there: a
//! crash found here becomes a regression input for
//! `crates/rumor-core/tests/fuzz_regressions.rs`.

#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rumor_core::aggregate::Share;
use rumor_core::kv::hlc::Timestamp;
use rumor_core::kv::lww::LwwEntry;
use rumor_core::kv::{Entry as KvEntry, Record};
use rumor_core::message::{
    Alive, MemberRecord, Message, PushPull, StateSync, SyncMode, SyncPhase, UserEvent,
};
use rumor_core::state::{Delta, Entry};
use rumor_core::{codec, MemberState};

#[path = "common.rs"]
mod common;
#[path = "script.rs"]
mod script;

/// One step of the sequence.
#[derive(Arbitrary, Debug)]
enum Step {
    /// A compound datagram of these messages.
    Datagram {
        advance: u8,
        sender: u8,
        messages: Vec<Msg>,
    },
    /// One stream message.
    Stream {
        advance: u8,
        sender: u8,
        message: Msg,
    },
    /// A script record that is not a message: timers, an unreachable
    /// report, or a local command (`op` indexes `script::ALL_OPS`).
    Other {
        advance: u8,
        sender: u8,
        op: u8,
        bytes: Vec<u8>,
    },
}

/// A counter from the network, mostly at the edges of its range. Built as
/// `u64` and narrowed with `as _` where the field is smaller, so that
/// `Max` is the field's own maximum whatever its width.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Counter {
    Zero,
    One,
    Small(u8),
    BelowMax(u8),
    Max,
    Any(u64),
}

impl Counter {
    fn get(self) -> u64 {
        match self {
            Counter::Zero => 0,
            Counter::One => 1,
            Counter::Small(n) => u64::from(n),
            Counter::BelowMax(n) => u64::MAX - u64::from(n),
            Counter::Max => u64::MAX,
            Counter::Any(n) => n,
        }
    }
}

/// A float for aggregate shares, mostly the values that break arithmetic.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Float {
    Zero,
    One,
    Huge,
    NegHuge,
    Tiny,
    Nan,
    Inf,
    NegInf,
    Any(f64),
}

impl Float {
    fn get(self) -> f64 {
        match self {
            Float::Zero => 0.0,
            Float::One => 1.0,
            Float::Huge => 1e308,
            Float::NegHuge => -1e308,
            Float::Tiny => f64::MIN_POSITIVE,
            Float::Nan => f64::NAN,
            Float::Inf => f64::INFINITY,
            Float::NegInf => f64::NEG_INFINITY,
            Float::Any(x) => x,
        }
    }
}

/// A member name: a known member, the node itself, the peer, or a stranger.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Name(u8);

impl Name {
    fn get(self) -> Arc<str> {
        match self.0 % 8 {
            i @ 0..=3 => Arc::from(common::KNOWN[usize::from(i)]),
            4 => Arc::from("local"),
            5 => Arc::from("peer"),
            _ => Arc::from(format!("x{}", self.0 / 8)),
        }
    }
}

/// One of the eight loopback addresses of `common::addr`.
fn addr(i: u8) -> SocketAddr {
    common::addr(i % 8 + 1)
}

#[derive(Arbitrary, Debug)]
struct AliveSpec {
    incarnation: Counter,
    name: Name,
    addr: u8,
    /// `None`: the protocol range this build speaks.
    protocol: Option<(u8, u8)>,
    tag: Option<(u8, u8)>,
}

impl AliveSpec {
    fn build(&self) -> Alive {
        let mut tags = rumor_core::Tags::new();
        if let Some((k, v)) = self.tag {
            tags.insert(format!("k{k}"), format!("v{v}"));
        }
        Alive {
            incarnation: self.incarnation.get() as _,
            name: self.name.get(),
            addr: addr(self.addr),
            protocol: self
                .protocol
                .unwrap_or((codec::PROTOCOL_MIN, codec::PROTOCOL_MAX)),
            tags: Arc::new(tags),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct EventSpec {
    ltime: Counter,
    origin: Name,
    name: u8,
    payload: Vec<u8>,
}

impl EventSpec {
    fn build(&self) -> UserEvent {
        UserEvent {
            ltime: self.ltime.get() as _,
            origin: self.origin.get(),
            name: format!("e{}", self.name % 4),
            payload: self.payload.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct DeltaSpec {
    owner: Name,
    reset: bool,
    from: Counter,
    through: Counter,
    /// `(key, value or tombstone, version)`.
    entries: Vec<(u8, Option<u8>, Counter)>,
}

impl DeltaSpec {
    fn build(&self) -> Delta {
        Delta {
            owner: self.owner.get(),
            reset: self.reset,
            from: self.from.get() as _,
            through: self.through.get() as _,
            entries: self
                .entries
                .iter()
                .map(|(k, v, version)| {
                    let entry = Entry {
                        value: v.map(|v| format!("v{v}")),
                        version: version.get() as _,
                    };
                    (format!("k{}", k % 8), entry)
                })
                .collect(),
        }
    }
}

/// A last-writer-wins key-space record.
#[derive(Arbitrary, Debug)]
struct KvSpec {
    key: u8,
    /// `None`: a tombstone.
    value: Option<Vec<u8>>,
    wall: Counter,
    logical: Counter,
    writer: Name,
}

impl KvSpec {
    fn build(&self) -> Record {
        let ts = Timestamp::new(
            self.wall.get() as _,
            self.logical.get() as _,
            self.writer.get(),
        );
        Record {
            key: format!("k{}", self.key % 8),
            entry: KvEntry::Lww(LwwEntry {
                value: self.value.clone(),
                ts,
            }),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct ShareSpec([Float; 6]);

impl ShareSpec {
    fn build(&self) -> Share {
        let [s, w, c, u, min, max] = self.0.map(Float::get);
        Share {
            s,
            w,
            c,
            u,
            min,
            max,
        }
    }
}

/// A message, built from parts that lean to extreme counters.
#[derive(Arbitrary, Debug)]
enum Msg {
    Ping {
        seq: Counter,
        target: Name,
    },
    Ack {
        seq: Counter,
    },
    Nack {
        seq: Counter,
        refused: bool,
    },
    PingReq {
        seq: Counter,
        target: Name,
        addr: u8,
    },
    Alive(AliveSpec),
    Suspect {
        incarnation: Counter,
        name: Name,
        from: Name,
    },
    Dead {
        incarnation: Counter,
        name: Name,
        from: Name,
    },
    PushPull {
        join: bool,
        reply: bool,
        members: Vec<(AliveSpec, u8)>,
        events: Vec<EventSpec>,
    },
    UserEvent(EventSpec),
    StateSync {
        sender: Name,
        phase: u8,
        mode: u8,
        digest_hash: u64,
        complete: bool,
        digest: Vec<(Name, Counter)>,
        deltas: Vec<DeltaSpec>,
    },
    StateDelta(DeltaSpec),
    Aggregate {
        sender: Name,
        epoch: Counter,
        seq: Counter,
        shares: Vec<(u8, ShareSpec)>,
    },
    AggregateAck {
        epoch: Counter,
        seq: Counter,
    },
    KvRecords(Vec<KvSpec>),
    Pull {
        alive: AliveSpec,
        digest: Vec<u32>,
    },
    Reap {
        incarnation: Counter,
        name: Name,
    },
    KvClock {
        session: u32,
        t0: u64,
        t1: Option<u64>,
    },
}

impl Msg {
    fn build(&self) -> Message {
        match self {
            Msg::Ping { seq, target } => Message::Ping {
                seq: seq.get() as _,
                target: target.get(),
            },
            Msg::Ack { seq } => Message::Ack {
                seq: seq.get() as _,
            },
            Msg::Nack { seq, refused } => Message::Nack {
                seq: seq.get() as _,
                refused: *refused,
            },
            Msg::PingReq {
                seq,
                target,
                addr: a,
            } => Message::PingReq {
                seq: seq.get() as _,
                target: target.get(),
                target_addr: addr(*a),
            },
            Msg::Alive(a) => Message::Alive(a.build()),
            Msg::Suspect {
                incarnation,
                name,
                from,
            } => Message::Suspect {
                incarnation: incarnation.get() as _,
                name: name.get(),
                from: from.get(),
            },
            Msg::Dead {
                incarnation,
                name,
                from,
            } => Message::Dead {
                incarnation: incarnation.get() as _,
                name: name.get(),
                from: from.get(),
            },
            Msg::PushPull {
                join,
                reply,
                members,
                events,
            } => Message::PushPull(PushPull {
                join: *join,
                reply: *reply,
                members: members
                    .iter()
                    .map(|(a, state)| MemberRecord {
                        alive: a.build(),
                        state: MemberState::from_code(state % 4).unwrap_or(MemberState::Alive),
                    })
                    .collect(),
                events: events.iter().map(EventSpec::build).collect(),
            }),
            Msg::UserEvent(e) => Message::UserEvent(e.build()),
            Msg::StateSync {
                sender,
                phase,
                mode,
                digest_hash,
                complete,
                digest,
                deltas,
            } => Message::StateSync(StateSync {
                sender: sender.get(),
                phase: [SyncPhase::Syn, SyncPhase::SynAck, SyncPhase::Ack][usize::from(phase % 3)],
                mode: [SyncMode::Push, SyncMode::Pull, SyncMode::PushPull][usize::from(mode % 3)],
                digest_hash: *digest_hash,
                complete: *complete,
                digest: digest
                    .iter()
                    .map(|(n, v)| (n.get(), v.get() as _))
                    .collect(),
                deltas: deltas.iter().map(DeltaSpec::build).collect(),
            }),
            Msg::StateDelta(d) => Message::StateDelta(d.build()),
            Msg::Aggregate {
                sender,
                epoch,
                seq,
                shares,
            } => Message::Aggregate {
                sender: sender.get(),
                epoch: epoch.get() as _,
                seq: seq.get() as _,
                shares: shares
                    .iter()
                    .map(|(n, s)| (format!("g{}", n % 4), s.build()))
                    .collect(),
            },
            Msg::AggregateAck { epoch, seq } => Message::AggregateAck {
                epoch: epoch.get() as _,
                seq: seq.get() as _,
            },
            Msg::KvRecords(records) => {
                Message::KvRecords(records.iter().map(KvSpec::build).collect())
            }
            Msg::Pull { alive, digest } => Message::Pull {
                alive: alive.build(),
                digest: digest.clone(),
            },
            Msg::Reap { incarnation, name } => Message::Reap {
                incarnation: incarnation.get() as _,
                name: name.get(),
            },
            Msg::KvClock { session, t0, t1 } => Message::KvClock(rumor_core::kv::ClockProbe {
                session: *session,
                t0: *t0,
                t1: *t1,
            }),
        }
    }
}

/// The script that plays `steps`.
fn script(steps: &[Step]) -> Vec<u8> {
    let op_of = |wanted: script::Op| {
        script::ALL_OPS
            .iter()
            .position(|&op| op == wanted)
            .expect("op in the table") as u8
    };
    let mut out = Vec::new();
    for step in steps {
        match step {
            Step::Datagram {
                advance,
                sender,
                messages,
            } => {
                let mut bytes = Vec::new();
                codec::begin_packet(&mut bytes);
                for m in messages {
                    codec::encode_message(&m.build(), &mut bytes);
                }
                script::push_record(
                    &mut out,
                    op_of(script::Op::Datagram),
                    *advance,
                    *sender,
                    &bytes,
                );
            }
            Step::Stream {
                advance,
                sender,
                message,
            } => {
                let bytes = codec::encode_packet(&message.build());
                script::push_record(
                    &mut out,
                    op_of(script::Op::Stream),
                    *advance,
                    *sender,
                    &bytes,
                );
            }
            Step::Other {
                advance,
                sender,
                op,
                bytes,
            } => script::push_record(&mut out, *op, *advance, *sender, bytes),
        }
    }
    out
}

fuzz_target!(|steps: Vec<Step>| {
    let script = script(&steps);
    if let Some(path) = std::env::var_os("RUMOR_FUZZ_SCRIPT_OUT") {
        std::fs::write(path, &script).expect("write the script");
    }
    script::run(&script, &script::ALL_OPS);
});
