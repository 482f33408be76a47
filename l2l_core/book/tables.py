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


def tidy(frame: pd.DataFrame, index: bool = False, widths: dict | None = None):
    """``frame`` for display (a pandas Styler): its index hidden unless ``index`` (a meaningful one, e.g. the
    optimizer of a groupby), floats as 4 significant digits, integers with thousands separators. ``widths`` maps
    text columns to a minimum width in em, so that a browser does not squeeze prose into a word per line."""
    styler = frame.style.format(_cell, na_rep="").set_table_styles(
        [{"selector": "td, th", "props": "padding: 0.2em 0.6em; vertical-align: top"}])  # columns apart, rows aligned
    if widths:
        styler = styler.set_table_styles({column: [{"selector": "td", "props": f"min-width: {em}em"}]
                                          for column, em in widths.items() if column in frame.columns}, overwrite=False)
    return styler if index else styler.hide(axis="index")


def markdown(text: str):
    """``text`` as a Markdown display object: the caption above a table (IPython is imported only when one is made)."""
    from IPython.display import Markdown

    return Markdown(text)
