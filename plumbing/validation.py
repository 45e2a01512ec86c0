"""Argument checks shared by every library function: bad input raises ValueError/TypeError that
names the parameter and the allowed range (project standards)."""
from __future__ import annotations

import math
import numbers

import numpy as np


def check_int(name: str, value, *, min_value: int | None = None, max_value: int | None = None) -> int:
    """Return ``value`` as int; TypeError if not an integer, ValueError if out of range."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if min_value is not None and value < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {value}")
    return value


def check_float(name: str, value, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a finite float inside the given interval, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    lo_br, hi_br = ("(" if low_open else "["), (")" if high_open else "]")
    rng = f"{lo_br}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi_br}"
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite and in {rng}, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be in {rng}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be in {rng}, got {value}")
    return value


def check_choice(name: str, value, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def check_array(name: str, value, *, ndim: int | None = None, min_len: int = 1,
                finite: bool = True) -> np.ndarray:
    """Return ``value`` as an ndarray; ValueError for wrong ndim, too few rows, or NaN/inf."""
    arr = np.asarray(value)
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got dtype object")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if arr.ndim >= 1 and arr.shape[0] < min_len:
        raise ValueError(f"{name} must have at least {min_len} rows, got {arr.shape[0]}")
    if finite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_norm(name: str, value) -> str:
    """Normalise an l_p norm choice to ``"2"`` or ``"inf"``.

    Accepted: the strings ``"2"`` and ``"inf"``, the number 2 (int, float or numpy scalar) and
    infinity (``float("inf")``, ``np.inf``). Anything else raises, naming ``name``: a string or
    number outside these (e.g. ``"1"``, ``"linf"``, 1) a ValueError listing the allowed values,
    another type (bool, None, a list) a TypeError."""
    allowed = "'2', 'inf', 2 or float('inf')"
    if isinstance(value, str):
        if value in ("2", "inf"):
            return value
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise TypeError(f"{name} must be one of {allowed}; got {type(value).__name__} {value!r}")
    v = float(value)
    if v == 2.0:
        return "2"
    if v == math.inf:
        return "inf"
    raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
