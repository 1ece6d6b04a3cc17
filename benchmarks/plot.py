"""One PNG for a suite run: a panel per scenario, Watt's bars in one colour, baselines grey.

matplotlib is optional (the ``bench`` extra installs it): without it ``write`` says so
and writes nothing; the JSON results are complete either way. Uses the Agg backend,
so no display is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from harness import REPO_ROOT

WATT = "#d9480f"
BASE = "#868e96"
SERIES = ("#1c7ed6", "#74b816")
MISSING = (
    "plot skipped: matplotlib is not installed (pip install -e '.[bench]' or pip install "
    "matplotlib)"
)


def _value(v: float | None) -> float:
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _label_bars(ax, bars, values, fmt: str) -> None:
    for bar, v in zip(bars, values, strict=True):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            text = "n/a"
        else:
            text = format(v, fmt)
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=7, xytext=(0, 1),
                    textcoords="offset points")


def _panel(ax, plot: dict) -> None:
    kind = plot["kind"]
    subjects = set(plot.get("subjects", []))
    labels = plot["labels"]
    ax.set_title(plot["title"], fontsize=10)
    if kind == "bar":
        values = plot["values"]
        colours = [WATT if name in subjects else BASE for name in labels]
        bars = ax.bar(range(len(labels)), [_value(v) for v in values], color=colours)
        small = max((_value(v) for v in values), default=0) < 10
        _label_bars(ax, bars, values, ".2f" if small else ",.0f")
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel(plot["ylabel"], fontsize=8)
    elif kind == "barh":
        values = plot["values"]
        colours = [WATT if name in subjects else BASE for name in labels]
        ax.barh(range(len(labels)), [_value(v) for v in values], color=colours)
        for i, v in enumerate(values):
            text = "n/a" if v is None or math.isnan(v) else f"{v:,.0f}"
            ax.annotate(text, (_value(v), i), va="center", fontsize=7, xytext=(2, 0),
                        textcoords="offset points")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(plot["xlabel"], fontsize=8)
        if plot.get("line") is not None:
            ax.axvline(plot["line"], color="black", linestyle="--", linewidth=0.8)
            ax.annotate("target", (plot["line"], len(labels) - 0.5), fontsize=7,
                        xytext=(2, 0), textcoords="offset points")
    elif kind == "grouped":
        width = 0.38
        for n, (name, values) in enumerate(plot["series"].items()):
            xs = [i + (n - 0.5) * width for i in range(len(labels))]
            bars = ax.bar(xs, [_value(v) for v in values], width, label=name,
                          color=SERIES[n % len(SERIES)])
            _label_bars(ax, bars, values, ".1f")
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=7)
        ax.set_ylabel(plot["ylabel"], fontsize=8)
        ax.legend(fontsize=7)
    if plot.get("line") is not None and kind != "barh":
        ax.axhline(plot["line"], color="black", linestyle="--", linewidth=0.8)
        ax.annotate("target", (ax.get_xlim()[0], plot["line"]), fontsize=7, xytext=(2, 2),
                    textcoords="offset points")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y" if kind != "barh" else "x", alpha=0.3)


def write(scenarios: Sequence, path: Path, utc: str, quick: bool) -> str:
    """Draw every scenario that has a plot into ``path``; returns the line to print."""
    try:
        import matplotlib
    except ImportError:
        return MISSING
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [s for s in scenarios if s.plot]
    if not panels:
        return "plot skipped: no scenario to plot"
    cols = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    for ax, scenario in zip(axes.flat, panels, strict=False):
        _panel(ax, scenario.plot)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"Watt for Python benchmarks{' (quick)' if quick else ''}, {utc} "
                 f"(Watt in orange, baselines grey)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (4.2 * rows)))  # room for the title
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot: {path.relative_to(REPO_ROOT)}"
