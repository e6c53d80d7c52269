"""Upload checks: a body size limit enforced while the body arrives, the file name's extension, and
the content (decoded in memory: an upload is never written to disk under the client's file name)."""

from __future__ import annotations

import asyncio
import json
from pathlib import PurePath

import numpy as np
from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from mldeploy.errors import InvalidImageError, RequestTimeoutError, UnsupportedUploadError, UploadTooLargeError
from mldeploy.images import IMAGE_EXTENSIONS, decode_image


class RequestGuard:
    """ASGI middleware for every HTTP request: 413 when Content-Length says too much or a body without
    one grows past the limit; 408 when the body has not arrived ``body_timeout`` seconds after the
    request began (a client that starts an upload and stalls must not hold a worker forever)."""

    def __init__(self, app, max_bytes: int, body_timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _too_large(send, int(length), self.max_bytes)
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        received = 0
        responded = False

        async def guarded_receive():
            nonlocal received, responded
            if responded:
                return {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except asyncio.TimeoutError:
                responded = True
                await _reject(send, RequestTimeoutError(f"the request body did not arrive within {self.body_timeout:g} s"))
                return {"type": "http.disconnect"}
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
            return await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if responded:  # the app's complaint about the cut-off body: already answered
                return None
            raise


async def _too_large(send, length: int, limit: int, so_far: bool = False) -> None:
    size = f"more than {limit / 1048576:g} MiB arrived" if so_far else f"upload is {length / 1048576:.1f} MiB"
    await _reject(send, UploadTooLargeError(f"{size}, over the {limit / 1048576:g} MiB limit"))


async def _reject(send, error) -> None:
    """Answer ``error`` (its status, the one error body shape) and close the connection."""
    body = json.dumps({"error": {"type": type(error).__name__, "message": str(error)}}).encode()
    await send({"type": "http.response.start", "status": error.http_status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def read_image_upload(file: UploadFile, max_pixels: int | None = None) -> tuple[np.ndarray, bytes]:
    """The uploaded image as BGR, and its bytes as sent, after checking its name and its content.

    A name without an extension (``blob``, what browsers and many clients send for an in-memory file)
    is judged by its content alone; a name with a non-image extension (``notes.txt``) is refused.

    Raises:
        UnsupportedUploadError (415): the file name has an extension that is not an image's.
        NotAnImageError (415): the content is not an image, whatever the name says.
        InvalidImageError (422): empty, truncated or corrupt; ImageTooLargeError (422): more than
            ``max_pixels`` (checked from the header, before decoding).
    """
    name = file.filename or ""
    suffix = PurePath(name).suffix.lower()
    if suffix and suffix not in IMAGE_EXTENSIONS:
        allowed = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise UnsupportedUploadError(f"{name!r} does not have an image extension ({allowed}; a name without one is judged by content)")
    data = await file.read()
    if not data:
        raise InvalidImageError("the uploaded file is empty")
    return await run_in_threadpool(decode_image, data, max_pixels), data
