"""Service logic: plain functions over a Session; they never see HTTP types."""
from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

T = TypeVar("T")


class NotFound(LookupError):
    """The resource does not exist or belongs to another owner (the same answer for both)."""


class Conflict(RuntimeError):
    """The request is valid but the resource's state does not allow it now."""


def owned(session: Session, table: type[T], owner_id: int, row_id: int, what: str) -> T:
    """The row of `table` with `row_id` if `owner_id` owns it; NotFound otherwise, never telling which."""
    row = session.get(table, row_id)
    if row is None or row.owner_id != owner_id:
        raise NotFound(f"{what} {row_id} not found")
    return row
