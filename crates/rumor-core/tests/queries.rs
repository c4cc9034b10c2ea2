//! Queries over the in-test network: every member hears a query once, the
//! selected ones ack and answer straight to the asker, answers are counted
//! once per member (relayed copies too), the asker is told when its query
//! ends, and a forged query naming a third party's address is not answered.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::{name, secs, Net};
use rumor_core::codec;
use rumor_core::message::{Message, Query, QueryFilter};
use rumor_core::query::QueryParams;
use rumor_core::{Config, Event, Node};

/// Every node that hears a query acks it (if asked) and answers with its
/// own name, unless its name is in `silent`.
fn answering(net: &mut Net, silent: Vec<String>) {
    net.on_event = Some(Box::new(move |_, node: &mut Node, now, e| {
        if let Event::Query(q) = e {
            let me = node.local().name.to_string();
            if silent.contains(&me) {
                return;
            }
            if q.ack {
                node.respond_query(now, &q.origin, q.ltime, true, &[])
                    .unwrap();
            }
            node.respond_query(now, &q.origin, q.ltime, false, me.as_bytes())
                .unwrap();
            assert!(
                node.respond_query(now, &q.origin, q.ltime, false, b"again")
                    .is_err(),
                "a second answer was accepted"
            );
        }
    }));
}

/// What an asker got for one query: acks, answers, whether it ended.
type Results = (BTreeSet<String>, Vec<(String, Vec<u8>)>, bool);

/// What the asker `i` got for query `ltime`.
fn results(net: &Net, i: usize, ltime: u64) -> Results {
    let mut acks = BTreeSet::new();
    let mut answers = Vec::new();
    let mut done = false;
    for (_, at, e) in &net.other_events {
        if *at != i {
            continue;
        }
        match e {
            Event::QueryResponse(r) if r.ltime == ltime && r.ack => {
                assert!(acks.insert(r.from.to_string()), "ack from {} twice", r.from);
            }
            Event::QueryResponse(r) if r.ltime == ltime => {
                answers.push((r.from.to_string(), r.payload.clone()))
            }
            Event::QueryDone { ltime: l } if *l == ltime => done = true,
            _ => {}
        }
    }
    (acks, answers, done)
}

#[test]
fn every_member_acks_and_answers_once_and_the_asker_is_told_the_end() {
    let n = 12;
    let mut net = Net::converged(n, Config::lan());
    answering(&mut net, vec![]);
    let mut ltime = 0;
    let params = QueryParams {
        ack: true,
        relay_factor: 2,
        timeout: Some(Duration::from_secs(3)),
        ..QueryParams::default()
    };
    net.with(0, |node, now| {
        ltime = node.query(now, "who", b"?", params).unwrap();
    });
    net.run_for(secs(1.0));
    let (acks, answers, done) = results(&net, 0, ltime);
    let everyone: BTreeSet<String> = (0..n).map(name).collect();
    assert_eq!(acks, everyone, "acks");
    let answered: BTreeSet<String> = answers.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(answered, everyone, "answers");
    assert_eq!(answers.len(), n, "an answer counted twice (relayed copies)");
    for (from, payload) in &answers {
        assert_eq!(from.as_bytes(), &payload[..]);
    }
    assert!(!done, "ended before its deadline");
    let relayed: u64 = (0..n)
        .map(|i| net.node(i).stats().query_responses_relayed)
        .sum();
    assert!(relayed >= 2 * (n as u64 - 1) - 4, "relays: {relayed}");
    net.run_for(secs(2.5));
    assert!(results(&net, 0, ltime).2, "no QueryDone after the deadline");
    let queries_heard = net
        .other_events
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::Query(q) if q.ltime == ltime))
        .count();
    assert_eq!(queries_heard, n, "each member hears the query once");
}

#[test]
fn a_silent_member_is_simply_missing_and_late_answers_are_dropped() {
    let n = 6;
    let mut net = Net::converged(n, Config::lan());
    answering(&mut net, vec![name(3)]);
    let mut ltime = 0;
    let params = QueryParams {
        filters: vec![QueryFilter::Name("node-00[0-5]".into())],
        timeout: Some(Duration::from_millis(500)),
        ..QueryParams::default()
    };
    net.with(2, |node, now| {
        ltime = node.query(now, "who", b"", params).unwrap();
    });
    net.run_for(secs(1.0));
    let (acks, answers, done) = results(&net, 2, ltime);
    assert!(acks.is_empty(), "acks though none was asked for");
    assert_eq!(answers.len(), n - 1);
    assert!(answers.iter().all(|(f, _)| *f != name(3)));
    assert!(done);
    // After the end nobody may answer it any more.
    let mut late = None;
    net.on_event = None;
    net.with(4, |node, now| {
        late = Some(node.respond_query(now, &name(2), ltime, false, b"late"));
    });
    assert!(
        late.unwrap().is_err(),
        "an answer after the deadline was accepted"
    );
}

#[test]
fn a_query_naming_another_address_than_its_origins_is_not_delivered() {
    let n = 4;
    let mut net = Net::converged(n, Config::lan());
    let victim: SocketAddr = "127.0.0.99:7946".parse().unwrap();
    let forged = Query {
        ltime: 1 << 20,
        origin: name(1).into(),
        origin_addr: victim,
        name: "amplify".into(),
        payload: vec![],
        filters: vec![],
        ack: true,
        relay_factor: 0,
        timeout_ms: 5000,
    };
    let from: SocketAddr = "127.0.0.66:7946".parse().unwrap();
    net.with(0, |node, now| {
        node.handle_datagram(now, from, &codec::encode_packet(&Message::Query(forged)))
    });
    net.run_for(secs(1.0));
    assert!(
        !net.other_events
            .iter()
            .any(|(_, _, e)| matches!(e, Event::Query(_))),
        "a forged query was delivered"
    );
    assert_eq!(net.node(0).stats().queries_refused, 1);
}

#[test]
fn bad_queries_are_refused_with_a_reason() {
    let mut net = Net::converged(2, Config::lan());
    net.with(0, |node, now| {
        let big = vec![0u8; 2000];
        let e = node
            .query(now, "q", &big, QueryParams::default())
            .unwrap_err();
        assert!(e.to_string().contains("limit is 1024"), "{e}");
        assert!(node.query(now, "", b"", QueryParams::default()).is_err());
        let relays = QueryParams {
            relay_factor: 9,
            ..QueryParams::default()
        };
        assert!(node.query(now, "q", b"", relays).is_err());
        let e = node
            .respond_query(now, "node-001", 5, false, b"x")
            .unwrap_err();
        assert!(e.to_string().contains("no such query"), "{e}");
    });
}

#[test]
fn a_member_the_rumor_missed_gets_the_query_straight_from_the_asker() {
    // Node 3 hears nothing for the first 1.5 s of an 8 s query: the rumor's
    // waves and its retransmit budget pass it by. A quarter of the way to
    // the deadline (2 s) the asker sends the query straight to every
    // member that has not acked: node 3 answers.
    use std::cell::Cell;
    use std::rc::Rc;
    let n = 8;
    let mut net = Net::converged(n, Config::lan());
    answering(&mut net, vec![]);
    let cut = Rc::new(Cell::new(true));
    let c = cut.clone();
    let mut ltime = 0;
    net.drop = Box::new(move |_, to, _| c.get() && to == 3);
    let params = QueryParams {
        ack: true,
        timeout: Some(Duration::from_secs(8)),
        ..QueryParams::default()
    };
    net.with(0, |node, now| {
        ltime = node.query(now, "who", b"", params).unwrap();
    });
    net.run_for(secs(1.5));
    cut.set(false);
    net.run_for(secs(7.0));
    let (acks, answers, done) = results(&net, 0, ltime);
    assert!(done);
    assert!(acks.contains(&name(3)), "node 3 never acked: {acks:?}");
    assert!(
        answers.iter().any(|(f, _)| *f == name(3)),
        "node 3 never answered"
    );
    assert!(net.node(0).stats().queries_resent >= 1);
}
