//! The key space's clocks on the wire: the wall clock the driver gives the
//! node, peers' clock offsets measured on Merkle sync sessions (see
//! [`crate::kv::skew`]), and the reports of remote records refused as too
//! far ahead of this node's clock.
//!
//! Rules kept here: the skew table holds members only (pruned every sync
//! tick, so a reaped member's entry goes); an echo is accepted only for a
//! session this node started with that peer and the `t0` it sent; refusal
//! reports are at most one a second, counted exactly in
//! [`crate::Stats::kv_refused_future`].

use std::net::SocketAddr;
use std::time::Duration;

use super::{Cx, KeySpace};
use crate::event::Event;
use crate::kv::{ClockProbe, ClockRefusal, Record, Skew, SkewTable};
use crate::message::Message;
use crate::time::Instant;

/// At most one [`Event::ClockRefused`] per this interval.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Clock state of a node besides the HLC (which the key space owns).
#[derive(Debug, Default)]
pub(crate) struct Clocks {
    /// Unix microseconds at `Instant::ZERO`.
    wall_origin: u64,
    /// Physical time this node started at: records stamped earlier are
    /// history it catches up on, not updates spreading, and are left out of
    /// the dissemination samples.
    started_wall: Option<u64>,
    /// The latest offset sample per member.
    skew: SkewTable,
    /// The probe that came with the sync request being handled, with this
    /// node's `t1` already filled in: it goes back with the answer.
    echo: Option<(SocketAddr, ClockProbe)>,
    /// When a refusal was last reported.
    reported_at: Option<Instant>,
    /// The last refusal not reported yet, with the count since the report.
    pending: Option<ClockRefusal>,
}

impl Clocks {
    /// Physical time at `now`, Unix microseconds.
    pub(super) fn physical(&self, now: Instant) -> u64 {
        self.wall_origin.saturating_add(now.as_micros())
    }

    /// How long a remote key-space record took to get here: from its
    /// writer's stamp to `now`, corrected by the writer's clock offset when
    /// one was measured. `None` for records written before this node
    /// started (catch-up, not dissemination) or stamped ahead of `now`.
    pub(super) fn dissemination_latency(&self, now: Instant, r: &Record) -> Option<Duration> {
        let ts = r.entry.latest()?;
        let since = self.started_wall?;
        if ts.wall < since {
            return None;
        }
        let offset = self.skew.get(&ts.node).map_or(0, |s| s.offset_micros);
        let written = i128::from(ts.wall) - i128::from(offset);
        let age = i128::from(self.physical(now)) - written;
        u64::try_from(age).ok().map(Duration::from_micros)
    }

    /// The echo owed to `from` for `session`, if its request came with a probe.
    pub(super) fn take_echo(&mut self, from: SocketAddr, session: u32) -> Option<Message> {
        match self.echo.take() {
            Some((to, p)) if to == from && p.session == session => Some(Message::KvClock(p)),
            _ => None,
        }
    }

    /// A remote record was refused: its stamp is `ahead_micros` ahead.
    pub(super) fn refused_future(&mut self, cx: Cx, r: &Record, ahead_micros: u64) {
        cx.stats().kv_refused_future += 1;
        let writer = r
            .entry
            .latest()
            .map_or_else(|| cx.name().clone(), |t| t.node.clone());
        let count = self.pending.as_ref().map_or(0, |p| p.count) + 1;
        self.pending = Some(ClockRefusal {
            writer_offset: self.skew.get(&writer),
            writer,
            key: r.key.clone(),
            ahead_micros,
            peer: cx.peer(),
            count,
        });
        self.report_refusals(cx);
    }

    /// Every sync tick: forget samples of names that are no longer members,
    /// and report refusals held back.
    pub(super) fn tick(&mut self, cx: Cx) {
        let peers = cx.peers();
        self.skew.retain(|n| peers.knows(n));
        self.report_refusals(cx);
    }

    fn report_refusals(&mut self, cx: Cx) {
        let now = cx.now();
        let due = self
            .reported_at
            .is_none_or(|t| now.saturating_since(t) >= REPORT_EVERY);
        if !due {
            return;
        }
        if let Some(r) = self.pending.take() {
            self.reported_at = Some(now);
            cx.emit(Event::ClockRefused(r));
        }
    }
}

impl KeySpace {
    /// The node starts: records stamped before now are history.
    pub(super) fn note_start(&mut self, now: Instant) {
        self.clocks.started_wall = Some(self.clocks.physical(now));
    }

    /// The wall clock's origin (see `Node::set_wall_clock`).
    pub fn set_wall_clock(&mut self, origin_unix_micros: u64) {
        self.clocks.wall_origin = origin_unix_micros;
    }

    /// The origin last given to [`KeySpace::set_wall_clock`].
    pub fn wall_clock(&self) -> u64 {
        self.clocks.wall_origin
    }

    /// Each member's clock offset as last measured on a session this node
    /// started.
    pub fn clock_skew(&self) -> &SkewTable {
        &self.clocks.skew
    }

    /// A clock probe (from an initiator) or its echo (from a responder).
    pub fn on_clock(&mut self, cx: Cx, from: SocketAddr, p: ClockProbe) {
        let now = cx.now();
        let Some(t1) = p.t1 else {
            let t1 = Some(self.clocks.physical(now));
            self.clocks.echo = Some((from, ClockProbe { t1, ..p }));
            return;
        };
        let Some(s) = self.sessions.get(&p.session) else {
            return;
        };
        if s.peer != from || s.t0 != p.t0 || !cx.peers().knows(&s.peer_name) {
            return;
        }
        let name = s.peer_name.clone();
        if let Some(skew) = Skew::measure(p.t0, t1, self.clocks.physical(now), now) {
            cx.stats().kv_clock_samples += 1;
            self.clocks.skew.record(name, skew);
        }
    }
}
