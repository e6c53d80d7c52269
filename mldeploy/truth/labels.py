"""Ground-truth labels: COCO JSON, YOLO txt folders and Pascal VOC XML, read into one shape.

Every format becomes a :class:`LabelSet`: per image (keyed by its path as the labels name it) the true
boxes and their class names, plus the problems found on the way. A labels file that cannot be read
at all (not JSON, not XML, a YOLO line that is not five numbers) is a :class:`LabelsError` (exit 2);
an entry that can be skipped (an unknown class, a box outside its image) is a :class:`LabelProblem`,
counted and named, and the rest is evaluated.

Formats, as their tools write them:

- **COCO** (``instances_*.json``): ``images`` (``file_name``, ``width``, ``height``), ``annotations``
  (``bbox`` = x, y, width, height in pixels; ``iscrowd``), ``categories`` (``id``, ``name``). An image
  listed with no annotation is a background image (nothing to find).
- **YOLO** (a folder of ``.txt`` files, one per image with the same stem): ``class cx cy w h`` per
  line, normalised to the image's size; class names from ``--names FILE`` (one per line), a
  ``data.yaml`` (``names:`` as a list or a mapping) or ``classes.txt`` beside the labels. An empty file
  is a background image.
- **Pascal VOC** (a folder of ``.xml`` files): ``filename``, ``size``, and ``object`` elements with
  ``name``, ``bndbox`` (xmin, ymin, xmax, ymax, 1-based pixels) and ``difficult``.

Crowd (COCO) and difficult (VOC) objects are kept as *ignored* truth: a prediction on one is neither a
true nor a false positive, as the COCO and VOC evaluations treat them.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Sequence

import numpy as np

from mldeploy.errors import UsageError
from mldeploy.fileio import MAX_TEXT_BYTES, not_a_regular_file, read_small_text

#: A labels file may be large (COCO's val2017 instances file is 25 MB); more than this is refused.
MAX_LABELS_BYTES = 512 << 20
#: A box may pass its image's edge by this many pixels (rounding in annotation tools) before it is a problem.
EDGE_TOLERANCE = 1.0


class LabelsError(UsageError):
    """A labels file that cannot be read as the format it claims (exit 2)."""


@dataclass(frozen=True)
class LabelProblem:
    """An entry that was skipped: which file, which entry, and why."""

    kind: str  # "unknown class", "box outside its image", "image without labels", "labels without an image"
    file: str
    entry: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.entry}: {self.message}"


@dataclass
class ImageTruth:
    """The true boxes of one image. ``normalized`` boxes (YOLO) are in [0, 1] until :meth:`boxes_for` scales them."""

    key: str  # the image's path as the labels name it (POSIX, relative)
    file: str  # the labels file (and entry) it came from, for messages
    xyxy: np.ndarray
    labels: list[str]
    ignore: np.ndarray  # crowd or difficult: neither found nor missed
    size: tuple[int, int] | None = None  # (width, height) the labels declare, if any
    normalized: bool = False

    def boxes_for(self, size: tuple[int, int]) -> np.ndarray:
        """The boxes in pixels of an image of ``size`` (width, height)."""
        if not self.normalized:
            return self.xyxy
        w, h = size
        return self.xyxy * np.array([w, h, w, h], dtype=np.float64)


@dataclass
class LabelSet:
    """Every image's truth, the class names the labels use, and the entries skipped while reading."""

    source: Path
    format: str
    images: dict[str, ImageTruth]
    classes: list[str]
    problems: list[LabelProblem] = field(default_factory=list)

    def find(self, relative: str, name: str) -> ImageTruth | None:
        """An image's truth by its path relative to the folder given (``a/b.jpg``), else by file name when
        only one image in the labels has that name."""
        if relative in self.images:
            return self.images[relative]
        by_name = self._by_name().get(name)
        return by_name if by_name is not None and by_name is not _AMBIGUOUS else None

    def _by_name(self) -> dict[str, object]:
        if not hasattr(self, "_names"):
            names: dict[str, object] = {}
            for key, truth in self.images.items():
                name = PurePosixPath(key).name
                names[name] = _AMBIGUOUS if name in names else truth
                stem = PurePosixPath(key).stem  # YOLO labels name images by stem
                if truth.normalized or self.format == "yolo":
                    names.setdefault(stem, truth)
            self._names = names
        return self._names


_AMBIGUOUS = object()


# -- reading -------------------------------------------------------------------------------------
#: What a hostile file can make a parser raise (a JSON nested 100 000 deep, a number of 1e400 where a whole
#: number goes, a list where a name goes): that file's one-line error, exit 2, never "unexpected".
READ_ERRORS = (RecursionError, ValueError, TypeError, OverflowError, KeyError, IndexError, AttributeError, UnicodeError, MemoryError, OSError)


def reading(what: str):
    """``with reading("labels x.json"):`` turns any error of :data:`READ_ERRORS` into that file's LabelsError."""
    return _Reading(what)


class _Reading:
    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is not None and not isinstance(exc, LabelsError) and isinstance(exc, READ_ERRORS):
            detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise LabelsError(f"{self.what} cannot be read: {detail}") from None
        return False


def load_labels(path: str | os.PathLike[str], names: Path | None = None) -> LabelSet:
    """Read labels in whichever format ``path`` holds: a COCO ``.json``, a folder of VOC ``.xml`` or
    YOLO ``.txt`` files, or a YOLO ``data.yaml``.

    Raises:
        LabelsError: missing, unreadable, or not the format it looks like (one line, naming the file).
    """
    with reading(f"labels {path}"):
        return _load_labels(Path(path), names)


def _load_labels(p: Path, names: Path | None) -> LabelSet:
    if not p.exists():
        raise LabelsError(f"labels {p} do not exist")
    if p.is_file():
        if not_a_regular_file(p):
            raise LabelsError(f"labels {p} are not a regular file")
        if p.suffix.lower() == ".json":
            return read_coco(p)
        if p.suffix.lower() in (".yaml", ".yml"):
            return read_yolo_dataset(p)
        raise LabelsError(f"labels {p}: give a COCO .json file, a YOLO data.yaml, or a folder of YOLO .txt or VOC .xml files")
    files = [f for f in sorted(p.rglob("*")) if f.is_file()]
    xml = [f for f in files if f.suffix.lower() == ".xml"]
    txt = [f for f in files if f.suffix.lower() == ".txt" and f.name != "classes.txt"]
    if xml and not txt:
        return read_voc(p, xml)
    if txt and not xml:
        return read_yolo(p, txt, names)
    if not xml and not txt:
        raise LabelsError(f"labels folder {p} holds no .txt (YOLO) or .xml (Pascal VOC) file")
    raise LabelsError(f"labels folder {p} mixes .txt and .xml files: point at the YOLO or the VOC folder")


def _read_text(path: Path, limit: int = MAX_LABELS_BYTES) -> str:
    try:
        if path.stat().st_size > limit:
            raise LabelsError(f"labels {path} are {path.stat().st_size / 1048576:.0f} MiB, over the {limit >> 20} MiB limit")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LabelsError(f"labels {path} are not UTF-8 text") from None
    except OSError as exc:
        raise LabelsError(f"cannot read labels {path}: {exc.strerror or exc}") from None


def _check_box(box: Sequence[float], size: tuple[int, int] | None, normalized: bool = False) -> str | None:
    """Why a box cannot be used (None when it can)."""
    x1, y1, x2, y2 = box
    if not all(np.isfinite(box)):
        return "coordinates are not finite numbers"
    if x2 <= x1 or y2 <= y1:
        return f"box has no area ({x1:g}, {y1:g}, {x2:g}, {y2:g})"
    if normalized:
        if x1 < -1e-3 or y1 < -1e-3 or x2 > 1 + 1e-3 or y2 > 1 + 1e-3:
            return f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is outside its image (normalised coordinates beyond 0-1)"
        return None
    if size is not None:
        w, h = size
        t = EDGE_TOLERANCE
        if x1 < -t or y1 < -t or x2 > w + t or y2 > h + t:
            return f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is outside its {w}x{h} image"
    return None


def _coco_json(path: Path) -> dict:
    """A COCO instances file's JSON, with its ``images`` and ``categories`` lists checked."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise LabelsError(f"labels {path} are not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("categories"), list):
        raise LabelsError(f"labels {path} are not COCO instances: they need 'images', 'annotations' and 'categories' lists")
    return data


def read_coco(path: Path) -> LabelSet:
    data = _coco_json(path)
    where = path.name
    if not isinstance(data.get("annotations", []), list):
        raise LabelsError(f"labels {path}: 'annotations' must be a list")
    problems: list[LabelProblem] = []
    try:
        categories = {_whole(c["id"], "category id"): _text(c["name"], "category name") for c in data["categories"]}
        images: dict[int, tuple[str, tuple[int, int] | None]] = {}
        ids, names = Counter(), Counter()
        entries = []
        for entry in data["images"]:
            size = (_whole(entry["width"], "width"), _whole(entry["height"], "height")) if "width" in entry and "height" in entry else None
            image_id, name = _whole(entry["id"], "image id"), PurePosixPath(_text(entry["file_name"], "file_name").replace("\\", "/")).as_posix()
            ids[image_id] += 1
            names[name] += 1
            entries.append((image_id, name, size))
    except (KeyError, TypeError, ValueError) as exc:
        raise LabelsError(f"labels {path}: an image or category entry lacks {exc} (COCO needs id, file_name; id, name)") from None
    skipped: set[int] = set()
    for image_id, name, size in entries:
        if ids[image_id] > 1 or names[name] > 1:  # which box belongs to which image is not known: neither entry is trusted
            why = f"id {image_id} names {ids[image_id]} images" if ids[image_id] > 1 else f"{name} is named by {names[name]} image entries"
            problems.append(LabelProblem("duplicate image entry", where, f"image {image_id} ({name})", why + "; all of them are skipped"))
            skipped.add(image_id)
            continue
        images[image_id] = (name, size)
    boxes: dict[int, list[tuple[list[float], str, bool]]] = {image_id: [] for image_id in images}
    for n, ann in enumerate(data.get("annotations") or []):
        entry = f"annotation {ann.get('id', n) if isinstance(ann, dict) else n}"
        try:
            image_id, category = int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            raise LabelsError(f"labels {path}: {entry} needs image_id, category_id and a bbox of four numbers") from None
        if image_id in skipped:
            continue
        if image_id not in images:
            problems.append(LabelProblem("labels without an image", where, entry, f"image_id {image_id} is not in 'images'"))
            continue
        if category not in categories:
            problems.append(LabelProblem("unknown class", where, entry, f"category_id {category} is not in 'categories'"))
            continue
        box = [x, y, x + w, y + h]
        why = _check_box(box, images[image_id][1])
        if why is not None:
            problems.append(LabelProblem("box outside its image", where, f"{entry} (image {images[image_id][0]})", why))
            continue
        boxes[image_id].append((box, categories[category], bool(ann.get("iscrowd", 0))))
    out: dict[str, ImageTruth] = {}
    for image_id, (key, size) in images.items():
        out[key] = _truth(key, f"{where} image {image_id}", boxes[image_id], size)
    return LabelSet(path, "coco", out, list(dict.fromkeys(categories.values())), problems)


def coco_ids(path: str | os.PathLike[str]) -> tuple[dict[str, int], dict[str, int]]:
    """A COCO file's ids: ``file_name -> image id`` and ``category name -> id``, for results that a COCO
    tool reads against that file (``detect --format coco --labels``).

    Raises:
        LabelsError: not a COCO instances file (one line, naming it).
    """
    p = Path(path)
    with reading(f"labels {p}"):
        if p.suffix.lower() != ".json":
            raise LabelsError(f"--labels {p}: image and category ids come from a COCO .json file")
        data = _coco_json(p)
        images = {PurePosixPath(_text(e["file_name"], "file_name").replace("\\", "/")).as_posix(): _whole(e["id"], "image id") for e in data["images"]}
        categories = {_text(c["name"], "category name"): _whole(c["id"], "category id") for c in data["categories"]}
    return images, categories


def _whole(value, what: str) -> int:
    """A whole number from a labels file: not 1e400, not 1.5, not true, not a list."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not (math.isfinite(value) and value.is_integer())):
        raise ValueError(f"{what} {str(value)[:40]!r} is not a whole number")
    return int(value)


def _text(value, what: str) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ValueError(f"{what} {str(value)[:40]!r} is not text")
    return str(value)


def _truth(key: str, file: str, entries: list[tuple[list[float], str, bool]], size, normalized: bool = False) -> ImageTruth:
    xyxy = np.array([b for b, _, _ in entries], dtype=np.float64).reshape(-1, 4)
    return ImageTruth(key, file, xyxy, [label for _, label, _ in entries], np.array([i for _, _, i in entries], dtype=bool), size, normalized)


def _yolo_names(folder: Path, names: Path | None) -> list[str]:
    candidates = [names] if names is not None else [folder / "classes.txt", folder.parent / "classes.txt"]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            if candidate.suffix.lower() in (".yaml", ".yml"):
                return _names_from_yaml(candidate)
            with reading(f"names file {candidate}"):
                return [line.strip() for line in read_small_text(candidate, "names file").splitlines() if line.strip()]
    for yaml in (folder / "data.yaml", folder.parent / "data.yaml"):
        if yaml.is_file():
            return _names_from_yaml(yaml)
    if names is not None:
        raise LabelsError(f"names file {names} does not exist")
    raise LabelsError(f"YOLO labels {folder}: no class names; give --names FILE (one per line) or put a data.yaml or classes.txt beside them")


def _names_from_yaml(path: Path) -> list[str]:
    import yaml  # PyYAML: data.yaml is YAML, not a format to parse by hand

    with reading(str(path)):
        try:
            data = yaml.safe_load(read_small_text(path, "data.yaml"))
        except yaml.YAMLError as exc:
            raise LabelsError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    names = data.get("names") if isinstance(data, dict) else None
    # Only scalars are names: aliases make a nested list cheap to load and enormous to turn into text.
    values = list(names.values()) if isinstance(names, dict) else names if isinstance(names, list) else None
    if values is not None and not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
        raise LabelsError(f"{path}: 'names' must be class names (text), not lists or tables")
    if isinstance(names, dict):
        try:
            return [str(names[k]) for k in sorted(names, key=int)]
        except (TypeError, ValueError):
            raise LabelsError(f"{path}: 'names' keys must be class numbers") from None
    if isinstance(names, list):
        return [str(n) for n in names]
    raise LabelsError(f"{path}: no 'names' list or mapping")


def read_yolo_dataset(path: Path) -> LabelSet:
    """A ``data.yaml``: its ``names``, and the labels folder beside it (``labels/``)."""
    folder = path.parent / "labels"
    if not folder.is_dir():
        raise LabelsError(f"{path}: no labels/ folder beside it")
    files = [f for f in sorted(folder.rglob("*.txt")) if f.name != "classes.txt"]
    return read_yolo(folder, files, path)


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def read_yolo(folder: Path, files: Iterable[Path], names: Path | None = None) -> LabelSet:
    classes = _yolo_names(folder, names)
    out: dict[str, ImageTruth] = {}
    problems: list[LabelProblem] = []
    for file in files:
        key = file.relative_to(folder).with_suffix("").as_posix()  # matched to an image by stem (any extension)
        where = file.relative_to(folder).as_posix()
        entries: list[tuple[list[float], str, bool]] = []
        for number, line in enumerate(_read_text(file, MAX_TEXT_BYTES).splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 5 or not all(_NUMBER.fullmatch(f) for f in fields) or not float(fields[0]).is_integer():
                raise LabelsError(f"labels {file}: line {number} is not 'class cx cy w h' (five numbers, the class a whole number): {line.strip()[:60]!r}")
            cls, cx, cy, w, h = int(float(fields[0])), *(float(f) for f in fields[1:])
            entry = f"line {number}"
            if not 0 <= cls < len(classes):
                problems.append(LabelProblem("unknown class", where, entry, f"class {cls} is not in the {len(classes)} names"))
                continue
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            why = _check_box(box, None, normalized=True)
            if why is not None:
                problems.append(LabelProblem("box outside its image", where, entry, why))
                continue
            entries.append((box, classes[cls], False))
        out[key] = _truth(key, where, entries, None, normalized=True)
    return LabelSet(folder, "yolo", out, classes, problems)


def read_voc(folder: Path, files: Iterable[Path]) -> LabelSet:
    from defusedxml import ElementTree  # annotation files are input: no entity expansion, no external entities

    out: dict[str, ImageTruth] = {}
    duplicated: dict[str, int] = {}
    problems: list[LabelProblem] = []
    classes: list[str] = []
    for file in files:
        where = file.relative_to(folder).as_posix()
        try:
            root = ElementTree.fromstring(_read_text(file, MAX_TEXT_BYTES))
        except Exception as exc:  # ParseError, and defusedxml's refusals (EntitiesForbidden...)
            raise LabelsError(f"labels {file} are not valid Pascal VOC XML: {exc}") from None
        name = (root.findtext("filename") or "").strip() or file.with_suffix(".jpg").name
        key = (file.parent.relative_to(folder) / name).as_posix()
        size = None
        if root.find("size") is not None:
            try:
                size = (_whole(float(root.findtext("size/width")), "width"), _whole(float(root.findtext("size/height")), "height"))
            except (TypeError, ValueError):
                raise LabelsError(f"labels {file}: <size> needs a whole width and height") from None
        entries: list[tuple[list[float], str, bool]] = []
        for n, obj in enumerate(root.findall("object"), 1):
            label = (obj.findtext("name") or "").strip()
            entry = f"object {n} ({label or 'no name'})"
            try:
                box = [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            except (TypeError, ValueError):
                raise LabelsError(f"labels {file}: {entry} needs bndbox xmin, ymin, xmax, ymax") from None
            if not label:
                problems.append(LabelProblem("unknown class", where, entry, "object has no name"))
                continue
            box = [box[0] - 1, box[1] - 1, box[2], box[3]]  # VOC pixels are 1-based and inclusive
            why = _check_box(box, size)
            if why is not None:
                problems.append(LabelProblem("box outside its image", where, entry, why))
                continue
            classes.append(label)
            entries.append((box, label, (obj.findtext("difficult") or "0").strip() == "1"))
        if key in out or key in duplicated:  # two files name one image: neither is trusted
            out.pop(key, None)
            duplicated[key] = duplicated.get(key, 1) + 1
            continue
        out[key] = _truth(key, where, entries, size)
    for key, n in duplicated.items():
        problems.append(LabelProblem("duplicate image entry", key, "-", f"{n} annotation files name this image; all of them are skipped"))
    return LabelSet(folder, "voc", out, list(dict.fromkeys(classes)), problems)


# -- class names ---------------------------------------------------------------------------------
def parse_label_map(text: str | None, table: Mapping[str, str] | None = None) -> dict[str, str]:
    """``--label-map``: ``person=face,puppy=dog`` or a file of ``truth = model`` lines; ``[labels.map]`` in
    mldeploy.toml underneath (the flag wins). A label mapped to ``-`` is left out of the evaluation."""
    out = {str(k): str(v) for k, v in (table or {}).items()}
    if not text:
        return out
    source = Path(text)
    if source.is_file():
        with reading(f"label map {source}"):
            lines = read_small_text(source, "label map").splitlines()
    else:
        lines = text.split(",")
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        truth, sep, model = (part.strip().strip('"') for part in line.partition("="))
        if not sep or not truth or not model:
            where = f"{source}: line {n}" if source.is_file() else "--label-map"
            raise UsageError(f"{where}: write TRUTH=MODEL (e.g. person=face), not {line!r}")
        out[truth] = model
    return out


def to_model_classes(labels: LabelSet, model_classes: Sequence[str], mapping: Mapping[str, str]) -> LabelSet:
    """The labels with class names mapped to the model's (``mapping``, else the same name). A class the
    model does not have is an ``unknown class`` problem for each box of it, which is left out."""
    known = set(model_classes)
    problems = list(labels.problems)
    images: dict[str, ImageTruth] = {}
    unknown: dict[str, list[str]] = {}  # class -> the images with boxes of it (one problem per class, naming the first)
    for key, truth in labels.images.items():
        keep = []
        names = []
        for i, label in enumerate(truth.labels):
            target = mapping.get(label, label)
            if target == "-":
                continue
            if target not in known:
                unknown.setdefault(label, []).append(truth.file)
                continue
            keep.append(i)
            names.append(target)
        idx = np.array(keep, dtype=np.int64)
        images[key] = ImageTruth(key, truth.file, truth.xyxy[idx].reshape(-1, 4), names, truth.ignore[idx], truth.size, truth.normalized)
    for label, files in unknown.items():
        target = mapping.get(label, label)
        via = f" (mapped to {target!r})" if label in mapping else ""
        problems.append(LabelProblem("unknown class", files[0], f"{len(files)} boxes of {label!r}",
                                     f"class {label!r}{via} is not one of the model's classes ({', '.join(list(model_classes)[:8])}"
                                     f"{', ...' if len(model_classes) > 8 else ''}); map it with --label-map {label}=CLASS, or {label}=- to leave it out"))
    return LabelSet(labels.source, labels.format, images, [c for c in model_classes], problems)
