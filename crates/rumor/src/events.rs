//! What a node reports to the application: the [`Event`] family, stamped
//! once by the driver with the wall-clock time the node saw or applied
//! each one, and the ways to receive them.
//!
//! There is one channel per node. [`crate::Node::events`] is a receiver of
//! all of it; [`crate::Node::subscribe`] a [`Subscription`] to the kinds an
//! [`EventFilter`] selects; [`crate::Node::event_stream`] and
//! [`Subscription::into_stream`] the same as a [`futures_util::Stream`];
//! [`crate::Node::watch`] key-space changes under a prefix. All are views
//! of that one channel: an event is built once (only while somebody
//! listens) and shared behind an `Arc`.
//!
//! A receiver that falls more than
//! [`EVENTS_CAPACITY`](crate::builder::EVENTS_CAPACITY) events behind
//! loses the oldest and is told how many it missed (counted over all
//! kinds, not only those it selects).
//!
//! With the crate's `serde` feature every event type derives
//! `Serialize` and `Deserialize`.

use std::ops::BitOr;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::Stream;
use rumor_core::kv::Entry as KvEntry;
use rumor_core::{Member, MemberEventKind};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::query::IncomingQuery;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// Everything a node reports, in the order the node saw it: membership
/// changes, application events, per-node state and key-space changes,
/// queries to answer and suspicions raised. Each carries `at`, when the
/// local node saw or applied it.
///
/// Each event is behind an `Arc`: a broadcast channel keeps a slot per
/// event it can hold and clones the event for every receiver, and a
/// pointer keeps both small.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "event", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Event {
    /// A member joined, changed, was suspected, failed, left or was reaped.
    Member(Arc<MemberEvent>),
    /// An application event sent with [`crate::Node::send_event`],
    /// delivered once on every node, the sender included.
    User(Arc<UserEvent>),
    /// A member's per-node state key changed here (a local write or one
    /// learned from the cluster).
    State(Arc<StateChange>),
    /// A replicated key changed here (a local write or one learned from the
    /// cluster); `new` may be a tombstone (a delete).
    Kv(Arc<KvChange>),
    /// A query this node is selected for (its filters match), to answer
    /// with [`crate::Node::respond`]. Acks, when the asker wants them, are
    /// sent already; the built-in [`crate::query::PING`] is answered and not
    /// delivered.
    Query(Arc<IncomingQuery>),
    /// This node began to suspect a member: who raised it and why (after
    /// the member's `Suspect` event).
    Suspected(Arc<Suspected>),
}

impl Event {
    /// When the local node saw or applied it (wall clock).
    pub fn at(&self) -> SystemTime {
        match self {
            Event::Member(e) => e.at,
            Event::User(e) => e.at,
            Event::State(e) => e.at,
            Event::Kv(e) => e.at,
            Event::Query(e) => e.at,
            Event::Suspected(e) => e.at,
        }
    }

    /// The filter bit of this event's kind.
    fn kind(&self) -> EventFilter {
        match self {
            Event::Member(_) => EventFilter::MEMBER,
            Event::User(_) => EventFilter::USER,
            Event::State(_) => EventFilter::STATE,
            Event::Kv(_) => EventFilter::KV,
            Event::Query(_) => EventFilter::QUERY,
            Event::Suspected(_) => EventFilter::SUSPECTED,
        }
    }
}

/// A change in membership.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct MemberEvent {
    /// What happened.
    pub kind: MemberEventKind,
    /// The member after the change.
    pub member: Member,
    /// When the local node saw it.
    pub at: SystemTime,
}

/// An application event delivered here (sent by any member, this one
/// included), identified by `(origin, ltime)`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct UserEvent {
    /// Event name.
    pub name: String,
    /// Opaque payload.
    pub payload: Vec<u8>,
    /// The member that sent it.
    pub origin: Arc<str>,
    /// Lamport time at the origin when it was sent.
    pub ltime: u64,
    /// When the local node delivered it.
    pub at: SystemTime,
}

/// A change of a replicated key applied here (a local write or one
/// learned from the cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct KvChange {
    /// The key.
    pub key: String,
    /// Its entry before, if any.
    pub old: Option<KvEntry>,
    /// Its entry now (possibly a tombstone: a delete).
    pub new: KvEntry,
    /// When the local node applied it.
    pub at: SystemTime,
}

/// A change of a member's per-node state key applied here.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct StateChange {
    /// Whose key.
    pub owner: Arc<str>,
    /// The key.
    pub key: String,
    /// Version before (0: the key was unknown).
    pub old_version: u64,
    /// Version now.
    pub new_version: u64,
    /// The value now (`None`: deleted).
    pub value: Option<String>,
    /// When the local node applied it.
    pub at: SystemTime,
}

/// Who raised a suspicion this node now holds, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Suspected {
    /// The suspected member.
    pub name: String,
    /// The member that raised it (this node, after its own probe failed).
    pub accuser: String,
    /// Why.
    pub cause: rumor_core::SuspicionCause,
    /// When the local node began to suspect it.
    pub at: SystemTime,
}

impl UserEvent {
    pub(crate) fn stamped(e: rumor_core::UserEvent, at: SystemTime) -> Self {
        UserEvent {
            name: e.name,
            payload: e.payload,
            origin: e.origin,
            ltime: e.ltime,
            at,
        }
    }
}

impl KvChange {
    pub(crate) fn stamped(c: rumor_core::kv::Change, at: SystemTime) -> Self {
        KvChange {
            key: c.key,
            old: c.old,
            new: c.new,
            at,
        }
    }
}

impl StateChange {
    pub(crate) fn stamped(c: rumor_core::state::Change, at: SystemTime) -> Self {
        StateChange {
            owner: c.owner,
            key: c.key,
            old_version: c.old_version,
            new_version: c.new_version,
            value: c.value,
            at,
        }
    }
}

/// Which kinds of [`Event`] a [`Subscription`] delivers; combine with `|`
/// (`EventFilter::MEMBER | EventFilter::USER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventFilter(u8);

impl EventFilter {
    /// Nothing.
    pub const NONE: EventFilter = EventFilter(0);
    /// [`Event::Member`].
    pub const MEMBER: EventFilter = EventFilter(1);
    /// [`Event::User`].
    pub const USER: EventFilter = EventFilter(1 << 1);
    /// [`Event::State`].
    pub const STATE: EventFilter = EventFilter(1 << 2);
    /// [`Event::Kv`].
    pub const KV: EventFilter = EventFilter(1 << 3);
    /// [`Event::Query`].
    pub const QUERY: EventFilter = EventFilter(1 << 4);
    /// [`Event::Suspected`].
    pub const SUSPECTED: EventFilter = EventFilter(1 << 5);
    /// Every kind.
    pub const ALL: EventFilter = EventFilter(u8::MAX);

    /// Whether `event` is of a kind this filter selects.
    pub fn matches(self, event: &Event) -> bool {
        self.0 & event.kind().0 != 0
    }
}

impl Default for EventFilter {
    /// Every kind.
    fn default() -> Self {
        EventFilter::ALL
    }
}

impl BitOr for EventFilter {
    type Output = EventFilter;

    fn bitor(self, other: EventFilter) -> EventFilter {
        EventFilter(self.0 | other.0)
    }
}

/// A receiver's missed events: it fell more than
/// [`EVENTS_CAPACITY`](crate::builder::EVENTS_CAPACITY) behind, and this
/// many events (of any kind) were dropped before it read them. It goes on
/// with the oldest event still held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} events were missed: the receiver fell behind")]
pub struct Lagged(pub u64);

/// The events of the kinds a filter selects, from [`crate::Node::subscribe`]:
/// a filtered view of the node's one event channel.
#[derive(Debug)]
pub struct Subscription {
    filter: EventFilter,
    rx: broadcast::Receiver<Event>,
}

impl Subscription {
    pub(crate) fn new(filter: EventFilter, rx: broadcast::Receiver<Event>) -> Self {
        Subscription { filter, rx }
    }

    /// The kinds delivered.
    pub fn filter(&self) -> EventFilter {
        self.filter
    }

    /// The next selected event. Fails with [`RecvError::Lagged`] (then goes
    /// on) if this subscription fell too far behind and lost events, and
    /// with [`RecvError::Closed`] once the node has stopped.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        loop {
            let ev = self.rx.recv().await?;
            if self.filter.matches(&ev) {
                return Ok(ev);
            }
        }
    }

    /// The next selected event already queued, without waiting
    /// ([`TryRecvError::Empty`] if there is none).
    pub fn try_recv(&mut self) -> Result<Event, TryRecvError> {
        loop {
            let ev = self.rx.try_recv()?;
            if self.filter.matches(&ev) {
                return Ok(ev);
            }
        }
    }

    /// The selected events as a stream: `Err(Lagged)` items say how many
    /// were missed when the reader fell behind; the stream ends once the
    /// node has stopped.
    pub fn into_stream(self) -> impl Stream<Item = Result<Event, Lagged>> + Send + Unpin + 'static {
        Box::pin(futures_util::stream::unfold(self, |mut sub| async move {
            let item = match sub.recv().await {
                Ok(ev) => Ok(ev),
                Err(RecvError::Lagged(n)) => Err(Lagged(n)),
                Err(RecvError::Closed) => return None,
            };
            Some((item, sub))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Event {
        Event::User(Arc::new(UserEvent {
            name: name.into(),
            payload: Vec::new(),
            origin: "a".into(),
            ltime: 1,
            at: SystemTime::UNIX_EPOCH,
        }))
    }

    fn suspected() -> Event {
        Event::Suspected(Arc::new(Suspected {
            name: "b".into(),
            accuser: "a".into(),
            cause: rumor_core::SuspicionCause::Gossip,
            at: SystemTime::UNIX_EPOCH,
        }))
    }

    #[test]
    fn filters_select_kinds() {
        let (u, s) = (user("x"), suspected());
        assert!(EventFilter::ALL.matches(&u) && EventFilter::default().matches(&s));
        assert!(EventFilter::USER.matches(&u) && !EventFilter::USER.matches(&s));
        let both = EventFilter::USER | EventFilter::SUSPECTED;
        assert!(both.matches(&u) && both.matches(&s));
        assert!(!EventFilter::NONE.matches(&u));
        assert_eq!(u.at(), SystemTime::UNIX_EPOCH);
    }

    #[tokio::test]
    async fn a_subscription_skips_unselected_kinds_and_streams_lag_as_items() {
        use futures_util::StreamExt;
        let (tx, rx) = broadcast::channel(2);
        let mut sub = Subscription::new(EventFilter::USER, rx);
        tx.send(suspected()).unwrap();
        tx.send(user("x")).unwrap();
        assert_eq!(sub.try_recv().unwrap(), user("x"));
        assert!(matches!(sub.try_recv(), Err(TryRecvError::Empty)));
        for name in ["1", "2", "3"] {
            tx.send(user(name)).unwrap();
        }
        let mut stream = sub.into_stream();
        assert_eq!(stream.next().await, Some(Err(Lagged(1))));
        assert_eq!(stream.next().await, Some(Ok(user("2"))));
        assert_eq!(stream.next().await, Some(Ok(user("3"))));
        drop(tx);
        assert_eq!(stream.next().await, None, "ends when the node stops");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn events_round_trip_through_json() {
        use rumor_core::kv::{Entry, LwwEntry, Timestamp};
        let member = Member {
            name: "a".into(),
            addr: "127.0.0.1:7946".parse().unwrap(),
            incarnation: 3,
            state: rumor_core::MemberState::Suspect,
            tags: Arc::new([("role".to_string(), "db".to_string())].into()),
            protocol: (1, 2),
        };
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1500);
        let events = [
            user("deploy"),
            suspected(),
            Event::Member(Arc::new(MemberEvent {
                kind: MemberEventKind::Joined,
                member,
                at,
            })),
            Event::Kv(Arc::new(KvChange {
                key: "k".into(),
                old: None,
                new: Entry::Lww(LwwEntry::put(b"v".to_vec(), Timestamp::new(1, 0, "a"))),
                at,
            })),
        ];
        for ev in events {
            let text = serde_json::to_string(&ev).unwrap();
            let back: Event = serde_json::from_str(&text).unwrap();
            assert_eq!(back, ev, "{text}");
        }
        let text = serde_json::to_string(&user("deploy")).unwrap();
        assert!(
            text.starts_with(r#"{"event":"user","name":"deploy""#),
            "{text}"
        );
    }
}
