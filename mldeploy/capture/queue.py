"""The live shadow's queue in a capture: requests captured for a shadow version, waiting for it, and
what it made of each (compared, or an error after its tries)."""

from __future__ import annotations

import json
from typing import Any

from mldeploy.capture.index import AGREEMENT, COMPARED, ERROR, MAX_ATTEMPTS, PENDING, CaptureIndex
from mldeploy.capture.records import COLUMNS, CaptureRecord

__all__ = ["COMPARED", "ERROR", "MAX_ATTEMPTS", "PENDING", "PendingQueue"]


class PendingQueue(CaptureIndex):
    """The shadow's side of a capture: ``pending_records``, ``settle``, ``attempt``, ``pending``."""

    def next_pending(self, model: str, shadow: str, after: int = 0) -> CaptureRecord | None:
        """The oldest request captured for ``shadow`` that it has not answered yet."""
        found = self.pending_records(model, shadow, 1, after)
        return found[0] if found else None

    def pending_records(self, model: str, shadow: str, limit: int, after: int = 0) -> list[CaptureRecord]:
        """Up to ``limit`` of the oldest requests captured for ``shadow`` that it has not answered yet."""
        rows = self._query(f"SELECT {self.columns} FROM captures c JOIN blobs b USING (sha256) WHERE c.shadow_state = ? AND c.model = ? "
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
            key = (row[0], row[1], row[2] or "")
            self._count(db, key, state)
            if state == COMPARED and isinstance(result, dict):  # the agreement sums live beside the coverage: one record, one transaction
                for column, value in result.items():
                    self._count(db, key, AGREEMENT + column, value)
        return True

    def attempt(self, capture_id: int) -> int:
        """Count one try at a request whose shadow process crashed; returns the tries so far."""
        with self._transaction() as db:
            db.execute("UPDATE captures SET attempts = attempts + 1 WHERE id = ?", (capture_id,))
            row = db.execute("SELECT attempts FROM captures WHERE id = ?", (capture_id,)).fetchone()
        return int(row[0]) if row else MAX_ATTEMPTS

    def shadow_totals(self) -> dict[tuple[str, str, str], dict[str, float]]:
        """Everything the live shadow counted in this capture, per (model, live version, shadow version), in
        the state store's columns (``mldeploy.store.shadow_stats``): captured, requests (compared + errors),
        errors, evicted (before the shadow ran) and the agreement sums. Durable: each changes in the
        transaction that changes a request."""
        out = {}
        for (model, live, shadow), c in self.counters().items():
            if not shadow:
                continue
            totals = {"captured": c.get("captured", 0), "requests": c.get(COMPARED, 0) + c.get(ERROR, 0), "errors": c.get(ERROR, 0),
                      "evicted": c.get("evicted_pending", 0)}
            totals.update({name[len(AGREEMENT):]: value for name, value in c.items() if name.startswith(AGREEMENT)})
            out[(model, live, shadow)] = totals
        return out

    def _record(self, row: tuple) -> CaptureRecord:
        return CaptureRecord(*row, path=self.blob_files.path(row[1]))
