"""The SQLite state store: every table group over one ``state.db`` file."""

from __future__ import annotations

from mldeploy.store.db import SQLiteDatabase
from mldeploy.store.pins import PinsTable
from mldeploy.store.releases import ReleasesTables
from mldeploy.store.routes import RoutesTable
from mldeploy.store.shadow_stats import ShadowStatsTable


class SQLiteStore(ReleasesTables, RoutesTable, ShadowStatsTable, PinsTable, SQLiteDatabase):
    """Live versions and history, routes, shadow counters and pins in ``STATE_DIR/state.db``.

    A second backend implements the same public methods over its own connection, in one new module,
    and gets a scheme in :data:`mldeploy.store.SCHEMES`.
    """
