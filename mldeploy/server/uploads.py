"""Upload checks: a body size limit enforced while the body arrives, the file name's extension, and
the content (decoded in memory: an upload is never written to disk under the client's file name)."""

from __future__ import annotations

import json
from pathlib import PurePath

import numpy as np
from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from mldeploy.errors import InvalidImageError, UnsupportedUploadError, UploadTooLargeError
from mldeploy.images import IMAGE_EXTENSIONS, decode_image


class BodyLimit:
    """ASGI middleware: 413 when Content-Length says too much, or when a body without one grows past the limit."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _too_large(send, int(length), self.max_bytes)
        received = 0
        responded = False

        async def limited_receive():
            nonlocal received, responded
            if responded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer 413 now and tell the app the client left: it stops reading, and
                    # whatever it tries to send afterwards is dropped.
                    responded = True
                    await _too_large(send, received, self.max_bytes, so_far=True)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not responded:
                await send(message)

        try:
            return await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if responded:  # the app's complaint about the cut-off body: already answered
                return None
            raise


async def _too_large(send, length: int, limit: int, so_far: bool = False) -> None:
    size = f"more than {limit / 1048576:g} MiB arrived" if so_far else f"upload is {length / 1048576:.1f} MiB"
    body = json.dumps({"error": {"type": UploadTooLargeError.__name__, "message": f"{size}, over the {limit / 1048576:g} MiB limit"}}).encode()
    await send({"type": "http.response.start", "status": UploadTooLargeError.http_status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def read_image_upload(file: UploadFile) -> np.ndarray:
    """The uploaded image as BGR, after checking its name and its content.

    Raises:
        UnsupportedUploadError (415): the file name has no image extension.
        NotAnImageError (415): the content is not an image, whatever the name says.
        InvalidImageError (422): empty, truncated or corrupt; ImageTooLargeError (422): too many pixels.
    """
    name = file.filename or ""
    suffix = PurePath(name).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        allowed = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise UnsupportedUploadError(f"{name!r} does not have an image extension ({allowed})")
    data = await file.read()
    if not data:
        raise InvalidImageError("the uploaded file is empty")
    return await run_in_threadpool(decode_image, data)
