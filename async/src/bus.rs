//! An in-process publish/subscribe bus that answers a cluster's connections as Redis
//! would: the servers of one process (the shards of a sharded server) form a cluster
//! over it with the same adapter, the same messages and the same forwarding as over
//! Redis, without a Redis and without a socket.
//!
//! It carries out the commands the cluster sends — `SUBSCRIBE`, `PSUBSCRIBE`,
//! `SSUBSCRIBE` and their `UN…` forms, `PUBLISH`, `SPUBLISH`, `PUBSUB NUMSUB` and
//! `PUBSUB SHARDNUMSUB` — at the moment they are sent; the replies and the messages
//! for a member wait in its inbox until that member's own task takes them, on its own
//! thread. An inbox holds at most [`MAX_INBOX`] bytes of messages: beyond that a
//! message for it is dropped and counted as not delivered (Redis would cut such a
//! subscriber off).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use wirestate_engine::redis::resp::Reply;

/// Most bytes of messages waiting in one member's inbox.
pub const MAX_INBOX: usize = 64 << 20;

/// An in-process stand-in for Redis's publish/subscribe, shared by the servers of one
/// process (see [`attach_local`](crate::sio::attach_local)). Cheap to clone: every
/// clone is the same bus.
#[derive(Clone, Default)]
pub struct LocalBus {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBus")
            .field("members", &lock(&self.state).members.len())
            .finish()
    }
}

#[derive(Default)]
struct State {
    members: HashMap<u64, Member>,
    next: u64,
}

#[derive(Default)]
struct Member {
    channels: HashSet<Bytes>,
    patterns: Vec<Bytes>,
    shard_channels: HashSet<Bytes>,
    inbox: VecDeque<Reply>,
    queued: usize,
    waker: Option<Waker>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn bulk(bytes: &[u8]) -> Reply {
    Reply::Bulk(Some(Bytes::copy_from_slice(bytes)))
}

impl LocalBus {
    /// A bus with no members.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new member (one logical connection); its id.
    pub(crate) fn join(&self) -> u64 {
        let mut s = lock(&self.state);
        s.next += 1;
        let id = s.next;
        s.members.insert(id, Member::default());
        id
    }

    /// The member is gone, and so are its subscriptions and inbox.
    pub(crate) fn leave(&self, id: u64) {
        lock(&self.state).members.remove(&id);
    }

    /// Takes what waits in `id`'s inbox; `waker` is woken when more arrives.
    pub(crate) fn take_inbox(&self, id: u64, waker: &Waker) -> VecDeque<Reply> {
        let mut s = lock(&self.state);
        let Some(m) = s.members.get_mut(&id) else {
            return VecDeque::new();
        };
        if !m.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            m.waker = Some(waker.clone());
        }
        m.queued = 0;
        std::mem::take(&mut m.inbox)
    }

    /// Carries out `args` (a command, as sent to Redis) for member `id`; its reply.
    pub(crate) fn execute<A: AsRef<[u8]>>(&self, id: u64, args: &[A]) -> Reply {
        let Some((verb, rest)) = args.split_first() else {
            return Reply::Error("ERR empty command".into());
        };
        let verb = verb.as_ref().to_ascii_uppercase();
        let rest: Vec<&[u8]> = rest.iter().map(AsRef::as_ref).collect();
        let mut s = lock(&self.state);
        match (verb.as_slice(), rest.as_slice()) {
            (b"PUBLISH", [channel, payload]) => Reply::Int(s.publish(channel, payload, false)),
            (b"SPUBLISH", [channel, payload]) => Reply::Int(s.publish(channel, payload, true)),
            (b"PUBSUB", [what, channels @ ..]) => {
                let sharded = match what.to_ascii_uppercase().as_slice() {
                    b"NUMSUB" => false,
                    b"SHARDNUMSUB" => true,
                    _ => return Reply::Error("ERR unknown PUBSUB subcommand".into()),
                };
                let mut items = Vec::with_capacity(channels.len() * 2);
                for c in channels {
                    let count = (s.members.values())
                        .filter(|m| {
                            if sharded {
                                m.shard_channels.contains(*c)
                            } else {
                                m.channels.contains(*c)
                            }
                        })
                        .count();
                    items.push(bulk(c));
                    items.push(Reply::Int(i64::try_from(count).unwrap_or(i64::MAX)));
                }
                Reply::Array(Some(items))
            }
            (b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE", names) if !names.is_empty() => {
                let Some(m) = s.members.get_mut(&id) else {
                    return Reply::Error("ERR closed".into());
                };
                for name in names {
                    let name = Bytes::copy_from_slice(name);
                    match verb.as_slice() {
                        b"SUBSCRIBE" => {
                            m.channels.insert(name);
                        }
                        b"SSUBSCRIBE" => {
                            m.shard_channels.insert(name);
                        }
                        _ => {
                            if !m.patterns.contains(&name) {
                                m.patterns.push(name);
                            }
                        }
                    }
                }
                Reply::Status("OK".into())
            }
            (b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" | b"SUNSUBSCRIBE", names) => {
                let Some(m) = s.members.get_mut(&id) else {
                    return Reply::Error("ERR closed".into());
                };
                let all = names.is_empty();
                match verb.as_slice() {
                    b"UNSUBSCRIBE" => m.channels.retain(|c| !all && !names.contains(&&c[..])),
                    b"SUNSUBSCRIBE" => m
                        .shard_channels
                        .retain(|c| !all && !names.contains(&&c[..])),
                    _ => m.patterns.retain(|p| !all && !names.contains(&&p[..])),
                }
                Reply::Status("OK".into())
            }
            (b"PING", _) => Reply::Status("PONG".into()),
            _ => Reply::Error(format!(
                "ERR unknown command or arguments '{}'",
                String::from_utf8_lossy(&verb)
            )),
        }
    }
}

impl State {
    /// Delivers `payload` to every subscription that matches `channel`; how many took
    /// it.
    fn publish(&mut self, channel: &[u8], payload: &[u8], sharded: bool) -> i64 {
        let payload = Bytes::copy_from_slice(payload);
        let channel = Bytes::copy_from_slice(channel);
        let mut delivered = 0i64;
        for m in self.members.values_mut() {
            let mut pushes = Vec::new();
            if sharded {
                if m.shard_channels.contains(&channel) {
                    pushes.push(Reply::Array(Some(vec![
                        bulk(b"smessage"),
                        Reply::Bulk(Some(channel.clone())),
                        Reply::Bulk(Some(payload.clone())),
                    ])));
                }
            } else {
                if m.channels.contains(&channel) {
                    pushes.push(Reply::Array(Some(vec![
                        bulk(b"message"),
                        Reply::Bulk(Some(channel.clone())),
                        Reply::Bulk(Some(payload.clone())),
                    ])));
                }
                for p in m.patterns.iter().filter(|p| glob(p, &channel)) {
                    pushes.push(Reply::Array(Some(vec![
                        bulk(b"pmessage"),
                        Reply::Bulk(Some(p.clone())),
                        Reply::Bulk(Some(channel.clone())),
                        Reply::Bulk(Some(payload.clone())),
                    ])));
                }
            }
            let mut took = false;
            for push in pushes {
                if m.queued + payload.len() > MAX_INBOX {
                    tracing::warn!(
                        channel = %String::from_utf8_lossy(&channel),
                        "a member of the in-process bus is too far behind: message dropped"
                    );
                    continue;
                }
                m.queued += payload.len();
                m.inbox.push_back(push);
                delivered += 1;
                took = true;
            }
            if took {
                if let Some(w) = m.waker.take() {
                    w.wake();
                }
            }
        }
        delivered
    }
}

/// Whether `text` matches the glob `pattern` as Redis matches channel patterns: `*`
/// any run, `?` one byte, `[abc]`, `[^a]`, `[a-z]`, and `\` quoting the next byte.
pub(crate) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative, with one backtracking point for the last `*` (linear in practice,
    // never recursive: patterns come from the application, channels from peers).
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        // An unclosed class is a literal `[`.
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The class `[...]` opening at `pattern[open]`: whether `c` is in it, and where the
/// pattern goes on after it; `None` if it is never closed.
fn class(pattern: &[u8], open: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let b = *pattern.get(i)?;
        if b == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let lo = if b == b'\\' {
            i += 1;
            *pattern.get(i)?
        } else {
            b
        };
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = pattern[i + 2];
            let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_redis_matches_channel_patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("socket.io#/#*", "socket.io#/#", true),
            ("socket.io#/#*", "socket.io#/#room#", true),
            ("socket.io#/#*", "socket.io#/chat#", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-c]llo", "hbllo", true),
            ("h[a-c]llo", "hdllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("[", "[", true),
            ("*", "", true),
            ("", "x", false),
            ("**a", "ba", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                glob(pattern.as_bytes(), text.as_bytes()),
                *want,
                "{pattern} ~ {text}"
            );
        }
    }

    fn strings(reply: &Reply) -> Vec<String> {
        match reply {
            Reply::Array(Some(items)) => items
                .iter()
                .map(|i| match i {
                    Reply::Int(n) => n.to_string(),
                    other => String::from_utf8_lossy(other.as_bytes().unwrap_or(b"?")).into(),
                })
                .collect(),
            other => panic!("not an array: {other:?}"),
        }
    }

    #[test]
    fn publish_reaches_channel_and_pattern_subscribers_and_counts_them() {
        let bus = LocalBus::new();
        let (a, b, publisher) = (bus.join(), bus.join(), bus.join());
        bus.execute(a, &["SUBSCRIBE", "news"]);
        bus.execute(b, &["PSUBSCRIBE", "ne*"]);
        bus.execute(b, &["SSUBSCRIBE", "shard"]);
        let waker = Waker::noop();
        let _ = bus.take_inbox(a, waker);
        assert_eq!(
            bus.execute(publisher, &["PUBLISH", "news", "hi"]),
            Reply::Int(2)
        );
        assert_eq!(
            bus.execute(publisher, &["PUBLISH", "other", "x"]),
            Reply::Int(0)
        );
        assert_eq!(
            bus.execute(publisher, &["SPUBLISH", "shard", "s"]),
            Reply::Int(1)
        );
        let got: Vec<_> = bus.take_inbox(a, waker).iter().map(strings).collect();
        assert_eq!(got, vec![vec!["message", "news", "hi"]]);
        let got: Vec<_> = bus.take_inbox(b, waker).iter().map(strings).collect();
        assert_eq!(
            got,
            vec![
                vec!["pmessage", "ne*", "news", "hi"],
                vec!["smessage", "shard", "s"]
            ]
        );
        let count = bus.execute(publisher, &["PUBSUB", "NUMSUB", "news", "none"]);
        assert_eq!(strings(&count), vec!["news", "1", "none", "0"]);
        let count = bus.execute(publisher, &["PUBSUB", "SHARDNUMSUB", "shard"]);
        assert_eq!(strings(&count), vec!["shard", "1"]);
        bus.execute(a, &["UNSUBSCRIBE", "news"]);
        bus.leave(b);
        assert_eq!(
            bus.execute(publisher, &["PUBLISH", "news", "hi"]),
            Reply::Int(0)
        );
        assert!(matches!(bus.execute(a, &["GET", "k"]), Reply::Error(_)));
    }

    #[test]
    fn a_full_inbox_drops_what_it_cannot_hold() {
        let bus = LocalBus::new();
        let (a, publisher) = (bus.join(), bus.join());
        bus.execute(a, &["SUBSCRIBE", "c"]);
        let big = vec![0u8; MAX_INBOX / 2 + 1];
        let publish = |p: &[u8]| bus.execute(publisher, &[&b"PUBLISH"[..], b"c", p]);
        assert_eq!(publish(&big), Reply::Int(1));
        assert_eq!(publish(&big), Reply::Int(0));
        assert_eq!(bus.take_inbox(a, Waker::noop()).len(), 1);
        assert_eq!(publish(&big), Reply::Int(1));
    }
}
