"""Labels that arrive after the answer: ground truth attached to a capture's requests (``mldeploy
capture label``), and read back as the :class:`~mldeploy.truth.run.Truths` of captured inputs.

Truth belongs to an image, not to a request: it is kept per blob (the image's SHA-256), so every request
that sent that image has it, and it goes when the image is pruned or evicted. A labels entry (a COCO
``file_name``, a YOLO or VOC file) finds its image in one of three ways, tried in this order:

1. ``--images DIR``: the labelled file is there; its SHA-256 is a captured blob's;
2. its name (without extension) is a blob's digest, whole or a prefix of at least 12 hex digits (the
   names ``mldeploy capture export`` writes);
3. its name (without extension) is a request id a client sent (``X-Request-Id``, kept at capture).

Labelling an image again replaces its truth; new images are added. Entries that find no image are
named and counted, never guessed.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

import numpy as np

from mldeploy.capture.records import CaptureRecord
from mldeploy.truth.labels import ImageTruth, LabelProblem, LabelSet

#: The shortest digest prefix a name may use for its image (48 bits: no clash among millions of images).
MIN_PREFIX = 12


@dataclass
class Attached:
    """What one ``capture label`` did."""

    source: str
    batch: int
    added: int = 0  # images labelled for the first time
    replaced: int = 0  # images labelled before, whose truth this batch replaced
    by: dict[str, int] = field(default_factory=dict)  # how entries found their image: images, digest, request id
    unmatched: list[LabelProblem] = field(default_factory=list)  # entries that found no captured image
    problems: list[LabelProblem] = field(default_factory=list)  # entries the labels reader skipped

    @property
    def matched(self) -> int:
        return self.added + self.replaced


def truth_to_json(truth: ImageTruth, size: tuple[int, int]) -> str:
    """An image's truth in pixels of the captured image (YOLO's normalised boxes scaled to ``size``)."""
    xyxy = truth.boxes_for(size)
    return json.dumps({"xyxy": np.asarray(xyxy, dtype=float).reshape(-1, 4).round(3).tolist(), "labels": [str(v) for v in truth.labels],
                       "ignore": [bool(v) for v in truth.ignore], "size": list(size), "entry": truth.file}, separators=(",", ":"))


def truth_from_json(key: str, text: str) -> ImageTruth:
    d = json.loads(text)
    return ImageTruth(key, d.get("entry", key), np.asarray(d["xyxy"], dtype=np.float64).reshape(-1, 4), list(d["labels"]),
                      np.asarray(d["ignore"], dtype=bool), tuple(d["size"]))


class _Finder:
    """Which captured blob a labels entry names (see the module's three ways)."""

    def __init__(self, store, images: Path | None) -> None:
        self.images = images
        self.digests = sorted(store.blob_digests())
        self.known = set(self.digests)
        self.request_ids = store.request_ids()

    def find(self, key: str) -> tuple[str | None, str]:
        name = PurePosixPath(key)
        if self.images is not None:
            for candidate in (self.images / key, self.images / name.name):
                if candidate.is_file():
                    sha = hashlib.sha256(candidate.read_bytes()).hexdigest()
                    return (sha, "images") if sha in self.known else (None, f"{candidate} was not captured (its SHA-256 is no captured image's)")
        stem = name.stem if name.suffix else name.name
        text = stem.lower()
        if len(text) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in text):
            at = bisect.bisect_left(self.digests, text)
            hits = [d for d in self.digests[at:at + 2] if d.startswith(text)]
            if len(hits) == 1:
                return hits[0], "digest"
            if len(hits) > 1:
                return None, f"{stem} is the start of several captured images' digests: give more of it"
        for candidate in (stem, name.name):
            if candidate in self.request_ids:
                return self.request_ids[candidate], "request id"
        return None, "no captured image has this digest or request id" + ("" if self.images is not None else " (labelled by file? add --images DIR)")


def attach_labels(store, labels: LabelSet, *, images: Path | None = None) -> Attached:
    """Attach every entry of ``labels`` to the captured image it names (see the module). One transaction:
    a batch is attached whole or not at all.

    Raises:
        CaptureError: the capture cannot be written.
    """
    finder = _Finder(store, images)
    sizes = store.image_sizes()
    rows: list[tuple[str, str]] = []
    result = Attached(str(labels.source), 0, problems=list(labels.problems))
    seen: set[str] = set()
    for key, truth in labels.images.items():
        sha, how = finder.find(key)
        if sha is None:
            result.unmatched.append(LabelProblem("labels without an image", truth.file, key, how))
            continue
        if sha in seen:  # two entries for one image (a copy under two names): the first wins, the second is named
            result.unmatched.append(LabelProblem("labels without an image", truth.file, key, "a second entry for an image already labelled in this batch"))
            continue
        seen.add(sha)
        size = sizes.get(sha) or truth.size
        if size is None:
            result.unmatched.append(LabelProblem("labels without an image", truth.file, key, "the image's size is unknown"))
            continue
        rows.append((sha, truth_to_json(truth, tuple(size))))
        result.by[how] = result.by.get(how, 0) + 1
    result.batch, result.added, result.replaced = store.set_truths(rows, str(labels.source))
    return result


def truths_of(store, records: Iterable[CaptureRecord]) -> dict[int, ImageTruth]:
    """The truth of each labelled record, by record id."""
    wanted = list(records)
    stored = store.truths({r.sha256 for r in wanted})
    return {r.id: truth_from_json(r.name, stored[r.sha256]) for r in wanted if r.sha256 in stored}


def labelset_of(source: str, truths: Mapping[int, ImageTruth]) -> LabelSet:
    """The truths as a :class:`LabelSet` (keys: the records' names), for the scoring code ``eval`` uses."""
    images = {t.key: t for t in truths.values()}
    classes = sorted({str(label) for t in images.values() for label in t.labels})
    return LabelSet(Path(source), "capture", images, classes)
