//! A `--retry-join srv:NAME` seed that does not resolve when the agent
//! starts and resolves later: the agent stays up, logs the failed
//! resolution, and joins once the name resolves. The name server is a
//! small UDP one on 127.0.0.1 inside the test (answers built with
//! hickory-proto), NXDOMAIN until the test publishes the SRV record; the
//! agent is pointed at it with `--dns-server`.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The SRV name the seed is published under.
const SERVICE: &str = "_gossip._udp.rumor.test.";
/// The SRV record's target.
const TARGET: &str = "seed.rumor.test.";

/// A name server that answers NXDOMAIN until `published`, then the SRV
/// record `SERVICE -> TARGET:port` with TARGET's A record as glue.
struct Dns {
    addr: SocketAddr,
    published: Arc<AtomicBool>,
    srv_queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Dns {
    fn start(port: u16) -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let addr = socket.local_addr().expect("dns addr");
        let published = Arc::new(AtomicBool::new(false));
        let srv_queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, q, s) = (published.clone(), srv_queries.clone(), stop.clone());
        std::thread::spawn(move || serve(&socket, port, &p, &q, &s));
        Dns {
            addr,
            published,
            srv_queries,
            stop,
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("valid name")
}

/// Answer until `stop` (each read waits at most 100 ms).
fn serve(
    socket: &UdpSocket,
    port: u16,
    published: &AtomicBool,
    srv_queries: &AtomicUsize,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.metadata.authoritative = true;
        reply.add_queries(query.queries.clone());
        let live = published.load(Ordering::Relaxed);
        let mut known = false;
        for q in &query.queries {
            let qname = q.name().to_ascii().to_lowercase();
            if qname == SERVICE && q.query_type() == RecordType::SRV {
                srv_queries.fetch_add(1, Ordering::Relaxed);
                if live {
                    known = true;
                    let srv = SRV::new(0, 1, port, name(TARGET));
                    reply.add_answer(Record::from_rdata(q.name().clone(), 1, RData::SRV(srv)));
                    reply.add_additional(Record::from_rdata(
                        name(TARGET),
                        1,
                        RData::A(A::from(Ipv4Addr::LOCALHOST)),
                    ));
                }
            } else if live && qname == TARGET && q.query_type() == RecordType::A {
                known = true;
                reply.add_answer(Record::from_rdata(
                    q.name().clone(),
                    1,
                    RData::A(A::from(Ipv4Addr::LOCALHOST)),
                ));
            }
        }
        if !known {
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        if let Ok(bytes) = reply.to_vec() {
            let _ = socket.send_to(&bytes, from);
        }
    }
}

#[test]
fn an_srv_seed_that_resolves_late_is_joined() {
    let seed = agent("late-seed").spawn();
    let dns = Dns::start(seed.gossip.port());
    let srv = format!("srv:{SERVICE}");
    let mut b = agent("late-b")
        .args(&["--retry-join", &srv, "--retry-interval", "1s"])
        .args(&["--dns-server", &dns.addr.to_string()])
        .spawn();
    wait_until("a failed resolution is logged", DEADLINE, || {
        b.stderr().contains("retry-join: attempt 2 failed")
    });
    let log = b.stderr();
    let failed = log
        .lines()
        .find(|l| l.contains("retry-join: attempt 1 failed"))
        .expect("the first attempt's line");
    assert!(
        failed.contains("cannot resolve seed") && failed.contains(SERVICE),
        "{failed}"
    );
    assert!(
        dns.srv_queries.load(Ordering::Relaxed) >= 2,
        "the agent asked the test's name server"
    );
    assert!(
        b.child.try_wait().expect("wait").is_none(),
        "the agent stays up"
    );
    assert_eq!(seed.status_of("late-b"), None, "not joined yet");

    dns.published.store(true, Ordering::Relaxed);
    wait_until("both list each other alive", DEADLINE, || {
        seed.status_of("late-b").as_deref() == Some("alive")
            && b.status_of("late-seed").as_deref() == Some("alive")
    });
    assert!(b.stderr().contains("retry-join: joined"), "{}", b.stderr());
    assert!(b.child.try_wait().expect("wait").is_none());
}
