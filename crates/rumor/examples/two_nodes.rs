//! Two encrypted nodes on 127.0.0.1: one joins the other, both list the
//! members, then one leaves gracefully and the other reports it.
//!
//! ```text
//! cargo run -p rumor --example two_nodes
//! ```

use std::time::Duration;

use rumor::{Event, EventFilter, Key, Keyring, MemberEventKind, Node, Profile};

#[tokio::main]
async fn main() -> Result<(), rumor::Error> {
    let key = Key::generate()?;
    let loopback = "127.0.0.1:0".parse().expect("a socket address");

    let alice = Node::builder()
        .name("alice")
        .bind(loopback)
        .profile(Profile::Local)
        .keyring(Keyring::new(key))
        .label("example")
        .tag("role", "first")
        .start()
        .await?;
    println!("alice listens on {}", alice.advertise_addr());
    let mut events = alice.subscribe(EventFilter::MEMBER);

    let bob = Node::builder()
        .name("bob")
        .bind(loopback)
        .profile(Profile::Local)
        .keyring(Keyring::new(key))
        .label("example")
        .seed(alice.advertise_addr())
        .start()
        .await?;
    println!("bob joined through alice");

    for node in [&alice, &bob] {
        for m in node.members().await? {
            println!(
                "{} sees {} at {} ({}, tags {:?})",
                node.name(),
                m.name,
                m.addr,
                m.state.as_str(),
                m.tags
            );
        }
    }

    bob.leave(Duration::from_secs(5)).await?;
    bob.shutdown().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Ok(Event::Member(ev))) = tokio::time::timeout_at(deadline, events.recv()).await {
        println!("alice: {:?} {}", ev.kind, ev.member.name);
        if ev.kind == MemberEventKind::Left {
            break;
        }
    }
    let stats = alice.stats().await?;
    println!(
        "alice: {} datagrams in, {} out, {} auth failures",
        stats.transport.udp_packets_in,
        stats.transport.udp_packets_out,
        stats.transport.auth_failures
    );
    alice.shutdown().await
}
