//! Queries over real sockets on 127.0.0.1: filters select exactly the
//! matching members, answers (large ones by stream) and acks arrive once
//! each, a slow responder is simply missing at the deadline, the built-in
//! ping is answered by every node, and a bad pattern is refused.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rumor::query::PING;
use rumor::{Event, Node, QueryAnswer, QueryFilter, QueryOptions, Tags};

/// Answer every query delivered to `node` with its name (or, for `big`,
/// 20,000 bytes); a query named `slow` is answered after 3 s.
fn answer_queries(node: &Arc<Node>) -> tokio::task::JoinHandle<()> {
    let mut rx = node.events();
    let node = node.clone();
    tokio::spawn(async move {
        while let Ok(ev) = rx.recv().await {
            let Event::Query(q) = ev else { continue };
            let node = node.clone();
            tokio::spawn(async move {
                let answer = match q.name.as_str() {
                    "big" => vec![b'x'; 20_000],
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        node.name().as_bytes().to_vec()
                    }
                    _ => node.name().as_bytes().to_vec(),
                };
                let _ = node.respond(&q, answer).await;
            });
        }
    })
}

/// Everything a query stream yields until it ends: (acks, answers).
async fn collect(
    node: &Node,
    name: &str,
    options: QueryOptions,
) -> (BTreeSet<String>, Vec<(String, Vec<u8>)>) {
    let mut stream = node
        .query(name, b"?".to_vec(), options)
        .await
        .expect("query");
    let mut acks = BTreeSet::new();
    let mut answers = Vec::new();
    let started = Instant::now();
    while let Some(a) = stream.next().await {
        match a {
            QueryAnswer::Ack { from } => assert!(acks.insert(from), "an ack twice"),
            QueryAnswer::Response { from, payload } => answers.push((from, payload)),
        }
    }
    assert!(
        started.elapsed() < stream.timeout() + Duration::from_secs(2),
        "the stream outlived its timeout"
    );
    (acks, answers)
}

/// Stop the answerers, then the nodes.
async fn stop(nodes: Vec<Arc<Node>>, answerers: Vec<tokio::task::JoinHandle<()>>) {
    for a in answerers {
        a.abort();
        let _ = a.await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await; // answers in flight
    for n in nodes {
        if let Ok(n) = Arc::try_unwrap(n) {
            n.shutdown().await.unwrap();
        }
    }
}

fn tagged(role: &str) -> Tags {
    let mut t = Tags::new();
    t.insert("role".into(), role.into());
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_exactly_the_matching_members_and_answers_arrive_once() {
    let nodes: Vec<Arc<Node>> = start_cluster("q", 5, fast_config())
        .await
        .into_iter()
        .map(Arc::new)
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        n.set_tags(tagged(if i % 2 == 0 { "web" } else { "db" }))
            .await
            .unwrap();
    }
    let answerers: Vec<_> = nodes.iter().map(answer_queries).collect();
    // Tags spread as alive claims: wait until the asker sees them all.
    wait_until("tags seen", || async {
        let m = nodes[1].members().await.unwrap();
        m.iter().filter(|m| m.tags.get("role").is_some()).count() == 5
    })
    .await;
    let opts = |filters| QueryOptions {
        filters,
        ack: true,
        relay_factor: 1,
        timeout: Some(Duration::from_secs(2)),
    };
    let web = vec![QueryFilter::Tag {
        key: "role".into(),
        pattern: "web".into(),
    }];
    let (acks, answers) = collect(&nodes[1], "who", opts(web)).await;
    let want: BTreeSet<String> = ["q0", "q2", "q4"].iter().map(|s| s.to_string()).collect();
    assert_eq!(acks, want);
    let got: BTreeSet<String> = answers.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(got, want);
    assert_eq!(answers.len(), 3, "an answer delivered twice: {answers:?}");
    for (from, payload) in &answers {
        assert_eq!(from.as_bytes(), &payload[..]);
    }
    let both = vec![
        QueryFilter::Name("q[0-3]".into()),
        QueryFilter::Tag {
            key: "role".into(),
            pattern: "db|web".into(),
        },
    ];
    let (_, answers) = collect(&nodes[4], "who", opts(both)).await;
    let got: BTreeSet<String> = answers.into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        got,
        ["q0", "q1", "q2", "q3"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    // A 20 kB answer does not fit a datagram: it comes by stream.
    let (_, answers) = collect(&nodes[0], "big", opts(vec![])).await;
    assert_eq!(answers.len(), 5);
    assert!(answers.iter().all(|(_, p)| p.len() == 20_000));
    stop(nodes, answerers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_responder_is_missing_at_the_deadline_and_ping_needs_no_handler() {
    let nodes: Vec<Arc<Node>> = start_cluster("s", 3, fast_config())
        .await
        .into_iter()
        .map(Arc::new)
        .collect();
    let answerers: Vec<_> = nodes.iter().map(answer_queries).collect();
    let opts = QueryOptions {
        timeout: Some(Duration::from_millis(1500)),
        ..QueryOptions::default()
    };
    let started = Instant::now();
    let (_, answers) = collect(&nodes[0], "slow", opts.clone()).await;
    assert!(
        answers.is_empty(),
        "answers after the deadline: {answers:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1400));
    // Built in: answered by the driver, with or without an application.
    let (_, answers) = collect(&nodes[2], PING, opts).await;
    let got: BTreeSet<String> = answers.into_iter().map(|(f, _)| f).collect();
    assert_eq!(got, names(&["s0", "s1", "s2"]));
    let bad = QueryOptions {
        filters: vec![QueryFilter::Name("(".into())],
        ..QueryOptions::default()
    };
    let e = nodes[0].query("who", b"".to_vec(), bad).await.unwrap_err();
    assert!(e.to_string().contains("does not compile"), "{e}");
    let e = nodes[0]
        .query("who", vec![0u8; 4000], QueryOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("limit is 1024"), "{e}");
    stop(nodes, answerers).await;
}
