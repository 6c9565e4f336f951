"""Service logic: plain functions over a Session; they never see HTTP types."""
from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

T = TypeVar("T")
MAX_ID = 2**31 - 1  # PostgreSQL integer: the widest id any backend stores


class NotFound(LookupError):
    """The resource does not exist or belongs to another owner (the same answer for both)."""


class Conflict(RuntimeError):
    """The request is valid but the resource's state does not allow it now."""


def owned(session: Session, table: type[T], owner_id: int, row_id: int, what: str) -> T:
    """The row of `table` with `row_id` if `owner_id` owns it; NotFound otherwise, never telling which."""
    # An id past the column's range cannot exist; asking the database would be an error, not a miss.
    if isinstance(row_id, bool) or not isinstance(row_id, int) or not 1 <= row_id <= MAX_ID:
        raise NotFound(f"{what} {row_id} not found")
    row = session.get(table, row_id)
    if row is None or row.owner_id != owner_id:
        raise NotFound(f"{what} {row_id} not found")
    return row


def owned_rows(session: Session, table: type[T], owner_id: int, limit: int | None = None,
               before_id: int | None = None, **equal_to) -> list[T]:
    """`owner_id`'s rows of `table`, newest first, those with id < before_id when given (the next page);
    each keyword not None filters its column by equality."""
    q = select(table).where(table.owner_id == owner_id).order_by(table.id.desc()).limit(limit)
    if before_id is not None:
        q = q.where(table.id < before_id)
    for column, value in equal_to.items():
        if value is not None:
            q = q.where(getattr(table, column) == value)
    return list(session.scalars(q))
