// The `/ws/chat` broadcast of `ws-rooms` written with Node's `ws`, as an application
// would: the benchmark's peer (benches/ws-broadcast.sh). Only what the benchmark uses:
// `connected` on connect, and `message` without a room sent as `chat-message` to every
// other connection (serialized once, sent to each).
//
//   node ws-rooms-server.mjs PORT
import { WebSocketServer } from "ws";
import { randomBytes } from "node:crypto";

const port = Number(process.argv[2] || 8080);
const wss = new WebSocketServer({ host: "127.0.0.1", port, path: "/ws/chat" });
wss.on("connection", (ws) => {
  ws.id = randomBytes(12).toString("base64url");
  ws.send(JSON.stringify({ type: "connected", id: ws.id }));
  ws.on("message", (data) => {
    let msg;
    try { msg = JSON.parse(data.toString()); } catch { ws.send(JSON.stringify({ type: "error", error: "invalid JSON" })); return; }
    if (msg.type === "message" && typeof msg.text === "string") {
      const out = JSON.stringify({ type: "chat-message", from: ws.id, text: msg.text });
      for (const client of wss.clients) {
        if (client !== ws && client.readyState === 1) client.send(out);
      }
    }
  });
});
wss.on("listening", () => console.error(`ws-rooms-server (node ws) listening on ${port}`));
