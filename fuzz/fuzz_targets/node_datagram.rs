//! A node driven through a sequence of arbitrary inputs: datagrams and
//! streams up to 64 KiB, timers, unreachable reports and local commands
//! (events, state and key-space writes, aggregates, leave and rejoin), with
//! time passing between them. The input is a script (see `script.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
#[path = "script.rs"]
mod script;

fuzz_target!(|data: &[u8]| {
    script::run(data, &script::ALL_OPS);
});
