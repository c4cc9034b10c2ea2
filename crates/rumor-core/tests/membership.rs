//! Membership behaviour over the in-test network: join, failure detection,
//! refutation, false positives under loss, partitions, leave and restart.

mod common;

use std::time::Duration;

use common::{name, secs, Net};
use rumor_core::{Config, Event, MemberEventKind, MemberState};

fn converged(n: usize) -> Net {
    Net::converged(n, Config::lan())
}

#[test]
fn fifty_nodes_join_through_one_seed_and_converge() {
    let mut net = Net::new(50, Config::lan());
    net.join_all(0);
    let all: Vec<usize> = (0..50).collect();
    let start = net.now;
    let ok = net.run_until_true(secs(120.0), |net| net.all_see_alive(&all));
    assert!(ok, "50 nodes did not converge on a 50-member alive view");
    eprintln!("50-node join converged in {:?}", net.now - start);
    for i in 0..50 {
        assert_eq!(net.node(i).num_members(), 50);
    }
}

/// A joiner announces itself to every member its seed's answer lists, and a
/// claim from the member's own address needs no ping: nodes joining one
/// after another are admitted everywhere without the ping per member and
/// joiner that relayed claims cost (about n²/2 of them).
#[test]
fn joiners_announce_themselves_and_are_admitted_without_pings() {
    let n = 30;
    let mut net = Net::new(n, Config::lan());
    let seed = net.addrs[0];
    for i in 0..n {
        net.with(i, |node, now| node.join(now, &[seed]));
        net.run_for(secs(0.1));
    }
    let all: Vec<usize> = (0..n).collect();
    assert!(net.run_until_true(secs(30.0), |net| net.all_see_alive(&all)));
    let pings: u64 = (0..n).map(|i| net.node(i).stats().members_pending).sum();
    assert!(
        pings < n as u64,
        "{pings} admission pings for {n} joins one after another"
    );
}

#[test]
fn crashed_node_is_marked_dead_by_all_within_the_configured_bound() {
    let n = 16;
    let mut net = converged(n);
    net.run_for(secs(5.0));
    let victim = 7;
    let crash_at = net.now;
    net.crash(victim);
    let rest: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    let c = Config::lan();
    // A member is probed by someone within two probe rounds (worst case of
    // round-robin), suspected, then declared dead within the maximum
    // suspicion timeout; add gossip time for everyone to hear.
    let bound = c.probe_interval * 2 * n as u32 + c.suspicion_max(n) + secs(10.0);
    let ok = net.run_until_true(bound, |net| {
        rest.iter()
            .all(|&o| net.state_of(o, &name(victim)) == Some(MemberState::Dead))
    });
    assert!(
        ok,
        "not every node marked the crashed node dead within {bound:?}"
    );
    let took = net.now - crash_at;
    eprintln!(
        "crash detected by all {} survivors in {took:?} (bound {bound:?})",
        rest.len()
    );
    assert_eq!(
        net.seen(MemberEventKind::Failed, victim).count(),
        rest.len()
    );
    assert!(net.seen(MemberEventKind::Left, victim).next().is_none());
    // Nobody else was declared failed.
    assert!(net
        .events
        .iter()
        .filter(|e| e.kind == MemberEventKind::Failed)
        .all(|e| e.name == name(victim)));
}

/// A crashed process on a live host: its port refuses pings (ICMP port
/// unreachable), so it is declared dead after the short unreachable timeout
/// rather than the Lifeguard one; with the reports ignored it takes the
/// usual time. Same seeds, same crash instant.
/// Lifeguard's nacks say "the relay is fine, the target is not": a node
/// whose relays all nack in time keeps a clean health score. Probing a
/// silently crashed member, with its suspicion watchers probing it again
/// every interval, must leave every prober healthy, so that the next crash
/// is found at the full probe rate.
#[test]
fn probing_a_dead_member_leaves_its_probers_healthy() {
    let mut net = converged(16);
    net.run_for(secs(5.0));
    net.crash(3);
    let mut worst = 0;
    let ok = net.run_until_true(secs(60.0), |net| {
        worst = net
            .running()
            .iter()
            .map(|&i| net.node(i).awareness())
            .max()
            .unwrap_or(0)
            .max(worst);
        net.running()
            .iter()
            .all(|&i| net.state_of(i, &name(3)) == Some(MemberState::Dead))
    });
    assert!(ok, "the crashed member was not declared dead by all");
    let nacks: u64 = net
        .running()
        .iter()
        .map(|&i| net.node(i).stats().nacks)
        .sum();
    assert!(
        nacks > 0,
        "no relay nacked: the dead member was never probed"
    );
    assert_eq!(worst, 0, "a healthy prober raised its health score");
}

/// The timing samples behind the agent's histograms: probe round trips are
/// the network's, and a suspicion that ends in death lasted at least the
/// minimum timeout at its accuser and never more than the maximum anywhere.
#[test]
fn probe_round_trips_and_suspicion_lifetimes_are_sampled() {
    let n = 8;
    let mut net = converged(n);
    for i in 0..n {
        net.with(i, |node, _| node.set_sampling(true));
    }
    net.run_for(secs(5.0));
    let rtts: Vec<Duration> = (0..n)
        .flat_map(|i| net.nodes[i].as_mut().expect("up").take_samples().probe_rtt)
        .collect();
    assert!(rtts.len() >= n, "{} round trips in 5 s", rtts.len());
    assert!(
        rtts.iter().all(|&r| r == net.latency * 2),
        "round trips other than 2 x {:?}: {rtts:?}",
        net.latency
    );
    net.crash(3);
    assert!(net.run_until_all_dead(3, secs(60.0)));
    let c = Config::lan();
    let lasted: Vec<Duration> = net
        .running()
        .into_iter()
        .flat_map(|i| {
            let s = net.nodes[i].as_mut().expect("up").take_samples();
            s.suspicion_to_failure
        })
        .collect();
    assert_eq!(lasted.len(), n - 1, "one per survivor: {lasted:?}");
    let (min, max) = (
        c.suspicion_min(n),
        c.suspicion_min(n) * c.suspicion_max_mult,
    );
    assert!(lasted.iter().all(|&d| d <= max), "{lasted:?}");
    assert!(lasted.iter().any(|&d| d >= min), "{lasted:?}");
}

#[test]
fn a_refusing_port_is_declared_dead_sooner_and_only_that_member() {
    let n = 16;
    let victim = 7;
    let detect = |config: Config| {
        let mut net = Net::converged(n, config);
        net.refuse_when_down = true;
        net.run_for(secs(5.0));
        let crash_at = net.now;
        net.crash(victim);
        let rest: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
        let ok = net.run_until_true(secs(120.0), |net| {
            rest.iter()
                .all(|&o| net.state_of(o, &name(victim)) == Some(MemberState::Dead))
        });
        assert!(ok, "the crashed node was not marked dead by all");
        assert!(net
            .events
            .iter()
            .filter(|e| e.kind == MemberEventKind::Failed)
            .all(|e| e.name == name(victim)));
        let unreachable: u64 = rest.iter().map(|&i| net.node(i).stats().unreachable).sum();
        (net.now - crash_at, unreachable)
    };
    let (fast, reports) = detect(Config::lan());
    let mut ignoring = Config::lan();
    ignoring.unreachable_suspicion_timeout = None;
    let (slow, ignored) = detect(ignoring);
    eprintln!("all survivors: {fast:?} with unreachable reports ({reports}), {slow:?} without");
    assert!(reports > 0 && ignored == 0);
    let c = Config::lan();
    // Some member probes it within a round, then relays confirm at once.
    let bound = c.probe_interval * n as u32 + secs(1.0) + secs(1.0);
    assert!(fast <= bound, "{fast:?} > {bound:?}");
    assert!(
        fast < slow,
        "unreachable reports did not speed detection: {fast:?} vs {slow:?}"
    );
    assert!(slow >= c.suspicion_min(n), "{slow:?}");
}

/// A prober whose direct ping raced the crash (it reached the socket, then
/// the process died: no ICMP answer) still declares the member dead as soon
/// as every relay's ping is refused, rather than starting a Lifeguard
/// suspicion. Three nodes, so node 0 probes the victim first in some runs.
#[test]
fn relays_refused_suffice_when_the_direct_ping_was_lost_silently() {
    let (n, victim, prober) = (3, 2, 0);
    let c = Config::lan();
    let mut suspected_runs = 0;
    for phase in 0..8 {
        let mut net = Net::converged(n, c.clone());
        net.refuse_when_down = true;
        net.unreported_from = Some(prober);
        net.run_for(secs(5.0 + 0.23 * phase as f64));
        net.crash(victim);
        let ok = net.run_until_true(secs(60.0), |net| {
            (0..2).all(|o| net.state_of(o, &name(victim)) == Some(MemberState::Dead))
        });
        assert!(
            ok,
            "phase {phase}: the crashed node was not marked dead by all"
        );
        let first = |kind| {
            net.seen(kind, victim)
                .find(|e| e.observer == prober)
                .map(|e| e.at)
        };
        let (suspect, failed) = (
            first(MemberEventKind::Suspect),
            first(MemberEventKind::Failed),
        );
        let failed = failed.expect("the prober marked it failed");
        if let Some(suspect) = suspect {
            suspected_runs += 1;
            assert!(
                failed - suspect < c.probe_timeout,
                "phase {phase}: suspected at {suspect:?}, dead only at {failed:?}"
            );
        }
    }
    assert!(
        suspected_runs > 0,
        "the prober never saw the victim suspected"
    );
}

#[test]
fn node_silent_shorter_than_suspicion_timeout_refutes_and_never_dies() {
    // Silent (nothing in, nothing out) for the minimum suspicion timeout:
    // well past the probe timeout, and short of the earliest death, which
    // needs a failed probe (a probe interval) plus that minimum. Whether
    // anyone probes the node inside the window is chance, so several runs
    // at different phases: never dead in any, suspected (then refuted) in some.
    let n = 16;
    let c = Config::lan();
    let silence = c.suspicion_min(n);
    assert!(silence > c.probe_timeout * 2);
    let quiet = 3;
    let mut suspected_runs = 0;
    for phase in 0..6 {
        let mut net = converged(n);
        net.run_for(secs(5.0 + 0.29 * phase as f64));
        let before = net.node(quiet).local().incarnation;
        let start = net.now;
        net.drop = Box::new(move |a, b, _| a == quiet || b == quiet);
        net.run_until(start + silence);
        net.drop = Box::new(|_, _, _| false);
        let all: Vec<usize> = (0..n).collect();
        assert!(
            net.run_until_true(secs(60.0), |net| net.all_see_alive(&all)),
            "phase {phase}: cluster did not heal"
        );
        net.run_for(secs(40.0));
        assert!(
            net.seen(MemberEventKind::Failed, quiet).next().is_none(),
            "phase {phase}: silent node was declared dead"
        );
        if net.seen(MemberEventKind::Suspect, quiet).next().is_some() {
            suspected_runs += 1;
            assert!(
                net.node(quiet).local().incarnation > before,
                "phase {phase}: no refutation"
            );
            assert!(net.node(quiet).stats().refutations > 0);
        }
        assert!(net.all_see_alive(&all));
    }
    assert!(
        suspected_runs > 0,
        "the silent node was never suspected: the test proves nothing"
    );
    eprintln!("silent {silence:?}: suspected and refuted in {suspected_runs} of 6 runs, never declared dead");
}

#[test]
fn ten_percent_loss_gives_no_false_positives_in_ten_minutes() {
    let n = 32;
    let mut net = converged(n);
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    net.drop = Box::new(move |_, _, _| {
        // xorshift: a deterministic 10 % loss on every link.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng.is_multiple_of(10)
    });
    net.run_for(secs(600.0));
    let failed: Vec<&str> = net
        .events
        .iter()
        .filter(|e| e.kind == MemberEventKind::Failed)
        .map(|e| e.name.as_str())
        .collect();
    let suspected = net
        .events
        .iter()
        .filter(|e| e.kind == MemberEventKind::Suspect)
        .count();
    eprintln!(
        "10% loss, 32 nodes, 600 s: {suspected} suspicions seen, {} failures",
        failed.len()
    );
    assert!(failed.is_empty(), "live nodes declared dead: {failed:?}");
    let all: Vec<usize> = (0..n).collect();
    net.drop = Box::new(|_, _, _| false);
    assert!(net.run_until_true(secs(60.0), |net| net.all_see_alive(&all)));
}

#[test]
fn partitioned_minority_is_marked_dead_and_both_sides_reconverge_after_healing() {
    let n = 20;
    let mut net = converged(n);
    let minority: Vec<usize> = (14..n).collect();
    let majority: Vec<usize> = (0..14).collect();
    let cut = |a: usize, b: usize| (a >= 14) != (b >= 14);
    net.drop = Box::new(move |a, b, _| cut(a, b));
    let ok = net.run_until_true(secs(180.0), |net| {
        majority.iter().all(|&o| {
            minority
                .iter()
                .all(|&m| net.state_of(o, &name(m)) == Some(MemberState::Dead))
        }) && minority.iter().all(|&o| {
            majority
                .iter()
                .all(|&m| net.state_of(o, &name(m)) == Some(MemberState::Dead))
        })
    });
    assert!(ok, "the two sides did not mark each other dead");
    net.drop = Box::new(|_, _, _| false);
    let healed = net.now;
    let all: Vec<usize> = (0..n).collect();
    let ok = net.run_until_true(secs(300.0), |net| net.all_see_alive(&all));
    assert!(ok, "no reconvergence within 300 s of healing");
    eprintln!("partition healed; reconverged in {:?}", net.now - healed);
}

#[test]
fn leave_is_reported_left_and_restart_rejoins_with_higher_incarnation() {
    let n = 10;
    let mut net = converged(n);
    let leaver = 4;
    net.with(leaver, |node, now| node.leave(now));
    let mut complete = false;
    for _ in 0..50 {
        net.run_for(secs(0.1));
        // LeaveComplete is consumed by the harness' flush; check the queue state instead.
        if (0..n)
            .filter(|&i| i != leaver)
            .all(|o| net.state_of(o, &name(leaver)) == Some(MemberState::Left))
        {
            complete = true;
            break;
        }
    }
    assert!(complete, "leave did not spread within 5 s");
    net.crash(leaver);
    net.run_for(secs(60.0));
    assert_eq!(net.seen(MemberEventKind::Left, leaver).count(), n - 1);
    assert!(
        net.seen(MemberEventKind::Failed, leaver).next().is_none(),
        "a leave was reported as a failure"
    );

    // Crash another node, let it be declared dead, restart it under the same name.
    let phoenix = 6;
    let old = net.node(phoenix).local().incarnation;
    net.crash(phoenix);
    let others: Vec<usize> = (0..n).filter(|&i| i != leaver && i != phoenix).collect();
    let o2 = others.clone();
    assert!(net.run_until_true(secs(120.0), move |net| o2
        .iter()
        .all(|&o| net.state_of(o, &name(phoenix)) == Some(MemberState::Dead))));
    net.boot(phoenix);
    let seed = net.addrs[0];
    net.with(phoenix, |node, now| node.join(now, &[seed]));
    let mut group = others.clone();
    group.push(phoenix);
    assert!(
        net.run_until_true(secs(60.0), |net| net.all_see_alive(&group)),
        "restarted node not alive everywhere"
    );
    let new = net.node(phoenix).local().incarnation;
    assert!(
        new > old,
        "restart rejoined at incarnation {new}, not above {old}"
    );
    for &o in &others {
        assert_eq!(net.node(o).member(&name(phoenix)).unwrap().incarnation, new);
    }
    assert!(net.seen(MemberEventKind::Joined, phoenix).count() >= others.len());
}

#[test]
fn leave_complete_is_reported() {
    let mut net = converged(5);
    let mut node = net.nodes[2].take().unwrap();
    node.leave(net.now);
    let mut saw = false;
    for step in 0..100 {
        let now = net.now + Duration::from_millis(step * 100);
        node.handle_timeout(now);
        while node.poll_transmit().is_some() {}
        while let Some(e) = node.poll_event() {
            saw |= e == Event::LeaveComplete;
        }
        if saw {
            break;
        }
    }
    assert!(saw, "LeaveComplete never reported");
}

#[test]
fn tags_spread_with_a_new_incarnation_and_oversized_tags_are_refused() {
    let n = 8;
    let mut net = converged(n);
    let before = net.node(5).local().incarnation;
    let tags: rumor_core::Tags = [("role".to_string(), "db".to_string())].into();
    let mut result = Ok(());
    net.with(5, |node, now| result = node.set_tags(now, tags.clone()));
    result.unwrap();
    let ok = net.run_until_true(secs(10.0), |net| {
        (0..n).all(|o| {
            net.node(o)
                .member(&name(5))
                .is_some_and(|m| *m.tags == tags)
        })
    });
    assert!(ok, "tags did not reach every node");
    assert_eq!(net.node(5).local().incarnation, before + 1);
    assert_eq!(net.seen(MemberEventKind::Updated, 5).count(), n - 1);

    let big: rumor_core::Tags = [("blob".to_string(), "x".repeat(600))].into();
    let mut result = Ok(());
    net.with(5, |node, now| result = node.set_tags(now, big));
    assert!(
        matches!(result, Err(rumor_core::Error::TagsTooLarge { .. })),
        "{result:?}"
    );
    assert_eq!(
        *net.node(5).local().tags,
        tags,
        "refused tags must not be applied"
    );
}

#[test]
fn in_a_two_node_cluster_a_leave_is_announced_and_reported_left() {
    let mut net = converged(2);
    net.with(1, |node, now| node.leave(now));
    let ok = net.run_until_true(secs(5.0), |net| {
        net.state_of(0, &name(1)) == Some(MemberState::Left)
    });
    assert!(
        ok,
        "the only peer did not hear the leave: {:?}",
        net.state_of(0, &name(1))
    );
    assert!(net.seen(MemberEventKind::Failed, 1).next().is_none());
}

#[test]
fn a_leave_heard_after_a_failure_turns_dead_into_left() {
    let mut net = converged(4);
    // Node 3 is cut off, declared dead, then its leave arrives.
    net.drop = Box::new(|a, b, _| a == 3 || b == 3);
    assert!(net.run_until_true(secs(120.0), |net| (0..3)
        .all(|o| net.state_of(o, &name(3)) == Some(MemberState::Dead))));
    net.drop = Box::new(|_, _, _| false);
    net.with(3, |node, now| node.leave(now));
    let ok = net.run_until_true(secs(30.0), |net| {
        (0..3).all(|o| net.state_of(o, &name(3)) == Some(MemberState::Left))
    });
    assert!(ok, "dead was not upgraded to left");
    assert_eq!(net.seen(MemberEventKind::Left, 3).count(), 3);
}

#[test]
fn a_restart_resuming_its_incarnation_comes_back_above_it() {
    let n = 5;
    let mut net = converged(n);
    let old = net.node(2).local().incarnation;
    net.crash(2);
    net.run_for(secs(1.0));
    net.boot(2);
    let seed = net.addrs[0];
    net.with(2, |node, now| {
        node.resume_incarnation(old);
        node.join(now, &[seed]);
    });
    assert!(net.node(2).local().incarnation > old);
    let all: Vec<usize> = (0..n).collect();
    assert!(net.run_until_true(secs(30.0), |net| net.all_see_alive(&all)));
    for o in 0..n {
        assert!(net.node(o).member(&name(2)).unwrap().incarnation > old);
    }
}

/// A pull lists a digest per record held; the answer carries only the
/// records missing from the list, not the whole view, and the positions of
/// the listed records the answerer lacks.
#[test]
fn a_pull_is_answered_with_only_the_missing_records() {
    use rumor_core::codec;
    use rumor_core::member::record_digest;
    use rumor_core::message::Message;
    let mut net = converged(6);
    let asker = net.node(5);
    let alive = rumor_core::message::Alive {
        incarnation: asker.local().incarnation,
        name: asker.local().name.clone(),
        addr: asker.local().addr,
        protocol: asker.local().protocol,
        tags: asker.local().tags.clone(),
    };
    // The asker holds every record but node 3's, and one the answerer
    // has never heard of, listed third.
    let mut digest: Vec<u32> = asker
        .members()
        .filter(|m| *m.name != name(3))
        .map(|m| record_digest(&m.name, m.incarnation, m.state))
        .collect();
    digest.insert(2, record_digest("node-unknown", 7, MemberState::Alive));
    let from = net.addrs[5];
    let pull = codec::encode_packet(&Message::Pull { alive, digest });
    let mut reply = None;
    net.with(0, |node, now| reply = node.handle_stream(now, from, &pull));
    let reply = reply.expect("a pull is answered");
    let decoded = codec::decode(&reply).expect("the answer decodes");
    let [Message::PushPull(pp), Message::Lacking { positions }] = decoded.messages.as_slice()
    else {
        panic!("not a push-pull and a lacking list: {:?}", decoded.messages);
    };
    assert!(pp.reply, "the answer is not to be answered again");
    let names: Vec<&str> = pp.members.iter().map(|m| &*m.alive.name).collect();
    assert_eq!(names, vec![name(3).as_str()]);
    assert_eq!(positions, &vec![2], "the record the answerer lacks");
}

/// A member heard of only from a third party is admitted once its address
/// answers a ping for its name, and not before; an invented one never is.
#[test]
fn a_relayed_member_is_admitted_on_its_ack_and_an_invented_one_never() {
    use rumor_core::codec;
    use rumor_core::message::{Alive, Message};
    let mut net = Net::new(2, Config::lan());
    let relay: std::net::SocketAddr = "127.0.9.9:7946".parse().unwrap();
    let claim = |name: &str, addr: std::net::SocketAddr| {
        codec::encode_packet(&Message::Alive(Alive {
            incarnation: 1,
            name: name.into(),
            addr,
            protocol: (1, 1),
            tags: Default::default(),
        }))
    };
    let real = claim(&name(1), net.addrs[1]);
    let ghost = claim("ghost", "127.0.9.10:7946".parse().unwrap());
    net.with(0, |n, now| {
        n.handle_datagram(now, relay, &real);
        n.handle_datagram(now, relay, &ghost);
    });
    assert_eq!(
        net.node(0).num_members(),
        1,
        "nothing admitted before an ack"
    );
    assert_eq!(net.node(0).pending_admissions(), 2);
    net.run_for(secs(0.1));
    assert_eq!(net.state_of(0, &name(1)), Some(MemberState::Alive));
    assert_eq!(net.state_of(0, "ghost"), None);
    assert_eq!(net.node(0).stats().members_verified, 1);
    net.run_for(secs(2.0));
    assert_eq!(
        net.node(0).pending_admissions(),
        0,
        "the ghost's wait expired"
    );
    assert_eq!(net.state_of(0, "ghost"), None);
}

#[test]
fn each_member_keeps_its_last_probe_round_trip() {
    // One-way latency 1 ms: a direct probe's round trip is 2 ms.
    let mut net = Net::converged(4, Config::lan());
    net.run_for(secs(20.0));
    for i in 1..4 {
        let rtt = net.node(0).member_rtt(&name(i));
        assert_eq!(rtt, Some(Duration::from_millis(2)), "member {i}");
    }
    assert_eq!(net.node(0).member_rtt(&name(0)), None, "itself");
    assert_eq!(net.node(0).member_rtt("nobody"), None);
}

/// Pulls node `i` has sent.
fn pulls_sent(net: &Net, i: usize) -> u64 {
    use rumor_core::message::MessageType;
    net.node(i).stats().messages_out[MessageType::Pull as usize - 1]
}

/// A join is followed by six pulls at doubling intervals (0.25, 0.75,
/// 1.75, 3.75, 7.75 and 15.75 s on the LAN profile); a join tried again
/// (after a refusal) starts them over instead of adding a second series.
#[test]
fn a_join_is_followed_by_pulls_at_doubling_intervals() {
    let mut net = Net::converged_with_spare(4, 1, Config::lan());
    let seed = net.addrs[0];
    let start = net.now;
    net.with(4, |node, now| node.join(now, &[seed]));
    let mut sent_by = Vec::new();
    for until in [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 40.0] {
        net.run_until(start + secs(until));
        sent_by.push(pulls_sent(&net, 4));
    }
    assert_eq!(
        sent_by,
        vec![1, 2, 3, 4, 5, 6, 6],
        "pulls sent by 0.5, 1, 2, 4, 8, 16 and 40 s"
    );

    let mut net = Net::converged_with_spare(4, 1, Config::lan());
    let start = net.now;
    net.with(4, |node, now| node.join(now, &[seed]));
    net.run_until(start + secs(0.6));
    net.with(4, |node, now| node.join(now, &[seed]));
    net.run_until(start + secs(40.0));
    assert_eq!(
        pulls_sent(&net, 4),
        1 + 6,
        "one pull of the first series, then a whole second one"
    );
}

/// The answer to a pull names the positions of the listed digests the
/// answerer holds no record for; the puller sends those records back, and
/// only to a partner it asked.
#[test]
fn a_pull_answer_naming_lacking_records_gets_them_back() {
    use rumor_core::codec;
    use rumor_core::message::{Message, PushPull};
    use rumor_core::{Instant, Node, TransmitKind};
    let addr: std::net::SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let partner: std::net::SocketAddr = "127.0.0.1:7002".parse().unwrap();
    let answer = {
        let mut out = codec::encode_packet(&Message::PushPull(PushPull {
            join: false,
            reply: true,
            members: Vec::new(),
            events: Vec::new(),
        }));
        // Position 0 is the puller's own record; 9 is past its table.
        let lacking = Message::Lacking {
            positions: vec![0, 9],
        };
        codec::encode_message(&lacking, &mut out);
        out
    };
    let pushed_back = |node: &mut Node| -> Vec<(std::net::SocketAddr, PushPull)> {
        std::iter::from_fn(|| node.poll_transmit())
            .filter(|t| t.kind == TransmitKind::Stream)
            .filter_map(|t| {
                let d = codec::decode(&t.payload).ok()?;
                match d.messages.as_slice() {
                    [Message::PushPull(pp)] if pp.reply => Some((t.to, pp.clone())),
                    _ => None,
                }
            })
            .collect()
    };

    // Asked (a join is a request to the seed): the record goes back.
    let mut node = Node::new("puller", addr, Config::lan(), 1).unwrap();
    let now = Instant::ZERO;
    node.join(now, &[partner]);
    while node.poll_transmit().is_some() {}
    assert_eq!(node.handle_stream(now, partner, &answer), None);
    let back = pushed_back(&mut node);
    assert_eq!(back.len(), 1, "one push back: {back:?}");
    assert_eq!(back[0].0, partner);
    let names: Vec<&str> = back[0].1.members.iter().map(|r| &*r.alive.name).collect();
    assert_eq!(names, vec!["puller"]);

    // Not asked: nothing goes back.
    let mut node = Node::new("puller", addr, Config::lan(), 1).unwrap();
    node.handle_timeout(now);
    while node.poll_transmit().is_some() {}
    let _ = node.handle_stream(now, partner, &answer);
    assert!(pushed_back(&mut node).is_empty());
}
