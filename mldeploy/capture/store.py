"""A capture: requests a server answered, kept so that a shadow can replay them (live or offline).

A capture folder holds

- ``blobs/<sha256>``: each upload's bytes exactly as the client sent them, named by their SHA-256
  (content-addressed: the same image sent twice is stored once, and no file ever carries the
  client's file name);
- ``capture.db``: an SQLite index, one row per captured request: the blob, the model, the version
  that answered and by which route, when, how long its forward pass took, its answer (the boxes), and,
  when a live shadow was running, which shadow version it is for and what that shadow made of it.

The folder is bounded by a byte budget on the blobs: a capture that would pass it evicts the oldest
requests first, and every eviction is counted (per model, live version and shadow version), so a
report can say how much evidence the budget cost. Captures hold users' data: the folder is created
``0700`` and every file in it ``0600``, whatever the umask.

One process writes (the server); others (``mldeploy capture``, ``mldeploy shadow --capture``) may read
or prune at the same time: SQLite's locking keeps the index consistent, and a blob is unlinked only
after the transaction that dropped its last reference committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from mldeploy.detections import Detections
from mldeploy.errors import CaptureError
from mldeploy.store.common import immediate

INDEX = "capture.db"
BLOBS = "blobs"
FORMAT = 1  # the index's schema version (PRAGMA user_version)

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
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX captures_by_blob ON captures (sha256);
CREATE INDEX captures_pending ON captures (shadow_state, model, shadow, id);
CREATE TABLE counters (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    shadow TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (model, version, shadow, name)
);
"""


def answer_to_json(detections: Detections) -> str:
    """The boxes as compact JSON (float32 values survive the round trip exactly)."""
    return json.dumps({"size": list(detections.image_size), "xyxy": detections.xyxy.tolist(), "confidence": detections.confidence.tolist(),
                       "class_id": detections.class_id.tolist(), "label": [str(v) for v in detections.label]}, separators=(",", ":"))


def answer_from_json(text: str) -> Detections:
    d = json.loads(text)
    return Detections(d["xyxy"], d["confidence"], d["class_id"], d["label"], tuple(d["size"]))


def _stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class CaptureRecord:
    """One captured request, as the index has it."""

    id: int
    sha256: str
    bytes: int
    model: str
    version: str
    route: str
    captured_at: str
    seconds: float
    answer_json: str
    shadow: str | None
    shadow_state: str | None
    shadow_result: str | None
    path: Path

    @property
    def answer(self) -> Detections:
        return answer_from_json(self.answer_json)

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    @property
    def name(self) -> str:
        """How reports name it: its number and its blob (never a client's file name)."""
        return f"#{self.id} {self.sha256[:12]}"


@dataclass(frozen=True)
class Added:
    """What :meth:`CaptureStore.add` did: the new request's id (None: over the whole budget, not kept) and
    the requests waiting for a shadow that it evicted, by (model, live version, shadow version)."""

    id: int | None
    evicted_pending: dict[tuple[str, str, str], int]
    used_bytes: int = 0  # the blobs' size after it


_COLUMNS = "c.id, c.sha256, b.bytes, c.model, c.version, c.route, c.captured_at, c.seconds, c.answer, c.shadow, c.shadow_state, c.shadow_result"


class CaptureStore:
    """A capture folder: :meth:`add` (the server), :meth:`records`, :meth:`summary`, :meth:`prune`.

    Args:
        folder: the capture folder; created (``0700``) by a writer when missing.
        budget_bytes: the most the blobs may take; :meth:`add` evicts the oldest requests to stay under it.
        write: ``False`` opens an existing capture read-only (never creates or changes anything).
    """

    def __init__(self, folder: str | os.PathLike[str], budget_bytes: int | None = None, write: bool = True, timeout: float = 10.0) -> None:
        self.folder = Path(folder)
        self.budget = budget_bytes
        self.write = write
        self.timeout = timeout
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._open()

    # -- opening ---------------------------------------------------------------------------------
    @property
    def index(self) -> Path:
        return self.folder / INDEX

    @property
    def blobs(self) -> Path:
        return self.folder / BLOBS

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
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
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
                db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} INSERT INTO meta VALUES ('created_at', '{_stamp()}'), ('used_bytes', '0'); "
                                 f"PRAGMA user_version = {FORMAT}; COMMIT;")
            if self.write:
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
        with self._lock, immediate(self._db) as db:
            yield db

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def used_bytes(self) -> int:
        return int(self._query("SELECT value FROM meta WHERE key = 'used_bytes'")[0][0])

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    # -- writing ---------------------------------------------------------------------------------
    def add(self, data: bytes, model: str, version: str, route: str, answer: Detections, seconds: float, shadow: str | None = None) -> Added:
        """Capture one answered request. The oldest requests are evicted first to make room; an upload
        over the whole budget is not kept (counted as evicted, its id None).

        Raises:
            OSError, sqlite3.Error: the folder cannot be written (full, read-only, deleted); the caller logs.
        """
        sha = hashlib.sha256(data).hexdigest()
        size = len(data)
        key = (model, version, shadow or "")
        if self.budget is not None and size > self.budget:
            self._bump(key, "captured", "evicted", *(("evicted_pending",) if shadow else ()))
            return Added(None, {key: 1} if shadow else {}, self.used_bytes())
        unlink: list[Path] = []
        lost: dict[tuple[str, str, str], int] = {}
        with self._transaction() as db:
            known = db.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha,)).fetchone() is not None
            used = int(db.execute("SELECT value FROM meta WHERE key = 'used_bytes'").fetchone()[0])
            if not known and self.budget is not None:
                while used + size > self.budget:
                    went, freed, path = self._evict_oldest(db, lost)
                    if not went:
                        break
                    used -= freed
                    if path is not None:
                        unlink.append(path)
            target = self.blob_path(sha)
            if not known or not target.exists():
                self._write_blob(target, data)
            if not known:
                db.execute("INSERT INTO blobs VALUES (?, ?)", (sha, size))
                used += size
            db.execute("UPDATE meta SET value = ? WHERE key = 'used_bytes'", (str(used),))
            cursor = db.execute(
                "INSERT INTO captures (sha256, model, version, route, captured_at, seconds, answer, shadow, shadow_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sha, model, version, route, _stamp(), float(seconds), answer_to_json(answer), shadow, PENDING if shadow else None))
            self._count(db, key, "captured")
            if self.budget is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('budget_bytes', ?)", (str(self.budget),))
            new_id = cursor.lastrowid
        for path in unlink:
            with contextlib.suppress(OSError):
                path.unlink()
        return Added(new_id, lost, used)

    def _write_blob(self, target: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.blobs)  # 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _evict_oldest(self, db: sqlite3.Connection, lost: dict[tuple[str, str, str], int]) -> tuple[bool, int, Path | None]:
        """Drop the oldest captured request: ``(something went, bytes freed, blob file to unlink)``; the
        blob goes only with its last reference (another request may have sent the same bytes). A request
        its shadow had not answered yet is added to ``lost``."""
        row = db.execute("SELECT id, sha256, model, version, shadow, shadow_state FROM captures ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return False, 0, None
        cid, sha, model, version, shadow, state = row
        db.execute("DELETE FROM captures WHERE id = ?", (cid,))
        self._count(db, (model, version, shadow or ""), "evicted")
        if state == PENDING:
            self._count(db, (model, version, shadow or ""), "evicted_pending")
            lost[(model, version, shadow)] = lost.get((model, version, shadow), 0) + 1
        freed, path = self._drop_blob_if_unused(db, sha)
        return True, freed, path

    def _drop_blob_if_unused(self, db: sqlite3.Connection, sha: str) -> tuple[int, Path | None]:
        if db.execute("SELECT 1 FROM captures WHERE sha256 = ? LIMIT 1", (sha,)).fetchone() is not None:
            return 0, None
        size = db.execute("SELECT bytes FROM blobs WHERE sha256 = ?", (sha,)).fetchone()
        db.execute("DELETE FROM blobs WHERE sha256 = ?", (sha,))
        return (int(size[0]) if size else 0), self.blob_path(sha)

    @staticmethod
    def _count(db: sqlite3.Connection, key: tuple[str, str, str], name: str, by: int = 1) -> None:
        db.execute("INSERT INTO counters VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, version, shadow, name) DO UPDATE SET value = value + excluded.value",
                   (*key, name, by))

    def _bump(self, key: tuple[str, str, str], *names: str) -> None:
        with self._transaction() as db:
            for name in names:
                self._count(db, key, name)

    # -- the shadow's queue ----------------------------------------------------------------------
    def next_pending(self, model: str, shadow: str, after: int = 0) -> CaptureRecord | None:
        """The oldest request captured for ``shadow`` that it has not answered yet."""
        found = self.pending_records(model, shadow, 1, after)
        return found[0] if found else None

    def pending_records(self, model: str, shadow: str, limit: int, after: int = 0) -> list[CaptureRecord]:
        """Up to ``limit`` of the oldest requests captured for ``shadow`` that it has not answered yet."""
        rows = self._query(f"SELECT {_COLUMNS} FROM captures c JOIN blobs b USING (sha256) WHERE c.shadow_state = ? AND c.model = ? "
                           "AND c.shadow = ? AND c.id > ? ORDER BY c.id LIMIT ?", (PENDING, model, shadow, after, int(limit)))
        return [self._record(row) for row in rows]

    def pending(self, model: str | None = None) -> dict[tuple[str, str, str], int]:
        """Requests waiting for their shadow, by (model, live version, shadow version)."""
        sql = "SELECT model, version, shadow, count(*) FROM captures WHERE shadow_state = ?"
        args: tuple = (PENDING,)
        if model is not None:
            sql, args = sql + " AND model = ?", args + (model,)
        return {(m, v, s): n for m, v, s, n in self._query(sql + " GROUP BY model, version, shadow", args)}

    def settle(self, capture_id: int, state: str, result: dict[str, Any] | str) -> bool:
        """Record what the shadow made of a request (``compared`` with its counts row, or ``error`` with
        the message). False when the request is no longer there (evicted or pruned meanwhile)."""
        with self._transaction() as db:
            row = db.execute("SELECT model, version, shadow FROM captures WHERE id = ? AND shadow_state = ?", (capture_id, PENDING)).fetchone()
            if row is None:
                return False
            db.execute("UPDATE captures SET shadow_state = ?, shadow_result = ?, attempts = attempts + 1 WHERE id = ?",
                       (state, json.dumps(result) if not isinstance(result, str) else result, capture_id))
            self._count(db, (row[0], row[1], row[2] or ""), state)
        return True

    def attempt(self, capture_id: int) -> int:
        """Count one try at a request whose shadow process crashed; returns the tries so far."""
        with self._transaction() as db:
            db.execute("UPDATE captures SET attempts = attempts + 1 WHERE id = ?", (capture_id,))
            row = db.execute("SELECT attempts FROM captures WHERE id = ?", (capture_id,)).fetchone()
        return int(row[0]) if row else MAX_ATTEMPTS

    def read_blob(self, record: CaptureRecord) -> bytes:
        return record.path.read_bytes()

    # -- reading ---------------------------------------------------------------------------------
    def _record(self, row: tuple) -> CaptureRecord:
        return CaptureRecord(*row, path=self.blob_path(row[1]))

    def records(self, model: str | None = None, version: str | None = None, limit: int | None = None, newest_first: bool = False) -> list[CaptureRecord]:
        where, args = [], []
        for column, value in (("c.model", model), ("c.version", version)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT {_COLUMNS} FROM captures c JOIN blobs b USING (sha256)"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY c.id" + (" DESC" if newest_first else "")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._record(row) for row in self._query(sql, tuple(args))]

    def counters(self) -> dict[tuple[str, str, str], dict[str, int]]:
        out: dict[tuple[str, str, str], dict[str, int]] = {}
        for model, version, shadow, name, value in self._query("SELECT model, version, shadow, name, value FROM counters"):
            out.setdefault((model, version, shadow), {})[name] = value
        return out

    def summary(self) -> dict[str, Any]:
        """What the folder holds: totals, and per model and version the requests, bytes, time span and
        the shadow's coverage (captured, compared, errors, pending, evicted)."""
        meta = dict(self._query("SELECT key, value FROM meta"))
        groups = []
        for model, version, route, n, first, last in self._query(
                "SELECT model, version, route, count(*), min(captured_at), max(captured_at) FROM captures GROUP BY model, version, route ORDER BY model, version, route"):
            groups.append({"model": model, "version": version, "route": route, "requests": n, "first": first, "last": last})
        pending = self.pending()
        shadows = []
        for (model, version, shadow), counts in sorted(self.counters().items()):
            entry = {"model": model, "live": version, "shadow": shadow or None, "captured": counts.get("captured", 0),
                     "compared": counts.get(COMPARED, 0), "errors": counts.get(ERROR, 0), "pending": pending.get((model, version, shadow), 0),
                     "evicted": counts.get("evicted", 0), "evicted_pending": counts.get("evicted_pending", 0)}
            shadows.append(entry)
        total = self._query("SELECT count(*) FROM captures")[0][0]
        blobs = self._query("SELECT count(*), coalesce(sum(bytes), 0) FROM blobs")[0]
        return {"folder": str(self.folder), "requests": total, "images": blobs[0], "bytes": blobs[1],
                "budget_bytes": int(meta["budget_bytes"]) if "budget_bytes" in meta else None, "created_at": meta.get("created_at"),
                "groups": groups, "counters": shadows}

    # -- pruning ---------------------------------------------------------------------------------
    def prune(self, *, older_than: float | None = None, keep_bytes: int | None = None, model: str | None = None,
              everything: bool = False, dry_run: bool = False) -> tuple[int, int]:
        """Remove requests (oldest first): those captured more than ``older_than`` seconds ago, then as
        many as it takes to bring the blobs under ``keep_bytes``; ``model`` limits it to one model.
        Returns ``(requests removed, bytes freed)``. Pruning is the user's choice: it is not counted
        as eviction."""
        cutoff = None if older_than is None else datetime.fromtimestamp(time.time() - older_than, timezone.utc).isoformat(timespec="microseconds")
        removed = freed = 0
        unlink: list[Path] = []
        try:
            with self._transaction() as db:
                used = int(db.execute("SELECT value FROM meta WHERE key = 'used_bytes'").fetchone()[0])
                sql = "SELECT id, sha256, captured_at FROM captures" + (" WHERE model = ?" if model else "") + " ORDER BY id"
                for cid, sha, at in db.execute(sql, (model,) if model else ()).fetchall():
                    old = cutoff is not None and at < cutoff
                    over = keep_bytes is not None and used - freed > keep_bytes
                    if not (everything or old or over):
                        break  # oldest first: nothing later is older, and the budget is met
                    db.execute("DELETE FROM captures WHERE id = ?", (cid,))
                    removed += 1
                    size, path = self._drop_blob_if_unused(db, sha)
                    freed += size
                    if path is not None:
                        unlink.append(path)
                db.execute("UPDATE meta SET value = ? WHERE key = 'used_bytes'", (str(used - freed),))
                if dry_run:
                    raise _DryRun
        except _DryRun:
            return removed, freed
        for path in unlink:
            with contextlib.suppress(OSError):
                path.unlink()
        return removed, freed


class _DryRun(Exception):
    """Rolls a pruning transaction back after counting what it would remove."""
