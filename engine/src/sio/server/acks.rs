//! Acknowledgements: emits that wait for the client's ack, one socket's or a whole
//! broadcast's, their timeouts, and the acks the application sends.

use super::*;

impl Server {
    /// Emits an event to one socket and waits for its ack: answered by
    /// [`Event::Ack`] then [`Event::AckDone`] (also on timeout or disconnection).
    pub fn emit_with_ack(
        &mut self,
        now: Instant,
        sid: &Sid,
        name: &str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Result<AckId, Error> {
        if !self.sockets.contains_key(sid) {
            return Err(Error::UnknownSocket);
        }
        let nsp = self.sockets.get(sid).map(|s| s.info.nsp.clone());
        let mut target = Broadcast::nsp(nsp.unwrap_or_else(|| Arc::from("/")));
        target.rooms.push(sid.room());
        target.local = true;
        Ok(self.broadcast_with_ack(now, &target, name, payload, timeout))
    }

    /// Answers a client's event that asked for an ack.
    pub fn ack(&mut self, sid: &Sid, id: u64, payload: Payload) -> Result<(), Error> {
        let socket = self.sockets.get(sid).ok_or(Error::UnknownSocket)?;
        let session = socket.session.clone();
        let nsp = socket.info.nsp.clone();
        self.send_args(&session, &nsp, Some(id), None, payload);
        Ok(())
    }

    /// Emits an event to every socket `target` selects and collects their acks
    /// (local sockets only): one [`Event::Ack`] per socket, then [`Event::AckDone`] once
    /// all have answered, or at `timeout` (the rest get [`AckError::Timeout`]).
    pub fn broadcast_with_ack(
        &mut self,
        now: Instant,
        target: &Broadcast,
        name: &str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> AckId {
        self.broadcast_event_with_ack(now, target, name, &payload, timeout)
    }

    /// [`broadcast_with_ack`](Self::broadcast_with_ack) of a ready packet (an event
    /// another server of the cluster sent).
    pub fn broadcast_packet_with_ack(
        &mut self,
        now: Instant,
        target: &Broadcast,
        packet: Packet,
        timeout: Option<Duration>,
    ) -> AckId {
        let Some((name, payload)) = packet.into_event() else {
            // Not an event: it reaches no one, and its acks are all in at once.
            let id = self.next_ack;
            self.next_ack += 1;
            self.events.push_back(Event::AckDone { ack: AckId(id) });
            return AckId(id);
        };
        self.broadcast_event_with_ack(now, target, &name, &payload, timeout)
    }

    fn broadcast_event_with_ack(
        &mut self,
        now: Instant,
        target: &Broadcast,
        name: &str,
        payload: &Payload,
        timeout: Option<Duration>,
    ) -> AckId {
        let id = self.next_ack;
        self.next_ack += 1;
        let deadline = timeout.map(|t| now + t);
        self.acks.insert(
            id,
            PendingAck {
                waiting: IdSet::default(),
                deadline,
            },
        );
        self.broadcast_event(now, target, name, payload, Some(id));
        if self.acks.get(&id).is_some_and(|a| a.waiting.is_empty()) {
            self.acks.remove(&id);
            self.events.push_back(Event::AckDone { ack: AckId(id) });
        } else if let Some(deadline) = deadline {
            self.timers.push(Reverse((deadline, Timer::Ack(id))));
        }
        AckId(id)
    }

    /// How many sockets have yet to answer an ack request (0 once it is done).
    pub fn ack_pending(&self, ack: AckId) -> usize {
        self.acks.get(&ack.0).map_or(0, |a| a.waiting.len())
    }

    pub(super) fn ack_answered(&mut self, id: u64, sid: &Sid) {
        let Some(pending) = self.acks.get_mut(&id) else {
            return;
        };
        pending.waiting.remove(sid);
        if pending.waiting.is_empty() {
            self.acks.remove(&id);
            self.events.push_back(Event::AckDone { ack: AckId(id) });
        }
    }

    pub(super) fn finish_ack(&mut self, id: u64, error: AckError) {
        let Some(pending) = self.acks.remove(&id) else {
            return;
        };
        let mut waiting: Vec<Sid> = pending.waiting.into_iter().collect();
        waiting.sort();
        for sid in waiting {
            if let Some(s) = self.sockets.get_mut(&sid) {
                s.acks.remove(&id);
            }
            self.events.push_back(Event::Ack {
                ack: AckId(id),
                sid,
                result: Err(error),
            });
        }
        self.events.push_back(Event::AckDone { ack: AckId(id) });
    }
}
