#![no_main]
//! Engine.IO packet and payload decoders (v3 and v4, text and XHR2 binary, WebSocket
//! frames) over arbitrary bytes. What decodes re-encodes to something that decodes to
//! the same packets.

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wirestate_engine::eio::{decode_payload, encode_payload, Packet, Protocol};
use wirestate_engine::ws::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let protocol = if mode & 1 == 0 {
        Protocol::V4
    } else {
        Protocol::V3
    };
    let body = Bytes::copy_from_slice(body);
    if let Ok(packets) = decode_payload(&body, protocol) {
        let again = encode_payload(&packets, protocol);
        assert_eq!(decode_payload(&again, protocol).as_ref(), Ok(&packets));
    }
    let message = match std::str::from_utf8(&body) {
        Ok(text) if mode & 2 == 0 => Message::text(text),
        _ => Message::Binary(body.clone()),
    };
    if let Ok(packet) = Packet::from_ws(&message, protocol) {
        assert_eq!(
            Packet::from_ws(&packet.to_ws(protocol), protocol),
            Ok(packet)
        );
    }
});
