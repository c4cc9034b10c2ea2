//! Protocol configuration and its `lan`, `wan` and `local` profiles.
//!
//! The profiles start from memberlist's defaults so that comparisons with
//! Serf are like for like; [`Config::validate`] rejects inconsistent values
//! with an error that names the field.

use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// Everything that tunes the protocol. Build one from a [`Profile`] and
/// override fields as needed.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Time between two probes of the probe round (scaled up by local health).
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others to probe.
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly when a direct probe times out.
    pub indirect_checks: usize,
    /// When a direct probe times out, also ping the target over a stream
    /// (TCP), in parallel with the indirect probes: an ack from it before
    /// the probe's end counts like any other, so a member whose datagrams
    /// are lost but whose stream works is not suspected (memberlist's TCP
    /// ping fallback).
    pub probe_stream_fallback: bool,
    /// When a direct probe times out, also ping the member directly once
    /// more (same sequence number), in parallel with the indirect probes:
    /// under random loss one more datagram round trip is the likeliest
    /// path to get through. The probe is judged at the same time as
    /// without it, so a crash is detected as fast.
    pub probe_retry: bool,
    /// Each update is retransmitted `retransmit_mult * ceil(log10(N+1))` times.
    pub retransmit_mult: u32,
    /// Minimum suspicion timeout is `suspicion_mult * max(1, log10 N) * probe_interval`.
    pub suspicion_mult: u32,
    /// Maximum suspicion timeout is `suspicion_max_mult` times the minimum.
    pub suspicion_max_mult: u32,
    /// Independent confirmations after which a suspicion's timeout has
    /// shrunk from the maximum to the minimum (Lifeguard's `k`; memberlist
    /// uses `suspicion_mult - 2`).
    pub suspicion_confirmations: u32,
    /// Time between gossip ticks.
    pub gossip_interval: Duration,
    /// Members a gossip tick sends to.
    pub gossip_nodes: usize,
    /// How long dead members still receive gossip (so they can refute).
    pub gossip_to_the_dead: Duration,
    /// Base interval of full-state push-pull (scaled up with N); zero disables it.
    pub push_pull_interval: Duration,
    /// After a join, a pull from a random live member this much later (the
    /// records this node lacks, asked for by digest); zero disables it. The
    /// join handshake's reply is a snapshot: a member that joins while this
    /// node's own alive claim is still spreading gossips its claim to
    /// members that do not know this node yet, and this node may hear it
    /// only at the next push-pull, up to `push_pull_interval` later. Set it
    /// to a few times the time a rumor takes to reach everyone.
    pub join_sync_delay: Duration,
    /// Local health awareness: the score ranges over `0..awareness_max`.
    pub awareness_max: u32,
    /// Largest datagram the core produces, in bytes (the driver subtracts its
    /// own framing, e.g. encryption, before handing it in).
    pub packet_size: usize,
    /// Largest stream message accepted, in bytes.
    pub max_stream_size: usize,
    /// How long a dead or left member is kept as a tombstone before it is reclaimed.
    pub tombstone_timeout: Duration,
    /// How often to try a push-pull with one random dead member, so that
    /// both sides of a healed partition find each other again; zero disables it.
    pub reconnect_interval: Duration,
    /// Expected number of members that watch a suspect: on hearing a
    /// suspicion, each member joins with probability
    /// `suspect_watchers / (N - 2)`, and watchers (and the first accuser)
    /// probe the suspect once per probe interval until the suspicion ends.
    /// A dead suspect gets prompt confirmations; a live one hears of the
    /// suspicion in a watcher's ping (buddy system) and refutes. 0 disables.
    pub suspect_watchers: u32,
    /// Suspicion timeout for a member whose port is known closed: its direct
    /// ping and every relay's ping came back "port unreachable" (reported by
    /// the driver through [`crate::Node::handle_unreachable`]). Nothing
    /// listens there, so there is nobody to refute: this (LAN: zero, dead at
    /// once) replaces the Lifeguard timeout. A member some relay can still
    /// reach is never judged this way. `None` ignores such reports.
    pub unreachable_suspicion_timeout: Option<Duration>,
    /// How long a member may stall before this node suspects it: a probe
    /// whose stream ping connected (the member's host is up, its kernel
    /// accepted the connection) but got no answer, from the member or
    /// through any relay, finds the process stalled (paused by a garbage
    /// collector, SIGSTOP, swapping or its VM; or hung). The prober then
    /// probes it every interval and suspects it only once it has been
    /// stalled this long, counted from the first such probe; any ack ends
    /// the stall. A host that accepts nothing (crashed, powered off, cut
    /// off) is suspected at once, as before. Needs
    /// `probe_stream_fallback`; zero disables it.
    pub stall_grace: Duration,
    /// Gossip a fresh rumor at once to `gossip_nodes` members instead of
    /// waiting for the next gossip tick.
    pub eager_forward: bool,
    /// Members an eager round sends fresh rumors to, at least; clusters
    /// larger than e^(f-3) members use `ceil(ln N) + 3`. More than
    /// `gossip_nodes`: a wave in which every newly reached member forwards
    /// once to `f` others misses about `e^-f` of the cluster, and each
    /// member it misses waits for a gossip tick (3: ~5 %, 6: ~0.25 %).
    pub eager_fanout: usize,
    /// Time between per-node state anti-entropy exchanges; zero disables them.
    pub state_sync_interval: Duration,
    /// Which way the state exchange moves state.
    pub state_sync_mode: crate::message::SyncMode,
    /// Peers per state exchange round.
    pub state_sync_fanout: usize,
    /// Spread state writes as rumors too (the fast path); anti-entropy alone otherwise.
    pub state_rumors: bool,
    /// How long state tombstones are kept before they are collected.
    pub state_tombstone_grace: Duration,
    /// The replicated key space's modes and Merkle depth (the same on every node).
    pub kv: crate::kv::KvConfig,
    /// Time between Merkle anti-entropy sessions; zero disables them.
    pub kv_sync_interval: Duration,
    /// Which way a Merkle session moves records.
    pub kv_sync_mode: crate::message::SyncMode,
    /// Sessions started per interval.
    pub kv_sync_fanout: usize,
    /// Spread key-space writes as rumors too; anti-entropy alone otherwise.
    pub kv_rumors: bool,
    /// How long key-space tombstones are kept before they are collected.
    pub kv_tombstone_grace: Duration,
    /// Time between aggregation rounds (push-sum transfers).
    pub aggregate_interval: Duration,
    /// Length of an aggregation epoch: estimates restart from current values.
    pub aggregate_epoch: Duration,
    /// Largest user event (name plus payload), in bytes.
    pub max_event_size: usize,
    /// How long a seen user event is remembered to drop its duplicates.
    pub event_dedup_window: Duration,
    /// Refute suspicions of the local node. Only a test turns this off, to
    /// show the simulator's accuracy check can fail.
    pub refute_suspicions: bool,
    /// How much of the cluster each node tracks and talks to: every member
    /// (SWIM) or a few neighbours (HyParView and Plumtree). Every node of a
    /// cluster must use the same; a node refuses peers that differ.
    pub membership: Membership,
    /// The partial view's parameters (used in [`Membership::Partial`]).
    pub view: crate::overlay::hyparview::ViewConfig,
    /// The broadcast tree's parameters (used in [`Membership::Partial`]).
    pub tree: crate::overlay::plumtree::TreeConfig,
    /// How much this node holds on behalf of others (members, pending
    /// admissions, state, key space, queued broadcasts).
    pub limits: crate::limits::Limits,
}

/// How much of the cluster each node tracks (see docs/protocol.md, "Partial
/// membership").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Membership {
    /// Every node knows and probes every member (SWIM with Lifeguard);
    /// rumors are piggybacked and gossiped to random members.
    #[default]
    Full,
    /// Every node keeps a few neighbours (HyParView) and checks only them;
    /// rumors travel on broadcast trees over the neighbours (Plumtree).
    /// Members still learn of every join, leave and failure, from the tree.
    Partial,
}

impl Membership {
    /// Its name in configuration files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Membership::Full => "full",
            Membership::Partial => "partial",
        }
    }
}

impl std::fmt::Display for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Membership {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "full" => Ok(Membership::Full),
            "partial" => Ok(Membership::Partial),
            other => Err(Error::InvalidConfig(format!(
                "unknown membership {other:?}: expected full or partial"
            ))),
        }
    }
}

/// A named starting point for [`Config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// A data-centre network (memberlist's `DefaultLANConfig`).
    Lan,
    /// Links between regions (memberlist's `DefaultWANConfig`).
    Wan,
    /// One machine or a very fast network (memberlist's `DefaultLocalConfig`).
    Local,
}

impl FromStr for Profile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "lan" => Ok(Profile::Lan),
            "wan" => Ok(Profile::Wan),
            "local" => Ok(Profile::Local),
            other => Err(Error::InvalidConfig(format!(
                "unknown profile {other:?}: expected lan, wan or local"
            ))),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::lan()
    }
}

impl Config {
    /// The configuration of a profile.
    pub fn profile(profile: Profile) -> Self {
        match profile {
            Profile::Lan => Config::lan(),
            Profile::Wan => Config::wan(),
            Profile::Local => Config::local(),
        }
    }

    /// Data-centre defaults: probe 1 s / 300 ms, gossip 200 ms to 3, push-pull 30 s.
    ///
    /// memberlist's, except the probe timeout (300 ms instead of 500: with
    /// relays nacking 300 ms later a silent member is suspected 0.6 s into
    /// its probe instead of at the interval's end; see docs/protocol.md,
    /// "Defaults") and the suspicion timeouts: minimum
    /// `2 x max(1, log10 N)` probe intervals instead of 4 (refutations now
    /// arrive in well under a second: buddy notices from suspect watchers,
    /// eager forwarding, a tripled retransmit budget for refutations), and
    /// the maximum kept at memberlist's absolute value (12 x the new
    /// minimum = 6 x the old). See docs/protocol.md for the measurements.
    pub fn lan() -> Self {
        Config {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(300),
            indirect_checks: 3,
            probe_stream_fallback: true,
            probe_retry: true,
            retransmit_mult: 4,
            suspicion_mult: 2,
            suspicion_max_mult: 12,
            suspicion_confirmations: 2,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            gossip_to_the_dead: Duration::from_secs(30),
            push_pull_interval: Duration::from_secs(30),
            join_sync_delay: Duration::from_millis(250),
            awareness_max: 8,
            packet_size: 1400,
            max_stream_size: 16 << 20,
            tombstone_timeout: Duration::from_secs(3600),
            reconnect_interval: Duration::from_secs(10),
            suspect_watchers: 3,
            unreachable_suspicion_timeout: Some(Duration::ZERO),
            stall_grace: Duration::from_secs(10),
            eager_forward: true,
            eager_fanout: 6,
            state_sync_interval: Duration::from_secs(1),
            state_sync_mode: crate::message::SyncMode::PushPull,
            state_sync_fanout: 1,
            state_rumors: true,
            state_tombstone_grace: Duration::from_secs(3600),
            kv: crate::kv::KvConfig::default(),
            kv_sync_interval: Duration::from_secs(2),
            kv_sync_mode: crate::message::SyncMode::PushPull,
            kv_sync_fanout: 1,
            kv_rumors: true,
            kv_tombstone_grace: Duration::from_secs(3600),
            aggregate_interval: Duration::from_millis(200),
            aggregate_epoch: Duration::from_secs(30),
            max_event_size: 512,
            event_dedup_window: Duration::from_secs(300),
            refute_suspicions: true,
            membership: Membership::Full,
            view: Default::default(),
            tree: Default::default(),
            limits: crate::limits::Limits::default(),
        }
    }

    /// Wide-area defaults: probe 5 s / 3 s, gossip 500 ms to 4.
    ///
    /// memberlist's, except the suspicion timeouts, set by the LAN's rule:
    /// minimum `2 x max(1, log10 N)` probe intervals instead of 6 (12 s at
    /// N = 16), maximum kept at memberlist's absolute value (18 x the new
    /// minimum = 6 x the old).
    /// See docs/protocol.md, "Defaults", for the measurements.
    pub fn wan() -> Self {
        Config {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            suspicion_mult: 2,
            suspicion_max_mult: 18,
            suspicion_confirmations: 4,
            push_pull_interval: Duration::from_secs(60),
            join_sync_delay: Duration::from_secs(3),
            gossip_nodes: 4,
            gossip_interval: Duration::from_millis(500),
            gossip_to_the_dead: Duration::from_secs(60),
            // ICMP across the wide area is filtered, rate-limited or forged.
            unreachable_suspicion_timeout: None,
            stall_grace: Duration::from_secs(30),
            ..Config::lan()
        }
    }

    /// Loopback defaults: probe 1 s / 200 ms, 1 indirect check, gossip 100 ms.
    /// The retransmit multiplier stays at the LAN's 4 (memberlist's local
    /// profile has 2): with 2, a rumor in a cluster of under 10 is sent
    /// twice per node, and a user event or a leave could die out before
    /// reaching everyone (1 in 9 times for a user event among 4 live nodes).
    pub fn local() -> Self {
        Config {
            probe_timeout: Duration::from_millis(200),
            indirect_checks: 1,
            suspicion_mult: 3,
            suspicion_max_mult: 6,
            suspicion_confirmations: 1,
            push_pull_interval: Duration::from_secs(15),
            join_sync_delay: Duration::from_millis(250),
            gossip_interval: Duration::from_millis(100),
            gossip_to_the_dead: Duration::from_secs(15),
            ..Config::lan()
        }
    }

    /// Check the values are consistent; the error names the field to fix.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::InvalidConfig(msg));
        if self.probe_interval.is_zero() {
            return bad("probe_interval must be greater than zero".into());
        }
        if self.probe_timeout.is_zero() || self.probe_timeout > self.probe_interval {
            return bad(format!(
                "probe_timeout ({:?}) must be greater than zero and at most probe_interval ({:?})",
                self.probe_timeout, self.probe_interval
            ));
        }
        if self.aggregate_interval.is_zero() || self.aggregate_epoch < self.aggregate_interval * 10
        {
            return bad(format!(
                "aggregate_epoch ({:?}) must be at least 10 aggregate_interval ({:?}), which must be positive",
                self.aggregate_epoch, self.aggregate_interval
            ));
        }
        if self.gossip_interval.is_zero() {
            return bad("gossip_interval must be greater than zero".into());
        }
        if self.retransmit_mult == 0 {
            return bad("retransmit_mult must be at least 1".into());
        }
        if self.suspicion_mult == 0 {
            return bad("suspicion_mult must be at least 1".into());
        }
        if self.suspicion_max_mult < 1 {
            return bad("suspicion_max_mult must be at least 1".into());
        }
        if self.awareness_max == 0 || self.awareness_max > 64 {
            return bad(format!(
                "awareness_max ({}) must be between 1 and 64",
                self.awareness_max
            ));
        }
        if self.packet_size < 512 || self.packet_size > 65_000 {
            return bad(format!(
                "packet_size ({}) must be between 512 and 65000 bytes",
                self.packet_size
            ));
        }
        if self.max_event_size + 200 > self.packet_size {
            return bad(format!(
                "max_event_size ({}) must leave 200 bytes of packet_size ({}) for framing",
                self.max_event_size, self.packet_size
            ));
        }
        if self.max_stream_size < self.packet_size {
            return bad(format!(
                "max_stream_size ({}) must be at least packet_size ({})",
                self.max_stream_size, self.packet_size
            ));
        }
        if self.membership == Membership::Partial {
            let v = &self.view;
            if v.active_size < 2
                || v.passive_size == 0
                || v.probe_interval.is_zero()
                || v.shuffle_interval.is_zero()
                || v.failure_timeout <= v.probe_interval
            {
                return bad(format!(
                    "partial membership needs view.active_size >= 2 (is {}), view.passive_size >= 1 (is {}), view.shuffle_interval > 0 (is {:?}) and view.failure_timeout ({:?}) longer than view.probe_interval ({:?}) > 0",
                    v.active_size, v.passive_size, v.shuffle_interval, v.failure_timeout, v.probe_interval
                ));
            }
        }
        self.limits.validate()
    }

    /// The fields a running node cannot change: the key space's modes and
    /// Merkle depth (every replica must share them), the datagram and
    /// stream sizes (the transport framed and sized its buffers with them)
    /// `awareness_max` (the health score's range), and the membership mode
    /// with its overlay's parameters (the neighbours would have to be
    /// rebuilt).
    pub const RESTART_ONLY: [&'static str; 7] = [
        "kv",
        "packet_size",
        "max_stream_size",
        "awareness_max",
        "membership",
        "view",
        "tree",
    ];

    /// What a running node with this configuration adopts when asked for
    /// `new`: `new`, with each [`Config::RESTART_ONLY`] field that differs
    /// kept at this configuration's value; and the names of those fields.
    pub fn runtime_update(&self, new: &Config) -> (Config, Vec<&'static str>) {
        let mut next = new.clone();
        let mut kept = Vec::new();
        if next.kv != self.kv {
            next.kv = self.kv.clone();
            kept.push("kv");
        }
        if next.packet_size != self.packet_size {
            next.packet_size = self.packet_size;
            kept.push("packet_size");
        }
        if next.max_stream_size != self.max_stream_size {
            next.max_stream_size = self.max_stream_size;
            kept.push("max_stream_size");
        }
        if next.awareness_max != self.awareness_max {
            next.awareness_max = self.awareness_max;
            kept.push("awareness_max");
        }
        if next.membership != self.membership {
            next.membership = self.membership;
            kept.push("membership");
        }
        if next.view != self.view {
            next.view = self.view.clone();
            kept.push("view");
        }
        if next.tree != self.tree {
            next.tree = self.tree.clone();
            kept.push("tree");
        }
        (next, kept)
    }

    /// Retransmissions of one update in a cluster of `n` members.
    pub fn retransmit_limit(&self, n: usize) -> u32 {
        let scale = ((n as f64) + 1.0).log10().ceil().max(1.0) as u32;
        self.retransmit_mult * scale
    }

    /// Minimum suspicion timeout in a cluster of `n` members.
    pub fn suspicion_min(&self, n: usize) -> Duration {
        let scale = (n.max(1) as f64).log10().max(1.0);
        self.probe_interval
            .mul_f64(self.suspicion_mult as f64 * scale)
    }

    /// Maximum suspicion timeout in a cluster of `n` members.
    pub fn suspicion_max(&self, n: usize) -> Duration {
        self.suspicion_min(n) * self.suspicion_max_mult
    }

    /// Push-pull interval in a cluster of `n` members: the base up to 32
    /// members, then one more base interval per doubling (as memberlist does).
    pub fn push_pull_interval_for(&self, n: usize) -> Duration {
        const THRESHOLD: usize = 32;
        if n <= THRESHOLD {
            return self.push_pull_interval;
        }
        let mult = ((n as f64).log2() - (THRESHOLD as f64).log2()).ceil() + 1.0;
        self.push_pull_interval.mul_f64(mult)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_validate() {
        for p in [Profile::Lan, Profile::Wan, Profile::Local] {
            Config::profile(p).validate().unwrap();
        }
    }

    #[test]
    fn suspicion_bounds_follow_the_formulas() {
        let c = Config {
            suspicion_mult: 4,
            suspicion_max_mult: 6,
            ..Config::lan()
        };
        // memberlist: 4 * log10(16) * 1 s = 4.8 s
        assert_eq!(c.suspicion_min(16).as_millis(), 4816);
        assert_eq!(c.suspicion_min(5).as_secs(), 4);
        assert_eq!(c.suspicion_max(16), c.suspicion_min(16) * 6);
        // rumor's LAN keeps memberlist's maximum, halves the minimum.
        let lan = Config::lan();
        assert_eq!(
            lan.suspicion_max(16).as_millis(),
            c.suspicion_max(16).as_millis()
        );
        assert_eq!(
            (lan.suspicion_min(16) * 2).as_millis(),
            c.suspicion_min(16).as_millis()
        );
        assert_eq!(c.retransmit_limit(16), 8);
        assert_eq!(c.retransmit_limit(9), 4);
        assert_eq!(c.push_pull_interval_for(64).as_secs(), 60);
    }

    #[test]
    fn runtime_update_keeps_the_restart_only_fields() {
        let old = Config::lan();
        let mut new = Config {
            probe_interval: Duration::from_millis(300),
            packet_size: 1200,
            ..Config::lan()
        };
        new.kv.merkle_depth = 3;
        let (next, kept) = old.runtime_update(&new);
        assert_eq!(kept, vec!["kv", "packet_size"]);
        assert_eq!(next.probe_interval, Duration::from_millis(300));
        assert_eq!(next.packet_size, old.packet_size);
        assert_eq!(next.kv, old.kv);
        assert!(old.runtime_update(&Config::lan()).1.is_empty());
    }

    #[test]
    fn bad_values_name_the_field() {
        let c = Config {
            probe_timeout: Duration::from_secs(5),
            ..Config::lan()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("probe_timeout"), "{err}");
        assert!("mars".parse::<Profile>().is_err());
    }
}
