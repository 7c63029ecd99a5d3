// Node's engine.io server, echoing every message: the peer for wirestate's client.
// Usage: [TLS_CERT=cert.pem TLS_KEY=key.pem] node eio-server.mjs PORT
import { readFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { Server } from "engine.io";

const port = Number(process.argv[2] ?? 3000);
// With TLS_CERT and TLS_KEY (PEM files) set: https:// and wss:// only.
const http = process.env.TLS_CERT
  ? createHttpsServer({ cert: readFileSync(process.env.TLS_CERT), key: readFileSync(process.env.TLS_KEY) })
  : createHttpServer();
const engine = new Server({ pingInterval: 300, pingTimeout: 200, maxHttpBufferSize: 1e6 });
engine.attach(http, { path: "/engine.io/" });
engine.on("connection", (socket) => {
  socket.on("message", (data) => socket.send(data));
});
http.listen(port, "127.0.0.1", () => console.log(`engine.io listening on ${port}`));
