"""The Ray engine: a shadow replay spread over a Ray cluster's CPUs with Ray Data.

Images are read as bytes (``ray.data.read_binary_files``, local files and objects in storage through the
same pyarrow filesystems as the local engine: one unreadable file must not fail the whole dataset the
way ``read_images`` does, and one gone missing gives an error row) and handed in batches to a pool of :class:`ReplayActor`. Each actor
loads both versions once (pins checked, as on the driver), decodes each image with mldeploy's own
checks, runs both versions in alternating order (the local engine's fairness rule) and returns a
compact row per image: both answers, their times, or the error. The driver rebuilds each record as it
arrives and folds it into the same streaming :class:`~mldeploy.rollout.shadow.ShadowMetric` as the local
engine (which keeps counts, a latency sample and the most disagreeing images, never every image), so
the two engines' agreement figures are identical.

The pool is sized so that reading can run beside it: actors x CPUs per actor must leave at least one
CPU of the cluster free (two actors of one CPU each on a 2-CPU cluster hung forever, their read tasks
starved), and a configuration that cannot is refused before anything starts.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from mldeploy import errors as error_types
from mldeploy.errors import InputNotFoundError, MldeployError, UsageError
from mldeploy.pipeline import DetectionResult, ImageInput
from mldeploy.rollout.shadow import ShadowMetric, ShadowRecord, ShadowRun, finish_run
from mldeploy.compare import failed_comparison, match

EXTRA = "pip install 'mldeploy[ray]'"


def require_ray():
    """Ray, or a usage error (exit 2) naming the command that installs it."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError(f"--engine ray needs Ray, an optional extra: {EXTRA}") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: ``address`` (None: a cluster of this machine for this run, on 127.0.0.1;
    ``auto``: the running cluster; ``ray://host:10001``), actors and CPUs per actor (None: sized from the cluster)."""

    address: str | None = None
    actors: int | None = None
    actor_cpus: float | None = None


def connect(options: RayOptions):
    import logging

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = require_ray()
    for name in ("ray", "ray.data"):  # Ray Data's progress lines are not a user's business
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if options.address is None:  # never join a stale cluster by accident; bind to the loopback only
            ray.init(address="local", _node_ip_address="127.0.0.1", **kwargs)
        else:
            host = options.address.split("://")[-1].rsplit(":", 1)[0]
            if host in ("127.0.0.1", "localhost"):  # a head node on this machine's loopback: be a driver on it too
                kwargs["_node_ip_address"] = "127.0.0.1"
            ray.init(address=options.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"--address {options.address}: cannot connect to a Ray cluster: {str(exc).splitlines()[0]}") from None
    return ray


@contextlib.contextmanager
def session(options: RayOptions):
    """Connected to the cluster for the whole replay, with stdout pointed at stderr meanwhile: Ray prints
    its own notices (a worker that died and is being replaced) on stdout, where ``--format json`` writes
    the report. The connection ends with the replay, so nothing of Ray's prints afterwards."""
    with contextlib.redirect_stdout(sys.stderr):
        ray = connect(options)
        try:
            yield ray
        finally:
            ray.shutdown()


def pool_size(cluster_cpus: float, options: RayOptions) -> tuple[int, float]:
    """Actors and CPUs per actor that leave one CPU for reading; refuses what does not."""
    cpus = options.actor_cpus if options.actor_cpus is not None else (1.0 if cluster_cpus >= 4 else 0.5)
    actors = options.actors if options.actors is not None else max(1, int((cluster_cpus - 1) // cpus))
    if actors * cpus > cluster_cpus - 1 + 1e-9:
        raise UsageError(f"--actors {actors} x --actor-cpus {cpus:g} = {actors * cpus:g} CPUs leaves no CPU for reading images on a cluster of "
                         f"{cluster_cpus:g}: use at most {cluster_cpus - 1:g} CPUs for actors (fractions are fine, e.g. --actor-cpus 0.5)")
    return actors, cpus


class ReplayActor:
    """Both versions, loaded once per actor; ``__call__`` replays a batch of images (bytes and paths).
    ``old=None``: a capture replay, whose old answers are the recorded ones (the driver has them)."""

    def __init__(self, state_dir: str | None, config_path: str | None, old: str | None, new: str, labels: Sequence[str] | None, cwd: str) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from mldeploy.project import Project

        project = Project(state_dir=Path(state_dir) if state_dir else None, config_path=Path(config_path) if config_path else None, cwd=Path(cwd))
        registry = project.registry()
        self.old = project.load(registry.resolve(old)) if old is not None else None
        self.new = project.load(registry.resolve(new))
        self.labels = list(labels) if labels else None
        self.warm = False
        self.index = 0

    def __call__(self, batch: dict) -> dict:
        from mldeploy.capture.store import answer_to_json
        from mldeploy.images import decode_image
        from mldeploy.pipeline import run_detector

        out: dict[str, list] = {k: [] for k in ("path", "old", "new", "old_seconds", "new_seconds", "old_error", "new_error", "input_error")}
        for path, data in zip(batch["path"], batch["bytes"]):
            row = dict.fromkeys(out)
            row.update(path=str(path), old_seconds=0.0, new_seconds=0.0)
            try:
                image = decode_image(bytes(data))
            except MldeployError as exc:
                row["input_error"] = f"{type(exc).__name__}:{exc}"
            else:
                if not self.warm:
                    self.warm = True
                    for detector in (d for d in (self.old, self.new) if d is not None):
                        try:
                            detector.detect(image)
                        except Exception:
                            pass
                sides = [(side, d) for side, d in (("old", self.old), ("new", self.new)) if d is not None]
                if self.index % 2:
                    sides.reverse()  # alternate which version runs first, as the local engine does
                self.index += 1
                for side, detector in sides:
                    try:
                        detections, seconds = run_detector(detector, image, labels=self.labels)
                        row[side], row[f"{side}_seconds"] = answer_to_json(detections), seconds
                    except MldeployError as exc:
                        row[f"{side}_error"] = f"{type(exc).__name__}:{exc}"
            for key in out:
                out[key].append(row[key])
        return out


class DetectActor:
    """One version, loaded once per actor; ``__call__`` runs it on a batch of images (``mldeploy eval``)."""

    def __init__(self, state_dir: str | None, config_path: str | None, ref: str, cwd: str) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from mldeploy.project import Project

        project = Project(state_dir=Path(state_dir) if state_dir else None, config_path=Path(config_path) if config_path else None, cwd=Path(cwd))
        self.detector = project.load(project.registry().resolve(ref))

    def __call__(self, batch: dict) -> dict:
        from mldeploy.capture.store import answer_to_json
        from mldeploy.images import decode_image
        from mldeploy.pipeline import run_detector

        out: dict[str, list] = {"path": [], "answer": [], "seconds": [], "error": []}
        for path, data in zip(batch["path"], batch["bytes"]):
            answer, seconds, error = None, 0.0, None
            try:
                detections, seconds = run_detector(self.detector, decode_image(bytes(data)))
                answer = answer_to_json(detections)
            except MldeployError as exc:
                error = f"{type(exc).__name__}:{exc}"
            for key, value in (("path", str(path)), ("answer", answer), ("seconds", seconds), ("error", error)):
                out[key].append(value)
        return out


def detect_ray(inputs: Sequence[ImageInput], project, ref: str, *, options: RayOptions,
               on_image: Callable[[DetectionResult], None] | None = None) -> list[DetectionResult]:
    """``ref`` on every image, on a Ray cluster: one :class:`DetectionResult` per image, in input order."""
    from mldeploy.capture.store import answer_from_json

    ray = connect(options)
    actors, actor_cpus = pool_size(float(ray.cluster_resources().get("CPU", 1)), options)
    dataset, by_path = _read(ray, inputs)
    found = dataset.map_batches(
        DetectActor, batch_size=4, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=actor_cpus,
        fn_constructor_kwargs={**_project_args(project), "ref": ref})
    results: list[tuple[int, DetectionResult]] = []
    seen = bytearray(len(inputs))
    for row in found.iter_rows():
        for index in by_path.all(_local(row["path"], by_path)):
            seen[index] = 1
            item = inputs[index]
            error = _error(row["error"])
            result = DetectionResult(item.display, ref, answer_from_json(row["answer"]) if error is None else None, error, float(row["seconds"]))
            results.append((index, result))
            if on_image is not None:
                on_image(result)
    for index, error in _missing(inputs, seen):
        results.append((index, DetectionResult(inputs[index].display, ref, error=error)))
        if on_image is not None:
            on_image(results[-1][1])
    return [result for _, result in sorted(results, key=lambda pair: pair[0])]


def _read(ray, inputs: Sequence[ImageInput]):
    """A Ray dataset of every input's bytes (local files, and each storage's objects through its pyarrow
    filesystem), and the position in ``inputs`` of each path Ray will name. A path that is missing by
    the time Ray lists it gives no row (``ignore_missing_paths``) instead of failing the whole dataset;
    :func:`_missing` turns it into an error row."""
    from mldeploy.sources import filesystem

    local: list[str] = []
    stores: dict[int, tuple[Any, list[str]]] = {}
    by_path = _PathIndex()
    for i, item in enumerate(inputs):
        if item.uri is None:
            path = os.path.abspath(item.path)  # absolute (a worker's folder is its own); no resolve(): a syscall per folder, per image
            if by_path.add(path, i):
                local.append(path)
        else:
            store, path = filesystem(item.uri)
            if by_path.add(path, i):
                stores.setdefault(id(store), (store, []))[1].append(path)
    parts = [ray.data.read_binary_files(local, include_paths=True, ignore_missing_paths=True)] if local else []
    parts += [ray.data.read_binary_files(paths, filesystem=store, include_paths=True, ignore_missing_paths=True) for store, paths in stores.values()]
    return (parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]), by_path


class _PathIndex(dict):
    """Path Ray will name -> position in the inputs. A path given twice (a capture stores an image sent
    twice once) is read once and answers every position that names it."""

    def __init__(self) -> None:
        super().__init__()
        self._more: dict[str, list[int]] = {}

    def add(self, path: str, index: int) -> bool:
        """Record ``index`` for ``path``; True when the path is new (to be read)."""
        if path in self:
            self._more.setdefault(path, []).append(index)
            return False
        self[path] = index
        return True

    def all(self, path: str) -> list[int]:
        return [self[path], *self._more.get(path, ())]


def _missing(inputs: Sequence[ImageInput], seen: bytearray) -> Iterator[tuple[int, MldeployError]]:
    """The inputs Ray gave no row for: gone before they could be read."""
    for i, item in enumerate(inputs):
        if not seen[i]:
            yield i, InputNotFoundError("no such object" if item.uri is not None else "no such file")


def _project_args(project) -> dict[str, str | None]:
    """How an actor opens the same project as the driver (absolute paths: a worker's folder is its own)."""
    return {"state_dir": str(Path(project.state_dir).resolve()) if project.state_dir else None,
            "config_path": str(Path(project.config_path).resolve()) if project.config_path else None, "cwd": str(project.cwd)}


def _error(text: str | None) -> MldeployError | None:
    if text is None:
        return None
    name, _, message = text.partition(":")
    kind = getattr(error_types, name, MldeployError)
    return kind(message) if isinstance(kind, type) and issubclass(kind, MldeployError) else MldeployError(message)


def _record(index: int, item: ImageInput, row: dict, old_ref: str, new_ref: str, iou: float, drift_iou: float,
            recorded: bool = False, labels: Sequence[str] | None = None) -> ShadowRecord:
    from mldeploy.capture.store import answer_from_json

    input_error = _error(row["input_error"])
    if input_error is not None:
        return ShadowRecord(index, item, DetectionResult(item.display, old_ref, error=input_error),
                            DetectionResult(item.display, new_ref, error=input_error), input_error=input_error)
    results = {}
    for side, ref in (("old", old_ref), ("new", new_ref)):
        if side == "old" and recorded:  # a capture's: the answer and time the server gave, as the local engine reads them
            answer = item.record.answer
            results[side] = DetectionResult(item.display, ref, answer.filter(labels=labels) if labels else answer, seconds=item.record.seconds)
            continue
        error = _error(row[f"{side}_error"])
        detections = answer_from_json(row[side]) if error is None else None
        results[side] = DetectionResult(item.display, ref, detections, error, float(row[f"{side}_seconds"]))
    record = ShadowRecord(index, item, results["old"], results["new"])
    if record.old.ok:
        record.comparison = (match(record.old.detections, record.new.detections, iou, drift_iou) if record.new.ok
                             else failed_comparison(record.old.detections, drift_iou))
    return record


def replay_ray(inputs: Sequence[ImageInput], project, old_ref: str, new_ref: str, *, options: RayOptions, iou_threshold: float = 0.5,
               drift_iou: float = 0.8, labels: Sequence[str] | None = None, offset: int = 0, recorded: bool = False) -> Iterator[ShadowRecord]:
    """The shadow replay of ``inputs`` on a Ray cluster: one :class:`ShadowRecord` per image as Ray
    returns it (not in input order), numbered from ``offset`` (a canary step's slice continues the
    numbering of the steps before). ``recorded``: the inputs are a capture's requests and the old
    answers their recorded ones; only the new version runs."""
    ray = connect(options)
    actors, actor_cpus = pool_size(float(ray.cluster_resources().get("CPU", 1)), options)
    dataset, by_path = _read(ray, inputs)
    replayed = dataset.map_batches(
        ReplayActor, batch_size=4, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=actor_cpus,
        fn_constructor_kwargs={**_project_args(project), "old": None if recorded else old_ref, "new": new_ref,
                               "labels": list(labels) if labels else None})
    seen = bytearray(len(inputs))
    for row in replayed.iter_rows():
        for index in by_path.all(_local(row["path"], by_path)):
            seen[index] = 1
            yield _record(offset + index, inputs[index], row, old_ref, new_ref, iou_threshold, drift_iou, recorded, labels)
    for index, error in _missing(inputs, seen):
        item = inputs[index]
        yield ShadowRecord(offset + index, item, DetectionResult(item.display, old_ref, error=error), DetectionResult(item.display, new_ref, error=error),
                           input_error=error)


def run_shadow_ray(inputs: Sequence[ImageInput], project, old_ref: str, new_ref: str, *, options: RayOptions, iou_threshold: float = 0.5,
                   drift_iou: float = 0.8, labels: Sequence[str] | None = None, truths=None,
                   on_record: Callable[[ShadowRecord], None] | None = None, recorded: bool = False) -> ShadowRun:
    """The shadow replay of ``inputs`` on a Ray cluster, summarised as it streams in by the same
    :class:`ShadowMetric` as the local engine's: the same :class:`ShadowRun`."""
    metric = ShadowMetric(old_ref, new_ref, iou_threshold, drift_iou, recorded=recorded, truths=truths)
    started = time.perf_counter()
    for record in replay_ray(inputs, project, old_ref, new_ref, options=options, iou_threshold=iou_threshold, drift_iou=drift_iou, labels=labels,
                             recorded=recorded):
        metric.update(record)
        if on_record is not None:
            on_record(record)
    return finish_run(metric, time.perf_counter() - started)


def _local(path: str, known: dict) -> str:
    """Ray names a local file by its absolute path, sometimes without the leading slash."""
    if path in known:
        return path
    with_root = "/" + path.lstrip("/")
    if with_root in known:
        return with_root
    raise KeyError(f"Ray returned a path mldeploy did not send: {path}")
