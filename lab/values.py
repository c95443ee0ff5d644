"""Checks of single request values: each returns the value or raises ValueError naming the
parameter, the value and what is allowed."""
from __future__ import annotations

import math

import numpy as np


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_number(value):
    """int / float from a number or a numeric string; None when it is neither."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return None


def check_int(name: str, value, low: int, high: int, *, hint: str = "") -> int:
    allowed = f"(allowed: {low} <= {name} <= {high}{hint})"
    number = _as_number(value)
    if number is None or (isinstance(number, float) and (not math.isfinite(number) or number != int(number))):
        raise ValueError(f"{name}={short(value)} must be an integer {allowed}")
    number = int(number)   # exact for any size: no detour through float
    if not low <= number <= high:
        raise ValueError(f"{name}={short(value)} is out of range {allowed}")
    return number


def check_float(name: str, value, low: float, high: float) -> float:
    allowed = f"(allowed: {low:g} <= {name} <= {high:g})"
    number = _as_number(value)
    if number is None:
        raise ValueError(f"{name}={short(value)} must be a number {allowed}")
    if isinstance(number, int) and not low <= number <= high:   # huge ints overflow float()
        raise ValueError(f"{name}={short(value)} is out of range {allowed}")
    number = float(number)
    if not math.isfinite(number):
        raise ValueError(f"{name}={short(value)} must be a finite number {allowed}")
    if not low <= number <= high:
        raise ValueError(f"{name}={short(value)} is out of range {allowed}")
    return number


def check_bool(name: str, value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{name}={short(value)} must be true or false")


def check_known_params(values: dict, known) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(known)}")
