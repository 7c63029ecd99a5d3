// Node's engine.io server, echoing every message: the peer for wirestate's client.
// Usage: node eio-server.mjs PORT
import { createServer } from "node:http";
import { Server } from "engine.io";

const port = Number(process.argv[2] ?? 3000);
const http = createServer();
const engine = new Server({ pingInterval: 300, pingTimeout: 200, maxHttpBufferSize: 1e6 });
engine.attach(http, { path: "/engine.io/" });
engine.on("connection", (socket) => {
  socket.on("message", (data) => socket.send(data));
});
http.listen(port, "127.0.0.1", () => console.log(`engine.io listening on ${port}`));
