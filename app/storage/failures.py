"""What a database error means: a short cause fit for logs and health, and whether the database is usable.

Causes are fixed phrases chosen from the error's code (SQLite's result code, PostgreSQL's SQLSTATE), never the
driver's message: those can quote SQL or the values of a row.
"""

from __future__ import annotations

import sqlite3

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


def driver_error(error: BaseException) -> BaseException:
    """The driver's own exception under SQLAlchemy's wrappers (the DBAPIError, and the adapter that async
    drivers get, which keeps the driver's exception as its cause)."""
    orig = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    if type(orig).__module__.startswith("sqlalchemy.") and orig.__cause__ is not None:
        return orig.__cause__
    return orig


def is_disconnect(error: BaseException) -> bool:
    """The connection was lost or could not be made: worth one retry on a fresh connection."""
    if isinstance(error, OSError):  # ConnectionError and TimeoutError are OSErrors
        return True
    if not isinstance(error, DBAPIError):
        return False
    text = str(error.orig).lower()
    return error.connection_invalidated or "connect" in text or "closed" in text


def unavailable_cause(error: BaseException) -> str | None:
    """The short cause if the error means the database can't be used now (not a bug of ours), else None."""
    orig = driver_error(error)
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        return None if code is None else SQLITE_UNAVAILABLE.get(code & 0xFF)
    sqlstate = str(getattr(orig, "sqlstate", None) or "")
    if cause := POSTGRES_UNAVAILABLE.get(sqlstate) or POSTGRES_UNAVAILABLE.get(sqlstate[:2]):
        return cause
    if sqlstate.startswith("08") or is_disconnect(error):
        return f"database unreachable ({type(orig).__name__})"
    return None


def is_foreign_key_violation(error: BaseException) -> bool:
    """A row referred to a conversation that is gone (an operator deleted it)."""
    orig = driver_error(error)
    if isinstance(orig, sqlite3.IntegrityError):
        return getattr(orig, "sqlite_errorcode", None) == SQLITE_FOREIGN_KEY
    return str(getattr(orig, "sqlstate", None) or "") == POSTGRES_FOREIGN_KEY


def short_cause(error: BaseException) -> str:
    """A cause for any failed write: the unavailable cause, or the error's type and code."""
    if cause := unavailable_cause(error):
        return cause
    driver = driver_error(error)
    code = getattr(driver, "sqlstate", None) or getattr(driver, "sqlite_errorname", None)
    return f"{type(driver).__name__} {code}" if code else type(driver).__name__
