// npm `ws` against `ws-rooms` (see src/bin/ws-rooms.rs): the chat protocol, rooms,
// broadcast with and without the sender, compression, authentication by close code,
// and `POST /connections/ID`. Prints `ok NAME` / `FAIL NAME: why` per case, then
// `N passed, M failed`.
//
//   node ws-rooms-client.mjs http://127.0.0.1:PORT
import WebSocket from "ws";

const base = process.argv[2];
const wsBase = base.replace(/^http/, "ws");
let passed = 0, failed = 0;

// A client whose messages are parsed and queued, to be taken in order.
function open(path, options = {}) {
  const ws = new WebSocket(wsBase + path, { perMessageDeflate: true, ...options });
  const queue = [], waiters = [];
  ws.on("message", (data, isBinary) => {
    const text = data.toString();
    let msg;
    try { msg = isBinary ? { binary: text } : JSON.parse(text); } catch { msg = { raw: text }; }
    const w = waiters.shift();
    if (w) w(msg); else queue.push(msg);
  });
  ws.next = (ms = 3000) => {
    if (queue.length) return Promise.resolve(queue.shift());
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no message within " + ms + " ms")), ms);
      waiters.push((m) => { clearTimeout(t); resolve(m); });
    });
  };
  ws.sendJson = (v) => ws.send(JSON.stringify(v));
  ws.opened = new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error("HTTP " + res.statusCode)));
  });
  ws.closed = new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  return ws;
}

async function chatter() {
  const ws = open("/ws/chat");
  await ws.opened;
  const hello = await ws.next();
  if (hello.type !== "connected" || typeof hello.id !== "string") throw new Error("connected: " + JSON.stringify(hello));
  ws.id = hello.id;
  return ws;
}

function eq(a, b, what) {
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${what}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`);
}

async function post(id, body) {
  const res = await fetch(`${base}/connections/${id}`, { method: "POST", body });
  return res.status;
}

// Everything `ws` sent before has been handled: its answers come in order on its own
// connection, and this one (the error for what is not JSON) goes to it alone.
async function sync(ws) {
  ws.send("sync");
  eq(await ws.next(), { type: "error", error: "invalid JSON" }, "sync");
}

// Nothing is queued for `ws` but what it has read: a text sent to it alone over HTTP
// comes next. (Call it once the server has handled what could have reached it.)
async function marker(ws) {
  const text = "marker-" + Math.random();
  eq(await post(ws.id, text), 200, "POST");
  eq(await ws.next(), { raw: text }, "marker");
}

const cases = {
  async "connected has an id"() {
    const [a, b] = [await chatter(), await chatter()];
    if (a.id === b.id) throw new Error("ids are not unique");
    a.close(); b.close();
  },
  async "invalid JSON gets an error and the connection stays"() {
    const a = await chatter();
    a.send("not json {");
    eq(await a.next(), { type: "error", error: "invalid JSON" }, "error");
    a.sendJson({ type: "message", text: "still here", includeSelf: true });
    eq(await a.next(), { type: "chat-message", from: a.id, text: "still here" }, "after");
    a.close();
  },
  async "join-room tells the room's other members"() {
    const room = "r-" + Math.random();
    const [a, b] = [await chatter(), await chatter()];
    a.sendJson({ type: "join-room", room });
    await sync(a);
    b.sendJson({ type: "join-room", room });
    eq(await a.next(), { type: "user-joined", id: b.id, room }, "user-joined");
    await marker(b); // b was not told of its own joining
    a.close(); b.close();
  },
  async "message to a room reaches its members, not the sender"() {
    const room = "r-" + Math.random();
    const [a, b, c] = [await chatter(), await chatter(), await chatter()];
    for (const w of [a, b]) { w.sendJson({ type: "join-room", room }); await sync(w); }
    await a.next(); // b joined
    a.sendJson({ type: "message", text: "hi room", room });
    eq(await b.next(), { type: "chat-message", from: a.id, text: "hi room" }, "b");
    await marker(a); // not to the sender
    await marker(c); // nor outside the room
    a.close(); b.close(); c.close();
  },
  async "message without a room reaches every chat connection"() {
    const [a, b, c] = [await chatter(), await chatter(), await chatter()];
    a.sendJson({ type: "message", text: "to all" });
    for (const w of [b, c]) eq(await w.next(), { type: "chat-message", from: a.id, text: "to all" }, "to all");
    await marker(a); // not to the sender
    a.close(); b.close(); c.close();
  },
  async "includeSelf sends to the sender too"() {
    const a = await chatter();
    a.sendJson({ type: "message", text: "me too", includeSelf: true });
    eq(await a.next(), { type: "chat-message", from: a.id, text: "me too" }, "self");
    a.close();
  },
  async "leave-room stops the room's messages"() {
    const room = "r-" + Math.random();
    const [a, b] = [await chatter(), await chatter()];
    for (const w of [a, b]) { w.sendJson({ type: "join-room", room }); await sync(w); }
    await a.next(); // b joined
    a.sendJson({ type: "leave-room", room });
    await sync(a);
    b.sendJson({ type: "message", text: "gone?", room, includeSelf: true });
    eq(await b.next(), { type: "chat-message", from: b.id, text: "gone?" }, "b's own");
    await marker(a); // a, out of the room, did not get it
    a.close(); b.close();
  },
  async "closing tells the others user-left"() {
    const [a, b] = [await chatter(), await chatter()];
    const id = b.id;
    b.close(1000);
    eq(await a.next(), { type: "user-left", id }, "user-left");
    a.close();
  },
  async "large broadcasts are compressed and arrive intact"() {
    const room = "big-" + Math.random();
    const [a, b, c] = [await chatter(), await chatter(), await chatter()];
    if (!String(a.extensions).includes("permessage-deflate") && !a.extensions["permessage-deflate"]) {
      throw new Error("permessage-deflate not negotiated: " + JSON.stringify(a.extensions));
    }
    for (const w of [a, b, c]) { w.sendJson({ type: "join-room", room }); await sync(w); }
    // a hears b and c join, b hears c; sync's answer came after the first.
    eq((await a.next()).type, "user-joined", "a"); eq((await a.next()).type, "user-joined", "a");
    eq(await b.next(), { type: "user-joined", id: c.id, room }, "b");
    const text = "x".repeat(64 * 1024) + "end";
    a.sendJson({ type: "message", text, room });
    for (const w of [b, c]) eq((await w.next()).text, text, "big text");
    a.close(); b.close(); c.close();
  },
  async "private without a token closes 4001"() {
    const ws = open("/ws/private");
    eq(await ws.closed, { code: 4001, reason: "No token provided" }, "close");
  },
  async "private with a bad token closes 4002"() {
    const ws = open("/ws/private?token=nope");
    eq(await ws.closed, { code: 4002, reason: "Invalid token" }, "close");
  },
  async "private with the secret authenticates"() {
    const ws = open("/ws/private?token=secret");
    await ws.opened;
    eq(await ws.next(), { type: "authenticated", user: "alice" }, "authenticated");
    ws.close();
  },
  async "POST /connections/ID sends to that connection"() {
    const a = await chatter();
    eq(await post(a.id, "from http"), 200, "status");
    eq(await a.next(), { raw: "from http" }, "message");
    a.close();
    await a.closed;
    // Gone once closed (the registry forgets it when the connection ends).
    for (let i = 0; i < 50 && (await post(a.id, "x")) !== 404; i++) await new Promise((r) => setTimeout(r, 20));
    eq(await post(a.id, "late"), 404, "after close");
    eq(await post("no-such-id", "x"), 404, "unknown id");
  },
  async "an unknown path is 404"() {
    const ws = open("/ws/nowhere");
    try { await ws.opened; throw new Error("opened"); } catch (e) { if (!/404/.test(e.message)) throw e; }
  },
};

for (const [name, run] of Object.entries(cases)) {
  try {
    await Promise.race([run(), new Promise((_, r) => setTimeout(() => r(new Error("timeout")), 10000))]);
    console.log("ok " + name); passed++;
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`); failed++;
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
