"""Parsing and checking the charts sample's query parameters.

Lists arrive comma-separated, as in the user's APIFlask sample (``values=1,2,3``). Everything the
seed validated is kept (values 0..3.4028235e38, one label per value, no pie of a single 0) and
the gaps its property tests left are closed: NaN and infinities, empty lists, pies whose values are
all 0, bars whose x and y lists differ in length, labels longer than 30 characters or holding
characters the chart font cannot draw. Each failure is a :class:`ChartParameterError` naming the
parameter to fix.
"""

from __future__ import annotations

import math
import re

from tollway.samples.chart_rendering import BarChart, PieChart, undrawable_characters

MAX_TEXT = 30
MAX_ITEMS = 50
MAX_LIST_CHARS = 2000
# The seed's bound for pie values (float32's largest); bars use it for both signs.
MAX_VALUE = 3.4028235e38
# Plain decimal numbers, ASCII digits only (float() alone would also take "1_000", "nan" and
# Arabic-Indic digits), optionally padded with spaces. The same patterns go into the OpenAPI
# document, so the schema describes exactly which strings the parser reads.
_DECIMAL = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
SIGNED_NUMBER = rf" *[+-]?{_DECIMAL} *"
UNSIGNED_NUMBER = rf" *\+?{_DECIMAL} *"
LABEL = rf"[^,]{{0,{MAX_TEXT}}}"


def list_pattern(item: str) -> str:
    """A regular expression for a non-empty comma-separated list of ``item``."""
    return rf"^{item}(?:,{item})*$"


class ChartParameterError(Exception):
    """A query parameter that cannot make a chart, with what to fix."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def _shown(text: str) -> str:
    """``text`` quoted for an error message, cut short so a huge input is not echoed back."""
    return repr(text if len(text) <= 20 else text[:20] + "...")


def split_list(parameter: str, raw: str) -> list[str]:
    """The comma-separated items of ``raw``; an empty string is an empty list."""
    items = raw.split(",") if raw else []
    if len(items) > MAX_ITEMS:
        raise ChartParameterError(parameter, f"at most {MAX_ITEMS} items, got {len(items)}")
    return items


def check_text(parameter: str, text: str) -> str:
    """``text`` if it fits in ``MAX_TEXT`` characters and the font can draw all of it."""
    if len(text) > MAX_TEXT:
        raise ChartParameterError(parameter, f"{_shown(text)} is longer than {MAX_TEXT} characters")
    bad = undrawable_characters(text)
    if bad:
        raise ChartParameterError(
            parameter, f"{_shown(text)} has characters the chart font cannot draw: {bad!r}"
        )
    return text


def optional_text(parameter: str, text: str | None) -> str | None:
    """A checked title or axis label; an empty one means none."""
    return check_text(parameter, text) if text else None


def _not_a_number_reason(text: str) -> str:
    if re.fullmatch(SIGNED_NUMBER, text):
        return "is negative; pie values must be 0 or more"
    try:
        finite = math.isfinite(float(text))
    except ValueError:
        finite = True
    return "is not a plain decimal number" if finite else "is not a finite number"


def parse_number(parameter: str, item: str, *, signed: bool) -> float:
    """One finite number; negative ones only when ``signed``; at most ``MAX_VALUE`` in size."""
    text = item.strip(" ")
    if not re.fullmatch(SIGNED_NUMBER if signed else UNSIGNED_NUMBER, text):
        raise ChartParameterError(parameter, f"{_shown(text)} {_not_a_number_reason(text)}")
    value = float(text)
    if abs(value) > MAX_VALUE:
        low = -MAX_VALUE if signed else 0.0
        raise ChartParameterError(
            parameter, f"{_shown(text)} is outside the allowed range {low:g}..{MAX_VALUE:g}"
        )
    return value


def parse_numbers(parameter: str, raw: str, *, signed: bool) -> tuple[float, ...]:
    """A non-empty comma-separated list of numbers (see :func:`parse_number`)."""
    items = split_list(parameter, raw)
    if not items:
        raise ChartParameterError(parameter, "give at least one number, e.g. 1,2,3")
    return tuple(parse_number(parameter, item, signed=signed) for item in items)


def parse_labels(parameter: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list of labels, each checked with :func:`check_text`."""
    return tuple(check_text(parameter, label) for label in split_list(parameter, raw))


def bar_chart(
    xvalues: str, yvalues: str, title: str | None, xlabel: str | None, ylabel: str | None
) -> BarChart:
    """The bar chart the query describes."""
    categories = parse_labels("xvalues", xvalues)
    heights = parse_numbers("yvalues", yvalues, signed=True)
    if len(categories) != len(heights):
        raise ChartParameterError(
            "xvalues",
            f"give one x value per y value ({len(categories)} xvalues for {len(heights)} yvalues)",
        )
    return BarChart(
        categories,
        heights,
        title=optional_text("title", title),
        xlabel=optional_text("xlabel", xlabel),
        ylabel=optional_text("ylabel", ylabel),
    )


def pie_chart(values: str, labels: str | None, title: str | None) -> PieChart:
    """The pie chart the query describes; ``labels`` empty or absent means unlabelled."""
    numbers = parse_numbers("values", values, signed=False)
    names = parse_labels("labels", labels) if labels else None
    if names is not None and len(names) != len(numbers):
        raise ChartParameterError(
            "labels",
            f"Labels must be specified for each value ({len(names)} labels for "
            f"{len(numbers)} values)",
        )
    if not any(numbers):
        message = (
            "Cannot create a pie chart with single value of 0"
            if len(numbers) == 1
            else "Cannot create a pie chart whose values are all 0"
        )
        raise ChartParameterError("values", message)
    return PieChart(numbers, names, title=optional_text("title", title))
