"""CSV cells that a spreadsheet will not run as formulas (OWASP's CSV injection rule).

A cell starting with = + - @ tab or carriage return is prefixed with a single
quote, so `=HYPERLINK(...)` in a user's attribute shows as text. Numbers are
left alone: a negative log density is data, not a formula.
"""
from __future__ import annotations

from numbers import Number
from typing import Any

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_row(values: list[Any]) -> list[Any]:
    return [safe_cell(v) for v in values]


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text columns (and column names) are neutralised; numeric columns untouched."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: v if isinstance(v, Number) else safe_cell(v))
    out.columns = [safe_cell(str(c)) for c in out.columns]
    return out
