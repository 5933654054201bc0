"""Which database errors are worth retrying, and which mean the rows themselves are bad.

The distinction decides whether data waits (transient: the database is down, restarting, overloaded,
or the schema is not migrated yet) or is bisected and quarantined (the database refused the values).
"""

from __future__ import annotations

import enum

import asyncpg
from asyncpg.exceptions._base import DataError as ClientDataError


class ErrorKind(enum.Enum):
    TRANSIENT = "transient"  # retry the same batch after a backoff
    DATA = "data"  # some rows are unacceptable: bisect, store the good ones, quarantine the rest


# SQLSTATE classes whose errors are about the values being written.
_DATA_CLASSES = ("22", "23")


def classify(exc: BaseException) -> ErrorKind:
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        if state[:2] in _DATA_CLASSES:
            return ErrorKind.DATA
        return ErrorKind.TRANSIENT
    if isinstance(exc, (ClientDataError, TypeError, OverflowError)):
        return ErrorKind.DATA  # a value the COPY encoder could not encode
    # Connection refused/reset, timeouts, a closed connection (asyncpg.InterfaceError): all transient.
    return ErrorKind.TRANSIENT


def describe(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}[{state}]: {text}" if state else f"{type(exc).__name__}: {text}"
