//! A forger for the hostile-peer benchmark (bench/hostile/flood.py): sends
//! alive claims for invented members to one node, built with rumor's own
//! codec, at an even rate. Every invented member claims an address in
//! 127.64.0.0/10 (loopback) at port 9, where nothing listens.
//!
//! ```text
//! cargo run --release -p rumor --example forge_flood -- TARGET CLAIMS SECONDS
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumor::core::codec;
use rumor::core::message::{Alive, Message};
use rumor::framing::Framer;

/// Claims per datagram (about 1,200 bytes, like a full gossip packet).
const PER_PACKET: u64 = 30;

fn ghost(i: u64) -> Alive {
    let ip = [127, 64 + ((i >> 16) & 0x3f) as u8, (i >> 8) as u8, i as u8];
    Alive {
        incarnation: 1,
        name: format!("ghost-{i}").into(),
        addr: SocketAddr::from((ip, 9)),
        protocol: (1, 1),
        tags: Arc::new(Default::default()),
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: forge_flood TARGET CLAIMS SECONDS";
    let target: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| std::io::Error::other(usage))?;
    let claims: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60.0);
    if !target.ip().is_loopback() {
        return Err(std::io::Error::other(
            "the target must be a loopback address",
        ));
    }
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let framer = Framer::new("", None).map_err(std::io::Error::other)?;
    let packets = claims.div_ceil(PER_PACKET);
    let start = Instant::now();
    let mut sent = 0u64;
    for p in 0..packets {
        let mut body = Vec::with_capacity(1400);
        codec::begin_packet(&mut body);
        for k in 0..PER_PACKET {
            codec::encode_message(&Message::Alive(ghost(p * PER_PACKET + k)), &mut body);
        }
        let packet = framer.seal(&body).map_err(std::io::Error::other)?;
        // A full socket buffer drops the packet, as a network would.
        if socket.send_to(&packet, target).is_ok() {
            sent += PER_PACKET;
        }
        let due = Duration::from_secs_f64(seconds * (p + 1) as f64 / packets as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    println!(
        "{{\"claims_sent\": {sent}, \"seconds\": {:.1}}}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
