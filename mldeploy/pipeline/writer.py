"""Annotated copies of the inputs, written under a folder that mirrors theirs, never over an input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from mldeploy.annotate import BoxAnnotator, encode_image
from mldeploy.detections import Detections
from mldeploy.errors import OutputError
from mldeploy.fileio import atomic_write
from mldeploy.pipeline.inputs import ImageInput


class AnnotatedImageWriter:
    """Writes annotated copies under ``out_dir``, mirroring the inputs' folder tree (an object's copy goes
    under its bucket's name), never over an input."""

    def __init__(self, out_dir: Path, inputs: Sequence[ImageInput], annotator: BoxAnnotator | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.annotator = annotator or BoxAnnotator()
        local = [item for item in inputs if item.uri is None]
        roots = {str(item.root) for item in local}
        self._base = Path(os.path.commonpath(sorted(roots))) if roots else Path.cwd()
        self._inputs = {item.path.resolve() for item in local}

    def target(self, item: ImageInput) -> Path:
        if item.uri is not None:
            relative = Path(*item.uri.split("://", 1)[1].split("/"))
        else:
            relative = item.path.resolve().relative_to(self._base)
        suffix = relative.suffix.lower()
        if suffix not in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"):
            relative = relative.with_name(relative.name + ".png")  # keep the name, pick a format we can write
        return self.out_dir / relative

    def save(self, item: ImageInput, image: np.ndarray, detections: Detections) -> Path:
        target = self.target(item)
        if target.resolve() in self._inputs or (item.uri is None and target.exists() and os.path.samefile(target, item.path)):
            raise OutputError(f"refusing to overwrite input image {target}")
        try:
            data = encode_image(self.annotator.annotate(image, detections), target.suffix)
        except Exception as exc:  # OpenCV cannot encode this image/format
            raise OutputError(f"cannot write {target}: {exc}") from None
        atomic_write(target, data)
        return target


