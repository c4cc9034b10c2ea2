//! Tests of [`KvStore`]: operations, bad input, and merge laws.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const NOW: u64 = 1_000_000;

fn config() -> KvConfig {
    KvConfig {
        prefix_modes: vec![("s/".into(), Mode::Siblings)],
        merkle_depth: 2,
        ..KvConfig::default()
    }
}

fn store(node: &str) -> KvStore {
    KvStore::new(node, config())
}

fn lww(value: Option<&[u8]>, wall: u64, node: &str) -> Entry {
    Entry::Lww(LwwEntry {
        value: value.map(<[u8]>::to_vec),
        ts: Timestamp::new(wall, 0, node),
    })
}

fn live(s: &KvStore, key: &str) -> Option<Vec<u8>> {
    s.get(key).and_then(Entry::lww_value).map(<[u8]>::to_vec)
}

#[test]
fn put_get_delete_scan_and_change_feed() {
    let mut s = store("a");
    s.put(10, "app/x", b"1".to_vec()).unwrap();
    s.put(11, "app/y", b"2".to_vec()).unwrap();
    s.put(12, "other", b"3".to_vec()).unwrap();
    s.delete(13, "app/y").unwrap();
    assert_eq!(live(&s, "app/x").as_deref(), Some(&b"1"[..]));
    assert!(s.get("app/y").is_none());
    assert!(s.entry("app/y").is_some_and(Entry::is_tombstone));
    let keys: Vec<&str> = s.scan("app/").map(|(k, _)| k).collect();
    assert_eq!(keys, vec!["app/x"]);
    assert_eq!(s.len(), 3);

    let changes: Vec<Change> = std::iter::from_fn(|| s.poll_change()).collect();
    assert_eq!(changes.len(), 4);
    assert!(changes[0].old.is_none());
    let del = &changes[3];
    assert_eq!(del.key, "app/y");
    assert_eq!(del.old.as_ref().and_then(Entry::lww_value), Some(&b"2"[..]));
    assert!(del.new.is_tombstone());
}

#[test]
fn local_writes_check_limits_and_store_nothing_on_error() {
    let mut s = store("a");
    let long = "k".repeat(MAX_KEY_LEN + 1);
    assert_eq!(
        s.put(1, &long, vec![]),
        Err(KvError::Invalid(Invalid::KeyTooLong(MAX_KEY_LEN + 1)))
    );
    assert_eq!(
        s.put(1, "", vec![]),
        Err(KvError::Invalid(Invalid::KeyEmpty))
    );
    assert_eq!(
        s.put(1, "k", vec![0; MAX_VALUE_LEN + 1]),
        Err(KvError::Invalid(Invalid::ValueTooLarge(MAX_VALUE_LEN + 1)))
    );
    assert!(s
        .put(1, &"k".repeat(MAX_KEY_LEN), vec![0; MAX_VALUE_LEN])
        .is_ok());
    let _ = s.poll_change();
    assert_eq!(
        s.put(1, "s/counter", b"1".to_vec()),
        Err(KvError::ContextRequired {
            key: "s/counter".into()
        })
    );
    assert!(s.delete(1, "s/counter").is_err());
    assert_eq!(s.len(), 1);
    assert_eq!(s.pending_changes(), 0);
}

#[test]
fn siblings_mode_keeps_concurrent_writes() {
    let mut a = store("a");
    let mut b = store("b");
    let empty = VersionVector::new();
    let ea = a.put_in_context(1, "s/k", b"x".to_vec(), &empty).unwrap();
    let eb = b.put_in_context(1, "s/k", b"y".to_vec(), &empty).unwrap();
    assert_eq!(a.apply_remote(NOW, b"s/k", eb), Outcome::Applied);
    assert_eq!(b.apply_remote(NOW, b"s/k", ea), Outcome::Applied);
    assert_eq!(a.root(), b.root());
    let Some(Entry::Siblings(set)) = a.get("s/k") else {
        panic!("expected siblings")
    };
    assert_eq!(set.len(), 2);

    let read = a.context("s/k");
    let e = a.put_in_context(2, "s/k", b"z".to_vec(), &read).unwrap();
    assert_eq!(b.apply_remote(NOW, b"s/k", e.clone()), Outcome::Applied);
    assert_eq!(
        b.apply_remote(NOW, b"s/k", e),
        Outcome::Stale(Stale::Duplicate)
    );
    let Some(Entry::Siblings(set)) = b.get("s/k") else {
        panic!("expected siblings")
    };
    assert_eq!(set.values().collect::<Vec<_>>(), vec![&b"z"[..]]);

    let read = b.context("s/k");
    b.delete_in_context(3, "s/k", &read).unwrap();
    assert!(b.get("s/k").is_none());
}

fn one_sibling() -> SiblingSet {
    let mut set = SiblingSet::new();
    set.write(
        Timestamp::new(5, 0, "b"),
        &VersionVector::new(),
        Some(vec![1]),
    );
    set
}

#[test]
fn remote_bad_input_is_refused_with_a_reason() {
    let mut s = store("a");
    let e = lww(Some(b"v"), 5, "b");
    let long = vec![b'k'; MAX_KEY_LEN + 1];
    let cases: Vec<(&[u8], Entry, Invalid)> = vec![
        (b"\xff\xfe", e.clone(), Invalid::KeyNotUtf8),
        (b"", e.clone(), Invalid::KeyEmpty),
        (&long, e.clone(), Invalid::KeyTooLong(MAX_KEY_LEN + 1)),
        (
            b"k",
            lww(Some(&vec![0; MAX_VALUE_LEN + 1]), 5, "b"),
            Invalid::ValueTooLarge(MAX_VALUE_LEN + 1),
        ),
        (b"k", lww(Some(b"v"), 5, ""), Invalid::BadNodeName),
        (
            b"k",
            lww(Some(b"v"), 5, &"n".repeat(limits::MAX_NAME_LEN + 1)),
            Invalid::BadNodeName,
        ),
        (
            b"s/k",
            e.clone(),
            Invalid::ModeMismatch {
                expected: Mode::Siblings,
            },
        ),
        (
            b"k",
            Entry::Siblings(one_sibling()),
            Invalid::ModeMismatch {
                expected: Mode::Lww,
            },
        ),
        (
            b"s/k",
            Entry::Siblings(SiblingSet::new()),
            Invalid::MalformedSiblings,
        ),
        (
            b"k",
            lww(Some(b"v"), NOW + 61_000_000, "b"),
            Invalid::FromTheFuture {
                ahead_micros: 61_000_000,
            },
        ),
    ];
    for (key, entry, why) in cases {
        assert_eq!(s.apply_remote(NOW, key, entry), Outcome::Invalid(why));
    }
    // A sibling outside its context.
    let mut sibs = std::collections::BTreeMap::new();
    sibs.insert(
        Dot {
            node: "b".into(),
            counter: 3,
        },
        Sibling {
            ts: Timestamp::new(1, 0, "b"),
            value: None,
        },
    );
    let bad = Entry::Siblings(SiblingSet::from_parts(sibs, VersionVector::new()));
    assert_eq!(
        s.apply_remote(NOW, b"s/k", bad),
        Outcome::Invalid(Invalid::MalformedSiblings)
    );
    // Too many siblings.
    let mut set = SiblingSet::new();
    for i in 0..=MAX_SIBLINGS {
        set.write(
            Timestamp::new(1, 0, format!("n{i}")),
            &VersionVector::new(),
            Some(vec![]),
        );
    }
    assert_eq!(
        s.apply_remote(NOW, b"s/k", Entry::Siblings(set)),
        Outcome::Invalid(Invalid::TooManySiblings(MAX_SIBLINGS + 1))
    );
    assert!(s.is_empty());
    assert_eq!(s.pending_changes(), 0);
    assert_eq!(s.root(), 0);
}

#[test]
fn remote_stale_input_is_ignored_with_a_reason() {
    let mut s = store("a");
    assert_eq!(
        s.apply_remote(NOW, b"k", lww(Some(b"new"), 10, "b")),
        Outcome::Applied
    );
    let cases = [
        (lww(Some(b"new"), 10, "b"), Stale::Duplicate),
        (lww(Some(b"old"), 9, "c"), Stale::Older),
        (lww(None, 9, "c"), Stale::TombstoneBehindWrite),
    ];
    for (entry, why) in cases {
        assert_eq!(s.apply_remote(NOW, b"k", entry), Outcome::Stale(why));
    }
    assert_eq!(live(&s, "k").as_deref(), Some(&b"new"[..]));
    // Ties on (wall, logical) go to the greater node name.
    assert_eq!(
        s.apply_remote(NOW, b"k", lww(Some(b"c"), 10, "c")),
        Outcome::Applied
    );
    assert_eq!(
        s.apply_remote(NOW, b"k", lww(None, 11, "b")),
        Outcome::Applied
    );
    assert!(s.get("k").is_none());
    assert_eq!(
        s.apply_remote(NOW, b"k", lww(Some(b"x"), 10, "z")),
        Outcome::Stale(Stale::Older)
    );

    // Siblings already superseded.
    let empty = VersionVector::new();
    let mut other = store("b");
    let first = other
        .put_in_context(1, "s/k", b"1".to_vec(), &empty)
        .unwrap();
    let read = other.context("s/k");
    let second = other
        .put_in_context(2, "s/k", b"2".to_vec(), &read)
        .unwrap();
    assert_eq!(s.apply_remote(NOW, b"s/k", second), Outcome::Applied);
    assert_eq!(
        s.apply_remote(NOW, b"s/k", first),
        Outcome::Stale(Stale::Covered)
    );
}

#[test]
fn local_writes_order_after_witnessed_remote_ones() {
    let mut s = store("a");
    s.apply_remote(NOW, b"k", lww(Some(b"remote"), NOW + 5, "z"));
    s.put(NOW, "k", b"local".to_vec()).unwrap();
    assert_eq!(live(&s, "k").as_deref(), Some(&b"local"[..]));
}

#[test]
fn gc_drops_old_tombstones_and_refuses_them_afterwards() {
    let mut s = store("a");
    s.put(100, "live", b"v".to_vec()).unwrap();
    s.delete(100, "dead").unwrap();
    s.delete(500, "recent").unwrap();
    let root_before = s.root();
    assert_eq!(s.gc(400, Duration::from_micros(200)).len(), 1);
    assert!(s.entry("dead").is_none() && s.entry("recent").is_some());
    assert_ne!(s.root(), root_before);
    assert_eq!(s.gc(400, Duration::from_micros(200)).len(), 0);
    assert_eq!(
        s.apply_remote(NOW, b"dead", lww(None, 150, "b")),
        Outcome::Stale(Stale::Expired)
    );
    // An old tombstone still deletes a value the store holds.
    assert_eq!(
        s.apply_remote(NOW, b"live", lww(None, 150, "b")),
        Outcome::Applied
    );
    assert_eq!(s.gc(400, Duration::from_micros(200)).len(), 1);
    assert_eq!(s.len(), 1);
    // The root is what a store that never saw the collected keys has.
    let mut fresh = store("a");
    fresh.delete(500, "recent").unwrap();
    assert_eq!(s.root(), fresh.root());
}

// ---- merge laws over whole stores ----------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    SibPut(u8, u8, bool),
    SibDelete(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        (0u8..6).prop_map(Op::Delete),
        (0u8..4, any::<u8>(), any::<bool>()).prop_map(|(k, v, c)| Op::SibPut(k, v, c)),
        (0u8..4).prop_map(Op::SibDelete),
    ]
}

fn build(node: &str, ops: &[(u64, Op)]) -> KvStore {
    let mut s = store(node);
    let mut t = 0;
    // Context-free sibling writes add a sibling each; cap them so merged
    // stores stay under MAX_SIBLINGS.
    let mut blind = 0;
    for (dt, op) in ops {
        t += dt;
        let r = match op {
            Op::Put(k, v) => s.put(t, &format!("k{k}"), vec![*v]),
            Op::Delete(k) => s.delete(t, &format!("k{k}")),
            Op::SibPut(k, v, with_ctx) => {
                let key = format!("s/{k}");
                blind += usize::from(!*with_ctx);
                let ctx = if *with_ctx || blind > 4 {
                    s.context(&key)
                } else {
                    VersionVector::new()
                };
                s.put_in_context(t, &key, vec![*v], &ctx)
            }
            Op::SibDelete(k) => {
                let key = format!("s/{k}");
                let ctx = s.context(&key);
                s.delete_in_context(t, &key, &ctx)
            }
        };
        assert!(r.is_ok(), "{r:?}");
    }
    s
}

fn stores() -> impl Strategy<Value = KvStore> {
    (
        prop::sample::select(vec!["a", "b", "c"]),
        prop::collection::vec((0u64..3, op()), 0..12),
    )
        .prop_map(|(node, ops)| build(node, &ops))
}

fn merged(x: &KvStore, y: &KvStore) -> KvStore {
    let mut out = x.clone();
    for (k, e) in y.iter() {
        let outcome = out.apply_remote(NOW, k.as_bytes(), e.clone());
        assert!(!matches!(outcome, Outcome::Invalid(_)), "{outcome:?}");
    }
    out
}

fn state(s: &KvStore) -> (BTreeMap<String, Entry>, u64) {
    let map = s.iter().map(|(k, e)| (k.to_owned(), e.clone())).collect();
    (map, s.root())
}

proptest! {
    #[test]
    fn store_merge_is_commutative(a in stores(), b in stores()) {
        prop_assert_eq!(state(&merged(&a, &b)), state(&merged(&b, &a)));
    }

    #[test]
    fn store_merge_is_associative(a in stores(), b in stores(), c in stores()) {
        prop_assert_eq!(
            state(&merged(&merged(&a, &b), &c)),
            state(&merged(&a, &merged(&b, &c)))
        );
    }

    #[test]
    fn store_merge_is_idempotent(a in stores(), b in stores()) {
        prop_assert_eq!(state(&merged(&a, &a)), state(&a));
        let ab = merged(&a, &b);
        prop_assert_eq!(state(&merged(&ab, &b)), state(&ab));
    }
}

#[test]
fn restoring_in_bulk_builds_what_one_at_a_time_builds() {
    let mut src = store("a");
    for i in 0..300u32 {
        src.put(NOW + u64::from(i), &format!("k{i}"), vec![i as u8; 3])
            .unwrap();
    }
    for i in (0..300u32).step_by(7) {
        src.delete(NOW + 1000 + u64::from(i), &format!("k{i}"))
            .unwrap();
    }
    src.put_in_context(NOW, "s/cart", b"x".to_vec(), &VersionVector::new())
        .unwrap();
    let mut kept: Vec<(String, Entry)> =
        src.iter().map(|(k, e)| (k.to_owned(), e.clone())).collect();
    // Damage a data dir could hold: a key too long, a wrong mode, a repeat.
    kept.push(("x".repeat(MAX_KEY_LEN + 1), lww(Some(b"v"), 1, "a")));
    kept.push(("s/wrong-mode".into(), lww(Some(b"v"), 1, "a")));
    kept.push(("k1".into(), src.entry("k1").unwrap().clone()));

    let mut one = store("a");
    for (k, e) in kept.clone() {
        let _ = one.restore(k.as_bytes(), e);
    }
    let mut bulk = store("a");
    let (loaded, refused) = bulk.restore_all(kept);
    assert_eq!(loaded, src.len());
    assert_eq!(refused, 3, "two invalid and one repeat");
    assert_eq!(bulk.root(), src.root());
    assert_eq!(bulk.root(), one.root());
    assert_eq!(bulk.bytes(), one.bytes());
    assert!(bulk.iter().eq(one.iter()));
    for b in 0..bulk.merkle().buckets() {
        assert!(bulk.bucket(b).eq(one.bucket(b)), "bucket {b}");
    }
    assert_eq!(bulk.pending_changes(), 0, "restoring is not news");
    // The clock is past every restored stamp, tombstones are indexed.
    let e = bulk.put(0, "k1", b"new".to_vec()).unwrap();
    assert!(e.latest() > src.entry("k1").unwrap().latest());
    let horizon = NOW + 10_000_000;
    assert_eq!(
        bulk.gc(horizon, Duration::ZERO),
        one.gc(horizon, Duration::ZERO),
        "the same tombstones collected"
    );
}

#[test]
fn restoring_in_bulk_stops_at_the_quota() {
    let mut bulk = store("a").with_quota(SpaceQuota {
        keys: 10,
        bytes: usize::MAX,
    });
    let kept: Vec<(String, Entry)> = (0..25)
        .map(|i| (format!("k{i:02}"), lww(Some(b"v"), NOW, "a")))
        .collect();
    assert_eq!(bulk.restore_all(kept), (10, 15));
    assert_eq!(bulk.len(), 10);
}
