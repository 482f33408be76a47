"""Argument validation shared by every public entry point.

Each check raises an error that names the parameter, the value received and what is allowed,
so a typo fails at once instead of after minutes of training.
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable


class NonFiniteWarning(RuntimeWarning):
    """A NaN or inf appeared in a loss, gradient or meta-gradient; the message says where (step, task)."""


def check_choice(name: str, value, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed`` (strings, case-sensitive), else raise ValueError."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")
    return value


def check_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as int if it is an integer (not bool) >= ``minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an integer >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def check_positive_float(name: str, value) -> float:
    """Return ``value`` as float if it is a finite number > 0, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a finite number > 0")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a finite number > 0")
    return float(value)


def check_seed(name: str, value) -> int:
    """Seeds are non-negative integers (torch.Generator.manual_seed accepts those portably)."""
    return check_int(name, value, minimum=0)
