"""Images in object storage: ``s3://bucket/prefix`` (and the other URIs pyarrow's filesystems know).

Listing and reading go through **pyarrow's filesystems** (``pyarrow.fs``), the same layer Ray Data reads
with, so a prefix lists, and an object reads, the same way on both engines. S3 takes the usual AWS
settings from the environment: credentials (``AWS_ACCESS_KEY_ID`` ..., or ``~/.aws``), the region
(``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else the bucket's own) and ``AWS_ENDPOINT_URL`` (or
``AWS_ENDPOINT_URL_S3``) for an S3-compatible server such as MinIO. pyarrow is an optional extra
(``pip install 'mldeploy[s3]'``; the Ray extra brings it too).

The bytes of an object are only bytes: they are decoded with the same checks as a local file
(:mod:`mldeploy.images`), and an object over :data:`MAX_OBJECT_BYTES` is refused before it is read.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Iterator
from urllib.parse import urlsplit

from mldeploy.errors import InputNotFoundError, InvalidImageError, UsageError

EXTRA = "pip install 'mldeploy[s3]'"
#: Largest object read as an image: far above any photo (a 100 MP JPEG is ~50 MB), far below memory.
MAX_OBJECT_BYTES = 512 * 1024 * 1024
#: How long a gs:// request may retry before it fails (it takes about twice this, measured: 11 s for 5).
GCS_RETRY_SECONDS = 5
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_filesystems: dict[tuple, object] = {}
_lock = threading.Lock()


def is_uri(text: str) -> bool:
    """``text`` names an object in storage (``s3://...``), not a local path."""
    return bool(_URI.match(text)) and not text.lower().startswith("file://")


def _pyarrow_fs():
    try:
        import pyarrow.fs
    except ImportError:
        raise UsageError(f"object storage URIs need pyarrow, an optional extra: {EXTRA}") from None
    return pyarrow.fs


def filesystem(uri: str):
    """The pyarrow filesystem for ``uri`` and the object's path in it (``bucket/key``); one filesystem
    per scheme, bucket and AWS settings, made once."""
    fs = _pyarrow_fs()
    parts = urlsplit(uri)
    scheme, bucket = parts.scheme.lower(), parts.netloc
    path = f"{bucket}{parts.path}".rstrip("/")
    settings = tuple(os.environ.get(name) for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"))
    key = (scheme, bucket, settings)
    with _lock:
        if key not in _filesystems:
            if scheme in ("s3", "s3a"):
                _filesystems[key] = _s3(fs, bucket)
            elif scheme in ("gs", "gcs"):  # its default retries for minutes when no credentials or network answer
                from datetime import timedelta

                _filesystems[key] = fs.GcsFileSystem(retry_time_limit=timedelta(seconds=GCS_RETRY_SECONDS))
            else:
                try:
                    _filesystems[key] = fs.FileSystem.from_uri(uri)[0]
                except Exception as exc:  # an unknown scheme, or one this pyarrow was built without
                    raise UsageError(f"{uri}: cannot open this storage: {_first_line(exc)}") from None
        return _filesystems[key], path


def _s3(fs, bucket: str):
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    kwargs: dict = {}
    if endpoint:
        where = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=where.netloc, scheme=where.scheme)
    if region is None and not endpoint:
        try:
            region = fs.resolve_s3_region(bucket)
        except Exception as exc:
            raise InputNotFoundError(f"cannot find the bucket's region ({_first_line(exc)}); set AWS_REGION") from None
    return fs.S3FileSystem(region=region or "us-east-1", **kwargs)


def list_images(uri: str, extensions) -> Iterator[tuple[str, str]]:
    """``(object URI, its path under the prefix)`` of each image under ``uri``, sorted; ``uri`` may also
    name one object. Hidden names (``.x``) and other extensions are skipped, as in a local folder.

    Raises:
        InputNotFoundError: nothing at ``uri``, or it cannot be listed.
    """
    fs = _pyarrow_fs()
    store, path = filesystem(uri)
    scheme = urlsplit(uri).scheme
    try:
        info = store.get_file_info(path)
        if info.type == fs.FileType.File:
            yield uri, path.rsplit("/", 1)[-1]
            return
        found = store.get_file_info(fs.FileSelector(path, recursive=True, allow_not_found=True))
        if not found and store.get_file_info(path.split("/", 1)[0]).type == fs.FileType.NotFound:
            raise InputNotFoundError("no such bucket")
    except InputNotFoundError:
        raise
    except Exception as exc:  # credentials, network, permissions: pyarrow says which
        raise InputNotFoundError(f"cannot list: {_first_line(exc)}") from None
    names = sorted(f.path for f in found if f.type == fs.FileType.File)
    for name in names:
        relative = name[len(path):].lstrip("/")
        if any(part.startswith(".") for part in relative.split("/")) or os.path.splitext(name)[1].lower() not in extensions:
            continue
        yield f"{scheme}://{name}", relative


def read_bytes(uri: str) -> bytes:
    """The object's bytes.

    Raises:
        InputNotFoundError: no such object. InvalidImageError: empty, over :data:`MAX_OBJECT_BYTES`, or
            unreadable (the storage's reason).
    """
    store, path = filesystem(uri)
    try:
        with store.open_input_file(path) as fh:  # one HEAD for the size, then the GET
            size = fh.size()
            if size == 0:
                raise InvalidImageError("empty file (0 bytes)")
            if size > MAX_OBJECT_BYTES:
                raise InvalidImageError(f"object is {size / 2**20:.0f} MiB, over the {MAX_OBJECT_BYTES // 2**20} MiB an image may be")
            return fh.read()
    except InvalidImageError:
        raise
    except FileNotFoundError:
        raise InputNotFoundError("no such object") from None
    except IsADirectoryError:
        raise InvalidImageError("a prefix, not an object") from None
    except Exception as exc:
        raise InvalidImageError(f"cannot read this object: {_first_line(exc)}") from None


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The storage's reason, its first line, cut at a word when it is long."""
    line = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + "…"
