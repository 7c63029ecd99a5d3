//! No sticky sessions: requests that reach this node for a session another node of
//! the Redis cluster owns are carried there and back over Redis, in the engine's
//! [`forward`] format, on each node's own channel.
//!
//! As the forwarding node, it sends polling requests and waits for their answers
//! (`waiting`), and tunnels WebSocket upgrades (`tunnels`). As the owner, it serves
//! what others forward as if it had come in itself (`served`): a parked poll waits
//! here, an upgraded WebSocket runs here.

use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use wirestate_engine::eio::{ErrorCode, Reply as EioReply};
use wirestate_engine::http::{Request, Response};
use wirestate_engine::redis::forward::{self, Envelope, Message};

use super::cluster::{Expect, Shared};
use super::*;
use crate::forward::{Forward, Inbox, Pending, SharedSlot, Slot, Tunnel, TunnelSend};
use crate::host::ConnGuard;

/// Serves an upgrade forwarded to this node (made where the runtime is known).
pub(super) type ServeTunnel = Box<dyn Fn(Tunnel, Request) + Send + Sync>;

/// What this node forwards and what it serves for others.
pub(super) struct Forwarding {
    /// This node's tag: the start of every session id it opens.
    pub(super) tag: String,
    /// Where others send to this node.
    pub(super) channel: String,
    key: String,
    next_id: AtomicU64,
    /// Requests this node forwarded, waiting for their answers.
    waiting: Mutex<HashMap<u64, SharedSlot<Response>>>,
    /// Tunnels this node opened, by id.
    tunnels: Mutex<HashMap<u64, Arc<Mutex<Inbox>>>>,
    /// What this node serves for others, by the sender's tag and id.
    served: Mutex<HashMap<(String, u64), Served>>,
    /// The node left the cluster: nothing more is forwarded.
    pub(super) closed: AtomicBool,
    serve_tunnel: ServeTunnel,
}

enum Served {
    /// A parked poll: set the slot to give it up.
    Poll(SharedSlot<()>),
    /// A WebSocket: what its client sends.
    Tunnel(Arc<Mutex<Inbox>>),
}

/// What a publish of a forwarded request or tunnel waits for: whether anyone heard it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Sent {
    Request(u64),
    Tunnel(u64),
}

impl Forwarding {
    pub(super) fn new(key: &str, tag: String, serve_tunnel: ServeTunnel) -> Self {
        Self {
            channel: forward::channel(key, &tag),
            tag,
            key: key.to_owned(),
            next_id: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            tunnels: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            serve_tunnel,
        }
    }

    fn envelope(&self, id: u64, message: Message) -> Bytes {
        Envelope {
            from: self.tag.clone(),
            id,
            message,
        }
        .encode()
    }

    /// A publish of `sent` reached no one (`PUBLISH` said 0), or Redis went away
    /// before it said: the owner is gone.
    pub(super) fn unreachable(&self, sent: Sent) {
        match sent {
            Sent::Request(id) => {
                if let Some(slot) = lock(&self.waiting).remove(&id) {
                    Slot::set(&slot, unknown_session());
                }
            }
            Sent::Tunnel(id) => {
                if let Some(inbox) = lock(&self.tunnels).remove(&id) {
                    let response = unknown_session();
                    Inbox::push(&inbox, response.encode_head(false));
                    Inbox::push(&inbox, response.body);
                    Inbox::end(&inbox);
                }
            }
        }
    }

    /// A message on this node's channel.
    pub(super) fn handle(shared: &Arc<Shared>, io: &SocketIo, payload: &[u8]) {
        let this = &shared.forwarding;
        let Some(Envelope { from, id, message }) =
            Envelope::decode(&Bytes::copy_from_slice(payload))
        else {
            tracing::debug!("unreadable forwarded message dropped");
            return;
        };
        match message {
            // Answers to what this node forwarded.
            Message::Response(response) => {
                if let Some(slot) = lock(&this.waiting).remove(&id) {
                    Slot::set(&slot, response);
                }
            }
            Message::Back(data) => {
                if let Some(inbox) = lock(&this.tunnels).get(&id) {
                    Inbox::push(inbox, data);
                }
            }
            Message::Closed => {
                if let Some(inbox) = lock(&this.tunnels).remove(&id) {
                    Inbox::end(&inbox);
                }
            }
            // What others forward to this node.
            Message::Request(request) => Self::serve(shared, io, from, id, request),
            Message::Abort => {
                if let Some(Served::Poll(slot)) = lock(&this.served).remove(&(from, id)) {
                    Slot::set(&slot, ());
                }
            }
            Message::Open(request) => {
                let inbox = Arc::new(Mutex::new(Inbox::default()));
                lock(&this.served).insert((from.clone(), id), Served::Tunnel(inbox.clone()));
                let back = Self::sender(shared, from, id, true);
                (this.serve_tunnel)(Tunnel::new(inbox, back), request);
            }
            Message::Data(data) => {
                if let Some(Served::Tunnel(inbox)) = lock(&this.served).get(&(from, id)) {
                    Inbox::push(inbox, data);
                }
            }
            Message::End => {
                if let Some(Served::Tunnel(inbox)) = lock(&this.served).remove(&(from, id)) {
                    Inbox::end(&inbox);
                }
            }
        }
    }

    /// Serves a polling request another node forwarded, and answers it there.
    fn serve(shared: &Arc<Shared>, io: &SocketIo, from: String, id: u64, request: Request) {
        let host = &io.inner.host;
        let channel = forward::channel(&shared.forwarding.key, &from);
        let answer = {
            let shared = Arc::downgrade(shared);
            move |response: Response| {
                if let Some(shared) = shared.upgrade() {
                    let payload = shared.forwarding.envelope(id, Message::Response(response));
                    shared.publish_raw(&channel, &payload, Expect::Nothing);
                }
            }
        };
        let Some(reply) = host.handle_request(&request, io.now()) else {
            return answer(Response::new(404));
        };
        let held = ConnGuard::holding(host.clone(), reply);
        host.drain_events();
        let mut guard = match held {
            Ok(guard) => guard,
            Err(EioReply::Respond(response)) => return answer(response),
            // `holding` gives back only what holds nothing: a response.
            Err(_) => return answer(Response::new(500)),
        };
        if guard.link().is_some() {
            // An upgrade comes as `Open`, never as a request: this one is refused.
            drop(guard);
            return answer(Response::new(400));
        }
        // A parked poll: it waits here until answered, or given up by its client.
        let abort = Slot::new();
        let key = (from, id);
        lock(&shared.forwarding.served).insert(key.clone(), Served::Poll(abort.clone()));
        let weak = Arc::downgrade(shared);
        host.spawn(Box::pin(async move {
            let response = poll_fn(|cx| {
                if Slot::poll_take(&abort, cx).is_ready() {
                    return Poll::Ready(None);
                }
                guard.poll_response(cx)
            })
            .await;
            drop(guard);
            if let Some(shared) = weak.upgrade() {
                lock(&shared.forwarding.served).remove(&key);
            }
            if let Some(response) = response {
                answer(response);
            }
        }));
    }

    /// Sends a tunnel's bytes to the other node: `back` when this node serves it.
    fn sender(shared: &Arc<Shared>, peer: String, id: u64, back: bool) -> TunnelSend {
        let channel = forward::channel(&shared.forwarding.key, &peer);
        let weak = Arc::downgrade(shared);
        Arc::new(move |data: Option<Bytes>| {
            let Some(shared) = weak.upgrade() else {
                return false;
            };
            let this = &shared.forwarding;
            let message = match (data, back) {
                (Some(data), false) => Message::Data(data),
                (Some(data), true) => Message::Back(data),
                (None, false) => {
                    lock(&this.tunnels).remove(&id);
                    Message::End
                }
                (None, true) => {
                    lock(&this.served).remove(&(peer.clone(), id));
                    Message::Closed
                }
            };
            let payload = this.envelope(id, message);
            shared.publish_raw(&channel, &payload, Expect::Nothing)
        })
    }
}

/// What a client gets for a session no node has: Engine.IO's own answer.
fn unknown_session() -> Response {
    ErrorCode::UnknownSid.response()
}

/// The host's view of the cluster's forwarding.
pub(super) struct Forwarder(pub(super) Weak<Shared>);

impl Forward for Forwarder {
    fn is_foreign(&self, sid: &str) -> bool {
        let Some(shared) = self.0.upgrade() else {
            return false;
        };
        let this = &shared.forwarding;
        !this.closed.load(Ordering::Relaxed)
            && forward::sid_tag(sid).is_some_and(|tag| tag != this.tag)
    }

    fn request(&self, sid: &str, request: Request) -> Pending {
        let (Some(shared), Some(tag)) = (self.0.upgrade(), forward::sid_tag(sid)) else {
            return Pending::ready(unknown_session());
        };
        let this = &shared.forwarding;
        let id = this.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Slot::new();
        lock(&this.waiting).insert(id, slot.clone());
        let channel = forward::channel(&this.key, tag);
        let payload = this.envelope(id, Message::Request(request));
        if !shared.publish_raw(&channel, &payload, Expect::Forwarded(Sent::Request(id))) {
            lock(&this.waiting).remove(&id);
            return Pending::ready(unknown_session());
        }
        let weak = Arc::downgrade(&shared);
        Pending::new(
            slot,
            Box::new(move || {
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let this = &shared.forwarding;
                if lock(&this.waiting).remove(&id).is_some() {
                    let payload = this.envelope(id, Message::Abort);
                    shared.publish_raw(&channel, &payload, Expect::Nothing);
                }
            }),
        )
    }

    fn open(&self, sid: &str, request: Request) -> Tunnel {
        let (Some(shared), Some(tag)) = (self.0.upgrade(), forward::sid_tag(sid)) else {
            return Tunnel::closed();
        };
        let this = &shared.forwarding;
        let id = this.next_id.fetch_add(1, Ordering::Relaxed);
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        lock(&this.tunnels).insert(id, inbox.clone());
        let channel = forward::channel(&this.key, tag);
        let payload = this.envelope(id, Message::Open(request));
        if !shared.publish_raw(&channel, &payload, Expect::Forwarded(Sent::Tunnel(id))) {
            lock(&this.tunnels).remove(&id);
            return Tunnel::closed();
        }
        Tunnel::new(
            inbox,
            Forwarding::sender(&shared, tag.to_owned(), id, false),
        )
    }
}
