"""Bounded path and query parameters shared by the routes (and the web pages).

Ids are whole numbers from 1 to 2^31 - 1 (PostgreSQL's integer), written as
plain digits: "1.0", "+1" or "1e3" is not an id, and a number past the column's
range is refused with 422 before it reaches the database (never a 500). The
bounds are annotated-types constraints so that the OpenAPI document states them
as minimum / maximum.
"""
from __future__ import annotations

import re
from typing import Annotated

import annotated_types as at
from fastapi import Path, Query
from pydantic import BeforeValidator

from ..services import MAX_ID

MAX_INDEX = 2**31 - 1


def _plain_digits(value: object) -> object:
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,10}", value):
        raise ValueError("must be a whole number written with digits 0-9, such as 42")
    return value


Digits = BeforeValidator(_plain_digits)
Id = Annotated[int, at.Ge(1), at.Le(MAX_ID)]
PathId = Annotated[Id, Path(), Digits]
QueryId = Annotated[Id, Query(), Digits]
OptionalQueryId = Annotated[Id | None, Query(), Digits]
SampleIndex = Annotated[int, Path(), at.Ge(0), at.Le(MAX_INDEX), Digits]
Dimension = Annotated[int, Path(), at.Ge(0), at.Le(4096), Digits]
