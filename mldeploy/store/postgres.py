"""The PostgreSQL state store: the same tables, statements and schema versions as the SQLite store, on a
database that many server replicas share (``--state postgresql://user@host/db``; psycopg 3 and its pool,
the ``postgres`` extra).

* **Writes cannot race.** Every write transaction first takes one transaction-level advisory lock, so
  changes are serialised exactly as SQLite's ``BEGIN IMMEDIATE`` serialises them: each reads what is live
  and appends its history row with nobody in between (two rollbacks at once are two rows, the second
  from where the first left; a canary guard's rollback only acts while the canary it judged is still
  set, so two replicas removing it give one row).
* **Changes are announced.** A write notifies ``mldeploy_state`` when it commits; :meth:`watch` listens
  on a connection of its own and yields at once when told. A notification sent while a replica is
  disconnected is lost, so it also yields when it reconnects and on a slow safety poll
  (:attr:`poll_seconds`).
* **Schema.** Created and migrated by mldeploy under the same lock, at the same versions as the SQLite
  file's ``user_version`` (kept in ``mldeploy_schema``); a reader never migrates.

The table groups' SQL is shared with SQLite; :class:`_Connection` adapts the few differences (``?``
placeholders, a table's existence), and :func:`pg_ddl` the column types of the schema.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

from mldeploy.errors import StateError, UsageError
from mldeploy.store import canary_stats, pins, releases, routes, shadow_stats
from mldeploy.store.base import StateStore
from mldeploy.store.canary_stats import CanaryStatsTable
from mldeploy.store.pins import PinsTable
from mldeploy.store.releases import ReleasesTables
from mldeploy.store.routes import RoutesTable
from mldeploy.store.shadow_stats import ShadowStatsTable

CHANNEL = "mldeploy_state"
#: The advisory lock every write transaction takes first (any fixed 64-bit number: "mldeploy").
LOCK = 0x6D6C_6465_706C_6F79
APPEND_ONLY = """
CREATE OR REPLACE FUNCTION mldeploy_append_only() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'history is append-only'; END $$ LANGUAGE plpgsql;
CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE ON history FOR EACH ROW EXECUTE FUNCTION mldeploy_append_only();
"""


def pg_ddl(sqlite_ddl: str) -> str:
    """A table group's SQLite schema in PostgreSQL's words: 64-bit integers, doubles, a serial id, and
    SQLite's triggers left out (PostgreSQL's are :data:`APPEND_ONLY`)."""
    ddl = re.sub(r"CREATE TRIGGER.*?END;\n", "", sqlite_ddl, flags=re.S)
    statements = [s for s in ddl.split(";\n") if s.strip()]
    # PostgreSQL checks a REFERENCES at once: a table referred to goes before the tables that refer to it
    statements.sort(key=lambda s: "REFERENCES" in s)
    ddl = ";\n".join(statements) + ";\n"
    ddl = ddl.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
    ddl = re.sub(r"\bINTEGER\b", "BIGINT", ddl)
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", ddl)


#: Schema version -> statements, as in :data:`mldeploy.store.db.MIGRATIONS`.
MIGRATIONS = {1: pg_ddl(releases.SCHEMA) + APPEND_ONLY, 2: pg_ddl(routes.SCHEMA + shadow_stats.SCHEMA), 3: pg_ddl(pins.SCHEMA),
              4: pg_ddl(shadow_stats.SCHEMA_V4), 5: pg_ddl(shadow_stats.SCHEMA_V5), 6: pg_ddl(shadow_stats.SCHEMA_V6),
              7: pg_ddl(canary_stats.SCHEMA)}
SCHEMA_VERSION = max(MIGRATIONS)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _Connection:
    """A psycopg connection that takes the table groups' SQLite-style statements."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()):
        return self.conn.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), list(rows))

    def has_table(self, name: str) -> bool:
        return self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


class PostgresDatabase:
    """Connections (a small pool), transactions under the advisory lock, and the schema."""

    def __init__(self, url: str, pool_size: int = 4, timeout: float = 10.0) -> None:
        try:
            import psycopg  # noqa: F401
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise UsageError("a postgresql:// state needs psycopg: pip install 'mldeploy[postgres]'") from None
        self.url, self.timeout = url, timeout
        self._pool = ConnectionPool(url, min_size=0, max_size=pool_size, kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
                                    open=False, timeout=timeout, name="mldeploy-state",
                                    check=ConnectionPool.check_connection)  # a connection the server dropped is replaced, not handed out
        self._opened = False
        self._lock = threading.Lock()
        self._schema_ok = False

    @property
    def location(self) -> str:
        return redact(self.url)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        import psycopg
        from psycopg_pool import PoolTimeout

        with self._lock:
            if not self._opened:
                self._pool.open()
                self._opened = True
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StateError(f"state database {self.location} cannot be reached: {' '.join(str(exc).split())[:300]}") from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise StateError(f"state database {self.location}: not allowed ({' '.join(str(exc).split())[:200]})") from None

    def _version(self, conn) -> int:
        if not conn.execute("SELECT to_regclass('mldeploy_schema') IS NOT NULL").fetchone()[0]:
            if conn.execute("SELECT to_regclass('history') IS NOT NULL").fetchone()[0]:
                raise StateError(f"{self.location} has a history table but no mldeploy_schema: not an mldeploy state database; it was left as it is")
            return 0
        row = conn.execute("SELECT version FROM mldeploy_schema").fetchone()
        version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise StateError(f"{self.location} was written by a newer mldeploy (schema {version}, this one knows {SCHEMA_VERSION}); upgrade mldeploy")
        return version

    @property
    def exists(self) -> bool:
        with self._connection() as conn:
            return self._version(conn) > 0

    def check_writable(self) -> None:
        with self._transaction():
            pass

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_Connection]:
        """One write transaction, after every other writer's (the advisory lock), with the schema in
        place; it tells the replicas when it commits."""
        import psycopg

        with self._connection() as conn:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
                    version = self._version(conn)
                    if version < SCHEMA_VERSION:
                        if version == 0:
                            conn.execute("CREATE TABLE mldeploy_schema (version INTEGER NOT NULL)")
                            conn.execute("INSERT INTO mldeploy_schema VALUES (0)")
                        for step in range(version + 1, SCHEMA_VERSION + 1):
                            for statement in MIGRATIONS[step].split(";\n"):
                                if statement.strip():
                                    conn.execute(statement)
                        conn.execute("UPDATE mldeploy_schema SET version = %s", (SCHEMA_VERSION,))
                    yield _Connection(conn)
                    conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                raise StateError(f"state database {self.location} is read-only here ({exc})") from None
            except psycopg.DatabaseError as exc:
                if isinstance(exc, psycopg.OperationalError):
                    raise
                raise StateError(f"state database {self.location}: {' '.join(str(exc).split())[:300]}") from None

    @contextlib.contextmanager
    def _read(self) -> Iterator[_Connection | None]:
        """A connection for reading, or ``None`` when nothing was ever recorded."""
        with self._connection() as conn:
            if not self._schema_ok:
                if self._version(conn) == 0:
                    yield None
                    return
                self._schema_ok = True
            yield _Connection(conn)


class PostgresStore(ReleasesTables, RoutesTable, ShadowStatsTable, CanaryStatsTable, PinsTable, PostgresDatabase, StateStore):
    """The state on a PostgreSQL server many replicas share; changes announced by LISTEN/NOTIFY."""

    #: The safety poll: a notification lost while a replica was away is caught within this.
    poll_seconds = 5.0

    def _after_copy(self, db) -> None:
        db.execute("SELECT setval(pg_get_serial_sequence('history', 'id'), GREATEST((SELECT max(id) FROM history), 1))")

    def watch(self, stop: threading.Event, interval: float | None = None) -> Iterator[None]:
        """Yield when a change is announced, when the listening connection comes back after a loss (what
        was announced meanwhile is lost), and every :attr:`poll_seconds`; until ``stop`` is set."""
        import psycopg

        poll = self.poll_seconds if interval is None else max(interval, self.poll_seconds)
        while not stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.timeout))) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    yield  # (re)connected: anything announced while away is lost, so look now
                    last = time.monotonic()
                    while not stop.is_set():
                        told = False
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            told = True
                        if told or time.monotonic() - last >= poll:
                            last = time.monotonic()
                            yield
            except psycopg.Error:
                if stop.wait(1.0):  # the database is away: the caller keeps its routing; try again in a second
                    return
                yield  # let the caller notice the problem (its refresh fails and it says so once)
