// The demo in a real browser: Debian's chromium, headless, driven by puppeteer-core.
//
//   node browser.mjs --demo BIN --runtime tokio|smol --port PORT --out DIR
//
// DUMPIO=1 shows Chromium's own output and a failure's stack.
//
// Starts BIN (the demo) on 127.0.0.1:PORT, then: two chat pages sign in and join a
// room, each sees the other's message, a direct message arrives, a job's result
// appears, both are on websocket after the upgrade; the server is killed and started
// again, both pages reconnect and chat again; the admin UI (served by the demo at
// /admin/) connects, lists both chat sockets with their rooms, gets server stats and
// live events, and its disconnect button disconnects one of them. Writes chat.png and
// admin.png to DIR (and on a failure a screenshot of every page, failure-*.png). Ends
// with `N passed, M failed`.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import puppeteer from "puppeteer-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
for (const need of ["demo", "runtime", "port", "out"]) {
  if (!args[need]) {
    console.error("usage: node browser.mjs --demo BIN --runtime tokio|smol --port PORT --out DIR");
    process.exit(2);
  }
}
const base = `http://127.0.0.1:${args.port}`;
const out = path.resolve(args.out);
mkdirSync(out, { recursive: true });
const TIMEOUT = 15000;
const room = "room-browser";

let server = null;
function startServer() {
  server = spawn(args.demo, ["--runtime", args.runtime, "--addr", `127.0.0.1:${args.port}`], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  return waitPort(Number(args.port));
}
async function stopServer() {
  const s = server;
  server = null;
  if (!s || s.exitCode !== null) return;
  const exited = new Promise((resolve) => s.once("exit", resolve));
  s.kill("SIGKILL");
  await exited;
}
async function waitPort(port) {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => (c.end(), resolve(true)));
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

const pages = {};
let passed = 0;
let failed = 0;
async function step(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
    if (process.env.DUMPIO) console.log(e.stack);
    for (const [label, page] of Object.entries(pages)) {
      const data = await page.evaluate(() => JSON.stringify(document.body.dataset)).catch((e) => e.message);
      console.log(`  ${label}: ${page.url()} ${data}`);
      await page.screenshot({ path: path.join(out, `failure-${label}.png`), fullPage: true }).catch(() => {});
    }
    throw e;
  }
}

// Waits until `fn(...fnArgs)` is truthy in the page (polling: background tabs may not
// run animation frames).
const until = (page, fn, ...fnArgs) => page.waitForFunction(fn, { polling: 50, timeout: TIMEOUT }, ...fnArgs);
const attr = (page, name) => page.evaluate((n) => document.body.dataset[n], name);

// Clicking in a tab that is not in front crashes this headless Chromium: every
// interaction brings its page to the front first.
async function send(page, text) {
  await page.bringToFront();
  await page.type('form[data-action="send"] input[name="text"]', text);
  await page.click('form[data-action="send"] button[type="submit"]');
}
const sees = (page, from, text) =>
  until(
    page,
    (f, r, t) => [...document.querySelectorAll(`#messages li[data-from="${f}"][data-room="${r}"]`)].some((li) => li.textContent.includes(t)),
    from,
    room,
    text,
  );
const ready = (page) => until(page, () => document.body.dataset.ready === "true" && document.body.dataset.connection === "connected");

let browser;
try {
  await startServer();
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    dumpio: Boolean(process.env.DUMPIO),
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
  const open = async (label, url, width = 1100) => {
    const page = await browser.newPage();
    await page.setViewport({ width, height: 760 });
    page.on("dialog", (d) => d.dismiss());
    page.on("pageerror", (e) => console.log(`[${label}] page error: ${e.message}`));
    page.on("error", (e) => console.log(`[${label}] crashed: ${e.message}`));
    pages[label] = page;
    await page.goto(url, { waitUntil: "domcontentloaded" });
    return page;
  };

  const ann = await open("ann", `${base}/?name=ann&room=${room}`);
  const bob = await open("bob", `${base}/?name=bob&room=${room}`);

  await step("both pages sign in and join the room", async () => {
    for (const [page, name] of [[ann, "ann"], [bob, "bob"]]) {
      await ready(page);
      if ((await attr(page, "user")) !== name) throw new Error(`data-user is not ${name}`);
      await until(page, (r) => document.querySelector(`#rooms li[data-room="${r}"].current`), room);
    }
  });
  await step("each sees the other's message, acks shown as delivered", async () => {
    await send(ann, "hello from ann");
    await sees(bob, "ann", "hello from ann");
    await send(bob, "hi ann, bob here");
    await sees(ann, "bob", "hi ann, bob here");
    await until(ann, () => document.querySelector('#messages li[data-from="ann"][data-delivered="true"]'));
  });
  await step("who is online lists both", async () => {
    for (const page of [ann, bob]) {
      await until(page, () => ["ann", "bob"].every((u) => document.querySelector(`#online li[data-user="${u}"]`)));
    }
  });
  await step("a direct message arrives", async () => {
    await ann.bringToFront();
    await ann.type('form[data-action="dm"] input[name="to"]', "bob");
    await ann.type('form[data-action="dm"] input[name="text"]', "psst, a dm");
    await ann.click('form[data-action="dm"] button[type="submit"]');
    await until(bob, () =>
      [...document.querySelectorAll('#dms li[data-dm="in"][data-from="ann"]')].some((li) => li.textContent.includes("psst, a dm")),
    );
  });
  await step("a job is queued, then its result appears", async () => {
    await ann.bringToFront();
    await ann.click('form[data-action="job"] button[type="submit"]');
    await until(ann, () => document.querySelector('#jobs li[data-state="queued"], #jobs li[data-state="done"]'));
    await until(ann, () => document.querySelector('#jobs li[data-state="done"]')?.textContent.includes("n = 5"));
  });
  await step("both are on websocket after the upgrade", async () => {
    for (const page of [ann, bob]) await until(page, () => document.body.dataset.transport === "websocket");
  });
  await step("the server restarts: both pages reconnect and chat again", async () => {
    await stopServer();
    for (const page of [ann, bob]) await until(page, () => document.body.dataset.connection === "reconnecting");
    await startServer();
    for (const page of [ann, bob]) await ready(page);
    await send(bob, "back after the restart");
    await sees(ann, "bob", "back after the restart");
    await send(ann, "welcome back");
    await sees(bob, "ann", "welcome back");
  });
  await ann.bringToFront();
  await until(ann, () => [...document.querySelectorAll('#messages li[data-from="ann"]')].every((li) => li.dataset.delivered === "true"));
  await ann.screenshot({ path: path.join(out, "chat.png") });

  const admin = await open("admin", `${base}/admin/`, 1280);
  const annSid = await attr(ann, "sid");
  const bobSid = await attr(bob, "sid");
  await step("the admin UI connects to the demo", async () => {
    await admin.bringToFront();
    await admin.waitForSelector("form input", { timeout: TIMEOUT });
    const url = await admin.$("form input");
    await url.click({ clickCount: 3 });
    await url.type(base);
    await admin.click('form button[type="submit"]');
    await until(admin, () => document.querySelector("#app").__vue__.$store.state.connection.connected);
  });
  await step("it lists both chat sockets with their rooms", async () => {
    const go = (hash) => admin.evaluate((h) => (location.hash = h), hash);
    await go("#/sockets/");
    await until(admin, () => document.querySelector("#app").__vue__.$store.state.main.namespaces.some((n) => n.name === "/chat"));
    await admin.evaluate(() => {
      const store = document.querySelector("#app").__vue__.$store;
      store.commit("main/selectNamespace", store.state.main.namespaces.find((n) => n.name === "/chat"));
    });
    await until(admin, (a, b) => [a, b].every((id) => document.body.innerText.includes(id)), annSid, bobSid);
    await until(admin, () => !document.querySelector(".v-dialog--active"));
    await new Promise((r) => setTimeout(r, 500)); // the dialog's fade
    await admin.screenshot({ path: path.join(out, "admin.png") });
    const rooms = await admin.evaluate(
      (id) => document.querySelector("#app").__vue__.$store.state.main.namespaces.find((n) => n.name === "/chat").sockets.find((s) => s.id === id)?.rooms,
      bobSid,
    );
    for (const r of [room, "lobby", "user:bob", bobSid]) {
      if (!rooms?.includes(r)) throw new Error(`bob's rooms ${JSON.stringify(rooms)} lack ${r}`);
    }
    await go("#/rooms/");
    await until(admin, (r) => document.body.innerText.includes(r), room);
    await go("#/sockets/");
    await until(admin, (b) => document.body.innerText.includes(b), bobSid);
  });
  await step("it gets server stats and live events", async () => {
    await until(admin, () => {
      const servers = document.querySelector("#app").__vue__.$store.state.servers.servers;
      const chat = servers[0]?.namespaces?.find((n) => n.name === "/chat");
      return servers.length === 1 && servers[0].clientsCount >= 3 && chat?.socketsCount === 2;
    });
    await send(ann, "seen by the admin");
    await sees(bob, "ann", "seen by the admin");
    await admin.bringToFront();
    await until(admin, (a) => {
      const events = document.querySelector("#app").__vue__.$store.state.main.namespaces.find((n) => n.name === "/chat").events;
      return events.some((e) => e.type === "event_received" && e.id === a && e.eventName === "chat");
    }, annSid);
  });
  await step("its disconnect button disconnects one socket", async () => {
    const clicked = await admin.evaluate((id) => {
      const row = [...document.querySelectorAll("tbody tr")].find((tr) => tr.innerText.includes(id));
      const button = row?.querySelector("button");
      button?.click();
      return Boolean(button);
    }, bobSid);
    if (!clicked) throw new Error("no disconnect button in bob's row");
    await until(bob, () => document.body.dataset.connection === "disconnected");
    // The UI drops it from its list (and logs a disconnection event for it).
    await until(
      admin,
      (b) =>
        document
          .querySelector("#app")
          .__vue__.$store.state.main.namespaces.find((n) => n.name === "/chat")
          .events.some((e) => e.type === "disconnection" && e.id === b),
      bobSid,
    );
    await admin.evaluate(() => (location.hash = "#/sockets/"));
    await until(admin, (a, b) => document.body.innerText.includes(a) && !document.body.innerText.includes(b), annSid, bobSid);
    if ((await attr(ann, "connection")) !== "connected") throw new Error("ann was disconnected too");
  });
} catch (e) {
  if (failed === 0) {
    failed++;
    console.log(`FAIL setup: ${e.message}`);
  }
} finally {
  await browser?.close().catch(() => {});
  await stopServer();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}
