//! The WebSocket side of a fuzzed server's upgraded transports, carried in memory as
//! the async host carries them: outputs through each [`WsLink`], everything written at
//! once, ended links reported and dropped.

use std::time::Instant;

use wirestate_engine::eio::{Transmit, WsLink};
use wirestate_engine::Endpoint;

/// The open links, in the order their upgrades were accepted.
#[derive(Default)]
pub struct Links(Vec<WsLink>);

impl Links {
    /// A link that just came out of an accepted upgrade.
    pub fn add(&mut self, link: Box<WsLink>) {
        self.0.push(*link);
    }

    /// Feeds `bytes` to the `i`th link (modulo their count) and delivers what they
    /// decoded.
    pub fn input<E: Endpoint>(&mut self, i: usize, now: Instant, bytes: &[u8], server: &mut E) {
        let n = self.0.len().max(1);
        if let Some(link) = self.0.get_mut(i % n) {
            link.handle_input(now, bytes);
            link.deliver(now, server);
        }
    }

    /// The `i`th link's peer went away.
    pub fn eof<E: Endpoint>(&mut self, i: usize, now: Instant, server: &mut E) {
        let n = self.0.len().max(1);
        if i % n < self.0.len() {
            let mut link = self.0.remove(i % n);
            link.handle_eof(now);
            link.deliver(now, server);
        }
    }

    /// Fires the links' deadlines.
    pub fn timeout<E: Endpoint>(&mut self, now: Instant, server: &mut E) {
        for link in &mut self.0 {
            if link.poll_timeout().is_some_and(|t| t <= now) {
                link.handle_timeout(now);
                link.deliver(now, server);
            }
        }
    }

    /// Carries out the server's transmits; says whether any went to a WebSocket.
    pub fn carry<E: Endpoint>(&mut self, now: Instant, server: &mut E) -> bool {
        let mut wrote = false;
        while let Some(t) = server.poll_transmit() {
            match t {
                Transmit::Ws { transport, output } => {
                    wrote = true;
                    if let Some(link) = self.0.iter_mut().find(|l| l.transport() == transport) {
                        link.handle_output(now, output);
                    }
                }
                Transmit::AbortTransport(t) => self.0.retain(|l| l.transport() != t),
                Transmit::Respond { .. } => {}
            }
        }
        for link in &mut self.0 {
            while let Some(bytes) = link.poll_transmit() {
                link.handle_written(bytes.len());
            }
            server.handle_ws_written(link.transport(), link.take_written());
        }
        self.0.retain_mut(|link| {
            if link.should_close_transport() {
                link.abandon(now, server);
                return false;
            }
            true
        });
        wrote
    }
}
