"""Argument checks shared by the public API: one place for "an int in [low, high]" and
"a finite real number in a range", so every function words its errors the same way.

Errors name the parameter and the allowed range. A value of the wrong type raises
``ArgumentTypeError``, which is both a ``TypeError`` and a ``ValueError`` (as NumPy's
``AxisError`` is both a ``ValueError`` and an ``IndexError``): ``r=1.5`` is a wrong type
and a bad value at once, so either ``except`` clause catches it. ``bool`` is never
accepted as a number, although Python makes it a subclass of ``int``.
"""

from __future__ import annotations

import math
import numbers


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (caught by ``except TypeError`` and ``except ValueError``)."""


def _range_text(low, high, low_open=False, high_open=False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "any value"


def check_int(value, name: str, low=None, high=None, why: str = "") -> int:
    """``value`` as a Python int in ``[low, high]`` (either bound may be None).

    Accepts Python and NumPy integers, never ``bool``; raises ``ArgumentTypeError`` for
    another type and ``ValueError`` for an int out of range, both naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be an int {_range_text(low, high)}{why}, "
                                f"got {type(value).__name__} {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an int {_range_text(low, high)}{why}, got {value}")
    return value


def check_number(value, name: str, low=None, high=None, *, low_open=False, high_open=False,
                 why: str = "") -> float:
    """``value`` as a finite float within the bounds (open or closed at either end).

    Accepts Python/NumPy reals (ints included), never ``bool``; NaN and ±inf are refused.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a real number "
                                f"{_range_text(low, high, low_open, high_open)}{why}, "
                                f"got {type(value).__name__} {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond the float range, e.g. 10**400
        raise ValueError(f"{name} must be a finite number {_range_text(low, high, low_open, high_open)}"
                         f"{why}, got an int too large for a float") from None
    bad = not math.isfinite(value)
    if low is not None:
        bad = bad or (value <= low if low_open else value < low)
    if high is not None:
        bad = bad or (value >= high if high_open else value > high)
    if bad:
        raise ValueError(f"{name} must be a finite number {_range_text(low, high, low_open, high_open)}"
                         f"{why}, got {value!r}")
    return value


def _same(a, b) -> bool:
    """``a == b`` without the surprises: no str/number or bool/int mixing, no array truth values."""
    if a is b:
        return True
    if isinstance(a, str) != isinstance(b, str) or isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):
        return False


def check_choice(value, name: str, choices) -> object:
    """``value`` if it is one of ``choices``; ``ValueError`` listing them otherwise."""
    choices = tuple(choices)  # a str of choices must not match its substrings
    if not any(_same(value, c) for c in choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value
