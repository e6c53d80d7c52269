"""The project: where its state lives, which versions it defines on top of the zoo, and its gates.

A project is a working directory. ``mldeploy.toml`` in it (or ``--config`` / ``MLDEPLOY_CONFIG``) may
define versions of its own::

    [models.faces.v3]            # faces@v3
    from = "faces@v2"            # start from a version that exists...
    conf = 0.95                  # ...and change what differs
    description = "MTCNN, stricter threshold"

    [models.signs.v1]            # a model of its own, from its own YOLO files
    backend = "darknet"
    cfg = "models/signs.cfg"     # paths are relative to mldeploy.toml
    weights = "models/signs.weights"
    names = "models/signs.names"

    [gates]                      # defaults for shadow and canary (flags override them)
    max_disagreement = 0.05
    min_recall = 0.95

State (live versions and their history) lives in a SQLite file under the state directory:
``--state-dir``, else ``MLDEPLOY_STATE_DIR``, else ``.mldeploy/`` in the working directory.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mldeploy.errors import ConfigError
from mldeploy.store import is_url
from mldeploy.models.base import Detector, ModelSpec
from mldeploy.models.config import CONFIG_NAME, load_config, project_specs
from mldeploy.models.registry import BUILTIN_DEFAULT_VERSIONS, Registry, builtin_specs
from mldeploy.store import StateStore, open_store

STATE_DIR_NAME = ".mldeploy"


@dataclass(frozen=True)
class CaptureSettings:
    """``[capture]``: where ``serve`` keeps requests, what share, the byte budget, and the shadow's mode."""

    dir: Path | None = None  # relative to mldeploy.toml
    rate: float | None = None
    max_mb: float | None = None
    shadow_mode: str | None = None


@dataclass(frozen=True)
class Settings:
    """``mldeploy.toml``, read and checked once: what every command and the server take from it.

    Flags are applied on top where each is used (:func:`mldeploy.rollout.gates.resolve_rules` for
    ``[gates]``, :meth:`mldeploy.server.config.ServerConfig.from_settings` for ``[capture]``); the values
    of ``[gates]`` are checked there, against the gate table, with the flags.
    """

    path: Path | None = None
    models: dict[str, Any] = field(default_factory=dict)  # [models]: checked against the backends when the registry is built
    gates: dict[str, Any] = field(default_factory=dict)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    label_map: dict[str, str] = field(default_factory=dict)  # [labels.map]: label class -> the model's ("-" leaves it out)
    state: str | None = None  # [state] url: where the state is when no flag or environment variable says

    @classmethod
    def load(cls, path: Path | None) -> "Settings":
        """The settings of ``path`` (None: the defaults).

        Raises:
            ConfigError: the file is missing, is not TOML, or a table is malformed (naming the file,
                table and key).
        """
        if path is None:
            return cls()
        config = load_config(path)
        return cls(path, config.get("models", {}), _gates(config.get("gates", {}), path), _capture(config.get("capture", {}), path),
                   _label_map(config.get("labels", {}), path), _state(config.get("state", {}), path))


def _state(table: Any, path: Path) -> str | None:
    if not isinstance(table, dict) or set(table) - {"url"} or not isinstance(table.get("url", ""), str):
        raise ConfigError(f"{path}: [state] takes one key, url = \"postgresql://...\" or a folder")
    return table.get("url")


def _gates(table: Any, path: Path) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [gates] must be a table")
    return dict(table)


def _capture(table: Any, path: Path) -> CaptureSettings:
    where = f"{path}: [capture]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    kinds = {"dir": str, "rate": (int, float), "max_mb": (int, float), "shadow_mode": str}
    for key, value in table.items():
        if key not in kinds:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(kinds)})")
        if isinstance(value, bool) or not isinstance(value, kinds[key]):
            raise ConfigError(f"{where} {key} must be {'text' if kinds[key] is str else 'a number'}, not {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where} {key} must be a finite number, not {value!r}")
    folder = Path(path).resolve().parent / table["dir"] if "dir" in table else None
    return CaptureSettings(folder, table.get("rate"), table.get("max_mb"), table.get("shadow_mode"))


def _label_map(table: Any, path: Path) -> dict[str, str]:
    where = f"{path}: [labels]"
    if not isinstance(table, dict) or set(table) - {"map"}:
        raise ConfigError(f"{where} takes one table, map (e.g. [labels.map] person = \"face\")")
    mapping = table.get("map", {})
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ConfigError(f"{where}.map must map label names to the model's class names (text)")
    return dict(mapping)


@dataclass
class Project:
    """Settings of one working directory: explicit values, then environment, then defaults."""

    state_dir: Path | str | None = None  # a folder, or a URL (postgresql://...)
    config_path: Path | None = None
    cwd: Path = field(default_factory=Path.cwd)
    _settings: Settings | None = field(default=None, repr=False)
    _store: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Where the state is: a flag (--state URL or --state-dir FOLDER, given here), else MLDEPLOY_STATE or
        # MLDEPLOY_STATE_DIR, else mldeploy.toml's [state] url (read when the store is first opened), else
        # ./.mldeploy. A URL (postgresql://...) is kept as text: a Path would fold its "//".
        self._from_settings = False
        if self.state_dir is None:
            env = os.environ.get("MLDEPLOY_STATE") or os.environ.get("MLDEPLOY_STATE_DIR")
            self._from_settings = not env
            self.state_dir = env if env else self.cwd / STATE_DIR_NAME
        if isinstance(self.state_dir, str) and not is_url(self.state_dir):
            self.state_dir = Path(self.state_dir)
        if self.config_path is None:
            env = os.environ.get("MLDEPLOY_CONFIG")
            if env:
                self.config_path = Path(env)
            elif (self.cwd / CONFIG_NAME).is_file():
                self.config_path = self.cwd / CONFIG_NAME

    @property
    def settings(self) -> Settings:
        """``mldeploy.toml``, read and checked on first use, once."""
        if self._settings is None:
            self._settings = Settings.load(self.config_path)
        return self._settings

    def store(self) -> StateStore:
        """The state store (live versions, history, routes, pins) at ``state_dir``: one per project."""
        if self._store is None:
            if self._from_settings and self.settings.state:
                self.state_dir = self.settings.state if is_url(self.settings.state) else (self.cwd / self.settings.state)
            self._store = open_store(self.state_dir)
        return self._store

    @property
    def state_location(self) -> str:
        """The state as another process opens it: a URL as given, a folder as an absolute path."""
        self.store()
        return self.state_dir if isinstance(self.state_dir, str) else str(Path(self.state_dir).resolve())

    def registry(self, with_live: bool = True) -> Registry:
        """Built-in and project versions; a bare name means its live version when the state says one."""
        specs = builtin_specs()
        defaults = dict(BUILTIN_DEFAULT_VERSIONS)
        for spec in project_specs(self.settings.models, self.config_path, Registry(specs, defaults)):
            specs.append(spec)
            defaults.setdefault(spec.name, spec.version)
        registry = Registry(specs, defaults)
        if with_live:
            # Taken as recorded, even when the version is no longer defined: resolving the bare name
            # then fails loudly instead of quietly serving another version.
            registry.default_versions.update(self.store().live_versions())
        return registry

    def load(self, spec: ModelSpec) -> Detector:
        """The loaded Detector for ``spec`` (once per process), after checking its pinned SHA-256s.

        Raises:
            ModelUnavailableError: files missing, unreadable, or changed since they were pinned.
        """
        from mldeploy.models import load_detector

        self.check_pins(spec)
        return load_detector(spec)

    def check_pins(self, spec: ModelSpec) -> bool:
        """Refuse a version whose pinned files changed (the one place pins are verified). True if it has pins.

        Raises:
            ModelUnavailableError: naming the file that changed, both digests and the fix.
        """
        from mldeploy.models.pins import verify

        pinned = self.store().pins(spec.ref)
        verify(spec, pinned)
        return bool(pinned)

    def pin(self, spec: ModelSpec) -> dict[str, tuple[str, str, int]]:
        """Record the SHA-256 of every file of ``spec`` (all must exist): the one place pins are recorded."""
        from mldeploy.models.pins import digests

        entries = digests(spec)
        if entries:
            self.store().set_pins(spec.ref, entries)
        return entries
