"""A capture's SQLite index (``capture.db``): its schema, opening it for writing or read-only, its
transactions and its counters. What the rows mean is the store's (:mod:`mldeploy.capture.store`)."""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from mldeploy.capture.blobs import BlobFolder
from mldeploy.errors import CaptureError
from mldeploy.store.common import immediate

INDEX = "capture.db"
FORMAT = 2  # the index's schema version (PRAGMA user_version); 2 added request ids and labels

#: Shadow states of a captured request: waiting for the shadow, compared, or the shadow failed on it.
PENDING, COMPARED, ERROR = "pending", "compared", "error"
#: A request whose shadow crashed its process is tried this many times before it counts as an error.
MAX_ATTEMPTS = 2

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
CREATE TABLE captures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    route TEXT NOT NULL,
    captured_at TEXT NOT NULL,
    seconds REAL NOT NULL,
    answer TEXT NOT NULL,
    shadow TEXT,
    shadow_state TEXT,
    shadow_result TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    request_id TEXT
);
CREATE INDEX captures_by_blob ON captures (sha256);
CREATE INDEX captures_pending ON captures (shadow_state, model, shadow, id);
CREATE INDEX captures_by_request_id ON captures (request_id);
CREATE TABLE truth (
    sha256 TEXT PRIMARY KEY,
    truth TEXT NOT NULL,
    source TEXT NOT NULL,
    batch INTEGER NOT NULL,
    labelled_at TEXT NOT NULL
);
CREATE TABLE counters (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    shadow TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (model, version, shadow, name)
);
"""


#: Format 1 -> 2: the request id a client sent (X-Request-Id), and labels attached later (``capture label``).
MIGRATE_2 = """
ALTER TABLE captures ADD COLUMN request_id TEXT;
CREATE INDEX captures_by_request_id ON captures (request_id);
CREATE TABLE truth (sha256 TEXT PRIMARY KEY, truth TEXT NOT NULL, source TEXT NOT NULL, batch INTEGER NOT NULL, labelled_at TEXT NOT NULL);
"""

#: Prefix of the counters that sum a shadow's agreement counts (one per AgreementCounts row column).
AGREEMENT = "agree."


def stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class CaptureIndex:
    """The index of a capture folder, and its blobs.

    Args:
        folder: the capture folder; created (``0700``) by a writer when missing.
        write: ``False`` opens an existing capture read-only (never creates or changes anything).
    """

    def __init__(self, folder: str | os.PathLike[str], write: bool = True, timeout: float = 10.0) -> None:
        self.folder = Path(folder)
        self.write = write
        self.timeout = timeout
        self.blob_files = BlobFolder(self.folder)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._open()

    @property
    def columns(self) -> str:
        """The SELECT list of a :class:`CaptureRecord` in this capture's format."""
        from mldeploy.capture.records import COLUMNS, COLUMNS_1

        return COLUMNS if self.format >= 2 else COLUMNS_1

    @property
    def index(self) -> Path:
        return self.folder / INDEX

    @property
    def blobs(self) -> Path:
        return self.blob_files.folder

    def _open(self) -> None:
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise CaptureError(f"capture folder {folder} is a file")
        if not self.index.exists():
            if not self.write:
                raise CaptureError(f"{folder} is not a capture folder (no {INDEX}): point at the folder a server's --capture wrote")
            if folder.exists() and any(folder.iterdir()):
                raise CaptureError(f"{folder} is not a capture folder and not empty: captures need a folder of their own")
            try:
                for parent in reversed([p for p in folder.parents if not p.exists()]):
                    parent.mkdir(mode=0o755, exist_ok=True)  # never wider than 0755, whatever the umask (0777 under umask 000)
                folder.mkdir(mode=0o700, exist_ok=True)
                os.chmod(folder, 0o700)  # it holds users' images, whatever the umask
                (self.blobs).mkdir(mode=0o700, exist_ok=True)
                os.close(os.open(self.index, os.O_CREAT | os.O_WRONLY, 0o600))  # SQLite's -wal and -shm take its mode
            except OSError as exc:
                raise CaptureError(f"cannot create capture folder {folder}: {exc.strerror or exc}") from None
        elif self.write and not (os.access(folder, os.W_OK) and os.access(self.index, os.W_OK)):
            raise CaptureError(f"capture folder {folder} is read-only here: nothing can be captured into it")
        try:
            if self.write:
                db = sqlite3.connect(self.index, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            else:
                uri = f"{self.index.resolve().as_uri()}?mode=ro"
                if not os.access(folder, os.W_OK):
                    uri += "&immutable=1"  # WAL readers write -shm; nobody can be writing here either
                db = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > FORMAT:
                raise CaptureError(f"{self.index} was written by a newer mldeploy (format {version}); upgrade mldeploy")
            if version == 0:
                if not self.write:
                    raise CaptureError(f"{self.index} is not a capture index")
                if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    raise CaptureError(f"{self.index} is an SQLite file but not a capture index; it was left as it is")
                db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} INSERT INTO meta VALUES ('created_at', '{stamp()}'), ('used_bytes', '0'), "
                                 f"('id', '{uuid.uuid4().hex}'); "
                                 f"PRAGMA user_version = {FORMAT}; COMMIT;")
            if version == 1 and self.write:  # an older capture, brought up to date in one transaction
                db.executescript(f"BEGIN IMMEDIATE; {MIGRATE_2} PRAGMA user_version = {FORMAT}; COMMIT;")
                version = FORMAT
            self.format = version or FORMAT
            if self.write:
                db.execute("INSERT OR IGNORE INTO meta VALUES ('id', ?)", (uuid.uuid4().hex,))  # a capture made before ids
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")  # a commit without fsync: a power cut may lose the last captures, a crash loses none
        except sqlite3.DatabaseError as exc:
            raise CaptureError(f"{self.index} is not a readable capture index ({exc}); it was left as it is") from None
        self._db = db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._damaged(), self._lock, immediate(self._db) as db:
            yield db

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._damaged(), self._lock:
            return self._db.execute(sql, args).fetchall()

    @contextlib.contextmanager
    def _damaged(self) -> Iterator[None]:
        """A damaged index (pages overwritten, a value of the wrong type) is this capture's one-line
        error; a full disk or a lost folder stays an OSError-like database error for the server to log."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # locked, disk full, read-only: the caller's to handle
                raise
            raise CaptureError(f"capture {self.folder}: its index is damaged ({exc}); it was left as it is") from None

    def used_bytes(self) -> int:
        return self._number(self._query("SELECT value FROM meta WHERE key = 'used_bytes'")[0][0], "used_bytes")

    def _number(self, value, what: str, whole: bool = True) -> int | float:
        """A count (or, ``whole=False``, a sum) read from the index, checked: an edited index can hold anything."""
        try:
            if isinstance(value, bool) or not math.isfinite(float(value)) or float(value) < 0 or (whole and int(value) != float(value)):
                raise ValueError
            return int(value) if whole else float(value)
        except (TypeError, ValueError, OverflowError):
            raise CaptureError(f"capture {self.folder}: its index is damaged ({what} is {str(value)[:40]!r}, not a count)") from None

    @property
    def identity(self) -> str:
        """This capture's id: what a state store remembers having counted from it."""
        return str(self._query("SELECT value FROM meta WHERE key = 'id'")[0][0])

    @staticmethod
    def _count(db: sqlite3.Connection, key: tuple[str, str, str], name: str, by: int = 1) -> None:
        db.execute("INSERT INTO counters VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, version, shadow, name) DO UPDATE SET value = value + excluded.value",
                   (*key, name, by))

    def _bump(self, key: tuple[str, str, str], *names: str) -> None:
        with self._transaction() as db:
            for name in names:
                self._count(db, key, name)

    def counters(self) -> dict[tuple[str, str, str], dict[str, int]]:
        out: dict[tuple[str, str, str], dict[str, int]] = {}
        for model, version, shadow, name, value in self._query("SELECT model, version, shadow, name, value FROM counters"):
            out.setdefault((model, version, shadow), {})[name] = self._number(value, f"counter {name}", whole=not name.startswith(AGREEMENT))
        return out
