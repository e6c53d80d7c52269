"""The images of a run: files, folders, globs, manifests and object-storage prefixes, listed into a
compact :class:`ImageList`, and each one read and decoded with the checks of :mod:`mldeploy.images`."""

from __future__ import annotations

import errno
import glob
import hashlib
import os
from array import array
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Iterator, Sequence, overload

import numpy as np

from mldeploy.errors import InputNotFoundError, InvalidImageError
from mldeploy.images import IMAGE_EXTENSIONS, decode_image_at_least, read_image_at_least
from mldeploy.sources import is_uri

_GLOB_CHARS = set("*?[")
#: Lines of one manifest named when they name nothing readable; the rest are counted in one more line.
MANIFEST_ERRORS = 50


@dataclass(frozen=True)
class ImageInput:
    """One image to process: where it is, how to show it, the folder argument it came from, and its
    path under that folder (``relative``; None when it is not under it, e.g. a manifest's absolute line)."""

    path: Path
    display: str
    root: Path
    relative: str | None = None

    @property
    def expected_sha256(self) -> str | None:
        """The SHA-256 its bytes must have (a content-addressed input, such as a capture's blob), or None."""
        return None

    @property
    def uri(self) -> str | None:
        """The object's URI when the image is in object storage (``s3://...``), else None."""
        return self.display if is_uri(self.display) else None

    @property
    def key(self) -> str:
        """The image's name in its set: its path under the folder (or prefix) it came from, else its file
        name. The canary routes by it and labels are paired by it, so a set moved elsewhere keeps both."""
        if self.relative is not None:
            return self.relative
        if self.uri is not None:
            return self.uri.rsplit("/", 1)[-1]
        try:
            return PurePath(self.path.resolve().relative_to(self.root)).as_posix()
        except (ValueError, OSError, RuntimeError):
            return self.path.name


class ImageList(Sequence[ImageInput]):
    """The images of a run, compact: their names in one buffer (about 60 bytes an image, where a list of
    :class:`ImageInput` takes ten times that), each :class:`ImageInput` made when it is read. A golden set
    of a million images lists in tens of megabytes."""

    def __init__(self) -> None:
        self._text = bytearray()
        self._ends = array("q")  # end of each image's display name in _text
        self._roots: list[Path] = []
        self._root_ids: dict[Path, int] = {}
        self._root_of = array("I")
        self._relative_at = array("i")  # where its relative path starts in the display name; -1: none, -2: in _odd
        self._odd: dict[int, str] = {}

    def append(self, display: str, root: Path, relative: str | None) -> None:
        n = len(self._ends)
        self._text += display.encode("utf-8", "surrogateescape")
        self._ends.append(len(self._text))
        if root not in self._root_ids:
            self._root_ids[root] = len(self._roots)
            self._roots.append(root)
        self._root_of.append(self._root_ids[root])
        if relative is None:
            self._relative_at.append(-1)
        elif display.replace(os.sep, "/").endswith(relative) and (len(display) == len(relative) or display[-len(relative) - 1] in "/" + os.sep):
            self._relative_at.append(len(display) - len(relative))
        else:
            self._relative_at.append(-2)
            self._odd[n] = relative

    def __len__(self) -> int:
        return len(self._ends)

    @overload
    def __getitem__(self, index: int) -> ImageInput: ...
    @overload
    def __getitem__(self, index: slice) -> list[ImageInput]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("image index out of range")
        start = self._ends[index - 1] if index else 0
        display = self._text[start:self._ends[index]].decode("utf-8", "surrogateescape")
        at = self._relative_at[index]
        relative = None if at == -1 else self._odd[index] if at == -2 else display[at:].replace(os.sep, "/")
        return ImageInput(Path(display), display, self._roots[self._root_of[index]], relative)

    def __iter__(self) -> Iterator[ImageInput]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:  # like a list: the same images in the same order
        return isinstance(other, (list, tuple, ImageList)) and len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"ImageList({len(self)} images)"


class ImageSubset(Sequence[ImageInput]):
    """Some images of an :class:`ImageList` (or any sequence), by index, as a sequence of their own: a
    canary's images in routing order, a step's slice of them, made without copying an image."""

    def __init__(self, images: Sequence[ImageInput], indices: Sequence[int]) -> None:
        self._images, self._indices = images, indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._images[int(self._indices[index])]


def read_input(item: ImageInput) -> np.ndarray:
    """The decoded image, from its file or its object (the same checks either way)."""
    return read_input_at_least(item, None)[0]


def check_digest(item: ImageInput, data: bytes) -> None:
    """Refuse bytes that are not those a content-addressed input names (a replaced or damaged blob).

    Raises:
        InvalidImageError: the digests differ.
    """
    expected = item.expected_sha256
    if expected is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise InvalidImageError(f"does not hold the bytes captured (SHA-256 {actual[:12]}, not {expected[:12]}): it was replaced or damaged")


def read_input_at_least(item: ImageInput, min_side: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`~mldeploy.images.read_image_at_least` for a file or an object in storage; a content-addressed
    input's bytes are checked against their digest first."""
    if item.expected_sha256 is not None:
        from mldeploy.fileio import not_a_regular_file

        problem = not_a_regular_file(item.path)
        if problem is not None:
            raise InputNotFoundError(problem)
        data = item.path.read_bytes()
        check_digest(item, data)
        return decode_image_at_least(data, min_side)
    if item.uri is not None:
        from mldeploy.sources import read_bytes

        return decode_image_at_least(read_bytes(item.uri), min_side)
    return read_image_at_least(item.path, min_side)


def collect_inputs(args: Sequence[str], exclude: Path | None = None) -> tuple[ImageList, list[tuple[str, InputNotFoundError]]]:
    """Expand files, folders (recursively) and glob patterns into images, in a stable order.

    Folders contribute files with an image extension (hidden files and ``exclude`` skipped); a file
    named explicitly is always tried, whatever its name, because decoding checks content anyway. An
    object-storage URI (``s3://bucket/prefix``) contributes the images under that prefix (or the one
    object it names); ``@FILE`` reads a manifest, one path or URI a line.

    Returns:
        The images, and ``(argument, error)`` for each argument that matched nothing.
    """
    images = ImageList()
    failures: list[tuple[str, InputNotFoundError]] = []
    # Each image's file (device, inode), or a digest of its URI, in two arrays: duplicates (the same file
    # named twice, or through a link) are found by sorting them once the listing is done. 16 bytes an
    # image, where a set of them took 70.
    devices, inodes = array("Q"), array("Q")
    excluded = exclude.resolve() if exclude else None
    resolved_roots: dict[Path, Path] = {}

    def add(path: Path, root: Path, relative: str | None) -> None:
        try:
            info = os.stat(path)  # one call, where resolving the path took one for each of its folders
        except FileNotFoundError:  # a dangling link: listed, and its read says so
            info = None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                failures.append((str(path), InputNotFoundError("a symlink loop, not an image")))
                return
            info = None
        if root not in resolved_roots:
            resolved_roots[root] = root.resolve()
        devices.append(info.st_dev + 2 if info is not None else 0)  # 0: no file to compare (never a duplicate), 1: an object
        inodes.append(info.st_ino if info is not None else len(inodes))
        images.append(str(path), resolved_roots[root], relative)

    def add_remote(uri: str, root: str, relative: str) -> None:
        devices.append(1)
        inodes.append(int.from_bytes(hashlib.blake2b(uri.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "big"))
        images.append(uri, Path(root), relative)

    for arg in args:
        path = Path(arg)
        if is_uri(arg):  # a prefix (or one object) in object storage
            from mldeploy.sources import list_images

            try:
                found = 0
                for uri, relative in list_images(arg, IMAGE_EXTENSIONS):
                    found += 1
                    add_remote(uri, arg, relative)
                if not found:
                    failures.append((arg, InputNotFoundError("no image objects under this prefix")))
            except InputNotFoundError as exc:
                failures.append((arg, exc))
            continue
        if arg.startswith("@") and not path.exists():  # @FILE: a manifest, one path or URI a line
            unnamed = 0
            for line, listed, problem in _manifest(Path(arg[1:])):
                if problem is not None:
                    if line and unnamed + 1 > MANIFEST_ERRORS:  # a manifest of a million missing paths: count, do not hold or print them
                        unnamed += 1
                        continue
                    unnamed += bool(line)
                    failures.append((f"{arg}:{line}" if line else arg, InputNotFoundError(problem)))
                elif isinstance(listed, str):  # an object: read (and found missing, if it is) when replayed
                    add_remote(listed, listed.rsplit("/", 1)[0], listed.split("://", 1)[1].split("/", 1)[-1])
                else:
                    add(listed, Path(arg[1:]).parent, _under(listed, Path(arg[1:]).parent))
            if unnamed > MANIFEST_ERRORS:
                failures.append((arg, InputNotFoundError(f"{unnamed - MANIFEST_ERRORS} more lines name nothing readable "
                                                         f"(the first {MANIFEST_ERRORS} are named above)")))
            continue
        if path.is_dir():
            before, found = len(failures), 0
            for item in _walk_images(path, excluded, failures):  # added as found: a folder of millions is never a list of paths
                found += 1
                add(item, path, _under(item, path))
            if not found and len(failures) == before:
                failures.append((arg, InputNotFoundError("folder holds no image files")))
        elif path.exists():
            add(path, path.parent, path.name)
        elif _GLOB_CHARS & set(arg):
            matches = [Path(m) for m in sorted(glob.glob(arg, recursive=True))]
            files = [m for m in matches if m.is_file()] + [f for m in matches if m.is_dir() for f in _walk_images(m, excluded, failures)]
            if not files:
                failures.append((arg, InputNotFoundError("no files match this pattern")))
            root = _glob_root(arg)
            for item in files:
                add(item, root, _under(item, root))
        else:
            failures.append((arg, InputNotFoundError("no such file or folder")))
    return _first_of_each(images, devices, inodes), failures


def _first_of_each(listed: ImageList, devices: array, inodes: array) -> ImageList:
    """``listed`` without the images that name a file (or object) listed before them."""
    n = len(listed)
    if n < 2:
        return listed
    device, inode = np.frombuffer(devices, dtype=np.uint64), np.frombuffer(inodes, dtype=np.uint64)
    order = np.lexsort((np.arange(n), inode, device))  # by file, then by position: the first of each file leads
    same = (device[order][1:] == device[order][:-1]) & (inode[order][1:] == inode[order][:-1]) & (device[order][1:] != 0)
    if not same.any():
        return listed
    drop = set()
    for at in np.flatnonzero(same):
        first, later = int(order[at]), int(order[at + 1])
        if devices[later] != 1 or listed[later].display == listed[first].display:  # an object's digest: confirmed by its URI
            drop.add(later)
    if not drop:
        return listed
    kept = ImageList()
    for i, item in enumerate(listed):
        if i not in drop:
            kept.append(item.display, item.root, item.relative)
    return kept


def _under(path: Path, folder: Path) -> str | None:
    """``path`` under ``folder``, as written (``a/b.jpg``), or None when it is not under it."""
    relative = os.path.relpath(path, folder)
    return None if relative == ".." or relative.startswith(".." + os.sep) or os.path.isabs(relative) else PurePath(relative).as_posix()


def _manifest(manifest: Path) -> Iterator[tuple[int, Path | str | None, str | None]]:
    """The images a manifest lists: ``(line, path or URI, None)``, or ``(line, None, why)`` for a line that
    names nothing readable. Paths are relative to the manifest's folder; ``#`` starts a comment. Read line
    by line, so a list of millions of images is never held as text; a URI's object is not looked up here
    (a request each), so a missing one is an error row of the run."""
    from mldeploy.fileio import not_a_regular_file

    why = not_a_regular_file(manifest)
    if why is not None:
        yield 0, None, f"manifest {manifest}: {why}"
        return
    with open(manifest, encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, 1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            if "\0" in text:
                yield number, None, f"{text!r}: a NUL byte, not a path"
                continue
            if is_uri(text):
                yield number, text, None
                continue
            listed = Path(text) if Path(text).is_absolute() else manifest.parent / text
            problem = not_a_regular_file(listed)
            yield (number, listed, None) if problem is None else (number, None, f"{text}: {problem}")


def _walk_images(folder: Path, excluded: Path | None, failures: list) -> Iterator[Path]:
    """Image files under ``folder``, in a stable order; a sub-folder that cannot be read is one named
    failure, the rest is walked."""

    def unreadable(exc: OSError) -> None:
        failures.append((exc.filename or str(folder), InputNotFoundError(f"cannot read this folder: {exc.strerror or exc}")))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (excluded is None or (here / d).resolve() != excluded))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                yield here / name


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = parts[: next((i for i, p in enumerate(parts) if _GLOB_CHARS & set(p)), len(parts))]
    return Path(*fixed) if fixed else Path(".")


