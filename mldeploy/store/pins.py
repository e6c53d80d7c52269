"""The SHA-256 of each file of a version, recorded when it is validated or promoted."""

from __future__ import annotations

from mldeploy.store.common import has_table, now

SCHEMA = """
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


class PinsTable:
    """The ``pins`` table (a mixin of the store)."""

    def pins(self, ref: str) -> dict[str, tuple[str, str, int, str]]:
        """``role -> (path, sha256, size, pinned_at)`` recorded for a version."""
        with self._read() as db:
            if db is None or not has_table(db, "pins"):
                return {}
            rows = db.execute("SELECT role, path, sha256, size, pinned_at FROM pins WHERE ref = ?", (ref,)).fetchall()
        return {role: (path, digest, size, at) for role, path, digest, size, at in rows}

    def set_pins(self, ref: str, entries: dict[str, tuple[str, str, int]]) -> None:
        """Record ``role -> (path, sha256, size)`` for a version, replacing what was pinned."""
        stamp = now()
        with self._transaction() as db:
            db.execute("DELETE FROM pins WHERE ref = ?", (ref,))
            db.executemany("INSERT INTO pins (ref, role, path, sha256, size, pinned_at) VALUES (?, ?, ?, ?, ?, ?)",
                           [(ref, role, path, digest, size, stamp) for role, (path, digest, size) in entries.items()])
