"""The counters a running server's live shadow accumulates, per model and live/shadow pair.

The agreement columns are :class:`~mldeploy.compare.AgreementCounts`' row (that type converts to and
from it); ``captured``, ``requests`` (compared + errors), ``errors`` and ``evicted`` say how much of the
traffic the shadow saw. ``dropped`` counts the jobs an older server's in-memory queue dropped.
"""

from __future__ import annotations

from mldeploy.compare import AgreementCounts
from mldeploy.store.common import has_table, now

SCHEMA = """
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

# Version 4: matched pairs whose IoU is under the drift threshold.
SCHEMA_V4 = """
ALTER TABLE shadow_stats ADD COLUMN drifted INTEGER NOT NULL DEFAULT 0;
"""

# Version 5: the live shadow drains a capture: requests captured for it, and those evicted before it ran.
SCHEMA_V5 = """
ALTER TABLE shadow_stats ADD COLUMN captured INTEGER NOT NULL DEFAULT 0;
ALTER TABLE shadow_stats ADD COLUMN evicted INTEGER NOT NULL DEFAULT 0;
"""

# Version 6: what has been added from each capture, so that a server adds a capture's counters exactly once.
SCHEMA_V6 = """
CREATE TABLE IF NOT EXISTS shadow_marks (
    source TEXT NOT NULL,
    model TEXT NOT NULL,
    live_version TEXT NOT NULL,
    shadow_version TEXT NOT NULL,
    counter TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (source, model, live_version, shadow_version, counter)
);
"""

#: Columns a server adds to: the agreement counts and the coverage of the traffic.
COVERAGE = ("requests", "errors", "dropped", "captured", "evicted")
SHADOW_COUNTERS = tuple(AgreementCounts.ROW_COLUMNS.values()) + COVERAGE


class ShadowStatsTable:
    """The ``shadow_stats`` table (a mixin of the store)."""

    def add_shadow_stats(self, model: str, live_version: str, shadow_version: str, counts: dict[str, float]) -> None:
        """Add a server's shadow counters (deltas, by column) for one live/shadow pair."""
        unknown = set(counts) - set(SHADOW_COUNTERS)
        if unknown:
            raise ValueError(f"unknown shadow counters {sorted(unknown)}")
        with self._transaction() as db:
            self._add_stats(db, model, live_version, shadow_version, counts)

    def record_shadow_totals(self, model: str, live_version: str, shadow_version: str, source: str, totals: dict[str, float]) -> None:
        """Bring the counters up to ``totals``, everything ``source`` (a capture, by its id) has counted for
        this pair: the part not added before is added and remembered in one transaction, so a server killed
        between two flushes never loses a request's counts nor adds them twice."""
        unknown = set(totals) - set(SHADOW_COUNTERS)
        if unknown:
            raise ValueError(f"unknown shadow counters {sorted(unknown)}")
        key = (source, model, live_version, shadow_version)
        with self._transaction() as db:
            before = dict(db.execute("SELECT counter, value FROM shadow_marks WHERE source = ? AND model = ? AND live_version = ? AND shadow_version = ?",
                                     key).fetchall())
            delta = {c: v - before.get(c, 0) for c, v in totals.items() if v != before.get(c, 0)}
            if not delta:
                return
            self._add_stats(db, model, live_version, shadow_version, delta)
            db.executemany("INSERT INTO shadow_marks VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(source, model, live_version, shadow_version, counter) "
                           "DO UPDATE SET value = excluded.value", [(*key, c, totals[c]) for c in delta])

    @staticmethod
    def _add_stats(db, model: str, live_version: str, shadow_version: str, counts: dict[str, float]) -> None:
        stamp = now()
        columns = list(counts)
        db.execute(
            f"INSERT INTO shadow_stats (model, live_version, shadow_version, {', '.join(columns)}, first_at, updated_at) "
            f"VALUES (?, ?, ?, {', '.join('?' for _ in columns)}, ?, ?) ON CONFLICT(model, live_version, shadow_version) DO UPDATE SET "
            + ", ".join(f"{c} = shadow_stats.{c} + excluded.{c}" for c in columns) + ", updated_at = excluded.updated_at",
            (model, live_version, shadow_version, *[counts[c] for c in columns], stamp, stamp),
        )

    def shadow_stats(self, model: str) -> list[dict]:
        """Accumulated shadow counters of ``model``, one row (a dict by column) per live/shadow pair, newest first."""
        with self._read() as db:
            if db is None or not has_table(db, "shadow_stats"):
                return []
            cursor = db.execute("SELECT * FROM shadow_stats WHERE model = ? ORDER BY updated_at DESC", (model,))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
