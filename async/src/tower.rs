//! Engine.IO and Socket.IO inside a hyper 1 / tower application (axum, say), on the
//! application's own port: [`EngineLayer`] serves the endpoint's path and hands every
//! other request to the service it wraps.
//!
//! * Polling requests arrive as hyper requests; a parked GET is a pending response
//!   future (dropping it, as hyper does when the client goes away, ends the poll).
//!   POST bodies are read up to the endpoint's `max_payload` (413 above it, and the
//!   session ends).
//! * A WebSocket upgrade is answered with the `101` response for hyper to write; the
//!   stream that `hyper::upgrade::on` then yields is driven, in a task of its own on
//!   the host's runtime, exactly as a connection of the built-in server is. Upgrades
//!   need an HTTP/1.1 connection served with upgrades (axum's `serve`, hyper-util's
//!   `serve_connection_with_upgrades`); elsewhere (HTTP/2) a WebSocket request gets
//!   `400` and clients stay on long-polling.
//! * The client's address is taken from a [`std::net::SocketAddr`] request extension
//!   when there is one (with axum, a `map_request` middleware can copy it from
//!   `ConnectInfo`). All the request's extensions go with the session it opens:
//!   Socket.IO middleware reads them with [`extensions`].
//!
//! The built-in server's HTTP limits that are hyper's job there (head size, request
//! and write timeouts, connection caps) are the application's hyper settings here.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Either, Full, Limited};
use wirestate_engine::eio::{Handshake, Reply};
use wirestate_engine::http::{parse_response_head, Headers, Request, RequestHead, Response};
use wirestate_engine::Endpoint;

use crate::forward::Tunnel;
use crate::host::ConnGuard;
use crate::router::{Auth, Handled, Router};
use crate::{Clock, Host, Outbox, Runtime, Transport, WebSocket};

/// The error type of request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a response that went through [`EngineService`]: the endpoint's own, or
/// the inner service's.
pub type ResponseBody<B> = Either<Full<Bytes>, B>;

/// A [`tower_layer::Layer`] that serves an Engine.IO or Socket.IO host at its path
/// (`/socket.io/` or `/engine.io/` by default) in front of the service it wraps.
/// Adapters make it: `wirestate_tokio::sio::layer(&io)`.
pub struct EngineLayer<E: Endpoint, R: Runtime> {
    host: Host<E>,
    rt: R,
}

impl<E: Endpoint, R: Runtime> EngineLayer<E, R> {
    /// A layer for `host`, whose upgraded connections run on `rt`.
    pub fn new(rt: &R, host: Host<E>) -> Self {
        Self {
            host,
            rt: rt.clone(),
        }
    }
}

impl<E: Endpoint, R: Runtime> Clone for EngineLayer<E, R> {
    fn clone(&self) -> Self {
        Self {
            host: self.host.clone(),
            rt: self.rt.clone(),
        }
    }
}

impl<E: Endpoint, R: Runtime> std::fmt::Debug for EngineLayer<E, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineLayer").finish_non_exhaustive()
    }
}

impl<E: Endpoint, R: Runtime, S> tower_layer::Layer<S> for EngineLayer<E, R> {
    type Service = EngineService<E, R, S>;

    fn layer(&self, inner: S) -> Self::Service {
        EngineService {
            host: self.host.clone(),
            rt: self.rt.clone(),
            inner,
        }
    }
}

/// The service an [`EngineLayer`] makes: the endpoint's requests are answered here,
/// the rest go to `S`. With [`NotFound`] as `S` it serves the endpoint alone (axum's
/// `route_service`, or plain hyper).
pub struct EngineService<E: Endpoint, R: Runtime, S> {
    host: Host<E>,
    rt: R,
    inner: S,
}

impl<E: Endpoint, R: Runtime, S: Clone> Clone for EngineService<E, R, S> {
    fn clone(&self) -> Self {
        Self {
            host: self.host.clone(),
            rt: self.rt.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<E: Endpoint, R: Runtime, S> std::fmt::Debug for EngineService<E, R, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineService").finish_non_exhaustive()
    }
}

/// A boxed response future.
pub type ResponseFuture<T, Err> = Pin<Box<dyn Future<Output = Result<T, Err>> + Send>>;

impl<E, R, S, B, ResB> tower_service::Service<http::Request<B>> for EngineService<E, R, S>
where
    E: Endpoint,
    R: Runtime,
    S: tower_service::Service<http::Request<B>, Response = http::Response<ResB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !self.host.matches(request.uri().path()) {
            return pass_on(&mut self.inner, request);
        }
        let (host, rt) = (self.host.clone(), self.rt.clone());
        Box::pin(async move { Ok(serve_request(host, rt, request).await.map(Either::Left)) })
    }
}

/// A [`tower_layer::Layer`] that serves a [`Router`]'s WebSocket routes in front of the
/// service it wraps, which gets every other request (the router's own fallback is
/// for its built-in server). Adapters make it: `wirestate_tokio::router::layer(&r)`.
pub struct RouterLayer<R: Runtime> {
    router: Router,
    rt: R,
}

impl<R: Runtime> RouterLayer<R> {
    /// A layer for `router`, whose connections run on `rt`.
    pub fn new(rt: &R, router: Router) -> Self {
        Self {
            router,
            rt: rt.clone(),
        }
    }
}

impl<R: Runtime> Clone for RouterLayer<R> {
    fn clone(&self) -> Self {
        Self::new(&self.rt, self.router.clone())
    }
}

impl<R: Runtime> std::fmt::Debug for RouterLayer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterLayer")
            .field("router", &self.router)
            .finish()
    }
}

impl<R: Runtime, S> tower_layer::Layer<S> for RouterLayer<R> {
    type Service = RouterService<R, S>;

    fn layer(&self, inner: S) -> Self::Service {
        RouterService {
            router: self.router.clone(),
            rt: self.rt.clone(),
            inner,
        }
    }
}

/// The service a [`RouterLayer`] makes: requests for the router's routes are answered
/// here (the upgrade, after the route's auth hook), the rest go to `S`.
#[derive(Clone)]
pub struct RouterService<R: Runtime, S> {
    router: Router,
    rt: R,
    inner: S,
}

impl<R: Runtime, S> std::fmt::Debug for RouterService<R, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterService").finish_non_exhaustive()
    }
}

impl<R, S, B, ResB> tower_service::Service<http::Request<B>> for RouterService<R, S>
where
    R: Runtime,
    S: tower_service::Service<http::Request<B>, Response = http::Response<ResB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !self.router.matches(request.uri().path()) {
            return pass_on(&mut self.inner, request);
        }
        let (router, rt) = (self.router.clone(), self.rt.clone());
        Box::pin(async move { Ok(serve_routed(router, rt, request).await.map(Either::Left)) })
    }
}

/// Answers one request for a route of `router`: the `101` once the auth hook has
/// accepted (the connection then runs on `rt`), or the refusal.
async fn serve_routed<R: Runtime, B>(
    router: Router,
    rt: R,
    request: http::Request<B>,
) -> http::Response<Full<Bytes>> {
    let (mut parts, _body) = request.into_parts();
    let head = request_head(&parts);
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return match head.is_websocket_upgrade() {
            true => no_upgrades(),
            false => plain(426, "this route takes WebSocket upgrades only"),
        };
    };
    let peer_addr = parts.extensions.get::<SocketAddr>().copied();
    let secure = is_secure(&parts);
    let request = Request {
        head,
        body: Bytes::new(),
        peer_addr,
        secure,
        extensions: wirestate_engine::http::Extensions::new(parts.extensions),
    };
    let upgrade = match router.handle(request) {
        Handled::Respond(response) => return into_http(response),
        Handled::Upgrade(upgrade) => upgrade,
    };
    let mut clock = rt.clock();
    let auth = crate::router::authorize(&upgrade, &mut clock).await;
    if let Auth::Refuse(response) = auth {
        return into_http(response);
    }
    let config = upgrade.config().clone();
    let (ws_request, accepted) = upgrade.into_parts();
    let mut conn = wirestate_engine::ws::Connection::accept(config, ws_request, clock.now());
    let Some(response) = conn.take_handshake_response() else {
        return into_http(Response::new(500));
    };
    rt.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocket::from_accepted(HyperIo(upgraded), clock, conn);
                if let Err(e) = crate::router::run(accepted, ws, auth).await {
                    tracing::debug!(error = %e, "routed websocket ended with an error");
                }
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    into_http(response)
}

/// Hands `request` to the wrapped service: the one made ready goes, a clone waits for
/// next time.
fn pass_on<S, Req, ResB>(
    inner: &mut S,
    request: Req,
) -> ResponseFuture<http::Response<ResponseBody<ResB>>, S::Error>
where
    S: tower_service::Service<Req, Response = http::Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let clone = inner.clone();
    let mut ready = std::mem::replace(inner, clone);
    let response = ready.call(request);
    Box::pin(async move { Ok(response.await?.map(Either::Right)) })
}

/// The inner service of an [`EngineService`] that serves nothing else: `404` for
/// every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotFound;

impl<B> tower_service::Service<http::Request<B>> for NotFound {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<B>) -> Self::Future {
        std::future::ready(Ok(into_http(Response::new(404))))
    }
}

/// The extensions of the request that opened a session (what the application's
/// middleware put there: an authenticated user, say), when the session was opened
/// through an [`EngineLayer`].
pub fn extensions(handshake: &Handshake) -> Option<&http::Extensions> {
    handshake.extensions.get::<http::Extensions>()
}

/// The extensions of the upgrade request of a [`Router`] connection (what the
/// application's middleware put there), when it came through a [`RouterLayer`]: read
/// them in the route's `auth` hook or from `Conn::handshake`.
pub fn router_extensions(handshake: &crate::router::Handshake) -> Option<&http::Extensions> {
    handshake.extensions().get::<http::Extensions>()
}

/// Answers one request for the endpoint's path.
async fn serve_request<E: Endpoint, R: Runtime, B>(
    host: Host<E>,
    rt: R,
    request: http::Request<B>,
) -> http::Response<Full<Bytes>>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();
    let head = request_head(&parts);
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    if head.is_websocket_upgrade() && upgrade.is_none() {
        return no_upgrades();
    }
    let body = if parts.method == http::Method::POST {
        // As on the built-in server: the endpoint sees bodies a little over its limit
        // (and ends their sessions); larger ones are cut off here.
        match Limited::new(body, host.max_body_size() + 1024)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return plain(413, "payload too large")
            }
            Err(_) => return plain(400, "request body failed"),
        }
    } else {
        Bytes::new()
    };
    let peer_addr = parts.extensions.get::<SocketAddr>().copied();
    let secure = is_secure(&parts);
    // Only a handshake (no session yet) keeps its extensions: attached to it alone.
    let extensions = match head.query_param("sid") {
        None => wirestate_engine::http::Extensions::new(parts.extensions),
        Some(_) => wirestate_engine::http::Extensions::default(),
    };
    let request = Request {
        head,
        body,
        peer_addr,
        secure,
        extensions,
    };
    if let Some((forward, sid)) = host.foreign(&request) {
        if !request.head.is_websocket_upgrade() {
            // Another node's session: its answer comes from there.
            let mut pending = forward.request(&sid, request);
            let mut clock = rt.clock();
            let deadline = clock.now() + host.forward_wait();
            let answer = poll_fn(|cx| pending.poll_response(cx));
            let response = crate::until(&mut clock, deadline, answer).await;
            return into_http(response.unwrap_or_else(|| Response::new(504)));
        }
        if let Some(upgrade) = upgrade {
            let tunnel = forward.open(&sid, request);
            return forwarded_upgrade(host, rt, tunnel, upgrade).await;
        }
    }
    let Some(reply) = host.handle_request(&request, host.now()) else {
        return into_http(Response::new(404));
    };
    let guard = match ConnGuard::holding(host.clone(), reply) {
        Ok(guard) => guard,
        Err(Reply::Respond(response)) => {
            host.drain_events();
            return into_http(response);
        }
        Err(_) => return into_http(Response::new(500)),
    };
    host.drain_events();
    answer(host, rt, guard, upgrade).await
}

/// The answer to a request that left the endpoint holding something: a parked poll's
/// response once it comes, or the `101` of an upgrade (whose stream is then driven).
async fn answer<E: Endpoint, R: Runtime>(
    host: Host<E>,
    rt: R,
    mut guard: ConnGuard<E>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> http::Response<Full<Bytes>> {
    let Some(link) = guard.link() else {
        // A parked poll; dropping this future (the client went away) releases it.
        return match poll_fn(|cx| guard.poll_response(cx)).await {
            Some(response) => into_http(response),
            None => into_http(Response::new(500)),
        };
    };
    let (Some(response), Some(upgrade)) = (link.take_handshake_response(), upgrade) else {
        return into_http(Response::new(500));
    };
    let task_rt = rt.clone();
    rt.spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let io = HyperIo(upgraded);
                if let Err(e) = host
                    .drive_ws(io, task_rt.clock(), guard, Outbox::default())
                    .await
                {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
            }
            // The guard releases the transport: the client is told nothing more.
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    into_http(response)
}

/// Most bytes of a refusal (a response other than `101`) that the owner of a session
/// sends back for a forwarded upgrade.
const MAX_REFUSAL: usize = 64 << 10;

/// The answer to an upgrade that another node serves: the owner's response, read from
/// the tunnel; after a `101`, the upgraded stream and the tunnel are copied into each
/// other (in a task of their own). A tunnel that breaks, or says something that is
/// not HTTP, is `502`; an owner that does not answer in time, `504`.
async fn forwarded_upgrade<E: Endpoint, R: Runtime>(
    host: Host<E>,
    rt: R,
    mut tunnel: Tunnel,
    upgrade: hyper::upgrade::OnUpgrade,
) -> http::Response<Full<Bytes>> {
    let mut clock = rt.clock();
    let deadline = clock.now() + host.forward_wait();
    let limits = host.limits();
    let mut buf = BytesMut::new();
    let mut head = None;
    let mut ended = false;
    let outcome = poll_fn(|cx| loop {
        if head.is_none() {
            match parse_response_head(&buf, limits.max_head_size) {
                Ok(Some(parsed)) => head = Some(parsed),
                Ok(None) => {}
                Err(_) => return Poll::Ready(Err(502)),
            }
        }
        match &head {
            // A 101: what follows is the WebSocket's.
            Some((101, ..)) => return Poll::Ready(Ok(())),
            // A refusal: its body runs to the end of the tunnel.
            Some(_) if ended => return Poll::Ready(Ok(())),
            _ if ended => return Poll::Ready(Err(502)),
            _ if buf.len() > limits.max_head_size + MAX_REFUSAL => return Poll::Ready(Err(502)),
            _ => {}
        }
        match tunnel.poll_chunk(cx) {
            Poll::Ready(Ok(chunk)) if chunk.is_empty() => ended = true,
            Poll::Ready(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Poll::Ready(Err(_)) => return Poll::Ready(Err(502)),
            Poll::Pending => return clock.poll_until(cx, deadline).map(|()| Err(504)),
        }
    })
    .await;
    let (status, headers, used) = match (outcome, head) {
        (Ok(()), Some(head)) => head,
        (Err(status), _) => return into_http(Response::new(status)),
        (Ok(()), None) => return into_http(Response::new(502)),
    };
    let rest = buf.split_off(used).freeze();
    let mut response = Response::new(status);
    for (name, value) in headers.iter() {
        // hyper writes a refusal's framing itself.
        let framing = ["content-length", "connection"]
            .iter()
            .any(|f| name.eq_ignore_ascii_case(f));
        if framing && status != 101 {
            continue;
        }
        if let Ok(value) = std::str::from_utf8(value) {
            response = response.header(name.to_owned(), value);
        }
    }
    if status != 101 {
        return into_http(response.body(rest));
    }
    let task_rt = rt.clone();
    rt.spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let mut out = Outbox::default();
                if !rest.is_empty() {
                    out.push(rest);
                }
                if let Err(e) = host
                    .splice(HyperIo(upgraded), task_rt.clock(), tunnel, out)
                    .await
                {
                    tracing::debug!(error = %e, "forwarded connection ended with an error");
                }
            }
            // Dropping the tunnel tells the owner.
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    into_http(response)
}

/// What the request tells of its connection's encryption: an `https` URI (an
/// application's own TLS is not visible to the layer otherwise).
fn is_secure(parts: &http::request::Parts) -> bool {
    parts.uri.scheme_str() == Some("https")
}

/// The core's view of a hyper request's head.
fn request_head(parts: &http::request::Parts) -> RequestHead {
    RequestHead {
        method: parts.method.as_str().to_owned(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        version: u8::from(parts.version != http::Version::HTTP_10),
        headers: Headers::from_pairs(
            parts
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes())),
        ),
    }
}

/// The answer to an upgrade request on a connection that cannot upgrade.
fn no_upgrades() -> http::Response<Full<Bytes>> {
    plain(
        400,
        "WebSocket upgrades need an HTTP/1.1 connection served with upgrades",
    )
}

fn plain(status: u16, text: &'static str) -> http::Response<Full<Bytes>> {
    into_http(
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(text),
    )
}

/// An engine response as a hyper one (hyper adds `Content-Length` and `Connection`).
fn into_http(response: Response) -> http::Response<Full<Bytes>> {
    let mut out = http::Response::new(Full::new(response.body));
    *out.status_mut() = http::StatusCode::from_u16(response.status)
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    for (name, value) in response.headers {
        // The endpoint's header lines are its own, all valid: none is dropped in fact.
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    out
}

/// A hyper stream (an upgraded connection) as a [`Transport`].
struct HyperIo<T>(T);

impl<T: hyper::rt::Read + hyper::rt::Write + Unpin> Transport for HyperIo<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut read = hyper::rt::ReadBuf::new(buf);
        std::task::ready!(Pin::new(&mut self.0).poll_read(cx, read.unfilled()))?;
        Poll::Ready(Ok(read.filled().len()))
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match crate::write_slices(bufs, self.0.is_write_vectored()) {
            crate::Slices::One(buf) => Pin::new(&mut self.0).poll_write(cx, buf),
            crate::Slices::Many(bufs) => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
