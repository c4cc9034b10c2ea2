//! Forged ICMP "port unreachable" reports: one that quotes bytes this node
//! never sent is counted and ignored (the member stays alive), while a real
//! closed port is still detected at once.
//!
//! The forger needs a raw socket (CAP_NET_RAW, e.g. root); without one the
//! test says so loudly and passes. Everything goes to 127.0.0.1.

#![cfg(target_os = "linux")]

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use common::*;
use rumor::{MemberState, Node};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP "port unreachable" saying `to` refused a UDP datagram from
/// `from` whose payload began with `quoted`.
fn forged_port_unreachable(from: SocketAddrV4, to: SocketAddrV4, quoted: &[u8]) -> Vec<u8> {
    let udp_len = 8 + quoted.len() as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&from.ip().octets());
    ip.extend_from_slice(&to.ip().octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());

    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&ip);
    icmp.extend_from_slice(&from.port().to_be_bytes());
    icmp.extend_from_slice(&to.port().to_be_bytes());
    icmp.extend_from_slice(&udp_len.to_be_bytes());
    icmp.extend_from_slice(&[0, 0]);
    icmp.extend_from_slice(quoted);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    icmp
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("test nodes are on 127.0.0.1"),
    }
}

async fn unmatched(n: &Node) -> u64 {
    n.stats()
        .await
        .expect("stats")
        .transport
        .unreachable_unmatched
}

async fn unreachable(n: &Node) -> u64 {
    n.stats().await.expect("stats").core.unreachable
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_port_unreachable_kills_nobody_and_a_real_one_still_does() {
    let raw = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: no raw socket to forge ICMP with ({e}); needs CAP_NET_RAW");
            return;
        }
    };
    let mut nodes = start_cluster("i", 3, fast_config()).await;
    let (a, b) = (v4(nodes[0].advertise_addr()), v4(nodes[1].advertise_addr()));

    // Forged reports that i1 refused a datagram from i0, quoting bytes i0
    // never sent (an encrypted-looking envelope of random-ish junk).
    let quoted: Vec<u8> = (0..96u8).map(|i| i.wrapping_mul(37) ^ 0xB1).collect();
    let packet = forged_port_unreachable(a, b, &quoted);
    let target = SockAddr::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
    for _ in 0..5 {
        raw.send_to(&packet, &target).expect("send the forged ICMP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until("i0 reads the forged reports", || async {
        unmatched(&nodes[0]).await + unreachable(&nodes[0]).await >= 1
    })
    .await;
    // A few probe rounds: i1 stays alive everywhere, nothing was believed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        unreachable(&nodes[0]).await,
        0,
        "a forged report was believed"
    );
    for n in &nodes {
        assert_eq!(
            state_of(n, "i1").await,
            Some(MemberState::Alive),
            "{}",
            views(&nodes, "i1").await
        );
    }
    let forged = unmatched(&nodes[0]).await;
    assert!(forged >= 1);

    // A real closed port: i2 stops; the survivors find it dead on the
    // kernel's reports, which quote what they sent and so match.
    let gone = nodes.pop().expect("three nodes");
    let t0 = Instant::now();
    gone.shutdown().await.expect("shutdown");
    wait_until("the survivors mark i2 dead", || async {
        for n in &nodes {
            if state_of(n, "i2").await != Some(MemberState::Dead) {
                return false;
            }
        }
        true
    })
    .await;
    eprintln!("closed port detected in {:?}", t0.elapsed());
    let mut believed = 0;
    for n in &nodes {
        believed += unreachable(n).await;
    }
    assert!(believed > 0, "no real report was believed");
    assert_eq!(
        unmatched(&nodes[0]).await,
        forged,
        "a real report was taken for a forged one"
    );
    assert_eq!(unmatched(&nodes[1]).await, 0);
}
