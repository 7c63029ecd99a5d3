// npm socket.io-client against the `demo` binary (namespace /chat; the protocol is in
// conformance/src/demo.rs): the auth challenge and its timeout, the room policy,
// schema-validated chat, dm to every socket of a user, queued jobs, a panicking
// handler. Over websocket and over polling.
// Usage: node demo-client.mjs http://127.0.0.1:3000
// Prints `ok NAME` / `FAIL NAME: why` per case, then `N passed, M failed`.
import { io } from "socket.io-client";

const url = (process.argv[2] ?? "http://127.0.0.1:3000") + "/chat";
const results = [];
let seq = 0;

function connect(transports = ["websocket"]) {
  return io(url, { forceNew: true, reconnection: false, timeout: 5000, transports });
}

function once(socket, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    socket.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

function assert(cond, what) {
  if (!cond) throw new Error(what);
}

function eq(a, b, what) {
  const [x, y] = [JSON.stringify(a), JSON.stringify(b)];
  assert(x === y, `${what}: got ${x}, want ${y}`);
}

async function ask(socket, event, data) {
  return socket.timeout(5000).emitWithAck(event, data);
}

async function login(name, transports) {
  const s = connect(transports);
  await once(s, "connect");
  const authenticated = once(s, "authenticated");
  const ack = await ask(s, "authenticate", { name });
  const [me] = await authenticated;
  eq(me, { id: s.id, name }, "authenticated");
  eq(ack, { status: "ok", data: me }, "authenticate ack");
  return s;
}

function unique(prefix) {
  seq += 1;
  return `${prefix}${process.pid}-${seq}`;
}

async function run(name, f) {
  const sockets = [];
  try {
    await f(sockets);
    results.push(true);
    console.log(`ok   ${name}`);
  } catch (e) {
    results.push(false);
    console.log(`FAIL ${name}: ${e.message}`);
  } finally {
    for (const s of sockets) s.disconnect();
  }
}

for (const transports of [["websocket"], ["polling"]]) {
  const t = transports[0];

  await run(`unauthenticated events are refused, a bad name too [${t}]`, async (sockets) => {
    const s = connect(transports);
    sockets.push(s);
    await once(s, "connect");
    const ack = await ask(s, "chat", { room: "lobby", text: "hi" });
    eq(ack.status, "error", "status");
    eq(ack.error.code, "UNAUTHENTICATED", "code");
    assert(typeof ack.error.message === "string", "a message");
    const refused = once(s, "unauthenticated");
    const bad = await ask(s, "authenticate", { name: "Not Valid!" });
    eq(bad.status, "error", "bad name status");
    const [why] = await refused;
    assert(typeof why.message === "string", "unauthenticated carries a message");
  });

  await run(`authenticate, then join the policy allows [${t}]`, async (sockets) => {
    const s = await login(unique("ann"), transports);
    sockets.push(s);
    const room = unique("room-");
    eq(await ask(s, "join", { rooms: [room, "admins"] }), { status: "ok", data: { joined: [room], denied: ["admins"] } }, "join");
    eq(await ask(s, "leave", { rooms: [room] }), { status: "ok", data: { left: [room], denied: [] } }, "leave");
  });

  await run(`chat reaches the room, the sender included [${t}]`, async (sockets) => {
    const an = unique("a");
    const a = await login(an, transports);
    const b = await login(unique("b"), transports);
    const c = await login(unique("c"), transports);
    sockets.push(a, b, c);
    const room = unique("room-");
    await ask(a, "join", { rooms: [room] });
    await ask(b, "join", { rooms: [room] });
    let leaked = null;
    c.on("message", (m) => { if (m.room === room) leaked = m; });
    const [ga, gb] = [once(a, "message"), once(b, "message")];
    const ack = await ask(a, "chat", { room, text: "hello" });
    eq(ack.status, "ok", "status");
    assert(typeof ack.data.id === "string" && typeof ack.data.at === "number", "id and at");
    const want = { id: ack.data.id, room, from: an, text: "hello", at: ack.data.at };
    const [[ma], [mb]] = await Promise.all([ga, gb]);
    eq(ma, want, "the sender's message");
    eq(mb, want, "the other member's message");
    await new Promise((r) => setTimeout(r, 200));
    assert(leaked === null, "a socket not in the room got it");
  });

  await run(`invalid chat is VALIDATION_PAYLOAD_ERROR, another room NOT_IN_ROOM [${t}]`, async (sockets) => {
    const s = await login(unique("v"), transports);
    sockets.push(s);
    const bad = await ask(s, "chat", { room: "lobby", text: "x".repeat(501) });
    eq(bad, {
      status: "error",
      error: {
        code: "VALIDATION_PAYLOAD_ERROR",
        payload: [{
          instancePath: "/text", schemaPath: "#/properties/text/maxLength", keyword: "maxLength",
          params: { limit: 500 }, message: "must NOT have more than 500 characters",
        }],
      },
    }, "too long");
    const extra = await ask(s, "chat", { room: "lobby", text: "hi", x: 1 });
    eq(extra.error.payload[0].keyword, "additionalProperties", "extra field");
    const away = await ask(s, "chat", { room: "room-elsewhere", text: "hi" });
    eq(away.status, "error", "status");
    eq(away.error.code, "NOT_IN_ROOM", "code");
  });

  await run(`dm reaches every socket of the user [${t}]`, async (sockets) => {
    const name = unique("d");
    const d1 = await login(name, transports);
    const d2 = await login(name, ["websocket"]);
    const from = await login(unique("f"), transports);
    sockets.push(d1, d2, from);
    const [g1, g2] = [once(d1, "dm"), once(d2, "dm")];
    eq(await ask(from, "dm", { to: name, text: "psst" }), { status: "ok", data: { delivered: 2 } }, "ack");
    const [[m1], [m2]] = await Promise.all([g1, g2]);
    eq([m1.text, m2.text], ["psst", "psst"], "texts");
    assert(m1.from.startsWith("f") && typeof m1.at === "number", JSON.stringify(m1));
  });

  await run(`job is queued, then ws:result; 13 is ws:error [${t}]`, async (sockets) => {
    const s = await login(unique("j"), transports);
    sockets.push(s);
    const started = Date.now();
    const result = once(s, "ws:result");
    const ack = await ask(s, "job", { n: 3 });
    eq([ack.queued, ack.eventName], [true, "job"], "queued ack");
    assert(Date.now() - started < 250, "the ack came at once");
    const [r] = await result;
    eq(r, { requestId: ack.requestId, result: { n: 3 } }, "result");
    assert(Date.now() - started >= 300, "the result came after 300 ms");
    const failed = once(s, "ws:error");
    const ack13 = await ask(s, "job", { n: 13 });
    const [e] = await failed;
    eq([e.requestId, e.error.code], [ack13.requestId, "JOB_FAILED"], "error");
    assert(typeof e.error.message === "string", "message");
  });

  await run(`boom answers INTERNAL_SERVER_ERROR and the socket stays [${t}]`, async (sockets) => {
    const s = await login(unique("b"), transports);
    sockets.push(s);
    eq(await ask(s, "boom", {}), {
      status: "error",
      error: { code: "INTERNAL_SERVER_ERROR", message: "An internal server error has occurred." },
    }, "boom");
    assert(s.connected, "still connected");
    eq((await ask(s, "join", { rooms: ["lobby"] })).status, "ok", "still served");
  });
}

await run("a socket that never authenticates is disconnected after 10 s", async (sockets) => {
  const s = connect();
  sockets.push(s);
  await once(s, "connect");
  const started = Date.now();
  const gone = once(s, "disconnect", 15000);
  const [why] = await once(s, "unauthenticated", 15000);
  assert(typeof why.message === "string", "a message");
  const [reason] = await gone;
  eq(reason, "io server disconnect", "reason");
  const waited = Date.now() - started;
  assert(waited > 9000 && waited < 12000, `after ${waited} ms`);
});

const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(results.length - passed === 0 ? 0 : 1);
