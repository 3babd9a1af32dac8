"""Hot statements run straight on the driver's cursor, compiled once per dialect.

Every host command runs a score of small statements (find the command, lock its
deployment, update it, queue the next). Through ``Connection.execute`` each of them paid
SQLAlchemy's per-execution machinery (execution context, parameter construction, events,
result set-up), about twice what the driver itself spent running the statement: the
larger part of a command's database work. A :class:`CompiledStatement` is still a
SQLAlchemy Core statement, written and reviewed as the others are; it is compiled by
SQLAlchemy's own compiler, once per dialect (the SQL text, the order of its parameters and
each parameter's and column's type conversions, JSON included), and then run on the
DBAPI cursor of the caller's connection, inside the caller's transaction.

Errors stay SQLAlchemy's: a driver error goes through the connection's own handling, so
it is raised as the same :class:`~sqlalchemy.exc.DBAPIError` subclass a ``Connection.execute``
raises (an unreachable database is an ``OperationalError``, a PostgreSQL deadlock keeps its
SQLSTATE for the retry) and a dropped connection is invalidated with its pool as before.

A statement whose parameters SQLAlchemy renders only at execution time (``column.in_``
of a plain list) cannot be compiled ahead: list the values as SQL literals instead
(:func:`one_of`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement

Parameters = Mapping[str, Any]
_Processor = Optional[Callable[[Any], Any]]


def one_of(column: sa.ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN (values)`` with the values as literals of the column's type: a form
    compiled once (a plain list is expanded by SQLAlchemy on every execution)."""
    return column.in_([sa.literal(value, column.type) for value in values])


@dataclass(frozen=True)
class _Bind:
    """One parameter of the compiled SQL: its name, its value when the statement fixes it
    (a literal), and the type's conversion to what the driver takes."""

    name: str  # in the SQL
    key: str  # in the parameters given
    required: bool
    value: Any
    process: _Processor


@dataclass
class _Compiled:
    sql: str
    positional: bool
    binds: Tuple[_Bind, ...]  # in the SQL's order when positional
    keys: Tuple[str, ...]  # the result's column names (a SELECT's)
    types: Tuple[Any, ...]  # and their SQLAlchemy types
    # The columns that need a conversion and theirs, found at the first answer: some
    # dialects choose it by the type the database answers with, as SQLAlchemy does.
    conversions: Optional[Tuple[Tuple[int, Callable[[Any], Any]], ...]] = None
    # Whether the statement answers rows, also known from the first answer on: the
    # driver's description of them (psycopg builds it anew at each look) is not needed again.
    answers_rows: Optional[bool] = None

    def conversions_for(
        self, dialect: Dialect, description: Sequence[Any]
    ) -> Tuple[Tuple[int, Callable[[Any], Any]], ...]:
        if self.conversions is None:
            found = []
            for index, (type_, column) in enumerate(zip(self.types, description)):
                process = type_.dialect_impl(dialect).result_processor(dialect, column[1])
                if process is not None:
                    found.append((index, process))
            self.conversions = tuple(found)
        return self.conversions

    def parameters(self, given: Parameters) -> Union[Tuple[Any, ...], Dict[str, Any]]:
        values = []
        for bind in self.binds:
            value = given[bind.key] if bind.required else bind.value
            values.append(value if bind.process is None else bind.process(value))
        if self.positional:
            return tuple(values)
        return {bind.name: value for bind, value in zip(self.binds, values)}


@dataclass(frozen=True)
class Result:
    """What a statement answered: its rows (as tuples, converted to Python values), the
    names of their columns, and how many rows an UPDATE or DELETE changed."""

    keys: Tuple[str, ...]
    rows: List[Tuple[Any, ...]]
    rowcount: int

    def mappings(self) -> List[Dict[str, Any]]:
        return [dict(zip(self.keys, row)) for row in self.rows]

    def first(self) -> Optional[Dict[str, Any]]:
        return dict(zip(self.keys, self.rows[0])) if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


def _compile(statement: sa.ClauseElement, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    if compiled.post_compile_params:
        raise ValueError(f"a parameter is rendered at execution time in: {compiled.string}")
    by_name = {name: bind for bind, name in compiled.bind_names.items()}
    order = compiled.positiontup if dialect.positional else sorted(by_name)
    binds = []
    for name in order or ():
        bind = by_name[name]
        binds.append(
            _Bind(
                name=name,
                key=bind.key,
                required=bind.required,
                value=None if bind.required else bind.effective_value,
                process=bind.type.dialect_impl(dialect).bind_processor(dialect),
            )
        )
    columns = list(getattr(statement, "selected_columns", ()))
    return _Compiled(
        sql=compiled.string,
        positional=bool(dialect.positional),
        binds=tuple(binds),
        keys=tuple(str(column.key) for column in columns),
        types=tuple(column.type for column in columns),
    )


def _converted(
    rows: Sequence[Tuple[Any, ...]], conversions: Sequence[Tuple[int, Callable[[Any], Any]]]
) -> List[Tuple[Any, ...]]:
    if not conversions:
        return list(rows)
    converted = []
    for row in rows:
        values = list(row)
        for index, process in conversions:
            values[index] = process(values[index])
        converted.append(tuple(values))
    return converted


class CompiledStatement:
    """A Core statement run on the driver's cursor (see the module's docstring). Its bound
    parameters are named with ``sa.bindparam(name)``; fixed values are literals."""

    def __init__(self, statement: sa.ClauseElement) -> None:
        self.statement = statement
        self._compiled: Dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.setdefault(
                    dialect.name, _compile(self.statement, dialect)
                )
        return compiled

    def run(self, connection: Connection, parameters: Parameters) -> Result:
        """Run the statement in the connection's transaction (blocks on the database)."""
        compiled = self._for(connection.dialect)
        values = compiled.parameters(parameters)
        cursor = None
        try:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(compiled.sql, values)
            rows: List[Tuple[Any, ...]] = []
            if compiled.answers_rows is None:
                description = cursor.description
                if description:
                    compiled.conversions_for(connection.dialect, description)
                compiled.answers_rows = bool(description)
            if compiled.answers_rows:
                assert compiled.conversions is not None
                rows = _converted(cursor.fetchall(), compiled.conversions)
            result = Result(compiled.keys, rows, cursor.rowcount)
            cursor.close()
        except connection.dialect.loaded_dbapi.Error as error:
            # SQLAlchemy's own handling: the same exception class, and a dropped
            # connection invalidated (with the pool's older ones) as Connection.execute does.
            connection._handle_dbapi_exception(error, compiled.sql, values, cursor, None)
        return result

    def first(self, connection: Connection, parameters: Parameters) -> Optional[Dict[str, Any]]:
        """The first row, by column name; None when there is none."""
        return self.run(connection, parameters).first()

    def scalar(self, connection: Connection, parameters: Parameters) -> Any:
        """The first column of the first row; None when there is no row."""
        return self.run(connection, parameters).scalar()
