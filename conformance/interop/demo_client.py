"""PyPI `python-socketio` against the `demo` binary (namespace /chat; the protocol is in
conformance/src/demo.rs): the auth challenge, the room policy, schema-validated chat,
dm to every socket of a user, queued jobs, a panicking handler.

    python3 demo_client.py http://127.0.0.1:PORT

Prints `ok NAME` / `FAIL NAME: why` per case, then `N passed, M failed`.
"""

import os
import queue
import sys

import socketio

URL = sys.argv[1]
NSP = "/chat"
results = []
counter = 0


def unique(prefix):
    global counter
    counter += 1
    return f"{prefix}py{os.getpid()}-{counter}"


class Client:
    """One python-socketio connection to /chat that queues the events it gets."""

    def __init__(self, transports):
        self.sio = socketio.Client(reconnection=False)
        self.transports = transports
        self.events = {}
        for name in ("authenticated", "unauthenticated", "message", "dm", "ws:result", "ws:error"):
            self.events[name] = queue.Queue()
            self.sio.on(name, self.events[name].put, namespace=NSP)

    def connect(self):
        self.sio.connect(URL, namespaces=[NSP], transports=self.transports, wait_timeout=5)
        return self

    def ask(self, event, data):
        return self.sio.call(event, data, namespace=NSP, timeout=5)

    def next(self, event, timeout=5):
        return self.events[event].get(timeout=timeout)

    def sid(self):
        return self.sio.get_sid(NSP)

    def close(self):
        self.sio.disconnect()


def login(name, transports):
    c = Client(transports).connect()
    ack = c.ask("authenticate", {"name": name})
    me = c.next("authenticated")
    assert me == {"id": c.sid(), "name": name}, me
    assert ack == {"status": "ok", "data": me}, ack
    return c


def run(name, case):
    clients = []
    try:
        case(clients)
        results.append(True)
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - every failure is a failed case
        results.append(False)
        print(f"FAIL {name}: {type(e).__name__}: {e}")
    finally:
        for c in clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass


def main():
    for transports in (["websocket"], ["polling"]):
        t = transports[0]

        def gate(clients):
            c = Client(transports).connect()
            clients.append(c)
            ack = c.ask("join", {"rooms": ["lobby"]})
            assert ack["status"] == "error" and ack["error"]["code"] == "UNAUTHENTICATED", ack
            c.ask("authenticate", {"name": "NO NO"})
            why = c.next("unauthenticated")
            assert isinstance(why["message"], str), why

        def chat(clients):
            an, bn = unique("a"), unique("b")
            a = login(an, transports)
            b = login(bn, transports)
            clients += [a, b]
            room = unique("room-")
            ack = a.ask("join", {"rooms": [room, "secret"]})
            assert ack == {"status": "ok", "data": {"joined": [room], "denied": ["secret"]}}, ack
            b.ask("join", {"rooms": [room]})
            ack = a.ask("chat", {"room": room, "text": "hi"})
            assert ack["status"] == "ok", ack
            want = {"id": ack["data"]["id"], "room": room, "from": an, "text": "hi", "at": ack["data"]["at"]}
            assert a.next("message") == want
            assert b.next("message") == want
            bad = a.ask("chat", {"room": room})
            assert bad["error"]["code"] == "VALIDATION_PAYLOAD_ERROR", bad
            assert bad["error"]["payload"][0]["params"] == {"missingProperty": "text"}, bad
            away = b.ask("chat", {"room": "room-other", "text": "x"})
            assert away["error"]["code"] == "NOT_IN_ROOM", away

        def dm(clients):
            name = unique("d")
            d1 = login(name, transports)
            d2 = login(name, transports)
            f = login(unique("f"), transports)
            clients += [d1, d2, f]
            ack = f.ask("dm", {"to": name, "text": "psst"})
            assert ack == {"status": "ok", "data": {"delivered": 2}}, ack
            for d in (d1, d2):
                got = d.next("dm")
                assert got["text"] == "psst" and isinstance(got["at"], int), got

        def job(clients):
            c = login(unique("j"), transports)
            clients.append(c)
            ack = c.ask("job", {"n": 2})
            assert ack["queued"] is True and ack["eventName"] == "job", ack
            got = c.next("ws:result")
            assert got == {"requestId": ack["requestId"], "result": {"n": 2}}, got
            ack = c.ask("job", {"n": 13})
            got = c.next("ws:error")
            assert got["requestId"] == ack["requestId"] and got["error"]["code"] == "JOB_FAILED", got

        def boom(clients):
            c = login(unique("x"), transports)
            clients.append(c)
            ack = c.ask("boom", {})
            assert ack == {
                "status": "error",
                "error": {"code": "INTERNAL_SERVER_ERROR", "message": "An internal server error has occurred."},
            }, ack
            assert (c.ask("leave", {"rooms": ["lobby"]}))["status"] == "ok"

        run(f"unauthenticated events are refused [{t}]", gate)
        run(f"join, chat, validation, NOT_IN_ROOM [{t}]", chat)
        run(f"dm reaches every socket of the user [{t}]", dm)
        run(f"queued job: ws:result and ws:error [{t}]", job)
        run(f"boom answers INTERNAL_SERVER_ERROR [{t}]", boom)
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


sys.exit(main())
