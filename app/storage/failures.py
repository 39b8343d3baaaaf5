"""Storage's errors, and what a driver's error means: a lost connection, a refused login, a database that
can't be used now (with a short cause fit for logs and health), or none of these (a bug, a constraint).

Every answer comes from the error's type or code (SQLite's result code, PostgreSQL's SQLSTATE), never the
driver's message: messages differ between drivers and versions, and can quote SQL or the values of a row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError

# SQLite primary result codes meaning "this database can't be used now", with SQLite's own wording.
SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY: "database is locked",
    sqlite3.SQLITE_LOCKED: "database table is locked",
    sqlite3.SQLITE_FULL: "database or disk is full",
    sqlite3.SQLITE_IOERR: "disk I/O error",
    sqlite3.SQLITE_READONLY: "attempt to write a readonly database",
    sqlite3.SQLITE_CANTOPEN: "unable to open database file",
    sqlite3.SQLITE_CORRUPT: "database disk image is malformed",
    sqlite3.SQLITE_NOTADB: "file is not a database",
    sqlite3.SQLITE_NOMEM: "out of memory",
    sqlite3.SQLITE_PROTOCOL: "locking protocol",
}
# PostgreSQL SQLSTATEs (or their classes) meaning the same, with the names of PostgreSQL's error codes.
POSTGRES_UNAVAILABLE = {
    "53100": "disk full",
    "53200": "out of memory",
    "53300": "too many connections",
    "25006": "read-only transaction",
    "57P01": "server shutting down",
    "57P02": "server crashed",
    "57P03": "server cannot accept connections now",
    "58030": "I/O error",
    "53": "insufficient resources",
    "58": "system error",
}
SQLITE_FOREIGN_KEY = sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
POSTGRES_FOREIGN_KEY = "23503"
# SQLSTATEs of a session that could not be made or was ended by the server: class 08 (connection exception),
# and the server shutting down, crashed, or not accepting connections yet (57P01-57P03).
POSTGRES_CONNECTION_LOST = ("08", "57P01", "57P02", "57P03")
# SQLSTATE classes of a login the server refused (bad password, unknown role) or an unknown database.
POSTGRES_LOGIN_REFUSED = ("28", "3D")


class StorageUnavailable(Exception):
    """The database cannot be used now: unreachable (even after one retry), locked too long, full, read-only.

    `cause` is short and fit for logs and health ("database or disk is full"): never SQL or message text.
    """

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class DatabaseUnavailable(Exception):
    """The database cannot be used: not reachable in time, the login refused, or its migration failed."""


def driver_error(error: BaseException) -> BaseException:
    """The driver's own exception under SQLAlchemy's wrappers (the DBAPIError, and the adapter that async
    drivers get, which keeps the driver's exception as its cause)."""
    orig = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    if type(orig).__module__.startswith("sqlalchemy.") and orig.__cause__ is not None:
        return orig.__cause__
    return orig


def is_lost_connection(error: BaseException) -> bool:
    """The connection could not be made or was lost: worth another try on a fresh connection.

    The one rule for every caller: the stores retry such a write once, start-up waits for the database with it.
    A refused login or an unknown database is not lost: trying again would change nothing.
    """
    if isinstance(error, OSError):  # refused, reset, timed out, unknown host (ConnectionError, TimeoutError)
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:  # the dialect saw the connection die
        return True
    driver = driver_error(error)
    return isinstance(driver, OSError) or _sqlstate(driver).startswith(POSTGRES_CONNECTION_LOST)


def is_login_refused(error: BaseException) -> bool:
    """PostgreSQL refused the login (bad password, unknown role) or knows no such database."""
    return _sqlstate(driver_error(error)).startswith(POSTGRES_LOGIN_REFUSED)


def unavailable_cause(error: BaseException) -> str | None:
    """The short cause if the error means the database can't be used now (not a bug of ours), else None."""
    orig = driver_error(error)
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        return None if code is None else SQLITE_UNAVAILABLE.get(code & 0xFF)
    sqlstate = _sqlstate(orig)
    if cause := POSTGRES_UNAVAILABLE.get(sqlstate) or POSTGRES_UNAVAILABLE.get(sqlstate[:2]):
        return cause
    if is_lost_connection(error):
        return f"database unreachable ({type(orig).__name__})"
    return None


@contextmanager
def unavailable_as_storage_error() -> Iterator[None]:
    """A database step: a database that can't be used now becomes StorageUnavailable with its short cause; any
    other error (a bug, a missing table) stays what it is."""
    try:
        yield
    except (DBAPIError, OSError) as error:
        cause = unavailable_cause(error)
        if cause is None:
            raise
        raise StorageUnavailable(cause) from error


def is_foreign_key_violation(error: BaseException) -> bool:
    """A row referred to a conversation that is gone (an operator deleted it)."""
    orig = driver_error(error)
    if isinstance(orig, sqlite3.IntegrityError):
        return getattr(orig, "sqlite_errorcode", None) == SQLITE_FOREIGN_KEY
    return _sqlstate(orig) == POSTGRES_FOREIGN_KEY


def short_cause(error: BaseException) -> str:
    """A cause for any failed write: the unavailable cause, or the error's type and code."""
    if cause := unavailable_cause(error):
        return cause
    driver = driver_error(error)
    code = getattr(driver, "sqlstate", None) or getattr(driver, "sqlite_errorname", None)
    return f"{type(driver).__name__} {code}" if code else type(driver).__name__


def _sqlstate(driver: BaseException) -> str:
    """PostgreSQL's SQLSTATE of a driver's error ("" for other errors)."""
    return str(getattr(driver, "sqlstate", None) or "")
