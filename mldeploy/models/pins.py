"""SHA-256 pinning of model files: record what a version was validated with, refuse what changed since.

Pins live in the state store (``mldeploy models validate`` and ``mldeploy promote`` record them,
``mldeploy models pin`` re-records them on purpose). :func:`verify` runs before a version loads; a
digest is computed once per process for a given file size and modification time.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from mldeploy.errors import ModelUnavailableError
from mldeploy.fileio import not_a_regular_file
from mldeploy.models.base import ModelSpec

_cache: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def sha256(path: Path) -> tuple[str, int]:
    """Digest and size of a file, or of a folder (a SavedModel: every file under it, by relative path)."""
    path = Path(path)
    problem = not_a_regular_file(path, folder_ok=True)
    if problem:
        raise ModelUnavailableError(f"cannot hash {path}: {problem}")
    if path.is_dir():
        outer, total = hashlib.sha256(), 0
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest, size = sha256(item)
            outer.update(f"{item.relative_to(path).as_posix()}\0{digest}\n".encode())
            total += size
        return outer.hexdigest(), total
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _cache:
            return _cache[key], stat.st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    with _lock:
        _cache[key] = h.hexdigest()
    return _cache[key], stat.st_size


def digests(spec: ModelSpec) -> dict[str, tuple[str, str, int]]:
    """``role -> (path, sha256, size)`` for every file of a version (all must exist)."""
    return {role: (str(path), *sha256(Path(path))) for role, path in spec.files.items()}


def verify(spec: ModelSpec, pinned: dict[str, tuple[str, str, int, str]]) -> None:
    """Raise when a pinned file's content changed.

    Raises:
        ModelUnavailableError: naming the file, when it was pinned, both digests and the fix.
    """
    for role, (path, digest, _size, at) in pinned.items():
        current = spec.files.get(role)
        if current is None or not Path(current).exists():
            continue  # a missing file is reported as missing by the loader
        now, _ = sha256(Path(current))
        if now != digest:
            raise ModelUnavailableError(
                f"{spec.ref}: {role} file {current} changed since it was pinned on {at[:19].replace('T', ' ')} UTC "
                f"(sha256 {digest[:12]}... now {now[:12]}...); refusing to load it. If the change is intended, "
                f"run 'mldeploy models pin {spec.ref}'"
            )
