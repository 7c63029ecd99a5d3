// Node's socket.io 4.8 server for benches/compare.sh, with the handlers of
// bench-server's Socket.IO servers: every socket joins room "r"; event `echo` is acked
// with its argument; event `bcast` is forwarded as `msg` to room "r" except the sender.
// With REDIS_URL, a node of a cluster through @socket.io/redis-adapter (classic).
// Usage: [REDIS_URL=redis://...] node sio-echo-server.mjs PORT
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 3000);
const httpServer = createServer();
const io = new Server(httpServer);
if (process.env.REDIS_URL) {
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
}
io.on("connection", (socket) => {
  socket.join("r");
  socket.on("echo", (data, ack) => ack(data));
  socket.on("bcast", (data) => socket.to("r").emit("msg", data));
});
httpServer.listen(port, "127.0.0.1");
