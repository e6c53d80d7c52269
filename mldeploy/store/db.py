"""The SQLite connection, its schema and the migrations that bring an older file up to date.

Every table group (:mod:`.releases`, :mod:`.routes`, :mod:`.shadow_stats`, :mod:`.pins`) owns its own
statements; this module only applies them in schema order, inside one transaction, so a process that
looks while another creates the schema sees either nothing or all of it. Reading never creates the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Iterator

from mldeploy.errors import StateError
from mldeploy.store import canary_stats, pins, releases, routes, shadow_stats
from mldeploy.store.common import immediate

DB_NAME = "state.db"

#: Schema version -> the statements that bring the version before it to it.
MIGRATIONS = {1: releases.SCHEMA, 2: routes.SCHEMA + shadow_stats.SCHEMA, 3: pins.SCHEMA, 4: shadow_stats.SCHEMA_V4, 5: shadow_stats.SCHEMA_V5, 6: shadow_stats.SCHEMA_V6,
              7: canary_stats.SCHEMA}
SCHEMA_VERSION = max(MIGRATIONS)


class SQLiteDatabase:
    """``state.db`` under ``state_dir``: connections for reading and writing, and transactions."""

    def __init__(self, state_dir: Path, timeout: float = 30.0) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self.timeout = timeout

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def exists(self) -> bool:
        """Something was ever recorded here."""
        return self.path.exists()

    def check_writable(self) -> None:
        with self._transaction():  # creates the file and its schema if need be: what the first write would do
            pass

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect(write=True) as db, immediate(db):  # the write lock before reading what is live
            yield db

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only connection, or ``None`` when nothing was ever recorded."""
        if not self.exists:
            yield None
            return
        with self._connect(write=False) as db:
            yield db

    @contextlib.contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection | None]:
        """A connection with the schema in place; for reading, ``None`` when nothing was ever recorded."""
        if self.state_dir.exists() and not self.state_dir.is_dir():
            raise StateError(f"state directory {self.state_dir} is a file; point --state-dir or MLDEPLOY_STATE_DIR elsewhere")
        if write:
            try:
                self.state_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"cannot create state directory {self.state_dir}: {exc.strerror or exc}") from None
            if not os.access(self.state_dir, os.W_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
                raise StateError(f"state directory {self.state_dir} is read-only here: nothing can be recorded in it; point --state-dir "
                                 "or MLDEPLOY_STATE_DIR at a writable folder (a copy of it keeps the history)")
        try:
            if write:
                db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            else:
                db = sqlite3.connect(self._read_uri(), uri=True, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from None
        try:
            try:
                recorded = self._check_schema(db, write)
                yield db if recorded else None
            except sqlite3.DatabaseError as exc:
                raise StateError(self._explain(exc)) from None
        finally:
            db.close()

    def _read_uri(self) -> str:
        """A read-only URI. In WAL mode SQLite writes ``state.db-shm`` even to read; where the folder (a
        read-only checkout, another user's folder) refuses that, the file is opened as immutable: nobody
        can be writing to it there either."""
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        shm = self.path.with_name(self.path.name + "-shm")
        if not os.access(self.state_dir, os.W_OK) or (shm.exists() and not os.access(shm, os.W_OK)):
            uri += "&immutable=1"
        return uri

    def _check_schema(self, db: sqlite3.Connection, write: bool) -> bool:
        """Check (and for a writer, create or migrate) the schema; ``False`` when nothing was ever recorded."""
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]  # fails on a file that is not SQLite
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version > SCHEMA_VERSION:
                raise StateError(f"{self.path} was written by a newer mldeploy (schema {version}, this one knows {SCHEMA_VERSION}); upgrade mldeploy")
            if version == 0 and tables - {"sqlite_sequence"}:
                raise StateError(f"{self.path} is an SQLite file but not an mldeploy state database; move it away or point --state-dir elsewhere")
            if version and not {"live", "history"} <= tables:
                raise StateError(f"{self.path} is damaged: its live or history table is missing; it was left as it is")
            created = False
            if version < SCHEMA_VERSION and write:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[step].split(";\n"):
                        if statement.strip():
                            db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                created = version == 0
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if created:
            # Readers (a server) need not wait for a promotion in WAL mode. Switching needs a moment
            # alone with the file; if another process is busy with it, the default journal still works.
            with contextlib.suppress(sqlite3.OperationalError):
                db.execute("PRAGMA journal_mode=WAL")
        return bool(version) or created

    def _explain(self, exc: sqlite3.DatabaseError) -> str:
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            return f"{self.path} is not a readable mldeploy state database ({text}); it was left as it is: move it away or point --state-dir elsewhere"
        if "locked" in text or "busy" in text:
            return f"state database {self.path} stayed locked for {self.timeout:g} s by another mldeploy process; try again"
        if "readonly" in text or "read-only" in text:
            return f"state database {self.path} is read-only here ({text})"
        return f"state database {self.path}: {text}"
