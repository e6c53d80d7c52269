"""The SQLite state store: every table group over one ``state.db`` file."""

from __future__ import annotations

from mldeploy.store.base import StateStore
from mldeploy.store.canary_stats import CanaryStatsTable
from mldeploy.store.db import SQLiteDatabase
from mldeploy.store.pins import PinsTable
from mldeploy.store.releases import ReleasesTables
from mldeploy.store.routes import RoutesTable
from mldeploy.store.shadow_stats import ShadowStatsTable


class SQLiteStore(ReleasesTables, RoutesTable, ShadowStatsTable, CanaryStatsTable, PinsTable, SQLiteDatabase, StateStore):
    """Live versions and history, routes, shadow counters and pins in ``STATE_DIR/state.db``; changes are
    found by looking (:meth:`StateStore.watch`'s poll): SQLite cannot announce them to another process."""
