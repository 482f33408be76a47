"""How the book shows a table: no 0..n row index, numbers to four significant digits, blanks for missing values."""
from __future__ import annotations

import numbers

import pandas as pd


def _cell(value) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return value
    if isinstance(value, numbers.Integral):
        return f"{value:,}"
    return f"{value:.4g}"


def tidy(frame: pd.DataFrame, index: bool = False):
    """``frame`` for display (a pandas Styler): its index hidden unless ``index`` (a meaningful one, e.g. the
    optimizer of a groupby), floats as 4 significant digits, integers with thousands separators."""
    styler = frame.style.format(_cell, na_rep="")
    return styler if index else styler.hide(axis="index")
