"""Drawing the charts sample's bar and pie charts with matplotlib's object API.

Only ``Figure`` and the Agg canvas are used, never ``pyplot``: pyplot keeps global state and
picks a GUI backend, neither of which belongs in a web server (matplotlib's own advice, which the
user's charts post follows). Every text element uses the DejaVu Sans font that ships inside
matplotlib, with mathtext off, so a label such as ``$x`` is drawn as typed instead of failing to
parse, and the output does not depend on the fonts installed on the machine.

Rendering is synchronous and CPU-bound; the web layer calls :func:`render` in a worker thread.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Literal

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, get_font

ChartFormat = Literal["png", "svg"]

FONT_PATH = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
FIGURE_INCHES = (6.4, 4.8)
DPI = 100  # so a PNG is 640 x 480 pixels
MEDIA_TYPES: dict[ChartFormat, str] = {"png": "image/png", "svg": "image/svg+xml"}
# No timestamps or version strings in the file: the same query gives the same bytes.
METADATA: dict[ChartFormat, dict[str, None]] = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
}


@dataclass(frozen=True, slots=True)
class BarChart:
    """Bars at ``heights``, one per category in ``categories``."""

    categories: tuple[str, ...]
    heights: tuple[float, ...]
    title: str | None = None
    xlabel: str | None = None
    ylabel: str | None = None


@dataclass(frozen=True, slots=True)
class PieChart:
    """Wedges proportional to ``values``, optionally labelled one label per value."""

    values: tuple[float, ...]
    labels: tuple[str, ...] | None = None
    title: str | None = None


Chart = BarChart | PieChart


@cache
def _drawable_codepoints() -> frozenset[int]:
    return frozenset(get_font(str(FONT_PATH)).get_charmap())


def undrawable_characters(text: str) -> str:
    """The characters of ``text`` the chart font cannot draw (control characters included)."""
    drawable = _drawable_codepoints()
    bad = (
        char
        for char in text
        if unicodedata.category(char) == "Cc" or (ord(char) not in drawable and char != " ")
    )
    return "".join(dict.fromkeys(bad))


def _font(size: str = "medium") -> FontProperties:
    return FontProperties(fname=FONT_PATH, size=size)


def _set_text(axes: Axes, chart: Chart) -> None:
    font = _font()
    if chart.title:
        axes.set_title(chart.title, fontproperties=_font("large"), parse_math=False)
    if isinstance(chart, BarChart):
        if chart.xlabel:
            axes.set_xlabel(chart.xlabel, fontproperties=font, parse_math=False)
        if chart.ylabel:
            axes.set_ylabel(chart.ylabel, fontproperties=font, parse_math=False)


def _draw_bar(axes: Axes, chart: BarChart) -> None:
    # Positions, not category strings: matplotlib's categorical axis would merge repeated names.
    positions = range(len(chart.heights))
    axes.bar(positions, chart.heights)
    rotate = len(chart.categories) > 6 or any(len(c) > 8 for c in chart.categories)
    axes.set_xticks(
        positions,
        labels=chart.categories,
        fontproperties=_font(),
        parse_math=False,
        rotation=45 if rotate else 0,
        ha="right" if rotate else "center",
    )


def _draw_pie(axes: Axes, chart: PieChart) -> None:
    axes.pie(
        chart.values,
        labels=list(chart.labels) if chart.labels else None,
        textprops={"fontproperties": _font(), "parse_math": False},
    )


def render(chart: Chart, chart_format: ChartFormat) -> bytes:
    """Draw ``chart`` and return it encoded as PNG or SVG."""
    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI)
    FigureCanvasAgg(figure)
    axes: Axes = figure.subplots()
    if isinstance(chart, BarChart):
        figure.subplots_adjust(bottom=0.2)
        _draw_bar(axes, chart)
    else:
        _draw_pie(axes, chart)
    _set_text(axes, chart)
    buffer = BytesIO()
    figure.savefig(buffer, format=chart_format, metadata=METADATA[chart_format])
    return buffer.getvalue()
