// Node's socket.io 4.8 server with the same namespaces and events as our `sio-server`,
// for our Rust client to run against.
// Usage: node sio-server.mjs PORT [recovery]
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 3000);
const recovery = process.argv[3] === "recovery";
const httpServer = createServer();
const io = new Server(httpServer, {
  pingInterval: 300,
  pingTimeout: 200,
  connectTimeout: 1000,
  cors: { origin: "*" },
  ...(recovery ? { connectionStateRecovery: { maxDisconnectionDuration: 120_000 } } : {}),
});

io.of("/").on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth);
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
