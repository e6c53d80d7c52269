"""One exception tree for the whole package.

Each class carries the exit code the CLI uses and the HTTP status the server uses, so the two
adapters translate errors the same way and never guess.
"""

from __future__ import annotations


#: The exit code of a rehearsal whose gates failed (shadow, canary, eval): it wins over 1.
EXIT_GATE_FAILED = 3
#: The exit code of a rehearsal a gate could not judge (too few images): a CI job may retry with more
#: images instead of blocking. It wins over 1.
EXIT_INCONCLUSIVE = 6


class MldeployError(Exception):
    """Base of every error mldeploy raises on purpose."""

    exit_code: int = 1
    http_status: int = 500
    public: bool = False  # a 5xx whose message may reach the client (others say "see the server's log")

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(MldeployError):
    """The user asked for something that cannot be done as asked (bad flag value, unknown name)."""

    exit_code = 2
    http_status = 400


class CaptureError(UsageError):
    """A capture folder that cannot be used: not a capture, damaged, read-only, or written by a newer mldeploy."""


class UnknownModelError(UsageError):
    """A model name or version that the registry does not know."""

    http_status = 404


class InputNotFoundError(MldeployError):
    """An input path that does not exist or holds no images."""

    exit_code = 1
    http_status = 404


class InvalidImageError(MldeployError):
    """Bytes that cannot be decoded into an image: empty, truncated or corrupt."""

    exit_code = 1
    http_status = 422


class NotAnImageError(InvalidImageError):
    """Content that is not an image at all, whatever its name says."""

    http_status = 415


class ImageTooLargeError(InvalidImageError):
    """An image whose pixel count or byte size is over the limit (decompression-bomb guard)."""

    http_status = 422


class ModelUnavailableError(MldeployError):
    """A model that cannot be loaded here: weight files missing or unreadable."""

    exit_code = 4
    http_status = 503


class InferenceError(MldeployError):
    """A model that raised while running on an image."""

    exit_code = 1
    http_status = 500


class OutputError(MldeployError):
    """A result that cannot be written where the user asked (and never over an input)."""

    exit_code = 1
    http_status = 500


class ConfigError(UsageError):
    """An ``mldeploy.toml`` that cannot be read or says something impossible."""

    http_status = 500


class StateError(MldeployError):
    """The state store (live versions and history) cannot be read or written."""

    exit_code = 5
    http_status = 503


class NothingToRollBackError(UsageError):
    """A rollback asked of a model that has no earlier live version."""

    http_status = 409


class UploadTooLargeError(MldeployError):
    """A request body over the server's size limit (not an image problem: its content was never read)."""

    exit_code = 1
    http_status = 413


class RequestTimeoutError(MldeployError):
    """A client that did not send its request body in time."""

    http_status = 408


class InferenceTimeoutError(MldeployError):
    """A request whose model did not answer within the server's time limit."""

    http_status = 503
    public = True  # the message says only what the client sent too much of: safe to show


class UnsupportedUploadError(NotAnImageError):
    """An upload whose file name does not have an image extension."""


class AdminAuthError(MldeployError):
    """An admin request without the right token."""

    http_status = 401


class BadRequestIdError(UsageError):
    """An ``X-Request-Id`` header that is not an id (too long, or characters a log or a query would mangle)."""

    http_status = 422
