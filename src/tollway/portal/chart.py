"""Usage charts as SVG, drawn with a matplotlib ``Figure`` (never pyplot: no global state,
safe in threads). Rendering takes tens of milliseconds, so callers run it off the event loop."""

from __future__ import annotations

import io

from matplotlib.figure import Figure

from tollway.services.usage import STATUS_CLASSES, UsageReport

COLOURS = {1: "#8c8c8c", 2: "#2e7d32", 3: "#1565c0", 4: "#ef6c00", 5: "#c62828"}


def usage_svg(report: UsageReport) -> bytes:
    """Stacked bars of calls per bucket, one colour per status class."""
    figure = Figure(figsize=(8, 3), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    positions = list(range(len(report.buckets)))
    bottom = [0] * len(positions)
    for status_class in STATUS_CLASSES:
        calls = report.calls[status_class]
        if any(calls):
            axes.bar(
                positions,
                calls,
                bottom=bottom,
                color=COLOURS[status_class],
                label=f"{status_class}xx",
            )
            bottom = [b + c for b, c in zip(bottom, calls, strict=True)]
    fmt = "%H:00" if report.span == "day" else "%d %b"
    step = 3 if report.span == "day" else 5
    axes.set_xticks(positions[::step], [b.strftime(fmt) for b in report.buckets[::step]])
    axes.set_ylabel("calls")
    axes.set_title(
        "calls per hour, last 24 h (UTC)"
        if report.span == "day"
        else "calls per day, last 30 days (UTC)"
    )
    if report.total:
        axes.legend(loc="upper left", frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()
