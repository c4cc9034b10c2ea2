//! User events as a service of the node: stamped with the Lamport clock,
//! spread as rumors ([`Message::UserEvent`]), delivered once, and repaired
//! by the events that ride on membership's push-pulls. The bookkeeping,
//! without I/O, is [`EventLog`].

use std::convert::Infallible;
use std::sync::Arc;

use super::EventLog;
use crate::event::Event;
use crate::message::{Message, UserEvent};
use crate::node::service::{Context, Service};

/// The user events this node has seen, and its Lamport clock.
#[derive(Default)]
pub(crate) struct UserEvents {
    log: EventLog,
}

type Cx<'a, 'b> = &'a mut Context<'b, Infallible>;

impl UserEvents {
    /// Advance the Lamport clock for a new local event or query (queries
    /// share the clock) and return its time.
    pub fn tick(&mut self) -> u64 {
        self.log.tick()
    }

    /// Continue the clock from `clock`, reached in an earlier run.
    pub fn resume(&mut self, clock: u64) {
        self.log.resume(clock);
    }

    /// The current Lamport time.
    pub fn clock(&self) -> u64 {
        self.log.clock()
    }

    /// Stamp a new event of this node and deliver it here and everywhere;
    /// returns its Lamport time.
    pub fn send(&mut self, cx: Cx, name: &str, payload: &[u8]) -> u64 {
        let ev = UserEvent {
            ltime: self.log.tick(),
            origin: cx.name().clone(),
            name: name.to_owned(),
            payload: payload.to_vec(),
        };
        let ltime = ev.ltime;
        self.on_rumor(cx, ev);
        ltime
    }

    /// A peer's rumor (or this node's own event): deliver it once and pass
    /// it on.
    pub fn on_rumor(&mut self, cx: Cx, ev: UserEvent) {
        let window = cx.config().event_dedup_window;
        if !self.log.witness(cx.now(), &ev, window) {
            return;
        }
        self.log.keep(cx.now(), ev.clone());
        let key: Arc<str> = format!("\u{1}event\u{1}{}\u{1}{}", ev.origin, ev.ltime).into();
        cx.broadcast(key, Message::UserEvent(ev.clone()));
        cx.emit(Event::User(ev));
    }

    /// The recent events a push-pull carries (`window`: the dedup window).
    pub fn recent(
        &mut self,
        now: crate::time::Instant,
        window: std::time::Duration,
    ) -> Vec<UserEvent> {
        self.log.recent(now, window)
    }

    /// The events a push-pull partner carried: delivered if missed, but
    /// not passed on (the rumor already went everywhere it could).
    pub fn repair(&mut self, cx: Cx, events: &[UserEvent]) {
        let window = cx.config().event_dedup_window;
        for ev in events {
            if self.log.witness(cx.now(), ev, window) {
                cx.stats().events_repaired += 1;
                cx.emit(Event::User(ev.clone()));
            }
        }
    }
}

impl Service for UserEvents {
    type Timer = Infallible;

    fn on_timer(&mut self, _cx: Cx, timer: Infallible) {
        match timer {}
    }
}
