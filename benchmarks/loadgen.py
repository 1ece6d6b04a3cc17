"""Built-in HTTP/1.1 load generator, used when wrk is not installed.

Why it exists: the benchmarks must run on a bare machine with only Python, so a
missing wrk degrades the precision of the numbers, never the ability to get them.

Why it looks like this:

- It runs in its own process (``python benchmarks/loadgen.py URL ... --json``, started
  by ``harness.run_load``), so the client never shares a GIL or an event loop with
  the server it measures, nor with the harness that supervises that server.
- It speaks HTTP/1.1 over raw ``asyncio.open_connection`` streams with a pre-built
  request and a minimal response parser (status line, Content-Length, chunked,
  Connection: close). A client library (httpx, aiohttp) would spend more time per
  request than the servers under test and turn the benchmark into a client
  benchmark.
- Every connection is a keep-alive loop that stops by itself at the deadline; the
  run as a whole is also cut at the deadline, so a server that stops answering
  cannot hang it.
- Only requests that start after the warm-up and complete before the deadline are
  counted: requests/s is ``counted / duration`` and the latency percentiles come
  from exactly those requests, each timed with ``time.perf_counter_ns``.

It only ever targets 127.0.0.1: it is a benchmark tool, not a load-testing tool to
point at other people's machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

ALLOWED_HOST = "127.0.0.1"

# Searched in the lowered response head; header names and these values are
# case-insensitive, and a compiled regex is far cheaper per request than splitting lines.
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)")
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked")
_CONNECTION_CLOSE = re.compile(rb"\r\nconnection:[^\r]*close")
_CONNECTION_KEEP_ALIVE = re.compile(rb"\r\nconnection:[^\r]*keep-alive")

# After a failed connect, wait this long before the next attempt, so that a dead
# server costs a few hundred connect attempts per second, not a CPU-bound spin.
_CONNECT_ERROR_BACKOFF_S = 0.05


@dataclass(frozen=True)
class LoadResult:
    """What one measured load run produced, whichever generator ran it.

    Latencies are in microseconds. ``errors`` counts connect, read and protocol
    errors (wrk's "Socket errors"); ``non_2xx`` counts answered requests whose
    status was not 2xx or 3xx (wrk's "Non-2xx or 3xx responses").
    """

    tool: str
    connections: int
    duration_s: float
    requests: int
    requests_per_s: float
    p50_us: float
    p99_us: float
    errors: int = 0
    non_2xx: int = 0

    def to_json(self) -> str:
        """One JSON line: the wire format between this process and the harness."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        """Read the line written by :meth:`to_json`."""
        return cls(**json.loads(text))


class ResponseError(Exception):
    """The server sent a response this minimal parser cannot read."""


@dataclass(frozen=True)
class ResponseHead:
    """The parts of a response head the load loop needs; see :func:`parse_head`."""

    status: int
    content_length: int | None
    chunked: bool
    keep_alive: bool


def parse_head(head: bytes) -> ResponseHead:
    """Parse a response head (status line and headers, ending in a blank line).

    A pure function, so it can be checked without a socket. ``content_length`` is
    ``None`` when the body runs until the server closes the connection.
    """
    if not head.startswith(b"HTTP/1."):
        raise ResponseError(f"not an HTTP/1.x response: {head[:40]!r}")
    try:
        status = int(head[9:12])
    except ValueError:
        raise ResponseError(f"bad status line: {head.split(b'\r\n', 1)[0]!r}") from None
    lowered = head.lower()
    if head.startswith(b"HTTP/1.1"):
        keep_alive = _CONNECTION_CLOSE.search(lowered) is None
    else:
        keep_alive = _CONNECTION_KEEP_ALIVE.search(lowered) is not None
    if status < 200 or status in (204, 304):
        return ResponseHead(status, 0, False, keep_alive)
    if _CHUNKED.search(lowered):
        return ResponseHead(status, None, True, keep_alive)
    match = _CONTENT_LENGTH.search(lowered)
    if match is None:
        return ResponseHead(status, None, False, False)
    return ResponseHead(status, int(match.group(1)), False, keep_alive)


async def read_response(reader: asyncio.StreamReader) -> ResponseHead:
    """Read one whole response (head and body) from ``reader``."""
    head = parse_head(await reader.readuntil(b"\r\n\r\n"))
    if head.chunked:
        await _read_chunked_body(reader)
    elif head.content_length is None:
        await reader.read()  # delimited by the end of the connection
    elif head.content_length:
        await reader.readexactly(head.content_length)
    return head


async def _read_chunked_body(reader: asyncio.StreamReader) -> None:
    """Consume a chunked body, trailers included."""
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise ResponseError(f"bad chunk size line: {line!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return
        await reader.readexactly(size + 2)


def build_request(host: str, port: int, path: str) -> bytes:
    """The one GET request every connection sends, built once per run."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: watt-bench\r\n"
        "Accept: */*\r\n\r\n"
    ).encode("ascii")


def percentile(sorted_values: list[int], pct: float) -> float:
    """Nearest-rank percentile of already sorted values: always a latency that occurred."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


class _Tally:
    """Counters shared by all connections of one run (one thread: no lock needed)."""

    def __init__(self) -> None:
        self.latencies_ns: list[int] = []
        self.errors = 0
        self.non_2xx = 0


async def _connection_loop(
    host: str, port: int, request: bytes, measure_from: int, deadline: int, tally: _Tally
) -> None:
    """One client connection: send, read, repeat on the same socket until the deadline."""
    perf = time.perf_counter_ns
    record = tally.latencies_ns.append
    while perf() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            tally.errors += 1
            await asyncio.sleep(_CONNECT_ERROR_BACKOFF_S)
            continue
        try:
            while True:
                started = perf()
                if started >= deadline:
                    return
                writer.write(request)
                head = await read_response(reader)
                finished = perf()
                if started >= measure_from and finished <= deadline:
                    record(finished - started)
                    if not 200 <= head.status < 400:
                        tally.non_2xx += 1
                if not head.keep_alive:
                    break
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ResponseError):
            tally.errors += 1
        finally:
            writer.close()


def check_url(url: str) -> tuple[str, int, str]:
    """Split ``url`` into host, port and path, refusing anything but http://127.0.0.1."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != ALLOWED_HOST or parts.port is None:
        raise ValueError(f"only http://{ALLOWED_HOST}:<port> targets are allowed, got {url!r}")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.hostname, parts.port, path


async def generate_load(
    url: str, connections: int, duration_s: float, warmup_s: float = 0.0
) -> LoadResult:
    """Run ``connections`` keep-alive loops against ``url`` and measure ``duration_s``.

    The first ``warmup_s`` seconds load the server without being counted, on the
    same connections, so the measurement starts on warm sockets and a warm server.
    """
    if connections < 1 or duration_s <= 0 or warmup_s < 0:
        raise ValueError("connections must be >= 1, duration > 0 and warm-up >= 0")
    host, port, path = check_url(url)
    request = build_request(host, port, path)
    tally = _Tally()
    measure_from = time.perf_counter_ns() + int(warmup_s * 1e9)
    deadline = measure_from + int(duration_s * 1e9)
    tasks = [
        asyncio.create_task(_connection_loop(host, port, request, measure_from, deadline, tally))
        for _ in range(connections)
    ]
    # The loops stop by themselves at the deadline; whatever is still waiting on a
    # response then is cancelled, so a stalled server cannot stretch the run.
    _, pending = await asyncio.wait(tasks, timeout=warmup_s + duration_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    latencies = sorted(tally.latencies_ns)
    return LoadResult(
        tool="python",
        connections=connections,
        duration_s=duration_s,
        requests=len(latencies),
        requests_per_s=len(latencies) / duration_s,
        p50_us=percentile(latencies, 50) / 1000,
        p99_us=percentile(latencies, 99) / 1000,
        errors=tally.errors,
        non_2xx=tally.non_2xx,
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: used by the harness (``--json``) and handy on its own."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url", help="http://127.0.0.1:<port>/<path>")
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("-w", "--warmup", type=float, default=0.0, help="seconds not measured")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(generate_load(args.url, args.connections, args.duration, args.warmup))
    except ValueError as exc:
        parser.error(str(exc))
    if args.json:
        print(result.to_json())
    else:
        print(
            f"{result.requests_per_s:.0f} requests/s, p50 {result.p50_us:.0f} us, "
            f"p99 {result.p99_us:.0f} us, {result.requests} requests in "
            f"{result.duration_s:g} s, {result.errors} errors, {result.non_2xx} non-2xx/3xx"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
