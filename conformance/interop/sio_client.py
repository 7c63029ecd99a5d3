"""Drives python-socketio's client against our `sio-server`.

Usage: python3 sio_client.py http://127.0.0.1:3000
Prints one line per case and ends with `N passed, M failed`. TRANSPORTS (e.g.
"polling") limits the run to those transports: polling, websocket, polling+upgrade.
"""

import os
import queue
import sys
import threading

import requests
import socketio

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3000"
ARGS = (1, "two", {"three": [3]}, b"\x01\x02\x03", "h\u00e9llo \u20ac\U0001d11e")


def client():
    return socketio.Client(reconnection=False)


def waiter(sio, event, namespace="/"):
    q = queue.Queue()
    sio.on(event, lambda *a: q.put(a), namespace=namespace)
    return q


def case_connect_auth(transports):
    sio = client()
    got = waiter(sio, "auth")
    sio.connect(URL, transports=transports, auth={"token": "py"}, wait_timeout=5)
    try:
        (auth,) = got.get(timeout=5)
        assert auth == {"token": "py"}, auth
        assert sio.get_sid("/"), "no sid"
    finally:
        sio.disconnect()


def case_round_trip(transports):
    sio = client()
    got = waiter(sio, "message-back")
    sio.connect(URL, transports=transports, wait_timeout=5)
    try:
        sio.emit("message", ARGS)
        back = got.get(timeout=5)
        assert tuple(back) == ARGS, back
        ack = sio.call("message-with-ack", ARGS, timeout=5)
        assert tuple(ack) == ARGS, ack
    finally:
        sio.disconnect()


def case_server_ack(transports):
    sio = client()
    got = waiter(sio, "answer")
    sio.on("ask", lambda q: "py says " + q)
    sio.connect(URL, transports=transports, wait_timeout=5)
    try:
        sio.emit("ask-me")
        (answer,) = got.get(timeout=5)
        assert answer == "py says question", answer
    finally:
        sio.disconnect()


def case_namespaces_and_middleware(transports):
    sio = client()
    auth = waiter(sio, "auth", namespace="/custom")
    welcome = waiter(sio, "welcome", namespace="/secure")
    sio.connect(
        URL,
        transports=transports,
        namespaces=["/custom", "/secure"],
        auth={"token": "secret"},
        wait_timeout=5,
    )
    try:
        (a,) = auth.get(timeout=5)
        assert a == {"token": "secret"}, a
        (w,) = welcome.get(timeout=5)
        assert w == {"user": "alice"}, w
    finally:
        sio.disconnect()
    bad = client()
    errors = queue.Queue()
    bad.on("connect_error", lambda data: errors.put(data), namespace="/secure")
    try:
        bad.connect(URL, transports=transports, namespaces=["/secure"], auth={"token": "no"}, wait_timeout=5)
    except socketio.exceptions.ConnectionError:
        pass
    try:
        err = errors.get(timeout=5)
        assert err == {"message": "not authorized", "data": {"code": 401}}, err
    finally:
        bad.disconnect()


def case_rooms(transports):
    a, b = client(), client()
    got = waiter(b, "room-message")
    a.connect(URL, transports=transports, wait_timeout=5)
    b.connect(URL, transports=transports, wait_timeout=5)
    try:
        assert b.call("join", "py-room", timeout=5) == "joined"
        a.emit("to-room", ("py-room", "hello room"))
        (text,) = got.get(timeout=5)
        assert text == "hello room", text
    finally:
        a.disconnect()
        b.disconnect()


def case_large_payload(transports):
    # Over polling the answer is compressed (the server's httpCompression, on from
    # 1,024 bytes): requests sends Accept-Encoding and inflates it.
    http = requests.Session()
    codings = []
    http.hooks["response"].append(
        lambda r, *a, **k: codings.append(r.headers.get("Content-Encoding"))
    )
    sio = socketio.Client(reconnection=False, http_session=http)
    got = waiter(sio, "message-back")
    sio.connect(URL, transports=transports, wait_timeout=5)
    try:
        big = "wirestate " * 5000
        sio.emit("message", big)
        (back,) = got.get(timeout=5)
        assert back == big, len(back)
        if transports == ["polling"]:
            assert "gzip" in codings, codings
    finally:
        sio.disconnect()


CASES = [
    ("connect with auth", case_connect_auth),
    ("events with binary, acks", case_round_trip),
    ("server asks, client acks", case_server_ack),
    ("namespaces and middleware", case_namespaces_and_middleware),
    ("rooms", case_rooms),
    ("large payload (compressed over polling)", case_large_payload),
]

passed = failed = 0
for transports in (["polling"], ["websocket"], ["polling", "websocket"]):
    tname = "+".join(transports) if len(transports) == 1 else "polling+upgrade"
    if os.environ.get("TRANSPORTS") and tname not in os.environ["TRANSPORTS"].split():
        continue
    for name, case in CASES:
        result = {}

        def body():
            try:
                case(transports)
            except Exception as e:  # noqa: BLE001 - every failure is a result
                result["error"] = f"{type(e).__name__}: {e}"

        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join(30)
        error = "case timeout" if t.is_alive() else result.get("error")
        if error:
            failed += 1
            print(f"FAIL python-socketio {tname}: {name}: {error}")
        else:
            passed += 1
            print(f"ok   python-socketio {tname}: {name}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
