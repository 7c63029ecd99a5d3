//! Frame headers (RFC 6455 §5.2) and a push decoder for a stream of frames.
//!
//! The decoder never buffers payload: it hands out each piece of payload as it arrives,
//! still masked, with its offset in the frame. The connection copies it where it belongs
//! (the message being assembled, or a small control buffer) and unmasks it there. The
//! only state kept between reads is a partial header of at most 14 bytes.

use bytes::BufMut;

use super::error::ProtocolError;

/// A frame opcode. Reserved opcodes are rejected by the decoder, so this is a closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The opcode for the low four bits of the first header byte.
    pub const fn from_u8(bits: u8) -> Result<Self, ProtocolError> {
        Ok(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xa => Self::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// The wire value.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xa,
        }
    }

    /// Close, Ping and Pong.
    pub const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// The largest possible frame header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the last frame of its message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as the bits 0b100, 0b010, 0b001.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` if `buf` holds only part of a header, otherwise the header and
    /// its length in bytes. Checks everything that can be checked on a header alone:
    /// reserved opcodes, and the rules for control frames (FIN set, at most 125 bytes).
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let opcode = OpCode::from_u8(b0 & 0x0f)?;
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x07;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut pos) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(b);
                    let len = u64::from_be_bytes(raw);
                    if len >> 63 != 0 {
                        return Err(ProtocolError::InvalidLength);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            match buf.get(pos..pos + 4) {
                Some(k) => {
                    pos += 4;
                    Some([k[0], k[1], k[2], k[3]])
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if payload_len > 125 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        }
        Ok(Some((
            Self {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// The encoded length of this header.
    pub const fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        if self.mask.is_some() {
            len + 4
        } else {
            len
        }
    }

    /// Appends the encoded header (with the shortest length encoding) to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        let b0 = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        out.put_u8(b0);
        match self.payload_len {
            n @ 0..=125 => out.put_u8(mask_bit | n as u8),
            n @ 126..=0xffff => {
                out.put_u8(mask_bit | 126);
                out.put_u16(n as u16);
            }
            n => {
                out.put_u8(mask_bit | 127);
                out.put_u64(n);
            }
        }
        if let Some(key) = self.mask {
            out.put_slice(&key);
        }
    }
}

/// What the decoder found next in the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A complete frame header. Payload pieces (if any) and [`Item::FrameEnd`] follow.
    Header(FrameHeader),
    /// A piece of the current frame's payload, as it is on the wire (still masked).
    Payload {
        /// The bytes.
        data: &'a [u8],
        /// Where `data` starts within the frame's payload (for unmasking).
        offset: u64,
    },
    /// The current frame is complete.
    FrameEnd,
}

/// A push decoder over a stream of frames.
///
/// Feed it input with [`FrameDecoder::decode`] until it returns `Ok(None)` (it needs
/// more bytes; everything given so far was consumed). Errors are for the header only;
/// semantic checks (masking required by role, RSV bits, fragmentation, sizes) belong to
/// the caller, which knows the negotiated state.
#[derive(Clone, Debug, Default)]
pub struct FrameDecoder {
    at: At,
}

/// Where a [`FrameDecoder`] is: in a header (gathered across reads when split) or in a
/// payload. One or the other, so they share their space.
#[derive(Clone, Debug)]
enum At {
    /// A header: the first `have` bytes of it so far.
    Header { have: u8, buf: [u8; MAX_HEADER_LEN] },
    /// The payload of a frame: its length and the bytes read so far.
    Payload { len: u64, read: u64 },
}

impl At {
    /// At a frame boundary: no byte of the next header yet.
    const BOUNDARY: Self = Self::Header {
        have: 0,
        buf: [0; MAX_HEADER_LEN],
    };

    /// At the start of the payload of a frame with this header.
    fn payload(header: &FrameHeader) -> Self {
        Self::Payload {
            len: header.payload_len,
            read: 0,
        }
    }
}

impl Default for At {
    fn default() -> Self {
        Self::BOUNDARY
    }
}

impl FrameDecoder {
    /// A decoder at a frame boundary.
    pub const fn new() -> Self {
        Self { at: At::BOUNDARY }
    }

    /// Whether the decoder is between frames (no partial header or payload pending).
    pub const fn is_at_boundary(&self) -> bool {
        matches!(self.at, At::Header { have: 0, .. })
    }

    /// Decodes the next item from `input`, advancing `input` past what was consumed.
    pub fn decode<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<Item<'a>>, ProtocolError> {
        let (have, buf) = match &mut self.at {
            At::Payload { len, read } => {
                let (len, offset) = (*len, *read);
                if offset == len {
                    *self = Self::new();
                    return Ok(Some(Item::FrameEnd));
                }
                if input.is_empty() {
                    return Ok(None);
                }
                let take =
                    usize::try_from(len - offset).map_or(input.len(), |left| left.min(input.len()));
                let (data, rest) = input.split_at(take);
                *input = rest;
                *read = offset + take as u64;
                return Ok(Some(Item::Payload { data, offset }));
            }
            At::Header { have, buf } => (have, buf),
        };
        if *have == 0 {
            // Fast path: the whole header is in `input`.
            if let Some((header, used)) = FrameHeader::parse(input)? {
                *input = &input[used..];
                self.at = At::payload(&header);
                return Ok(Some(Item::Header(header)));
            }
        }
        // Slow path: gather the header byte by byte across reads.
        while !input.is_empty() {
            let n = usize::from(*have);
            buf[n] = input[0];
            *input = &input[1..];
            *have += 1;
            if let Some((header, used)) = FrameHeader::parse(&buf[..n + 1])? {
                debug_assert_eq!(used, n + 1);
                self.at = At::payload(&header);
                return Ok(Some(Item::Header(header)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(mut input: &[u8]) -> Vec<String> {
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        while let Some(item) = d.decode(&mut input).expect("valid") {
            out.push(match item {
                Item::Header(h) => format!("H{:?}/{}", h.opcode, h.payload_len),
                Item::Payload { data, offset } => format!("P{}@{}", data.len(), offset),
                Item::FrameEnd => "E".into(),
            });
        }
        out
    }

    #[test]
    fn every_length_encoding_round_trips() {
        for len in [0u64, 1, 125, 126, 127, 0xffff, 0x10000, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = FrameHeader {
                    fin: true,
                    rsv: 0,
                    opcode: OpCode::Binary,
                    mask,
                    payload_len: len,
                };
                let mut buf = bytes::BytesMut::new();
                h.encode(&mut buf);
                assert_eq!(buf.len(), h.encoded_len());
                assert_eq!(FrameHeader::parse(&buf), Ok(Some((h, buf.len()))));
                for cut in 0..buf.len() {
                    assert_eq!(
                        FrameHeader::parse(&buf[..cut]),
                        Ok(None),
                        "len {len} cut {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn header_faults() {
        assert_eq!(
            FrameHeader::parse(&[0x83, 0]),
            Err(ProtocolError::ReservedOpcode(3))
        );
        assert_eq!(
            FrameHeader::parse(&[0x8b, 0]),
            Err(ProtocolError::ReservedOpcode(0xb))
        );
        assert_eq!(
            FrameHeader::parse(&[0x09, 0]),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 126, 0, 126]),
            Err(ProtocolError::ControlFrameTooLong)
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(FrameHeader::parse(&huge), Err(ProtocolError::InvalidLength));
    }

    #[test]
    fn stream_of_frames_in_one_and_in_single_bytes() {
        let wire = [0x81, 0x02, b'h', b'i', 0x89, 0x00, 0x80, 0x01, 0xff];
        let expected = [
            "HText/2",
            "P2@0",
            "E",
            "HPing/0",
            "E",
            "HContinuation/1",
            "P1@0",
            "E",
        ];
        assert_eq!(decode_all(&wire), expected);
        let mut d = FrameDecoder::new();
        let mut items = Vec::new();
        for byte in wire.chunks(1) {
            let mut input = byte;
            while let Some(item) = d.decode(&mut input).expect("valid") {
                items.push(item.clone_shape());
            }
        }
        assert_eq!(
            items,
            [
                "HText/2",
                "P1@0",
                "P1@1",
                "E",
                "HPing/0",
                "E",
                "HContinuation/1",
                "P1@0",
                "E"
            ]
        );
    }

    impl Item<'_> {
        fn clone_shape(&self) -> String {
            match self {
                Item::Header(h) => format!("H{:?}/{}", h.opcode, h.payload_len),
                Item::Payload { data, offset } => format!("P{}@{}", data.len(), offset),
                Item::FrameEnd => "E".into(),
            }
        }
    }
}
