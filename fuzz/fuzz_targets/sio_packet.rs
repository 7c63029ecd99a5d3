#![no_main]
//! The Socket.IO packet decoder and binary reassembly over arbitrary Engine.IO
//! messages (split at 0x1e; a chunk is text when it is UTF-8 and its flag bit says
//! so). Whatever decodes re-encodes to messages that decode to the same packet, and
//! the server's decoding (an event's or ack's arguments kept as JSON text) accepts and
//! refuses exactly what the full decoding does, and gives the same packets.

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wirestate_engine::eio::Data;
use wirestate_engine::sio::{DecodeLimits, Decoder, Incoming, Packet, PacketType};

fn same_kind(a: PacketType, b: PacketType) -> bool {
    let norm = |k| match k {
        PacketType::BinaryEvent => PacketType::Event,
        PacketType::BinaryAck => PacketType::Ack,
        k => k,
    };
    norm(a) == norm(b)
}

fn check_round_trip(packet: &Packet) {
    let mut d = Decoder::default();
    let mut out = None;
    for m in packet.encode() {
        out = d.feed(m).expect("our own encoding decodes");
    }
    let back = out.expect("complete");
    assert!(same_kind(back.kind, packet.kind));
    assert_eq!(
        (&back.nsp, back.id, &back.data, &back.attachments),
        (&packet.nsp, packet.id, &packet.data, &packet.attachments)
    );
}

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(DecodeLimits::default());
    let mut lazy = Decoder::new(DecodeLimits::default());
    for chunk in data.split(|b| *b == 0x1e) {
        let Some((&flag, body)) = chunk.split_first() else {
            continue;
        };
        let message = match std::str::from_utf8(body) {
            Ok(text) if flag & 1 == 0 => Data::Text(text.into()),
            _ => Data::Binary(Bytes::copy_from_slice(body)),
        };
        let kept = lazy.feed_parsed(message.clone(), None);
        match decoder.feed(message) {
            Ok(Some(packet)) => {
                check_round_trip(&packet);
                let kept = kept.expect("what decodes fully decodes lazily");
                assert_eq!(kept, Some(Incoming::from(packet)));
            }
            Ok(None) => assert_eq!(kept, Ok(None)),
            Err(_) => {
                assert!(kept.is_err(), "what the full decoding refuses is refused lazily");
                decoder = Decoder::default();
                lazy = Decoder::default();
            }
        }
    }
});
