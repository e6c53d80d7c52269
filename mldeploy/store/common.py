"""Small helpers every table group uses."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone


def now() -> str:
    """The time a row is written: UTC, ISO 8601, microseconds (rows written in one second still sort)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def has_table(db: sqlite3.Connection, name: str) -> bool:
    """Whether an older file already has ``name`` (a reader never migrates)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None
