"""The benchmark suite's own logic (benchmarks/): arguments, ratios, memory, plot, file names.

The numbers themselves are never tested (they depend on the machine); what is
tested is that the suite reads, computes and writes them correctly.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import memory  # noqa: E402
import run  # noqa: E402
from loadgen import LoadResult  # noqa: E402
from suite import Measured, Scenario, ratio_matrix  # noqa: E402


def _load(rps: float, p50: float) -> LoadResult:
    return LoadResult(tool="wrk", connections=16, duration_s=3.0, requests=int(rps * 3),
                      requests_per_s=rps, p50_us=p50, p99_us=p50 * 3, errors=0, non_2xx=0)


def test_only_accepts_known_scenarios_comma_separated_or_repeated(capsys):
    args = run.parse_args(["--only", "cpu,memory", "--only", "startup", "--quick"])
    assert args.names == ["cpu", "memory", "startup"]
    assert run.parse_args([]).names == list(run.SCENARIOS)
    with pytest.raises(SystemExit) as exc:
        run.parse_args(["--only", "cpu,nope"])
    assert exc.value.code == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err


def test_quick_changes_defaults_only():
    quick = run.settings_from(run.parse_args(["--quick"]), None)
    assert (quick.duration_s, quick.connections, quick.warmup_s) == (2.0, 16, 0.0)
    explicit = run.settings_from(run.parse_args(["--quick", "--duration", "5"]), "/usr/bin/wrk")
    assert (explicit.duration_s, explicit.connections, explicit.wrk) == (5.0, 16, "/usr/bin/wrk")


def test_ratio_matrix_divides_each_subject_by_each_baseline():
    rows = [
        Measured("watt-1", "", _load(3000, 5000)),
        Measured("uvicorn", "", _load(12000, 1000)),
        Measured("hypercorn", "", _load(1500, 10000)),
        Measured("granian", "", None, failure="exited with code 1"),
    ]
    lines, data = ratio_matrix(rows, ["watt-1", "watt-2"], ["uvicorn", "hypercorn", "granian"])
    assert data["watt-1"]["uvicorn"] == {"rps": 0.25, "p50": 5.0}
    assert data["watt-1"]["hypercorn"] == {"rps": 2.0, "p50": 0.5}
    assert data["watt-1"]["granian"] == {"rps": None, "p50": None}  # not measured: no ratio
    assert "watt-2" not in data  # a subject that did not run has no row
    assert "0.25x|5.00x" in lines[-1] and "n/a|n/a" in lines[-1]


def test_session_memory_sums_a_process_and_its_child():
    code = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'input()']); input()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            start_new_session=True)
    try:
        # Wait (bounded, on the process itself) until the child exists: it shares the session.
        for _ in range(200):
            if len(memory.session_pids(proc.pid)) >= 2 or proc.poll() is not None:
                break
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        pids = memory.session_pids(proc.pid)
        assert len(pids) == 2 and proc.pid in pids
        mem = memory.session_memory(proc.pid)
        assert mem["processes"] == 2
        own = memory._kib(f"/proc/{proc.pid}/status", "VmRSS")
        assert mem["rss"] > own > 1024 * 1024  # two interpreters, each several MB
        assert 0 < mem["pss"] <= mem["rss"]
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def test_per_worker_is_the_slope_from_one_to_four_workers():
    mb = memory.MB
    rows = {"app-subinterpreter-1": {"rss": 60 * mb, "pss": 50 * mb},
            "app-subinterpreter-4": {"rss": 96 * mb, "pss": 80 * mb},
            "app-process-1": {"rss": 70 * mb, "pss": 50 * mb, "failure": None},
            "app-process-4": {"failure": "exited with code 1"}}
    assert memory.per_worker(rows, "app", "subinterpreter", "rss") == 12.0
    assert memory.per_worker(rows, "app", "subinterpreter", "pss") == 10.0
    assert math.isnan(memory.per_worker(rows, "app", "process", "rss"))


def test_results_path_does_not_overwrite_a_run_of_the_same_day(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RESULTS_DIR", tmp_path)
    first = run.results_path("", "2026-01-02")
    assert first == tmp_path / "2026-01-02"
    first.with_suffix(".json").write_text("{}")
    assert run.results_path("", "2026-01-02") == tmp_path / "2026-01-02-2"


def test_plot_writes_a_png_with_every_panel_kind(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import plot

    scenarios = [
        Scenario("a", "A", "", {}, False, {"kind": "bar", "title": "bars", "ylabel": "rps",
                                          "labels": ["watt", "uvicorn"],
                                          "values": [3000.0, math.nan], "subjects": ["watt"]}),
        Scenario("b", "B", "", {}, False, {"kind": "barh", "title": "hop", "xlabel": "us",
                                          "labels": ["fetch", "loopback"],
                                          "values": [140.0, 2000.0], "line": 50.0}),
        Scenario("c", "C", "", {}, False, {"kind": "grouped", "title": "mem", "ylabel": "MB",
                                          "labels": ["sub", "proc"], "line": 30.0,
                                          "series": {"RSS": [14.0, 26.0], "PSS": [14.0, None]}}),
    ]
    out = tmp_path / "x.png"
    monkeypatch.setattr(plot, "REPO_ROOT", tmp_path)  # the message is relative to it
    message = plot.write(scenarios, out, "2026-01-02T00:00:00+00:00", quick=True)
    assert message == "plot: x.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_h2load_output_is_read():
    import http2

    text = """finished in 3.00s, 3984.00 req/s, 152.63KB/s
requests: 11952 total, 12112 started, 11952 done, 11950 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 11940 2xx, 0 3xx, 10 4xx, 0 5xx
traffic: 457.95KB (468938) total, 128.41KB (131491) headers (space savings 89.04%)
                     min         max         mean         sd        +/- sd
time for request:    11.46ms     72.67ms     39.82ms      8.68ms    72.86%
"""
    result = http2.parse_h2load(text, connections=16, duration_s=3.0)
    assert result.requests_per_s == 3984.0 and result.requests == 11950
    assert result.errors == 2 and result.non_2xx == 10
    assert result.p50_us == 39820.0 and result.p99_us == 72670.0  # mean and max
    with pytest.raises(Exception, match="could not read"):
        http2.parse_h2load("garbage", 1, 1.0)
