"""Model instances from one hand-written statement that joins several tables.

The ORM compiles every query anew: 0.3-0.8 ms of Python per call on these machines for
a join, several times what PostgreSQL then spends on it. The hottest reads (token
checks, the download and version lookups) are therefore single parameterized
statements, and these helpers turn their rows back into ordinary model instances, built
the way the ORM builds them (each field's converters, then ``Model.from_db``), so
nothing downstream can tell the difference.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Model
from django.db.models.expressions import Col

M = TypeVar("M", bound=Model)

Converter = Callable[[Any, Any, Any], Any]


@functools.cache
def columns(model: type[Model], alias: str) -> str:
    """The select list of every concrete column of ``model``, in field order."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(f.column)}" for f in model._meta.concrete_fields)


@functools.cache
def _converters(model: type[Model]) -> list[tuple[Col, list[Converter]]]:
    # What SQLCompiler.get_converters finds for each column; the same for every row.
    found = []
    for field in model._meta.concrete_fields:
        column = field.get_col(model._meta.db_table)
        # Field.get_db_converters exists at run time; django-stubs does not declare it.
        own: list[Converter] = field.get_db_converters(connection)  # type: ignore[attr-defined]
        found.append((column, connection.ops.get_db_converters(column) + own))
    return found


def instance(model: type[M], row: Sequence[Any], start: int = 0) -> tuple[M, int]:
    """The instance of ``model`` whose columns (as :func:`columns` lists them) begin at
    ``row[start]``, and the index just past them."""
    values = []
    for offset, (column, converters) in enumerate(_converters(model)):
        value = row[start + offset]
        for convert in converters:
            value = convert(value, column, connection)
        values.append(value)
    names = [f.attname for f in model._meta.concrete_fields]
    return model.from_db(connection.alias, names, values), start + len(values)
