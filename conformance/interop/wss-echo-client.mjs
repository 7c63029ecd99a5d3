// Node's `ws` client against a WebSocket echo server (ws-echo over wss:// in the TLS
// interop run): text, binary and a 1 MiB message echoed, then a clean close.
// Usage: node wss-echo-client.mjs URL    (prints `ok …` / `FAIL …` lines)
import WebSocket from "ws";

const url = process.argv[2] ?? "wss://127.0.0.1:9001";
const ws = new WebSocket(url, { perMessageDeflate: false });
const sent = ["hello", Buffer.from([0, 1, 2, 255]), "x".repeat(1 << 20)];
const got = [];
const timer = setTimeout(() => finish("timed out"), 10000);

function finish(error) {
  clearTimeout(timer);
  if (error) console.log(`FAIL ws (npm) echo over ${url}: ${error}`);
  else console.log(`ok   ws (npm) echo over ${url}: text, binary, 1 MiB, clean close`);
  process.exit(error ? 1 : 0);
}

ws.on("error", (e) => finish(String(e)));
ws.on("open", () => sent.forEach((m) => ws.send(m)));
ws.on("message", (data, isBinary) => {
  got.push(isBinary ? Buffer.from(data) : data.toString());
  if (got.length < sent.length) return;
  const same = sent.every((m, i) => (Buffer.isBuffer(m) ? m.equals(got[i]) : m === got[i]));
  if (!same) return finish("echo differs");
  ws.close(1000, "done");
});
ws.on("close", (code) => (code === 1000 && got.length === sent.length ? finish() : finish(`closed with ${code}`)));
