"""Captured requests: what a server answered, kept for a shadow to replay (see :mod:`.store`)."""

from mldeploy.capture.store import COMPARED, ERROR, PENDING, CaptureRecord, CaptureStore

__all__ = ["COMPARED", "ERROR", "PENDING", "CaptureRecord", "CaptureStore"]
