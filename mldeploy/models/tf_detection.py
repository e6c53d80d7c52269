"""TensorFlow detection models with the Object Detection API's outputs: a SavedModel, or a TFLite SSD.

Both answer with normalised ``detection_boxes`` (ymin, xmin, ymax, xmax), ``detection_scores`` and
``detection_classes``. Class ids follow a label map (``label_map``: a ``.pbtxt`` with ``item { id:
name: }`` entries, or a text file with one name per line for ids 1, 2, ...), or ``classes = [...]``
for ids 1, 2, ... A SavedModel's classes are 1-based, as the Object Detection API exports them; a
TFLite SSD's (``TFLite_Detection_PostProcess``) are 0-based; ``class_offset`` overrides either.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from mldeploy.detections import Detections
from mldeploy.errors import InferenceError, ModelUnavailableError
from mldeploy.fileio import read_small_text
from mldeploy.models.base import Detector, ModelSpec


def read_label_map(path: Path) -> dict[int, str]:
    """``{id: name}`` from a ``.pbtxt`` label map, or from a plain list (line n is id n)."""
    if not Path(path).exists():
        raise FileNotFoundError(path)
    try:
        text = read_small_text(Path(path), "label map")
    except OSError as exc:
        raise ModelUnavailableError(str(exc)) from None
    if "item" in text and "{" in text:
        labels = {}
        for body in re.findall(r"item\s*\{(.*?)\}", text, flags=re.S):
            ident = re.search(r"\bid\s*:\s*(\d+)", body)
            name = re.search(r"\bdisplay_name\s*:\s*[\"'](.*?)[\"']", body) or re.search(r"\bname\s*:\s*[\"'](.*?)[\"']", body)
            if ident and name:
                labels[int(ident.group(1))] = name.group(1)
        if not labels:
            raise ModelUnavailableError(f"label map {path} has no item with an id and a name")
        return labels
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return {i + 1: name for i, name in enumerate(names)}


def label_list(label_map: dict[int, str]) -> tuple[str, ...]:
    """Class names in id order, ids 1..max (a gap gets a placeholder name)."""
    top = max(label_map) if label_map else 0
    return tuple(label_map.get(i, f"class-{i}") for i in range(1, top + 1))


class _TFDetector(Detector):
    default_offset = 1

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if not self.classes:
            raise ModelUnavailableError(f"{spec.ref}: no class names (give label_map = \"...\" or classes = [...])")
        self._offset = int(spec.options.get("class_offset", self.default_offset))

    def _to_detections(self, boxes, scores, classes, width: int, height: int, conf: float) -> Detections:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        ids = np.asarray(classes).reshape(-1).astype(np.int64) - self._offset
        n = min(len(boxes), len(scores), len(ids))
        boxes, scores, ids = boxes[:n], scores[:n], ids[:n]
        known = (ids >= 0) & (ids < len(self.classes)) & (scores >= conf)
        boxes, scores, ids = boxes[known], scores[known], ids[known]
        xyxy = np.stack([boxes[:, 1] * width, boxes[:, 0] * height, boxes[:, 3] * width, boxes[:, 2] * height], axis=1)
        return Detections.from_boxes(xyxy, scores, ids.astype(np.int32), self.classes, (width, height))


class SavedModelDetector(_TFDetector):
    """A TensorFlow 2 SavedModel whose ``serving_default`` takes a ``uint8`` image batch."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        from mldeploy.models.tfimport import import_tensorflow

        tf = self._tf = import_tensorflow()
        model = tf.saved_model.load(str(spec.files["saved_model"]))
        signature = spec.options.get("signature", "serving_default")
        if signature not in model.signatures:
            raise ModelUnavailableError(f"{spec.ref}: the SavedModel has no signature {signature!r} (it has: {', '.join(model.signatures) or 'none'})")
        self._model = model  # keep the object alive: the signature's variables belong to it
        self._fn = model.signatures[signature]
        specs = self._fn.structured_input_signature[1]
        if len(specs) != 1:
            raise ModelUnavailableError(f"{spec.ref}: serving signature takes {len(specs)} inputs; one image tensor expected")
        self._input_name, input_spec = next(iter(specs.items()))
        self._dtype = input_spec.dtype
        missing = {"detection_boxes", "detection_scores", "detection_classes"} - set(self._fn.structured_outputs)
        if missing:
            raise ModelUnavailableError(f"{spec.ref}: serving signature lacks {', '.join(sorted(missing))} (Object Detection API outputs expected)")

    def _predict(self, image: np.ndarray, conf: float) -> Detections:
        height, width = image.shape[:2]
        rgb = np.ascontiguousarray(image[..., ::-1])[None]
        tensor = self._tf.convert_to_tensor(rgb, dtype=self._tf.uint8)
        if self._dtype != self._tf.uint8:
            tensor = self._tf.cast(tensor, self._dtype)
        out = self._fn(**{self._input_name: tensor})
        return self._to_detections(out["detection_boxes"].numpy(), out["detection_scores"].numpy(), out["detection_classes"].numpy(), width, height, conf)


def _interpreter_class():
    """LiteRT's interpreter when its package is installed; else TensorFlow's ``tf.lite.Interpreter``,
    which still works in the TensorFlow installed here but warns that LiteRT replaces it."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        import warnings

        from mldeploy.models.tfimport import import_tensorflow

        tf = import_tensorflow()

        class Quiet(tf.lite.Interpreter):
            def __init__(self, *args, **kwargs):
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
                    super().__init__(*args, **kwargs)

        return Quiet


class TFLiteDetector(_TFDetector):
    """A TFLite SSD: fixed-size input, outputs boxes, classes, scores and count (by signature names
    when the model has them, else in ``TFLite_Detection_PostProcess`` order)."""

    default_offset = 0

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._interpreter = _interpreter_class()(model_path=str(spec.files["model"]), num_threads=int(spec.options.get("threads", 2)))
        self._interpreter.allocate_tensors()
        inp = self._interpreter.get_input_details()
        if len(inp) != 1 or len(inp[0]["shape"]) != 4:
            raise ModelUnavailableError(f"{spec.ref}: one (1, height, width, 3) input expected, the model has {[tuple(i['shape']) for i in inp]}")
        self._input = inp[0]
        self._outputs = self._output_indices(spec)

    def _output_indices(self, spec: ModelSpec) -> dict[str, int]:
        keys = ("detection_boxes", "detection_classes", "detection_scores")
        for name in self._interpreter.get_signature_list():
            outputs = self._interpreter.get_signature_runner(name).get_output_details()
            if all(k in outputs for k in keys):
                return {k: outputs[k]["index"] for k in keys}
        details = self._interpreter.get_output_details()
        if len(details) < 3:
            raise ModelUnavailableError(f"{spec.ref}: expected boxes, classes and scores outputs, the model has {len(details)}")
        return {k: d["index"] for k, d in zip(keys, details)}  # TFLite_Detection_PostProcess order

    def _predict(self, image: np.ndarray, conf: float) -> Detections:
        import cv2

        height, width = image.shape[:2]
        _, in_h, in_w, _ = self._input["shape"]
        rgb = cv2.resize(image, (int(in_w), int(in_h)))[..., ::-1]
        if self._input["dtype"] == np.float32:
            tensor = (rgb.astype(np.float32) - 127.5) / 127.5  # the SSD MobileNet convention: [-1, 1]
        else:
            tensor = rgb.astype(self._input["dtype"])
        self._interpreter.set_tensor(self._input["index"], np.ascontiguousarray(tensor[None]))
        self._interpreter.invoke()
        get = self._interpreter.get_tensor
        try:
            return self._to_detections(get(self._outputs["detection_boxes"]), get(self._outputs["detection_scores"]),
                                       get(self._outputs["detection_classes"]), width, height, conf)
        except ValueError as exc:
            raise InferenceError(f"{self.spec.ref}: unexpected TFLite outputs: {exc}") from exc
