//! A node fed a sequence of arbitrary stream messages (push-pulls, pulls,
//! or anything else) up to 64 KiB, with time and timers between them. Each
//! reply must decode and be accepted by a second node. The input is a
//! script (see `script.rs`) whose records are streams or timer steps.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
#[path = "script.rs"]
mod script;

fuzz_target!(|data: &[u8]| {
    script::run(data, &script::STREAM_OPS);
});
