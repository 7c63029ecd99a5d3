// The `/ws/chat` broadcast of `ws-rooms` written with uWebSockets.js's pub/sub: the
// benchmark's second peer (benches/ws-broadcast.sh). Each connection subscribes to one
// topic; a `message` is published to it (`ws.publish` skips the sender), so uWS
// frames it once for every subscriber.
//
//   node uws-rooms-server.mjs PORT
import { App } from "uws-pack";
import { randomBytes } from "node:crypto";

const port = Number(process.argv[2] || 8080);
const decoder = new TextDecoder();
App()
  .ws("/ws/chat", {
    maxPayloadLength: 1 << 20,
    idleTimeout: 60,
    open: (ws) => {
      ws.getUserData().id = randomBytes(12).toString("base64url");
      ws.subscribe("chat");
      ws.send(JSON.stringify({ type: "connected", id: ws.getUserData().id }));
    },
    message: (ws, data) => {
      let msg;
      try { msg = JSON.parse(decoder.decode(data)); } catch { ws.send(JSON.stringify({ type: "error", error: "invalid JSON" })); return; }
      if (msg.type === "message" && typeof msg.text === "string") {
        ws.publish("chat", JSON.stringify({ type: "chat-message", from: ws.getUserData().id, text: msg.text }));
      }
    },
  })
  .listen("127.0.0.1", port, (listen) => {
    if (!listen) { console.error(`cannot listen on ${port}`); process.exit(1); }
    console.error(`uws-rooms-server (uWebSockets.js) listening on ${port}`);
  });
