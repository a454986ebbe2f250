"""Usage charts as SVG, drawn with a matplotlib ``Figure`` (never pyplot: no global state,
safe in threads). Rendering takes tens of milliseconds, so callers run it off the event loop."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime

from matplotlib.figure import Figure

from tollway.services.usage import STATUS_CLASSES, UsageReport

COLOURS = {1: "#8c8c8c", 2: "#2e7d32", 3: "#1565c0", 4: "#ef6c00", 5: "#c62828"}
# which steps get an x label: every 10 minutes, 3 hours, midnight, 5th day of the month
LABELLED: dict[str, Callable[[datetime], bool]] = {
    "1h": lambda start: start.minute % 10 == 0,
    "24h": lambda start: start.hour % 3 == 0,
    "7d": lambda start: start.hour == 0,
    "30d": lambda start: start.day % 5 == 0,
}


def usage_figure(report: UsageReport) -> Figure:
    """Stacked bars of calls per step, one colour per status class, whole-number y ticks."""
    figure = Figure(figsize=(8, 3), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    positions = list(range(len(report.starts)))
    bottom = [0] * len(positions)
    for status_class in STATUS_CLASSES:
        calls = report.calls(status_class)
        if any(calls):
            axes.bar(
                positions,
                calls,
                bottom=bottom,
                color=COLOURS[status_class],
                label=f"{status_class}xx",
            )
            bottom = [b + c for b, c in zip(bottom, calls, strict=True)]
    period = report.period
    labelled = [(i, s) for i, s in enumerate(report.starts) if LABELLED[period.name](s)]
    axes.set_xticks([i for i, _ in labelled], [s.strftime(period.tick_format) for _, s in labelled])
    ticks = report.y_ticks()
    axes.set_yticks(ticks, [str(t) for t in ticks])
    axes.set_ylim(0, ticks[-1])
    axes.set_ylabel("calls")
    axes.set_title(f"calls per {period.step_name}, {period.title} (UTC)")
    if report.total.calls:
        axes.legend(loc="upper left", bbox_to_anchor=(1, 1), frameon=False)  # beside the bars
    axes.spines[["top", "right"]].set_visible(False)
    return figure


def usage_svg(report: UsageReport) -> bytes:
    buffer = io.BytesIO()
    usage_figure(report).savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()
