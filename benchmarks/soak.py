"""Soak: a bounded load on ``watt start`` while a process worker is SIGKILLed periodically.

    python benchmarks/soak.py [--duration S] [--requests N] [--kill-every S]
                              [--connections C] [--interval S] [--warmup S]

What it runs: ``watt start`` on the trivial benchmark application with two process
workers (``restartOnError`` short, so a killed worker is back within a second), in
its own session. Load: ``--connections`` keep-alive HTTP/1.1 connections, each
sending one request at a time (loadgen.py's request and response parser), until
``--requests`` have been sent or ``--duration`` seconds have passed, whichever comes
first. Every ``--kill-every`` seconds one ready worker (the two in turn) gets
SIGKILL. Every ``--interval`` seconds a row is printed: requests sent, succeeded and
failed so far, kills, the runtime's own restart count (management API), ready
workers, and the RSS and PSS summed over the runtime's process tree (memory.py).

At the end, two verdicts, each against a bound stated up front:

- memory: the largest RSS sampled may exceed the baseline by at most
  ``MEMORY_GROWTH_BOUND`` (25 %); the baseline is taken after ``--warmup`` seconds
  of load, both workers up, before the first kill (kills start after it);
- failures: a kill may fail only the requests in flight on the killed worker; with
  one request at a time per connection that is at most ``--connections`` per kill.

Exit code 0 when both hold, 1 when one does not, 2 when the runtime could not start.
Not part of ``run.py`` (the quick suite must stay short): docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import BENCH_DIR, REPO_ROOT, ServerError
from loadgen import ResponseError, build_request, check_url, read_response
from memory import MB, session_memory
from suite import PY, ServerSpec, log, print_output, start_ready

MEMORY_GROWTH_BOUND = 0.25
APP_DIR = BENCH_DIR / "apps" / "trivial"
RESTART_MS = 200
CONNECT_BACKOFF_S = 0.05


@dataclass
class Tally:
    """What the load did so far (one event loop: no lock)."""

    budget: int
    deadline: float
    sent: int = 0
    ok: int = 0
    failed: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def take(self) -> bool:
        """One more request may be sent: within the count and the time."""
        if self.sent >= self.budget or time.monotonic() >= self.deadline:
            return False
        self.sent += 1
        return True


async def connection(host: str, port: int, request: bytes, tally: Tally) -> None:
    """One keep-alive connection, one request at a time; reconnects after a failure.

    A request whose answer never comes (connection reset) or is not 2xx counts as
    failed; a refused connect sends nothing and counts nothing.
    """
    while time.monotonic() < tally.deadline and tally.sent < tally.budget:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(CONNECT_BACKOFF_S)
            continue
        try:
            while tally.take():
                writer.write(request)
                try:
                    head = await read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ResponseError):
                    tally.failed += 1
                    break
                tally.statuses[head.status] = tally.statuses.get(head.status, 0) + 1
                if 200 <= head.status < 300:
                    tally.ok += 1
                else:
                    tally.failed += 1
                if not head.keep_alive:
                    break
        finally:
            writer.close()


class Runtime:
    """The soaked ``watt start``: its workers and restarts through the management API."""

    def __init__(self, pid: int) -> None:
        from watt.management import PREFIX, find_runtime

        self.pid = pid
        self._prefix = PREFIX
        self._socket = find_runtime(pid)["socket"]

    def application(self) -> dict:
        from watt.management import call

        apps = call(self._socket, "GET", self._prefix + "/applications", timeout=10)
        return next(a for a in apps if a["id"] == "trivial")


def ready_pids(app: dict) -> list[int]:
    return [w["pid"] for w in app["workers"] if w["status"] == "ready" and w["pid"]]


async def killer(runtime: Runtime, args: argparse.Namespace, started: float, tally: Tally,
                 kills: list[int], baseline: list[dict]) -> None:
    """After the warm-up, take the memory baseline (no kill yet, both workers up);
    then SIGKILL a ready worker every ``--kill-every`` s, the two in turn, only when
    both are ready, so the application always has one worker serving."""
    every = args.kill_every
    await asyncio.sleep(args.warmup)
    deadline = time.monotonic() + 10
    while True:
        first = await asyncio.to_thread(sample, runtime, started, tally, kills)
        if (first["ready"] == 2 and first["processes"] == 3) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    baseline.append(first)
    turn = 0
    next_kill = time.monotonic() + every
    while time.monotonic() < tally.deadline and tally.sent < tally.budget:
        await asyncio.sleep(max(0.0, min(next_kill, tally.deadline) - time.monotonic()))
        if time.monotonic() >= tally.deadline or tally.sent >= tally.budget:
            return
        pids = ready_pids(await asyncio.to_thread(runtime.application))
        if len(pids) < 2:
            next_kill = time.monotonic() + 0.1  # the last victim is not back yet
            continue
        victim = sorted(pids)[turn % 2]
        turn += 1
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:  # it died on its own since the sample: not our kill
            continue
        kills.append(victim)
        next_kill = time.monotonic() + every


def sample(runtime: Runtime, started: float, tally: Tally, kills: list[int]) -> dict:
    app = runtime.application()
    memory = session_memory(runtime.pid)
    return {"t": time.monotonic() - started, "sent": tally.sent, "ok": tally.ok,
            "failed": tally.failed, "kills": len(kills), "restarts": app["restarts"],
            "ready": len(ready_pids(app)), "processes": memory["processes"],
            "rss": memory["rss"], "pss": memory["pss"]}


HEADER = (f"{'t (s)':>6} {'sent':>8} {'ok':>8} {'failed':>6} {'kills':>5} {'restarts':>8} "
          f"{'ready':>5} {'procs':>5} {'RSS MB':>7} {'PSS MB':>7}")


def row(s: dict) -> str:
    return (f"{s['t']:6.1f} {s['sent']:8d} {s['ok']:8d} {s['failed']:6d} {s['kills']:5d} "
            f"{s['restarts']:8d} {s['ready']:5d} {s['processes']:5d} "
            f"{s['rss'] / MB:7.1f} {s['pss'] / MB:7.1f}")


async def soak(url: str, runtime: Runtime, args: argparse.Namespace) -> list[dict]:
    host, port, path = check_url(url + "/")
    started = time.monotonic()
    tally = Tally(budget=args.requests, deadline=started + args.duration)
    kills: list[int] = []
    request = build_request(host, port, path)
    load = [asyncio.create_task(connection(host, port, request, tally))
            for _ in range(args.connections)]
    baseline: list[dict] = []
    chaos = asyncio.create_task(killer(runtime, args, started, tally, kills, baseline))
    samples: list[dict] = []
    print(HEADER, flush=True)
    while not all(task.done() for task in load):
        done, _ = await asyncio.wait(load, timeout=args.interval)
        samples.append(await asyncio.to_thread(sample, runtime, started, tally, kills))
        print(row(samples[-1]), flush=True)
    chaos.cancel()
    await asyncio.gather(*load, chaos, return_exceptions=True)
    # The last row: after the load, once every killed worker is back.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(sample, runtime, started, tally, kills)
        if last["ready"] == 2 and last["restarts"] >= len(kills):
            break
        await asyncio.sleep(0.1)
    samples.append(last)
    print(row(last), flush=True)
    if tally.statuses:
        print("statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items())))
    return (baseline or samples)[:1] + samples  # a run shorter than its warm-up: no baseline


def verdicts(samples: list[dict], args: argparse.Namespace) -> bool:
    """``samples[0]`` is the baseline (after the warm-up, before the first kill)."""
    warm = [s for s in samples if s["t"] >= samples[0]["t"]]
    base, peak, end = samples[0]["rss"], max(s["rss"] for s in warm), samples[-1]
    bound = base * (1 + MEMORY_GROWTH_BOUND)
    memory_ok = peak <= bound
    print(f"memory: RSS after the {args.warmup:g} s warm-up {base / MB:.1f} MB, "
          f"peak {peak / MB:.1f} MB ({(peak / base - 1) * 100:+.1f} %), "
          f"end {end['rss'] / MB:.1f} MB; bound +{MEMORY_GROWTH_BOUND:.0%} = "
          f"{bound / MB:.1f} MB: {'within' if memory_ok else 'EXCEEDED'}")
    allowed = end["kills"] * args.connections
    failures_ok = end["failed"] <= allowed
    per_kill = end["failed"] / end["kills"] if end["kills"] else 0.0
    print(f"failures: {end['failed']} of {end['sent']} requests with {end['kills']} kills "
          f"({per_kill:.1f} per kill; at most {args.connections} per kill, one in flight per "
          f"connection): {'within' if failures_ok else 'EXCEEDED'}; restarts "
          f"{end['restarts']} for {end['kills']} kills")
    return memory_ok and failures_ok and end["restarts"] >= end["kills"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds at most")
    parser.add_argument("--requests", type=int, default=200_000, help="requests at most")
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between kills")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between rows")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds before the memory baseline sample")
    args = parser.parse_args(argv)
    if min(args.duration, args.kill_every, args.interval) <= 0 or args.requests < 1 \
            or args.connections < 1 or args.warmup < 0:
        parser.error("durations, --requests and --connections must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="watt-soak-") as tmp:
        config = Path(tmp) / "watt.json"
        config.write_text(json.dumps({
            "entrypoint": "trivial", "restartOnError": RESTART_MS,
            "server": {"hostname": "127.0.0.1", "port": 0},
            "applications": [{"id": "trivial", "path": str(APP_DIR), "app": "app:app",
                              "isolation": "process", "workers": 2}]}))
        spec = ServerSpec("watt-soak", [PY, "-m", "watt.cli", "start", "-c", str(config),
                                        "--port", "0", "--log-level", "warning"], REPO_ROOT)
        try:
            server, url = start_ready(spec)
        except ServerError as exc:
            print(f"soak: watt did not start: {exc}", file=sys.stderr)
            return 2
        try:
            print(f"soak: {args.connections} connections, at most {args.requests} requests "
                  f"in {args.duration:g} s, SIGKILL of a process worker every "
                  f"{args.kill_every:g} s (restartOnError {RESTART_MS} ms)", flush=True)
            samples = asyncio.run(soak(url, Runtime(server.pid), args))
            ok = verdicts(samples, args)
        except KeyboardInterrupt:
            return 130
        finally:
            report = server.stop()
            log(spec.name, f"stopped: {report.describe()}")
            if report.returncode not in (0, None):
                print_output(server)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
