// Node's socket.io 4.8 server for benches/compare.sh, with the handlers of
// bench-server's Socket.IO servers: every socket joins room "r"; event `echo` is acked
// with its argument; event `bcast` is forwarded as `msg` to room "r" except the sender.
// Usage: node sio-echo-server.mjs PORT
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 3000);
const httpServer = createServer();
const io = new Server(httpServer);
io.on("connection", (socket) => {
  socket.join("r");
  socket.on("echo", (data, ack) => ack(data));
  socket.on("bcast", (data) => socket.to("r").emit("msg", data));
});
httpServer.listen(port, "127.0.0.1");
