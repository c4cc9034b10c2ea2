//! The agent's event history: the last member and user events it saw, each
//! numbered, so that `GET /v1/events?since=ID` (or an SSE client's
//! `Last-Event-ID`) replays what happened before the client connected and
//! then goes on live, with nothing lost or repeated in between.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::broadcast;

/// Events kept when the configuration says nothing (`event_history`).
pub const DEFAULT_EVENT_HISTORY: usize = 1024;

/// Live events a slow SSE client may fall behind by before it is told how
/// many it missed.
const LIVE_BACKLOG: usize = 1024;

/// One recorded event: its number (from 1, in the order seen), its SSE
/// event name (`member` or `user`) and its JSON text (with `"id"`).
#[derive(Debug)]
pub struct Recorded {
    /// Position in the agent's history, from 1.
    pub id: u64,
    /// The SSE event name.
    pub kind: &'static str,
    /// The event as JSON text.
    pub data: String,
}

/// What a client gets when it asks for the history after `since`.
pub struct Replay {
    /// Recorded events after `since` still kept, oldest first.
    pub past: Vec<Arc<Recorded>>,
    /// Events after `since` no longer kept (the ring is bounded).
    pub missed: u64,
    /// Every event recorded after `past`, none before.
    pub live: broadcast::Receiver<Arc<Recorded>>,
}

/// A bounded ring of recent events and the channel of new ones.
pub struct History {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Recorded>>,
}

struct Ring {
    capacity: usize,
    last_id: u64,
    events: VecDeque<Arc<Recorded>>,
}

impl History {
    /// A history keeping the last `capacity` events (0: none, live only).
    pub fn new(capacity: usize) -> History {
        History {
            ring: Mutex::new(Ring {
                capacity,
                last_id: 0,
                events: VecDeque::with_capacity(capacity.min(LIVE_BACKLOG)),
            }),
            live: broadcast::channel(LIVE_BACKLOG).0,
        }
    }

    /// Number `data` (an event of SSE name `kind`), keep it, and send it to
    /// live clients.
    pub fn record(&self, kind: &'static str, mut data: Value) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.last_id += 1;
        let id = ring.last_id;
        if let Some(map) = data.as_object_mut() {
            map.insert("id".into(), id.into());
        }
        let ev = Arc::new(Recorded {
            id,
            kind,
            data: data.to_string(),
        });
        if ring.capacity > 0 {
            if ring.events.len() == ring.capacity {
                ring.events.pop_front();
            }
            ring.events.push_back(ev.clone());
        }
        // Sent under the lock, so that a replay's snapshot and its live
        // receiver split the events exactly. No receivers is fine.
        let _ = self.live.send(ev);
    }

    /// Events recorded since the agent started (the last event's id).
    pub fn recorded(&self) -> u64 {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).last_id
    }

    /// Events recorded after `since` (`None`: none of the past, live only).
    pub fn replay(&self, since: Option<u64>) -> Replay {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let live = self.live.subscribe();
        let Some(since) = since else {
            return Replay {
                past: Vec::new(),
                missed: 0,
                live,
            };
        };
        let past: Vec<Arc<Recorded>> = ring
            .events
            .iter()
            .filter(|e| e.id > since)
            .cloned()
            .collect();
        let first_kept = past.first().map_or(ring.last_id + 1, |e| e.id);
        let missed = first_kept.saturating_sub(since.saturating_add(1));
        Replay { past, missed, live }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(r: &Replay) -> Vec<u64> {
        r.past.iter().map(|e| e.id).collect()
    }

    #[test]
    fn replays_after_since_then_live_without_gap_or_repeat() {
        let h = History::new(3);
        for i in 0..5 {
            h.record("user", json!({ "n": i }));
        }
        // Ids 1..=5, the ring keeps 3..=5.
        let mut r = h.replay(Some(0));
        assert_eq!(ids(&r), [3, 4, 5]);
        assert_eq!(r.missed, 2);
        assert!(r.past[0].data.contains("\"id\":3"), "{}", r.past[0].data);
        assert_eq!(ids(&h.replay(Some(4))), [5]);
        assert_eq!(h.replay(Some(4)).missed, 0);
        assert!(h.replay(Some(5)).past.is_empty());
        assert!(h.replay(None).past.is_empty());
        h.record("member", json!({}));
        let next = r
            .live
            .try_recv()
            .expect("the event recorded after the replay");
        assert_eq!((next.id, next.kind), (6, "member"));
        assert!(r.live.try_recv().is_err(), "nothing twice");
    }

    #[test]
    fn a_zero_capacity_keeps_nothing_but_still_numbers_and_sends() {
        let h = History::new(0);
        let mut r = h.replay(Some(0));
        h.record("user", json!({}));
        h.record("user", json!({}));
        assert!(h.replay(Some(0)).past.is_empty());
        assert_eq!(h.replay(Some(0)).missed, 2);
        assert_eq!(r.live.try_recv().map(|e| e.id).ok(), Some(1));
        assert_eq!(r.live.try_recv().map(|e| e.id).ok(), Some(2));
    }
}
