//! permessage-deflate (RFC 7692): negotiation, and the per-connection compressor and
//! decompressor.
//!
//! # Memory
//! Nothing is allocated until the first compressed message in each direction. Then, per
//! connection: the decompressor holds about 7 KiB plus a window of 2^bits bytes (32 KiB
//! at 15 bits); the compressor about 2^(bits+2) bytes for its window plus 128 KiB of hash
//! tables (≈ 256 KiB at 15 bits). To bound it: lower `server_max_window_bits` /
//! `client_max_window_bits`, raise the `threshold` so that small messages never wake the
//! compressor, or turn compression off. With context takeover off, a message compressed
//! once ([`Precompressed`]) can be sent to many connections.
//!
//! A deflate bomb cannot grow a message past `Config::max_message_size`: output is
//! produced in bounded chunks and counted as it is produced (close 1009).

use std::fmt;

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::connection::Role;
use super::error::{HandshakeError, ProtocolError};
use super::message::Message;

/// The extension's registered name.
pub const EXTENSION: &str = "permessage-deflate";
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What this endpoint offers (client) or accepts (server).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Compression level, 0–9 (default 6).
    pub level: u32,
    /// Messages shorter than this are sent uncompressed (default 1024 bytes).
    pub threshold: usize,
    /// Server: always ask for (and use) no context takeover on the server's side, so
    /// the server's compressor keeps no state between messages. Client: request it.
    pub server_no_context_takeover: bool,
    /// Server: ask the client not to keep context between messages. Client: do not.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window (8–15) for the server's compressor.
    pub server_max_window_bits: u8,
    /// Largest LZ77 window (8–15) for the client's compressor.
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            level: 6,
            threshold: 1024,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateConfig {
    /// Sets [`DeflateConfig::level`] (clamped to 0–9).
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Sets [`DeflateConfig::threshold`].
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Sets both no-context-takeover flags: no compression state is kept between
    /// messages on either side (least memory, worse ratio).
    pub fn no_context_takeover(mut self) -> Self {
        self.server_no_context_takeover = true;
        self.client_no_context_takeover = true;
        self
    }

    /// Sets [`DeflateConfig::server_no_context_takeover`].
    pub fn server_no_context_takeover(mut self, yes: bool) -> Self {
        self.server_no_context_takeover = yes;
        self
    }

    /// Sets [`DeflateConfig::client_no_context_takeover`].
    pub fn client_no_context_takeover(mut self, yes: bool) -> Self {
        self.client_no_context_takeover = yes;
        self
    }

    /// Sets both maximum window sizes (clamped to 8–15).
    pub fn max_window_bits(mut self, server: u8, client: u8) -> Self {
        self.server_max_window_bits = server.clamp(8, 15);
        self.client_max_window_bits = client.clamp(8, 15);
        self
    }
}

/// The parameters both ends agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window (8–15).
    pub server_max_window_bits: u8,
    /// The client compresses with at most this window (8–15).
    pub client_max_window_bits: u8,
}

impl fmt::Display for DeflateParams {
    /// The `Sec-WebSocket-Extensions` value a server answers with.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXTENSION)?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if self.server_max_window_bits < 15 {
            write!(
                f,
                "; server_max_window_bits={}",
                self.server_max_window_bits
            )?;
        }
        if self.client_max_window_bits < 15 {
            write!(
                f,
                "; client_max_window_bits={}",
                self.client_max_window_bits
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Header grammar (RFC 6455 §9.1 / RFC 7230): extension *( ";" param [ "=" value ] )
// ---------------------------------------------------------------------------------------

/// One extension of a `Sec-WebSocket-Extensions` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// The extension token.
    pub name: String,
    /// Its parameters, values unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses one or more `Sec-WebSocket-Extensions` values. `None` if malformed.
pub fn parse_extensions<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<Extension>> {
    let mut out = Vec::new();
    for value in values {
        let value = std::str::from_utf8(value).ok()?;
        let mut chars = value.chars().peekable();
        loop {
            skip_ws(&mut chars);
            if chars.peek().is_none() {
                break;
            }
            if chars.peek() == Some(&',') {
                chars.next();
                continue;
            }
            let name = token(&mut chars)?;
            let mut params = Vec::new();
            loop {
                skip_ws(&mut chars);
                match chars.next() {
                    None | Some(',') => break,
                    Some(';') => {}
                    Some(_) => return None,
                }
                skip_ws(&mut chars);
                let key = token(&mut chars)?;
                skip_ws(&mut chars);
                let val = if chars.peek() == Some(&'=') {
                    chars.next();
                    skip_ws(&mut chars);
                    Some(if chars.peek() == Some(&'"') {
                        chars.next();
                        let mut s = String::new();
                        loop {
                            match chars.next()? {
                                '"' => break,
                                '\\' => s.push(chars.next()?),
                                c => s.push(c),
                            }
                        }
                        s
                    } else {
                        token(&mut chars)?
                    })
                } else {
                    None
                };
                params.push((key, val));
            }
            out.push(Extension { name, params });
        }
    }
    Some(out)
}

fn skip_ws(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
        chars.next();
    }
}

fn token(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    let mut s = String::new();
    while let Some(&c) = chars.peek() {
        if !u8::try_from(c).is_ok_and(crate::http::is_tchar) {
            break;
        }
        s.push(c);
        chars.next();
    }
    (!s.is_empty()).then_some(s)
}

/// A window-bits value: 1*DIGIT in 8–15, no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.len() > 2 {
        return None;
    }
    value.parse().ok().filter(|b| (8..=15).contains(b))
}

#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// Offered at all, and with which value.
    client_max_window_bits: Option<Option<u8>>,
}

/// Reads permessage-deflate parameters, rejecting unknown, duplicate or invalid ones.
/// `response` tightens the rules for what a server may answer.
fn read_params(params: &[(String, Option<String>)], response: bool) -> Option<Offer> {
    let mut offer = Offer::default();
    let mut seen = [false; 4];
    for (key, value) in params {
        let k = key.to_ascii_lowercase();
        let (slot, ok) = match k.as_str() {
            "server_no_context_takeover" => {
                offer.server_no_context_takeover = true;
                (0, value.is_none())
            }
            "client_no_context_takeover" => {
                offer.client_no_context_takeover = true;
                (1, value.is_none())
            }
            "server_max_window_bits" => {
                offer.server_max_window_bits = value.as_deref().and_then(window_bits);
                (2, offer.server_max_window_bits.is_some())
            }
            "client_max_window_bits" => match value.as_deref().map(window_bits) {
                None if !response => {
                    offer.client_max_window_bits = Some(None);
                    (3, true)
                }
                Some(Some(bits)) => {
                    offer.client_max_window_bits = Some(Some(bits));
                    (3, true)
                }
                _ => (3, false),
            },
            _ => return None,
        };
        if !ok || seen[slot] {
            return None;
        }
        seen[slot] = true;
    }
    Some(offer)
}

/// Server side: picks the first acceptable permessage-deflate offer, if any.
///
/// Offers with unknown, duplicate or invalid parameters are declined (RFC 7692 §5);
/// the next offer is tried.
pub fn negotiate(offers: &[Extension], config: &DeflateConfig) -> Option<DeflateParams> {
    offers
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(EXTENSION))
        .find_map(|e| {
            let offer = read_params(&e.params, false)?;
            let server_max_window_bits = offer
                .server_max_window_bits
                .unwrap_or(15)
                .min(config.server_max_window_bits);
            let client_max_window_bits = match offer.client_max_window_bits {
                // The client supports a limit: apply ours (or echo its own).
                Some(requested) => requested.unwrap_or(15).min(config.client_max_window_bits),
                // It did not say it supports one, so it may use any window.
                None => 15,
            };
            Some(DeflateParams {
                server_no_context_takeover: offer.server_no_context_takeover
                    || config.server_no_context_takeover,
                client_no_context_takeover: offer.client_no_context_takeover
                    || config.client_no_context_takeover,
                server_max_window_bits,
                client_max_window_bits,
            })
        })
}

/// Client side: the offer to send.
pub fn offer(config: &DeflateConfig) -> String {
    let mut s = String::from(EXTENSION);
    if config.client_max_window_bits < 15 {
        s.push_str(&format!(
            "; client_max_window_bits={}",
            config.client_max_window_bits
        ));
    } else {
        s.push_str("; client_max_window_bits");
    }
    if config.server_max_window_bits < 15 {
        s.push_str(&format!(
            "; server_max_window_bits={}",
            config.server_max_window_bits
        ));
    }
    if config.server_no_context_takeover {
        s.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        s.push_str("; client_no_context_takeover");
    }
    s
}

/// Client side: checks the server's answer to [`offer`]. `Ok(None)`: no extension.
pub fn accept_response(
    extensions: &[Extension],
    config: &DeflateConfig,
) -> Result<Option<DeflateParams>, HandshakeError> {
    let [ext] = extensions else {
        return if extensions.is_empty() {
            Ok(None)
        } else {
            Err(HandshakeError::UnexpectedExtension)
        };
    };
    if !ext.name.eq_ignore_ascii_case(EXTENSION) {
        return Err(HandshakeError::UnexpectedExtension);
    }
    let answer = read_params(&ext.params, true).ok_or(HandshakeError::UnexpectedExtension)?;
    let server_max_window_bits = answer.server_max_window_bits.unwrap_or(15);
    if server_max_window_bits > config.server_max_window_bits {
        return Err(HandshakeError::UnexpectedExtension);
    }
    let client_max_window_bits = match answer.client_max_window_bits {
        Some(Some(bits)) => bits.min(config.client_max_window_bits),
        _ => config.client_max_window_bits,
    };
    Ok(Some(DeflateParams {
        server_no_context_takeover: answer.server_no_context_takeover,
        client_no_context_takeover: answer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    }))
}

// ---------------------------------------------------------------------------------------
// The codec
// ---------------------------------------------------------------------------------------

/// A compressor that zlib can run with `bits` (zlib has no raw 8-bit window).
fn compressor(level: u32, bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(level), false, bits.max(9))
}

/// Level to use under a window limit: an 8-bit window is honoured by emitting stored
/// blocks, which reference no history at all.
fn level_for(level: u32, bits: u8) -> u32 {
    if bits < 9 {
        0
    } else {
        level
    }
}

/// Compresses `payload` as one complete permessage-deflate message body (the
/// trailing `00 00 ff ff` removed). Returns `None` if the compressor failed.
fn compress_message(c: &mut Compress, payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    let start = c.total_in();
    loop {
        let consumed = (c.total_in() - start) as usize;
        c.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
            .ok()?;
        let consumed = (c.total_in() - start) as usize;
        if consumed == payload.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(256));
    }
    if out.ends_with(&TRAILER) {
        out.truncate(out.len() - TRAILER.len());
    }
    if out.is_empty() {
        // zlib emits nothing for a flush with nothing new to flush; the receiver will
        // append `00 00 ff ff`, which must complete an empty stored block whose 3-bit
        // header (all zero) is this byte (RFC 7692 §7.2.3.6).
        out.push(0x00);
    }
    Some(out)
}

/// A message compressed once, to be sent to many connections (a broadcast).
///
/// Connections that negotiated permessage-deflate with no context takeover on their
/// sending side, and a window at least as large as the one used here, send the
/// compressed form; every other connection sends the plain message.
#[derive(Clone, Debug)]
pub struct Precompressed {
    pub(crate) message: Message,
    pub(crate) deflated: Option<Bytes>,
    pub(crate) window_bits: u8,
}

impl Precompressed {
    /// Compresses `message` with `level` and a window of `window_bits` (8–15).
    pub fn new(message: Message, level: u32, window_bits: u8) -> Self {
        let window_bits = window_bits.clamp(8, 15);
        let mut c = compressor(level_for(level.min(9), window_bits), window_bits);
        let deflated = compress_message(&mut c, message.as_bytes()).map(Bytes::from);
        Self {
            message,
            deflated,
            window_bits,
        }
    }

    /// The plain message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The compressed payload, if compression succeeded.
    pub fn deflated(&self) -> Option<&Bytes> {
        self.deflated.as_ref()
    }
}

/// Per-connection permessage-deflate state.
pub(crate) struct Codec {
    pub(crate) params: DeflateParams,
    level: u32,
    threshold: usize,
    send_bits: u8,
    send_reset: bool,
    recv_bits: u8,
    recv_reset: bool,
    compressor: Option<Compress>,
    decompressor: Option<Decompress>,
    /// The current inbound message hit a final deflate block.
    ended: bool,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Codec {
    pub(crate) fn new(role: Role, params: DeflateParams, config: &DeflateConfig) -> Self {
        let (send_bits, send_reset, recv_bits, recv_reset) = match role {
            Role::Server => (
                params.server_max_window_bits,
                params.server_no_context_takeover,
                params.client_max_window_bits,
                params.client_no_context_takeover,
            ),
            Role::Client => (
                params.client_max_window_bits,
                params.client_no_context_takeover,
                params.server_max_window_bits,
                params.server_no_context_takeover,
            ),
        };
        Self {
            params,
            level: config.level,
            threshold: config.threshold,
            send_bits,
            send_reset,
            recv_bits,
            recv_reset,
            compressor: None,
            decompressor: None,
            ended: false,
        }
    }

    /// Whether a message of `len` bytes should be compressed by default.
    pub(crate) fn wants(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// Compresses one outgoing message. `None`: send it uncompressed.
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let (level, bits) = (level_for(self.level, self.send_bits), self.send_bits);
        let c = self
            .compressor
            .get_or_insert_with(|| compressor(level, bits));
        let out = compress_message(c, payload);
        if self.send_reset || out.is_none() {
            c.reset();
        }
        out
    }

    /// Whether `p`'s compressed form may be sent on this connection.
    pub(crate) fn accepts(&self, p: &Precompressed) -> bool {
        self.send_reset && p.window_bits <= self.send_bits.max(8) && p.deflated.is_some()
    }

    /// Decompresses a piece of an inbound compressed message into `out`, which may not
    /// grow past `limit`. Calls `check` on each piece of output (UTF-8 validation).
    pub(crate) fn decompress(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        limit: usize,
        check: &mut dyn FnMut(&[u8]) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let bits = self.recv_bits.max(9);
        let d = self
            .decompressor
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, bits));
        let mut chunk = [0u8; 8192];
        let mut input = input;
        loop {
            if self.ended {
                // Bytes after a final block: only an empty remainder is acceptable.
                return if input.iter().all(|b| *b == 0) || input == TRAILER {
                    Ok(())
                } else {
                    Err(ProtocolError::InvalidCompressedData)
                };
            }
            let (in0, out0) = (d.total_in(), d.total_out());
            let status = d
                .decompress(input, &mut chunk, FlushDecompress::Sync)
                .map_err(|_| ProtocolError::InvalidCompressedData)?;
            let consumed = (d.total_in() - in0) as usize;
            let produced = (d.total_out() - out0) as usize;
            input = &input[consumed..];
            if out.len() + produced > limit {
                return Err(ProtocolError::MessageTooLarge);
            }
            let piece = &chunk[..produced];
            check(piece)?;
            out.extend_from_slice(piece);
            if status == Status::StreamEnd {
                self.ended = true;
                continue;
            }
            if produced < chunk.len() && (input.is_empty() || consumed == 0 && produced == 0) {
                return Ok(());
            }
        }
    }

    /// Ends an inbound compressed message: feeds the implied trailer.
    pub(crate) fn finish_message(
        &mut self,
        out: &mut BytesMut,
        limit: usize,
        check: &mut dyn FnMut(&[u8]) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let result = self.decompress(&TRAILER, out, limit, check);
        if self.recv_reset || self.ended {
            if let Some(d) = &mut self.decompressor {
                d.reset(false);
            }
        }
        self.ended = false;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(s: &str) -> Vec<Extension> {
        parse_extensions([s.as_bytes()]).expect("well-formed")
    }

    #[test]
    fn parses_lists_params_and_quotes() {
        let e = ext(
            r#"permessage-deflate; client_max_window_bits, permessage-deflate;server_max_window_bits="10", x-foo"#,
        );
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].params, [("client_max_window_bits".to_owned(), None)]);
        assert_eq!(
            e[1].params,
            [("server_max_window_bits".to_owned(), Some("10".to_owned()))]
        );
        assert_eq!(e[2].name, "x-foo");
        assert!(parse_extensions([&b"permessage-deflate; =x"[..]]).is_none());
        assert!(parse_extensions([&b"permessage-deflate; a=\"open"[..]]).is_none());
    }

    #[test]
    fn server_declines_bad_offers_and_takes_the_next() {
        let cfg = DeflateConfig::default();
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        ] {
            assert_eq!(negotiate(&ext(bad), &cfg), None, "{bad}");
            let with_fallback = ext(&format!("{bad}, permessage-deflate"));
            assert!(negotiate(&with_fallback, &cfg).is_some(), "{bad}, fallback");
        }
    }

    #[test]
    fn server_answers_what_was_asked_and_its_own_policy() {
        let p = negotiate(
            &ext("permessage-deflate; server_max_window_bits=10; client_max_window_bits"),
            &DeflateConfig::default(),
        )
        .expect("accepted");
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (10, 15)
        );
        assert_eq!(
            p.to_string(),
            "permessage-deflate; server_max_window_bits=10"
        );
        let strict = DeflateConfig::default()
            .no_context_takeover()
            .max_window_bits(12, 11);
        let p = negotiate(&ext("permessage-deflate; client_max_window_bits"), &strict)
            .expect("accepted");
        assert_eq!(
            p.to_string(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=11"
        );
        // Without client_max_window_bits in the offer the client's window cannot be limited.
        let p = negotiate(&ext("permessage-deflate"), &strict).expect("accepted");
        assert_eq!(p.client_max_window_bits, 15);
    }

    #[test]
    fn client_checks_the_answer() {
        let cfg = DeflateConfig::default();
        assert_eq!(offer(&cfg), "permessage-deflate; client_max_window_bits");
        let ok = accept_response(
            &ext("permessage-deflate; client_max_window_bits=9; server_no_context_takeover"),
            &cfg,
        )
        .expect("valid")
        .expect("accepted");
        assert_eq!(
            (ok.client_max_window_bits, ok.server_no_context_takeover),
            (9, true)
        );
        for bad in [
            "permessage-deflate; bogus",
            "x-other",
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; client_max_window_bits",
        ] {
            assert_eq!(
                accept_response(&ext(bad), &cfg),
                Err(HandshakeError::UnexpectedExtension),
                "{bad}"
            );
        }
        let limited = DeflateConfig::default().max_window_bits(10, 15);
        assert_eq!(
            accept_response(
                &ext("permessage-deflate; server_max_window_bits=12"),
                &limited
            ),
            Err(HandshakeError::UnexpectedExtension)
        );
    }

    fn roundtrip(params: DeflateParams, messages: &[&[u8]]) {
        let cfg = DeflateConfig::default().threshold(0);
        let mut tx = Codec::new(Role::Server, params, &cfg);
        let mut rx = Codec::new(Role::Client, params, &cfg);
        for m in messages {
            let z = tx.compress(m).expect("compressed");
            let mut out = BytesMut::new();
            // Feed the compressed body in small pieces.
            for piece in z.chunks(7) {
                rx.decompress(piece, &mut out, usize::MAX, &mut |_| Ok(()))
                    .expect("inflate");
            }
            rx.finish_message(&mut out, usize::MAX, &mut |_| Ok(()))
                .expect("finish");
            assert_eq!(&out[..], *m);
        }
    }

    #[test]
    fn codec_round_trips_with_every_parameter_set() {
        let text = b"Hello, hello, hello! permessage-deflate says hello again and again.";
        let big: Vec<u8> = (0..100_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect();
        let messages: [&[u8]; 4] = [text, b"", &big, text];
        for no_ctx in [false, true] {
            for bits in [8u8, 9, 12, 15] {
                let params = DeflateParams {
                    server_no_context_takeover: no_ctx,
                    client_no_context_takeover: no_ctx,
                    server_max_window_bits: bits,
                    client_max_window_bits: bits,
                };
                roundtrip(params, &messages);
            }
        }
    }

    #[test]
    fn a_deflate_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let bomb = Precompressed::new(Message::binary(zeros), 9, 15);
        let z = bomb.deflated().expect("compressed");
        assert!(
            z.len() < 20_000,
            "10 MiB of zeros compress to {} bytes",
            z.len()
        );
        let params = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        let mut rx = Codec::new(Role::Server, params, &DeflateConfig::default());
        let mut out = BytesMut::new();
        let err = rx
            .decompress(z, &mut out, 1 << 20, &mut |_| Ok(()))
            .expect_err("too large");
        assert_eq!(err, ProtocolError::MessageTooLarge);
        assert!(
            out.len() <= 1 << 20,
            "output stopped at the limit, got {}",
            out.len()
        );
        assert!(
            out.capacity() <= 2 << 20,
            "no allocation past the limit: {}",
            out.capacity()
        );
    }

    #[test]
    fn garbage_is_invalid_compressed_data() {
        let params =
            negotiate(&ext("permessage-deflate"), &DeflateConfig::default()).expect("accepted");
        let mut rx = Codec::new(Role::Server, params, &DeflateConfig::default());
        let mut out = BytesMut::new();
        let r = rx.decompress(
            &[0xff, 0xff, 0xff, 0xff],
            &mut out,
            1 << 20,
            &mut |_| Ok(()),
        );
        assert_eq!(r, Err(ProtocolError::InvalidCompressedData));
    }
}
