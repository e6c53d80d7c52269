"""The state store: live versions and their history, server routes, shadow counters, pinned digests.

Opened from a location: a folder (``.mldeploy``, holding ``state.db``) or a URL-like string
(``sqlite:///abs/folder``, ``sqlite:relative/folder``). A scheme names the module that
implements it in :data:`SCHEMES`, the way uvicorn picks its protocols by name.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from mldeploy.errors import UsageError
from mldeploy.store.base import StateStore, copy_state
from mldeploy.store.releases import ACTIONS, Change
from mldeploy.store.routes import KEEP, Route
from mldeploy.store.sqlite import SQLiteStore

#: URL scheme -> "module:Class" of the store that serves it.
SCHEMES = {"sqlite": "mldeploy.store.sqlite:SQLiteStore", "postgresql": "mldeploy.store.postgres:PostgresStore",
           "postgres": "mldeploy.store.postgres:PostgresStore"}
#: Stores opened from the whole URL (a database server), not from a path in it.
BY_URL = ("postgresql", "postgres")


def is_url(location: str | Path) -> bool:
    """``postgresql://...`` (a database server), as opposed to a folder."""
    return isinstance(location, str) and location.partition(":")[0] in BY_URL and "://" in location

def open_store(location: str | Path) -> StateStore:
    """The store at ``location``: a folder path, or ``SCHEME:PATH`` / ``SCHEME://...``.

    Raises:
        UsageError: a scheme no store serves.
    """
    text = str(location)
    scheme, sep, rest = text.partition(":")
    if not sep or len(scheme) < 2 or "/" in scheme or "\\" in scheme:
        return SQLiteStore(Path(location))  # a plain folder (or a Windows drive letter)
    if scheme not in SCHEMES:
        raise UsageError(f"state location {text!r}: no store for {scheme!r} (known: {', '.join(SCHEMES)})")
    module, _, name = SCHEMES[scheme].partition(":")
    if scheme in BY_URL:
        return getattr(importlib.import_module(module), name)(text)
    path = Path(rest[2:] if rest.startswith("//") else rest)
    return getattr(importlib.import_module(module), name)(path)


__all__ = ["ACTIONS", "KEEP", "SCHEMES", "Change", "Route", "SQLiteStore", "StateStore", "copy_state", "open_store"]
