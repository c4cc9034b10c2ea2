//! SRV seeds against a real DNS server: a small UDP name server in the
//! test, on 127.0.0.1, answering from a zone the test controls (answers
//! built with hickory-proto); the node's resolver is pointed at it with
//! `Builder::dns_servers`, and nothing of the resolver is replaced.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rumor::seeds::{self, Seed};
use tokio::net::UdpSocket;

/// The SRV name the tests publish their seeds under.
const SERVICE: &str = "_gossip._udp.rumor.test.";

/// What the test's name server knows.
#[derive(Default)]
struct Zone {
    /// SRV records by name: (priority, weight, port, target).
    srv: HashMap<String, Vec<(u16, u16, u16, String)>>,
    /// A records by name.
    a: HashMap<String, Ipv4Addr>,
    /// Targets whose A record is sent in the SRV answer's additional section.
    glue: BTreeSet<String>,
}

/// A running name server: its address, its zone, and the queries it got.
struct Dns {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<Mutex<Vec<(String, RecordType)>>>,
}

impl Dns {
    async fn start() -> Dns {
        let socket = UdpSocket::bind(loopback()).await.expect("bind dns");
        let addr = socket.local_addr().expect("dns addr");
        let zone = Arc::new(Mutex::new(Zone::default()));
        let queries = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(serve(socket, zone.clone(), queries.clone()));
        Dns {
            addr,
            zone,
            queries,
        }
    }

    fn asked(&self, name: &str, kind: RecordType) -> usize {
        let q = self.queries.lock().expect("queries lock");
        q.iter().filter(|(n, k)| n == name && *k == kind).count()
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("valid name")
}

/// Answer every query from `zone` until the test ends.
async fn serve(
    socket: UdpSocket,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<Mutex<Vec<(String, RecordType)>>>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.metadata.authoritative = true;
        reply.add_queries(query.queries.clone());
        let mut known = false;
        {
            let zone = zone.lock().expect("zone lock");
            for q in &query.queries {
                let qname = q.name().to_ascii().to_lowercase();
                queries
                    .lock()
                    .expect("queries lock")
                    .push((qname.clone(), q.query_type()));
                if let Some(list) = zone.srv.get(&qname) {
                    known = true;
                    if q.query_type() == RecordType::SRV {
                        for (prio, weight, port, target) in list {
                            let srv = SRV::new(*prio, *weight, *port, name(target));
                            reply.add_answer(Record::from_rdata(
                                q.name().clone(),
                                5,
                                RData::SRV(srv),
                            ));
                            if let (true, Some(ip)) =
                                (zone.glue.contains(target), zone.a.get(target))
                            {
                                reply.add_additional(Record::from_rdata(
                                    name(target),
                                    5,
                                    RData::A(A::from(*ip)),
                                ));
                            }
                        }
                    }
                }
                if let Some(ip) = zone.a.get(&qname) {
                    known = true;
                    if q.query_type() == RecordType::A {
                        reply.add_answer(Record::from_rdata(
                            q.name().clone(),
                            5,
                            RData::A(A::from(*ip)),
                        ));
                    }
                }
            }
        }
        if !known {
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        if let Ok(bytes) = reply.to_vec() {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}

#[tokio::test]
async fn srv_records_resolve_to_targets_and_ports_in_priority_order() {
    let dns = Dns::start().await;
    {
        let mut z = dns.zone.lock().expect("zone lock");
        z.srv.insert(
            SERVICE.into(),
            vec![
                (10, 5, 7001, "n1.rumor.test.".into()),
                (0, 5, 7002, "n2.rumor.test.".into()),
                // "." means no service there: skipped.
                (0, 5, 7003, ".".into()),
            ],
        );
        z.a.insert("n1.rumor.test.".into(), Ipv4Addr::new(127, 0, 0, 11));
        z.a.insert("n2.rumor.test.".into(), Ipv4Addr::new(127, 0, 0, 12));
        z.glue.insert("n1.rumor.test.".into());
    }
    let seeds = [Seed::from(format!("srv:{SERVICE}"))];
    let (addrs, errors) = seeds::resolve_with(&seeds, &[dns.addr]).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        addrs,
        vec![
            SocketAddr::from(([127, 0, 0, 12], 7002)),
            SocketAddr::from(([127, 0, 0, 11], 7001)),
        ]
    );
    assert_eq!(dns.asked(SERVICE, RecordType::SRV), 1);
    // n1's address came with the SRV answer; n2's needed a lookup.
    assert_eq!(dns.asked("n1.rumor.test.", RecordType::A), 0);
    assert_eq!(dns.asked("n2.rumor.test.", RecordType::A), 1);

    let missing = [Seed::from("srv:_gossip._udp.missing.test.")];
    let (addrs, errors) = seeds::resolve_with(&missing, &[dns.addr]).await;
    assert!(addrs.is_empty(), "{addrs:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("srv:_gossip._udp.missing.test.: "),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_through_an_srv_seed() {
    let dns = Dns::start().await;
    let a = builder("a").start().await.expect("a starts");
    let b = builder("b")
        .seed(a.advertise_addr())
        .start()
        .await
        .expect("b starts");
    {
        let mut z = dns.zone.lock().expect("zone lock");
        let (pa, pb) = (a.advertise_addr().port(), b.advertise_addr().port());
        z.srv.insert(
            SERVICE.into(),
            vec![
                (0, 1, pa, "a.rumor.test.".into()),
                (0, 1, pb, "b.rumor.test.".into()),
            ],
        );
        z.a.insert("a.rumor.test.".into(), Ipv4Addr::LOCALHOST);
        z.a.insert("b.rumor.test.".into(), Ipv4Addr::LOCALHOST);
        z.glue.insert("a.rumor.test.".into());
    }
    let c = builder("c")
        .dns_servers([dns.addr])
        .start()
        .await
        .expect("c starts");
    let answered = c.join([format!("srv:{SERVICE}")]).await.expect("c joins");
    assert_eq!(answered, 2, "both SRV targets answered");
    let names: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let nodes = [a, b, c];
    wait_converged(&nodes, &names).await;
    assert!(dns.asked(SERVICE, RecordType::SRV) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srv_seed_that_does_not_resolve_yet_is_retried() {
    let dns = Dns::start().await;
    let a = builder("a").start().await.expect("a starts");
    let c = builder("c")
        .dns_servers([dns.addr])
        .start()
        .await
        .expect("c starts");
    // The name is unknown at first: the join must keep asking.
    let join = tokio::spawn(async move {
        let r = c.join([format!("srv:{SERVICE}")]).await;
        (c, r)
    });
    wait_until("the SRV name was asked for twice", || async {
        dns.asked(SERVICE, RecordType::SRV) >= 2
    })
    .await;
    {
        let mut z = dns.zone.lock().expect("zone lock");
        let pa = a.advertise_addr().port();
        z.srv
            .insert(SERVICE.into(), vec![(0, 1, pa, "a.rumor.test.".into())]);
        z.a.insert("a.rumor.test.".into(), Ipv4Addr::LOCALHOST);
    }
    let (c, r) = join.await.expect("join task");
    assert_eq!(r.expect("joined once the name resolves"), 1);
    let names: BTreeSet<String> = ["a", "c"].iter().map(|s| s.to_string()).collect();
    wait_converged(&[a, c], &names).await;
}
