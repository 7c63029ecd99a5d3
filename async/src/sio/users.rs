//! Users: an authenticated user id on a socket, emits to every socket of a user in
//! every namespace (and, through the room every such socket is in, across the
//! cluster), and presence.

use super::*;

/// The room every socket of user `id` is in: `user:<id>`.
pub const USER_ROOM_PREFIX: &str = "user:";

type PresenceHook = Arc<dyn Fn(&str, bool) + Send + Sync>;

/// The users of this server: sockets per user, and the presence hook.
#[derive(Default)]
pub(super) struct Users {
    sockets: HashMap<Arc<str>, usize>,
    hook: Option<PresenceHook>,
}

fn user_room(id: &str) -> Room {
    Room::from(format!("{USER_ROOM_PREFIX}{id}"))
}

impl Socket {
    /// Marks the socket as user `id`'s (Enfyra's `emitToUser` target, Ignis's
    /// authenticated client): it joins the room `user:<id>`, and the user is
    /// online here while one of its sockets is connected. A second call moves the
    /// socket to the new user.
    pub fn set_user(&self, id: &str) {
        let id: Arc<str> = Arc::from(id);
        let Some(old) = self.with_state(|s| s.user.replace(id.clone())) else {
            return;
        };
        if old.as_deref() == Some(&*id) {
            return;
        }
        if let Some(old) = old {
            self.leave(&user_room(&old));
            self.io.user_gone(&old);
        }
        self.join([user_room(&id)]);
        self.io.user_came(&id);
    }

    /// The user set with [`set_user`](Self::set_user).
    pub fn user(&self) -> Option<Arc<str>> {
        self.with_state(|s| s.user.clone()).flatten()
    }
}

impl SocketIo {
    pub(super) fn user_came(&self, id: &Arc<str>) {
        let hook = {
            let mut app = lock(&self.inner.app);
            let n = app.users.sockets.entry(id.clone()).or_insert(0);
            *n += 1;
            (*n == 1).then(|| app.users.hook.clone()).flatten()
        };
        if let Some(hook) = hook {
            let _ = catch_unwind(AssertUnwindSafe(|| hook(id, true)));
        }
    }

    /// A socket of user `id` left (or changed user).
    pub(super) fn user_gone(&self, id: &str) {
        let hook = {
            let mut app = lock(&self.inner.app);
            let last = match app.users.sockets.get_mut(id) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    app.users.sockets.remove(id);
                    true
                }
                None => false,
            };
            last.then(|| app.users.hook.clone()).flatten()
        };
        if let Some(hook) = hook {
            let _ = catch_unwind(AssertUnwindSafe(|| hook(id, false)));
        }
    }

    /// Emits `event` to every socket of user `id`, in every namespace, here and
    /// on the other servers of the cluster; returns how many local sockets it
    /// reached.
    pub fn emit_to_user<T: Serialize + ?Sized>(
        &self,
        id: &str,
        event: &str,
        data: &T,
    ) -> Result<usize, EmitError> {
        self.to_user(id).emit(event, data)
    }

    /// Targets every socket of user `id` in every namespace (for `except`,
    /// `volatile`, acks ...).
    pub fn to_user(&self, id: &str) -> Operator {
        self.all_namespaces().to(user_room(id))
    }

    /// User `id` has a socket connected to this server.
    pub fn user_online(&self, id: &str) -> bool {
        lock(&self.inner.app).users.sockets.contains_key(id)
    }

    /// User `id` has a socket on any server of the cluster (without a cluster, on
    /// this one). It asks the other servers as [`Operator::fetch_sockets`] does, and
    /// fails as it does.
    pub async fn fetch_user_online(&self, id: &str) -> Result<bool, RequestError> {
        Ok(!self.to_user(id).fetch_sockets().await?.is_empty())
    }

    /// The users with a socket connected to this server.
    pub fn users_online(&self) -> Vec<Arc<str>> {
        lock(&self.inner.app)
            .users
            .sockets
            .keys()
            .cloned()
            .collect()
    }

    /// The sockets of user `id` on this server, every namespace.
    pub fn user_sockets(&self, id: &str) -> Vec<Socket> {
        self.to_user(id).local_sockets()
    }

    /// Calls `hook(user, online)` when a user's first socket on this server
    /// connects (`true`) and when its last one leaves (`false`).
    pub fn on_presence(&self, hook: impl Fn(&str, bool) + Send + Sync + 'static) {
        lock(&self.inner.app).users.hook = Some(Arc::new(hook));
    }
}
