//! Compressed response bodies (`Content-Encoding: gzip` / `deflate`), chosen from the
//! request's `Accept-Encoding` the way Node's `accepts`/`negotiator` choose.

use bytes::Bytes;
use std::io::Write;

/// A content coding this crate can apply to a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentCoding {
    /// `gzip` (RFC 1952).
    Gzip,
    /// `deflate`: the zlib format (RFC 1950), as browsers and Node's `zlib` mean it.
    Deflate,
}

impl ContentCoding {
    /// The token for `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
        }
    }

    /// The coding to use for a client that sent `accept_encoding`, among gzip and
    /// deflate (preferred in that order): the one with the highest quality, a tie going
    /// to the one listed first in the header; an explicit entry beats `*`; `q=0`
    /// refuses. `None` when the header is missing or accepts neither (then the body
    /// goes as it is, which `identity` always allows).
    pub fn negotiate(accept_encoding: Option<&str>) -> Option<Self> {
        let header = accept_encoding?;
        // (quality in thousandths, specificity, position in the header) per coding.
        let mut best: [Option<(u16, u8, usize)>; 2] = [None, None];
        for (pos, entry) in header.split(',').enumerate() {
            let mut parts = entry.split(';');
            let token = parts.next().unwrap_or("").trim();
            let mut q = 1000u16;
            for param in parts {
                let Some((k, v)) = param.split_once('=') else {
                    continue;
                };
                if k.trim().eq_ignore_ascii_case("q") {
                    q = parse_qvalue(v.trim()).unwrap_or(0);
                }
            }
            let (targets, specificity): (&[usize], u8) = if token == "*" {
                (&[0, 1], 0)
            } else if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
                (&[0], 1)
            } else if token.eq_ignore_ascii_case("deflate") {
                (&[1], 1)
            } else {
                continue;
            };
            for &i in targets {
                // The most specific entry that names a coding decides for it.
                let replace = match best[i] {
                    None => true,
                    Some((_, s, _)) => specificity > s,
                };
                if replace {
                    best[i] = Some((q, specificity, pos));
                }
            }
        }
        let codings = [Self::Gzip, Self::Deflate];
        let mut chosen: Option<(Self, (u16, u8, usize))> = None;
        for (coding, rank) in codings.into_iter().zip(best) {
            let Some(rank) = rank.filter(|r| r.0 > 0) else {
                continue;
            };
            let better = match chosen {
                None => true,
                // Higher quality, then more specific, then earlier in the header; a full
                // tie keeps the earlier of gzip, deflate.
                Some((_, c)) => {
                    (rank.0, rank.1, std::cmp::Reverse(rank.2)) > (c.0, c.1, std::cmp::Reverse(c.2))
                }
            };
            if better {
                chosen = Some((coding, rank));
            }
        }
        chosen.map(|(coding, _)| coding)
    }

    /// `body` compressed at `level` (0–9).
    pub fn encode(self, body: &[u8], level: u32) -> Bytes {
        let level = flate2::Compression::new(level.min(9));
        let out = Vec::with_capacity(body.len() / 2 + 64);
        let written = match self {
            Self::Gzip => {
                let mut z = flate2::write::GzEncoder::new(out, level);
                z.write_all(body).and_then(|()| z.finish())
            }
            Self::Deflate => {
                let mut z = flate2::write::ZlibEncoder::new(out, level);
                z.write_all(body).and_then(|()| z.finish())
            }
        };
        // Writing into a Vec cannot fail.
        Bytes::from(written.unwrap_or_default())
    }
}

/// An RFC 9110 qvalue (`0`, `0.5`, `1.000`) in thousandths.
fn parse_qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    Some((whole + thousandths).min(1000))
}

#[cfg(test)]
mod tests {
    use super::ContentCoding::{self, Deflate, Gzip};
    use std::io::Read;

    #[test]
    fn negotiation_follows_quality_then_order() {
        let n = ContentCoding::negotiate;
        assert_eq!(n(None), None);
        assert_eq!(n(Some("")), None);
        assert_eq!(n(Some("identity")), None);
        assert_eq!(n(Some("br")), None);
        assert_eq!(n(Some("gzip, deflate, br, zstd")), Some(Gzip));
        assert_eq!(n(Some("deflate, gzip")), Some(Deflate));
        assert_eq!(n(Some("gzip;q=0.5, deflate")), Some(Deflate));
        assert_eq!(n(Some("gzip;q=0, deflate;q=0")), None);
        assert_eq!(n(Some("GZIP;Q=0.8")), Some(Gzip));
        assert_eq!(n(Some("*")), Some(Gzip));
        assert_eq!(n(Some("*;q=0.5, deflate")), Some(Deflate));
        assert_eq!(n(Some("gzip;q=0, *")), Some(Deflate));
        assert_eq!(n(Some("gzip;q=2")), None, "an invalid qvalue refuses");
        assert_eq!(n(Some("deflate;q=0.001")), Some(Deflate));
    }

    #[test]
    fn encoded_bodies_decode_to_the_original() {
        let body = "a quite repetitive body, ".repeat(100);
        let mut out = String::new();
        let z = Gzip.encode(body.as_bytes(), 6);
        assert!(z.len() < body.len() / 4);
        flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut out)
            .expect("gzip");
        assert_eq!(out, body);
        out.clear();
        let z = Deflate.encode(body.as_bytes(), 6);
        flate2::read::ZlibDecoder::new(&z[..])
            .read_to_string(&mut out)
            .expect("zlib");
        assert_eq!(out, body);
    }
}
