//! A node fed an arbitrary stream message (a push-pull, or anything else),
//! then its timers. Its answer, if any, must decode and be accepted by a
//! second node.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rumor_core::{codec, Instant};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut node = common::node();
    let t = Instant::from_micros(1_000_000);
    let reply = node.handle_stream(t, common::addr(2), data);
    common::drain(&mut node);
    if let Some(reply) = reply {
        assert!(codec::decode(&reply).is_ok(), "undecodable reply");
        let mut peer = common::node_named("peer", 101);
        let errors = peer.stats().decode_errors;
        let _ = peer.handle_stream(t, common::addr(100), &reply);
        assert_eq!(peer.stats().decode_errors, errors);
        common::drain(&mut peer);
    }
    let end = 1_000_000 + 60_000_000;
    while let Some(at) = node.poll_timeout() {
        if at.as_micros() > end {
            break;
        }
        node.handle_timeout(at);
        common::drain(&mut node);
    }
});
