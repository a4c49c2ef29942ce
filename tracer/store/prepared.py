"""Reads built once with Core and run on the driver's cursor: the scans' few queries, without SQLAlchemy's
execution machinery per call.

A scan reads three rows or row sets (what its code names, the code's scan counts, the lot's events). Through
``Connection.execute``, with the connection and the rows made models, they cost 0.48 ms of a cached parcel
scan's ~1.3 ms of CPU, 0.30 ms this way (the scan benchmark's store, in process). A
``PreparedRead`` is compiled once per dialect; each run binds the parameters in the compiled order, executes on the
connection's own DBAPI cursor, inside the transaction SQLAlchemy began (so a read-only scan still reads one
snapshot), and converts each column as SQLAlchemy would have (the type's result processor: SQLite's datetimes
and booleans are text and integers).

Only for drivers with positional ``?`` parameters (SQLite's); on any other dialect a run is
``Connection.execute``, whose rows behave the same: tuples with the columns as attributes.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Select
from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...]  # the bound parameters' names in the statement's order
    defaults: dict[str, Any]  # the values bound in the statement itself (literals)
    bind: tuple[tuple[int, Callable[[Any], Any]], ...]  # (parameter position, bind processor), where one exists
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column index, result processor), where one exists
    row: Any  # the namedtuple class of the rows


class PreparedRead:
    """A Core SELECT, run with ``rows``, ``first`` or ``one`` on a Connection; see the module's notes."""

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}  # by dialect name: a process may hold engines of several

    def rows(self, connection: Connection, **params: Any) -> list[Any]:
        """Every row, in the statement's order."""
        dialect = connection.dialect
        if dialect.paramstyle != "qmark":
            return list(connection.execute(self.statement, params))
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        if not connection.in_transaction():
            connection.begin()  # as the first execute would: the engine's begin (a read-only one's) applies
        bound = compiled.defaults | params
        values = [bound[name] for name in compiled.order]
        for index, process in compiled.bind:
            values[index] = process(values[index])
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, values)
            fetched = cursor.fetchall()
        except dialect.loaded_dbapi.Error as exc:
            # Raised as Connection.execute raises it (OperationalError for a locked or broken database, ...).
            raise DBAPIError.instance(compiled.sql, values, exc, dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()
        if compiled.convert:
            fetched = [_converted(row, compiled.convert) for row in fetched]
        return [compiled.row._make(row) for row in fetched]

    def first(self, connection: Connection, **params: Any) -> Any | None:
        """The first row, or None."""
        found = self.rows(connection, **params)
        return found[0] if found else None

    def one(self, connection: Connection, **params: Any) -> Any:
        """The only row (the statement always yields one: an aggregate)."""
        (found,) = self.rows(connection, **params)
        return found

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        columns = self.statement.selected_columns
        processors = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
        assert compiled.positiontup is not None  # a positional paramstyle
        order = tuple(compiled.positiontup)
        literals = compiled.construct_params(_check=False)
        binders = [compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order]
        made = _Compiled(
            sql=str(compiled),
            order=order,
            defaults={name: literals[name] for name in order if not compiled.binds[name].required},
            bind=tuple((index, process) for index, process in enumerate(binders) if process is not None),
            convert=tuple((index, process) for index, process in enumerate(processors) if process is not None),
            # Named like the result's keys; a joined select repeats names (every table's "id"): renamed, and
            # read by position.
            row=namedtuple("PreparedRow", list(columns.keys()), rename=True),
        )
        self._compiled[dialect.name] = made
        return made


def _converted(row: Sequence[Any], convert: tuple[tuple[int, Callable[[Any], Any]], ...]) -> list[Any]:
    values = list(row)
    for index, process in convert:
        values[index] = process(values[index])
    return values
