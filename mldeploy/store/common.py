"""Small helpers every table group uses."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime, timezone
from typing import Iterator


def now() -> str:
    """The time a row is written: UTC, ISO 8601, microseconds (rows written in one second still sort)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def has_table(db: sqlite3.Connection, name: str) -> bool:
    """Whether an older file already has ``name`` (a reader never migrates)."""
    if hasattr(db, "has_table"):  # another database's connection (mldeploy.store.postgres) knows its own catalogue
        return db.has_table(name)
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


@contextlib.contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction that takes the write lock first (``BEGIN IMMEDIATE``): committed when the
    block ends, rolled back when it raises. ``db`` must be in autocommit mode (``isolation_level=None``)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
