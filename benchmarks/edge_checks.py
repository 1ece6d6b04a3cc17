"""What the edge's request checks cost: OpenAPI validation and JWT authentication
(issue 12; ``benchmarks/edge.py`` measures rate limit, CORS and security headers).

Two measurements, each against a baseline taken in the same invocation:

- **in process** (always): the edge pipeline (``watt.edge.Pipeline``) called as
  the engines call it, on a fresh ``EdgeRequest`` per request: no stage (the
  request object alone), validation of a GET (path and query parameters),
  validation of a POST (plus its JSON body), and a bearer token checked with
  HS256, RS256 and ES256, each token new (its signature verified) and the same
  token again (remembered).  Microseconds of CPU time per request, best of 3.
- **end to end**: ``apps/trivial`` under ``watt start``, 1 worker, each twice,
  alternating (the best run of each counts), loaded at
  ``/items/42?limit=5&verbose=true``: ``checks-off`` (no stage) and
  ``checks-validation`` (``watt-validation.json``: the app's ``openapi.json``);
  with wrk also ``checks-auth`` (``watt-auth.json``: HS256 on ``/items``, one
  token sent with ``-H``, as one client would).  Ratios to ``checks-off``.

Run it alone with ``python benchmarks/run.py --only edge-checks``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from harness import BENCH_DIR, REPO_ROOT, LoadError, parse_wrk_output, wrk_seconds
from observability import _best
from suite import Scenario, Settings, fmt_ratio, load_table, measure, ratio_value, watt_spec

sys.path.insert(0, str(REPO_ROOT))

APP_DIR = BENCH_DIR / "apps" / "trivial"
PATH = "/items/42?limit=5&verbose=true"
SECRET = "benchmark-secret-benchmark-secret-32"  # watt-auth.json's
ROUNDS = 2
ITEM = json.dumps({"name": "kettle", "price": 12.5, "tags": ["a", "b"]}).encode()


def _per_request_us(pipeline, make, n: int, body: bytes | None = None) -> float:
    """Best of 3 runs of ``n`` requests through ``pipeline``, in µs of this thread's CPU
    time per request (not wall time: on a shared machine, time spent preempted is not
    the check's)."""
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        for _ in range(n):
            req = make()
            if pipeline is not None:
                assert pipeline.check(req) is None
                if body is not None:
                    assert pipeline.wants_body(req) and pipeline.check_body(req, body) is None
        best = min(best, (time.thread_time() - started) / n * 1e6)
    return best


def in_process(n: int = 20_000) -> dict[str, float]:
    """µs per request of each check, and of the request object alone."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from watt.config import load_config
    from watt.edge import EdgeRequest, Pipeline
    from watt.edge.auth import AuthStage
    from watt.edge.info import EdgeInfo
    from watt.edge.validation import ValidationStage, compile_file

    loaded = load_config(str(APP_DIR / "watt-validation.json"))
    info = EdgeInfo("trivial", {app.id: app for app in loaded.applications})
    spec = compile_file(str(APP_DIR / "openapi.json"), "trivial")
    validation = Pipeline([ValidationStage(info, {"trivial": spec}, {})], info)
    claims = {"sub": "ada", "exp": int(time.time()) + 3600}
    pem = {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
           "ec": ec.generate_private_key(ec.SECP256R1())}
    folder = tempfile.mkdtemp(prefix="watt-bench-keys-")
    for name, key in pem.items():
        with open(os.path.join(folder, f"{name}.pem"), "wb") as fh:
            fh.write(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def auth(alg: str, key, tokens: int) -> tuple:
        jwt_cfg = {"secret": SECRET} if key is None else {"publicKey": f"{key}.pem"}
        cfg = load_config({"applications": [{"id": "trivial", "path": str(APP_DIR)}],
                           "auth": {"routes": [{"prefix": "/items", "jwt": jwt_cfg}]}})
        signed = [jwt.encode(dict(claims, jti=str(i)), SECRET if key is None else pem[key],
                             algorithm=alg).encode() for i in range(tokens)]
        return Pipeline([AuthStage(cfg.config.auth, folder)], info), iter(signed)

    def request(method: str = "GET", headers=()) -> EdgeRequest:
        path, _, query = PATH.partition("?")
        return EdgeRequest(method, path, query.encode(), [(b"host", b"x"), *headers],
                           ("127.0.0.1", 1), "http", "trivial")

    json_headers = [(b"content-type", b"application/json")]
    out = {"no stage": _per_request_us(None, request, n),
           "validation GET": _per_request_us(validation, request, n),
           "validation POST + body": _per_request_us(
               validation, lambda: request("POST", json_headers), n, ITEM)}
    try:
        for alg, key in (("HS256", None), ("RS256", "rsa"), ("ES256", "ec")):
            first = max(200, n // 20)  # each token seen for the first time: verified
            pipeline, tokens = auth(alg, key, 3 * first)
            out[f"auth {alg}, new token"] = _per_request_us(
                pipeline, lambda t=tokens: request(headers=[(b"authorization",
                                                             b"Bearer " + next(t))]), first)
            pipeline, tokens = auth(alg, key, 1)  # one client's token again: remembered
            header = [(b"authorization", b"Bearer " + next(tokens))]
            out[f"auth {alg}, same token"] = _per_request_us(
                pipeline, lambda h=header: request(headers=h), n)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def _wrk_with_token(token: str):
    """A loader (see suite.measure) that sends the bearer token with every request,
    at PATH (the server was found ready at ``/``, which is not protected)."""
    def load(url, connections, duration_s, warmup_s, wrk):
        target = url.split("/?", 1)[0] + PATH

        def once(seconds: int) -> str:
            argv = [wrk, f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s",
                    "--latency", "-H", f"Authorization: Bearer {token}", target]
            done = subprocess.run(argv, check=False, capture_output=True, text=True,
                                  timeout=seconds + 30)
            if done.returncode != 0:
                raise LoadError(f"wrk exited with code {done.returncode}: {done.stderr}")
            if "Non-2xx" in done.stdout:
                raise LoadError(f"the token was refused:\n{done.stdout}")
            return done.stdout

        if warmup_s > 0:
            once(wrk_seconds(warmup_s))
        return parse_wrk_output(once(wrk_seconds(duration_s)), connections)

    return load


def scenario(settings: Settings) -> Scenario:
    load = settings.load()
    micro = in_process(5_000 if settings.quick else 20_000)
    servers = [("checks-off", "watt.json", PATH, None, "Watt, 1 worker, no edge stage"),
               ("checks-validation", "watt-validation.json", PATH, None,
                "Watt, 1 worker, requests validated (path + query)")]
    if settings.wrk is not None:
        import jwt

        token = jwt.encode({"sub": "bench", "exp": int(time.time()) + 3600}, SECRET,
                           algorithm="HS256")
        servers.append(("checks-auth", "watt-auth.json", "/?ready", _wrk_with_token(token),
                        "Watt, 1 worker, HS256 bearer token checked"))
    runs: dict[str, list] = {name: [] for name, *_ in servers}
    for _ in range(ROUNDS):  # alternating, the best run of each counts
        for name, config, path, loader, label in servers:
            runs[name].append(measure(watt_spec(name, APP_DIR / config, "--workers", "1"),
                                      load, path, label, loader=loader))
    rows = [_best(runs[name]) for name, *_ in servers]
    base = rows[0].rps
    ratios = {r.name: ratio_value(r.rps, base) for r in rows[1:]}
    lines = ["in process, µs of CPU per request (best of 3; no stage = the request object "
             "alone):"]
    lines += [f"  {name:<26}{value:9.2f} µs" for name, value in micro.items()]
    lines += ["", *load_table(rows), ""]
    lines += [f"{name} / checks-off: {fmt_ratio(value)} requests/s"
              for name, value in ratios.items()]
    return Scenario(
        key="edge-checks",
        title="Edge checks: OpenAPI validation and JWT authentication, on vs off",
        text="\n".join(lines),
        data={"in_process_us": micro, "rows": [r.to_json() for r in rows],
              "ratios": {k: (None if v != v else v) for k, v in ratios.items()}},
        failed=any(r.result is None for r in rows),
        plot={"kind": "bar", "title": f"Edge checks, c={load.connections}",
              "ylabel": "requests/s", "labels": [r.name for r in rows],
              "values": [r.rps for r in rows], "subjects": [r.name for r in rows[1:]]},
    )


if __name__ == "__main__":
    import run

    sys.exit(run.main(["--only", "edge-checks", *sys.argv[1:]]))
