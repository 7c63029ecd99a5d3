// Drives the npm socket.io-client against our `sio-server`.
// Usage: [PARSER=msgpack] node sio-client.mjs http://127.0.0.1:3000 [recovery]
// With PARSER=msgpack the client uses socket.io-msgpack-parser (the server must too).
// Prints one line per case and ends with `N passed, M failed`.
import { io } from "socket.io-client";

const url = process.argv[2] ?? "http://127.0.0.1:3000";
const msgpack = process.env.PARSER === "msgpack" ? await import("socket.io-msgpack-parser") : null;
const base = msgpack ? { parser: msgpack.default ?? msgpack } : {};
const recoveryMode = process.argv[3] === "recovery";
const TRANSPORTS = {
  polling: ["polling"],
  websocket: ["websocket"],
  "polling+upgrade": ["polling", "websocket"],
};

const results = [];

function connect(nsp, options = {}) {
  return io(url + nsp, { ...base, forceNew: true, reconnection: false, timeout: 5000, ...options });
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

function expectNothing(socket, event, ms = 300) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    socket.once(event, (...args) => {
      clearTimeout(timer);
      reject(new Error(`unexpected ${event} ${JSON.stringify(args)}`));
    });
  });
}

function same(a, b) {
  if (Buffer.isBuffer(a) || a instanceof ArrayBuffer || ArrayBuffer.isView(a)) {
    return (Buffer.isBuffer(b) || b instanceof ArrayBuffer || ArrayBuffer.isView(b)) &&
      Buffer.from(a).equals(Buffer.from(b));
  }
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (a && typeof a === "object") {
    const ka = Object.keys(a);
    return b && typeof b === "object" && ka.length === Object.keys(b).length && ka.every((k) => same(a[k], b[k]));
  }
  return a === b;
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function run(name, body) {
  const sockets = [];
  const track = (s) => (sockets.push(s), s);
  try {
    await Promise.race([
      body(track),
      new Promise((_, reject) => setTimeout(() => reject(new Error("case timeout")), 15_000)),
    ]);
    results.push({ name, error: null });
  } catch (e) {
    results.push({ name, error: e.message });
  } finally {
    for (const s of sockets) s.disconnect();
  }
}

const args = [1, "two", { three: [3] }, Buffer.from([1, 2, 3]), "héllo €𝄞"];

for (const [tname, transports] of Object.entries(TRANSPORTS)) {
  if (recoveryMode) break;
  await run(`${tname}: connect with auth, auth echoed`, async (track) => {
    const s = track(connect("/", { transports, auth: { token: "abc", n: 1 } }));
    const [auth] = await once(s, "auth");
    check(same(auth, { token: "abc", n: 1 }), `auth ${JSON.stringify(auth)}`);
    check(s.connected && typeof s.id === "string", "connected with an id");
    if (transports.length === 2) {
      if (s.io.engine.transport.name !== "websocket") await once(s.io.engine, "upgrade");
      check(s.io.engine.transport.name === "websocket", "upgraded");
    }
  });
  await run(`${tname}: event round trip with binary`, async (track) => {
    const s = track(connect("/", { transports }));
    await once(s, "connect");
    s.emit("message", ...args);
    const back = await once(s, "message-back");
    check(same(back, args), `message-back ${JSON.stringify(back)}`);
  });
  await run(`${tname}: client ack (emitWithAck)`, async (track) => {
    const s = track(connect("/", { transports }));
    await once(s, "connect");
    const answer = await s.timeout(5000).emitWithAck("message-with-ack", ...args);
    check(same(answer, args[0]), `ack ${JSON.stringify(answer)}`);
    const all = await new Promise((resolve) => s.emit("message-with-ack", ...args, (...a) => resolve(a)));
    check(same(all, args), `ack args ${JSON.stringify(all)}`);
  });
  await run(`${tname}: server ack (server asks, client answers)`, async (track) => {
    const s = track(connect("/", { transports }));
    s.on("ask", (q, cb) => cb(`answer to ${q}`, Buffer.from([9])));
    await once(s, "connect");
    s.emit("ask-me");
    const answer = await once(s, "answer");
    check(same(answer, ["answer to question", Buffer.from([9])]), `answer ${JSON.stringify(answer)}`);
  });
}

if (!recoveryMode) {
  await run("namespaces: /custom, dynamic, unknown", async (track) => {
    const c = track(connect("/custom", { auth: { x: 1 } }));
    const [auth] = await once(c, "auth");
    check(same(auth, { x: 1 }), "custom auth");
    const d = track(connect("/dyn-7"));
    const [hello] = await once(d, "hello");
    check(hello === "/dyn-7", `hello ${hello}`);
    const n = track(connect("/nope"));
    const [err] = await once(n, "connect_error");
    check(err.message === "Invalid namespace", `error ${err.message}`);
  });
  await run("multiplexing: several namespaces over one connection", async (track) => {
    const main = track(io(url, { ...base, forceNew: true, reconnection: false, auth: { m: 1 } }));
    const custom = track(main.io.socket("/custom", { auth: { m: 2 } }));
    custom.connect();
    const [[a], [b]] = await Promise.all([once(main, "auth"), once(custom, "auth")]);
    check(same(a, { m: 1 }) && same(b, { m: 2 }), "auth per namespace");
    check(main.io.engine === custom.io.engine, "one engine");
    check(main.id !== custom.id, "one sid per namespace");
  });
  await run("middleware: rejection with data, then acceptance", async (track) => {
    const bad = track(connect("/secure", { auth: { token: "wrong" } }));
    const [err] = await once(bad, "connect_error");
    check(err.message === "not authorized", `message ${err.message}`);
    check(same(err.data, { code: 401 }), `data ${JSON.stringify(err.data)}`);
    const good = track(connect("/secure", { auth: { token: "secret" } }));
    const [welcome] = await once(good, "welcome");
    check(same(welcome, { user: "alice" }), `welcome ${JSON.stringify(welcome)}`);
  });
  await run("rooms: to-room reaches the room's other members only", async (track) => {
    const a = track(connect("/", { transports: ["websocket"] }));
    const b = track(connect("/", { transports: ["polling"] }));
    const c = track(connect("/", { transports: ["websocket"] }));
    await Promise.all([once(a, "connect"), once(b, "connect"), once(c, "connect")]);
    check((await a.timeout(5000).emitWithAck("join", "r1")) === "joined", "a joined");
    check((await b.timeout(5000).emitWithAck("join", "r1")) === "joined", "b joined");
    const noneForA = expectNothing(a, "room-message");
    const noneForC = expectNothing(c, "room-message");
    a.emit("to-room", "r1", "hi", Buffer.from([4]));
    const got = await once(b, "room-message");
    check(same(got, ["hi", Buffer.from([4])]), `room-message ${JSON.stringify(got)}`);
    await Promise.all([noneForA, noneForC]);
  });
  await run("server disconnect", async (track) => {
    const s = track(connect("/"));
    await once(s, "connect");
    s.emit("disconnect-me");
    const [reason] = await once(s, "disconnect");
    check(reason === "io server disconnect", `reason ${reason}`);
  });
  await run("handler error is reported through the ack", async (track) => {
    const s = track(connect("/"));
    await once(s, "connect");
    const answer = await s.timeout(5000).emitWithAck("to-room");
    check(same(answer, { status: "error", error: "to-room needs a room" }), `ack ${JSON.stringify(answer)}`);
  });
} else {
  await run("connection state recovery after a transport drop", async (track) => {
    const a = track(io(url, {
      ...base,
      forceNew: true,
      transports: ["websocket"],
      reconnectionDelay: 300,
      reconnectionDelayMax: 300,
    }));
    const other = track(connect("/", { transports: ["websocket"] }));
    await Promise.all([once(a, "connect"), once(other, "connect")]);
    check(a.recovered === false, "first connection is not recovered");
    const firstId = a.id;
    check((await a.timeout(5000).emitWithAck("join", "rec")) === "joined", "joined");
    // An event with an offset, so that the client has something to resume from.
    a.emit("message", "first");
    const [first] = await once(a, "message-back");
    check(first === "first", `first ${first}`);
    // Drop the transport; while a is away, a message goes to its room.
    const disconnected = once(a, "disconnect");
    a.io.engine.close();
    await disconnected;
    other.emit("to-room", "rec", "while-away");
    await new Promise((r) => setTimeout(r, 50));
    const missed = once(a, "room-message");
    await once(a, "connect");
    check(a.recovered === true, "recovered");
    check(a.id === firstId, "same id");
    const [text] = await missed;
    check(text === "while-away", `missed ${text}`);
    // Rooms came back too.
    other.emit("to-room", "rec", "after");
    const [after] = await once(a, "room-message");
    check(after === "after", `after ${after}`);
  });
}

let failed = 0;
for (const r of results) {
  console.log(`${r.error ? "FAIL" : "ok  "} socket.io-client ${r.name}${r.error ? ": " + r.error : ""}`);
  if (r.error) failed++;
}
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
