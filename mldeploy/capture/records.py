"""A captured request as the index holds it (:class:`CaptureRecord`), and answers as stored JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mldeploy.detections import Detections
from mldeploy.errors import CaptureError


def answer_to_json(detections: Detections) -> str:
    """The boxes as compact JSON (float32 values survive the round trip exactly)."""
    return json.dumps({"size": list(detections.image_size), "xyxy": detections.xyxy.tolist(), "confidence": detections.confidence.tolist(),
                       "class_id": detections.class_id.tolist(), "label": [str(v) for v in detections.label]}, separators=(",", ":"))


def answer_from_json(text: str) -> Detections:
    d = json.loads(text)
    return Detections(d["xyxy"], d["confidence"], d["class_id"], d["label"], tuple(d["size"]))


@dataclass(frozen=True)
class CaptureRecord:
    """One captured request, as the index has it."""

    id: int
    sha256: str
    bytes: int
    model: str
    version: str
    route: str
    captured_at: str
    seconds: float
    answer_json: str
    shadow: str | None
    shadow_state: str | None
    shadow_result: str | None
    request_id: str | None  # the client's X-Request-Id, when it sent one
    path: Path

    @property
    def answer(self) -> Detections:
        try:
            return answer_from_json(self.answer_json)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CaptureError(f"capture {self.path.parent.parent}: request #{self.id}'s stored answer is damaged ({str(exc)[:80]})") from None

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    @property
    def name(self) -> str:
        """How reports name it: its number and its blob (never a client's file name)."""
        return f"#{self.id} {self.sha256[:12]}"


@dataclass(frozen=True)
class Added:
    """What :meth:`CaptureStore.add` did: the new request's id (None: over the whole budget, not kept) and
    the requests waiting for a shadow that it evicted, by (model, live version, shadow version)."""

    id: int | None
    evicted_pending: dict[tuple[str, str, str], int]
    used_bytes: int = 0  # the blobs' size after it


COLUMNS = ("c.id, c.sha256, b.bytes, c.model, c.version, c.route, c.captured_at, c.seconds, c.answer, c.shadow, c.shadow_state, c.shadow_result, "
           "c.request_id")
#: A format-1 capture opened read-only (not migrated) has no request ids.
COLUMNS_1 = COLUMNS.replace("c.request_id", "NULL")


