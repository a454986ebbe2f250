"""Usage charts as SVG, drawn with a matplotlib ``Figure`` (never pyplot: no global state,
safe in threads). Rendering takes tens of milliseconds, so callers run it off the event loop."""

from __future__ import annotations

import io

from matplotlib.figure import Figure

from tollway.services.usage import STATUS_CLASSES, UsageReport

COLOURS = {1: "#8c8c8c", 2: "#2e7d32", 3: "#1565c0", 4: "#ef6c00", 5: "#c62828"}
LABEL_EVERY = {"1h": 10, "24h": 3, "7d": 4, "30d": 5}  # x labels: every 10 min, 3 h, day, 5 days


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
    every = LABEL_EVERY[period.name]
    axes.set_xticks(
        positions[::every], [s.strftime(period.tick_format) for s in report.starts[::every]]
    )
    ticks = report.y_ticks()
    axes.set_yticks(ticks, [str(t) for t in ticks])
    axes.set_ylim(0, ticks[-1])
    axes.set_ylabel("calls")
    axes.set_title(f"calls per {period.step_name}, {period.title} (UTC)")
    if report.total.calls:
        axes.legend(loc="upper left", frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    return figure


def usage_svg(report: UsageReport) -> bytes:
    buffer = io.BytesIO()
    usage_figure(report).savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()
