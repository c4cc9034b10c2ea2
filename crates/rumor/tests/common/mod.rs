//! Helpers shared by the integration tests: fast timings, starting nodes
//! on 127.0.0.1 with OS-assigned ports, and polling with a deadline.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use rumor::{
    Builder, Config, Event, MemberEvent, MemberEventKind, MemberState, Node, Subscription,
};
use tokio::sync::broadcast;

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The local profile with shorter timers, so failures are detected in seconds.
pub fn fast_config() -> Config {
    Config {
        probe_interval: Duration::from_millis(300),
        probe_timeout: Duration::from_millis(150),
        gossip_interval: Duration::from_millis(60),
        push_pull_interval: Duration::from_secs(3),
        ..Config::local()
    }
}

/// A builder for node `name` on 127.0.0.1 with an OS-assigned port.
pub fn builder(name: &str) -> Builder {
    Node::builder()
        .name(name)
        .bind(loopback())
        .config(fast_config())
        .stream_timeout(Duration::from_secs(2))
        .join_timeout(Duration::from_secs(10))
}

/// 127.0.0.1 port 0.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Poll `check` every 50 ms until it holds; panic naming `what` after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    if !try_wait_until(check).await {
        panic!("timed out after {DEADLINE:?} waiting for: {what}");
    }
}

/// Poll `check` every 50 ms until it holds (true) or [`DEADLINE`] passes (false).
pub async fn try_wait_until<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each node's view of member `name`, for failure messages.
pub async fn views(nodes: &[Node], name: &str) -> String {
    let mut out = String::new();
    for n in nodes {
        let m = n
            .members()
            .await
            .ok()
            .and_then(|ms| ms.into_iter().find(|m| &*m.name == name));
        out += &format!("{}: {:?}; ", n.name(), m.map(|m| (m.state, m.incarnation)));
    }
    out
}

/// Names of the members `node` sees alive.
pub async fn alive(node: &Node) -> BTreeSet<String> {
    node.members()
        .await
        .expect("node running")
        .into_iter()
        .filter(|m| m.state == MemberState::Alive)
        .map(|m| m.name.to_string())
        .collect()
}

/// The state `node` holds for member `name`.
pub async fn state_of(node: &Node, name: &str) -> Option<MemberState> {
    node.members()
        .await
        .expect("node running")
        .into_iter()
        .find(|m| &*m.name == name)
        .map(|m| m.state)
}

/// Whether every node in `nodes` holds member `name` in `state`.
pub async fn all_hold(nodes: &[Node], name: &str, state: MemberState) -> bool {
    for n in nodes {
        if state_of(n, name).await != Some(state) {
            return false;
        }
    }
    true
}

/// Wait until every node in `nodes` sees exactly `names` alive.
pub async fn wait_converged(nodes: &[Node], names: &BTreeSet<String>) {
    wait_until(&format!("all nodes see {} alive", names.len()), || async {
        for n in nodes {
            if alive(n).await != *names {
                return false;
            }
        }
        true
    })
    .await;
}

/// Take every membership event already queued on `rx`.
pub fn drain(rx: &mut Subscription) -> Vec<MemberEvent> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(Event::Member(e)) => out.push(MemberEvent::clone(&e)),
            Ok(_) => continue,
            Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => return out,
        }
    }
}

/// Whether `events` report `kind` for member `name`.
pub fn reported(events: &[MemberEvent], kind: MemberEventKind, name: &str) -> bool {
    events
        .iter()
        .any(|e| e.kind == kind && &*e.member.name == name)
}

/// `count` nodes named `{prefix}0..`, all joined through the first, with
/// `config`; returns once every node sees all of them alive.
pub async fn start_cluster(prefix: &str, count: usize, config: Config) -> Vec<Node> {
    let seed = builder(&format!("{prefix}0"))
        .config(config.clone())
        .start()
        .await
        .expect("seed starts");
    let seed_addr = seed.advertise_addr();
    let mut nodes = vec![seed];
    for i in 1..count {
        let n = builder(&format!("{prefix}{i}"))
            .config(config.clone())
            .seed(seed_addr)
            .start()
            .await
            .expect("node joins");
        nodes.push(n);
    }
    let all: BTreeSet<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    wait_converged(&nodes, &all).await;
    nodes
}

/// A set of member names.
pub fn names(n: &[&str]) -> BTreeSet<String> {
    n.iter().map(|s| s.to_string()).collect()
}
