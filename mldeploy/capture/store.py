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

import json
import sqlite3
import time
from datetime import datetime, timezone
from typing import Any

from mldeploy.capture.blobs import digest_of
from mldeploy.capture.index import COMPARED, ERROR, FORMAT, INDEX, MAX_ATTEMPTS, PENDING, stamp
from mldeploy.capture.queue import PendingQueue
from mldeploy.capture.records import COLUMNS, Added, CaptureRecord, answer_from_json, answer_to_json
from mldeploy.detections import Detections
from mldeploy.errors import CaptureError

__all__ = ["COMPARED", "ERROR", "FORMAT", "INDEX", "MAX_ATTEMPTS", "PENDING", "Added", "CaptureRecord", "CaptureStore", "answer_from_json",
           "answer_to_json"]


class CaptureStore(PendingQueue):
    """A capture folder: :meth:`add` within the byte budget (the server), the shadow's queue
    (:class:`~mldeploy.capture.queue.PendingQueue`), :meth:`records`, :meth:`summary`, :meth:`prune`.

    Args:
        folder: the capture folder; created (``0700``) by a writer when missing.
        budget_bytes: the most the blobs may take; :meth:`add` evicts the oldest requests to stay under it.
        write: ``False`` opens an existing capture read-only (never creates or changes anything).
    """

    def __init__(self, folder, budget_bytes: int | None = None, write: bool = True, timeout: float = 10.0) -> None:
        self.budget = budget_bytes
        super().__init__(folder, write, timeout)

    def read_blob(self, record: CaptureRecord) -> bytes:
        """The request's bytes, checked against their digest."""
        return self.blob_files.read(record.sha256)

    # -- writing ---------------------------------------------------------------------------------
    def add(self, data: bytes, model: str, version: str, route: str, answer: Detections, seconds: float, shadow: str | None = None,
            request_id: str | None = None, captured_at: str | None = None) -> Added:
        """Capture one answered request. The oldest requests are evicted first to make room; an upload
        over the whole budget is not kept (counted as evicted, its id None).

        ``captured_at`` (ISO 8601, UTC) is now unless given (a capture imported from elsewhere keeps its times).

        Raises:
            OSError: the folder cannot be written (full, read-only, deleted); the caller logs.
            CaptureError: the index cannot be written (the database's own error, named).
        """
        try:
            return self._add(data, model, version, route, answer, seconds, shadow, request_id, captured_at)
        except sqlite3.Error as exc:
            raise CaptureError(f"{exc}") from exc

    def _add(self, data: bytes, model: str, version: str, route: str, answer: Detections, seconds: float, shadow: str | None,
             request_id: str | None = None, captured_at: str | None = None) -> Added:
        sha = digest_of(data)
        size = len(data)
        key = (model, version, shadow or "")
        if self.budget is not None and size > self.budget:
            self._bump(key, "captured", "evicted", *(("evicted_pending",) if shadow else ()))
            return Added(None, {key: 1} if shadow else {}, self.used_bytes())
        unlink: list[str] = []
        lost: dict[tuple[str, str, str], int] = {}
        with self._transaction() as db:
            known = db.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha,)).fetchone() is not None
            used = self._number(db.execute("SELECT value FROM meta WHERE key = 'used_bytes'").fetchone()[0], "used_bytes")
            if not known and self.budget is not None:
                while used + size > self.budget:
                    went, freed, gone = self._evict_oldest(db, lost)
                    if not went:
                        break
                    used -= freed
                    if gone is not None:
                        unlink.append(gone)
            if not known or not self.blob_files.path(sha).exists():
                self.blob_files.write(sha, data)
            if not known:
                db.execute("INSERT INTO blobs VALUES (?, ?)", (sha, size))
                used += size
            db.execute("UPDATE meta SET value = ? WHERE key = 'used_bytes'", (str(used),))
            cursor = db.execute(
                "INSERT INTO captures (sha256, model, version, route, captured_at, seconds, answer, shadow, shadow_state, request_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sha, model, version, route, captured_at or stamp(), float(seconds), answer_to_json(answer), shadow, PENDING if shadow else None,
                 request_id))
            self._count(db, key, "captured")
            if self.budget is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('budget_bytes', ?)", (str(self.budget),))
            new_id = cursor.lastrowid
        for sha in unlink:
            self.blob_files.unlink(sha)
        return Added(new_id, lost, used)

    def _evict_oldest(self, db: sqlite3.Connection, lost: dict[tuple[str, str, str], int]) -> tuple[bool, int, str | None]:
        """Drop the oldest captured request: ``(something went, bytes freed, blob to unlink)``; the
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
        freed, gone = self._drop_blob_if_unused(db, sha)
        return True, freed, gone

    def _drop_blob_if_unused(self, db: sqlite3.Connection, sha: str) -> tuple[int, str | None]:
        if db.execute("SELECT 1 FROM captures WHERE sha256 = ? LIMIT 1", (sha,)).fetchone() is not None:
            return 0, None
        size = db.execute("SELECT bytes FROM blobs WHERE sha256 = ?", (sha,)).fetchone()
        db.execute("DELETE FROM blobs WHERE sha256 = ?", (sha,))
        db.execute("DELETE FROM truth WHERE sha256 = ?", (sha,))  # labels go with the image they describe
        return (int(size[0]) if size else 0), sha

    # -- reading ---------------------------------------------------------------------------------
    def records(self, model: str | None = None, version: str | None = None, limit: int | None = None, newest_first: bool = False) -> list[CaptureRecord]:
        where, args = [], []
        for column, value in (("c.model", model), ("c.version", version)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT {self.columns} FROM captures c JOIN blobs b USING (sha256)"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY c.id" + (" DESC" if newest_first else "")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._record(row) for row in self._query(sql, tuple(args))]

    # -- labels (mldeploy.capture.truth) --------------------------------------------------------
    def blob_digests(self) -> list[str]:
        return [row[0] for row in self._query("SELECT sha256 FROM blobs")]

    def request_ids(self) -> dict[str, str]:
        """Each request id a client sent -> the digest of the image it sent (the newest, if reused)."""
        if self.format < 2:
            return {}
        return dict(self._query("SELECT request_id, sha256 FROM captures WHERE request_id IS NOT NULL ORDER BY id"))

    def image_sizes(self) -> dict[str, tuple[int, int]]:
        """Each captured image's (width, height), as its answer recorded it."""
        out = {}
        for sha, size in self._query("SELECT sha256, json_extract(answer, '$.size') FROM captures GROUP BY sha256"):
            try:
                w, h = json.loads(size)
                out[sha] = (int(w), int(h))
            except (TypeError, ValueError):
                continue  # a damaged answer: that image cannot be labelled, and is named as such
        return out

    def set_truths(self, rows: list[tuple[str, str]], source: str) -> tuple[int, int, int]:
        """Attach ``(digest, truth JSON)`` rows as one batch: ``(batch number, added, replaced)``.

        Raises:
            CaptureError: a capture opened read-only, or one whose index cannot be written.
        """
        if not self.write:
            raise CaptureError(f"capture {self.folder} was opened read-only: labels cannot be attached")
        with self._transaction() as db:
            batch = int(db.execute("SELECT coalesce(max(batch), 0) + 1 FROM truth").fetchone()[0])
            known = {r[0] for r in db.execute("SELECT sha256 FROM truth")} if rows else set()
            replaced = sum(1 for sha, _ in rows if sha in known)
            when = stamp()
            db.executemany("INSERT INTO truth (sha256, truth, source, batch, labelled_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET "
                           "truth = excluded.truth, source = excluded.source, batch = excluded.batch, labelled_at = excluded.labelled_at",
                           [(sha, truth, source, batch, when) for sha, truth in rows])
        return batch, len(rows) - replaced, replaced

    def truths(self, digests: set[str] | None = None) -> dict[str, str]:
        """The truth JSON of every labelled image (of ``digests``, when given)."""
        if self.format < 2:
            return {}
        rows = self._query("SELECT sha256, truth FROM truth")
        return {sha: text for sha, text in rows if digests is None or sha in digests}

    def labelled(self) -> dict[tuple[str, str], int]:
        """Labelled requests per (model, version that answered)."""
        if self.format < 2:
            return {}
        return {(m, v): n for m, v, n in self._query(
            "SELECT c.model, c.version, count(*) FROM captures c JOIN truth t USING (sha256) GROUP BY c.model, c.version")}

    def summary(self) -> dict[str, Any]:
        """What the folder holds: totals, and per model and version the requests, bytes, time span and
        the shadow's coverage (captured, compared, errors, pending, evicted)."""
        meta = dict(self._query("SELECT key, value FROM meta"))
        groups = []
        for model, version, route, n, first, last in self._query(
                "SELECT model, version, route, count(*), min(captured_at), max(captured_at) FROM captures GROUP BY model, version, route ORDER BY model, version, route"):
            groups.append({"model": model, "version": version, "route": route, "requests": n, "first": first, "last": last})
        labelled = self.labelled()
        for g in groups:  # labels are per image: every route of a version shares the figure
            g["labelled"] = labelled.get((g["model"], g["version"]), 0)
        pending = self.pending()
        shadows = []
        for (model, version, shadow), counts in sorted(self.counters().items()):
            entry = {"model": model, "live": version, "shadow": shadow or None, "captured": counts.get("captured", 0),
                     "compared": counts.get(COMPARED, 0), "errors": counts.get(ERROR, 0), "pending": pending.get((model, version, shadow), 0),
                     "evicted": counts.get("evicted", 0), "evicted_pending": counts.get("evicted_pending", 0)}
            shadows.append(entry)
        total = self._query("SELECT count(*) FROM captures")[0][0]
        blobs = self._query("SELECT count(*), coalesce(sum(bytes), 0) FROM blobs")[0]
        labels = self._query("SELECT count(*), coalesce(max(batch), 0) FROM truth")[0] if self.format >= 2 else (0, 0)
        return {"folder": str(self.folder), "requests": total, "images": blobs[0], "bytes": blobs[1], "labelled_images": labels[0], "label_batches": labels[1],
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
        unlink: list[str] = []
        try:
            with self._transaction() as db:
                used = self._number(db.execute("SELECT value FROM meta WHERE key = 'used_bytes'").fetchone()[0], "used_bytes")
                sql = "SELECT id, sha256, captured_at FROM captures" + (" WHERE model = ?" if model else "") + " ORDER BY id"
                rows = db.execute(sql, (model,) if model else ()).fetchall()
                for _, sha, _ in rows:
                    self.blob_files.path(sha)  # every name checked first: a damaged index deletes nothing
                for cid, sha, at in rows:
                    old = cutoff is not None and at < cutoff
                    over = keep_bytes is not None and used - freed > keep_bytes
                    if not (everything or old or over):
                        break  # oldest first: nothing later is older, and the budget is met
                    db.execute("DELETE FROM captures WHERE id = ?", (cid,))
                    removed += 1
                    size, gone = self._drop_blob_if_unused(db, sha)
                    freed += size
                    if gone is not None:
                        unlink.append(gone)
                db.execute("UPDATE meta SET value = ? WHERE key = 'used_bytes'", (str(used - freed),))
                if dry_run:
                    raise _DryRun
        except _DryRun:
            return removed, freed
        for sha in unlink:
            self.blob_files.unlink(sha)
        return removed, freed


class _DryRun(Exception):
    """Rolls a pruning transaction back after counting what it would remove."""
