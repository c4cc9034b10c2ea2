//! Replay protection of encrypted clusters over real sockets: a captured
//! datagram or stream frame is accepted once and refused (and counted) when
//! replayed; envelopes stamped outside the window are refused. The forger
//! builds packets with the project's codec and seals them with the
//! cluster's key; every address is on loopback.

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use rumor::core::codec;
use rumor::core::message::{Message, MessageType};
use rumor::core::UserEvent;
use rumor::framing::Framer;
use rumor::{Event, Key, Keyring, Node, TransportStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::broadcast;

/// Each test's cluster key: tests run in parallel and a port one test's
/// node left may be reused by another's, so clusters must not share a key.
fn key(test: u8) -> Key {
    Key::from_bytes([test; 32])
}

fn forger(test: u8) -> Framer {
    Framer::new("", Some(Keyring::new(key(test)))).expect("framer")
}

fn unix_ms() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(d.as_millis()).expect("ms")
}

async fn encrypted(test: u8, name: &str, seed: Option<std::net::SocketAddr>) -> Node {
    let mut b = builder(name).keyring(Keyring::new(key(test)));
    if let Some(s) = seed {
        b = b.seed(s);
    }
    b.start().await.expect("node starts")
}

async fn transport(n: &Node) -> TransportStats {
    n.stats().await.expect("stats").transport
}

async fn messages_in(n: &Node, kind: MessageType) -> u64 {
    n.stats().await.expect("stats").core.messages_in[kind as usize - 1]
}

/// A user event packet; `(origin, ltime)` identifies an event.
fn user_event(name: &str, ltime: u64) -> Vec<u8> {
    codec::encode_packet(&Message::UserEvent(UserEvent {
        ltime,
        origin: Arc::from("forger"),
        name: name.to_string(),
        payload: b"pay".to_vec(),
    }))
}

/// User events named `name` delivered on `rx` so far.
fn delivered(rx: &mut broadcast::Receiver<Event>, name: &str) -> usize {
    let mut n = 0;
    while let Ok(e) = rx.try_recv() {
        if matches!(&e, Event::User(u) if u.name == name) {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_a_node_sent_is_accepted_once_then_refused_as_a_replay() {
    let a = encrypted(1, "a", None).await;
    let b = encrypted(1, "b", None).await;
    // A fake member on loopback pings a; a's sealed ack is captured.
    let raw = UdpSocket::bind(loopback()).await.expect("bind");
    let ping = codec::encode_packet(&Message::Ping {
        seq: 31,
        target: Arc::from("a"),
    });
    raw.send_to(&forger(1).seal(&ping).expect("seal"), a.advertise_addr())
        .await
        .expect("send");
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(DEADLINE, raw.recv_from(&mut buf))
        .await
        .expect("ack in time")
        .expect("recv");
    assert_eq!(from, a.advertise_addr());
    let captured = buf[..n].to_vec();
    // The ack carries a's alive claim: b will probe a. With a gone, every
    // ack b handles is one we delivered.
    a.shutdown().await.expect("a stops");

    // Delivered to b once: it authenticates and reaches the protocol.
    let acks = messages_in(&b, MessageType::Ack).await;
    raw.send_to(&captured, b.advertise_addr())
        .await
        .expect("send");
    wait_until("b handles the captured ack", || async {
        messages_in(&b, MessageType::Ack).await == acks + 1
    })
    .await;
    let before = transport(&b).await;
    assert_eq!((before.replays_refused, before.stale_refused), (0, 0));

    // Replayed: refused and counted once, and the protocol never sees it.
    raw.send_to(&captured, b.advertise_addr())
        .await
        .expect("send");
    wait_until("b refuses the replay", || async {
        transport(&b).await.replays_refused == 1
    })
    .await;
    let after = transport(&b).await;
    assert_eq!(after.auth_failures, before.auth_failures);
    assert_eq!(messages_in(&b, MessageType::Ack).await, acks + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_user_event_is_refused_and_never_reaches_the_protocol() {
    // One node alone, so that every user event it handles came from us.
    let a = encrypted(2, "a", None).await;
    let mut rx = a.events();
    let raw = UdpSocket::bind(loopback()).await.expect("bind");
    let f = forger(2);
    let packet = f.seal(&user_event("deploy", 5)).expect("seal");
    raw.send_to(&packet, a.advertise_addr())
        .await
        .expect("send");
    wait_until("a handles the event", || async {
        messages_in(&a, MessageType::UserEvent).await == 1
    })
    .await;
    for _ in 0..5 {
        raw.send_to(&packet, a.advertise_addr())
            .await
            .expect("send");
    }
    wait_until("five replays refused", || async {
        transport(&a).await.replays_refused == 5
    })
    .await;
    assert_eq!(messages_in(&a, MessageType::UserEvent).await, 1);
    assert_eq!(delivered(&mut rx, "deploy"), 1);
    // Service goes on: a fresh event is handled and delivered.
    let fresh = f.seal(&user_event("after", 6)).expect("seal");
    raw.send_to(&fresh, a.advertise_addr()).await.expect("send");
    wait_until("a handles the fresh event", || async {
        messages_in(&a, MessageType::UserEvent).await == 2
    })
    .await;
    assert_eq!(delivered(&mut rx, "after"), 1);
    assert_eq!(transport(&a).await.auth_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_stamped_outside_the_window_are_refused() {
    let a = encrypted(3, "a", None).await;
    let mut rx = a.events();
    let raw = UdpSocket::bind(loopback()).await.expect("bind");
    let f = forger(3);
    let now = unix_ms();
    let old = f
        .seal_at(&user_event("old", 5), now - 10 * 60_000)
        .expect("seal");
    let ahead = f
        .seal_at(&user_event("ahead", 6), now + 10 * 60_000)
        .expect("seal");
    raw.send_to(&old, a.advertise_addr()).await.expect("send");
    raw.send_to(&ahead, a.advertise_addr()).await.expect("send");
    wait_until("both refused as stale", || async {
        transport(&a).await.stale_refused == 2
    })
    .await;
    // A fresh one is delivered; the stale ones never were.
    let fresh = f.seal(&user_event("fresh", 7)).expect("seal");
    raw.send_to(&fresh, a.advertise_addr()).await.expect("send");
    wait_until("the fresh event is handled", || async {
        messages_in(&a, MessageType::UserEvent).await == 1
    })
    .await;
    let mut names = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Event::User(u) = e {
            names.push(u.name.clone());
        }
    }
    assert_eq!(names, vec!["fresh".to_string()]);
    assert_eq!(transport(&a).await.auth_failures, 0);
}

/// Forward one connection from `listener` to `to` both ways, returning
/// every byte the client sent (its whole request: header and body frames).
async fn capture_one_request(listener: TcpListener, to: std::net::SocketAddr) -> Vec<u8> {
    let (client, _) = listener.accept().await.expect("accept");
    let server = TcpStream::connect(to).await.expect("connect");
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let up = async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = client_in.read(&mut buf).await.unwrap_or(0);
            if n == 0 || server_out.write_all(&buf[..n]).await.is_err() {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = server_out.shutdown().await;
        seen
    };
    let down = async {
        let _ = tokio::io::copy(&mut server_in, &mut client_out).await;
        let _ = client_out.shutdown().await;
    };
    tokio::join!(up, down).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_stream_frame_replayed_is_refused() {
    let a = encrypted(4, "a", None).await;
    // b joins through a forwarding proxy that records its push-pull.
    let proxy = TcpListener::bind(loopback()).await.expect("bind");
    let proxy_addr = proxy.local_addr().expect("addr");
    let capture = tokio::spawn(capture_one_request(proxy, a.advertise_addr()));
    let b = encrypted(4, "b", Some(proxy_addr)).await;
    let request = tokio::time::timeout(DEADLINE, capture)
        .await
        .expect("captured in time")
        .expect("proxy task");
    let nodes = [a, b];
    wait_converged(&nodes, &["a", "b"].iter().map(|s| s.to_string()).collect()).await;
    let a = &nodes[0];
    let before = transport(a).await;
    assert_eq!(before.replays_refused, 0);

    // The same frame on a new connection: refused, counted, unanswered.
    let mut s = TcpStream::connect(a.advertise_addr())
        .await
        .expect("connect");
    s.write_all(&request).await.expect("write");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut reply)).await;
    assert!(reply.is_empty(), "a replayed join was answered");
    wait_until("the replayed frame is counted", || async {
        transport(a).await.replays_refused == 1
    })
    .await;
    assert_eq!(transport(a).await.auth_failures, before.auth_failures);
}
