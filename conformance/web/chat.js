// The demo's chat page: socket.io-client 4 against namespace /chat (the protocol is
// in conformance/src/demo.rs). Its state is kept readable in the DOM for tests:
// <body data-connection data-transport data-user data-sid data-ready>, messages with
// data-from/data-room. data-ready is "true" once signed in with every room joined.
"use strict";

const $ = (sel) => document.querySelector(sel);
const body = document.body;
const state = { name: "", rooms: new Set(), current: "lobby", delivered: new Set(), socket: null };

function setConnection(value) {
  body.dataset.connection = value;
  $("#connection").textContent = value;
}

function setTransport(value) {
  body.dataset.transport = value;
  $("#transport").textContent = value || "no transport";
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

function renderRooms() {
  const list = $("#rooms");
  list.replaceChildren(
    ...[...state.rooms].sort().map((room) => {
      const li = el("li", { "data-room": room, textContent: room });
      if (room === state.current) li.classList.add("current");
      li.onclick = () => selectRoom(room);
      return li;
    }),
  );
  $("#current-room").textContent = state.current;
}

function selectRoom(room) {
  state.current = room;
  renderRooms();
}

function addMessage(m) {
  const li = el(
    "li",
    { "data-from": m.from, "data-room": m.room, "data-id": m.id },
    el("span", { className: "room-tag", textContent: "#" + m.room }),
    el("span", { className: "from", textContent: m.from }),
    el("span", { className: "text", textContent: m.text }),
  );
  if (m.from === state.name) {
    li.append(el("span", { className: "ack", textContent: "sending" }));
    if (state.delivered.has(m.id)) markDelivered(li);
  }
  $("#messages").append(li);
  li.scrollIntoView({ block: "nearest" });
}

function markDelivered(li) {
  li.dataset.delivered = "true";
  const ack = li.querySelector(".ack");
  if (ack) ack.textContent = "✓ delivered";
}

function renderOnline(users) {
  $("#online").replaceChildren(...users.sort().map((u) => el("li", { "data-user": u, textContent: u })));
}

async function join(room) {
  const answer = await state.socket.emitWithAck("join", { rooms: [room] });
  if (answer.status === "ok" && answer.data.joined.includes(room)) {
    state.rooms.add(room);
    selectRoom(room);
    return true;
  }
  alert(`Cannot join ${room}: rooms are lobby or room-<a-z0-9->.`);
  return false;
}

function signIn(name, room) {
  const socket = io("/chat", { transports: ["polling", "websocket"] });
  state.socket = socket;
  state.name = name;
  setConnection("reconnecting");

  socket.on("connect", () => {
    setConnection("connected");
    body.dataset.sid = socket.id;
    const engine = socket.io.engine;
    setTransport(engine.transport.name);
    engine.once("upgrade", () => setTransport(engine.transport.name));
    // After a restart the server knows nothing of us: sign in again, rejoin rooms.
    socket.emit("authenticate", { name });
  });
  socket.on("authenticated", async (data) => {
    body.dataset.user = data.name;
    $("#user").textContent = data.name;
    $("#signin").hidden = true;
    $("#chat").hidden = false;
    const wanted = [...state.rooms].filter((r) => r !== "lobby");
    state.rooms.add("lobby");
    for (const r of wanted) await join(r);
    if (room && !state.rooms.has(room)) await join(room);
    room = null;
    renderRooms();
    const who = await socket.emitWithAck("who", {});
    if (who.status === "ok") renderOnline(who.data.users);
    body.dataset.ready = "true";
  });
  socket.on("unauthenticated", (err) => {
    $("#signin-error").textContent = err.message;
    $("#signin").hidden = false;
    socket.disconnect();
    setConnection("disconnected");
  });
  socket.on("disconnect", (reason) => {
    body.dataset.ready = "false";
    setConnection(reason === "io client disconnect" || reason === "io server disconnect" ? "disconnected" : "reconnecting");
    setTransport("");
  });
  socket.io.on("reconnect_attempt", () => setConnection("reconnecting"));
  socket.on("message", addMessage);
  socket.on("presence", (p) => renderOnline(p.users));
  socket.on("dm", (m) => {
    $("#dms").append(
      el(
        "li",
        { "data-from": m.from, "data-room": "@" + name, "data-dm": "in" },
        el("span", { className: "from", textContent: m.from + " →" }),
        el("span", { className: "text", textContent: m.text }),
      ),
    );
  });
  socket.on("ws:result", (r) => finishJob(r.requestId, "done", `result: n = ${r.result.n}`));
  socket.on("ws:error", (r) => finishJob(r.requestId, "failed", `failed: ${r.error.message}`));
}

function finishJob(requestId, stateName, text) {
  const li = document.querySelector(`#jobs li[data-job="${CSS.escape(requestId)}"]`);
  if (!li) return;
  li.dataset.state = stateName;
  li.textContent = `${requestId}: ${text}`;
}

$('form[data-action="signin"]').addEventListener("submit", (e) => {
  e.preventDefault();
  $("#signin-error").textContent = "";
  signIn(e.target.name.value.trim(), null);
});

$('form[data-action="send"]').addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = e.target.text;
  const text = input.value;
  if (!text || !state.socket) return;
  input.value = "";
  const answer = await state.socket.emitWithAck("chat", { room: state.current, text });
  if (answer.status !== "ok") {
    alert(answer.error.message);
    return;
  }
  state.delivered.add(answer.data.id);
  const li = document.querySelector(`#messages li[data-id="${CSS.escape(answer.data.id)}"]`);
  if (li) markDelivered(li);
});

$('form[data-action="join"]').addEventListener("submit", async (e) => {
  e.preventDefault();
  const room = e.target.room.value.trim();
  if (room && (await join(room))) e.target.room.value = "";
});

$("#leave").addEventListener("click", async () => {
  const room = state.current;
  await state.socket.emitWithAck("leave", { rooms: [room] });
  state.rooms.delete(room);
  state.current = state.rooms.has("lobby") ? "lobby" : [...state.rooms][0] || "lobby";
  renderRooms();
});

$('form[data-action="dm"]').addEventListener("submit", async (e) => {
  e.preventDefault();
  const to = e.target.to.value.trim();
  const text = e.target.text.value;
  const answer = await state.socket.emitWithAck("dm", { to, text });
  if (answer.status === "ok") {
    e.target.text.value = "";
    $("#dms").append(
      el(
        "li",
        { "data-from": state.name, "data-room": "@" + to, "data-dm": "out" },
        el("span", { className: "from", textContent: "→ " + to }),
        el("span", { className: "text", textContent: text }),
        el("span", { className: "ack", textContent: `delivered to ${answer.data.delivered} socket(s)` }),
      ),
    );
  }
});

$('form[data-action="job"]').addEventListener("submit", async (e) => {
  e.preventDefault();
  const n = Number(e.target.n.value);
  const answer = await state.socket.emitWithAck("job", { n });
  if (answer.queued) {
    $("#jobs").append(
      el("li", { "data-job": answer.requestId, "data-state": "queued", textContent: `${answer.requestId}: queued (${n} steps)` }),
    );
  } else if (answer.status === "error") {
    alert(answer.error.message);
  }
});

const params = new URLSearchParams(location.search);
if (params.get("name")) signIn(params.get("name"), params.get("room"));
