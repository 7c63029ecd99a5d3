//! Redis Cluster's key space: the hash slot of a key (or sharded channel), and the
//! map of slots to nodes that `CLUSTER SLOTS` answers, so that a driver sends each
//! `SPUBLISH`/`SSUBSCRIBE` to the node that serves its channel.

use super::resp::Reply;

/// How many hash slots a Redis Cluster has.
pub const SLOTS: u16 = 16384;

/// The hash slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag (what is
/// between the first `{` and the next `}`, when that is not empty), modulo
/// [`SLOTS`].
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Slots `start..=end`, served by the primary at `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRange {
    /// The first slot.
    pub start: u16,
    /// The last slot.
    pub end: u16,
    /// The primary's host (the address it announces).
    pub host: String,
    /// The primary's port.
    pub port: u16,
}

/// Reads a `CLUSTER SLOTS` reply. A primary announced with an empty host (or `?`) is
/// on `asked`, the host the question went to, as Redis means it.
pub fn parse_slots(reply: &Reply, asked: &str) -> Result<Vec<SlotRange>, String> {
    let Reply::Array(Some(entries)) = reply else {
        return Err(match reply {
            Reply::Error(e) => format!("CLUSTER SLOTS failed: {e}"),
            _ => "CLUSTER SLOTS: not an array".into(),
        });
    };
    let mut ranges = Vec::with_capacity(entries.len());
    for entry in entries {
        let Reply::Array(Some(fields)) = entry else {
            return Err("CLUSTER SLOTS: an entry is not an array".into());
        };
        let slot = |i: usize| {
            fields
                .get(i)
                .and_then(Reply::as_int)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n < SLOTS)
                .ok_or_else(|| "CLUSTER SLOTS: bad slot number".to_owned())
        };
        let (start, end) = (slot(0)?, slot(1)?);
        if start > end {
            return Err("CLUSTER SLOTS: a range ends before it starts".into());
        }
        let Some(Reply::Array(Some(primary))) = fields.get(2) else {
            return Err("CLUSTER SLOTS: a range without its primary".into());
        };
        let host = primary
            .first()
            .and_then(Reply::as_bytes)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or("CLUSTER SLOTS: the primary has no host")?;
        let host = match host {
            "" | "?" => asked,
            h => h,
        };
        let port = primary
            .get(1)
            .and_then(Reply::as_int)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0)
            .ok_or("CLUSTER SLOTS: the primary has no port")?;
        ranges.push(SlotRange {
            start,
            end,
            host: host.to_owned(),
            port,
        });
    }
    Ok(ranges)
}

/// Where a `-MOVED slot host:port` or `-ASK slot host:port` error says to go.
pub fn redirect(error: &str) -> Option<(u16, &str)> {
    let mut words = error.split(' ');
    let kind = words.next()?;
    if kind != "MOVED" && kind != "ASK" {
        return None;
    }
    let slot = words.next()?.parse().ok().filter(|&s| s < SLOTS)?;
    Some((slot, words.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn slots_are_redis_s() {
        // What `CLUSTER KEYSLOT` answers (checked against redis-server 7.0).
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"somekey"), 11058);
        // A hash tag: only what is inside the first braces counts.
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b""), 0);
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn reads_the_slot_map() {
        let reply = Reply::Array(Some(vec![
            Reply::Array(Some(vec![
                Reply::Int(0),
                Reply::Int(5460),
                Reply::Array(Some(vec![bulk("10.0.0.1"), Reply::Int(7000), bulk("id")])),
                Reply::Array(Some(vec![bulk("10.0.0.4"), Reply::Int(7003), bulk("r")])),
            ])),
            Reply::Array(Some(vec![
                Reply::Int(5461),
                Reply::Int(16383),
                Reply::Array(Some(vec![bulk(""), Reply::Int(7001)])),
            ])),
        ]));
        assert_eq!(
            parse_slots(&reply, "seed"),
            Ok(vec![
                SlotRange {
                    start: 0,
                    end: 5460,
                    host: "10.0.0.1".into(),
                    port: 7000
                },
                SlotRange {
                    start: 5461,
                    end: 16383,
                    host: "seed".into(),
                    port: 7001
                },
            ])
        );
        let bad = Reply::Array(Some(vec![Reply::Array(Some(vec![
            Reply::Int(0),
            Reply::Int(16384),
        ]))]));
        assert!(parse_slots(&bad, "seed").is_err());
        assert!(parse_slots(&Reply::Error("ERR cluster support disabled".into()), "s").is_err());
    }

    #[test]
    fn reads_redirections() {
        assert_eq!(
            redirect("MOVED 3999 127.0.0.1:6381"),
            Some((3999, "127.0.0.1:6381"))
        );
        assert_eq!(redirect("ASK 1 h:1"), Some((1, "h:1")));
        assert_eq!(redirect("ERR unknown"), None);
        assert_eq!(redirect("MOVED 99999 h:1"), None);
    }
}
