"""The live canary's counters, for the whole fleet: every replica adds what its clients got (requests,
errors, and a latency histogram whose buckets add up), so a guard or an outside controller judges the
canary on every replica's traffic, not one replica's. Cleared when the canary is set or removed.
"""

from __future__ import annotations

import math

from mldeploy.store.common import has_table, now

SCHEMA = """
CREATE TABLE IF NOT EXISTS canary_stats (
    model TEXT NOT NULL,
    canary_version TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (model, canary_version)
);
CREATE TABLE IF NOT EXISTS canary_latency (
    model TEXT NOT NULL,
    canary_version TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (model, canary_version, bucket)
);
"""

#: Latency bucket ``b`` holds calls of up to ``BASE * GROWTH ** b`` seconds: 1 ms, then 10% wider each
#: (a percentile read from the buckets is at most 10% high).
BASE, GROWTH, BUCKETS = 0.001, 1.1, 160


def bucket_of(seconds: float) -> int:
    if seconds <= BASE:
        return 0
    return min(BUCKETS - 1, math.ceil(math.log(seconds / BASE, GROWTH)))


def percentile_of(buckets: dict[int, int], q: float) -> float | None:
    """The ``q``-th percentile (seconds) from bucket counts: the upper edge of the bucket it falls in."""
    total = sum(buckets.values())
    if not total:
        return None
    seen = 0
    for b in sorted(buckets):
        seen += buckets[b]
        if seen >= q / 100 * total:
            return BASE * GROWTH ** b
    return BASE * GROWTH ** max(buckets)


class CanaryStatsTable:
    """The ``canary_stats`` and ``canary_latency`` tables (a mixin of the store)."""

    def add_canary_stats(self, model: str, version: str, requests: int, errors: int, buckets: dict[int, int]) -> None:
        """Add one replica's counts (deltas) for the canary ``version`` of ``model``."""
        with self._transaction() as db:
            db.execute("INSERT INTO canary_stats (model, canary_version, requests, errors, updated_at) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT(model, canary_version) DO UPDATE SET requests = canary_stats.requests + excluded.requests, "
                       "errors = canary_stats.errors + excluded.errors, updated_at = excluded.updated_at", (model, version, requests, errors, now()))
            if buckets:
                db.executemany("INSERT INTO canary_latency (model, canary_version, bucket, count) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT(model, canary_version, bucket) DO UPDATE SET count = canary_latency.count + excluded.count",
                               [(model, version, b, n) for b, n in buckets.items()])

    def canary_stats(self, model: str, version: str) -> tuple[int, int, dict[int, int]]:
        """``(requests, errors, latency buckets)`` of the fleet for the canary ``version`` of ``model``."""
        with self._read() as db:
            if db is None or not has_table(db, "canary_stats"):
                return 0, 0, {}
            row = db.execute("SELECT requests, errors FROM canary_stats WHERE model = ? AND canary_version = ?", (model, version)).fetchone()
            buckets = dict(db.execute("SELECT bucket, count FROM canary_latency WHERE model = ? AND canary_version = ?", (model, version)).fetchall())
        return (int(row[0]), int(row[1]), {int(b): int(n) for b, n in buckets.items()}) if row else (0, 0, {})

    def recent_canaries(self, model: str, within_s: float = 30.0) -> list[str]:
        """Versions of ``model`` whose canary counts some replica wrote in the last ``within_s`` seconds,
        newest first: with ``serve --serve-version`` a rollout controller's pods write theirs every second."""
        from datetime import datetime, timedelta, timezone

        since = (datetime.now(timezone.utc) - timedelta(seconds=within_s)).isoformat(timespec="microseconds")
        with self._read() as db:
            if db is None or not has_table(db, "canary_stats"):
                return []
            rows = db.execute("SELECT canary_version FROM canary_stats WHERE model = ? AND updated_at >= ? ORDER BY updated_at DESC",
                              (model, since)).fetchall()
        return [r[0] for r in rows]

    @staticmethod
    def _clear_canary_stats(db, model: str, version: str | None = None) -> None:
        """A canary set anew (or removed) starts from nothing: figures of an earlier one must not judge it.
        With ``version``, only that version's figures go (it was promoted; another canary may go on)."""
        where, params = ("model = ?", (model,)) if version is None else ("model = ? AND canary_version = ?", (model, version))
        db.execute(f"DELETE FROM canary_stats WHERE {where}", params)
        db.execute(f"DELETE FROM canary_latency WHERE {where}", params)
