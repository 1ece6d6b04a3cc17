r"""Outbound pipeline benchmark: what interceptors and external-call observation cost.

One runtime (in this process, ``watt.testing.RuntimeHandle``) runs
``benchmarks/apps/outbound`` twice: ``caller`` times sequential calls from
inside its worker, ``target`` answers them.  Two kinds of call:

- **mesh**: ``watt.mesh.fetch("http://target.plt.local/")``;
- **external**: a reused ``httpx.AsyncClient`` to a keep-alive HTTP server on
  127.0.0.1 started by this script.

and four pipeline modes, switched inside the worker between runs and
interleaved over several rounds: ``bypass`` (no pipeline at all: for the mesh
the same as ``empty``), ``empty`` (no interceptors — what every application
gets by default), ``one`` (one pass-through interceptor) and ``shipped``
(Retry, CircuitBreaker, DefaultTimeout and SetHeaders configured, none
acting).  Printed: p50 per call and the extra µs against ``bypass``.

Before that, without a runtime: the pipeline's own cost (``micro``), the same
modes around a ``send`` that answers at once, in this interpreter: the extra
µs per call of building the request and running the chain, sync and async.

Usage::

    python benchmarks/outbound.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import http.server
import json
import statistics
import sys
import threading
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from watt.testing import RuntimeHandle  # noqa: E402

MODES = ("bypass", "empty", "one", "shipped")


class _Quick(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else the body waits for a delayed ACK (40 ms)

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def micro(calls: int, rounds: int) -> dict[tuple[str, str], float]:
    """µs per call of the pipeline around a send that answers at once."""
    import asyncio
    import time

    from watt.worker import outbound

    async def passthrough(request, call_next):
        return await call_next(request)

    chains = {"bypass": None, "empty": (), "one": (("passthrough", passthrough),),
              "shipped": tuple(outbound._load(u, o) for u, o in (
                  ("watt.interceptors:Retry", {}), ("watt.interceptors:CircuitBreaker", {}),
                  ("watt.interceptors:DefaultTimeout", {}),
                  ("watt.interceptors:SetHeaders", {"headers": {"x-bench": "1"}})))}
    answer = outbound.Response(200, (), None, native="native")
    headers = [(b"accept", b"*/*"), (b"user-agent", b"bench")]

    def send_sync(request):
        return answer

    async def send_async(request):
        return answer

    def build(response):
        return response

    def run_sync(chain) -> float:
        start = time.perf_counter_ns()
        for _ in range(calls):
            if chain is None:
                send_sync(None)
            else:
                outbound.call_sync(outbound.Request("GET", "http://api.example.com/x",
                                                    headers, b"", None, False),
                                   send_sync, build)
        return (time.perf_counter_ns() - start) / calls / 1000

    async def run_async(chain) -> float:
        start = time.perf_counter_ns()
        for _ in range(calls):
            if chain is None:
                await send_async(None)
            else:
                await outbound.call_async(outbound.Request("GET", "http://api.example.com/x",
                                                           headers, b"", None, True),
                                          send_async, build)
        return (time.perf_counter_ns() - start) / calls / 1000

    samples: dict[tuple[str, str], list[float]] = {}
    for _round in range(rounds):
        for mode, chain in chains.items():
            outbound._hooks = chain or ()
            samples.setdefault(("sync", mode), []).append(run_sync(chain))
            samples.setdefault(("async", mode), []).append(asyncio.run(run_async(chain)))
    outbound._hooks = ()
    return {key: statistics.median(values) for key, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/outbound.py")
    parser.add_argument("--calls", type=int, default=400, help="calls per mode and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--micro-only", action="store_true",
                        help="only the pipeline's own cost, without a runtime")
    args = parser.parse_args(argv)
    costs = micro(20_000, args.rounds)
    print(f"{'micro':10} {'mode':9} {'per call':>10} {'vs bypass':>10}   "
          "(a send that answers at once, no observer)")
    for kind in ("sync", "async"):
        for mode in MODES:
            cost = costs[(kind, mode)]
            print(f"{kind:10} {mode:9} {cost:8.2f} us {cost - costs[(kind, 'bypass')]:+8.2f} us")
    if args.micro_only:
        return 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quick)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app = str(HERE / "apps" / "outbound")
    config = {"entrypoint": "caller", "applications": [
        {"id": "caller", "path": app, "app": "main:app", "isolation": "subinterpreter"},
        {"id": "target", "path": app, "app": "main:app", "isolation": "subinterpreter"}]}
    targets = {"mesh": ("fetch", "http://target.plt.local/"),
               "external": ("httpx", f"http://127.0.0.1:{server.server_port}/")}
    results: dict[tuple[str, str], list[float]] = {}
    try:
        with RuntimeHandle(config) as rt:
            for kind, (client, url) in targets.items():
                for _round in range(args.rounds + 1):  # round 0 warms up
                    # Alternate the order, so that drift within a round favours no mode.
                    for mode in MODES if _round % 2 else reversed(MODES):
                        query = urlencode({"client": client, "url": url, "mode": mode,
                                           "n": args.calls})
                        reply = rt.inject("caller", "GET", f"/bench?{query}")
                        if reply.status != 200:
                            print(reply.text, file=sys.stderr)
                            return 1
                        if _round:
                            results.setdefault((kind, mode), []).append(
                                statistics.median(json.loads(reply.text)))
    finally:
        server.shutdown()
    print(f"{'call':10} {'mode':9} {'p50':>10} {'vs bypass':>10}   "
          f"(median over {args.rounds} rounds of {args.calls} sequential calls)")
    for kind in targets:
        base = statistics.median(results[(kind, "bypass")])
        for mode in MODES:
            p50 = statistics.median(results[(kind, mode)])
            print(f"{kind:10} {mode:9} {p50:8.1f} us {p50 - base:+8.1f} us   "
                  f"({p50 / base:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
