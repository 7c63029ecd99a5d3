//! [`Rooms`]: which connections are in which rooms, and the recipients of a broadcast.
//!
//! Sans-IO bookkeeping for plain WebSocket applications (the async layer's router keeps
//! one per server): members are any `K` (a connection id, or a handle that compares by
//! one). Each member is in at most [`Rooms::max_rooms_per_member`] rooms, so a peer
//! that makes the application join rooms cannot grow it without bound.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

/// Room membership, both ways: room → members and member → rooms.
#[derive(Clone)]
pub struct Rooms<K> {
    rooms: HashMap<Arc<str>, HashSet<K>>,
    of: HashMap<K, Vec<Arc<str>>>,
    max_per_member: usize,
}

impl<K> fmt::Debug for Rooms<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rooms")
            .field("rooms", &self.rooms.len())
            .field("members", &self.of.len())
            .finish()
    }
}

/// A member is already in as many rooms as it may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomLimit(pub usize);

impl fmt::Display for RoomLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "already in {} rooms, the most allowed", self.0)
    }
}

impl std::error::Error for RoomLimit {}

impl<K: Hash + Eq + Clone> Default for Rooms<K> {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl<K: Hash + Eq + Clone> Rooms<K> {
    /// No rooms; each member may be in at most `max_rooms_per_member`.
    pub fn new(max_rooms_per_member: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            of: HashMap::new(),
            max_per_member: max_rooms_per_member,
        }
    }

    /// The most rooms one member may be in.
    pub fn max_rooms_per_member(&self) -> usize {
        self.max_per_member
    }

    /// Puts `member` in `room`: `Ok(true)` if it was not in it yet.
    pub fn join(&mut self, member: &K, room: &str) -> Result<bool, RoomLimit> {
        let joined = self.of.get(member).map_or(&[][..], Vec::as_slice);
        if joined.iter().any(|r| &**r == room) {
            return Ok(false);
        }
        if joined.len() >= self.max_per_member {
            return Err(RoomLimit(self.max_per_member));
        }
        let name: Arc<str> = match self.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Arc::from(room),
        };
        self.rooms
            .entry(name.clone())
            .or_default()
            .insert(member.clone());
        self.of.entry(member.clone()).or_default().push(name);
        Ok(true)
    }

    /// Takes `member` out of `room`: whether it was in it. An emptied room is gone.
    pub fn leave(&mut self, member: &K, room: &str) -> bool {
        let Some(joined) = self.of.get_mut(member) else {
            return false;
        };
        let Some(at) = joined.iter().position(|r| &**r == room) else {
            return false;
        };
        joined.swap_remove(at);
        if joined.is_empty() {
            self.of.remove(member);
        }
        self.remove_from(room, member);
        true
    }

    /// Takes `member` out of every room: the rooms it was in.
    pub fn leave_all(&mut self, member: &K) -> Vec<Arc<str>> {
        let joined = self.of.remove(member).unwrap_or_default();
        for room in &joined {
            self.remove_from(room, member);
        }
        joined
    }

    fn remove_from(&mut self, room: &str, member: &K) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(member);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    /// The rooms `member` is in, in the order it joined them (until it leaves one).
    pub fn rooms_of(&self, member: &K) -> &[Arc<str>] {
        self.of.get(member).map_or(&[], Vec::as_slice)
    }

    /// The members of `room`.
    pub fn members(&self, room: &str) -> impl Iterator<Item = &K> {
        self.rooms.get(room).into_iter().flatten()
    }

    /// How many members `room` has.
    pub fn len_of(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, HashSet::len)
    }

    /// The names of the rooms that have members.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(|r| &**r)
    }

    /// Calls `each` once for every member of any of `rooms`, but `except`.
    pub fn for_each_in<S: AsRef<str>>(
        &self,
        rooms: &[S],
        except: Option<&K>,
        mut each: impl FnMut(&K),
    ) {
        match rooms {
            [] => {}
            [room] => {
                for m in self.members(room.as_ref()) {
                    if Some(m) != except {
                        each(m);
                    }
                }
            }
            _ => {
                let mut seen = HashSet::new();
                for room in rooms {
                    for m in self.members(room.as_ref()) {
                        if Some(m) != except && seen.insert(m) {
                            each(m);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_rooms(r: &Rooms<u32>, rooms: &[&str], except: Option<u32>) -> Vec<u32> {
        let mut out = Vec::new();
        r.for_each_in(rooms, except.as_ref(), |m| out.push(*m));
        out.sort_unstable();
        out
    }

    #[test]
    fn join_leave_and_select() {
        let mut r = Rooms::new(8);
        assert_eq!(r.join(&1, "a"), Ok(true));
        assert_eq!(r.join(&1, "a"), Ok(false));
        assert_eq!(r.join(&2, "a"), Ok(true));
        assert_eq!(r.join(&2, "b"), Ok(true));
        assert_eq!(r.join(&3, "b"), Ok(true));
        assert_eq!(in_rooms(&r, &["a"], None), [1, 2]);
        assert_eq!(in_rooms(&r, &["a", "b"], None), [1, 2, 3]);
        assert_eq!(in_rooms(&r, &["a", "b"], Some(2)), [1, 3]);
        assert_eq!(in_rooms(&r, &["a"], Some(1)), [2]);
        assert_eq!(in_rooms(&r, &["none"], None), Vec::<u32>::new());
        assert_eq!(r.len_of("b"), 2);
        assert!(r.leave(&2, "a"));
        assert!(!r.leave(&2, "a"));
        assert!(!r.leave(&9, "a"));
        assert_eq!(in_rooms(&r, &["a"], None), [1]);
        assert_eq!(
            r.rooms_of(&2).iter().map(|s| &**s).collect::<Vec<_>>(),
            ["b"]
        );
        assert_eq!(r.leave_all(&2).len(), 1);
        assert_eq!(r.leave_all(&2).len(), 0);
        assert!(r.leave(&1, "a"));
        let mut names: Vec<_> = r.names().collect();
        names.sort_unstable();
        assert_eq!(names, ["b"], "empty rooms are dropped");
        assert_eq!(r.rooms_of(&1), &[] as &[Arc<str>]);
    }

    #[test]
    fn rooms_per_member_are_bounded() {
        let mut r = Rooms::new(2);
        assert_eq!(r.join(&1, "a"), Ok(true));
        assert_eq!(r.join(&1, "b"), Ok(true));
        assert_eq!(r.join(&1, "c"), Err(RoomLimit(2)));
        assert_eq!(r.join(&1, "a"), Ok(false), "rejoining is not a new room");
        assert!(r.leave(&1, "a"));
        assert_eq!(r.join(&1, "c"), Ok(true));
        assert_eq!(r.max_rooms_per_member(), 2);
    }
}
