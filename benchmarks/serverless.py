"""Serverless scenario: the cold start of ``watt.serverless`` and its warm invocations.

What a Lambda container pays on its first invocation, measured in a fresh Python
process each run: from before ``import watt.serverless`` to the answer of the
first event (an API Gateway HTTP API v2 sample event), i.e. the import, the
runtime's start (the application's subinterpreter, its lifespan) and the
request.  Then the warm path: the median time of one invocation once started.

Baseline, in the same invocation of this script: the same application module
imported and called directly as ASGI by a minimal event adapter in the same
kind of fresh process (what a function costs without Watt), so the report is a
ratio as well as a time.  Configurations: ``benchmarks/apps/startup`` (one
bare ASGI application, ``watt-1.json``) and the three-application one
(``watt-3.json``: the first answer means all three serve).

    python benchmarks/serverless.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP_DIR = HERE / "apps" / "startup"
ROOT = HERE.parent
EVENT = ROOT / "tests" / "events" / "apigw_v2.json"

# Runs in the fresh process; prints {"cold": s, "warm": [s, ...]}.
_WATT = """
import json, sys, time
t0 = time.perf_counter()
from watt.serverless import make_handler
event = json.load(open(sys.argv[2]))
event["rawPath"] = "/"
handler = make_handler(sys.argv[1])
reply = handler(event)
cold = time.perf_counter() - t0
assert reply["statusCode"] == 200, reply
warm = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    handler(event)
    warm.append(time.perf_counter() - t)
handler.host.close()
print(json.dumps({"cold": cold, "warm": warm}))
"""

_BARE = """
import asyncio, base64, json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from service import app
event = json.load(open(sys.argv[2]))
loop = asyncio.new_event_loop()

async def call(event):
    out = {}
    async def receive():
        return {"type": "http.request", "body": (event.get("body") or "").encode(),
                "more_body": False}
    async def send(message):
        out.setdefault(message["type"], message)
    scope = {"type": "http", "method": event["requestContext"]["http"]["method"],
             "path": "/", "query_string": event["rawQueryString"].encode(),
             "headers": [(k.encode(), v.encode()) for k, v in event["headers"].items()]}
    await app(scope, receive, send)
    body = out["http.response.body"]["body"]
    return {"statusCode": out["http.response.start"]["status"],
            "body": base64.b64encode(body).decode(), "isBase64Encoded": True}

reply = loop.run_until_complete(call(event))
cold = time.perf_counter() - t0
assert reply["statusCode"] == 200, reply
warm = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    loop.run_until_complete(call(event))
    warm.append(time.perf_counter() - t)
print(json.dumps({"cold": cold, "warm": warm}))
"""


def _run(code: str, target: str, warm: int) -> dict:
    out = subprocess.run([sys.executable, "-c", code, target, str(EVENT), str(warm)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(runs: int, warm: int) -> dict:
    """Median cold start and warm invocation per configuration, and their ratios."""
    cases = {"bare ASGI (baseline)": (_BARE, str(APP_DIR)),
             "watt, 1 application": (_WATT, str(APP_DIR / "watt-1.json")),
             "watt, 3 applications": (_WATT, str(APP_DIR / "watt-3.json"))}
    results = {}
    for _ in range(runs):  # interleaved: the machine's load hits every case alike
        for name, (code, target) in cases.items():
            sample = _run(code, target, warm)
            entry = results.setdefault(name, {"cold": [], "warm": []})
            entry["cold"].append(sample["cold"])
            entry["warm"].extend(sample["warm"])
    base = results["bare ASGI (baseline)"]
    report = {}
    for name, entry in results.items():
        cold, warm_p50 = statistics.median(entry["cold"]), statistics.median(entry["warm"])
        report[name] = {"cold_ms": round(cold * 1000, 1),
                        "cold_min_ms": round(min(entry["cold"]) * 1000, 1),
                        "cold_max_ms": round(max(entry["cold"]) * 1000, 1),
                        "warm_p50_us": round(warm_p50 * 1e6),
                        "cold_ratio": round(cold / statistics.median(base["cold"]), 1),
                        "warm_ratio": round(warm_p50 / statistics.median(base["warm"]), 1)}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/serverless.py")
    parser.add_argument("--quick", action="store_true", help="3 runs, 100 warm calls")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    report = measure(3 if args.quick else 5, 100 if args.quick else 500)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("| case | cold start, median (min–max) | × baseline | warm invocation p50 "
          "| × baseline |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in report.items():
        print(f"| {name} | {r['cold_ms']} ms ({r['cold_min_ms']}–{r['cold_max_ms']}) "
              f"| {r['cold_ratio']}x | {r['warm_p50_us']} µs | {r['warm_ratio']}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
