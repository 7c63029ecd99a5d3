// Node's socket.io 4.8 server with the same namespaces and events as our `sio-server`,
// for our Rust client to run against.
// Usage: [TLS_CERT=cert.pem TLS_KEY=key.pem] [REDIS_URL=redis://... [REDIS_KEY=key]]
//        node sio-server.mjs PORT [recovery]
// With REDIS_URL it joins a cluster through @socket.io/redis-adapter 8 (classic, or
// sharded with SHARDED=static|dynamic|dynamic-private; REDIS_CLUSTER=1 with it: the URL
// is one node of a Redis Cluster) and has the cluster handlers of our
// `sio-server --redis`.
import { readFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 3000);
const recovery = process.argv[3] === "recovery";
// With TLS_CERT and TLS_KEY (PEM files) set: https:// and wss:// only.
const httpServer = process.env.TLS_CERT
  ? createHttpsServer({ cert: readFileSync(process.env.TLS_CERT), key: readFileSync(process.env.TLS_KEY) })
  : createHttpServer();
const io = new Server(httpServer, {
  pingInterval: 300,
  pingTimeout: 200,
  connectTimeout: 1000,
  cors: { origin: "*" },
  ...(recovery ? { connectionStateRecovery: { maxDisconnectionDuration: 120_000 } } : {}),
});

const cluster = Boolean(process.env.REDIS_URL);
if (cluster) {
  const { createClient, createCluster } = await import("redis");
  const { createAdapter, createShardedAdapter } = await import("@socket.io/redis-adapter");
  const pub = process.env.REDIS_CLUSTER
    ? createCluster({ rootNodes: [{ url: process.env.REDIS_URL }] })
    : createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  pub.on("error", (e) => console.error("redis pub:", e.message));
  sub.on("error", (e) => console.error("redis sub:", e.message));
  await Promise.all([pub.connect(), sub.connect()]);
  const key = process.env.REDIS_KEY || "socket.io";
  io.adapter(process.env.SHARDED
    ? createShardedAdapter(pub, sub, { channelPrefix: key, subscriptionMode: process.env.SHARDED })
    : createAdapter(pub, sub, { key }));
  io.of("/").on("ping", (_arg, ack) => ack("pong"));
}

function clusterHandlers(socket) {
  socket.on("broadcast-all", (...args) => io.emit("broadcast", ...args));
  socket.on("fetch-room", async (room, ack) => {
    try {
      const sockets = await io.in(room).fetchSockets();
      ack(sockets.map((s) => s.id).sort());
    } catch (e) {
      ack({ error: e.message });
    }
  });
  socket.on("server-side-emit", async (arg, ack) => {
    try {
      ack(await io.serverSideEmitWithAck("ping", arg));
    } catch (e) {
      ack({ error: "timeout", responses: e.responses ?? [] });
    }
  });
  socket.on("sockets-join", (room, other, ack) => {
    io.in(room).socketsJoin(other);
    if (typeof ack === "function") ack("ok");
  });
  socket.on("disconnect-room", (room, ack) => {
    if (typeof ack === "function") ack("ok");
    io.in(room).disconnectSockets();
  });
  socket.on("count-acks", async (ack) => {
    try {
      const answers = await io.timeout(1000).emitWithAck("question");
      ack(answers.length);
    } catch (e) {
      ack((e.responses ?? []).length);
    }
  });
}

io.of("/").on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth);
  if (cluster) clusterHandlers(socket);
  socket.on("message", (...args) => socket.emit("message-back", ...args));
  socket.on("message-with-ack", (...args) => {
    const ack = args.pop();
    ack(...args);
  });
  socket.on("join", (room, ack) => {
    socket.join(room);
    ack("joined");
  });
  socket.on("to-room", (room, ...args) => socket.to(room).emit("room-message", ...args));
  socket.on("ask-me", async () => {
    try {
      const answer = await socket.timeout(5000).emitWithAck("ask", "question");
      socket.emit("answer", answer);
    } catch (e) {
      socket.emit("answer", { error: e.message });
    }
  });
  socket.on("disconnect-me", () => socket.disconnect());
  socket.on("drop-me", () => socket.conn.close());
});
io.of("/custom").on("connection", (socket) => socket.emit("auth", socket.handshake.auth));
io.of("/secure")
  .use((socket, next) => {
    if (socket.handshake.auth.token === "secret") {
      socket.data.user = "alice";
      next();
    } else {
      const err = new Error("not authorized");
      err.data = { code: 401 };
      next(err);
    }
  })
  .on("connection", (socket) => socket.emit("welcome", { user: socket.data.user }));

httpServer.listen(port, "127.0.0.1", () => {
  console.error(`socket.io ${recovery ? "(recovery) " : ""}listening on ${port}`);
});
