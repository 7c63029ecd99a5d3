"""Drives python-engineio's client against an Engine.IO server that echoes messages.

Usage: python3 eio_client.py http://127.0.0.1:3000
Prints one line per case and ends with `N passed, M failed`. TRANSPORTS (e.g.
"polling") limits the run to those cases: polling, websocket, polling+upgrade.
"""
import os
import sys
import threading

import engineio

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3000"
EXPECTED = ["hello", b"\x01\x02\x03", "x" * 100_000, "héllo €𝄞"]


def run_case(name, transports):
    client = engineio.Client()
    received = []
    done = threading.Event()

    @client.on("message")
    def on_message(data):
        received.append(data)
        if len(received) == len(EXPECTED):
            done.set()

    try:
        client.connect(URL, transports=transports, engineio_path="/engine.io/")
        for m in EXPECTED:
            client.send(m)
        if not done.wait(10):
            return f"timeout (received {len(received)} of {len(EXPECTED)})"
        if received != EXPECTED:
            return f"echo mismatch: {[str(r)[:20] for r in received]}"
        if "websocket" in transports and client.transport() != "websocket":
            return f"transport is {client.transport()}"
        return None
    except Exception as e:  # noqa: BLE001 - report any failure as the case's result
        return f"{type(e).__name__}: {e}"
    finally:
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001
            pass


cases = [("polling", ["polling"]), ("websocket", ["websocket"]), ("polling+upgrade", ["polling", "websocket"])]
if os.environ.get("TRANSPORTS"):
    cases = [c for c in cases if c[0] in os.environ["TRANSPORTS"].split()]
failed = 0
for name, transports in cases:
    error = run_case(name, transports)
    print(f"{'FAIL' if error else 'ok  '} python-engineio {name}{': ' + error if error else ''}", flush=True)
    failed += bool(error)
print(f"{len(cases) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
