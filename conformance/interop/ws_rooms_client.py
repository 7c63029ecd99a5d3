"""PyPI `websockets` against `ws-rooms` (see src/bin/ws-rooms.rs): the chat protocol,
rooms, broadcast, authentication by close code, and `POST /connections/ID`.

    python3 ws_rooms_client.py http://127.0.0.1:PORT

Prints `ok NAME` / `FAIL NAME: why` per case, then `N passed, M failed`.
"""

import asyncio
import json
import random
import sys
import urllib.error
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

BASE = sys.argv[1]
WS = BASE.replace("http", "ws", 1)


async def recv(ws, timeout=3):
    text = await asyncio.wait_for(ws.recv(), timeout)
    try:
        return json.loads(text)
    except ValueError:
        return {"raw": text}


async def chatter(stack):
    ws = await stack.enter_async_context(connect(WS + "/ws/chat"))
    hello = await recv(ws)
    assert hello["type"] == "connected" and isinstance(hello["id"], str), hello
    ws.id = hello["id"]
    return ws


def post(conn_id, body):
    req = urllib.request.Request(f"{BASE}/connections/{conn_id}", data=body.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as res:
            return res.status
    except urllib.error.HTTPError as e:
        return e.code


async def apost(conn_id, body):
    return await asyncio.to_thread(post, conn_id, body)


async def sync(ws):
    """Everything ws sent before has been handled (its answers come in order)."""
    await ws.send("sync")
    assert await recv(ws) == {"type": "error", "error": "invalid JSON"}


async def marker(ws):
    """Nothing is queued for ws but what it has read."""
    text = f"marker-{random.random()}"
    assert await apost(ws.id, text) == 200
    got = await recv(ws)
    assert got == {"raw": text}, got


async def case_rooms():
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        a, b, c = [await chatter(stack) for _ in range(3)]
        assert len({a.id, b.id, c.id}) == 3
        room = f"py-{random.random()}"
        await a.send(json.dumps({"type": "join-room", "room": room}))
        await sync(a)
        await b.send(json.dumps({"type": "join-room", "room": room}))
        assert await recv(a) == {"type": "user-joined", "id": b.id, "room": room}
        await b.send(json.dumps({"type": "message", "text": "hi", "room": room}))
        assert await recv(a) == {"type": "chat-message", "from": b.id, "text": "hi"}
        await marker(b)
        await marker(c)
        await c.send(json.dumps({"type": "message", "text": "all", "includeSelf": True}))
        for ws in (a, b, c):
            assert await recv(ws) == {"type": "chat-message", "from": c.id, "text": "all"}
        await c.close()
        for ws in (a, b):
            assert await recv(ws) == {"type": "user-left", "id": c.id}


async def case_invalid_json():
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        a = await chatter(stack)
        await a.send("{oops")
        assert await recv(a) == {"type": "error", "error": "invalid JSON"}
        await marker(a)


async def closed_with(path):
    async with connect(WS + path) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 3)
        except ConnectionClosed as e:
            return (e.rcvd.code, e.rcvd.reason)
    raise AssertionError("not closed")


async def case_private():
    assert await closed_with("/ws/private") == (4001, "No token provided")
    assert await closed_with("/ws/private?token=bad") == (4002, "Invalid token")
    async with connect(WS + "/ws/private?token=secret") as ws:
        assert await recv(ws) == {"type": "authenticated", "user": "alice"}


async def case_post():
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        a = await chatter(stack)
        assert await apost(a.id, "hello from http") == 200
        assert await recv(a) == {"raw": "hello from http"}
    assert await apost("nobody", "x") == 404


async def case_not_found():
    try:
        async with connect(WS + "/ws/missing"):
            pass
    except InvalidStatus as e:
        assert e.response.status_code == 404, e.response.status_code
        return
    raise AssertionError("opened")


async def main():
    passed = failed = 0
    for name, case in [
        ("rooms, broadcast and user-left", case_rooms),
        ("invalid JSON gets an error", case_invalid_json),
        ("private route close codes and auth data", case_private),
        ("POST /connections/ID", case_post),
        ("unknown path is 404", case_not_found),
    ]:
        try:
            await asyncio.wait_for(case(), 15)
            print(f"ok {name}")
            passed += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported
            print(f"FAIL {name}: {e!r}")
            failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


asyncio.run(main())
