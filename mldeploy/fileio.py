"""Writing files so that a crash never leaves half of one, and never over the user's inputs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable

from mldeploy.errors import OutputError


def atomic_write(path: Path, data: bytes, protect: Iterable[Path] = ()) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Raises:
        OutputError: ``path`` is a folder or one of ``protect`` (the run's input images), or cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    resolved = path.resolve()
    if any(resolved == Path(p).resolve() for p in protect):
        raise OutputError(f"refusing to write over input image {path}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".mldeploy-", suffix=path.suffix, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
