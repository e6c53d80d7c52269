"""The state store's interface: every operation the CLI and the server use, whatever keeps the state.

A backend (SQLite today, :mod:`mldeploy.store.sqlite`) implements these methods over its own
connection, in one module with a scheme in :data:`mldeploy.store.SCHEMES`. Nothing outside ``store/``
touches the database itself.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Iterator

from mldeploy.store.releases import Change
from mldeploy.store.routes import KEEP, Route


class StateStore(ABC):
    """Live versions and their append-only history, server routes, live-shadow counters and pinned digests."""

    #: Seconds between two looks at the store in :meth:`watch` when the backend cannot announce a change.
    poll_seconds: float = 0.25

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the state is, for messages (a file path, a URL without its password)."""

    @property
    @abstractmethod
    def exists(self) -> bool:
        """Something was ever recorded here."""

    @abstractmethod
    def check_writable(self) -> None:
        """Refuse now, before anything is loaded or served, a store this process cannot write.

        Raises:
            StateError: read-only, or cannot be created (exit 5).
        """

    # Releases: what is live, and every change with its reason.
    @abstractmethod
    def live_versions(self) -> dict[str, str]: ...

    @abstractmethod
    def history(self, model: str | None = None, limit: int | None = None) -> list[Change]: ...

    @abstractmethod
    def switch(self, model: str, to_version: str, *, current_default: str, action: str = "promote", reason: str = "",
               command: str = "") -> Change | None: ...

    @abstractmethod
    def rollback(self, model: str, *, current_default: str, reason: str = "", command: str = "") -> Change: ...

    # Routes: a server's shadow and canary per model.
    @abstractmethod
    def routes(self) -> dict[str, Route]: ...

    @abstractmethod
    def snapshot(self) -> tuple[dict[str, str], dict[str, Route]]:
        """What is live and every route, read together: what a server routes by."""

    @abstractmethod
    def set_route(self, model: str, *, current_default: str, shadow: str | None | object = KEEP, canary: str | None | object = KEEP,
                  weight: float | None = None, action: str = "route", reason: str = "", command: str = "",
                  if_canary: str | None = None) -> Route | None: ...

    # The live shadow's counters (mergeable: each flush adds).
    @abstractmethod
    def add_shadow_stats(self, model: str, live_version: str, shadow_version: str, counts: dict[str, float]) -> None: ...

    @abstractmethod
    def record_shadow_totals(self, model: str, live_version: str, shadow_version: str, source: str, totals: dict[str, float]) -> None:
        """Bring a pair's counters up to what ``source`` (a capture) has counted in all, exactly once."""

    @abstractmethod
    def shadow_stats(self, model: str) -> list[dict]: ...

    # The live canary's counters, the fleet's (mergeable: each replica adds).
    @abstractmethod
    def add_canary_stats(self, model: str, version: str, requests: int, errors: int, buckets: dict[int, int]) -> None: ...

    @abstractmethod
    def canary_stats(self, model: str, version: str) -> tuple[int, int, dict[int, int]]: ...

    # Pinned SHA-256 digests of each version's files.
    @abstractmethod
    def pins(self, ref: str) -> dict[str, tuple[str, str, int, str]]: ...

    @abstractmethod
    def set_pins(self, ref: str, entries: dict[str, tuple[str, str, int]]) -> None: ...

    def _after_copy(self, db) -> None:
        """After :func:`copy_state` wrote explicit ids: what the backend must bring up to date (a sequence)."""

    def watch(self, stop: threading.Event, interval: float | None = None) -> Iterator[None]:
        """Yield whenever the state may have changed, until ``stop`` is set: the caller then re-reads
        (:meth:`snapshot`). This default looks every ``interval`` seconds; a backend that can be told of a
        change (a database's notifications) yields when told, and still on a slow poll."""
        while not stop.wait(self.poll_seconds if interval is None else interval):
            yield


#: Every table of the state, in the order a copy writes them (a table after those it refers to).
TABLES = ("history", "live", "routing", "shadow_stats", "shadow_marks", "canary_stats", "canary_latency", "pins")


def copy_state(source: StateStore, target: StateStore) -> dict[str, int]:
    """Copy every row of ``source`` into ``target``, which must hold nothing yet (a store's history is
    never merged or overwritten); history ids are kept, so the chain reads the same. Rows per table.

    Raises:
        StateError: ``target`` already holds state, or either cannot be read or written.
    """
    from mldeploy.errors import StateError

    if target.exists and target.history(limit=1):
        raise StateError(f"{target.location} already holds a history: copy only into an empty state (nothing was changed)")
    rows: dict[str, tuple[list[str], list[tuple]]] = {}
    with source._read() as db:
        if db is None:
            raise StateError(f"{source.location} holds no state to copy")
        for table in TABLES:
            if _has(db, table):
                cursor = db.execute(f"SELECT * FROM {table}")
                rows[table] = ([d[0] for d in cursor.description], [tuple(r) for r in cursor.fetchall()])
    with target._transaction() as db:
        for table, (columns, values) in rows.items():
            if values:
                db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})", values)
        target._after_copy(db)
    return {table: len(values) for table, (_, values) in rows.items()}


def _has(db, table: str) -> bool:
    from mldeploy.store.common import has_table

    return has_table(db, table)
