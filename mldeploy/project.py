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

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from mldeploy.errors import ConfigError, MldeployError
from mldeploy.models.base import ModelSpec
from mldeploy.models.registry import BACKENDS, BUILTIN_DEFAULT_VERSIONS, Registry, builtin_specs, parse_ref

CONFIG_NAME = "mldeploy.toml"
STATE_DIR_NAME = ".mldeploy"

#: File roles each backend reads, for versions declared with ``backend = ...``.
_BACKEND_FILES = {
    "darknet": ("cfg", "weights", "names"),
    "ssd-caffe": ("prototxt", "caffemodel"),
    "haar": ("cascade",),
    "onnx": ("model", "names"),
    "tensorflow": ("saved_model", "label_map"),
    "tflite": ("model", "label_map"),
}
_LABEL_FILES = ("names", "label_map")  # optional: ``classes = [...]`` can say the same
#: Settings a version may give at its top level; they become the backend's options.
_OPTION_KEYS = {
    "input_size": (int, list), "nms": (float, int), "keep": (list,), "layout": (str,), "class_offset": (int,), "signature": (str,),
}
_VERSION_KEYS = ({"from", "backend", "conf", "description", "options", "classes"} | set(_OPTION_KEYS)
                 | {r for roles in _BACKEND_FILES.values() for r in roles})


@dataclass
class Project:
    """Settings of one working directory: explicit values, then environment, then defaults."""

    state_dir: Path | None = None
    config_path: Path | None = None
    cwd: Path = field(default_factory=Path.cwd)
    _config: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.state_dir is None:
            env = os.environ.get("MLDEPLOY_STATE_DIR")
            self.state_dir = Path(env) if env else self.cwd / STATE_DIR_NAME
        if self.config_path is None:
            env = os.environ.get("MLDEPLOY_CONFIG")
            if env:
                self.config_path = Path(env)
            elif (self.cwd / CONFIG_NAME).is_file():
                self.config_path = self.cwd / CONFIG_NAME

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = load_config(self.config_path) if self.config_path is not None else {}
        return self._config

    def store(self):
        from mldeploy.rollout.state import StateStore

        return StateStore(self.state_dir)

    def registry(self, with_live: bool = True) -> Registry:
        """Built-in and project versions; a bare name means its live version when the state says one."""
        specs = builtin_specs()
        defaults = dict(BUILTIN_DEFAULT_VERSIONS)
        for spec in project_specs(self.config, self.config_path, Registry(specs, defaults)):
            specs.append(spec)
            defaults.setdefault(spec.name, spec.version)
        registry = Registry(specs, defaults)
        if with_live:
            # Taken as recorded, even when the version is no longer defined: resolving the bare name
            # then fails loudly instead of quietly serving another version.
            registry.default_versions.update(self.store().live_versions())
        return registry

    def load(self, spec: ModelSpec):
        """The loaded Detector for ``spec`` (once per process), after checking its pinned SHA-256s.

        Raises:
            ModelUnavailableError: files missing, unreadable, or changed since they were pinned.
        """
        from mldeploy.models import load_detector
        from mldeploy.models.pins import verify

        verify(spec, self.store().pins(spec.ref))
        return load_detector(spec)

    def pin(self, spec: ModelSpec) -> dict[str, tuple[str, str, int]]:
        """Record the SHA-256 of every file of ``spec`` (all must exist)."""
        from mldeploy.models.pins import digests

        entries = digests(spec)
        if entries:
            self.store().set_pins(spec.ref, entries)
        return entries

    def gate_defaults(self) -> dict[str, float]:
        gates = self.config.get("gates", {})
        if not isinstance(gates, dict):
            raise ConfigError(f"{self.config_path}: [gates] must be a table")
        return dict(gates)


def load_config(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        config = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(config) - {"models", "gates"}
    if unknown:
        raise ConfigError(f"{path}: unknown section {sorted(unknown)[0]!r} (known: models, gates)")
    return config


def project_specs(config: Mapping[str, Any], path: Path | None, builtins: Registry) -> list[ModelSpec]:
    """The versions ``[models.NAME.VERSION]`` tables declare, checked and with absolute paths."""
    models = config.get("models", {})
    where = str(path) if path else CONFIG_NAME
    if not isinstance(models, dict):
        raise ConfigError(f"{where}: [models] must be a table of models")
    base_dir = Path(path).resolve().parent if path else Path.cwd()
    specs: list[ModelSpec] = []
    for name, versions in models.items():
        if not isinstance(versions, dict) or not all(isinstance(v, dict) for v in versions.values()):
            raise ConfigError(f"{where}: [models.{name}] must hold one table per version, e.g. [models.{name}.v3]")
        for version, table in versions.items():
            ref = f"{name}@{version}"
            if "@" in name or "@" in version:
                raise ConfigError(f"{where}: [models.{name}.{version}]: names and versions cannot contain '@'")
            if any(s.version == version for s in builtins.versions(name)):
                raise ConfigError(f"{where}: {ref} is a built-in version; give yours another name")
            try:
                specs.append(_spec_from_table(name, version, table, base_dir, Registry(builtins.specs + specs, builtins.default_versions)))
            except ConfigError as exc:
                raise ConfigError(f"{where}: [models.{name}.{version}]: {exc}") from None
            except MldeployError as exc:
                raise ConfigError(f"{where}: [models.{name}.{version}]: {exc}") from None
    return specs


def _spec_from_table(name: str, version: str, table: dict[str, Any], base_dir: Path, known: Registry) -> ModelSpec:
    unknown = set(table) - _VERSION_KEYS
    if unknown:
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_VERSION_KEYS))})")
    if ("from" in table) == ("backend" in table):
        raise ConfigError("say either from = \"MODEL@VERSION\" (change an existing version) or backend = \"...\" (your own files)")
    conf = table.get("conf")
    if conf is not None and (not isinstance(conf, (int, float)) or isinstance(conf, bool) or not 0 <= conf <= 1):
        raise ConfigError(f"conf must be a number from 0 to 1, not {conf!r}")
    options = dict(table.get("options", {})) if isinstance(table.get("options", {}), dict) else None
    if options is None:
        raise ConfigError("options must be a table, e.g. options = { input_size = 600 }")
    for key, types in _OPTION_KEYS.items():
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, types):
                raise ConfigError(f"{key} = {value!r}: expected {' or '.join(t.__name__ for t in types)}")
            options[key] = value
    if "nms" in options and not 0 < float(options["nms"]) <= 1:
        raise ConfigError(f"nms = {options['nms']!r}: an IoU from 0 to 1, e.g. 0.45")
    description = str(table.get("description", ""))

    if "from" in table:
        base = known.resolve(str(table["from"]))
        if parse_ref(str(table["from"]))[1] is None:
            raise ConfigError(f"from = {table['from']!r} must name a version, e.g. {base.ref}")
        files = {role: base_dir / table[role] for role in _BACKEND_FILES.get(base.backend, ()) if role in table}
        extra = set(table) & (_VERSION_KEYS - {"from", "conf", "description", "options"} - set(_OPTION_KEYS)) - set(files)
        if extra:
            raise ConfigError(f"{sorted(extra)[0]!r} cannot be changed in a version made from {base.ref}")
        return replace(
            base,
            name=name,
            version=version,
            conf=float(conf) if conf is not None else base.conf,
            files={**base.files, **files},
            options={**base.options, **options},
            description=description or f"{base.description}; from {base.ref}",
        )

    backend = table["backend"]
    if backend not in _BACKEND_FILES:
        choices = ", ".join(sorted(_BACKEND_FILES))
        raise ConfigError(f"backend {backend!r} cannot be declared here (choose from: {choices})")
    assert backend in BACKENDS
    roles = _BACKEND_FILES[backend]
    files = {role: (base_dir / table[role]).resolve() for role in roles if role in table}
    needed = [r for r in roles if r not in _LABEL_FILES and r not in files]
    if needed:
        raise ConfigError(f"backend {backend!r} needs {', '.join(needed)} (a path relative to mldeploy.toml)")
    classes = _classes(table, files)
    return ModelSpec(
        name, version, backend, classes,
        conf=float(conf) if conf is not None else 0.5,
        files=files, options=options, description=description or f"{backend} model from {base_dir}",
    )


def _classes(table: dict[str, Any], files: dict[str, Path]) -> tuple[str, ...]:
    if "classes" in table:
        classes = table["classes"]
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
            raise ConfigError("classes must be a non-empty list of labels")
        return tuple(classes)
    try:
        if "names" in files:
            return tuple(line.strip() for line in files["names"].read_text(encoding="utf-8").splitlines() if line.strip())
        if "label_map" in files:
            from mldeploy.models.tf_detection import label_list, read_label_map  # no TensorFlow import at module level

            return label_list(read_label_map(files["label_map"]))
    except OSError:
        return ()  # reported as a missing file when the model is used or listed
    except MldeployError as exc:
        raise ConfigError(str(exc)) from None
    raise ConfigError("say which labels it emits: names = \"file.names\", label_map = \"labels.pbtxt\" or classes = [\"...\"]")
