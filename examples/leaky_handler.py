"""A request handler with a slow leak, for the leak hunt in docs/techniques.md."""
import gc
import json
import os
import sys
import time

_seen = {}


def handle(request_id, payload):
    doc = json.loads(payload)
    reply = {"id": request_id, "total": sum(doc["values"])}
    _seen[request_id] = (doc["user"], reply["total"])  # the leak: never pruned
    if os.environ.get("FIXED") and len(_seen) > 100:
        del _seen[next(iter(_seen))]  # the fix: keep the last 100
    return json.dumps(reply)


def serve(first, n):
    payload = json.dumps({"user": "alice", "values": list(range(20))})
    for request_id in range(first, first + n):
        handle(f"req-{request_id:06d}", payload)


_next_id = [0]
_PAYLOAD = json.dumps({"user": "alice", "values": list(range(20))})


def one_request():
    """One request, as `pymemtrace hunt examples/leaky_handler.py:one_request` calls it."""
    _next_id[0] += 1
    handle(f"req-{_next_id[0]:06d}", _PAYLOAD)


if __name__ == "__main__":
    if os.environ.get("NOGC"):
        gc.disable()
    served = 0
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 10):
        serve(served, 100_000)
        served += 100_000
        print(f"served {served} requests", flush=True)
        time.sleep(0.2)
