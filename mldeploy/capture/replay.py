"""A capture as the input of a rehearsal: its requests as images, and its stored answers as the reference.

``mldeploy shadow --capture DIR --new v3`` compares a new version with what the live version actually
answered: each captured request becomes a :class:`CapturedInput` (its blob, named by number and digest,
never by a client's file name), and the old side is :class:`RecordedAnswers`, which runs nothing and
returns the stored answer. The old version need not be installed, or even exist, here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mldeploy.capture.store import CaptureRecord, CaptureStore
from mldeploy.errors import UsageError
from mldeploy.models.base import ModelSpec
from mldeploy.pipeline import DetectionResult, ImageInput


@dataclass(frozen=True)
class CapturedInput(ImageInput):
    """One captured request, as an image to replay; ``record`` has the live answer."""

    record: CaptureRecord = None  # type: ignore[assignment]

    @property
    def expected_sha256(self) -> str:
        """A blob is named by its digest: bytes that are not those are not the request captured."""
        return self.record.sha256


class RecordedAnswers:
    """The reference side of a capture replay: the answers the server gave, read from each
    :class:`CapturedInput` (a side, :class:`mldeploy.rollout.sides.Side`, that is not timed: its time is
    the one the server recorded). Nothing is loaded or run, and the image is not needed."""

    timed = False

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def answer(self, image, item: CapturedInput, labels: Sequence[str] | None = None, conf: float | None = None) -> DetectionResult:
        answer = item.record.answer
        return DetectionResult(item.display, self.spec.ref, answer.filter(labels=labels) if labels else answer, seconds=item.record.seconds)

    def load(self) -> None:
        """Nothing to load."""

    def warm(self, image) -> None:
        """Nothing runs."""

    def retime(self, image) -> None:
        return None


def captured_inputs(folder: Path, model: str, version: str | None) -> tuple[str, list[CapturedInput]]:
    """The requests of ``model`` that ``version`` answered (default: the only version in the capture that
    answered ``model``), oldest first, and that version.

    Raises:
        CaptureError: not a capture folder (or unreadable).
        UsageError: no request of ``model``, or several versions answered it and none was chosen.
    """
    store = CaptureStore(folder, write=False)
    try:
        everything = store.records()
    finally:
        store.close()
    records = [r for r in everything if r.model == model]
    versions = Counter(r.version for r in records)
    if not versions:
        models = Counter(r.model for r in everything)
        held = f"it holds {', '.join(f'{m} ({n})' for m, n in models.most_common())}; choose --model" if models else "it is empty"
        raise UsageError(f"capture {folder} has no request of {model}: {held}")
    if version is None:
        if len(versions) > 1:
            listed = ", ".join(f"{v} ({n} requests)" for v, n in versions.most_common())
            raise UsageError(f"capture {folder} holds answers of several {model} versions: {listed}; choose one with --old")
        version = next(iter(versions))
    elif version not in versions:
        listed = ", ".join(f"{v} ({n})" for v, n in versions.most_common())
        raise UsageError(f"capture {folder} has no answer of {model}@{version}; it has {listed}")
    root = Path(folder) / "blobs"
    return version, [CapturedInput(r.path, r.name, root, record=r) for r in records if r.version == version]


def recorded_spec(model: str, version: str, known: ModelSpec | None) -> ModelSpec:
    """The reference's spec: the registry's when this machine knows the version, else a bare one."""
    return known if known is not None else ModelSpec(model, version, "recorded", ())
