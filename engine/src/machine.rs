//! The two shapes every driver of this crate's machines relies on: a server
//! [`Endpoint`] (HTTP requests and WebSocket packets in; responses, WebSocket outputs
//! and events out) and a [`ClientMachine`] ("actions out, outcomes in"). The async layer
//! drives them over sockets; tests drive them in memory.

use std::time::Instant;

use bytes::Bytes;

use crate::eio::{
    self, Action, Client, ClientEvent, PollId, Reply, RequestId, Transmit, TransportId, WsId,
    WsInput,
};
use crate::http::Request;
use crate::{sio, ws};

/// A sans-IO server endpoint: the inputs and outputs that [`eio::Server`] and
/// [`sio::Server`] share, so that one driver (the async layer's host, a test) serves
/// either.
pub trait Endpoint: Send + 'static {
    /// What the endpoint tells the application.
    type Event: Send + 'static;
    /// Its Engine.IO configuration, fixed for its life: the path it serves
    /// ([`eio::Config::matches`]), the largest body worth reading (`max_payload`).
    fn config(&self) -> &eio::Config;
    /// How many sessions are open.
    fn session_count(&self) -> usize;
    /// No session is open or closing (what a graceful shutdown waits for).
    fn is_idle(&self) -> bool;
    /// See [`eio::Server::handle_request`].
    fn handle_request(&mut self, now: Instant, request: &Request) -> Reply;
    /// See [`eio::Server::preparer`].
    fn preparer(&self) -> eio::Preparer;
    /// See [`eio::Server::handle_prepared`].
    fn handle_prepared(
        &mut self,
        now: Instant,
        request: &Request,
        prepared: eio::Prepared,
    ) -> Reply;
    /// See [`eio::Server::handle_poll_aborted`].
    fn handle_poll_aborted(&mut self, now: Instant, poll: PollId);
    /// See [`eio::Server::handle_ws_input`].
    fn handle_ws_input(&mut self, now: Instant, transport: TransportId, input: WsInput);
    /// See [`eio::Server::handle_ws_written`].
    fn handle_ws_written(&mut self, transport: TransportId, bytes: usize);
    /// See [`eio::Server::handle_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// See [`eio::Server::poll_transmit`].
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// The next event.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// See [`eio::Server::poll_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
}

macro_rules! endpoint {
    ($ty:ty, $event:ty, |$s:ident| $eio:expr) => {
        impl Endpoint for $ty {
            type Event = $event;
            fn config(&self) -> &eio::Config {
                let $s = self;
                $eio.config()
            }
            fn session_count(&self) -> usize {
                <$ty>::session_count(self)
            }
            fn is_idle(&self) -> bool {
                let $s = self;
                $eio.is_idle()
            }
            fn handle_ws_written(&mut self, transport: TransportId, bytes: usize) {
                <$ty>::handle_ws_written(self, transport, bytes)
            }
            fn handle_request(&mut self, now: Instant, request: &Request) -> Reply {
                <$ty>::handle_request(self, now, request)
            }
            fn preparer(&self) -> eio::Preparer {
                <$ty>::preparer(self)
            }
            fn handle_prepared(
                &mut self,
                now: Instant,
                request: &Request,
                prepared: eio::Prepared,
            ) -> Reply {
                <$ty>::handle_prepared(self, now, request, prepared)
            }
            fn handle_poll_aborted(&mut self, now: Instant, poll: PollId) {
                <$ty>::handle_poll_aborted(self, now, poll)
            }
            fn handle_ws_input(&mut self, now: Instant, transport: TransportId, input: WsInput) {
                <$ty>::handle_ws_input(self, now, transport, input)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$ty>::handle_timeout(self, now)
            }
            fn poll_transmit(&mut self) -> Option<Transmit> {
                <$ty>::poll_transmit(self)
            }
            fn poll_event(&mut self) -> Option<Self::Event> {
                <$ty>::poll_event(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$ty>::poll_timeout(self)
            }
        }
    };
}

endpoint!(eio::Server, eio::Event, |s| s);
endpoint!(sio::Server, sio::Event, |s| s.eio());

/// A sans-IO client that asks for I/O with [`Action`]s and takes the outcomes:
/// [`Client`] (Engine.IO) and [`crate::sio::Manager`] (Socket.IO).
pub trait ClientMachine {
    /// What it tells the application.
    type Event;
    /// See [`Client::handle_http_response`].
    fn handle_http_response(&mut self, now: Instant, id: RequestId, status: u16, body: Bytes);
    /// See [`Client::handle_http_failed`].
    fn handle_http_failed(&mut self, now: Instant, id: RequestId);
    /// See [`Client::handle_ws_opened`].
    fn handle_ws_opened(&mut self, now: Instant, id: WsId);
    /// See [`Client::handle_ws_message`].
    fn handle_ws_message(&mut self, now: Instant, id: WsId, message: &ws::Message);
    /// See [`Client::handle_ws_closed`].
    fn handle_ws_closed(&mut self, now: Instant, id: WsId);
    /// See [`Client::handle_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// See [`Client::poll_action`].
    fn poll_action(&mut self) -> Option<Action>;
    /// The next event.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// See [`Client::poll_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// Nothing follows this event.
    fn is_final(event: &Self::Event) -> bool;
}

macro_rules! client_machine {
    ($ty:ty, $event:ty, |$e:ident| $final:expr) => {
        impl ClientMachine for $ty {
            type Event = $event;
            fn handle_http_response(
                &mut self,
                now: Instant,
                id: RequestId,
                status: u16,
                body: Bytes,
            ) {
                <$ty>::handle_http_response(self, now, id, status, body)
            }
            fn handle_http_failed(&mut self, now: Instant, id: RequestId) {
                <$ty>::handle_http_failed(self, now, id)
            }
            fn handle_ws_opened(&mut self, now: Instant, id: WsId) {
                <$ty>::handle_ws_opened(self, now, id)
            }
            fn handle_ws_message(&mut self, now: Instant, id: WsId, message: &ws::Message) {
                <$ty>::handle_ws_message(self, now, id, message)
            }
            fn handle_ws_closed(&mut self, now: Instant, id: WsId) {
                <$ty>::handle_ws_closed(self, now, id)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$ty>::handle_timeout(self, now)
            }
            fn poll_action(&mut self) -> Option<Action> {
                <$ty>::poll_action(self)
            }
            fn poll_event(&mut self) -> Option<Self::Event> {
                <$ty>::poll_event(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$ty>::poll_timeout(self)
            }
            fn is_final($e: &Self::Event) -> bool {
                $final
            }
        }
    };
}

client_machine!(Client, ClientEvent, |e| matches!(e, ClientEvent::Closed(_)));
client_machine!(crate::sio::Manager, crate::sio::ClientEvent, |e| matches!(
    e,
    crate::sio::ClientEvent::Closed
));
