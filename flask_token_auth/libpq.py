"""The session check's one statement run through libpq on a psycopg 3 connection of our own.

psycopg's cursor (parsing placeholders, adapting each parameter, building a result) costs as
much user CPU as the round trip it wraps: run through libpq, the check takes half (20 to 10 µs,
measured in process). Only connections the check keeps for itself come here, so nothing else
shares their state.
libpq's calls block in C: a signal (a worker's shutdown) is handled once the query returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from psycopg import errors
from psycopg import pq

#: The name of the prepared statement on each kept connection.
STATEMENT_NAME = b"flask_token_auth_live_session_role"
_UNDEFINED_PREPARED_STATEMENT = b"26000"


@dataclasses.dataclass(frozen=True)
class LibpqQuery:
    """A statement with `$1`-style parameters, run prepared or, where the host turned psycopg's
    prepared statements off (`prepare_threshold=None`, as behind PgBouncer), unnamed."""

    sql: bytes
    names: tuple[str, ...]  # of the parameters, in the order of $1, $2...

    def first_value(self, driver: Any, parameters: Mapping[str, Any]) -> str | None:
        """The first column of the first row, None without rows; psycopg's errors otherwise.

        The named statement is prepared on the first use on each connection, and again if it
        is gone (a `DISCARD ALL` in between). Autocommit: the connection is left idle.
        """
        pgconn = driver.pgconn
        values = [_text(parameters[name]) for name in self.names]
        if driver.prepare_threshold is None:
            result = pgconn.exec_params(self.sql, values)
        else:
            result = pgconn.exec_prepared(STATEMENT_NAME, values)
            if _sqlstate(result) == _UNDEFINED_PREPARED_STATEMENT:
                _raise_unless(
                    pq.ExecStatus.COMMAND_OK, pgconn.prepare(STATEMENT_NAME, self.sql), driver
                )
                result = pgconn.exec_prepared(STATEMENT_NAME, values)
        _raise_unless(pq.ExecStatus.TUPLES_OK, result, driver)
        if not result.ntuples:
            return None
        value = result.get_value(0, 0)
        return None if value is None else value.decode()


def _text(value: Any) -> bytes | None:
    """A parameter in PostgreSQL's text format; the statement casts each to its type."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().encode()
    return str(value).encode()


def _sqlstate(result: pq.abc.PGresult) -> bytes | None:
    if result.status != pq.ExecStatus.FATAL_ERROR:
        return None
    return result.error_field(pq.DiagnosticField.SQLSTATE)


def _raise_unless(status: pq.ExecStatus, result: pq.abc.PGresult, driver: Any) -> None:
    """psycopg's own exception for a failed result, as its cursor would raise it."""
    if result.status == status:
        return
    sqlstate = _sqlstate(result)
    error_class: type[errors.Error] = errors.OperationalError
    if sqlstate is not None:
        try:
            error_class = errors.lookup(sqlstate.decode())
        except KeyError:
            error_class = errors.DatabaseError
    encoding = driver.info.encoding
    message = result.error_message.decode(encoding, "replace").strip() or "the query failed"
    raise error_class(message, info=result, encoding=encoding)
