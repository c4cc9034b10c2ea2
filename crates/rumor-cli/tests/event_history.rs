//! The agent's event history against real agent processes: events that
//! happened before a client connected are replayed first, in order, then
//! the live ones; `Last-Event-ID` resumes without repeats; a bounded
//! history says how many it no longer has.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// One SSE event: its id (if any), name and JSON data.
#[derive(Debug)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// Open `path` as an SSE stream with extra request `headers`; events (but
/// `health`) arrive on the receiver.
fn stream(a: &Agent, path: &str, headers: &str) -> Receiver<Sse> {
    let s = std::net::TcpStream::connect(a.http).expect("connect to the agent's HTTP API");
    s.set_read_timeout(Some(Duration::from_secs(90)))
        .expect("read timeout");
    let mut w = s.try_clone().expect("clone the stream");
    write!(
        w,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n{headers}\r\n"
    )
    .expect("send the request");
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).expect("status line");
    assert!(status.contains("200"), "{path}: {status}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut id, mut event) = (None, String::new());
        for line in r.lines().map_while(Result::ok) {
            let line = line.trim();
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                let data = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                let ev = Sse {
                    id: id.take(),
                    event: std::mem::take(&mut event),
                    data,
                };
                if ev.event != "health" && tx.send(ev).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The next `n` events of `rx` (fails after a generous deadline).
fn take(rx: &Receiver<Sse>, n: usize) -> Vec<Sse> {
    let end = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < n {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(ev) => out.push(ev),
            Err(RecvTimeoutError::Timeout) => panic!("only {} of {n} events: {out:?}", out.len()),
            Err(RecvTimeoutError::Disconnected) => panic!("stream closed after {out:?}"),
        }
    }
    out
}

fn send_event(a: &Agent, name: &str) {
    let body = format!(r#"{{"name":"{name}","payload":"p"}}"#);
    let (s, v) = request("POST", &a.url("/v1/event"), None, Some(&body));
    assert_eq!(s, 200, "{v}");
}

/// Wait on `rx` until an event `pred` accepts has arrived.
fn until(rx: &Receiver<Sse>, what: &str, pred: impl Fn(&Sse) -> bool) {
    let end = Instant::now() + DEADLINE;
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(ev) if pred(&ev) => return,
            Ok(_) => continue,
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

fn user_names(evs: &[Sse]) -> Vec<&str> {
    evs.iter()
        .filter(|e| e.event == "user")
        .filter_map(|e| e.data["name"].as_str())
        .collect()
}

#[test]
fn events_before_the_client_connected_come_first_in_order_then_live_ones() {
    let a = agent("hist-a").spawn();
    // A live client, to know when the agent has recorded what follows.
    let watch = stream(&a, "/v1/events", "");
    for name in ["e1", "e2", "e3"] {
        send_event(&a, name);
    }
    let b = agent("hist-b").join(&[&a]).spawn();
    until(&watch, "the join of hist-b", |e| {
        e.data["type"] == "member-join" && e.data["member"]["name"] == "hist-b"
    });

    // Everything since the agent started: ids 1, 2, 3, ... without a gap,
    // each in its data too; the three events in the order sent; b's join.
    let rx = stream(&a, "/v1/events?since=0", "");
    let mut past = Vec::new();
    while let Ok(ev) = rx.recv_timeout(Duration::from_secs(1)) {
        past.push(ev);
    }
    let ids: Vec<u64> = past.iter().filter_map(|e| e.id).collect();
    assert_eq!(ids.len(), past.len(), "an event without id: {past:?}");
    assert_eq!(ids, (1..=past.len() as u64).collect::<Vec<_>>(), "{past:?}");
    assert!(past
        .iter()
        .all(|e| e.data["id"].as_u64() == e.id && e.event != "lagged"));
    assert_eq!(user_names(&past), ["e1", "e2", "e3"]);
    assert!(
        past.iter()
            .any(|e| e.data["type"] == "member-join" && e.data["member"]["name"] == "hist-b"),
        "no replayed join of hist-b: {past:?}"
    );

    // Then live: the next event has the next id, nothing repeats.
    let last = *ids.last().expect("some history");
    send_event(&b, "e4");
    let live = take(&rx, 1);
    assert_eq!(live[0].id, Some(last + 1), "{live:?}");
    assert_eq!(user_names(&live), ["e4"]);

    // A reconnect resumes after Last-Event-ID (which wins over since=0).
    let e2 = past
        .iter()
        .find(|e| e.data["name"] == "e2")
        .and_then(|e| e.id)
        .expect("e2 has an id");
    let rx = stream(
        &a,
        "/v1/events?since=0",
        &format!("Last-Event-ID: {e2}\r\n"),
    );
    let resumed = take(&rx, (last + 1 - e2) as usize);
    let ids: Vec<u64> = resumed.iter().filter_map(|e| e.id).collect();
    assert_eq!(ids, (e2 + 1..=last + 1).collect::<Vec<_>>(), "{resumed:?}");
    assert_eq!(user_names(&resumed), ["e3", "e4"]);

    // Without since: live only.
    let rx = stream(&a, "/v1/events", "");
    send_event(&a, "e5");
    let only = take(&rx, 1);
    assert_eq!(user_names(&only), ["e5"], "{only:?}");
    assert_eq!(only[0].id, Some(last + 2));
}

#[test]
fn a_bounded_history_says_what_it_no_longer_has_and_bad_ids_are_refused() {
    let a = agent("hist-small").args(&["--event-history", "2"]).spawn();
    let watch = stream(&a, "/v1/events", "");
    for name in ["f1", "f2", "f3", "f4", "f5"] {
        send_event(&a, name);
    }
    until(&watch, "f5 recorded", |e| e.data["name"] == "f5");
    let evs = take(&stream(&a, "/v1/events?since=0", ""), 3);
    assert_eq!(evs[0].event, "lagged", "{evs:?}");
    assert_eq!(evs[0].data["missed"], 3, "{evs:?}");
    assert_eq!(user_names(&evs[1..]), ["f4", "f5"]);
    assert_eq!(evs[2].id, Some(5));

    let (s, v) = request("GET", &a.url("/v1/events?since=x"), None, None);
    assert_eq!(s, 400);
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("since")),
        "{v}"
    );
    let (s, v) = request_with_headers(
        "GET",
        &a.url("/v1/events"),
        None,
        &[("Last-Event-ID", "nope")],
        None,
    );
    assert_eq!(s, 400);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("Last-Event-ID")),
        "{v}"
    );
}
