"""Live versions and the append-only history of every change, in one SQLite file.

Every change is one ``BEGIN IMMEDIATE`` transaction that reads the live version, appends the history
row and moves the live pointer together, so two processes promoting at once serialise on SQLite's
write lock: neither loses a row, and each row's ``from`` is the previous row's ``to``. Triggers make
the history table refuse updates and deletes. Reading never creates the file.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from mldeploy.errors import NothingToRollBackError, StateError

DB_NAME = "state.db"
SCHEMA_VERSION = 3

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS live (
    model TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    since TEXT NOT NULL,
    change_id INTEGER NOT NULL REFERENCES history(id)
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    from_version TEXT NOT NULL,
    to_version TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    command TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_model ON history(model, id);
CREATE TRIGGER IF NOT EXISTS history_no_update BEFORE UPDATE ON history
    BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS history_no_delete BEFORE DELETE ON history
    BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
"""

# Version 2: live routing for the server (a shadow version, a canary version and its weight, per
# model) and the shadow counters a server accumulates.
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS routing (
    model TEXT PRIMARY KEY,
    shadow_version TEXT,
    canary_version TEXT,
    canary_weight REAL NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shadow_stats (
    model TEXT NOT NULL,
    live_version TEXT NOT NULL,
    shadow_version TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    compared INTEGER NOT NULL DEFAULT 0,
    disagreeing INTEGER NOT NULL DEFAULT 0,
    old_boxes INTEGER NOT NULL DEFAULT 0,
    new_boxes INTEGER NOT NULL DEFAULT 0,
    matched INTEGER NOT NULL DEFAULT 0,
    missing INTEGER NOT NULL DEFAULT 0,
    extra INTEGER NOT NULL DEFAULT 0,
    relabelled INTEGER NOT NULL DEFAULT 0,
    iou_sum REAL NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0,
    first_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (model, live_version, shadow_version)
);
"""

# Version 3: the SHA-256 of each file of a version, recorded when it is validated or promoted.
_SCHEMA_V3 = """
CREATE TABLE IF NOT EXISTS pins (
    ref TEXT NOT NULL,
    role TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    pinned_at TEXT NOT NULL,
    PRIMARY KEY (ref, role)
);
"""

_MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}  # schema version -> statements that bring the one before to it

ACTIONS = ("promote", "rollback", "canary-promote", "canary-rollback", "route")

SHADOW_COUNTERS = ("requests", "compared", "disagreeing", "old_boxes", "new_boxes", "matched", "missing", "extra",
                   "relabelled", "iou_sum", "errors", "dropped")


@dataclass(frozen=True)
class Route:
    """How a running server splits one model's traffic besides its live version."""

    shadow_version: str | None = None
    canary_version: str | None = None
    canary_weight: float = 0.0


@dataclass(frozen=True)
class Change:
    """One history row: ``model`` went from ``from_version`` to ``to_version`` at ``at``."""

    id: int
    model: str
    from_version: str
    to_version: str
    action: str
    reason: str
    command: str
    actor: str
    at: str


KEEP = object()  # set_route: leave this part of the route as it is


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class StateStore:
    """The state database under ``state_dir`` (created on the first change, not on reads)."""

    def __init__(self, state_dir: Path, timeout: float = 30.0) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self.timeout = timeout

    # -- reading ---------------------------------------------------------------------------------
    def live_versions(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        with self._connect(write=False) as db:
            if db is None:
                return {}
            return dict(db.execute("SELECT model, version FROM live ORDER BY model").fetchall())

    def live(self, model: str) -> str | None:
        return self.live_versions().get(model)

    def history(self, model: str | None = None, limit: int | None = None) -> list[Change]:
        """Changes, oldest first (the last ``limit`` of them when given)."""
        if not self.path.exists():
            return []
        query = "SELECT id, model, from_version, to_version, action, reason, command, actor, at FROM history"
        params: tuple = ()
        if model is not None:
            query += " WHERE model = ?"
            params = (model,)
        query += " ORDER BY id DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        with self._connect(write=False) as db:
            rows = db.execute(query, params).fetchall() if db is not None else []
        return [Change(*row) for row in reversed(rows)]

    # -- changing --------------------------------------------------------------------------------
    def switch(self, model: str, to_version: str, *, current_default: str, action: str = "promote", reason: str = "", command: str = "") -> Change | None:
        """Make ``to_version`` live. ``None`` when it already is and ``action`` is a plain promote.

        ``current_default`` is what is live when the store has never recorded the model.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        with self._transaction() as db:
            current = self._live_in(db, model) or current_default
            if current == to_version and action == "promote":
                return None
            return self._append(db, model, current, to_version, action, reason, command)

    def rollback(self, model: str, *, current_default: str, reason: str = "", command: str = "") -> Change:
        """Go back to the version that was live before the current one.

        Raises:
            NothingToRollBackError: the model has never changed version.
        """
        if not self.path.exists():  # nothing recorded: say so without creating the store
            raise NothingToRollBackError(f"{model} has no earlier live version to roll back to ({model}@{current_default} is live and always was)")
        with self._transaction() as db:
            current = self._live_in(db, model) or current_default
            row = db.execute(
                "SELECT from_version FROM history WHERE model = ? AND to_version = ? AND from_version != to_version ORDER BY id DESC LIMIT 1",
                (model, current),
            ).fetchone()
            if row is None:
                raise NothingToRollBackError(f"{model} has no earlier live version to roll back to ({model}@{current} is live and always was)")
            return self._append(db, model, current, row[0], "rollback", reason, command)

    # -- live routing (read by a running server) --------------------------------------------------
    def routes(self) -> dict[str, Route]:
        """Models with a shadow or a canary set, and how."""
        return self.snapshot()[1]

    def snapshot(self) -> tuple[dict[str, str], dict[str, Route]]:
        """Live versions and routes, read together (one transaction)."""
        if not self.path.exists():
            return {}, {}
        with self._connect(write=False) as db:
            if db is None:
                return {}, {}
            db.execute("BEGIN")
            try:
                live = dict(db.execute("SELECT model, version FROM live").fetchall())
                rows = db.execute("SELECT model, shadow_version, canary_version, canary_weight FROM routing").fetchall() if _has_table(db, "routing") else []
            finally:
                db.execute("COMMIT")
        return live, {m: Route(s, c, float(w)) for m, s, c, w in rows if s or c}

    def set_route(self, model: str, *, current_default: str, shadow: str | None | object = KEEP, canary: str | None | object = KEEP,
                  weight: float | None = None, action: str = "route", reason: str = "", command: str = "") -> Route:
        """Start or stop a shadow, set or clear a canary (``weight`` in percent); ``KEEP`` leaves a part as it is.

        Each change appends a history row (from = to = the live version, so rollback skips it)."""
        with self._transaction() as db:
            live = self._live_in(db, model) or current_default
            row = db.execute("SELECT shadow_version, canary_version, canary_weight FROM routing WHERE model = ?", (model,)).fetchone()
            route = Route(*row) if row else Route()
            route = Route(
                route.shadow_version if shadow is KEEP else shadow,
                route.canary_version if canary is KEEP else canary,
                float(weight) if weight is not None else (0.0 if canary is None else route.canary_weight),
            )
            if route.canary_version is None:
                route = Route(route.shadow_version, None, 0.0)
            db.execute(
                "INSERT INTO routing (model, shadow_version, canary_version, canary_weight, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(model) DO UPDATE SET shadow_version = excluded.shadow_version, canary_version = excluded.canary_version, "
                "canary_weight = excluded.canary_weight, updated_at = excluded.updated_at",
                (model, route.shadow_version, route.canary_version, route.canary_weight, _now()),
            )
            described = f"shadow {route.shadow_version or 'off'}, canary " + (f"{route.canary_version} at {route.canary_weight:g}%" if route.canary_version else "off")
            self._append(db, model, live, live, action, reason or described, command, move_live=False)
            return route

    def add_shadow_stats(self, model: str, live_version: str, shadow_version: str, counts: dict[str, float]) -> None:
        """Add a server's shadow counters (deltas) for one live/shadow pair."""
        unknown = set(counts) - set(SHADOW_COUNTERS)
        if unknown:
            raise ValueError(f"unknown shadow counters {sorted(unknown)}")
        now = _now()
        columns = list(counts)
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO shadow_stats (model, live_version, shadow_version, {', '.join(columns)}, first_at, updated_at) "
                f"VALUES (?, ?, ?, {', '.join('?' for _ in columns)}, ?, ?) ON CONFLICT(model, live_version, shadow_version) DO UPDATE SET "
                + ", ".join(f"{c} = {c} + excluded.{c}" for c in columns) + ", updated_at = excluded.updated_at",
                (model, live_version, shadow_version, *[counts[c] for c in columns], now, now),
            )

    def shadow_stats(self, model: str) -> list[dict]:
        """Accumulated shadow counters of ``model``, one dict per live/shadow pair, newest first."""
        if not self.path.exists():
            return []
        with self._connect(write=False) as db:
            if db is None or not _has_table(db, "shadow_stats"):
                return []
            cursor = db.execute("SELECT * FROM shadow_stats WHERE model = ? ORDER BY updated_at DESC", (model,))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    # -- pinned file digests ----------------------------------------------------------------------
    def pins(self, ref: str) -> dict[str, tuple[str, str, int, str]]:
        """``role -> (path, sha256, size, pinned_at)`` recorded for a version."""
        if not self.path.exists():
            return {}
        with self._connect(write=False) as db:
            if db is None or not _has_table(db, "pins"):
                return {}
            rows = db.execute("SELECT role, path, sha256, size, pinned_at FROM pins WHERE ref = ?", (ref,)).fetchall()
        return {role: (path, digest, size, at) for role, path, digest, size, at in rows}

    def set_pins(self, ref: str, entries: dict[str, tuple[str, str, int]]) -> None:
        """Record ``role -> (path, sha256, size)`` for a version, replacing what was pinned."""
        now = _now()
        with self._transaction() as db:
            db.execute("DELETE FROM pins WHERE ref = ?", (ref,))
            db.executemany("INSERT INTO pins (ref, role, path, sha256, size, pinned_at) VALUES (?, ?, ?, ?, ?, ?)",
                           [(ref, role, path, digest, size, now) for role, (path, digest, size) in entries.items()])

    # -- internals -------------------------------------------------------------------------------
    @staticmethod
    def _live_in(db: sqlite3.Connection, model: str) -> str | None:
        row = db.execute("SELECT version FROM live WHERE model = ?", (model,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _append(db: sqlite3.Connection, model: str, from_version: str, to_version: str, action: str, reason: str, command: str,
                move_live: bool = True) -> Change:
        at = _now()
        actor = _actor()
        cursor = db.execute(
            "INSERT INTO history (model, from_version, to_version, action, reason, command, actor, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (model, from_version, to_version, action, reason, command, actor, at),
        )
        change_id = cursor.lastrowid
        if not move_live:
            return Change(change_id, model, from_version, to_version, action, reason, command, actor, at)
        db.execute(
            "INSERT INTO live (model, version, since, change_id) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(model) DO UPDATE SET version = excluded.version, since = excluded.since, change_id = excluded.change_id",
            (model, to_version, at, change_id),
        )
        return Change(change_id, model, from_version, to_version, action, reason, command, actor, at)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect(write=True) as db:
            try:
                db.execute("BEGIN IMMEDIATE")  # take the write lock before reading what is live
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

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
        try:
            if write:
                db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            else:
                db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=self.timeout, isolation_level=None)
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

    def _check_schema(self, db: sqlite3.Connection, write: bool) -> bool:
        """Check (and for a writer, create) the schema; ``False`` when nothing was ever recorded.

        The check runs inside one transaction, an IMMEDIATE one for writers, so a process that
        looks while another creates the schema sees either nothing or all of it.
        """
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
                    for statement in _MIGRATIONS[step].split(";\n"):
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
