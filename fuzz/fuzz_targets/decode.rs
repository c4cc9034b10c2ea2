//! `codec::decode` on arbitrary bytes: never panics, and whatever decodes
//! re-encodes to a packet that decodes to the same messages.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rumor_core::codec;

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = codec::decode(data) else {
        return;
    };
    if decoded.messages.is_empty() {
        return;
    }
    let mut again = Vec::with_capacity(data.len());
    codec::begin_packet(&mut again);
    for m in &decoded.messages {
        codec::encode_message(m, &mut again);
    }
    assert!(again.len() <= data.len(), "decoding made bytes up");
    let twice = codec::decode(&again).expect("a re-encoded packet decodes");
    assert_eq!(twice.messages, decoded.messages);
});
