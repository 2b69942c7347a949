"""A small "service" that leaks steadily: its response cache never evicts.

Every request renders a response of about 64 KiB and stores it in a cache
keyed by the request id.  Request ids never repeat, so the cache is never
hit and never shrinks: RSS grows by about 16 MiB per second of traffic.
The first phase serves the same requests without the cache (no growth), so
the chart shows the difference.

Run it alone (it ends by itself in about 3 s)::

    python examples/leaky_service.py
    pymemtrace process -i 0.05 --svg leak.svg -- python examples/leaky_service.py
"""
import sys
import time

RESPONSE_SIZE = 64 * 1024
REQUESTS_PER_SECOND = 250


class ResponseCache:
    """A memoising cache with no size limit and no eviction: the leak."""

    def __init__(self):
        self._entries = {}

    def get_or_render(self, key, render):
        if key not in self._entries:
            self._entries[key] = render(key)
        return self._entries[key]

    def __len__(self):
        return len(self._entries)


#: Module level, like a real memoisation cache: it outlives every request.
CACHE = ResponseCache()


def render(request_id):
    """The response body: a page of about RESPONSE_SIZE bytes."""
    line = f"request {request_id}: " + "x" * 54 + "\n"
    return (line * (RESPONSE_SIZE // len(line) + 1)).encode()[:RESPONSE_SIZE]


def serve(seconds=3.0, warmup=0.8, on_phase=None):
    """Serve requests for `seconds`; the first `warmup` seconds bypass the cache.

    ``on_phase(text)`` is called when a phase starts (the demo passes
    ``add_message_to_queue`` so the phases are labelled in the log).
    Returns the number of responses cached so far (they are never freed).
    """
    def phase(text):
        if on_phase is not None:
            on_phase(text)

    cache = CACHE
    period = 1.0 / REQUESTS_PER_SECOND
    start = time.monotonic()
    request_id = 0
    phase("warm-up: no cache")
    cached = False
    next_mark = 1
    while True:
        now = time.monotonic() - start
        if now >= seconds:
            break
        if not cached and now >= warmup:
            cached = True
            phase("traffic: cache on (never evicts)")
        if cached and now >= warmup + next_mark:
            phase(f"{len(cache)} cached responses")
            next_mark += 1
        request_id += 1
        if cached:
            body = cache.get_or_render(request_id, render)
        else:
            body = render(request_id)
        assert len(body) == RESPONSE_SIZE
        time.sleep(period)
    phase("shutting down")
    return len(cache)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    seconds = float(argv[0]) if argv else 3.0
    kept = serve(seconds)
    print(f"leaky_service: {kept} responses cached, "
          f"{kept * RESPONSE_SIZE / 2**20:.1f} MiB never freed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
