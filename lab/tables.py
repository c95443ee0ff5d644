"""Numbers as tables show them: 4 significant digits (the API's JSON keeps full precision)."""
from __future__ import annotations

import math

DIGITS = 4


def sig(value, digits: int = DIGITS):
    """A float rounded to ``digits`` significant digits; anything else unchanged."""
    if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def rows(table, digits: int = DIGITS) -> list[list]:
    """Every float of a list of rows rounded to ``digits`` significant digits."""
    return [[sig(v, digits) for v in row] for row in table]


def styled(frame, digits: int = DIGITS):
    """A pandas DataFrame that shows its floats with ``digits`` significant digits while its data keep
    full precision (Gradio sends both: the page draws the shown text, an API client reads the data)."""
    def shown(v):
        return f"{v:.{digits}g}" if isinstance(v, float) and math.isfinite(v) else ("" if v is None else str(v))

    return frame.style.format(shown)
