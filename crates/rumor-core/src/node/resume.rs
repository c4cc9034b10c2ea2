//! Resuming from what an earlier run of this node kept on disk: its
//! incarnation, its Lamport clock, its own per-node state and its replica
//! of the key space. The driver loads them (the core does no IO) and hands
//! them over before the node starts.

use super::Node;
use crate::kv::Entry as KvEntry;
use crate::state::Entry as StateEntry;
use crate::time::Instant;

/// What a node kept from an earlier run.
#[derive(Clone, Debug, Default)]
pub struct Resume {
    /// The incarnation it last had; the node starts above it.
    pub incarnation: u64,
    /// Its user-event and query Lamport clock.
    pub lamport: u64,
    /// Its own per-node state entries, tombstones included.
    pub state: Vec<(String, StateEntry)>,
    /// The highest per-node state version it issued.
    pub state_version: u64,
    /// Its replica of the key space, as `(key, entry)`.
    pub kv: Vec<(String, KvEntry)>,
}

/// How much of a [`Resume`] was taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resumed {
    /// Key-space records loaded.
    pub kv_loaded: usize,
    /// Key-space records refused (malformed, wrong mode, over quota).
    pub kv_refused: usize,
    /// Per-node state entries skipped as malformed.
    pub state_skipped: usize,
}

impl Node {
    /// Take back what an earlier run kept. Has no effect once the node has
    /// started (everything in it would race with live traffic).
    pub fn resume(&mut self, now: Instant, from: Resume) -> Resumed {
        let mut done = Resumed::default();
        if self.started {
            return done;
        }
        self.resume_incarnation(from.incarnation);
        self.user_events.resume(from.lamport);
        done.state_skipped =
            self.node_state
                .store_mut()
                .restore_own(now, from.state, from.state_version);
        (done.kv_loaded, done.kv_refused) = self.kv.store_mut().restore_all(from.kv);
        done
    }

    /// This node's current incarnation.
    pub fn incarnation(&self) -> u64 {
        self.members[0].incarnation
    }

    /// The highest per-node state version this node has issued.
    pub fn state_version(&self) -> u64 {
        self.node_state
            .store()
            .owner(&self.name)
            .map_or(0, |own| own.max_version())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn node(name: &str) -> Node {
        let addr = "127.0.0.1:7946".parse().expect("address");
        Node::new(name, addr, Config::lan(), 7).expect("node")
    }

    /// What a driver would keep of `n`.
    fn kept(n: &Node) -> Resume {
        let own = n.state().owner(&n.name).expect("own state");
        Resume {
            incarnation: n.local().incarnation,
            lamport: n.event_clock(),
            state: own
                .entries()
                .map(|(k, e)| (k.to_owned(), e.clone()))
                .collect(),
            state_version: n.state_version(),
            kv: n
                .kv()
                .iter()
                .map(|(k, e)| (k.to_owned(), e.clone()))
                .collect(),
        }
    }

    #[test]
    fn a_resumed_node_continues_where_it_stopped() {
        let t = Instant::ZERO;
        let mut a = node("a");
        a.kv_put(t, "k1", b"v1".to_vec()).expect("put");
        a.kv_put(t, "k2", b"v2".to_vec()).expect("put");
        a.kv_delete(t, "k1").expect("delete");
        a.state_write(t, "role", Some("db")).expect("state");
        a.state_write(t, "gone", Some("x")).expect("state");
        a.state_write(t, "gone", None).expect("state");
        let ltime = a.send_event(t, "deploy", b"").expect("event");
        let before = kept(&a);

        let mut b = node("a");
        while b.poll_event().is_some() {}
        let done = b.resume(t, before.clone());
        assert_eq!(done.kv_loaded, 2);
        assert_eq!((done.kv_refused, done.state_skipped), (0, 0));
        assert_eq!(
            b.kv().root(),
            a.kv().root(),
            "same key space, tombstone included"
        );
        assert!(b.kv().get("k1").is_none());
        assert!(b.poll_event().is_none(), "restoring is not news");
        assert!(b.local().incarnation > before.incarnation);
        assert_eq!(b.state_version(), before.state_version);
        b.state_write(t, "role", Some("web")).expect("state");
        assert_eq!(
            b.state_version(),
            before.state_version + 1,
            "no version reuse"
        );
        assert!(b.send_event(t, "deploy", b"").expect("event") > ltime);
        // The restored stamps are in the clock: a new write outranks them
        // even when the wall clock reads earlier.
        b.kv_put(t, "k2", b"v3".to_vec()).expect("put");
        assert_eq!(
            b.kv().get("k2").and_then(|e| e.lww_value()),
            Some(&b"v3"[..])
        );
    }

    #[test]
    fn damaged_records_are_refused_not_fatal() {
        let t = Instant::ZERO;
        let mut a = node("a");
        a.kv_put(t, "ok", b"v".to_vec()).expect("put");
        let mut kept = kept(&a);
        let good = kept.kv[0].1.clone();
        kept.kv.push(("\u{0}".repeat(100_000), good));
        kept.state.push((
            String::new(),
            StateEntry {
                value: None,
                version: 3,
            },
        ));
        let mut b = node("a");
        let done = b.resume(t, kept);
        assert_eq!(
            (done.kv_loaded, done.kv_refused, done.state_skipped),
            (1, 1, 1)
        );
    }

    #[test]
    fn resume_after_start_changes_nothing() {
        let t = Instant::ZERO;
        let mut a = node("a");
        a.join(t, &[]);
        let inc = a.local().incarnation;
        let done = a.resume(
            t,
            Resume {
                incarnation: 50,
                lamport: 9,
                ..Resume::default()
            },
        );
        assert_eq!(done, Resumed::default());
        assert_eq!(a.local().incarnation, inc);
        assert_eq!(a.event_clock(), 0);
    }

    #[test]
    fn an_export_imports_once() {
        let t = Instant::ZERO;
        let mut a = node("a");
        a.kv_put(t, "k1", b"v1".to_vec()).expect("put");
        a.kv_delete(t, "k2").expect("delete");
        let export: Vec<crate::kv::Record> = a
            .kv()
            .iter()
            .map(|(k, e)| crate::kv::Record {
                key: k.to_owned(),
                entry: e.clone(),
            })
            .collect();
        let mut b = node("b");
        let first = b.kv_import(t, export.clone());
        assert_eq!((first.applied, first.stale, first.refused), (2, 0, 0));
        assert_eq!(b.kv().root(), a.kv().root());
        let again = b.kv_import(t, export);
        assert_eq!((again.applied, again.stale), (0, 2));
    }
}
