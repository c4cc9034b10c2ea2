//! `Node::set_limits`: bounds change while the node runs; what is held over
//! a lowered bound stays, what is new is refused until back under.

use rumor_core::limits::Limit;
use rumor_core::{Config, Error, Instant, Limits, Node};

#[test]
fn lowered_and_raised_bounds_apply_at_once() {
    let addr = "127.0.0.1:7946".parse().unwrap();
    let mut node = Node::new("a", addr, Config::lan(), 1).unwrap();
    let t = Instant::from_micros(1_000_000);
    for k in 0..3 {
        node.kv_put(t, &format!("k{k}"), b"v".to_vec()).unwrap();
    }
    let mut tight = Limits::default();
    tight.max_kv_keys = 3;
    tight.max_state_keys_per_owner = 1;
    node.set_limits(tight.clone()).unwrap();
    assert_eq!(node.config().limits, tight);
    let e = node.kv_put(t, "k3", b"v".to_vec()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitReached {
                limit: Limit::Kv,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        node.kv_put(t, "k0", b"w".to_vec()).is_ok(),
        "an existing key may change"
    );
    node.state_write(t, "s0", Some("x")).unwrap();
    let e = node.state_write(t, "s1", Some("x")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitReached {
                limit: Limit::State,
                ..
            }
        ),
        "{e}"
    );
    node.set_limits(Limits::default()).unwrap();
    node.kv_put(t, "k3", b"v".to_vec()).unwrap();
    node.state_write(t, "s1", Some("x")).unwrap();
    let mut bad = Limits::default();
    bad.max_members = 0;
    assert!(node.set_limits(bad).is_err(), "an invalid bound is refused");
    assert_eq!(
        node.config().limits,
        Limits::default(),
        "and nothing changed"
    );
}
