"""The one detection value type that every layer passes around."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


def xywh_to_xyxy(xywh: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``(n, 4)`` boxes as x, y, width, height (OpenCV's rectangles) -> x1, y1, x2, y2."""
    boxes = np.asarray(xywh, dtype=np.float32).reshape(-1, 4)
    return np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]])


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes found in one image by one model.

    Attributes:
        xyxy: ``(n, 4)`` float32 boxes in pixels, ``x1, y1, x2, y2``, inside the image.
        confidence: ``(n,)`` float32 scores in ``[0, 1]``.
        class_id: ``(n,)`` int32 indices into the model's class list.
        label: ``(n,)`` class names, so two models with different class lists can be compared.
        image_size: ``(width, height)`` of the image the boxes refer to.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    label: np.ndarray
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        n = len(xyxy)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (n, 4), got {xyxy.shape}")
        confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        class_id = np.asarray(self.class_id, dtype=np.int32).reshape(-1)
        label = np.asarray(self.label, dtype=object).reshape(-1)
        for name, arr in (("confidence", confidence), ("class_id", class_id), ("label", label)):
            if len(arr) != n:
                raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
        width, height = (int(v) for v in self.image_size)
        if width <= 0 or height <= 0:
            raise ValueError(f"image_size must be positive (width, height), got {self.image_size}")
        if n:
            if not np.isfinite(xyxy).all():
                raise ValueError("xyxy contains NaN or infinite values")
            if (xyxy[:, 2] < xyxy[:, 0]).any() or (xyxy[:, 3] < xyxy[:, 1]).any():
                raise ValueError("xyxy boxes must have x2 >= x1 and y2 >= y1")
            if (xyxy < 0).any() or (xyxy[:, [0, 2]] > width).any() or (xyxy[:, [1, 3]] > height).any():
                raise ValueError(f"xyxy boxes must lie inside the {width}x{height} image")
            if not np.isfinite(confidence).all() or (confidence < 0).any() or (confidence > 1).any():
                raise ValueError("confidence must be finite and within [0, 1]")
            if (class_id < 0).any():
                raise ValueError("class_id must be non-negative")
        for name, value in (("xyxy", xyxy), ("confidence", confidence), ("class_id", class_id), ("label", label)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "image_size", (width, height))

    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(0, object), image_size)

    @classmethod
    def from_boxes(
        cls,
        xyxy: np.ndarray | Sequence[Sequence[float]],
        confidence: np.ndarray | Sequence[float],
        class_id: np.ndarray | Sequence[int],
        class_names: Sequence[str],
        image_size: tuple[int, int],
    ) -> "Detections":
        """Build detections from a backend's raw boxes: clip to the image and drop degenerate ones.

        Backends call this once at their border, so every model's quirks (boxes past the image edge,
        zero-area boxes, NaN from a broken forward pass) are handled in one place.
        """
        width, height = image_size
        boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        conf = np.asarray(confidence, dtype=np.float32).reshape(-1)
        ids = np.asarray(class_id, dtype=np.int32).reshape(-1)
        keep = np.isfinite(boxes).all(axis=1) & np.isfinite(conf)
        boxes, conf, ids = boxes[keep], conf[keep], ids[keep]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, conf, ids = boxes[keep], np.clip(conf[keep], 0.0, 1.0), ids[keep]
        labels = np.array([class_names[i] for i in ids], dtype=object)
        order = np.argsort(-conf, kind="stable")  # highest confidence first, ties keep model order
        return cls(boxes[order], conf[order], ids[order], labels[order], (width, height))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | Sequence[int] | int) -> "Detections":
        """Filtering is indexing: ``dets[dets.confidence > 0.5]``."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            self.xyxy[index], self.confidence[index], self.class_id[index], self.label[index], self.image_size
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        return (
            self.image_size == other.image_size
            and np.array_equal(self.xyxy, other.xyxy)
            and np.array_equal(self.confidence, other.confidence)
            and np.array_equal(self.class_id, other.class_id)
            and list(self.label) == list(other.label)
        )

    __hash__ = None  # mutable-looking arrays inside: not hashable

    def filter(self, min_confidence: float = 0.0, labels: Iterable[str] | None = None) -> "Detections":
        mask = self.confidence >= min_confidence
        if labels is not None:
            mask &= np.isin(self.label, list(labels))
        return self[mask]

    def resized(self, image_size: tuple[int, int]) -> "Detections":
        """The same boxes in the pixels of the same picture at another size (a reduced decode mapped back)."""
        width, height = self.image_size
        scale = np.array([image_size[0] / width, image_size[1] / height] * 2, dtype=np.float32)
        xyxy = np.minimum(self.xyxy * scale, np.array([image_size[0], image_size[1]] * 2, dtype=np.float32))
        return Detections(xyxy, self.confidence, self.class_id, self.label, image_size)

    def counts(self) -> dict[str, int]:
        """Number of detections per label, in first-seen order."""
        out: dict[str, int] = {}
        for name in self.label:
            out[name] = out.get(name, 0) + 1
        return out
