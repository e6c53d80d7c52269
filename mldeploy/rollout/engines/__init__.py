"""Engines: where a run's images are answered, chosen by name from :data:`ENGINES` (as uvicorn picks its
protocols), so a new engine is one module and one entry.

Every engine offers the same four things, and nothing else in mldeploy knows which one it holds:

* ``detect(side, items, conf=, labels=, writer=, reduced_decode=)``: one
  :class:`~mldeploy.pipeline.DetectionResult` per image, in input order (``detect``, ``eval``);
* ``replay(pair, items, offset=0)``: one :class:`~mldeploy.rollout.shadow.ShadowRecord` per image, in any
  order, numbered from ``offset`` (``shadow``, each ``canary`` step), by the rules of
  :class:`~mldeploy.rollout.pairs.Pair`;
* ``prepare(*sides)``: load what runs here, or refuse what must be refused before anything starts, and
  ``session()``: a context for the run;
* ``settings``: what the reports say about it (``{"engine": "ray", "address": "local"}``; ``{}`` locally);
* ``bench(job)``: measure one (version, threads) job of ``mldeploy bench`` in a fresh process where the
  engine runs (:func:`mldeploy.rollout.bench.measure`), returning its raw figures;
* ``loads_here``: whether ``prepare`` loads the versions (a caller then says ``loading ...`` and times it
  apart from the run), or the run does (Ray's actors).
"""

from __future__ import annotations

import importlib
from typing import Any

from mldeploy.errors import UsageError

#: Engine name -> ``"module:factory"``; the factory takes ``(project, options)``.
ENGINES = {
    "local": "mldeploy.rollout.engines.local:make",
    "ray": "mldeploy.rollout.engines.ray:make",
}


def get_engine(name: str, project: Any = None, options: Any = None):
    """The engine called ``name``, made for ``project`` with its ``options`` (an engine's own dataclass).

    Raises:
        UsageError: no engine of that name, or its optional extra is not installed.
    """
    if name not in ENGINES:
        raise UsageError(f"--engine {name!r}: choose {' or '.join(ENGINES)}")
    module, _, factory = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), factory)(project, options)
