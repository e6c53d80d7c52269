"""A capture's ``blobs/`` folder: each upload's bytes under their SHA-256, never under a client's name.

A digest read from the index is input too (a copied capture can be edited): it must be 64 lower-case
hex digits before it names a file, so no index row can reach outside the folder, and a blob's bytes are
checked against their digest when read, so a replaced file is an error, never a silent replay.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from mldeploy.errors import CaptureError

NAME = "blobs"
_DIGEST = re.compile(r"[0-9a-f]{64}")


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobFolder:
    """``folder/blobs``: files named by the SHA-256 of their bytes, written ``0600`` and atomically."""

    def __init__(self, capture_folder: Path) -> None:
        self.folder = Path(capture_folder) / NAME

    def path(self, sha256: str) -> Path:
        """The file of ``sha256``.

        Raises:
            CaptureError: ``sha256`` is not a SHA-256 digest (a damaged or edited index).
        """
        if not isinstance(sha256, str) or not _DIGEST.fullmatch(sha256):
            raise CaptureError(f"capture index names a blob {str(sha256)[:80]!r} that is not a SHA-256 digest: the index was damaged or edited")
        return self.folder / sha256

    def write(self, sha256: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.folder)  # 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.path(sha256))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def read(self, sha256: str) -> bytes:
        """The bytes of ``sha256``, checked against it.

        Raises:
            CaptureError: the digest is not one, or the file's bytes are not those captured.
            OSError: the file cannot be read.
        """
        data = self.path(sha256).read_bytes()
        if digest_of(data) != sha256:
            raise CaptureError(f"blob {sha256[:12]} does not hold the bytes captured (its SHA-256 is {digest_of(data)[:12]}): it was replaced or damaged")
        return data

    def unlink(self, sha256: str) -> None:
        with contextlib.suppress(OSError, CaptureError):
            self.path(sha256).unlink()
