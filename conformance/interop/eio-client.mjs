// Drives the npm engine.io-client against an Engine.IO server that echoes messages.
// Usage: node eio-client.mjs http://127.0.0.1:3000
// Prints one line per case and ends with `N passed, M failed`.
import { Socket } from "engine.io-client";

const url = process.argv[2] ?? "http://127.0.0.1:3000";
const big = "x".repeat(200_000);

function runCase(name, options, { expectUpgrade = false, protocolV3 = false } = {}) {
  return new Promise((resolve) => {
    const socket = new Socket(url, { path: "/engine.io/", ...options });
    const expected = ["hello", Buffer.from([1, 2, 3]), big, "héllo €𝄞"];
    const received = [];
    let upgraded = false;
    const finish = (error) => {
      clearTimeout(timer);
      socket.close();
      resolve({ name, error });
    };
    const timer = setTimeout(() => finish(`timeout (received ${received.length} of ${expected.length})`), 10_000);
    socket.on("error", (e) => finish(`error: ${e && e.message}`));
    socket.on("upgrade", () => {
      upgraded = true;
      for (const m of expected) socket.send(m);
    });
    socket.on("open", () => {
      if (!expectUpgrade) for (const m of expected) socket.send(m);
    });
    socket.on("message", (data) => {
      received.push(data);
      if (received.length < expected.length) return;
      for (let i = 0; i < expected.length; i++) {
        const want = expected[i];
        const got = received[i];
        const same = Buffer.isBuffer(want)
          ? (Buffer.isBuffer(got) || got instanceof ArrayBuffer) && Buffer.from(got).equals(want)
          : got === want;
        if (!same) return finish(`message ${i}: got ${String(got).slice(0, 40)}`);
      }
      if (expectUpgrade && !upgraded) return finish("did not upgrade");
      if (expectUpgrade && socket.transport.name !== "websocket") return finish(`transport is ${socket.transport.name}`);
      finish(null);
    });
  });
}

const results = [];
results.push(await runCase("polling", { transports: ["polling"] }));
results.push(await runCase("websocket", { transports: ["websocket"] }));
results.push(await runCase("polling+upgrade", { transports: ["polling", "websocket"] }, { expectUpgrade: true }));
let failed = 0;
for (const r of results) {
  console.log(`${r.error ? "FAIL" : "ok  "} engine.io-client ${r.name}${r.error ? ": " + r.error : ""}`);
  if (r.error) failed++;
}
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
