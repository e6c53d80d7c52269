"""``mldeploy.toml`` -> model versions: the file's parser, checked against each backend's declaration.

Every mistake is a :class:`~mldeploy.errors.ConfigError` naming the file, the table and the key.
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from mldeploy.errors import ConfigError, MldeployError
from mldeploy.fileio import read_small_text
from mldeploy.models.base import ModelSpec
from mldeploy.models.registry import BACKENDS, COMMON_OPTIONS, Registry, parse_ref

CONFIG_NAME = "mldeploy.toml"
SECTIONS = ("models", "gates", "capture", "labels")
#: Model and version names: they become URL paths (/count-NAME/) and table cells, so no markup, no slashes.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: Keys of a version table that are not files or options.
_PLAIN_KEYS = {"from", "backend", "conf", "description", "options", "classes", "detector"}
_ALL_ROLES = {role for backend in BACKENDS.values() for role in backend.roles}
_ALL_OPTIONS = set(COMMON_OPTIONS) | {key for backend in BACKENDS.values() for key in backend.options}


def load_config(path: Path) -> dict[str, Any]:
    """The parsed file; only its known sections."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    if not Path(path).exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = read_small_text(Path(path), "config file")
    except OSError as exc:
        raise ConfigError(exc.strerror or str(exc)) from None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path} is not valid TOML: values nest too deeply") from None
    unknown = set(config) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown section {sorted(unknown)[0]!r} (known: {', '.join(SECTIONS)})")
    return config


def project_specs(models: Any, path: Path | None, builtins: Registry) -> list[ModelSpec]:
    """The versions the ``[models.NAME.VERSION]`` tables declare, checked and with absolute paths."""
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
            for kind, text in (("model name", name), ("version", version)):
                if not NAME.fullmatch(text):
                    raise ConfigError(f"{where}: [models.{_quoted(name)}.{_quoted(version)}]: {kind} {text!r} must be letters, digits, "
                                      "'.', '_' or '-' (it becomes part of URLs), at most 64 characters")
            if any(s.version == version for s in builtins.versions(name)):
                raise ConfigError(f"{where}: {ref} is a built-in version; give yours another name")
            try:
                specs.append(_spec_from_table(name, version, table, base_dir, Registry(builtins.specs + specs, builtins.default_versions)))
            except MldeployError as exc:
                raise ConfigError(f"{where}: [models.{name}.{version}]: {exc}") from None
    return specs


def _spec_from_table(name: str, version: str, table: dict[str, Any], base_dir: Path, known: Registry) -> ModelSpec:
    known_keys = _PLAIN_KEYS | _ALL_ROLES | _ALL_OPTIONS
    unknown = set(table) - known_keys
    if unknown:
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(known_keys))})")
    if ("from" in table) == ("backend" in table):
        raise ConfigError("say either from = \"MODEL@VERSION\" (change an existing version) or backend = \"...\" (your own files)")
    conf = table.get("conf")
    if conf is not None and (not isinstance(conf, (int, float)) or isinstance(conf, bool) or not 0 <= conf <= 1):
        raise ConfigError(f"conf must be a number from 0 to 1, not {conf!r}")
    detector = table.get("detector", "")
    if not isinstance(detector, str) or (detector and ":" not in detector):
        raise ConfigError(f"detector = {detector!r}: write \"module:Class\", a Detector subclass importable here")
    if "from" in table:
        base = known.resolve(str(table["from"]))
        if parse_ref(str(table["from"]))[1] is None:
            raise ConfigError(f"from = {table['from']!r} must name a version, e.g. {base.ref}")
        backend = BACKENDS[base.backend]
        options = _options(table, backend)
        files = {role: base_dir / table[role] for role in backend.roles if role in table}
        extra = set(table) & _ALL_ROLES - set(files)
        if extra:
            raise ConfigError(f"{sorted(extra)[0]!r} cannot be changed in a version made from {base.ref}")
        return replace(
            base,
            name=name,
            version=version,
            conf=float(conf) if conf is not None else base.conf,
            files={**base.files, **files},
            options={**base.options, **options},
            description=str(table.get("description", "")) or f"{base.description}; from {base.ref}",
            detector=detector or base.detector,
        )

    backend_name = table["backend"]
    if backend_name not in BACKENDS or not BACKENDS[backend_name].declarable:
        choices = ", ".join(sorted(n for n, b in BACKENDS.items() if b.declarable))
        raise ConfigError(f"backend {backend_name!r} cannot be declared here (choose from: {choices})")
    backend = BACKENDS[backend_name]
    options = _options(table, backend)
    stray = set(table) & _ALL_ROLES - set(backend.roles)
    if stray:
        raise ConfigError(f"backend {backend_name!r} reads no {sorted(stray)[0]!r} file (it reads: {', '.join(backend.roles)})")
    files = {role: (base_dir / table[role]).resolve() for role in backend.roles if role in table}
    needed = [r for r in backend.files if r not in files]
    if needed:
        raise ConfigError(f"backend {backend_name!r} needs {', '.join(needed)} (a path relative to mldeploy.toml)")
    return ModelSpec(
        name, version, backend_name, _classes(table, files),
        conf=float(conf) if conf is not None else 0.5,
        files=files, options=options, description=str(table.get("description", "")) or f"{backend_name} model from {base_dir}",
        detector=detector,
    )


def _options(table: dict[str, Any], backend) -> dict[str, Any]:
    """``options = {...}`` merged with the options given at the top level, each checked against the backend."""
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError("options must be a table, e.g. options = { input_size = 600 }")
    accepted = {**COMMON_OPTIONS, **backend.options}
    checked = {}
    given = [(f"options.{key}", key, value) for key, value in options.items()] + [(key, key, table[key]) for key in set(table) & _ALL_OPTIONS]
    for where, key, value in given:
        if key not in accepted:
            raise ConfigError(f"{where!r} is not an option of this backend (its options: {', '.join(sorted(accepted))})")
        problem = accepted[key].problem(value)
        if problem:
            raise ConfigError(f"{where} = {_short(value)}: {problem}")
        checked[key] = value
    return checked


def _quoted(text: str) -> str:
    return text if NAME.fullmatch(text) else repr(text)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _classes(table: dict[str, Any], files: dict[str, Path]) -> tuple[str, ...]:
    if "classes" in table:
        classes = table["classes"]
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
            raise ConfigError("classes must be a non-empty list of labels")
        return tuple(classes)
    try:
        if "names" in files:
            if not files["names"].exists():
                return ()  # reported as a missing file when the model is used or listed
            text = read_small_text(files["names"], "names file")
            return tuple(line.strip() for line in text.splitlines() if line.strip())
        if "label_map" in files:
            if not files["label_map"].exists():
                return ()
            from mldeploy.models.tf_detection import label_list, read_label_map  # no TensorFlow import at module level

            return label_list(read_label_map(files["label_map"]))
    except OSError as exc:
        raise ConfigError(str(exc)) from None
    except MldeployError as exc:
        raise ConfigError(str(exc)) from None
    raise ConfigError("say which labels it emits: names = \"file.names\", label_map = \"labels.pbtxt\" or classes = [\"...\"]")
