// Node's socket.io 4.8 echo-with-ack server for benches/compare.sh: event `echo` is
// acked with its argument. Usage: node sio-echo-server.mjs PORT
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 3000);
const httpServer = createServer();
const io = new Server(httpServer);
io.on("connection", (socket) => {
  socket.on("echo", (data, ack) => ack(data));
});
httpServer.listen(port, "127.0.0.1");
