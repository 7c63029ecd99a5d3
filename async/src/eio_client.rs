//! [`Pilot`]: an "actions out, outcomes in" client machine over real connections —
//! [`EioClient`] for the Engine.IO client, and the Socket.IO client's driver.
//!
//! Runs the sans-IO machine: each HTTP request it asks for goes out on a fresh
//! connection from the [`Runtime`] (a long poll and a POST can be in flight together),
//! as an [`http::ClientConn`] exchange, and each WebSocket is a [`WebSocket`]. Like
//! [`WebSocket`], all I/O happens while [`Pilot::recv`] is being awaited: keep calling
//! it.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::{ClientStream, Clock, Connector, Outbox, Runtime, Transport, WebSocket};
use wirestate_engine::eio::{Action, Client, ClientConfig, ClosedError, Data, RequestId, WsId};
use wirestate_engine::http::{self, Url};
use wirestate_engine::ws;
use wirestate_engine::ClientMachine;

type Pending<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;
/// A WebSocket over the runtime's TCP.
type ClientWebSocket<R> = WebSocket<ClientStream<<R as Runtime>::Tcp>, <R as Runtime>::Clock>;
/// A WebSocket being opened.
type Opening<R> = (WsId, Pending<ClientWebSocket<R>>);

/// The largest response head the client reads.
const MAX_RESPONSE_HEAD: usize = 16 << 10;
/// The largest response body the client reads.
const MAX_RESPONSE_BODY: usize = 64 << 20;

/// A client machine driven over a [`Runtime`]'s connections and clock.
pub struct Pilot<M, R: Runtime> {
    client: M,
    rt: R,
    clock: R::Clock,
    url: Url,
    requests: Vec<(RequestId, Pending<http::ClientResponse>)>,
    /// What the server set with `Set-Cookie`, sent back with every request.
    cookies: http::CookieJar,
    connecting: Vec<Opening<R>>,
    sockets: Vec<(WsId, ClientWebSocket<R>)>,
    connector: Arc<Connector>,
    rng: wirestate_engine::rand::Rng,
    finished: bool,
}

/// An Engine.IO client session over a [`Runtime`].
pub type EioClient<R> = Pilot<Client, R>;

impl<M: std::fmt::Debug, R: Runtime> std::fmt::Debug for Pilot<M, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pilot")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> EioClient<R> {
    /// Starts a session with the server at `url` (its scheme, host and port; the
    /// path comes from `config`) over `rt`'s connections. The handshake happens while
    /// [`recv`](Self::recv) runs; its first event is [`ClientEvent::Open`](wirestate_engine::eio::ClientEvent::Open). `seed`
    /// seeds the WebSocket masking keys (use OS randomness).
    pub fn new(
        rt: R,
        url: Url,
        config: ClientConfig,
        connector: Connector,
        seed: [u8; 32],
    ) -> Self {
        let client = Client::new(config, rt.now());
        Self::with_machine(client, rt, url, connector, seed)
    }

    /// The state machine.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Queues a message (sent while `recv` runs).
    pub fn send(&mut self, data: Data) -> Result<(), ClosedError> {
        let now = self.clock.now();
        self.client.send(now, data)
    }

    /// Closes the session (the close packet goes out while `recv` runs; it then
    /// returns the `Closed` event and `None`).
    pub fn close(&mut self) {
        let now = self.clock.now();
        self.client.close(now);
    }
}

impl<M: ClientMachine, R: Runtime> Pilot<M, R> {
    /// Drives `client` with `rt`'s connections to the server at `url`; `seed` seeds
    /// the WebSocket masking keys.
    pub fn with_machine(client: M, rt: R, url: Url, connector: Connector, seed: [u8; 32]) -> Self {
        Self {
            client,
            clock: rt.clock(),
            rt,
            url,
            requests: Vec::new(),
            cookies: http::CookieJar::default(),
            connecting: Vec::new(),
            sockets: Vec::new(),
            connector: Arc::new(connector),
            rng: wirestate_engine::rand::Rng::from_seed(seed),
            finished: false,
        }
    }

    /// The machine.
    pub fn machine(&mut self) -> &mut M {
        &mut self.client
    }

    /// The current time on the pilot's clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The next event; `None` after the final one once everything is flushed.
    pub async fn recv(&mut self) -> Option<M::Event> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Polls for the next event (see [`recv`](Self::recv)).
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<M::Event>> {
        loop {
            self.start_actions();
            if let Some(event) = self.client.poll_event() {
                if M::is_final(&event) {
                    self.finished = true;
                }
                return Poll::Ready(Some(event));
            }
            if self.finished && self.requests.is_empty() && self.sockets.is_empty() {
                return Poll::Ready(None);
            }
            let now = self.clock.now();
            let mut progress = false;
            // HTTP exchanges.
            let mut i = 0;
            while i < self.requests.len() {
                match self.requests[i].1.as_mut().poll(cx) {
                    Poll::Ready(result) => {
                        let (id, _) = self.requests.swap_remove(i);
                        match result {
                            Ok(response) => {
                                for value in response.headers.get_all("set-cookie") {
                                    self.cookies.set(value);
                                }
                                self.client.handle_http_response(
                                    now,
                                    id,
                                    response.status,
                                    response.body,
                                )
                            }
                            Err(e) => {
                                // A TLS certificate refused, no roots configured, a
                                // refused connection: the reason is only in the log.
                                tracing::debug!(error = %e, "engine.io request failed");
                                self.client.handle_http_failed(now, id)
                            }
                        }
                        progress = true;
                    }
                    Poll::Pending => i += 1,
                }
            }
            // WebSockets being opened.
            let mut i = 0;
            while i < self.connecting.len() {
                match self.connecting[i].1.as_mut().poll(cx) {
                    Poll::Ready(result) => {
                        let (id, _) = self.connecting.swap_remove(i);
                        match result {
                            Ok(ws) => {
                                self.sockets.push((id, ws));
                                self.client.handle_ws_opened(now, id);
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "engine.io websocket failed to open");
                                self.client.handle_ws_closed(now, id)
                            }
                        }
                        progress = true;
                    }
                    Poll::Pending => i += 1,
                }
            }
            // Open WebSockets.
            let mut i = 0;
            while i < self.sockets.len() {
                let id = self.sockets[i].0;
                match self.sockets[i].1.poll_event(cx) {
                    Poll::Ready(Some(Ok(ws::Event::Message(m)))) => {
                        self.client.handle_ws_message(now, id, &m);
                        progress = true;
                    }
                    Poll::Ready(Some(Ok(_))) => progress = true,
                    Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                        self.sockets.swap_remove(i);
                        self.client.handle_ws_closed(now, id);
                        progress = true;
                        continue;
                    }
                    Poll::Pending => {}
                }
                if let Poll::Ready(Err(_)) = self.sockets[i].1.poll_write_all(cx) {
                    self.sockets.swap_remove(i);
                    self.client.handle_ws_closed(now, id);
                    progress = true;
                    continue;
                }
                i += 1;
            }
            if let Some(deadline) = self.client.poll_timeout() {
                if self.clock.poll_until(cx, deadline).is_ready() {
                    self.client.handle_timeout(self.clock.now());
                    progress = true;
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    fn start_actions(&mut self) {
        while let Some(action) = self.client.poll_action() {
            match action {
                Action::Http {
                    id,
                    method,
                    target,
                    body,
                } => {
                    let mut headers = vec![("Accept", "*/*"), ("Connection", "close")];
                    if method == "POST" {
                        headers.push(("Content-Type", "text/plain;charset=UTF-8"));
                    }
                    headers.extend(
                        self.connector
                            .headers()
                            .iter()
                            .map(|(n, v)| (n.as_str(), v.as_str())),
                    );
                    let cookie = self.cookies.header();
                    if let Some(cookie) = &cookie {
                        headers.push(("Cookie", cookie));
                    }
                    let conn = http::ClientConn::new(
                        method,
                        &target,
                        &self.url.host_header(),
                        &headers,
                        body,
                        MAX_RESPONSE_HEAD,
                        MAX_RESPONSE_BODY,
                    );
                    let (rt, url, connector) =
                        (self.rt.clone(), self.url.clone(), self.connector.clone());
                    self.requests.push((
                        id,
                        Box::pin(async move {
                            let conn =
                                conn.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                            exchange(connector.open(&rt, &url).await?, conn).await
                        }),
                    ));
                }
                Action::OpenWs { id, target } => {
                    let request = ws::ClientRequest {
                        host: self.url.host.clone(),
                        port: self.url.port,
                        path: target,
                        protocols: Vec::new(),
                        headers: self
                            .connector
                            .headers()
                            .iter()
                            .cloned()
                            .chain(self.cookies.header().map(|c| ("Cookie".to_owned(), c)))
                            .collect(),
                    };
                    let (rt, url, connector) =
                        (self.rt.clone(), self.url.clone(), self.connector.clone());
                    let clock = self.rt.clock();
                    let mut seed = [0u8; 32];
                    self.rng.fill(&mut seed);
                    self.connecting.push((
                        id,
                        Box::pin(async move {
                            let io = connector.open(&rt, &url).await?;
                            WebSocket::connect(
                                io,
                                clock,
                                Arc::new(ws::Config::default()),
                                &request,
                                seed,
                            )
                            .await
                            .map_err(|e| io::Error::other(e.to_string()))
                        }),
                    ));
                }
                Action::SendWs { id, message } => {
                    if let Some((_, ws)) = self.sockets.iter_mut().find(|(i, _)| *i == id) {
                        let _ = ws.connection().send(message);
                    }
                }
                Action::CloseWs(id) => {
                    if let Some((_, ws)) = self.sockets.iter_mut().find(|(i, _)| *i == id) {
                        let now = self.clock.now();
                        let _ = ws.connection().close(now, ws::CloseCode::NORMAL, "");
                    }
                }
            }
        }
    }
}

/// Writes one request and reads its response.
async fn exchange<T: Transport>(
    mut io: T,
    mut conn: http::ClientConn,
) -> io::Result<http::ClientResponse> {
    let mut out = Outbox::default();
    while let Some(bytes) = conn.poll_transmit() {
        out.push(bytes);
    }
    let mut eof = false;
    poll_fn(|cx| loop {
        out.write_to(&mut io, cx)?;
        if !out.is_empty() {
            return Poll::Pending;
        }
        if let Some(response) = conn.poll_response() {
            return Poll::Ready(
                response.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            );
        }
        if eof {
            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        let read = super::with_read_buf(|buf| match io.poll_read(cx, buf) {
            Poll::Ready(Ok(0)) => {
                eof = true;
                conn.handle_eof();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(n)) => {
                conn.handle_input(&buf[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        });
        match read {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}
