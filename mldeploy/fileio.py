"""Writing files so that a crash never leaves half of one, and never over the user's inputs."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable

from mldeploy.errors import OutputError


def umask() -> int:
    """The process's umask (read by setting it, so set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def readable_like_any_file(path: Path, folder: bool = False) -> None:
    """Give ``path`` the mode a plain ``open()`` or ``mkdir`` would have: ``mkstemp`` makes 0600 files and
    ``mkdtemp`` 0700 folders whatever the umask, and a report nobody else can open is no report."""
    os.chmod(path, (0o777 if folder else 0o666) & ~umask())


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
            readable_like_any_file(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


#: Largest text file mldeploy reads for settings (mldeploy.toml, names, label maps): far above any real one.
MAX_TEXT_BYTES = 1 << 20


def not_a_regular_file(path: Path, folder_ok: bool = False) -> str | None:
    """Why ``path`` cannot be read as a file (a FIFO would hang a reader, ``/dev/zero`` never ends), or None."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return None
    return "a folder, not a file" if stat.S_ISDIR(mode) else "not a regular file (a device, pipe or socket)"


def read_small_text(path: Path, what: str, limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a small regular file.

    Raises:
        OSError: the file cannot be read, is not a regular file, is over ``limit`` bytes or is not UTF-8
            (the message says which, naming ``what``).
    """
    problem = not_a_regular_file(path)
    if problem:
        raise OSError(f"{what} {path}: {problem}")
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{what} {path} is over {limit // 1024} KiB; is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(f"{what} {path} is not UTF-8 text") from None


#: The file that marks a folder as an mldeploy report, which the next report may replace.
REPORT_MARKER = ".mldeploy-report"


def _nearest_folder_writable(path: Path) -> str | None:
    """Why nothing can be created at ``path`` (its nearest existing ancestor is not a writable folder), or None."""
    ancestor = Path(os.path.abspath(path)).parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable"
    return None


def check_file_destination(path: Path, protect: Iterable[Path] = (), flag: str = "") -> None:
    """Refuse, before any work, a file that could not be written where asked.

    The file itself need not be writable: :func:`atomic_write` replaces it by a rename, which only
    its folder has to allow.

    Raises:
        OutputError: ``path`` is a folder, an input, or in a folder that cannot be written or created.
    """
    path, where = Path(path), f"{flag} {path}".strip()
    if path.is_dir():
        raise OutputError(f"{where} is a folder; give a file name")
    if path.resolve() in {Path(p).resolve() for p in protect}:
        raise OutputError(f"refusing to write a report over input image {where}")
    problem = _nearest_folder_writable(path)
    if problem:
        raise OutputError(f"cannot write {where}: {problem}")


def check_folder_destination(folder: Path, protect: Iterable[Path] = (), flag: str = "") -> None:
    """Refuse, before any work, a report folder that could not be (re)written: a file, a folder of other
    files (only an empty folder or an earlier report is replaced), one holding inputs, or not writable.

    Raises:
        OutputError: naming the folder and the reason.
    """
    folder, where = Path(folder), f"{flag} {folder}".strip()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{where} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / REPORT_MARKER).exists():
        raise OutputError(f"{where} is a folder with other files in it; give an empty or new folder (an earlier report is replaced)")
    resolved = folder.resolve()
    if any(resolved == Path(p).resolve() or resolved in Path(p).resolve().parents for p in protect):
        raise OutputError(f"{where} would hold input images; give a folder outside the image set")
    problem = _nearest_folder_writable(folder)
    if problem:
        raise OutputError(f"cannot write {where}: {problem}")


def _check_apart(files: list[Path], folders: list[tuple[Path, str]]) -> None:
    """Two reports never share a place: one folder for two flags, or a file inside a report folder (which
    its writer replaces), would lose one of them after the run."""
    resolved = [(folder.resolve(), folder, flag) for folder, flag in folders]
    for i, (a, folder_a, flag_a) in enumerate(resolved):
        for b, folder_b, flag_b in resolved[i + 1:]:
            if a == b:
                raise OutputError(f"{flag_a} {folder_a} and {flag_b} {folder_b} are the same folder: give each report its own")
            if a in b.parents or b in a.parents:
                inner, outer = ((folder_a, flag_a), (folder_b, flag_b)) if b in a.parents else ((folder_b, flag_b), (folder_a, flag_a))
                raise OutputError(f"{inner[1]} {inner[0]} is inside {outer[1]} {outer[0]}: give each report its own folder")
        for path in files:
            if a in path.resolve().parents:
                raise OutputError(f"{path} is inside {flag_a} {folder_a}, which that report replaces: write it elsewhere")


def check_destinations(files: Iterable[Path | None], folders: Iterable[tuple[Path | None, str]], inputs: Iterable[Path]) -> None:
    """:func:`check_file_destination` for each of ``files`` and :func:`check_folder_destination` for each
    ``(folder, flag)``, against every input in one pass: the inputs are read as they come (a million
    images are never held as a set), and not at all when there is nothing to check.

    Raises:
        OutputError: the first destination that cannot be written, naming it and why.
    """
    files = [Path(p) for p in files if p is not None]
    folders = [(Path(p), flag) for p, flag in folders if p is not None]
    _check_apart(files, folders)
    for path in files:
        check_file_destination(path)
    for folder, flag in folders:
        check_folder_destination(folder, (), flag)
    if not files and not folders:
        return
    over = {path.resolve(): path for path in files}
    holding = {folder.resolve(): (folder, flag) for folder, flag in folders}
    for item in inputs:
        resolved = Path(item).resolve()
        if resolved in over:
            raise OutputError(f"refusing to write a report over input image {over[resolved]}")
        for place in (resolved, *resolved.parents):
            if place in holding:
                folder, flag = holding[place]
                raise OutputError(f"{flag} {folder} would hold input images; give a folder outside the image set")
