// Node's `ws` 8 WebSocket echo server for benches/compare.sh's compressed echo case:
// permessage-deflate accepted with ws's defaults (level 6 as zlib's default, messages
// under 1 KiB sent plain: the same as wirestate's DeflateConfig::default()).
// Usage: node ws-echo-server.mjs PORT
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] ?? 9001);
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: true, maxPayload: 64 << 20 });
wss.on("error", (e) => console.error(e));
wss.on("connection", (ws, req) => {
  req.socket.setNoDelay(true);
  ws.on("error", () => {});
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
