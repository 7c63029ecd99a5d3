// Drives a cluster of Socket.IO servers on one Redis through the cluster handlers of
// `sio-server --redis` (and of sio-server.mjs with REDIS_URL): clients of server A
// and of server B check that broadcasts, rooms, fetchSockets, serverSideEmit,
// socketsJoin, disconnectSockets and broadcast acks cross between them, and that
// @socket.io/redis-emitter reaches both.
// With RUST_EMITTER="PATH --runtime RT" wirestate's `redis-emitter` binary must reach
// them too. With SHARDED set (the servers speak the sharded adapter) the emitters are
// left out: they publish on the classic channels only. NODES=N: the cluster has N
// nodes in all (servers of several shards are a node per shard; default 2).
// Usage: node cluster-client.mjs URL_A URL_B REDIS_URL [KEY]
//        node cluster-client.mjs probe URL    one server, alone or cut off from Redis:
//        its own broadcasts reach its own client, and fetch-room and server-side-emit
//        answer (with what it can reach) within the request timeout.
//        node cluster-client.mjs nosticky URL_A URL_B   no sticky sessions: the real
//        client through a proxy that sends each request (and upgrade) to either
//        server, round robin or "handshake on A, the rest on B"; then the cost, as
//        `cost ...` lines: ack round trips with every request on A, and with the
//        handshake on A and the rest forwarded from B.
// Prints `ok NAME` or `FAIL NAME: why` per case, then `N passed, M failed`.
import { io } from "socket.io-client";
import http from "node:http";
import { readFileSync } from "node:fs";
import net from "node:net";
import { createClient } from "redis";
import { Emitter } from "@socket.io/redis-emitter";
import { execFile } from "node:child_process";

const [urlA, urlB, redisUrl, key = "socket.io"] = process.argv.slice(2);
let passed = 0, failed = 0;
const ok = (name) => { passed++; console.log(`ok ${name}`); };
const fail = (name, why) => { failed++; console.log(`FAIL ${name}: ${why}`); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function connect(url, transports) {
  return new Promise((resolve, reject) => {
    const s = io(url, { transports, forceNew: true, reconnection: false });
    s.on("question", (ack) => ack("answer"));
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => reject(e));
    setTimeout(() => reject(new Error(`no connection to ${url}`)), 5000);
  });
}

// The next `event` on `socket`, or null after `ms`.
function next(socket, event, ms = 2000) {
  return new Promise((resolve) => {
    const t = setTimeout(() => { socket.off(event, h); resolve(null); }, ms);
    const h = (...args) => { clearTimeout(t); resolve(args); };
    socket.once(event, h);
  });
}

// Waits until `probe()` returns `want` (the cluster's joins travel through Redis).
async function until(probe, want, ms = 3000) {
  const end = Date.now() + ms;
  let got;
  while (Date.now() < end) {
    got = await probe();
    if (eq(got, want)) return got;
    await sleep(50);
  }
  return got;
}

async function probe(url) {
  const s = await connect(url, ["websocket"]);
  const got = next(s, "broadcast");
  s.emit("broadcast-all", "alone");
  const b = await got;
  b && b[0] === "alone" ? ok("local broadcast") : fail("local broadcast", JSON.stringify(b));
  let t0 = Date.now();
  const ids = await s.timeout(7000).emitWithAck("fetch-room", s.id).catch((e) => e.message);
  eq(ids, [s.id]) && Date.now() - t0 < 6000
    ? ok(`fetch-room answered in ${Date.now() - t0} ms`) : fail("fetch-room", JSON.stringify(ids));
  t0 = Date.now();
  const sse = await s.timeout(7000).emitWithAck("server-side-emit", 1).catch((e) => e.message);
  Array.isArray(sse) && Date.now() - t0 < 6000
    ? ok(`server-side-emit answered ${JSON.stringify(sse)} in ${Date.now() - t0} ms`) : fail("server-side-emit", JSON.stringify(sse));
  s.disconnect();
}

// A proxy in front of `targets` that sends each request and each upgrade where
// `pick(n, url)` says (n counts them), on a connection of its own.
function proxy(targets, pick) {
  let n = 0;
  const where = (req) => new URL(targets[pick(n++, req.url)]);
  const server = http.createServer((req, res) => {
    const t = where(req);
    const up = http.request({ host: t.hostname, port: t.port, method: req.method,
      path: req.url, headers: req.headers, agent: false }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on("error", () => { res.writeHead(502); res.end(); });
    req.pipe(up);
  });
  server.on("upgrade", (req, socket, head) => {
    const t = where(req);
    const up = net.connect(Number(t.port), t.hostname, () => {
      const lines = Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`);
      up.write(`${req.method} ${req.url} HTTP/1.1\r\n${lines.join("\r\n")}\r\n\r\n`);
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on("error", () => socket.destroy());
    socket.on("error", () => up.destroy());
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

const ROUND_ROBIN = (n) => n % 2;
const HANDSHAKE_ON_A = (_n, url) => (url.includes("sid=") ? 1 : 0);
const ALL_ON_A = () => 0;

// Sequential acks on `s`: whether each came back right, and the mean round trip.
async function acks(s, count) {
  const t0 = performance.now();
  let good = true;
  for (let i = 0; i < count; i++) {
    const back = await s.timeout(5000).emitWithAck("message-with-ack", [i, "x"]).catch((e) => e.message);
    good &&= eq(back, [i, "x"]);
  }
  return { good, ms: (performance.now() - t0) / count };
}

async function upgraded(s) {
  const engine = s.io.engine;
  if (engine.transport.name === "websocket") return true;
  return new Promise((resolve) => {
    engine.once("upgrade", () => resolve(true));
    setTimeout(() => resolve(engine.transport.name === "websocket"), 3000);
  });
}

async function nosticky() {
  const servers = [urlB, process.argv[4]];
  for (const [label, pick] of [["round robin", ROUND_ROBIN], ["handshake on A, the rest on B", HANDSHAKE_ON_A]]) {
    const p = await proxy(servers, pick);
    const url = `http://127.0.0.1:${p.address().port}`;
    const polling = await connect(url, ["polling"]);
    const got = next(polling, "broadcast");
    polling.emit("broadcast-all", "everywhere");
    const b = await got;
    const r = await acks(polling, 20);
    r.good && b && b[0] === "everywhere" ? ok(`polling, ${label}`) : fail(`polling, ${label}`, JSON.stringify([r, b]));
    polling.disconnect();
    const both = await connect(url, ["polling", "websocket"]);
    const up = await upgraded(both);
    const w = await acks(both, 20);
    up && w.good ? ok(`upgrade, ${label}`) : fail(`upgrade, ${label}`, JSON.stringify([up, w]));
    both.disconnect();
    p.close();
  }
  // The cost of forwarding: the same client, through the same proxy, all on A or
  // forwarded by B. With SERVER_PIDS ("PID_A PID_B") also the servers' CPU per ack,
  // user and system apart, from /proc (clock ticks: coarse, so many acks).
  const pids = (process.env.SERVER_PIDS || "").split(" ").filter(Boolean);
  const tick = 1e6 / 100; // µs per clock tick (USER_HZ)
  const cpu = () => pids.map((pid) => {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return [Number(f[11]), Number(f[12])]; // utime, stime
  }).reduce(([u, s], [u2, s2]) => [u + u2, s + s2], [0, 0]);
  for (const [transports, count] of [[["polling"], 300], [["polling", "websocket"], 2000]]) {
    const costs = [];
    for (const pick of [ALL_ON_A, HANDSHAKE_ON_A]) {
      const p = await proxy(servers, pick);
      const s = await connect(`http://127.0.0.1:${p.address().port}`, transports);
      if (transports.length > 1) await upgraded(s);
      await acks(s, 20);
      const before = cpu();
      const { ms } = await acks(s, count);
      const after = cpu();
      costs.push({ ms, user: (after[0] - before[0]) * tick / count, sys: (after[1] - before[1]) * tick / count });
      s.disconnect();
      p.close();
    }
    const [own, fwd] = costs;
    const cpuText = pids.length
      ? `; servers' CPU per ack: user ${own.user.toFixed(1)} / system ${own.sys.toFixed(1)} µs on the owner, user ${fwd.user.toFixed(1)} / system ${fwd.sys.toFixed(1)} µs forwarded`
      : "";
    console.log(`cost ${transports.at(-1)}: ${count} acks, ${own.ms.toFixed(3)} ms each on the owner, ${fwd.ms.toFixed(3)} ms forwarded (x${(fwd.ms / own.ms).toFixed(2)})${cpuText}`);
  }
}

async function main() {
  if (urlA === "probe") return probe(urlB);
  if (urlA === "nosticky") return nosticky();
  const a = await connect(urlA, ["websocket"]);
  const b = await connect(urlB, ["websocket"]);
  const bp = await connect(urlB, ["polling"]);
  const name = (s) => (s === a ? "A" : "B");

  // broadcast-all from either side reaches every client of both servers.
  for (const [from, label] of [[a, "A"], [b, "B"]]) {
    const got = Promise.all([a, b, bp].map((s) => next(s, "broadcast")));
    from.emit("broadcast-all", "hello", { from: label }, Buffer.from([1, 2, 3]));
    const all = await got;
    const good = all.every((x) => x && x[0] === "hello" && x[1].from === label &&
      Buffer.isBuffer(x[2]) && eq([...x[2]], [1, 2, 3]));
    good ? ok(`broadcast-all from ${label}`) : fail(`broadcast-all from ${label}`, JSON.stringify(all));
  }

  // join + to-room across servers. In the sharded dynamic mode a server subscribes to
  // a room's own channel when the room is made there, without waiting for Redis (Node
  // as the reference does; on a Redis Cluster node-redis may first connect to that
  // channel's primary): what is sent to the room before that is lost, by design. So
  // the message is sent again, for up to 3 s, until it arrives.
  const joined = await b.timeout(2000).emitWithAck("join", "r1");
  let toA = null;
  const onA = (...x) => { toA = x; };
  a.on("room-message", onA);
  let rm = null;
  for (let i = 0; i < 15 && !rm; i++) {
    const roomMsg = next(b, "room-message", 200);
    a.emit("to-room", "r1", "to r1", 42);
    rm = await roomMsg;
  }
  await sleep(300);
  a.off("room-message", onA);
  rm && rm[0] === "to r1" && rm[1] === 42 && joined === "joined" && toA === null
    ? ok("to-room A -> B") : fail("to-room A -> B", JSON.stringify([rm, toA]));

  // fetch-room, asked of either server.
  for (const s of [a, b]) {
    const ids = await until(() => s.timeout(6000).emitWithAck("fetch-room", "r1"), [b.id]);
    eq(ids, [b.id]) ? ok(`fetch-room asked of ${name(s)}`) : fail(`fetch-room asked of ${name(s)}`, JSON.stringify(ids));
  }

  // server-side-emit: every other node answers "pong".
  const pongs = Array(Number(process.env.NODES || 2) - 1).fill("pong");
  for (const s of [a, b]) {
    const answers = await s.timeout(6000).emitWithAck("server-side-emit", "ping?");
    eq(answers, pongs) ? ok(`server-side-emit asked of ${name(s)}`) : fail(`server-side-emit asked of ${name(s)}`, JSON.stringify(answers));
  }

  // sockets-join: every socket of r2 (on A) joins r3, asked of B.
  await a.timeout(2000).emitWithAck("join", "r2");
  const sj = await b.timeout(2000).emitWithAck("sockets-join", "r2", "r3");
  const r3 = await until(() => b.timeout(6000).emitWithAck("fetch-room", "r3"), [a.id]);
  sj === "ok" && eq(r3, [a.id]) ? ok("sockets-join asked of B") : fail("sockets-join asked of B", JSON.stringify([sj, r3]));

  // count-acks: every client of both servers answers.
  for (const s of [a, b]) {
    const n = await s.timeout(5000).emitWithAck("count-acks");
    n === 3 ? ok(`count-acks asked of ${name(s)}`) : fail(`count-acks asked of ${name(s)}`, JSON.stringify(n));
  }

  // @socket.io/redis-emitter reaches the clients of both servers (classic channels
  // only: the reference emitter has no sharded mode).
  const redis = createClient({ url: redisUrl });
  await redis.connect();
  const emitter = new Emitter(redis, { key });
  if (!process.env.SHARDED) {
    const got = Promise.all([a, b, bp].map((s) => next(s, "from-emitter")));
    emitter.emit("from-emitter", "all", 7);
    const all = await got;
    all.every((x) => x && x[0] === "all" && x[1] === 7) ? ok("redis-emitter emit") : fail("redis-emitter emit", JSON.stringify(all));
    const toB = next(b, "from-emitter");
    const notA2 = next(a, "from-emitter", 500);
    emitter.to("r1").emit("from-emitter", "r1 only");
    const x = await toB;
    x && x[0] === "r1 only" && (await notA2) === null ? ok("redis-emitter to room") : fail("redis-emitter to room", JSON.stringify(x));
  }

  // wirestate's redis-emitter binary reaches the clients of both servers.
  if (process.env.RUST_EMITTER && !process.env.SHARDED) {
    const [bin, ...pre] = process.env.RUST_EMITTER.split(" ");
    const rust = (...args) => new Promise((resolve) =>
      execFile(bin, [...pre, "--redis", redisUrl, "--redis-key", key, ...args], { timeout: 10000 },
        (err, _out, stderr) => resolve(err ? `${err.message} ${stderr}` : null)));
    const got = Promise.all([a, b, bp].map((s) => next(s, "from-rust", 5000)));
    const err = await rust("emit", "from-rust", '"all"', '{"n":1}');
    const all = await got;
    !err && all.every((x) => x && x[0] === "all" && x[1].n === 1)
      ? ok("rust emitter emit") : fail("rust emitter emit", err || JSON.stringify(all));
    const toB = next(b, "from-rust", 5000);
    const notA3 = next(a, "from-rust", 1000);
    const err2 = await rust("--to", "r1", "emit", "from-rust", '"r1 only"');
    const x = await toB;
    !err2 && x && x[0] === "r1 only" && (await notA3) === null
      ? ok("rust emitter to room") : fail("rust emitter to room", err2 || JSON.stringify(x));
    const err3 = await rust("--to", "r1", "sockets-join", "r9");
    const r9 = await until(() => a.timeout(6000).emitWithAck("fetch-room", "r9"), [b.id]);
    !err3 && eq(r9, [b.id]) ? ok("rust emitter sockets-join") : fail("rust emitter sockets-join", err3 || JSON.stringify(r9));
  }

  // disconnect-room: a socket of B in `bye`, asked of A.
  await bp.timeout(2000).emitWithAck("join", "bye");
  const gone = next(bp, "disconnect");
  await a.timeout(2000).emitWithAck("disconnect-room", "bye");
  const reason = await gone;
  reason && reason[0] === "io server disconnect" ? ok("disconnect-room asked of A") : fail("disconnect-room asked of A", JSON.stringify(reason));

  a.disconnect(); b.disconnect(); bp.disconnect();
  await redis.quit();
}

const timer = setTimeout(() => { fail("run", "timed out"); finish(); }, 60000);
function finish() {
  clearTimeout(timer);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
main().catch((e) => fail("run", e.stack || e.message)).finally(finish);
