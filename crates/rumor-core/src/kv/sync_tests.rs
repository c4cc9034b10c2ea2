//! Tests of Merkle reconciliation between two stores.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

const NOW: u64 = 1_000_000_000;

fn store(node: &str, depth: u8) -> KvStore {
    KvStore::new(
        node,
        KvConfig {
            merkle_depth: depth,
            ..KvConfig::default()
        },
    )
}

/// Run a whole session from `a` against `b`.
fn run(a: &KvStore, b: &KvStore, batch: usize) -> SyncResult {
    let mut sync = MerkleSync::new().with_batch(batch);
    while let Some(req) = sync.next_request(a) {
        let resp = b.respond(&req);
        sync.handle_response(a, resp).expect("sync step");
    }
    assert!(sync.is_done());
    sync.finish()
}

/// Apply both directions of a finished session.
fn repair(a: &mut KvStore, b: &mut KvStore, result: SyncResult) {
    for r in result.received {
        let o = a.apply_remote(NOW, r.key.as_bytes(), r.entry);
        assert!(!matches!(o, Outcome::Invalid(_)), "{o:?}");
    }
    for r in result.send {
        let o = b.apply_remote(NOW, r.key.as_bytes(), r.entry);
        assert!(!matches!(o, Outcome::Invalid(_)), "{o:?}");
    }
}

fn differing_keys(a: &KvStore, b: &KvStore) -> BTreeSet<String> {
    let keys: BTreeSet<&str> = a.iter().chain(b.iter()).map(|(k, _)| k).collect();
    keys.into_iter()
        .filter(|k| a.entry(k) != b.entry(k))
        .map(str::to_owned)
        .collect()
}

#[derive(Clone, Debug)]
enum Edit {
    Put(u16, u8),
    Delete(u16),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        3 => (0u16..400, any::<u8>()).prop_map(|(k, v)| Edit::Put(k, v)),
        1 => (0u16..400).prop_map(Edit::Delete),
    ];
    prop::collection::vec(edit, 0..30)
}

fn apply_edits(s: &mut KvStore, t0: u64, edits: &[Edit]) {
    for (i, e) in edits.iter().enumerate() {
        let t = t0 + i as u64;
        let r = match e {
            Edit::Put(k, v) => s.put(t, &format!("key-{k}"), vec![*v; 3]),
            Edit::Delete(k) => s.delete(t, &format!("key-{k}")),
        };
        assert!(r.is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn diff_finds_exactly_the_differing_keys_and_repair_converges(
        base in 0usize..300,
        depth in 1u8..=3,
        batch in 1usize..40,
        ea in edits(),
        eb in edits(),
    ) {
        let mut a = store("a", depth);
        for i in 0..base {
            a.put(1, &format!("key-{i}"), vec![7]).unwrap();
        }
        let mut b = a.clone();
        apply_edits(&mut a, 10, &ea);
        apply_edits(&mut b, 10, &eb);
        let expected = differing_keys(&a, &b);

        let result = run(&a, &b, batch);
        let mut found: BTreeSet<String> = BTreeSet::new();
        found.extend(result.received.iter().map(|r| r.key.clone()));
        found.extend(result.send.iter().map(|r| r.key.clone()));
        prop_assert_eq!(&found, &expected);
        // Each side sends only keys it holds.
        prop_assert!(result.received.iter().all(|r| b.entry(&r.key) == Some(&r.entry)));
        prop_assert!(result.send.iter().all(|r| a.entry(&r.key) == Some(&r.entry)));
        if expected.is_empty() {
            prop_assert_eq!(result.stats.round_trips, 1);
        }

        repair(&mut a, &mut b, result);
        prop_assert_eq!(a.root(), b.root());
        prop_assert!(differing_keys(&a, &b).is_empty());
        prop_assert_eq!(run(&a, &b, batch).stats.round_trips, 1);
    }
}

#[test]
fn one_differing_key_costs_depth_plus_one_round_trips_and_few_bytes() {
    let n = 20_000;
    let mut a = store("a", 3);
    for i in 0..n {
        a.put(1, &format!("service/{i:08}"), vec![1; 16]).unwrap();
    }
    let mut b = a.clone();
    b.put(2, "service/00000042", vec![2; 16]).unwrap();

    let result = run(&a, &b, 256);
    let full: usize = b
        .iter()
        .map(|(k, e)| {
            Record {
                key: k.into(),
                entry: e.clone(),
            }
            .wire_size()
        })
        .sum();
    let stats = result.stats;
    let bytes = stats.request_bytes + stats.response_bytes;
    assert_eq!(stats.round_trips, 3 + 1);
    assert_eq!(result.received.len(), 1);
    // Both sides hold a version of the key; each sends its own and the
    // merge keeps the winner.
    assert_eq!(result.send.len(), 1);
    assert!(bytes * 100 < full, "{bytes} bytes vs {full} full state");
    repair(&mut a, &mut b, result);
    assert_eq!(a.root(), b.root());
}

#[test]
fn responder_refuses_bad_requests() {
    let mut b = store("b", 2);
    b.put(1, "k", vec![1]).unwrap();
    let refused = |r: SyncResponse| matches!(r, SyncResponse::Refused(_));
    assert_eq!(
        b.respond(&SyncRequest::Root { depth: 3, root: 1 }),
        SyncResponse::Refused(Refusal::DepthMismatch { depth: 2 })
    );
    assert!(refused(b.respond(&SyncRequest::Children {
        level: 2,
        nodes: vec![0]
    })));
    assert!(refused(b.respond(&SyncRequest::Children {
        level: 1,
        nodes: vec![16]
    })));
    assert!(refused(b.respond(&SyncRequest::Children {
        level: 255,
        nodes: vec![u32::MAX]
    })));
    assert!(refused(b.respond(&SyncRequest::Children {
        level: 0,
        nodes: vec![0; sync::MAX_SYNC_BATCH + 1]
    })));
    assert!(refused(b.respond(&SyncRequest::Buckets {
        buckets: vec![256],
        items: vec![]
    })));
    assert!(refused(b.respond(&SyncRequest::Buckets {
        buckets: vec![0],
        items: vec![(0, 0); sync::MAX_SYNC_ITEMS + 1]
    })));
}

#[test]
fn initiator_rejects_mismatched_responses() {
    let mut a = store("a", 2);
    a.put(1, "k", vec![1]).unwrap();
    let b = store("b", 2);

    let mut sync = MerkleSync::new();
    assert_eq!(
        sync.handle_response(&a, SyncResponse::InSync),
        Err(SyncError::Unexpected)
    );
    let req = sync.next_request(&a).unwrap();
    assert!(sync.next_request(&a).is_none(), "one request in flight");
    let resp = match b.respond(&req) {
        SyncResponse::Children { level, mut hashes } => {
            hashes.pop();
            SyncResponse::Children { level, hashes }
        }
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(sync.handle_response(&a, resp), Err(SyncError::Unexpected));

    let mut sync = MerkleSync::new();
    let req = sync.next_request(&a).unwrap();
    assert!(matches!(req, SyncRequest::Root { .. }));
    let resp = SyncResponse::Buckets {
        records: vec![],
        want: vec![],
    };
    assert_eq!(sync.handle_response(&a, resp), Err(SyncError::Unexpected));

    let mut sync = MerkleSync::new();
    sync.next_request(&a);
    assert_eq!(
        sync.handle_response(&a, SyncResponse::Refused(Refusal::Malformed)),
        Err(SyncError::Refused(Refusal::Malformed))
    );
}

#[test]
fn a_restored_store_reconciles_like_any_other() {
    let mut src = store("a", 8);
    for i in 0..50 {
        src.put(NOW, &format!("k{i}"), vec![i as u8]).expect("put");
    }
    let mut restored = store("a", 8);
    for (k, e) in src.iter() {
        restored.restore(k.as_bytes(), e.clone()).expect("restore");
    }
    assert_eq!(restored.root(), src.root());
    let mut empty = store("b", 8);
    let result = run(&empty, &restored, 16);
    assert_eq!(result.received.len(), 50, "the empty side pulls everything");
    let result = run(&restored, &empty, 16);
    assert_eq!(result.send.len(), 50, "the restored side pushes everything");
    repair(&mut restored, &mut empty, result);
    assert!(differing_keys(&restored, &empty).is_empty());
}
