"""Live routing for running servers: a shadow version, a canary version and its weight, per model."""

from __future__ import annotations

from dataclasses import dataclass

from mldeploy.store.common import has_table, now

SCHEMA = """
CREATE TABLE IF NOT EXISTS routing (
    model TEXT PRIMARY KEY,
    shadow_version TEXT,
    canary_version TEXT,
    canary_weight REAL NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);
"""

KEEP = object()  # set_route: leave this part of the route as it is


@dataclass(frozen=True)
class Route:
    """How a running server splits one model's traffic besides its live version."""

    shadow_version: str | None = None
    canary_version: str | None = None
    canary_weight: float = 0.0

    def describe(self) -> str:
        canary = f"{self.canary_version} at {self.canary_weight:g}%" if self.canary_version else "off"
        return f"shadow {self.shadow_version or 'off'}, canary {canary}"


class RoutesTable:
    """The ``routing`` table (a mixin of the store; its changes are history rows too)."""

    def routes(self) -> dict[str, Route]:
        """Models with a shadow or a canary set, and how."""
        return self.snapshot()[1]

    def snapshot(self) -> tuple[dict[str, str], dict[str, Route]]:
        """Live versions and routes, read together (one transaction)."""
        with self._read() as db:
            if db is None:
                return {}, {}
            db.execute("BEGIN")
            try:
                live = dict(db.execute("SELECT model, version FROM live").fetchall())
                rows = db.execute("SELECT model, shadow_version, canary_version, canary_weight FROM routing").fetchall() if has_table(db, "routing") else []
            finally:
                db.execute("COMMIT")
        return live, {m: Route(s, c, float(w)) for m, s, c, w in rows if s or c}

    @staticmethod
    def _end_canary_route(db, model: str, version: str) -> None:
        """``version`` was promoted: its canary route ends, so a rollback does not send its traffic back to it."""
        db.execute("UPDATE routing SET canary_version = NULL, canary_weight = 0, updated_at = ? WHERE model = ? AND canary_version = ?",
                   (now(), model, version))

    def set_route(self, model: str, *, current_default: str, shadow: str | None | object = KEEP, canary: str | None | object = KEEP,
                  weight: float | None = None, action: str = "route", reason: str = "", command: str = "",
                  if_canary: str | None = None) -> Route | None:
        """Start or stop a shadow, set or clear a canary (``weight`` in percent); ``KEEP`` leaves a part as it is.

        Each change appends a history row (from = to = the live version, so rollback skips it). With
        ``if_canary``, nothing changes (and None is returned) unless that canary is still set: replicas
        whose guards remove the same canary at once leave one row."""
        with self._transaction() as db:
            live = self._live_in(db, model) or current_default
            row = db.execute("SELECT shadow_version, canary_version, canary_weight FROM routing WHERE model = ?", (model,)).fetchone()
            route = Route(*row) if row else Route()
            if if_canary is not None and route.canary_version != if_canary:
                return None
            route = Route(
                route.shadow_version if shadow is KEEP else shadow,
                route.canary_version if canary is KEEP else canary,
                float(weight) if weight is not None else (0.0 if canary is None else route.canary_weight),
            )
            if route.canary_version is None:
                route = Route(route.shadow_version, None, 0.0)
            if route.canary_version != (row[1] if row else None) or canary is None:  # --no-canary also clears a controller's pods' figures
                self._clear_canary_stats(db, model)
            db.execute(
                "INSERT INTO routing (model, shadow_version, canary_version, canary_weight, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(model) DO UPDATE SET shadow_version = excluded.shadow_version, canary_version = excluded.canary_version, "
                "canary_weight = excluded.canary_weight, updated_at = excluded.updated_at",
                (model, route.shadow_version, route.canary_version, route.canary_weight, now()),
            )
            self._append(db, model, live, live, action, reason or route.describe(), command, move_live=False)
            return route
