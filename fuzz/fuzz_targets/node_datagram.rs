//! A node fed a sequence of arbitrary datagrams, with time passing and
//! timers firing between them. The input is a list of records
//! `[advance u8][sender u8][len u8][len bytes]`: the clock moves by
//! `advance * 10 ms`, the sender is one of the known members or a stranger.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rumor_core::Instant;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut node = common::node();
    let mut now = 1_000_000u64;
    let mut rest = data;
    while let [advance, sender, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (datagram, after) = tail.split_at(n);
        rest = after;
        now += u64::from(*advance) * 10_000;
        let t = Instant::from_micros(now);
        let from = common::addr(sender % 8 + 1);
        node.handle_datagram(t, from, datagram);
        common::drain(&mut node);
        node.handle_timeout(t);
        common::drain(&mut node);
    }
    // Let a minute pass so every timer (probes, suspicions, reaping) runs.
    let end = now + 60_000_000;
    while let Some(at) = node.poll_timeout() {
        if at.as_micros() > end {
            break;
        }
        node.handle_timeout(at);
        common::drain(&mut node);
    }
});
