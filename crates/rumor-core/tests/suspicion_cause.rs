//! Every suspicion a node raises or adopts is reported with who raised it
//! and why: its own probe (no ack, or the port unreachable) or another
//! member's word.

mod common;

use common::{name, secs, Net};
use rumor_core::{Config, Event, SuspicionCause};

/// (observer, accuser, cause) of every suspicion of member `who`.
fn suspicions(net: &Net, who: usize) -> Vec<(usize, String, SuspicionCause)> {
    let who = name(who);
    net.other_events
        .iter()
        .filter_map(|(_, at, e)| match e {
            Event::Suspected {
                name,
                accuser,
                cause,
            } if **name == *who => Some((*at, accuser.to_string(), *cause)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_silent_crash_is_suspected_for_no_ack_and_the_others_hear_it() {
    let n = 8;
    let mut net = Net::converged(n, Config::lan());
    net.run_for(secs(2.0));
    net.crash(5);
    net.run_for(secs(10.0));
    let s = suspicions(&net, 5);
    assert!(!s.is_empty(), "no suspicion reported");
    let own: Vec<_> = s
        .iter()
        .filter(|(at, accuser, _)| *accuser == name(*at))
        .collect();
    assert!(!own.is_empty(), "nobody reported raising it: {s:?}");
    for (_, _, cause) in &own {
        assert!(
            matches!(cause, SuspicionCause::NoAck { relays, nacks } if *relays > 0 && nacks <= relays),
            "{cause:?}"
        );
    }
    for (at, accuser, cause) in &s {
        if *accuser != name(*at) {
            assert_eq!(*cause, SuspicionCause::Gossip, "from {accuser} at {at}");
        }
    }
}

#[test]
fn a_closed_port_is_suspected_as_unreachable() {
    let n = 6;
    let mut net = Net::converged(n, Config::lan());
    net.refuse_when_down = true;
    net.run_for(secs(2.0));
    net.crash(2);
    net.run_for(secs(10.0));
    let s = suspicions(&net, 2);
    assert!(
        s.iter()
            .any(|(at, a, c)| *a == name(*at) && *c == SuspicionCause::PortUnreachable),
        "{s:?}"
    );
    let text = SuspicionCause::NoAck {
        relays: 3,
        nacks: 1,
    }
    .to_string();
    assert!(
        text.contains("3 relay(s)") && text.contains("1 nacked"),
        "{text}"
    );
}
