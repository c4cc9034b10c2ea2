//! The hostile actor of the `hostile` fault: a sender outside the cluster,
//! at its own address, that for a while floods invented members, forges
//! maximum counters and false accusations, replays datagrams it captured
//! earlier in the run and duplicates packets in flight.
//!
//! Every packet it sends is built with [`rumor_core::codec`] and goes
//! through the engine's normal datagram path (`Node::handle_datagram`),
//! from [`hostile_addr`] or, for a spoofed replay, from the address of the
//! node that first sent the datagram. It never answers anything: the
//! addresses it invents ([`invented_addr`], in 127.77.0.0/16) belong to
//! nobody, so an honest node that pings one to check a claim hears nothing.
//!
//! What it sends each tick (every [`TICK`]):
//! - two packets of [`FLOOD_CLAIMS`] alive claims each for invented names
//!   ([`INVENTED_PREFIX`]), most at invented addresses, some at a real
//!   node's address (which does not answer to that name): one to the
//!   first live node (so that its pending table fills up), one to a random one;
//! - one forged maximum, in turn: a suspicion or death at `u64::MAX`, a
//!   per-node state delta at version `u64::MAX`, a user event at Lamport
//!   time `u64::MAX`, an aggregation transfer at epoch `u64::MAX` or with
//!   1e308 shares;
//! - with probability [`ACCUSE_P`], a death, suspicion or leave of a live
//!   node at its incarnation + 1..=3 (plausible: the victim must refute);
//! - [`REPLAYS`] replays of captured datagrams (half spoofed), and now and
//!   then the last alive claim of a crashed node, spoofed from its address.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rumor_core::aggregate::Share;
use rumor_core::member::no_tags;
use rumor_core::message::{Alive, Message, UserEvent};
use rumor_core::state::{Delta, Entry};
use rumor_core::{codec, Member};
use serde::Serialize;

use crate::{node_addr, node_name, Micros, SECOND};

/// Names the hostile actor invents start with this; no honest node may
/// ever hold one.
pub const INVENTED_PREFIX: &str = "x-forged-";

/// How often the actor sends a burst.
pub const TICK: Micros = SECOND / 10;

/// Alive claims for invented names per flood packet.
pub const FLOOD_CLAIMS: usize = 32;

/// Probability per tick of a plausible false accusation of a live node.
pub const ACCUSE_P: f64 = 0.2;

/// Captured datagrams replayed per tick.
pub const REPLAYS: usize = 2;

/// Probability that a datagram between honest nodes is delivered twice
/// while the actor is active.
pub const DUPLICATE_P: f64 = 0.05;

/// Captured datagrams kept (a uniform sample of everything sent so far).
const RESERVOIR: usize = 512;

/// Whether `name` is one the hostile actor invented.
pub fn is_invented(name: &str) -> bool {
    name.starts_with(INVENTED_PREFIX)
}

/// The hostile actor's own address (not a node's; nothing answers there).
pub fn hostile_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 66, 0, 1), 7946))
}

/// The address of invented member `k` (127.77.x.y, where nobody listens).
pub fn invented_addr(k: u64) -> SocketAddr {
    let ip = Ipv4Addr::new(127, 77, (k >> 8) as u8, k as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, 7000 + (k >> 16) as u16 % 1000))
}

/// One datagram the actor sends: to node `to`, claiming to come from `src`.
#[derive(Clone, Debug)]
pub struct Forgery {
    /// The receiving node.
    pub to: usize,
    /// The source address it carries.
    pub src: SocketAddr,
    /// The datagram.
    pub payload: Vec<u8>,
}

/// What the actor sent over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sent {
    /// Alive claims for invented names.
    pub invented_claims: u64,
    /// Forged maxima (suspect/dead/state/event/aggregate).
    pub forged_maxima: u64,
    /// Plausible false accusations (dead, suspect or left at incarnation + 1..=3).
    pub accusations: u64,
    /// Captured datagrams replayed (spoofed or not).
    pub replays: u64,
    /// Alive claims of crashed nodes replayed from their own address.
    pub last_words: u64,
    /// Honest datagrams delivered twice.
    pub duplicates: u64,
}

/// The hostile actor's effect on a run, for reports and tests.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HostileReport {
    /// What it sent.
    pub sent: Sent,
    /// Forged ICMP port-unreachable reports delivered (`forged_unreachable` faults).
    pub forged_unreachable: u64,
    /// Refusals by the core's limits, summed over the nodes, by limit name
    /// (only those that refused something).
    pub refused: Vec<(&'static str, u64)>,
    /// New names held pending an ack from their address (summed).
    pub members_pending: u64,
    /// Pending names admitted on their ack (summed).
    pub members_verified: u64,
    /// Pings for another name (an admission check sent to a real node's
    /// address for an invented name), summed.
    pub misdirected_pings: u64,
    /// Alive claims with an invalid name or tags, summed.
    pub invalid_claims: u64,
    /// Port-unreachable reports the nodes took in (real and forged), summed.
    pub unreachable_reports: u64,
    /// Times an honest node held an invented name (must stay 0).
    pub invented_admitted: u64,
}

impl HostileReport {
    /// Refusals by the limit named `name` (see `rumor_core::limits::Limit::name`).
    pub fn refused(&self, name: &str) -> u64 {
        self.refused
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |&(_, c)| c)
    }
}

/// A live node the actor may aim at: its index and current incarnation.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Node index.
    pub node: usize,
    /// Its incarnation now.
    pub incarnation: u64,
}

struct Captured {
    from: usize,
    to: usize,
    payload: Vec<u8>,
}

/// The hostile actor: its randomness, what it captured and what it sent.
pub struct Hostile {
    rng: Xoshiro256PlusPlus,
    reservoir: Vec<Captured>,
    seen: u64,
    /// (crashed node, its last alive claim as a datagram).
    last_words: Vec<(usize, Vec<u8>)>,
    invented: u64,
    forge_turn: u32,
    /// Send invented claims from the addresses they claim (see
    /// `Fault::Hostile`'s `spoof`).
    pub spoof: bool,
    /// Counts of what it sent.
    pub sent: Sent,
}

impl Hostile {
    /// A new actor with its own random stream.
    pub fn new(seed: u64) -> Self {
        Hostile {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            reservoir: Vec::with_capacity(RESERVOIR),
            seen: 0,
            last_words: Vec::new(),
            invented: 0,
            forge_turn: 0,
            spoof: false,
            sent: Sent::default(),
        }
    }

    /// Record (a uniform sample of) a datagram `from` sent to `to`.
    pub fn capture(&mut self, from: usize, to: usize, payload: &[u8]) {
        self.seen += 1;
        let c = || Captured {
            from,
            to,
            payload: payload.to_vec(),
        };
        if self.reservoir.len() < RESERVOIR {
            self.reservoir.push(c());
        } else {
            let j = self.rng.random_range(0..self.seen);
            if (j as usize) < RESERVOIR {
                self.reservoir[j as usize] = c();
            }
        }
    }

    /// Record the alive claim `node` last gossiped (it just crashed).
    pub fn capture_last_words(&mut self, node: usize, me: &Member) {
        let alive = Message::Alive(Alive {
            incarnation: me.incarnation,
            name: me.name.clone(),
            addr: me.addr,
            protocol: me.protocol,
            tags: me.tags.clone(),
        });
        self.last_words.push((node, codec::encode_packet(&alive)));
    }

    /// Whether to deliver an honest datagram twice (while active).
    pub fn duplicate(&mut self) -> bool {
        let dup = self.rng.random_bool(DUPLICATE_P);
        self.sent.duplicates += u64::from(dup);
        dup
    }

    /// A small delivery delay for the actor's packets, in microseconds.
    pub fn delay(&mut self) -> Micros {
        self.rng.random_range(200..800)
    }

    /// One burst aimed at the live nodes `targets` (none: nothing to do).
    pub fn tick(&mut self, targets: &[Target]) -> Vec<Forgery> {
        let mut out = Vec::new();
        if targets.is_empty() {
            return out;
        }
        let me = hostile_addr();
        let to = |rng: &mut Xoshiro256PlusPlus| targets[rng.random_range(0..targets.len())];
        // 1. A flood of invented members: at the first live node, and at
        // a random one.
        for dest in [targets[0].node, to(&mut self.rng).node] {
            if self.spoof {
                // One claim per datagram, each from the address it claims.
                for _ in 0..FLOOD_CLAIMS / 4 {
                    let (src, claim) = self.invent(targets);
                    out.push(Forgery {
                        to: dest,
                        src,
                        payload: codec::encode_packet(&claim),
                    });
                }
                continue;
            }
            let packet = self.flood(targets);
            out.push(Forgery {
                to: dest,
                src: me,
                payload: packet,
            });
        }
        // 2. A forged maximum, each kind in turn.
        let victim = to(&mut self.rng);
        let receiver = to(&mut self.rng);
        let name: Arc<str> = node_name(victim.node).into();
        let liar: Arc<str> = format!("{INVENTED_PREFIX}liar").into();
        let turn = self.forge_turn % 7;
        let forged = match turn {
            0 => Message::Suspect {
                incarnation: u64::MAX,
                name,
                from: node_name(receiver.node).into(),
            },
            1 => Message::Dead {
                incarnation: u64::MAX,
                name,
                from: liar,
            },
            2 => Message::StateDelta(Delta {
                owner: name,
                reset: false,
                from: 0,
                through: u64::MAX,
                entries: vec![(
                    "forged".into(),
                    Entry {
                        value: Some("max".into()),
                        version: u64::MAX,
                    },
                )],
            }),
            3 => Message::StateDelta(Delta {
                owner: liar,
                reset: true,
                from: 0,
                through: 1,
                entries: vec![(
                    "forged".into(),
                    Entry {
                        value: Some("stray".into()),
                        version: 1,
                    },
                )],
            }),
            4 => Message::UserEvent(UserEvent {
                ltime: u64::MAX,
                origin: name,
                name: "forged".into(),
                payload: b"max".to_vec(),
            }),
            5 => Message::Aggregate {
                sender: liar,
                epoch: u64::MAX,
                seq: 1,
                shares: vec![("load".into(), Share::initial(Some(1.0), false))],
            },
            _ => Message::Aggregate {
                sender: liar,
                epoch: 0,
                seq: self.forge_turn,
                shares: vec![(
                    "load".into(),
                    Share {
                        s: 1e308,
                        w: 1e308,
                        c: 1e308,
                        u: 0.0,
                        min: 1e308,
                        max: 1e308,
                    },
                )],
            },
        };
        self.forge_turn = self.forge_turn.wrapping_add(1);
        self.sent.forged_maxima += 1;
        // A forged accusation at the maximum also goes to the victim itself,
        // which must ignore it rather than refute it.
        let forged_to = if turn <= 1 && self.rng.random_bool(0.5) {
            victim.node
        } else {
            receiver.node
        };
        out.push(Forgery {
            to: forged_to,
            src: me,
            payload: codec::encode_packet(&forged),
        });
        // 3. A plausible false accusation: the victim must refute it.
        if self.rng.random_bool(ACCUSE_P) {
            let victim = to(&mut self.rng);
            let name: Arc<str> = node_name(victim.node).into();
            let incarnation = victim.incarnation + self.rng.random_range(1..=3);
            let accuser: Arc<str> = node_name(to(&mut self.rng).node).into();
            let msg = match self.rng.random_range(0..3) {
                0 => Message::Dead {
                    incarnation,
                    name,
                    from: accuser,
                },
                1 => Message::Suspect {
                    incarnation,
                    name,
                    from: accuser,
                },
                _ => Message::Dead {
                    incarnation,
                    name: name.clone(),
                    from: name, // a forged leave
                },
            };
            self.sent.accusations += 1;
            out.push(Forgery {
                to: to(&mut self.rng).node,
                src: me,
                payload: codec::encode_packet(&msg),
            });
        }
        // 4. Replays, half of them spoofed from the original sender.
        for _ in 0..REPLAYS {
            let Some(c) = self.reservoir.choose(&mut self.rng) else {
                break;
            };
            let (src, dest) = if self.rng.random_bool(0.5) {
                (node_addr(c.from), c.to)
            } else {
                (me, to(&mut self.rng).node)
            };
            let payload = c.payload.clone();
            self.sent.replays += 1;
            out.push(Forgery {
                to: dest,
                src,
                payload,
            });
        }
        if self.rng.random_bool(0.3) {
            if let Some((node, payload)) = self.last_words.choose(&mut self.rng) {
                let f = Forgery {
                    to: to(&mut self.rng).node,
                    src: node_addr(*node),
                    payload: payload.clone(),
                };
                self.sent.last_words += 1;
                out.push(f);
            }
        }
        out
    }

    /// One packet of [`FLOOD_CLAIMS`] alive claims for invented names.
    fn flood(&mut self, targets: &[Target]) -> Vec<u8> {
        let mut packet = Vec::with_capacity(FLOOD_CLAIMS * 40);
        codec::begin_packet(&mut packet);
        for _ in 0..FLOOD_CLAIMS {
            let (_, claim) = self.invent(targets);
            codec::encode_message(&claim, &mut packet);
        }
        packet
    }

    /// An alive claim for a new invented name, and the address it claims:
    /// most at an invented address, some at a real node's (which does not
    /// answer to that name; never spoofed from there).
    fn invent(&mut self, targets: &[Target]) -> (SocketAddr, Message) {
        let k = self.invented;
        self.invented += 1;
        self.sent.invented_claims += 1;
        let real = !self.spoof && self.rng.random_bool(0.25);
        let addr = if real {
            node_addr(targets[self.rng.random_range(0..targets.len())].node)
        } else {
            invented_addr(k)
        };
        let claim = Message::Alive(Alive {
            incarnation: self.rng.random_range(1..=u64::MAX),
            name: format!("{INVENTED_PREFIX}{k}").into(),
            addr,
            protocol: (codec::PROTOCOL_MIN, codec::PROTOCOL_MAX),
            tags: no_tags(),
        });
        (addr, claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgeries_decode_and_invent_only_prefixed_names() {
        let mut h = Hostile::new(1);
        h.capture(1, 2, &codec::encode_packet(&Message::Ack { seq: 3 }));
        let targets: Vec<Target> = (0..4)
            .map(|node| Target {
                node,
                incarnation: 1,
            })
            .collect();
        for _ in 0..20 {
            for f in h.tick(&targets) {
                assert!(f.to < 4);
                let d = codec::decode(&f.payload).expect("valid packet");
                for m in d.messages {
                    if let Message::Alive(a) = m {
                        assert!(is_invented(&a.name));
                    }
                }
            }
        }
        assert_eq!(h.sent.invented_claims, 40 * FLOOD_CLAIMS as u64);
        assert_eq!(h.sent.forged_maxima, 20);
        assert!(h.sent.replays > 0);
        assert!(h.tick(&[]).is_empty());
    }
}
