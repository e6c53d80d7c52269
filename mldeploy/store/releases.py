"""Live versions and the append-only history of every change.

Every change is one ``BEGIN IMMEDIATE`` transaction that reads the live version, appends the history
row and moves the live pointer together, so two processes promoting at once serialise on SQLite's
write lock: neither loses a row, and each row's ``from`` is the previous row's ``to``. Triggers make
the history table refuse updates and deletes.
"""

from __future__ import annotations

import getpass
import socket
import sqlite3
from dataclasses import dataclass, replace

from mldeploy.errors import NothingToRollBackError
from mldeploy.store.common import now

SCHEMA = """
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

#: What a history row can record. ``route`` rows change a server's shadow or canary, not the live version.
ACTIONS = ("promote", "rollback", "canary-promote", "canary-rollback", "route")


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


def _actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class ReleasesTables:
    """The ``live`` and ``history`` tables (a mixin of the store)."""

    def live_versions(self) -> dict[str, str]:
        with self._read() as db:
            return dict(db.execute("SELECT model, version FROM live ORDER BY model").fetchall()) if db is not None else {}

    def live(self, model: str) -> str | None:
        return self.live_versions().get(model)

    def history(self, model: str | None = None, limit: int | None = None) -> list[Change]:
        """Changes, oldest first (the last ``limit`` of them when given)."""
        query = "SELECT id, model, from_version, to_version, action, reason, command, actor, at FROM history"
        params: tuple = ()
        if model is not None:
            query += " WHERE model = ?"
            params = (model,)
        query += " ORDER BY id DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        with self._read() as db:
            rows = db.execute(query, params).fetchall() if db is not None else []
        return [Change(*row) for row in reversed(rows)]

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
            # live now, no longer a canary (a writer's schema is current, so both tables are there)
            self._clear_canary_stats(db, model, to_version)
            self._end_canary_route(db, model, to_version)
            return self._append(db, model, current, to_version, action, reason, command)

    def rollback(self, model: str, *, current_default: str, reason: str = "", command: str = "") -> Change:
        """Go back to the version that was live before the current one.

        Raises:
            NothingToRollBackError: the model has never changed version.
        """
        never = f"{model} has no earlier live version to roll back to ({model}@{{}} is live and always was)"
        if not self.exists:  # nothing recorded: say so without creating the store
            raise NothingToRollBackError(never.format(current_default))
        with self._transaction() as db:
            current = self._live_in(db, model) or current_default
            row = db.execute(
                "SELECT from_version FROM history WHERE model = ? AND to_version = ? AND from_version != to_version ORDER BY id DESC LIMIT 1",
                (model, current),
            ).fetchone()
            if row is None:
                raise NothingToRollBackError(never.format(current))
            return self._append(db, model, current, row[0], "rollback", reason, command)

    @staticmethod
    def _live_in(db: sqlite3.Connection, model: str) -> str | None:
        row = db.execute("SELECT version FROM live WHERE model = ?", (model,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _append(db: sqlite3.Connection, model: str, from_version: str, to_version: str, action: str, reason: str, command: str,
                move_live: bool = True) -> Change:
        change = Change(0, model, from_version, to_version, action, reason, command, _actor(), now())
        insert = "INSERT INTO history (model, from_version, to_version, action, reason, command, actor, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        params = (model, from_version, to_version, action, reason, command, change.actor, change.at)
        if isinstance(db, sqlite3.Connection):  # lastrowid: SQLite before 3.35 (Ubuntu 20.04's) has no RETURNING
            new_id = db.execute(insert, params).lastrowid
        else:  # PostgreSQL gives the id back with RETURNING
            new_id = db.execute(insert + " RETURNING id", params).fetchone()[0]
        change = replace(change, id=new_id)
        if move_live:
            db.execute(
                "INSERT INTO live (model, version, since, change_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(model) DO UPDATE SET version = excluded.version, since = excluded.since, change_id = excluded.change_id",
                (model, to_version, change.at, change.id),
            )
        return change
