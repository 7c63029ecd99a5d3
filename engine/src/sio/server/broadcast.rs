//! Rooms and broadcast targeting: emits to one socket, to rooms and namespaces
//! (encoded once for every recipient), and room membership.

use super::recovery::stored_size;
use super::*;

impl Server {
    /// Emits an event to one socket.
    pub fn emit(
        &mut self,
        now: Instant,
        sid: &Sid,
        name: &str,
        payload: Payload,
    ) -> Result<(), Error> {
        let socket = self.sockets.get(sid).ok_or(Error::UnknownSocket)?;
        let nsp = socket.info.nsp.clone();
        if self.config.recovery.is_some() {
            // Stored like a broadcast to the socket's own room, so that it can be
            // replayed after a reconnection.
            let target = Broadcast::nsp(nsp)
                .to(Arc::<str>::from(sid.as_str()))
                .local();
            self.broadcast(now, &target, name, payload);
            return Ok(());
        }
        let session = socket.session.clone();
        self.send_args(&session, &nsp, None, Some(name), payload);
        Ok(())
    }

    /// The sockets a target reaches, in no particular order.
    pub(super) fn targets(&self, target: &Broadcast) -> Vec<Sid> {
        let mut out = Vec::new();
        visit_targets(&self.namespaces, target, |sid| out.push(sid.clone()));
        out
    }

    /// The namespaces `target` covers: its own, or every namespace that exists now.
    pub fn namespaces_of(&self, target: &Broadcast) -> Vec<Arc<str>> {
        match &target.nsp {
            Some(n) => vec![n.clone()],
            None => self.namespaces.keys().cloned().collect(),
        }
    }

    /// Emits an event to every socket `target` selects, encoding it once per namespace:
    /// every recipient gets the same bytes. Returns how many sockets it reached here.
    pub fn broadcast(
        &mut self,
        now: Instant,
        target: &Broadcast,
        name: &str,
        payload: Payload,
    ) -> usize {
        if self.config.cluster && !target.local {
            self.events
                .push_back(Event::Cluster(ClusterMessage::Broadcast {
                    target: target.clone(),
                    packet: Packet::event("/", name, payload.clone()),
                }));
        }
        self.broadcast_event(now, target, name, &payload, None)
    }

    /// [`broadcast`](Self::broadcast) of a ready packet (an event another server of the
    /// cluster sent); anything but an event reaches no one.
    pub(super) fn broadcast_packet(
        &mut self,
        now: Instant,
        target: &Broadcast,
        packet: Packet,
    ) -> usize {
        let id = packet.id;
        match packet.into_event() {
            Some((name, payload)) => self.broadcast_event(now, target, &name, &payload, id),
            None => 0,
        }
    }

    /// Sends event `name` to every local socket `target` selects, encoded once per
    /// namespace, asking for ack `id` if given.
    pub(super) fn broadcast_event(
        &mut self,
        now: Instant,
        target: &Broadcast,
        name: &str,
        payload: &Payload,
        id: Option<u64>,
    ) -> usize {
        let mut count = 0;
        for nsp in self.namespaces_of(target) {
            let per_nsp = Broadcast {
                nsp: Some(nsp.clone()),
                ..target.clone()
            };
            let store = self.config.recovery.is_some() && !target.volatile && id.is_none();
            let offset = store.then(|| self.next_offset());
            let messages = match &offset {
                // The offset to resume from rides as the last argument.
                Some(offset) => {
                    let mut with_offset = payload.clone();
                    with_offset.push(Value::String(offset.to_string()));
                    self.encode_event(&nsp, id, name, &with_offset)
                }
                None => self.encode_event(&nsp, id, name, payload),
            };
            let shared: Vec<SharedMessage> =
                messages.iter().cloned().map(SharedMessage::new).collect();
            if let Some(offset) = offset {
                self.store_bytes += stored_size(&messages);
                self.store.push_back(Stored {
                    offset,
                    at: now,
                    nsp: nsp.clone(),
                    rooms: target.rooms.clone(),
                    except: target.except.clone(),
                    messages: messages.clone(),
                });
                self.trim_store(now);
            }
            // Straight from the room's members: no list of targets, no id cloned.
            let Self {
                namespaces,
                sockets,
                acks,
                eio,
                ..
            } = self;
            if id.is_none() && !target.volatile {
                // The common case: the recipients' sessions, gathered a group at a
                // time, go to the Engine.IO server together (see `send_shared_to`).
                let sockets = &*sockets;
                let mut group = Vec::with_capacity(eio::SEND_GROUP);
                visit_targets(namespaces, &per_nsp, |sid| {
                    if let Some(socket) = sockets.get(sid) {
                        group.push(&socket.session);
                        count += 1;
                        if group.len() == eio::SEND_GROUP {
                            eio.send_shared_to(&group, &shared, target.compress);
                            group.clear();
                        }
                    }
                });
                eio.send_shared_to(&group, &shared, target.compress);
                continue;
            }
            visit_targets(namespaces, &per_nsp, |sid| {
                let Some(socket) = sockets.get_mut(sid) else {
                    return;
                };
                if let Some(id) = id {
                    socket.acks.insert(id);
                    if let Some(a) = acks.get_mut(&id) {
                        a.waiting.insert(sid.clone());
                    }
                }
                let session = &socket.session;
                if target.volatile && !eio.is_writable(session) {
                    return;
                }
                for m in &shared {
                    let _ = eio.send_shared(session, m, target.compress);
                }
                count += 1;
            });
        }
        count
    }

    /// Sockets `target` selects join `rooms` (`socketsJoin`).
    pub fn join_by(&mut self, target: &Broadcast, rooms: &[Room]) {
        if self.config.cluster && !target.local {
            self.events.push_back(Event::Cluster(ClusterMessage::Join {
                target: target.clone(),
                rooms: rooms.to_vec(),
            }));
        }
        for sid in self.targets(target) {
            let _ = self.join(&sid, rooms);
        }
    }

    /// Sockets `target` selects leave `rooms` (`socketsLeave`).
    pub fn leave_by(&mut self, target: &Broadcast, rooms: &[Room]) {
        if self.config.cluster && !target.local {
            self.events.push_back(Event::Cluster(ClusterMessage::Leave {
                target: target.clone(),
                rooms: rooms.to_vec(),
            }));
        }
        for sid in self.targets(target) {
            for room in rooms {
                let _ = self.leave(&sid, room);
            }
        }
    }

    /// Disconnects the sockets `target` selects (`disconnectSockets`).
    pub fn disconnect_by(&mut self, now: Instant, target: &Broadcast, close: bool) {
        if self.config.cluster && !target.local {
            self.events
                .push_back(Event::Cluster(ClusterMessage::Disconnect {
                    target: target.clone(),
                    close,
                }));
        }
        for sid in self.targets(target) {
            let _ = self.disconnect(now, &sid, close);
        }
    }

    /// A socket joins rooms (up to [`Config::max_rooms_per_socket`]: past it the rest
    /// are not joined and the answer is [`Error::TooManyRooms`]).
    pub fn join(&mut self, sid: &Sid, rooms: &[Room]) -> Result<(), Error> {
        let socket = self.sockets.get_mut(sid).ok_or(Error::UnknownSocket)?;
        let nsp = socket.info.nsp.clone();
        let namespace = self.namespaces.entry(nsp.clone()).or_default();
        let max = self.config.max_rooms_per_socket;
        // Rooms created are only collected for `Event::Room`.
        let track = self.room_events;
        let mut created = Vec::new();
        let mut joined = Vec::new();
        let mut result = Ok(());
        for room in rooms {
            let own = **room == *sid.as_str();
            let in_own = !namespace.left_own.contains(sid);
            if (own && in_own) || socket.rooms.contains(room) {
                continue;
            }
            // Its own room counts while it is in it.
            if socket.rooms.len() + usize::from(in_own) >= max {
                result = Err(Error::TooManyRooms);
                break;
            }
            if own {
                // Back in its own room: implied again.
                namespace.left_own.remove(sid);
                if track && !namespace.rooms.contains_key(&**room) {
                    created.push(sid.room());
                }
            } else {
                let (room, made) = namespace.add_member(room, sid);
                if made && track {
                    created.push(room.clone());
                }
                socket.rooms.insert(room);
            }
            if self.activity_events {
                joined.push(room.clone());
            }
        }
        for room in &created {
            self.room_changed(&nsp, room, true);
        }
        for room in joined {
            self.activity(Activity::Joined {
                sid: sid.clone(),
                nsp: nsp.clone(),
                room,
            });
        }
        result
    }

    /// A socket leaves a room.
    pub fn leave(&mut self, sid: &Sid, room: &str) -> Result<(), Error> {
        let socket = self.sockets.get_mut(sid).ok_or(Error::UnknownSocket)?;
        let nsp = socket.info.nsp.clone();
        let mut deleted = None;
        let mut left = None;
        if let Some(namespace) = self.namespaces.get_mut(&nsp) {
            if room == sid.as_str() {
                // Its own room: left by being noted, as it has no entry.
                if namespace.left_own.insert(sid.clone()) {
                    left = Some(sid.room());
                    if !namespace.rooms.contains_key(room) {
                        deleted = left.clone();
                    }
                }
            } else {
                left = socket.rooms.take(room);
                if left.is_some() {
                    deleted = namespace.remove_member(room, sid);
                }
            }
        }
        if let Some(room) = deleted {
            self.room_changed(&nsp, &room, false);
        }
        if let Some(room) = left {
            self.activity(Activity::Left {
                sid: sid.clone(),
                nsp,
                room,
            });
        }
        Ok(())
    }
}

/// Calls `f` once for every socket `target` reaches in `namespaces`, in no particular
/// order.
fn visit_targets<'a>(
    namespaces: &'a HashMap<Arc<str>, Namespace>,
    target: &Broadcast,
    mut f: impl FnMut(&'a Sid),
) {
    let mut visit = |nsp: &'a Namespace| {
        let except: crate::IdSet<&Sid> = (target.except.iter())
            .flat_map(|r| nsp.members(r))
            .collect();
        if target.rooms.is_empty() {
            nsp.sockets
                .iter()
                .filter(|s| !except.contains(s))
                .for_each(&mut f);
        } else if target.rooms.len() == 1 {
            (nsp.members(&target.rooms[0]))
                .filter(|s| !except.contains(s))
                .for_each(&mut f);
        } else {
            let mut seen = crate::IdSet::default();
            for s in target.rooms.iter().flat_map(|r| nsp.members(r)) {
                if !except.contains(s) && seen.insert(s) {
                    f(s);
                }
            }
        }
    };
    match &target.nsp {
        Some(name) => {
            if let Some(nsp) = namespaces.get(name) {
                visit(nsp);
            }
        }
        None => namespaces.values().for_each(visit),
    }
}
