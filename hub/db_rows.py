"""The hottest reads: hand-written statements, prepared, whose rows become model instances.

The ORM compiles every query anew: 0.3-0.8 ms of Python per call on these machines for
a join, several times what PostgreSQL then spends running it. And PostgreSQL plans each
statement anew: 0.1-0.4 ms for these joins, against 0.02-0.1 ms to run them. So the
hottest reads (token checks, the download and version lookups) are single parameterized
statements run by :func:`fetch`, which PostgreSQL plans once per connection, and
:func:`instance` turns their rows back into ordinary model instances, built the way the
ORM builds them (each field's converters, then ``Model.from_db``), so nothing downstream
can tell the difference.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Model
from django.db.models.expressions import Col

M = TypeVar("M", bound=Model)
Row = tuple[Any, ...]

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


@functools.cache
def _attnames(model: type[Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def instance(model: type[M], row: Sequence[Any], start: int = 0) -> tuple[M, int]:
    """The instance of ``model`` whose columns (as :func:`columns` lists them) begin at
    ``row[start]``, and the index just past them."""
    values = []
    for offset, (column, converters) in enumerate(_converters(model)):
        value = row[start + offset]
        for convert in converters:
            value = convert(value, column, connection)
        values.append(value)
    return model.from_db(connection.alias, _attnames(model), values), start + len(values)


def fetch(sql: str, params: Sequence[Any]) -> list[Row]:
    """Every row of ``sql``. On PostgreSQL the statement is prepared on its connection once
    it has run a few times (see DATABASE_PREPARED_STATEMENTS)."""
    with _cursor() as cursor:
        cursor.execute(sql, params)
        rows: list[Row] = cursor.fetchall()
    return rows


def fetch_many(statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
    """Every row of each of several independent statements, in one round trip to
    PostgreSQL (a psycopg pipeline) rather than one each."""
    if not _prepares():
        return [fetch(sql, params) for sql, params in statements]
    cursors = [_cursor() for _ in statements]
    try:
        with connection.wrap_database_errors, connection.connection.pipeline():
            for cursor, (sql, params) in zip(cursors, statements, strict=True):
                cursor.execute(sql, params)
        return [cursor.fetchall() for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()


def _prepares() -> bool:
    return connection.vendor == "postgresql" and bool(settings.DATABASE_PREPARED_STATEMENTS)


def _cursor() -> CursorWrapper:
    if not _prepares():
        return connection.cursor()
    # Not in django-stubs: Django's own psycopg 3 cursor with server-side binding.
    from django.db.backends.postgresql.base import (  # type: ignore[attr-defined]
        ServerBindingCursor,
    )

    # What connection.cursor() does, with a server-side binding cursor (the only kind
    # psycopg prepares): health check, connect, thread check, and Django's wrapper, so
    # errors still arrive as django.db errors and queries are still logged and hooked.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor = ServerBindingCursor(connection.connection)
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)
